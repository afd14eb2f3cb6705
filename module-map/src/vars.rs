//! The environment variables through which the launcher (and a user who preloads the shim
//! directly) configures the shim, named once for both sides, and the encoding of
//! `fracture run --set` overrides in [`SET`].
//!
//! Every name here is part of SPEC.md ("Command line") or an internal channel between the
//! launcher, the shim and the shim's own exec-mode helpers.

/// Path of the module map (SPEC.md).
pub const CONFIG: &str = "FRACTURE_CONFIG";
/// Write run statistics as JSON there at exit (SPEC.md).
pub const STATS: &str = "FRACTURE_STATS";
/// Log filter: `error`, `warn`, `info`, `debug` (SPEC.md).
pub const LOG: &str = "FRACTURE_LOG";
/// Crash-report store: a SQLite path or a `postgresql://` URL, or `off`/`none` (SPEC.md).
pub const REPORTS: &str = "FRACTURE_REPORTS";
/// The deployment records are stamped with (SPEC.md "Fleet"; default the host name).
pub const DEPLOYMENT: &str = "FRACTURE_DEPLOYMENT";
/// The local spool directory used when the store is a URL (default
/// `$XDG_STATE_HOME/fracture/fleet.spool`).
pub const SPOOL: &str = "FRACTURE_SPOOL";
/// The shim the launcher preloads, instead of `libfracture.so` beside it (SPEC.md).
pub const SHIM: &str = "FRACTURE_SHIM";
/// `--set KEY=VALUE` overrides, encoded by [`encode_sets`] (launcher to shim).
pub const SET: &str = "FRACTURE_SET";
/// `fracture profile`: where the shim writes the raw profile (launcher to shim).
pub const PROFILE: &str = "FRACTURE_PROFILE";
/// `K:ENV` of an exec-mode helper (shim to its own helper).
pub const HELPER: &str = "FRACTURE_HELPER";
/// The fd of an exec-mode helper's queue (shim to its own helper).
pub const REGION_FD: &str = "FRACTURE_REGION_FD";
/// Unique per exec of an exec-mode helper: `<ns>-<process>-<env>` (shim to its helper and
/// its wrapper: valgrind's `%q{FRACTURE_EXEC_ID}`).
pub const EXEC_ID: &str = "FRACTURE_EXEC_ID";
/// The program's pid, for an exec-mode helper (shim to its own helper).
pub const PROGRAM_PID: &str = "FRACTURE_PROGRAM_PID";

/// Where crash reports go, as `FRACTURE_REPORTS` (or `--db`) names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reports {
    /// `off` or `none`: nothing is recorded.
    Off,
    /// A SQLite database file; its spool is `<file>.spool`.
    Sqlite(std::path::PathBuf),
    /// A `postgresql://` (or `postgres://`) URL; the spool is local, [`SPOOL`] or
    /// `$XDG_STATE_HOME/fracture/fleet.spool`.
    Url(String),
}

/// True when `s` names a PostgreSQL store rather than a file.
pub fn is_store_url(s: &str) -> bool {
    let scheme = |p: &str| s.get(..p.len()).is_some_and(|h| h.eq_ignore_ascii_case(p));
    scheme("postgresql://") || scheme("postgres://")
}

/// `$XDG_STATE_HOME/fracture`, else `~/.local/state/fracture`.
pub fn state_dir() -> Option<std::path::PathBuf> {
    std::env::var_os("XDG_STATE_HOME")
        .filter(|v| !v.is_empty())
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".local/state")))
        .map(|s| s.join("fracture"))
}

impl Reports {
    /// A `--db` value (or `FRACTURE_REPORTS`) as a location.
    pub fn parse(v: &std::ffi::OsStr) -> Reports {
        match v.to_str() {
            Some("off" | "none") => Reports::Off,
            Some(s) if is_store_url(s) => Reports::Url(s.to_string()),
            _ => Reports::Sqlite(v.into()),
        }
    }

    /// `FRACTURE_REPORTS`, else the default database `$XDG_STATE_HOME/fracture/reports.db`
    /// (`Off` when not even a home directory is known).
    pub fn from_env() -> Reports {
        match std::env::var_os(REPORTS).filter(|v| !v.is_empty()) {
            Some(v) => Reports::parse(&v),
            None => state_dir().map_or(Reports::Off, |d| Reports::Sqlite(d.join("reports.db"))),
        }
    }

    /// The local spool directory records for this store are written to.
    pub fn spool_dir(&self) -> Option<std::path::PathBuf> {
        match self {
            Reports::Off => None,
            Reports::Sqlite(p) => {
                let mut s = p.clone().into_os_string();
                s.push(".spool");
                Some(s.into())
            }
            Reports::Url(_) => std::env::var_os(SPOOL)
                .filter(|v| !v.is_empty())
                .map(std::path::PathBuf::from)
                .or_else(|| state_dir().map(|d| d.join("fleet.spool"))),
        }
    }
}

/// The deployment this process's records name: [`DEPLOYMENT`], else the host name.
pub fn deployment() -> String {
    if let Some(d) = std::env::var(DEPLOYMENT)
        .ok()
        .filter(|d| !d.trim().is_empty())
    {
        return d.trim().to_string();
    }
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// `KEY=VALUE` overrides as one environment value: one override a line, with `\` written as
/// `\\` and a newline as `\n`, so that any value (a multi-line YAML block, a trailing
/// backslash) arrives as it was given. A key cannot hold `=`.
pub fn encode_sets(sets: &[(String, String)]) -> String {
    let mut out = String::new();
    for (k, v) in sets {
        if !out.is_empty() {
            out.push('\n');
        }
        escape_into(&mut out, k);
        out.push('=');
        escape_into(&mut out, v);
    }
    out
}

fn escape_into(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
}

/// The inverse of [`encode_sets`]. Lines without `=` are skipped; an unknown escape keeps
/// its backslash.
pub fn decode_sets(text: &str) -> Vec<(String, String)> {
    text.split('\n')
        .filter_map(|line| {
            let (k, v) = line.split_once('=')?;
            Some((unescape(k), unescape(v)))
        })
        .collect()
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

/// The overrides in [`SET`] of this process's environment (none when unset).
pub fn sets_from_env() -> Vec<(String, String)> {
    std::env::var(SET)
        .map(|s| decode_sets(&s))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_value_survives_the_encoding() {
        let sets = vec![
            (
                "processes.p.env.vars".to_string(),
                "{A: \"1\",\n B: \"2\"}".to_string(),
            ),
            (
                "a.b".to_string(),
                "back\\slash\\n not a newline\\".to_string(),
            ),
            ("c".to_string(), " spaces kept \r\n".to_string()),
            ("d".to_string(), String::new()),
            ("e".to_string(), "x=y".to_string()),
        ];
        let enc = encode_sets(&sets);
        assert_eq!(enc.lines().count(), sets.len(), "{enc}");
        assert_eq!(decode_sets(&enc), sets);
    }

    #[test]
    fn decoding_skips_lines_without_a_key_and_keeps_unknown_escapes() {
        let text = "a=1\nno equals sign\nb=x=y\nc=\\q\\\nd=\\\\n\n=empty key";
        let want = [
            ("a", "1"),
            ("b", "x=y"),
            ("c", "\\q\\"),
            ("d", "\\n"),
            ("", "empty key"),
        ];
        let got = decode_sets(text);
        let got: Vec<(&str, &str)> = got.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(got, want);
        assert_eq!(encode_sets(&[]), "");
        assert_eq!(decode_sets(""), vec![]);
    }

    #[test]
    fn every_short_string_of_the_special_characters_survives_as_key_and_value() {
        // Every string of up to four characters over the characters the encoding treats
        // specially (and their neighbours): 1555 strings, each as a value and as a key.
        let alphabet = ['\\', '\n', '\r', 'n', '=', 'é'];
        let mut strings = vec![String::new()];
        let mut last = vec![String::new()];
        for _ in 0..4 {
            last = last
                .iter()
                .flat_map(|s| alphabet.iter().map(move |c| format!("{s}{c}")))
                .collect();
            strings.extend(last.iter().cloned());
        }
        assert_eq!(strings.len(), 1555);
        for s in &strings {
            let sets = vec![
                ("k".to_string(), s.clone()),
                // A key cannot hold `=`.
                (s.replace('=', ""), "v".to_string()),
                (s.replace('=', ""), s.clone()),
            ];
            let enc = encode_sets(&sets);
            assert_eq!(enc.split('\n').count(), sets.len(), "{s:?}: {enc:?}");
            assert_eq!(decode_sets(&enc), sets, "{s:?}: {enc:?}");
        }
    }
}
