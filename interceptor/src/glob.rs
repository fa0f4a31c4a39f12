//! A small shell-glob matcher for `LLT_TAP_FILE` patterns (`/var/log/postgresql/*.log`).
//!
//! Why not `fnmatch(3)`: glibc's may allocate (multibyte locales), and the open hooks stay
//! allocation-free. Semantics are `fnmatch` with `FNM_PATHNAME`: `*` and `?` never match `/`;
//! `[abc]`, `[a-z]`, `[!x]`/`[^x]` classes; `\` escapes the next byte. Bytes, not characters:
//! paths are bytes on Linux. Iterative with single-star backtracking, so matching is
//! O(len(pattern) × len(path)) at worst and cannot recurse or panic.

/// Whether `path` matches `pattern`.
pub fn matches(pattern: &[u8], path: &[u8]) -> bool {
    let (mut p, mut s) = (0usize, 0usize);
    // Where to resume after the last `*`: (pattern index after the star, path index).
    let mut star: Option<(usize, usize)> = None;
    loop {
        if let Some(&pc) = pattern.get(p) {
            let sc = path.get(s).copied();
            match pc {
                b'*' => {
                    star = Some((p.saturating_add(1), s));
                    p = p.saturating_add(1);
                    continue;
                }
                b'?' if sc.is_some_and(|c| c != b'/') => {
                    p = p.saturating_add(1);
                    s = s.saturating_add(1);
                    continue;
                }
                b'[' => match sc.filter(|c| *c != b'/').map(|c| (c, class(pattern, p, c))) {
                    Some((_, Some((true, next)))) => {
                        p = next;
                        s = s.saturating_add(1);
                        continue;
                    }
                    // An unterminated `[` matches itself literally.
                    Some((b'[', None)) => {
                        p = p.saturating_add(1);
                        s = s.saturating_add(1);
                        continue;
                    }
                    _ => {}
                },
                b'\\' => {
                    let lit = pattern.get(p.saturating_add(1)).copied().unwrap_or(b'\\');
                    if sc == Some(lit) {
                        p = p.saturating_add(2).min(pattern.len());
                        s = s.saturating_add(1);
                        continue;
                    }
                }
                _ => {
                    if sc == Some(pc) {
                        p = p.saturating_add(1);
                        s = s.saturating_add(1);
                        continue;
                    }
                }
            }
        } else if s >= path.len() {
            return true;
        }
        // Mismatch: let the last star swallow one more byte (never a `/`).
        match star {
            Some((sp, ss)) if path.get(ss).is_some_and(|c| *c != b'/') => {
                star = Some((sp, ss.saturating_add(1)));
                p = sp;
                s = ss.saturating_add(1);
            }
            _ => return false,
        }
    }
}

/// Index of the `]` closing the class that starts at `open`, if any.
fn class_end(pattern: &[u8], open: usize) -> Option<usize> {
    let mut i = open.saturating_add(1);
    if matches!(pattern.get(i), Some(b'!' | b'^')) {
        i = i.saturating_add(1);
    }
    // A `]` right after the opening (or the negation) is a member, not the end.
    if pattern.get(i) == Some(&b']') {
        i = i.saturating_add(1);
    }
    while let Some(&c) = pattern.get(i) {
        if c == b']' {
            return Some(i);
        }
        i = i.saturating_add(1);
    }
    None
}

/// Evaluates the class at `open` against `c`: (matched, index after the class).
fn class(pattern: &[u8], open: usize, c: u8) -> Option<(bool, usize)> {
    let end = class_end(pattern, open)?;
    let mut i = open.saturating_add(1);
    let negate = matches!(pattern.get(i), Some(b'!' | b'^'));
    if negate {
        i = i.saturating_add(1);
    }
    let mut hit = false;
    let mut first = true;
    while i < end {
        let lo = pattern.get(i).copied()?;
        if lo == b']' && !first {
            break;
        }
        first = false;
        if pattern.get(i.saturating_add(1)) == Some(&b'-') && i.saturating_add(2) < end {
            let hi = pattern.get(i.saturating_add(2)).copied()?;
            hit |= lo <= c && c <= hi;
            i = i.saturating_add(3);
        } else {
            hit |= lo == c;
            i = i.saturating_add(1);
        }
    }
    Some((hit != negate, end.saturating_add(1)))
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn literal_and_wildcards() {
        assert!(matches(b"/var/log/app.log", b"/var/log/app.log"));
        assert!(!matches(b"/var/log/app.log", b"/var/log/app.log.1"));
        assert!(matches(b"/var/log/*.log", b"/var/log/app.log"));
        assert!(matches(b"/var/log/*.log", b"/var/log/.log"));
        assert!(!matches(b"/var/log/*.log", b"/var/log/sub/app.log"));
        assert!(matches(b"/var/log/*/*.log", b"/var/log/sub/app.log"));
        assert!(matches(
            b"/var/log/app-????-??-??.log",
            b"/var/log/app-2026-11-24.log"
        ));
        assert!(!matches(b"/a?c", b"/a/c"));
        assert!(matches(b"*", b"abc"));
        assert!(matches(b"a*b*c", b"aXXbYYbZc"));
        assert!(!matches(b"a*b*c", b"aXXbYY"));
    }

    #[test]
    fn classes_and_escapes() {
        assert!(matches(b"/l/[ab].log", b"/l/a.log"));
        assert!(!matches(b"/l/[ab].log", b"/l/c.log"));
        assert!(matches(b"/l/[!ab].log", b"/l/c.log"));
        assert!(matches(b"/l/[0-9].log", b"/l/7.log"));
        assert!(matches(b"/l/[]].log", b"/l/].log"));
        assert!(matches(b"/l/\\*.log", b"/l/*.log"));
        assert!(!matches(b"/l/\\*.log", b"/l/x.log"));
        assert!(matches(b"/l/[x", b"/l/[x"));
    }

    #[test]
    fn odd_patterns_match_literally_and_never_panic() {
        // Malformed classes and a trailing `\` are literal bytes; `*`/`?` stop at `/`.
        let cases: [(&[u8], &[u8], bool); 24] = [
            (b"[", b"[", true),
            (b"[", b"/x/[y]", false),
            (b"[", b"", false),
            (b"[!", b"[!", true),
            (b"[!", b"!", false),
            (b"[]", b"[]", true),
            (b"[]", b"]", false),
            (b"\\", b"\\", true),
            (b"\\", b"", false),
            (b"**", b"", true),
            (b"**", b"abc", true),
            (b"**", b"/x/[y]", false),
            (b"[a-", b"[a-", true),
            (b"[a-", b"a", false),
            (b"*[", b"x[", true),
            (b"*[", b"/x/[y]", false),
            (b"?*?", b"ab", true),
            (b"?*?", b"abc", true),
            (b"?*?", b"a", false),
            (b"?*?", b"", false),
            (b"?*?", b"a/b", false),
            (b"/x/\\[y]", b"/x/[y]", true),
            (b"/x/[[]y]", b"/x/[y]", true),
            (b"/x/*", b"/x/[y]", true),
        ];
        for (pattern, path, want) in cases {
            assert_eq!(
                matches(pattern, path),
                want,
                "pattern {:?} against path {:?}",
                String::from_utf8_lossy(pattern),
                String::from_utf8_lossy(path)
            );
        }
    }
}
