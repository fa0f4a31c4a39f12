//! What the `multiline` setting ([`crate::config::multiline`]) resolves to for each stream and
//! tap file ([`Multiline`], [`Assembly`]): the rule sets it names, compiled.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::builtin;
use super::rules::{DEFAULT_FLUSH_TIMEOUT_MS, ParserSpec, RuleError, RuleSet};
use crate::config::Config;
pub use crate::config::multiline::{Mode, MultilineSpec};

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

    /// Compiles `config`'s `multiline` setting and its `multiline_parser` rule sets.
    pub fn from_config(config: &Config) -> Result<Multiline, MultilineError> {
        Multiline::compile(
            &config.multiline.clone().unwrap_or_default(),
            &config.multiline_parser,
        )
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
    use crate::config::multiline::deserialize_spec;
    use serde::Deserialize;

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
