//! EventTime: the Forward protocol's nanosecond timestamp.
//!
//! Per the [Forward Protocol Specification v1, "EventTime Ext Format"](https://github.com/fluent/fluentd/wiki/Forward-Protocol-Specification-v1#eventtime-ext-format),
//! an EventTime is MessagePack ext type 0 with 8 bytes of data: big-endian u32 seconds since the
//! Unix epoch, then big-endian u32 nanoseconds. Fluentd writes it as `fixext 8`; other encoders
//! (e.g. Python `msgpack` with a generic `ExtType`, some Go clients) use `ext 8`, so decoding
//! accepts both. Older clients send a plain integer of seconds, also accepted.

use std::time::{SystemTime, UNIX_EPOCH};

use super::error::DecodeError;
use super::read::Reader;
use super::value::{Value, read_ext};

/// The MessagePack ext type of EventTime.
pub const EVENT_TIME_EXT_TYPE: i8 = 0;

/// A point in time with nanosecond precision, as the Forward protocol carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct EventTime {
    /// Seconds since the Unix epoch.
    pub secs: u32,
    /// Nanoseconds within the second (0..1_000_000_000 when valid; decoding does not reject more,
    /// as Fluentd does not either).
    pub nanos: u32,
}

impl EventTime {
    /// An EventTime from seconds and nanoseconds.
    pub const fn new(secs: u32, nanos: u32) -> Self {
        EventTime { secs, nanos }
    }

    /// The current wall-clock time (saturating at the u32 limits of the format).
    pub fn now() -> Self {
        Self::from_system_time(SystemTime::now())
    }

    /// Converts a [`SystemTime`]; times before 1970 become 0, after 2106 saturate.
    pub fn from_system_time(t: SystemTime) -> Self {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => EventTime {
                secs: u32::try_from(d.as_secs()).unwrap_or(u32::MAX),
                nanos: d.subsec_nanos(),
            },
            Err(_) => EventTime::default(),
        }
    }

    /// From nanoseconds since the Unix epoch (seconds after 2106 saturate).
    #[inline]
    pub const fn from_nanos(ns: u64) -> Self {
        let secs = ns / 1_000_000_000;
        EventTime {
            secs: if secs > u32::MAX as u64 {
                u32::MAX
            } else {
                secs as u32
            },
            nanos: (ns % 1_000_000_000) as u32,
        }
    }

    /// Nanoseconds since the Unix epoch.
    pub fn as_nanos(&self) -> u64 {
        self.secs as u64 * 1_000_000_000 + self.nanos as u64
    }

    /// The 8 data bytes of the extension.
    #[inline]
    pub fn to_bytes(&self) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[..4].copy_from_slice(&self.secs.to_be_bytes());
        b[4..].copy_from_slice(&self.nanos.to_be_bytes());
        b
    }

    /// Appends the `fixext 8` encoding (10 bytes), as Fluentd sends it.
    #[inline]
    pub fn encode(&self, buf: &mut Vec<u8>) {
        let mut out = [0u8; 10];
        out[0] = 0xd7;
        out[1] = EVENT_TIME_EXT_TYPE as u8;
        out[2..].copy_from_slice(&self.to_bytes());
        buf.extend_from_slice(&out);
    }

    /// Interprets a decoded [`Value`] as a time: an ext 0 of 8 bytes, or a non-negative integer
    /// of seconds.
    pub fn from_value(v: &Value) -> Result<Self, DecodeError> {
        match v {
            Value::Ext(ty, data) => Self::from_ext(*ty, data),
            Value::UInt(s) => Self::from_secs(*s),
            Value::Int(_) => Err(DecodeError::InvalidEventTime {
                reason: "negative integer time",
            }),
            _ => Err(DecodeError::InvalidEventTime {
                reason: "expected an EventTime (ext type 0) or an integer",
            }),
        }
    }

    fn from_secs(s: u64) -> Result<Self, DecodeError> {
        let secs = u32::try_from(s).map_err(|_| DecodeError::InvalidEventTime {
            reason: "integer time beyond year 2106",
        })?;
        Ok(EventTime { secs, nanos: 0 })
    }

    fn from_ext(ty: i8, data: &[u8]) -> Result<Self, DecodeError> {
        if ty != EVENT_TIME_EXT_TYPE {
            return Err(DecodeError::InvalidEventTime {
                reason: "extension type is not 0",
            });
        }
        let b: [u8; 8] = data.try_into().map_err(|_| DecodeError::InvalidEventTime {
            reason: "EventTime data is not 8 bytes",
        })?;
        Ok(EventTime {
            secs: u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
            nanos: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
        })
    }

    /// Reads a time straight from the wire (the decoder's fast path: no `Value`, no `Bytes`).
    ///
    /// `nil` reads as 0 (no time): [`crate::forward::decode`] then stamps the event with the
    /// time of arrival, as Fluentd's in_forward does for a time whose seconds are 0.
    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let m = r.peek()?;
        match m {
            0xc0 => {
                r.take(1)?;
                Ok(EventTime::default())
            }
            // fixext 8 (Fluentd) and ext 8 (other encoders), type 0 checked by `from_ext`.
            0xd7 => {
                let b = r.take(10)?;
                Self::from_ext(b[1] as i8, &b[2..])
            }
            0xc7 => {
                let head = r.take(3)?;
                let (len, ty) = (head[1] as usize, head[2] as i8);
                Self::from_ext(ty, r.take(len)?)
            }
            0xd4..=0xd6 | 0xd8 | 0xc8 | 0xc9 => {
                let (ty, data) = read_ext(r)?;
                Self::from_ext(ty, &data)
            }
            _ => match Value::read_int(r, m)? {
                Some(v) => Self::from_value(&v),
                None => Err(DecodeError::InvalidEventTime {
                    reason: "expected an EventTime (ext type 0) or an integer",
                }),
            },
        }
    }
}

impl From<SystemTime> for EventTime {
    fn from(t: SystemTime) -> Self {
        Self::from_system_time(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn read(bytes: &[u8]) -> Result<EventTime, DecodeError> {
        let b = Bytes::copy_from_slice(bytes);
        EventTime::read(&mut Reader::new(&b, 8))
    }

    #[test]
    fn fixext8_ext8_and_integers() {
        let t = EventTime::new(0x6b04_f453, 0x25d9_a374);
        let mut buf = Vec::new();
        t.encode(&mut buf);
        assert_eq!(
            buf,
            [0xd7, 0x00, 0x6b, 0x04, 0xf4, 0x53, 0x25, 0xd9, 0xa3, 0x74]
        );
        assert_eq!(read(&buf).ok(), Some(t));
        let ext8 = [
            0xc7, 0x08, 0x00, 0x6b, 0x04, 0xf4, 0x53, 0x25, 0xd9, 0xa3, 0x74,
        ];
        assert_eq!(read(&ext8).ok(), Some(t));
        assert_eq!(
            read(&[0xce, 0x6b, 0x04, 0xf4, 0x53]).ok(),
            Some(EventTime::new(0x6b04_f453, 0))
        );
        assert_eq!(read(&[0x05]).ok(), Some(EventTime::new(5, 0)));
        assert_eq!(read(&[0xc0]).ok(), Some(EventTime::default()), "nil");
    }

    /// The agent's lines carry nanoseconds since the epoch (moved from the agent's own writer).
    #[test]
    fn from_nanos_is_fixext8_type0() {
        let mut b = Vec::new();
        EventTime::from_nanos(1_700_000_000_123_456_789).encode(&mut b);
        assert_eq!(
            b,
            [0xd7, 0, 0x65, 0x53, 0xf1, 0x00, 0x07, 0x5b, 0xcd, 0x15],
            "1700000000 s = 0x6553f100, 123456789 ns = 0x075bcd15"
        );
        assert_eq!(EventTime::from_nanos(u64::MAX).secs, u32::MAX);
    }

    #[test]
    fn rejects_bad_times() {
        assert!(read(&[0xff]).is_err()); // -1
        assert!(read(&[0xcf, 1, 0, 0, 0, 0, 0, 0, 0]).is_err()); // > u32
        assert!(read(&[0xd7, 0x01, 0, 0, 0, 0, 0, 0, 0, 0]).is_err()); // ext type 1
        assert!(read(&[0xd6, 0x00, 0, 0, 0, 0]).is_err()); // 4 bytes
        assert!(read(&[0xa1, b'x']).is_err());
        assert!(read(&[0xd7, 0x00, 0, 0]).is_err()); // truncated
    }
}
