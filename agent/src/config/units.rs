//! Human units in options: durations (`1s`, `500ms`, `2m`) and sizes (`64MB`, `512k`, `1G`).
//!
//! The same parsers serve the command line, the `LOGTAP_*` environment and the TOML file, so an
//! option means the same thing wherever it is set. Sizes follow Fluent Bit's convention: the
//! suffixes `K`, `M`, `G` (with or without a trailing `B`, any case) are powers of 1024, and a bare
//! number is bytes. A bare number as a duration is seconds, as in Fluent Bit's `flush`.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a duration or a size could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    #[error("`{0}` is not a duration: write a number with a unit, e.g. `1s`, `500ms`, `2m`")]
    Duration(String),
    #[error("`{0}` is not a size: write a number with an optional unit, e.g. `64MB`, `512K`, `1G`")]
    Size(String),
}

/// A duration read from an option; prints back the way it is written (`1s`, `250ms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Dur(pub Duration);

impl Dur {
    /// Parses `"1s"`, `"500ms"`, `"2m"`, `"1h"`, `"100us"` or a bare number of seconds (`"5"`,
    /// `"0.5"`).
    pub fn parse(text: &str) -> Result<Dur, UnitError> {
        let err = || UnitError::Duration(text.to_owned());
        let t = text.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let value: f64 = num.parse().map_err(|_| err())?;
        let scale = match unit.trim() {
            "" | "s" | "sec" | "secs" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            "m" | "min" => 60.0,
            "h" => 3600.0,
            _ => return Err(err()),
        };
        let secs = value * scale;
        if !secs.is_finite() || !(0.0..=1e9).contains(&secs) {
            return Err(err());
        }
        Ok(Dur(Duration::from_secs_f64(secs)))
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ns = self.0.as_nanos();
        if ns == 0 {
            write!(f, "0s")
        } else if ns.is_multiple_of(1_000_000_000) {
            write!(f, "{}s", ns / 1_000_000_000)
        } else if ns.is_multiple_of(1_000_000) {
            write!(f, "{}ms", ns / 1_000_000)
        } else if ns.is_multiple_of(1_000) {
            write!(f, "{}us", ns / 1_000)
        } else {
            write!(f, "{ns}ns")
        }
    }
}

/// A size in bytes read from an option; prints back with the largest exact unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Size(pub u64);

impl Size {
    /// Parses `"64MB"`, `"64M"`, `"512k"`, `"1G"`, `"4096"` (bytes).
    pub fn parse(text: &str) -> Result<Size, UnitError> {
        let err = || UnitError::Size(text.to_owned());
        let t = text.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let value: u64 = num.parse().map_err(|_| err())?;
        let unit = unit.trim().to_ascii_lowercase();
        let unit = unit.strip_suffix("ib").map(str::to_owned).unwrap_or(unit);
        let unit = unit.strip_suffix('b').unwrap_or(&unit);
        let shift = match unit {
            "" => 0,
            "k" => 10,
            "m" => 20,
            "g" => 30,
            "t" => 40,
            _ => return Err(err()),
        };
        value.checked_mul(1u64 << shift).map(Size).ok_or_else(err)
    }

    /// The size as a `usize` (saturating on 32-bit targets).
    pub fn bytes(self) -> usize {
        usize::try_from(self.0).unwrap_or(usize::MAX)
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (shift, unit) in [(30, "GB"), (20, "MB"), (10, "KB")] {
            if self.0 != 0 && self.0.is_multiple_of(1u64 << shift) {
                return write!(f, "{}{unit}", self.0 >> shift);
            }
        }
        write!(f, "{}", self.0)
    }
}

/// TOML accepts either a string with a unit or a bare number.
#[derive(Deserialize)]
#[serde(untagged)]
enum NumOrText {
    Int(u64),
    Float(f64),
    Text(String),
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match NumOrText::deserialize(d)? {
            NumOrText::Int(n) => Ok(Dur(Duration::from_secs(n))),
            NumOrText::Float(x) => Dur::parse(&x.to_string()).map_err(serde::de::Error::custom),
            NumOrText::Text(t) => Dur::parse(&t).map_err(serde::de::Error::custom),
        }
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match NumOrText::deserialize(d)? {
            NumOrText::Int(n) => Ok(Size(n)),
            NumOrText::Float(_) => Err(serde::de::Error::custom(
                "a size is a whole number of bytes or a string like \"64MB\"",
            )),
            NumOrText::Text(t) => Size::parse(&t).map_err(serde::de::Error::custom),
        }
    }
}

impl Serialize for Dur {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl Serialize for Size {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(Dur::parse("1s").unwrap().0, Duration::from_secs(1));
        assert_eq!(Dur::parse("500ms").unwrap().0, Duration::from_millis(500));
        assert_eq!(Dur::parse("2m").unwrap().0, Duration::from_secs(120));
        assert_eq!(Dur::parse("5").unwrap().0, Duration::from_secs(5));
        assert_eq!(Dur::parse("0.25").unwrap().0, Duration::from_millis(250));
        assert!(Dur::parse("fast").is_err());
        assert!(Dur::parse("1 parsec").is_err());
        assert!(Dur::parse("").is_err());
        assert_eq!(Dur(Duration::from_millis(1500)).to_string(), "1500ms");
        assert_eq!(Dur(Duration::from_secs(3)).to_string(), "3s");
    }

    #[test]
    fn sizes() {
        assert_eq!(Size::parse("64MB").unwrap().0, 64 << 20);
        assert_eq!(Size::parse("64M").unwrap().0, 64 << 20);
        assert_eq!(Size::parse("512k").unwrap().0, 512 << 10);
        assert_eq!(Size::parse("1GiB").unwrap().0, 1 << 30);
        assert_eq!(Size::parse("4096").unwrap().0, 4096);
        assert!(Size::parse("12X").is_err());
        assert!(Size::parse("99999999999999999999G").is_err());
        assert_eq!(Size(8 << 20).to_string(), "8MB");
        assert_eq!(Size(1000).to_string(), "1000");
    }
}
