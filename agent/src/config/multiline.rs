//! The `multiline` setting as written: its text and TOML forms ([`MultilineSpec`], [`Mode`]) and
//! the custom rule sets ([`ParserSpec`]). The pipeline compiles them
//! (`pipeline::multiline::Multiline::compile`) and runs them.
//!
//! - flag / `LOGTAP_MULTILINE`: `MODE` for every stream, or `stdout=MODE,stderr=MODE,file=MODE`;
//! - TOML: `multiline = "MODE"`, or a table `{ stdout, stderr, file, files = { "PATH" = MODE } }`
//!   where a `files` key is a tap file's path (`*` and `?` match as in a shell glob) and wins
//!   over `file`; custom rule sets in `[[multiline_parser]]` ([`ParserSpec`]).
//!
//! MODE: `off` | `write` | a rule set (`java`, `python`, `go`, `ruby`, a custom name) |
//! `write+RULES`.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::units::Dur;

/// Fluent Bit's `FLB_ML_FLUSH_TIMEOUT` (ms): how long a pending event waits for continuations.
pub const DEFAULT_FLUSH_TIMEOUT_MS: u64 = 4000;

/// One rule as written in the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// The state(s) the rule applies in: `start_state`, or names separated by commas.
    pub state_name: String,
    /// The line matches this regular expression (Fluent Bit's `/…/` delimiters are optional).
    pub regex: String,
    /// The state after a matching line.
    pub next_state: String,
}

/// A custom rule set as written in the configuration (`[[multiline_parser]]` in TOML).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ParserSpec {
    /// The name `multiline` refers to (must not be a built-in name).
    pub name: String,
    /// How long a pending event waits for continuation lines [default: 4s, Fluent Bit's].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flush_timeout: Option<Dur>,
    pub rules: Vec<RuleSpec>,
}

/// One stream's mode as written.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Mode {
    /// Whole writes are the units.
    pub write: bool,
    /// The rule set's name.
    pub rules: Option<String>,
}

impl FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Mode, String> {
        let s = s.trim();
        let (write, rules) = match s {
            "off" => (false, None),
            "write" => (true, None),
            _ => match s.strip_prefix("write+") {
                Some(r) => (true, Some(r)),
                None => (false, Some(s)),
            },
        };
        if let Some(r) = rules
            && (r.is_empty() || r.contains(|c: char| c.is_whitespace() || c == '=' || c == ','))
        {
            return Err(format!(
                "bad multiline mode `{s}`: use off, write, java, python, go, ruby, a [[multiline_parser]] name, or write+NAME"
            ));
        }
        Ok(Mode {
            write,
            rules: rules.map(str::to_owned),
        })
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.write, &self.rules) {
            (false, None) => f.write_str("off"),
            (true, None) => f.write_str("write"),
            (false, Some(r)) => f.write_str(r),
            (true, Some(r)) => write!(f, "write+{r}"),
        }
    }
}

/// The `multiline` setting as written (flag, variable or TOML).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MultilineSpec {
    #[serde(default, with = "opt_mode")]
    pub stdout: Option<Mode>,
    #[serde(default, with = "opt_mode")]
    pub stderr: Option<Mode>,
    /// Every tap file not named in `files`.
    #[serde(default, with = "opt_mode")]
    pub file: Option<Mode>,
    /// Per tap file (path or glob).
    #[serde(default, with = "map_mode")]
    pub files: BTreeMap<String, Mode>,
}

impl FromStr for MultilineSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<MultilineSpec, String> {
        if !s.contains('=') {
            let m: Mode = s.parse()?;
            return Ok(MultilineSpec {
                stdout: Some(m.clone()),
                stderr: Some(m.clone()),
                file: Some(m),
                files: BTreeMap::new(),
            });
        }
        let mut spec = MultilineSpec::default();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, mode) = part.split_once('=').ok_or_else(|| {
                format!("bad multiline `{s}`: mix of MODE and STREAM=MODE; use stdout=MODE,stderr=MODE,file=MODE")
            })?;
            let mode: Mode = mode.parse()?;
            match key.trim() {
                "stdout" => spec.stdout = Some(mode),
                "stderr" => spec.stderr = Some(mode),
                "file" => spec.file = Some(mode),
                other => {
                    return Err(format!(
                        "bad multiline stream `{other}`: use stdout, stderr or file (per tap file: the TOML table `multiline.files`)"
                    ));
                }
            }
        }
        Ok(spec)
    }
}

/// Printed as the string it may be written as when every stream has one mode.
impl Serialize for MultilineSpec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Table<'a> {
            #[serde(skip_serializing_if = "Option::is_none", with = "opt_mode")]
            stdout: &'a Option<Mode>,
            #[serde(skip_serializing_if = "Option::is_none", with = "opt_mode")]
            stderr: &'a Option<Mode>,
            #[serde(skip_serializing_if = "Option::is_none", with = "opt_mode")]
            file: &'a Option<Mode>,
            #[serde(skip_serializing_if = "BTreeMap::is_empty", with = "map_mode")]
            files: &'a BTreeMap<String, Mode>,
        }
        match &self.stdout {
            Some(m)
                if self.files.is_empty()
                    && self.stderr.as_ref() == Some(m)
                    && self.file.as_ref() == Some(m) =>
            {
                s.serialize_str(&m.to_string())
            }
            _ => Table {
                stdout: &self.stdout,
                stderr: &self.stderr,
                file: &self.file,
                files: &self.files,
            }
            .serialize(s),
        }
    }
}

/// TOML: a string (every stream) or the table.
pub fn deserialize_spec<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<MultilineSpec>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Text(String),
        Table(MultilineSpec),
    }
    Ok(match Option::<Either>::deserialize(d)? {
        None => None,
        Some(Either::Text(t)) => Some(t.parse().map_err(serde::de::Error::custom)?),
        Some(Either::Table(t)) => Some(t),
    })
}

mod opt_mode {
    use super::*;
    #[allow(clippy::ref_option)]
    pub fn serialize<S: Serializer>(m: &Option<Mode>, s: S) -> Result<S::Ok, S::Error> {
        match m {
            Some(m) => s.serialize_str(&m.to_string()),
            None => s.serialize_none(),
        }
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Mode>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|t| t.parse().map_err(serde::de::Error::custom))
            .transpose()
    }
}

mod map_mode {
    use super::*;
    pub fn serialize<S: Serializer>(m: &BTreeMap<String, Mode>, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(m.iter().map(|(k, v)| (k, v.to_string())))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<String, Mode>, D::Error> {
        BTreeMap::<String, String>::deserialize(d)?
            .into_iter()
            .map(|(k, v)| Ok((k, v.parse().map_err(serde::de::Error::custom)?)))
            .collect()
    }
}
