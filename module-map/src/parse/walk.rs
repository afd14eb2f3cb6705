//! The walker over YAML values: the conversion context [`Cx`] with its typed readers (fields,
//! entries, strings, words, sizes) and the descriptions of values used in messages.

use std::path::Path;

use serde_yaml_ng::Value;

use super::{MapError, MapErrorKind};
use crate::locate::{join_index, join_key, LineIndex};
use crate::spec::parse_byte_count;

/// Conversion context: where errors point.
pub(super) struct Cx<'a> {
    pub(super) file: &'a Path,
    pub(super) index: LineIndex,
    /// Canonical path written by each `--set`, with the KEY as the user wrote it.
    pub(super) set_paths: Vec<(String, String)>,
}

/// The non-null values of a mapping whose keys were checked against a schema.
pub(super) struct Fields<'v> {
    path: String,
    entries: Vec<(String, &'v Value)>,
}

impl<'v> Fields<'v> {
    /// The value of `name`; an explicit `null` counts as absent (so `env:` with nothing after
    /// it means the default environment).
    pub(super) fn get(&self, name: &str) -> Option<(&'v Value, String)> {
        self.entries
            .iter()
            .find(|(k, v)| k == name && !v.is_null())
            .map(|(k, v)| (*v, join_key(&self.path, k)))
    }
}

impl Cx<'_> {
    fn err(&self, kind: MapErrorKind, path: &str, message: impl Into<String>) -> MapError {
        let from_set = self
            .set_paths
            .iter()
            .rev()
            .find(|(p, _)| is_within(p, path));
        let (line, key) = match from_set {
            Some((_, written)) => (None, Some(format!("--set {written}"))),
            None => (
                self.index.line_of(path),
                (!path.is_empty()).then(|| path.to_owned()),
            ),
        };
        MapError {
            kind,
            file: self.file.to_owned(),
            line,
            key,
            message: message.into(),
        }
    }

    pub(super) fn schema(&self, path: &str, message: impl Into<String>) -> MapError {
        self.err(MapErrorKind::Schema, path, message)
    }

    pub(super) fn invalid(&self, path: &str, message: impl Into<String>) -> MapError {
        self.err(MapErrorKind::Invalid, path, message)
    }

    /// The entries of a mapping of user-chosen names (modules, functions, vars); null is empty.
    pub(super) fn entries<'v>(
        &self,
        v: &'v Value,
        path: &str,
        what: &str,
    ) -> Result<Vec<(String, &'v Value)>, MapError> {
        match v {
            Value::Null => Ok(Vec::new()),
            Value::Mapping(m) => m
                .iter()
                .map(|(k, v)| match key_name(k) {
                    Some(k) => Ok((k, v)),
                    None => Err(self.schema(
                        path,
                        format!(
                            "{what} must be named by plain strings, found {}",
                            describe(k)
                        ),
                    )),
                })
                .collect(),
            other => Err(self.schema(
                path,
                format!(
                    "expected {what} as a mapping (NAME: ...), found {}",
                    describe(other)
                ),
            )),
        }
    }

    /// A mapping with a fixed set of keys; any other key is an error naming the allowed ones.
    pub(super) fn fields<'v>(
        &self,
        v: &'v Value,
        path: &str,
        what: &str,
        allowed: &[&str],
    ) -> Result<Fields<'v>, MapError> {
        let entries = match v {
            Value::Null => Vec::new(),
            Value::Mapping(_) => self.entries(v, path, what)?,
            other => {
                return Err(self.schema(
                    path,
                    format!(
                        "expected {what} as a mapping with keys {}, found {}",
                        allowed.join(", "),
                        describe(other)
                    ),
                ))
            }
        };
        for (k, _) in &entries {
            if !allowed.contains(&k.as_str()) {
                return Err(self.schema(
                    &join_key(path, k),
                    format!("unknown key `{k}`; expected one of: {}", allowed.join(", ")),
                ));
            }
        }
        Ok(Fields {
            path: path.to_owned(),
            entries,
        })
    }

    pub(super) fn string(&self, v: &Value, path: &str) -> Result<String, MapError> {
        match v {
            Value::String(s) => Ok(s.clone()),
            other => Err(self.schema(
                path,
                format!("expected a string, found {}; quote it", describe(other)),
            )),
        }
    }

    /// A string where YAML may have typed the text as a number or boolean (`"3"` vs `3`).
    pub(super) fn scalar_string(&self, v: &Value, path: &str) -> Result<String, MapError> {
        match v {
            Value::String(s) => Ok(s.clone()),
            Value::Number(n) => Ok(n.to_string()),
            Value::Bool(b) => Ok(b.to_string()),
            Value::Null => Ok(String::new()),
            other => Err(self.schema(
                path,
                format!(
                    "expected a string, number or boolean, found {}",
                    describe(other)
                ),
            )),
        }
    }

    pub(super) fn strings(
        &self,
        v: &Value,
        path: &str,
        example: &str,
    ) -> Result<Vec<String>, MapError> {
        match v {
            Value::Null => Ok(Vec::new()),
            Value::Sequence(items) => items
                .iter()
                .enumerate()
                .map(|(i, item)| self.scalar_string(item, &join_index(path, i)))
                .collect(),
            other => Err(self.schema(
                path,
                format!(
                    "expected a list of strings such as {example}, found {}",
                    describe(other)
                ),
            )),
        }
    }

    pub(super) fn uint(&self, v: &Value, path: &str) -> Result<u64, MapError> {
        match v.as_u64() {
            Some(n) => Ok(n),
            None => Err(self.schema(
                path,
                format!("expected a non-negative integer, found {}", describe(v)),
            )),
        }
    }

    pub(super) fn boolean(&self, v: &Value, path: &str) -> Result<bool, MapError> {
        v.as_bool().ok_or_else(|| {
            self.schema(
                path,
                format!("expected true or false, found {}", describe(v)),
            )
        })
    }

    /// One of a fixed set of words.
    pub(super) fn word<'w>(
        &self,
        v: &Value,
        path: &str,
        words: &[&'w str],
    ) -> Result<&'w str, MapError> {
        let found = v.as_str().and_then(|s| words.iter().find(|w| **w == s));
        found.copied().ok_or_else(|| {
            self.schema(
                path,
                format!(
                    "expected one of: {}; found {}",
                    words.join(", "),
                    describe(v)
                ),
            )
        })
    }

    /// Bytes or a count: an integer or a string with a binary unit (`1GiB`), or `unlimited`.
    pub(super) fn size_value(&self, v: &Value, path: &str) -> Result<u64, MapError> {
        match v {
            Value::Number(_) => self.uint(v, path),
            Value::String(s) if s.trim() == "unlimited" => Ok(u64::MAX),
            Value::String(s) => parse_byte_count(s).map_err(|e| {
                self.schema(
                    path,
                    format!("{e}; expected a number such as 1GiB, 512MiB, 64KiB or unlimited"),
                )
            }),
            other => Err(self.schema(
                path,
                format!(
                    "expected a number such as 1GiB or 60, found {}",
                    describe(other)
                ),
            )),
        }
    }
}

/// True when `inner` is `outer` or below it (`a.b` is within `a`, `a[0]` too, `ab` is not).
fn is_within(outer: &str, inner: &str) -> bool {
    inner
        .strip_prefix(outer)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('.') || rest.starts_with('['))
}

pub(super) fn check_name(cx: &Cx<'_>, name: &str, path: &str, what: &str) -> Result<(), MapError> {
    if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(cx.schema(
            path,
            format!("`{name}` is not a valid {what} name; use a name without spaces"),
        ));
    }
    Ok(())
}

/// A mapping key as a name: YAML may type `1:` or `true:` as a number or boolean.
fn key_name(k: &Value) -> Option<String> {
    match k {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A short description of a YAML value for "found ..." in messages.
pub(super) fn describe(v: &Value) -> String {
    match v {
        Value::Null => "nothing (null)".into(),
        Value::Bool(b) => format!("`{b}`"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => format!("`{s}`"),
        Value::Sequence(_) => "a list".into(),
        Value::Mapping(_) => "a mapping".into(),
        Value::Tagged(t) => format!("a value tagged {}", t.tag),
    }
}

/// A scalar as the user probably wrote it, for rewriting hints.
pub(super) fn describe_plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => "...".into(),
    }
}
