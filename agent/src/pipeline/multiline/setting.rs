//! The `multiline` setting: its text and TOML forms ([`MultilineSpec`]) and what it resolves to
//! for each stream and tap file ([`Multiline`], [`Assembly`]).
//!
//! - flag / `LOGTAP_MULTILINE`: `MODE` for every stream, or `stdout=MODE,stderr=MODE,file=MODE`;
//! - TOML: `multiline = "MODE"`, or a table `{ stdout, stderr, file, files = { "PATH" = MODE } }`
//!   where a `files` key is a tap file's path (`*` and `?` match as in a shell glob) and wins
//!   over `file`; custom rule sets in `[[multiline_parser]]` (see [`super::rules::ParserSpec`]).
//!
//! MODE: `off` | `write` | a rule set (`java`, `python`, `go`, `ruby`, a custom name) |
//! `write+RULES`.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::builtin;
use super::rules::{DEFAULT_FLUSH_TIMEOUT_MS, ParserSpec, RuleError, RuleSet};

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

/// Why the setting cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MultilineError {
    #[error(
        "unknown multiline parser `{0}`: use java, python, go, ruby or the name of a [[multiline_parser]]"
    )]
    Unknown(String),
    #[error("[[multiline_parser]] `{0}` is defined twice, or takes a built-in name")]
    Duplicate(String),
    #[error(transparent)]
    Rule(#[from] RuleError),
}

/// How one stream's bytes become records.
#[derive(Debug, Clone, Default)]
pub struct Assembly {
    pub write: bool,
    pub rules: Option<Arc<RuleSet>>,
}

/// The resolved setting: an [`Assembly`] per stream and per tap file.
#[derive(Debug, Clone, Default)]
pub struct Multiline {
    stdout: Assembly,
    stderr: Assembly,
    file: Assembly,
    files: Vec<(String, Assembly)>,
}

impl Multiline {
    /// Compiles the rule sets `spec` names (built-in or among `parsers`).
    pub fn compile(
        spec: &MultilineSpec,
        parsers: &[ParserSpec],
    ) -> Result<Multiline, MultilineError> {
        let mut sets: BTreeMap<String, Arc<RuleSet>> = BTreeMap::new();
        for p in parsers {
            if builtin::NAMES.contains(&p.name.as_str()) || sets.contains_key(&p.name) {
                return Err(MultilineError::Duplicate(p.name.clone()));
            }
            let timeout = p
                .flush_timeout
                .map_or(Duration::from_millis(DEFAULT_FLUSH_TIMEOUT_MS), |d| d.0);
            sets.insert(
                p.name.clone(),
                Arc::new(RuleSet::new(&p.name, &p.rules, timeout)?),
            );
        }
        let mut assembly = |m: &Option<Mode>| -> Result<Assembly, MultilineError> {
            let Some(m) = m else {
                return Ok(Assembly::default());
            };
            let rules = match &m.rules {
                None => None,
                Some(name) => Some(match sets.get(name) {
                    Some(set) => Arc::clone(set),
                    None => {
                        let set = Arc::new(
                            builtin::rule_set(name)
                                .ok_or_else(|| MultilineError::Unknown(name.clone()))??,
                        );
                        sets.insert(name.clone(), Arc::clone(&set));
                        set
                    }
                }),
            };
            Ok(Assembly {
                write: m.write,
                rules,
            })
        };
        Ok(Multiline {
            stdout: assembly(&spec.stdout)?,
            stderr: assembly(&spec.stderr)?,
            file: assembly(&spec.file)?,
            files: spec
                .files
                .iter()
                .map(|(path, m)| Ok((path.clone(), assembly(&Some(m.clone()))?)))
                .collect::<Result<_, MultilineError>>()?,
        })
    }

    /// The assembly of `stream` (`stdout`, `stderr`, `file`); `path`: the tap file's.
    pub fn for_stream(&self, stream: &str, path: Option<&str>) -> &Assembly {
        match stream {
            "stdout" => &self.stdout,
            "stderr" => &self.stderr,
            _ => path
                .and_then(|p| {
                    self.files
                        .iter()
                        .find(|(pattern, _)| glob_match(pattern.as_bytes(), p.as_bytes()))
                })
                .map_or(&self.file, |(_, a)| a),
        }
    }
}

/// Shell-style match of `*` (any run of bytes) and `?` (one byte).
fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == b'?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_and_print() {
        for text in ["off", "write", "java", "write+python", "myapp"] {
            assert_eq!(text.parse::<Mode>().unwrap().to_string(), text);
        }
        assert!("write+".parse::<Mode>().is_err());
        let spec: MultilineSpec = "stdout=write,stderr=java".parse().unwrap();
        assert_eq!(spec.stdout, Some("write".parse().unwrap()));
        assert_eq!(spec.stderr, Some("java".parse().unwrap()));
        assert_eq!(spec.file, None);
        let e = "stdin=write".parse::<MultilineSpec>().unwrap_err();
        assert!(e.contains("use stdout, stderr or file"), "{e}");
    }

    #[test]
    fn files_match_by_glob_and_fall_back_to_file() {
        #[derive(Deserialize)]
        struct T {
            #[serde(deserialize_with = "deserialize_spec")]
            multiline: Option<MultilineSpec>,
        }
        let t: T = toml::from_str(
            r#"multiline = { stderr = "java", file = "write", files = { "/var/log/app/*.log" = "write+go" } }"#,
        )
        .unwrap();
        let m = Multiline::compile(&t.multiline.unwrap(), &[]).unwrap();
        assert!(!m.for_stream("stdout", None).write);
        assert_eq!(
            m.for_stream("stderr", None).rules.as_ref().unwrap().name(),
            "java"
        );
        let a = m.for_stream("file", Some("/var/log/app/x.log"));
        assert!(a.write && a.rules.as_ref().unwrap().name() == "go");
        let b = m.for_stream("file", Some("/var/log/other.log"));
        assert!(b.write && b.rules.is_none());
        assert!(glob_match(b"a*b?c", b"axxbyc"));
        assert!(!glob_match(b"a*b?c", b"axxbc"));
    }

    #[test]
    fn unknown_and_duplicate_parsers_are_named() {
        let e = Multiline::compile(&"cobol".parse().unwrap(), &[]).unwrap_err();
        assert!(
            e.to_string().contains("unknown multiline parser `cobol`"),
            "{e}"
        );
        let p = ParserSpec {
            name: "java".into(),
            flush_timeout: None,
            rules: Vec::new(),
        };
        let e = Multiline::compile(&MultilineSpec::default(), &[p]).unwrap_err();
        assert_eq!(e, MultilineError::Duplicate("java".into()));
    }
}
