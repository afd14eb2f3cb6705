//! Maps dotted key paths (`processes.parser.on_crash.max_retries`, `modules.m.functions.f`) to
//! 1-based line numbers, so errors found after deserialization can name a line.
//!
//! `serde_yaml_ng::Value` keeps no positions, so this scans the text for block-style mapping
//! keys and sequence items, tracking indentation. It only has to be right for maps that already
//! parsed; anything it cannot follow (keys inside flow collections `{args: [..]}`, block scalars)
//! falls back to the line of the nearest enclosing key it did see. It must never panic: it runs
//! on every map, including hostile ones.

use std::collections::HashMap;

/// Line numbers of the keys of one YAML text.
#[derive(Debug, Clone, Default)]
pub(crate) struct LineIndex {
    lines: HashMap<String, usize>,
}

/// One open block node while scanning: a mapping key or a sequence item.
struct Frame {
    /// Column of the key or of the `-`.
    indent: usize,
    path: String,
    /// Next index for sequence items directly under this node.
    items: usize,
    is_item: bool,
}

/// Appends a mapping key to a dotted path (`a` + `b` = `a.b`).
pub(crate) fn join_key(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

/// Appends a sequence index to a dotted path (`args` + 1 = `args[1]`).
pub(crate) fn join_index(parent: &str, index: usize) -> String {
    format!("{parent}[{index}]")
}

/// The enclosing path: `a.b[2]` -> `a.b` -> `a` -> none.
fn parent_path(path: &str) -> Option<&str> {
    let cut = path.rfind(['.', '['])?;
    Some(&path[..cut])
}

impl LineIndex {
    pub(crate) fn new(text: &str) -> LineIndex {
        let mut lines = HashMap::new();
        let mut stack: Vec<Frame> = Vec::new();
        let mut root_items = 0usize;
        // Lines more indented than this belong to a block scalar (`|`, `>`).
        let mut block_scalar: Option<usize> = None;
        // Open brackets of a flow collection that continues on the next lines.
        let mut flow_depth: i64 = 0;
        for (n, raw) in text.lines().enumerate() {
            let line_no = n + 1;
            if flow_depth > 0 {
                flow_depth += bracket_delta(raw);
                continue;
            }
            let indent = raw.len() - raw.trim_start_matches(' ').len();
            let mut rest = raw[indent..].trim_end();
            if let Some(limit) = block_scalar {
                if indent > limit || rest.is_empty() {
                    continue;
                }
                block_scalar = None;
            }
            if rest.is_empty() || rest.starts_with('#') {
                continue;
            }
            if indent == 0 && (rest.starts_with("---") || rest.starts_with("...")) {
                stack.clear();
                continue;
            }
            let mut col = indent;
            while rest == "-" || rest.starts_with("- ") {
                while stack
                    .last()
                    .is_some_and(|top| top.indent > col || (top.indent == col && top.is_item))
                {
                    stack.pop();
                }
                let (parent, counter) = match stack.last_mut() {
                    Some(top) => (top.path.as_str(), &mut top.items),
                    None => ("", &mut root_items),
                };
                let path = join_index(parent, *counter);
                *counter += 1;
                lines.entry(path.clone()).or_insert(line_no);
                stack.push(Frame {
                    indent: col,
                    path,
                    items: 0,
                    is_item: true,
                });
                let after = &rest[1..];
                let trimmed = after.trim_start_matches(' ');
                col += 1 + after.len() - trimmed.len();
                rest = trimmed;
            }
            if rest.is_empty() || rest.starts_with('#') {
                continue;
            }
            match split_key(rest) {
                Some((key, value)) => {
                    while stack.last().is_some_and(|top| top.indent >= col) {
                        stack.pop();
                    }
                    let parent = stack.last().map_or("", |f| f.path.as_str());
                    let path = join_key(parent, &key);
                    lines.entry(path.clone()).or_insert(line_no);
                    stack.push(Frame {
                        indent: col,
                        path,
                        items: 0,
                        is_item: false,
                    });
                    let value = value.trim_start();
                    if value.starts_with('|') || value.starts_with('>') {
                        block_scalar = Some(col);
                    } else {
                        flow_depth = bracket_delta(value).max(0);
                    }
                }
                None => flow_depth = bracket_delta(rest).max(0),
            }
        }
        LineIndex { lines }
    }

    /// Line of `path`, or of its nearest ancestor the scan saw; `None` for the document itself.
    pub(crate) fn line_of(&self, path: &str) -> Option<usize> {
        let mut p = path;
        loop {
            if let Some(&line) = self.lines.get(p) {
                return Some(line);
            }
            p = parent_path(p)?;
        }
    }
}

/// Line of the repeated `key` in a mapping that starts at `from_line`: serde_yaml_ng reports a
/// duplicate key at the start of its mapping, but the user needs the line of the second copy.
/// Only block-style keys at the indentation of the first copy count.
pub(crate) fn duplicate_key_line(text: &str, from_line: usize, key: &str) -> Option<usize> {
    let mut first_indent = None;
    for (n, raw) in text.lines().enumerate().skip(from_line.saturating_sub(1)) {
        let body = raw.trim_start_matches(' ');
        let mut indent = raw.len() - body.len();
        let mut body = body;
        while let Some(rest) = body.strip_prefix("- ") {
            let trimmed = rest.trim_start_matches(' ');
            indent += 2 + rest.len() - trimmed.len();
            body = trimmed;
        }
        if split_key(body).is_some_and(|(k, _)| k == key) {
            match first_indent {
                None => first_indent = Some(indent),
                Some(i) if i == indent => return Some(n + 1),
                Some(_) => {}
            }
        }
    }
    None
}

/// Splits `key: value` (or `key:` at the end of the line) into the unquoted key and the rest.
/// `None` when the line is not a block mapping key (a scalar, a flow collection, a comment).
fn split_key(s: &str) -> Option<(String, &str)> {
    let first = s.chars().next()?;
    if first == '"' || first == '\'' {
        let (key, end) = quoted(s, first)?;
        let after = s[end..].trim_start_matches(' ');
        let value = after.strip_prefix(':')?;
        return (value.is_empty() || value.starts_with(' ')).then_some((key, value));
    }
    if matches!(
        first,
        '[' | '{' | '#' | '&' | '*' | '!' | '|' | '>' | '%' | '@' | '`' | '?'
    ) {
        return None;
    }
    let mut prev = ' ';
    for (i, c) in s.char_indices() {
        if c == '#' && prev == ' ' {
            return None;
        }
        if c == ':' {
            let value = &s[i + 1..];
            if value.is_empty() || value.starts_with(' ') {
                return Some((s[..i].trim_end().to_owned(), value));
            }
        }
        prev = c;
    }
    None
}

/// The content of a quoted scalar starting at `s[0]` and the byte index after its closing quote.
/// Escapes are resolved only as far as keys in a module map need (`\"`, `\\`, `''`).
fn quoted(s: &str, quote: char) -> Option<(String, usize)> {
    let mut out = String::new();
    let mut chars = s.char_indices().skip(1).peekable();
    while let Some((i, c)) = chars.next() {
        if quote == '"' && c == '\\' {
            if let Some((_, e)) = chars.next() {
                out.push(e);
            }
        } else if c == quote {
            if quote == '\'' && chars.peek().is_some_and(|&(_, n)| n == '\'') {
                chars.next();
                out.push('\'');
            } else {
                return Some((out, i + 1));
            }
        } else {
            out.push(c);
        }
    }
    None
}

/// Opened minus closed flow brackets on a line, ignoring quoted text and comments.
fn bracket_delta(s: &str) -> i64 {
    let mut depth = 0i64;
    let mut quote: Option<char> = None;
    let mut prev = ' ';
    for c in s.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None => match c {
                '"' | '\'' => quote = Some(c),
                '#' if prev == ' ' => break,
                '[' | '{' => depth += 1,
                ']' | '}' => depth -= 1,
                _ => {}
            },
        }
        prev = c;
    }
    depth
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
# comment
target: /usr/bin/file
modules:
  magic:
    object: libmagic.so.1
    functions:
      magic_open:  {ret: handle}
      magic_buffer: {args: [handle,
                            \"in:arg2\", val], ret: str}
      \"odd: name\": {}
    notes: |
      fake: key
    capabilities: [restartable]
processes:
  parser:
    modules:
    - magic
    on_crash:
      retry_envs:
        - {vars: {A: \"1\"}}
        - wrapper: [valgrind]
          vars:
            B: x
      give_up: crash
";

    #[test]
    fn finds_block_keys_and_items() {
        let ix = LineIndex::new(TEXT);
        assert_eq!(ix.line_of("target"), Some(2));
        assert_eq!(ix.line_of("modules.magic"), Some(4));
        assert_eq!(ix.line_of("modules.magic.object"), Some(5));
        assert_eq!(ix.line_of("modules.magic.functions.magic_open"), Some(7));
        assert_eq!(ix.line_of("modules.magic.functions.magic_buffer"), Some(8));
        assert_eq!(ix.line_of("modules.magic.functions.odd: name"), Some(10));
        assert_eq!(ix.line_of("modules.magic.capabilities"), Some(13));
        assert_eq!(ix.line_of("processes.parser"), Some(15));
        assert_eq!(ix.line_of("processes.parser.modules[0]"), Some(17));
        assert_eq!(
            ix.line_of("processes.parser.on_crash.retry_envs[0]"),
            Some(20)
        );
        assert_eq!(
            ix.line_of("processes.parser.on_crash.retry_envs[1]"),
            Some(21)
        );
        assert_eq!(
            ix.line_of("processes.parser.on_crash.retry_envs[1].wrapper"),
            Some(21)
        );
        assert_eq!(
            ix.line_of("processes.parser.on_crash.retry_envs[1].vars.B"),
            Some(23)
        );
        assert_eq!(ix.line_of("processes.parser.on_crash.give_up"), Some(24));
    }

    #[test]
    fn falls_back_to_enclosing_key() {
        let ix = LineIndex::new(TEXT);
        // Inside a flow mapping: the function's line.
        assert_eq!(
            ix.line_of("modules.magic.functions.magic_buffer.args[1]"),
            Some(8)
        );
        assert_eq!(
            ix.line_of("processes.parser.on_crash.retry_envs[0].vars.A"),
            Some(20)
        );
        // Text inside a block scalar is not a key.
        assert_eq!(ix.line_of("modules.magic.notes.fake"), Some(11));
        assert_eq!(ix.line_of("nothing.here"), None);
        assert_eq!(ix.line_of(""), None);
    }

    #[test]
    fn finds_the_second_copy_of_a_key() {
        let text = "a:\n  f: 1\n  g:\n    f: 2\n  f: 3\n";
        assert_eq!(duplicate_key_line(text, 2, "f"), Some(5));
        assert_eq!(duplicate_key_line(text, 2, "h"), None);
        assert_eq!(duplicate_key_line("- f: 1\n  f: 2\n", 1, "f"), Some(2));
    }

    #[test]
    fn survives_garbage() {
        for text in [
            "- - -",
            "\"unterminated: x",
            "a: [\n\n",
            ": :",
            "\u{e9}: \u{e9}",
            "\t- x",
        ] {
            let _ = LineIndex::new(text).line_of("a.b");
        }
    }
}
