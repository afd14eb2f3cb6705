//! `--set KEY=VALUE` overrides (SPEC.md, "Command line"): applied to the YAML document before it
//! is converted and validated, so an override is checked exactly like the same text in the file.
//!
//! KEY is a dotted path (`processes.parser.on_crash.max_retries`, `modules.m.functions.f.args[1]`).
//! Names that contain dots (`inflateCopy@ZLIB_1.2.0`) are matched against the existing keys
//! first, longest match wins. An override may add a field, but never invent a module, process or
//! function: a typo in a name would otherwise create an empty entry and silently change nothing.

use serde_yaml_ng::{Mapping, Value};

use crate::budget::{LoadError, MAX_MAP_BYTES, MAX_VALUES};
use crate::locate::{join_index, join_key};

/// Applies one override to `root`; returns the canonical dotted path it wrote, so that errors
/// about the value can be attributed to the `--set` rather than to a line of the file.
pub(crate) fn apply(root: &mut Value, key: &str, value: &str) -> Result<String, String> {
    let key = key.trim();
    if key.is_empty() {
        return Err("empty key; write --set KEY=VALUE, e.g. processes.NAME.timeout_ms=500".into());
    }
    let value = parse_value(value)?;
    let mut node = root;
    let mut path = String::new();
    // Plain key names seen so far, to know when the next level holds user-chosen names.
    let mut names: Vec<String> = Vec::new();
    let mut rest = key;
    loop {
        if let Some(after) = rest.strip_prefix('[') {
            let close = after
                .find(']')
                .ok_or_else(|| format!("unclosed `[` in `{key}`"))?;
            let index: usize = after[..close]
                .trim()
                .parse()
                .map_err(|_| format!("`[{}]` is not a list index", &after[..close]))?;
            rest = &after[close + 1..];
            if node.is_null() {
                *node = Value::Sequence(Vec::new());
            }
            let Value::Sequence(seq) = node else {
                return Err(format!("`{path}` is not a list, so it has no `[{index}]`"));
            };
            if index > seq.len() {
                return Err(format!(
                    "`{path}` has {} entries; `[{index}]` can only replace one or append at [{}]",
                    seq.len(),
                    seq.len()
                ));
            }
            if index == seq.len() {
                seq.push(Value::Null);
            }
            path = join_index(&path, index);
            node = &mut seq[index];
        } else {
            rest = rest.strip_prefix('.').unwrap_or(rest);
            if node.is_null() {
                *node = Value::Mapping(Mapping::new());
            }
            let Value::Mapping(map) = node else {
                let shown = if path.is_empty() {
                    "the document"
                } else {
                    &path
                };
                return Err(format!("`{shown}` is not a mapping, so it has no `{rest}`"));
            };
            let segment = pick_segment(map, rest);
            if segment.is_empty() {
                return Err(format!("empty name in `{key}`"));
            }
            rest = &rest[segment.len()..];
            let last = rest.is_empty();
            let seg_key = Value::String(segment.to_owned());
            if !map.contains_key(&seg_key) {
                if !last {
                    if let Some(what) = name_level(&names) {
                        return Err(format!(
                            "there is no {what} `{segment}` in the map; --set can change an existing {what} or add a whole one (KEY={{...}}), not create one field by field"
                        ));
                    }
                }
                map.insert(seg_key.clone(), Value::Null);
            }
            path = join_key(&path, segment);
            names.push(segment.to_owned());
            node = map
                .get_mut(&seg_key)
                .ok_or_else(|| format!("`{path}` vanished"))?;
        }
        if rest.is_empty() {
            break;
        }
        if !rest.starts_with('.') && !rest.starts_with('[') {
            return Err(format!("cannot read `{rest}` in `{key}`"));
        }
    }
    *node = value;
    Ok(path)
}

/// The next key segment of `rest`: the longest existing key of `map` that `rest` starts with and
/// that ends at a `.`, `[` or the end; otherwise everything up to the next `.` or `[`.
fn pick_segment<'a>(map: &Mapping, rest: &'a str) -> &'a str {
    let ends = rest
        .char_indices()
        .filter(|&(_, c)| c == '.' || c == '[')
        .map(|(i, _)| i)
        .chain(std::iter::once(rest.len()));
    let mut shortest = rest.len();
    let mut longest_existing = None;
    for end in ends {
        shortest = shortest.min(end);
        if map.contains_key(Value::String(rest[..end].to_owned())) {
            longest_existing = Some(end);
        }
    }
    &rest[..longest_existing.unwrap_or(shortest)]
}

/// What the keys at the level after `names` are, when they are user-chosen names rather than
/// schema fields.
fn name_level(names: &[String]) -> Option<&'static str> {
    match names {
        [m] if m == "modules" => Some("module"),
        [p] if p == "processes" => Some("process"),
        [m, _, f] if m == "modules" && f == "functions" => Some("function"),
        [m, _, c] if m == "modules" && c == "callbacks" => Some("callback"),
        _ => None,
    }
}

/// VALUE as a YAML scalar or flow collection (`500`, `[a, b]`, `{return: 0, errno: EIO}`);
/// text that is not valid YAML on its own (`*/file`) is taken as a plain string, and an empty
/// VALUE means "unset" (the default).
/// A VALUE beyond the bounds of [`crate::budget`] is an error, not a string.
fn parse_value(text: &str) -> Result<Value, String> {
    if text.trim().is_empty() {
        return Ok(Value::Null);
    }
    match crate::budget::from_str(text) {
        Ok(v) => Ok(v),
        Err(LoadError::Yaml(_)) => Ok(Value::String(text.to_owned())),
        Err(LoadError::TooLong) => Err(format!(
            "the value is {} bytes; at most {} MiB are read",
            text.len(),
            MAX_MAP_BYTES >> 20
        )),
        Err(LoadError::TooLarge { .. }) => Err(format!(
            "the value expands to more than {MAX_VALUES} YAML values; use fewer aliases of large anchors"
        )),
    }
}
