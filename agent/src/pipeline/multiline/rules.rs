//! Multi-line rule sets with Fluent Bit's semantics (`[MULTILINE_PARSER]`, `type regex`).
//!
//! A rule set is a state machine over lines. Each rule names the state(s) it applies in
//! (`state_name`, several separated by commas), a `regex` and the `next_state`. A line
//! - matching a rule of `start_state` begins a new event (the pending one is sent first);
//! - matching a rule of the current state of a pending event continues that event;
//! - matching neither is an event of its own.
//!
//! An event whose rule leads back to `start_state` is complete (Fluent Bit sends it when the
//! next line fails to continue it; we send it at once — the same records, sooner). A pending
//! event is also sent when no line continued it for `flush_timeout`.

use std::fmt;
use std::time::Duration;

pub use crate::config::multiline::{DEFAULT_FLUSH_TIMEOUT_MS, ParserSpec, RuleSpec};
use regex::bytes::Regex;

/// The state every rule set starts in, as in Fluent Bit.
pub const START_STATE: &str = "start_state";
/// Why a rule set cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error("multiline parser `{parser}` rule {index}: bad regex: {message}")]
    Regex {
        parser: String,
        index: usize,
        message: String,
    },
    #[error(
        "multiline parser `{parser}` has no rule for `start_state`: no line could begin an event"
    )]
    NoStart { parser: String },
    #[error(
        "multiline parser `{parser}` rule {index}: next_state `{state}` has no rule (name it in some rule's state_name, or use start_state)"
    )]
    UnknownNextState {
        parser: String,
        index: usize,
        state: String,
    },
    #[error("multiline parser `{parser}` rule {index}: empty state_name")]
    EmptyState { parser: String, index: usize },
}

/// A state of a rule set: an index into its state names; 0 is `start_state`.
pub type State = usize;

struct Rule {
    from: Vec<State>,
    regex: Regex,
    next: State,
}

/// A compiled rule set.
pub struct RuleSet {
    name: String,
    states: Vec<String>,
    rules: Vec<Rule>,
    flush_timeout: Duration,
}

impl fmt::Debug for RuleSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RuleSet")
            .field("name", &self.name)
            .field("states", &self.states)
            .field("rules", &self.rules.len())
            .field("flush_timeout", &self.flush_timeout)
            .finish()
    }
}

/// What a line does to the event being assembled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The line continues the pending event; the machine goes to this state.
    Continue(State),
    /// The line begins a new event; the machine goes to this state.
    Start(State),
    /// The line belongs to no event.
    Alone,
}

impl RuleSet {
    /// Compiles `specs` (in order: the first matching rule wins, as in Fluent Bit).
    pub fn new(
        name: &str,
        specs: &[RuleSpec],
        flush_timeout: Duration,
    ) -> Result<RuleSet, RuleError> {
        let mut states = vec![START_STATE.to_owned()];
        let mut id = |s: &str| -> State {
            match states.iter().position(|x| x == s) {
                Some(i) => i,
                None => {
                    states.push(s.to_owned());
                    states.len() - 1
                }
            }
        };
        let mut rules = Vec::with_capacity(specs.len());
        let mut has_rules_from = Vec::new();
        for (index, spec) in specs.iter().enumerate() {
            let from: Vec<State> = spec
                .state_name
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(&mut id)
                .collect();
            if from.is_empty() {
                return Err(RuleError::EmptyState {
                    parser: name.to_owned(),
                    index,
                });
            }
            has_rules_from.extend(from.iter().copied());
            let next = id(spec.next_state.trim());
            let text = strip_slashes(&spec.regex);
            let regex = Regex::new(text).map_err(|e| RuleError::Regex {
                parser: name.to_owned(),
                index,
                message: e.to_string(),
            })?;
            rules.push(Rule { from, regex, next });
        }
        if !has_rules_from.contains(&0) {
            return Err(RuleError::NoStart {
                parser: name.to_owned(),
            });
        }
        for (index, rule) in rules.iter().enumerate() {
            if rule.next != 0 && !has_rules_from.contains(&rule.next) {
                return Err(RuleError::UnknownNextState {
                    parser: name.to_owned(),
                    index,
                    state: states[rule.next].clone(),
                });
            }
        }
        Ok(RuleSet {
            name: name.to_owned(),
            states,
            rules,
            flush_timeout,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// How long a pending event waits for a continuation line.
    pub fn flush_timeout(&self) -> Duration {
        self.flush_timeout
    }

    /// The step `line` (without its newline) makes from `state` (None: no event pending).
    pub fn step(&self, state: Option<State>, line: &[u8]) -> Step {
        if let Some(s) = state.filter(|&s| s != 0)
            && let Some(r) = self
                .rules
                .iter()
                .find(|r| r.from.contains(&s) && r.regex.is_match(line))
        {
            return Step::Continue(r.next);
        }
        match self
            .rules
            .iter()
            .find(|r| r.from.contains(&0) && r.regex.is_match(line))
        {
            Some(r) => Step::Start(r.next),
            None => Step::Alone,
        }
    }
}

/// Fluent Bit writes regexes between slashes: `/^\s+at /`.
fn strip_slashes(text: &str) -> &str {
    text.strip_prefix('/')
        .and_then(|t| t.strip_suffix('/'))
        .filter(|_| text.len() >= 2)
        .unwrap_or(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(from: &str, re: &str, next: &str) -> RuleSpec {
        RuleSpec {
            state_name: from.into(),
            regex: re.into(),
            next_state: next.into(),
        }
    }

    #[test]
    fn custom_rules_step_like_fluent_bit() {
        let set = RuleSet::new(
            "t",
            &[
                spec("start_state", r"/^\d{4}-\d\d-\d\d /", "cont"),
                spec("cont", r"/^\s+at /", "cont"),
            ],
            Duration::from_secs(1),
        )
        .unwrap();
        assert_eq!(set.step(None, b"2024-01-01 boom"), Step::Start(1));
        assert_eq!(set.step(Some(1), b"   at x"), Step::Continue(1));
        assert_eq!(set.step(Some(1), b"2024-01-02 next"), Step::Start(1));
        assert_eq!(set.step(Some(1), b"other"), Step::Alone);
        assert_eq!(
            set.step(None, b"   at x"),
            Step::Alone,
            "no event to continue"
        );
    }

    #[test]
    fn bad_rule_sets_are_named() {
        let e = RuleSet::new("p", &[spec("cont", "x", "cont")], Duration::ZERO).unwrap_err();
        assert!(e.to_string().contains("no rule for `start_state`"), "{e}");
        let e =
            RuleSet::new("p", &[spec("start_state", "x", "nowhere")], Duration::ZERO).unwrap_err();
        assert!(e.to_string().contains("next_state `nowhere`"), "{e}");
        let e = RuleSet::new(
            "p",
            &[spec("start_state", "(", "start_state")],
            Duration::ZERO,
        )
        .unwrap_err();
        assert!(e.to_string().contains("rule 0: bad regex"), "{e}");
    }
}
