//! The built-in rule sets, with Fluent Bit's names and rules (its `src/multiline/flb_ml_parser_*.c`,
//! themselves taken from Google's `fluent-plugin-detect-exceptions`): `java`, `python`, `go`,
//! `ruby`. Each keeps Fluent Bit's flush timeout (4 s). One rule is ours: `python` also takes
//! the `~~^^^^` line Python 3.11+ prints under the failing expression.
//!
//! Note what they join, as in Fluent Bit: the exception block, not the log line in front of it.
//! `java` joins `java.lang.X: msg` and its `\tat …` / `Caused by:` lines; `python` joins
//! `Traceback (most recent call last):` down to the `ValueError: msg` line; `go` joins
//! `panic: …` with its goroutine dumps; `ruby` joins `file:1:in 'm'` with its `from` lines.

use std::time::Duration;

use super::rules::{DEFAULT_FLUSH_TIMEOUT_MS, RuleError, RuleSet, RuleSpec};

/// The names of the built-in rule sets.
pub const NAMES: [&str; 4] = ["java", "python", "go", "ruby"];

/// (state_name, regex, next_state) of each built-in rule set, in Fluent Bit's order.
fn rules(name: &str) -> Option<&'static [(&'static str, &'static str, &'static str)]> {
    Some(match name {
        "java" => &[
            (
                "start_state, java_start_exception",
                r"(.)(?:Exception|Error|Throwable|V8 errors stack trace)[:\r\n]",
                "java_after_exception",
            ),
            (
                "java_after_exception",
                r"^[\t ]*nested exception is:[\t ]*",
                "java_start_exception",
            ),
            ("java_after_exception", r"^[\r\n]*$", "java_after_exception"),
            (
                "java_after_exception, java",
                r"^[\t ]+(?:eval )?at ",
                "java",
            ),
            (
                "java_after_exception, java",
                r"^[\t ]+--- End of inner exception stack trace ---$",
                "java",
            ),
            (
                "java_after_exception, java",
                r"^--- End of stack trace from previous location where exception was thrown ---$",
                "java",
            ),
            (
                "java_after_exception, java",
                r"^[\t ]*(?:Caused by|Suppressed):",
                "java_after_exception",
            ),
            (
                "java_after_exception, java",
                r"^[\t ]*... \d+ (?:more|common frames omitted)",
                "java",
            ),
        ],
        "python" => &[
            (
                "start_state",
                r"^Traceback \(most recent call last\):$",
                "python",
            ),
            ("python", r"^[\t ]+File ", "python_code"),
            ("python_code", r"[^\t ]", "python"),
            // Not in Fluent Bit: Python 3.11+ underlines the failing expression (`    ~~^^^^`);
            // without this rule such a traceback is cut in three.
            ("python", r"^[\t ]+[~^]+[\t ]*$", "python"),
            ("python", r"^(?:[^\s.():]+\.)*[^\s.():]+:", "start_state"),
        ],
        "go" => &[
            ("start_state", r"\bpanic: ", "go_after_panic"),
            ("start_state", r"http: panic serving", "go_goroutine"),
            ("go_after_panic", r"^$", "go_goroutine"),
            (
                "go_after_panic, go_after_signal, go_frame_1",
                r"^$",
                "go_goroutine",
            ),
            ("go_after_panic", r"^\[signal ", "go_after_signal"),
            ("go_goroutine", r"^goroutine \d+ \[[^\]]+\]:$", "go_frame_1"),
            (
                "go_frame_1",
                r"^(?:[^\s.:]+\.)*[^\s.():]+\(|^created by ",
                "go_frame_2",
            ),
            ("go_frame_2", r"^\s", "go_frame_1"),
        ],
        "ruby" => &[
            (
                "start_state, ruby_start_exception",
                r"^.+:\d+:in\s+.*",
                "ruby_after_exception",
            ),
            (
                "ruby_after_exception, ruby",
                r"^\s+from\s+.*:\d+:in\s+.*",
                "ruby",
            ),
        ],
        _ => return None,
    })
}

/// The built-in rule set `name`, compiled; None if there is none of that name.
pub fn rule_set(name: &str) -> Option<Result<RuleSet, RuleError>> {
    let specs: Vec<RuleSpec> = rules(name)?
        .iter()
        .map(|&(from, regex, next)| RuleSpec {
            state_name: from.to_owned(),
            regex: regex.to_owned(),
            next_state: next.to_owned(),
        })
        .collect();
    Some(RuleSet::new(
        name,
        &specs,
        Duration::from_millis(DEFAULT_FLUSH_TIMEOUT_MS),
    ))
}

#[cfg(test)]
mod tests {
    use super::super::rules::Step;
    use super::*;

    /// Runs `lines` through `set` and returns the events (lines joined with `\n`).
    fn events(set: &RuleSet, lines: &[&str]) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let mut pending: Option<String> = None;
        let mut state = None;
        for line in lines {
            match set.step(state, line.as_bytes()) {
                Step::Continue(next) => {
                    let p = pending.get_or_insert_with(String::new);
                    p.push('\n');
                    p.push_str(line);
                    state = Some(next);
                }
                Step::Start(next) => {
                    out.extend(pending.take());
                    pending = Some((*line).to_owned());
                    state = Some(next);
                }
                Step::Alone => {
                    out.extend(pending.take());
                    out.push((*line).to_owned());
                    state = None;
                }
            }
            if state == Some(0) {
                out.extend(pending.take());
                state = None;
            }
        }
        out.extend(pending);
        out
    }

    #[test]
    fn every_builtin_compiles() {
        for name in NAMES {
            let set = rule_set(name).unwrap().unwrap();
            assert_eq!(set.name(), name);
        }
        assert!(rule_set("cobol").is_none());
    }

    #[test]
    fn java_joins_the_exception_block() {
        let set = rule_set("java").unwrap().unwrap();
        let lines = [
            "SEVERE: request failed",
            "java.lang.IllegalStateException: boom",
            "\tat Jul.deep(Jul.java:3)",
            "Caused by: java.io.IOException: disk",
            "\tat Jul.io(Jul.java:9)",
            "\t... 2 more",
            "next line",
        ];
        assert_eq!(
            events(&set, &lines),
            [
                "SEVERE: request failed",
                "java.lang.IllegalStateException: boom\n\tat Jul.deep(Jul.java:3)\nCaused by: java.io.IOException: disk\n\tat Jul.io(Jul.java:9)\n\t... 2 more",
                "next line",
            ]
        );
    }

    #[test]
    fn python_joins_the_traceback() {
        let set = rule_set("python").unwrap().unwrap();
        let lines = [
            "ERROR:root:failed",
            "Traceback (most recent call last):",
            "  File \"x.py\", line 3, in <module>",
            "    f()",
            "    ^^^",
            "ValueError: bad",
            "after",
        ];
        assert_eq!(
            events(&set, &lines),
            [
                "ERROR:root:failed",
                "Traceback (most recent call last):\n  File \"x.py\", line 3, in <module>\n    f()\n    ^^^\nValueError: bad",
                "after",
            ]
        );
    }

    #[test]
    fn go_joins_the_panic() {
        let set = rule_set("go").unwrap().unwrap();
        let lines = [
            "panic: boom",
            "",
            "goroutine 1 [running]:",
            "main.main()",
            "\t/app/main.go:5 +0x1d",
            "exit status 2",
        ];
        assert_eq!(
            events(&set, &lines),
            [
                "panic: boom\n\ngoroutine 1 [running]:\nmain.main()\n\t/app/main.go:5 +0x1d",
                "exit status 2",
            ]
        );
    }

    #[test]
    fn ruby_joins_from_lines() {
        let set = rule_set("ruby").unwrap().unwrap();
        let lines = [
            "app.rb:3:in `f': boom (RuntimeError)",
            "\tfrom app.rb:7:in `<main>'",
            "done",
        ];
        assert_eq!(
            events(&set, &lines),
            [
                "app.rb:3:in `f': boom (RuntimeError)\n\tfrom app.rb:7:in `<main>'",
                "done"
            ]
        );
    }
}
