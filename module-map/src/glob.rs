//! Shell-style glob for the map's `target` (SPEC.md: "`*` also matches `/`"). Matched in the
//! shim before `main` for every process that inherits `LD_PRELOAD`, so it must stay cheap: no
//! allocation, no regex, linear backtracking on the last `*` only.

/// True when `text` matches `pattern` as a whole.
///
/// `*` matches any run of characters including `/`, `?` one character, `[abc]`, `[a-z]` and
/// `[!a]` (or `[^a]`) a class; `\x` matches `x` literally. A `[` without a closing `]` is an
/// ordinary character.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text);
    let (mut pi, mut ti) = (0usize, 0usize);
    // Where to resume after the last `*`: the pattern index after it, and the text index it
    // currently stops at. Because `*` crosses `/`, retrying only the last star is complete.
    let mut star: Option<(usize, usize)> = None;
    loop {
        if pi < p.len() {
            if p[pi] == b'*' {
                star = Some((pi + 1, ti));
                pi += 1;
                continue;
            }
            if let Some(c) = t[ti..].chars().next() {
                if let Some(next_pi) = match_one(p, pi, c) {
                    pi = next_pi;
                    ti += c.len_utf8();
                    continue;
                }
            }
        } else if ti == t.len() {
            return true;
        }
        // Mismatch: let the last `*` swallow one more character, or fail.
        match star {
            Some((spi, sti)) => match t[sti..].chars().next() {
                Some(c) => {
                    let sti = sti + c.len_utf8();
                    star = Some((spi, sti));
                    pi = spi;
                    ti = sti;
                }
                None => return false,
            },
            None => return false,
        }
    }
}

/// Matches the single-character pattern element at `p[pi]` (not `*`) against `c`; on success
/// returns the index after the element.
fn match_one(p: &[u8], pi: usize, c: char) -> Option<usize> {
    match p[pi] {
        b'?' => Some(pi + 1),
        b'[' => match class_end(p, pi) {
            Some(end) => class_matches(&p[pi + 1..end], c).then_some(end + 1),
            None => (c == '[').then_some(pi + 1),
        },
        b'\\' if pi + 1 < p.len() => literal(p, pi + 1, c),
        _ => literal(p, pi, c),
    }
}

/// Compares the (possibly multi-byte) character starting at `p[pi]` with `c`.
fn literal(p: &[u8], pi: usize, c: char) -> Option<usize> {
    let mut buf = [0u8; 4];
    let enc = c.encode_utf8(&mut buf).as_bytes();
    (p.len() >= pi + enc.len() && &p[pi..pi + enc.len()] == enc).then_some(pi + enc.len())
}

/// Index of the `]` closing the class opened at `p[open]`; a `]` right after `[` or `[!` is a
/// member, not the end.
fn class_end(p: &[u8], open: usize) -> Option<usize> {
    let mut i = open + 1;
    if i < p.len() && (p[i] == b'!' || p[i] == b'^') {
        i += 1;
    }
    if i < p.len() && p[i] == b']' {
        i += 1;
    }
    p[i..].iter().position(|&b| b == b']').map(|k| i + k)
}

/// `body` is the class between `[` and `]`.
fn class_matches(body: &[u8], c: char) -> bool {
    let (negate, body) = match body.first() {
        Some(b'!' | b'^') => (true, &body[1..]),
        _ => (false, body),
    };
    // The body is a slice of a `&str` cut at ASCII brackets, so it is valid UTF-8.
    let body = std::str::from_utf8(body).unwrap_or("");
    let mut chars = body.chars().peekable();
    let mut hit = false;
    while let Some(lo) = chars.next() {
        let mut range = chars.clone();
        if range.next() == Some('-') {
            if let Some(hi) = range.next() {
                chars = range;
                hit |= lo <= c && c <= hi;
                continue;
            }
        }
        hit |= lo == c;
    }
    hit != negate
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn star_crosses_slashes() {
        assert!(glob_match("*/file", "/usr/bin/file"));
        assert!(glob_match("*python3*", "/usr/bin/python3.12"));
        assert!(glob_match("*python3*", "python3"));
        assert!(glob_match("*", ""));
        assert!(glob_match("*", "/a/b"));
        assert!(glob_match("/usr/*/file", "/usr/local/bin/file"));
        assert!(!glob_match("*/file", "/usr/bin/filex"));
        assert!(!glob_match("*/file", "file"));
    }

    #[test]
    fn exact_and_question_mark() {
        assert!(glob_match("/usr/bin/file", "/usr/bin/file"));
        assert!(!glob_match("/usr/bin/file", "/usr/bin/fil"));
        assert!(!glob_match("/usr/bin/fil", "/usr/bin/file"));
        assert!(glob_match("/bin/?at", "/bin/cat"));
        assert!(!glob_match("/bin/?at", "/bin/at"));
        assert!(glob_match("?", "é"));
        assert!(glob_match("/bin/??", "/bin/ls"));
        assert!(!glob_match("", "x"));
        assert!(glob_match("", ""));
    }

    #[test]
    fn classes() {
        assert!(glob_match("/bin/[bcd]at", "/bin/cat"));
        assert!(!glob_match("/bin/[bd]at", "/bin/cat"));
        assert!(glob_match("*python3.[0-9]", "/usr/bin/python3.7"));
        assert!(!glob_match("*python3.[0-9]", "/usr/bin/python3.x"));
        assert!(glob_match("x[!a]", "xb"));
        assert!(!glob_match("x[!a]", "xa"));
        assert!(glob_match("x[^a]", "xb"));
        assert!(glob_match("x[]]", "x]"));
        assert!(glob_match("x[!]]", "xa"));
        assert!(glob_match("x[a-]", "x-"));
        // An unclosed `[` is literal.
        assert!(glob_match("x[a", "x[a"));
        assert!(!glob_match("x[a", "xa"));
    }

    #[test]
    fn escapes_and_backtracking() {
        assert!(glob_match(r"a\*b", "a*b"));
        assert!(!glob_match(r"a\*b", "axb"));
        assert!(glob_match("*a*b*c", "xxaxxbxxbxxc"));
        assert!(!glob_match("*a*b*c", "xxaxxbxx"));
        assert!(glob_match("**x", "yyx"));
        assert!(glob_match("a*", "a"));
        assert!(!glob_match("a*b", "a"));
        // Pathological patterns stay fast (no exponential backtracking).
        let text = "a".repeat(200);
        assert!(!glob_match("*a*a*a*a*a*a*a*a*b", &text));
    }
}
