//! The [`MapError`] type: what went wrong in a module map, and where.

use std::fmt;
use std::path::{Path, PathBuf};

/// What kind of problem a [`MapError`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MapErrorKind {
    /// The file could not be read.
    Io,
    /// The text is not valid YAML.
    Syntax,
    /// A key or value does not fit the schema: unknown key, wrong type, bad spec string, bad
    /// `--set` key.
    Schema,
    /// The entries contradict each other or a limit (unknown module, module in two processes).
    Invalid,
    /// Reported by a later stage through [`MapError::at`] (e.g. a function the object does not
    /// export).
    Resolve,
}

/// A problem with a module map, located as precisely as known.
///
/// Displays as one line, `FILE:LINE: KEY: MESSAGE`, leaving out the parts that are unknown; the
/// message says what to change where it can. Errors about a `--set` override have the key
/// `--set KEY` and no line.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MapError {
    pub(super) kind: MapErrorKind,
    pub(super) file: PathBuf,
    pub(super) line: Option<usize>,
    pub(super) key: Option<String>,
    pub(super) message: String,
}

impl MapError {
    /// An error in the same format for later stages (the shim, the launcher), e.g.
    /// `MapError::at(&map.file, Some(f.line), Some(key), "function not exported by libmagic.so.1")`.
    pub fn at(
        file: impl Into<PathBuf>,
        line: Option<usize>,
        key: Option<String>,
        message: impl Into<String>,
    ) -> MapError {
        MapError {
            kind: MapErrorKind::Resolve,
            file: file.into(),
            line,
            key,
            message: message.into(),
        }
    }

    pub(super) fn new(kind: MapErrorKind, file: &Path, message: impl Into<String>) -> MapError {
        MapError {
            kind,
            file: file.to_owned(),
            line: None,
            key: None,
            message: message.into(),
        }
    }

    pub fn kind(&self) -> MapErrorKind {
        self.kind
    }
    /// The map's file, or `<string>` style placeholders given to
    /// [`parse_map_str`](super::parse_map_str).
    pub fn file(&self) -> &Path {
        &self.file
    }
    /// 1-based line of the offending key, when known.
    pub fn line(&self) -> Option<usize> {
        self.line
    }
    /// Dotted key path (`modules.magic.functions.magic_file.args[1]`) or `--set KEY`.
    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }
    /// The message alone, without file, line or key.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for MapError {
    /// Control characters (a newline in a quoted key, in a value quoted back in the message)
    /// are shown escaped, so the error stays one line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_one_line(f, &self.file.display().to_string())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(key) = &self.key {
            f.write_str(": ")?;
            write_one_line(f, key)?;
        }
        f.write_str(": ")?;
        write_one_line(f, &self.message)
    }
}

/// `s` with its control characters escaped (`\n`, `\u{85}`).
fn write_one_line(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    for c in s.chars() {
        if c.is_control() {
            write!(f, "{}", c.escape_default())?;
        } else {
            write!(f, "{c}")?;
        }
    }
    Ok(())
}

impl std::error::Error for MapError {}
