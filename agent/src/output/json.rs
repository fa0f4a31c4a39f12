//! JSON lines for the stdout output: one object per record, the seed sidecar's fields first.
//!
//! `{"timestamp":"2026-03-11T13:47:35.097063123Z","pod_name":…,"namespace":…,"message":…,
//! "stream":…,"source":"logtap", "tag":…, …every other record field in record order}`.
//! `pod_name` and `namespace` are `null` when unknown (the seed always printed them); `source`
//! is `"logtap"` unless the record (relayed from a forward input) has its own.
//!
//! JSON strings must be UTF-8 and logtap never rewrites bytes, so a `bin` (or non-UTF-8 `str`)
//! field `k` at the top level is printed as `k` with invalid sequences replaced by U+FFFD *and*
//! `k_base64` holding the exact bytes. Nested ones are printed lossily.

use std::fmt::Write as _;

use base64::Engine;
use bytes::Bytes;
use logtap_protocol::forward::{EventTime, Value};

use crate::record::Chunk;

/// Nesting cap when decoding entries (ours have depth 2; relayed ones may nest more).
const MAX_DEPTH: usize = 64;

/// Why a chunk could not be printed (a bug or a corrupt spool file: entries are ours).
#[derive(Debug, thiserror::Error)]
#[error("undecodable entry at byte {offset} of chunk {chunk}: {reason}")]
pub struct RenderError {
    pub chunk: String,
    pub offset: usize,
    pub reason: String,
}

/// Appends one JSON line per entry of `chunk` to `out`; returns the number of records.
pub fn render_chunk(chunk: &Chunk, out: &mut String) -> Result<u32, RenderError> {
    let mut offset = 0;
    let mut n = 0;
    let fail = |offset, reason: String| RenderError {
        chunk: chunk.id.as_text().into_owned(),
        offset,
        reason,
    };
    while offset < chunk.entries.len() {
        let rest: Bytes = chunk.entries.slice(offset..);
        let (entry, used) =
            Value::decode(&rest, MAX_DEPTH).map_err(|e| fail(offset, e.to_string()))?;
        let Value::Array(mut parts) = entry else {
            return Err(fail(offset, "entry is not an array".into()));
        };
        if parts.len() != 2 {
            return Err(fail(
                offset,
                format!("entry has {} elements, not 2", parts.len()),
            ));
        }
        let record = parts.pop().unwrap_or(Value::Nil);
        let time = match parts.pop() {
            // v1.5 form [[time, meta], record]
            Some(Value::Array(mut t)) if !t.is_empty() => t.swap_remove(0),
            Some(t) => t,
            None => Value::Nil,
        };
        let time = EventTime::from_value(&time).map_err(|e| fail(offset, e.to_string()))?;
        render_record(&chunk.tag, time.as_nanos(), &record, out);
        out.push('\n');
        offset += used;
        n += 1;
    }
    Ok(n)
}

/// One record as a JSON object (no newline).
pub fn render_record(tag: &str, time_ns: u64, record: &Value, out: &mut String) {
    let fields: &[(Value, Value)] = match record {
        Value::Map(m) => m,
        _ => &[],
    };
    let get = |k: &str| {
        fields
            .iter()
            .find(|(key, _)| key.as_raw() == Some(k.as_bytes()))
            .map(|(_, v)| v)
    };
    out.push_str("{\"timestamp\":\"");
    rfc3339_ns(time_ns, out);
    out.push('"');
    const FIRST: [&str; 5] = ["pod_name", "namespace", "message", "stream", "source"];
    for key in FIRST {
        match (get(key), key) {
            (Some(v), _) => field(key.as_bytes(), v, out),
            (None, "source") => out.push_str(",\"source\":\"logtap\""),
            (None, "pod_name" | "namespace") => {
                out.push(',');
                string(key, out);
                out.push_str(":null");
            }
            (None, _) => {}
        }
    }
    if get("tag").is_none() {
        out.push_str(",\"tag\":");
        string(tag, out);
    }
    for (k, v) in fields {
        let key = k.as_raw().unwrap_or(b"");
        if FIRST.iter().any(|f| f.as_bytes() == key) {
            continue;
        }
        field(key, v, out);
    }
    out.push('}');
}

/// `,"key":value`, plus `,"key_base64":"…"` when the value's bytes are not UTF-8.
fn field(key: &[u8], v: &Value, out: &mut String) {
    let key = String::from_utf8_lossy(key);
    out.push(',');
    string(&key, out);
    out.push(':');
    value(v, out, 0);
    if let Some(raw) = v.as_raw()
        && std::str::from_utf8(raw).is_err()
    {
        out.push(',');
        string(&format!("{key}_base64"), out);
        out.push(':');
        string(&base64::engine::general_purpose::STANDARD.encode(raw), out);
    }
}

fn value(v: &Value, out: &mut String, depth: usize) {
    if depth > MAX_DEPTH {
        // Decoding already caps nesting; this keeps the printer's recursion bounded too.
        out.push_str("null");
        return;
    }
    match v {
        Value::Nil => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Value::UInt(u) => {
            let _ = write!(out, "{u}");
        }
        Value::F32(f) if f.is_finite() => {
            let _ = write!(out, "{f}");
        }
        Value::F64(f) if f.is_finite() => {
            let _ = write!(out, "{f}");
        }
        Value::F32(_) | Value::F64(_) => out.push_str("null"),
        Value::Str(b) | Value::Bin(b) => string(&String::from_utf8_lossy(b), out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                value(item, out, depth + 1);
            }
            out.push(']');
        }
        Value::Map(pairs) => {
            out.push('{');
            for (i, (k, item)) in pairs.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                match k.as_raw() {
                    Some(raw) => string(&String::from_utf8_lossy(raw), out),
                    None => {
                        let mut key = String::new();
                        value(k, &mut key, depth + 1);
                        string(&key, out);
                    }
                }
                out.push(':');
                value(item, out, depth + 1);
            }
            out.push('}');
        }
        Value::Ext(0, _) => match EventTime::from_value(v) {
            Ok(t) => {
                out.push('"');
                rfc3339_ns(t.as_nanos(), out);
                out.push('"');
            }
            Err(_) => out.push_str("null"),
        },
        Value::Ext(ty, data) => {
            let _ = write!(out, "{{\"ext\":{ty},\"data\":");
            string(&base64::engine::general_purpose::STANDARD.encode(data), out);
            out.push('}');
        }
    }
}

/// A JSON string literal.
fn string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ` for nanoseconds since the epoch (UTC).
pub fn rfc3339_ns(ns: u64, out: &mut String) {
    let secs = ns / 1_000_000_000;
    let nanos = ns % 1_000_000_000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let _ = write!(
        out,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TagTemplate;
    use crate::pipeline::enrich::{Enricher, Metadata, Origin};
    use crate::pipeline::lines::Line;
    use crate::record::{ChunkId, Entries};

    #[test]
    fn timestamps() {
        let mut s = String::new();
        rfc3339_ns(0, &mut s);
        assert_eq!(s, "1970-01-01T00:00:00.000000000Z");
        s.clear();
        rfc3339_ns(1_773_236_855_097_063_123, &mut s);
        assert_eq!(s, "2026-03-11T13:47:35.097063123Z");
        s.clear();
        rfc3339_ns(951_782_400_000_000_001, &mut s); // 2000-02-29, a leap day
        assert_eq!(s, "2000-02-29T00:00:00.000000001Z");
    }

    #[test]
    fn renders_seed_fields_and_raw_bytes() {
        let meta = Metadata {
            host: "h".into(),
            pod_name: Some("p".into()),
            ..Metadata::default()
        };
        let e = Enricher::new(meta, TagTemplate::parse("logtap.{stream}").unwrap());
        let ctx = e.stream_context(
            &Origin {
                pid: 9,
                comm: "sh".into(),
                host: "h".into(),
                ..Origin::default()
            },
            "stderr",
            None,
        );
        let mut entries = Entries::new(ctx.tag.clone());
        Enricher::encode(
            &ctx,
            Line {
                time_ns: 10_000_000_005,
                bytes: b"a \"q\"",
                partial: false,
            },
            &mut entries,
        );
        Enricher::encode(
            &ctx,
            Line {
                time_ns: 2,
                bytes: b"\xff\xfeok",
                partial: true,
            },
            &mut entries,
        );
        let chunk = Chunk {
            id: ChunkId::generate(),
            tag: ctx.tag.clone(),
            entries: entries.buf.into(),
            records: 2,
        };
        let mut out = String::new();
        assert_eq!(render_chunk(&chunk, &mut out).unwrap(), 2);
        let lines: Vec<serde_json::Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[0]["timestamp"], "1970-01-01T00:00:10.000000005Z");
        assert_eq!(lines[0]["message"], "a \"q\"");
        assert_eq!(lines[0]["pod_name"], "p");
        assert_eq!(lines[0]["namespace"], serde_json::Value::Null);
        assert_eq!(lines[0]["source"], "logtap");
        assert_eq!(lines[0]["stream"], "stderr");
        assert_eq!(lines[0]["tag"], "logtap.stderr");
        assert_eq!(lines[0]["pid"], 9);
        assert!(lines[0].get("partial").is_none());
        assert_eq!(lines[1]["message"], "\u{fffd}\u{fffd}ok");
        assert_eq!(lines[1]["message_base64"], "//5vaw==");
        assert_eq!(lines[1]["partial"], true);
        assert!(out.starts_with("{\"timestamp\":"), "timestamp comes first");
    }
}
