//! The spool files the shim writes: where they are, reading one safely, moving a bad one
//! aside, telling when its writer is gone.

use serde_json::Value;
use std::path::{Path, PathBuf};

/// The spool directory of a SQLite database: `<db>.spool`.
pub fn spool_dir_of(db: &Path) -> PathBuf {
    let mut s = db.to_path_buf().into_os_string();
    s.push(".spool");
    s.into()
}

/// True when `spool` holds a spool file (`*.jsonl`) waiting to be stored.
pub fn has_spooled(spool: &Path) -> bool {
    std::fs::read_dir(spool).is_ok_and(|mut d| {
        d.any(|e| e.is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".jsonl")))
    })
}

/// True when a spool file in `spool` that process `pid` wrote (`<pid>-<ns>.jsonl`; a program that
/// `exec`s keeps its pid) holds an event record: a crash, hang, give-up or mismatch, not only
/// a run summary. Reads spool files as ingestion does (regular files only, bounded).
pub fn has_events(spool: &Path, pid: u32) -> bool {
    let prefix = format!("{pid}-");
    let Ok(rd) = std::fs::read_dir(spool) else {
        return false;
    };
    rd.flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .filter_map(|e| match read_spool_file(&e.path()) {
            SpoolRead::Ok { data, .. } => Some(data),
            _ => None,
        })
        .any(|data| {
            data.split(|&b| b == b'\n').any(|line| {
                serde_json::from_slice::<Value>(line)
                    .is_ok_and(|v| v.get("kind").and_then(Value::as_str) == Some("event"))
            })
        })
}

/// Largest spool file ingested (64 MiB: thousands of records of at most 8 KiB each). A larger
/// file is moved aside: it is not something the shim writes.
pub const MAX_SPOOL_FILE: u64 = 64 << 20;

/// What reading one spool file gave.
pub(super) enum SpoolRead {
    Ok {
        data: Vec<u8>,
        file: std::fs::File,
    },
    /// Gone meanwhile (another ingester removed it): nothing to say.
    Gone,
    /// Not a spool file the shim wrote (a symlink, a FIFO, a device, too large): why.
    Bad(String),
    /// Could not be read (permissions): why.
    Unreadable(String),
}

/// Reads a spool file without ever blocking or following a symlink: opened with
/// `O_NOFOLLOW | O_NONBLOCK` (a FIFO opens at once, a symlink fails with ELOOP), then checked
/// with `fstat` to be a regular file of at most [`MAX_SPOOL_FILE`] bytes, read through that
/// same descriptor.
pub(super) fn read_spool_file(path: &Path) -> SpoolRead {
    use std::io::Read;
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return SpoolRead::Gone,
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return SpoolRead::Bad("is a symbolic link".into())
        }
        Err(e) => return SpoolRead::Unreadable(e.to_string()),
    };
    let meta = match file.metadata() {
        Ok(m) => m,
        Err(e) => return SpoolRead::Unreadable(e.to_string()),
    };
    let ft = meta.file_type();
    if !ft.is_file() {
        let what = if ft.is_fifo() {
            "a FIFO"
        } else if ft.is_socket() {
            "a socket"
        } else if ft.is_char_device() || ft.is_block_device() {
            "a device"
        } else if ft.is_dir() {
            "a directory"
        } else {
            "not a regular file"
        };
        return SpoolRead::Bad(format!("is {what}"));
    }
    if meta.len() > MAX_SPOOL_FILE {
        return SpoolRead::Bad(format!(
            "is larger than {} MiB ({} bytes)",
            MAX_SPOOL_FILE >> 20,
            meta.len()
        ));
    }
    let mut data = Vec::with_capacity(meta.len() as usize);
    // One byte more than the bound: a file that grew past it since fstat is caught too.
    match (&file).take(MAX_SPOOL_FILE + 1).read_to_end(&mut data) {
        Ok(_) if data.len() as u64 > MAX_SPOOL_FILE => {
            SpoolRead::Bad(format!("is larger than {} MiB", MAX_SPOOL_FILE >> 20))
        }
        Ok(_) => SpoolRead::Ok { data, file },
        Err(e) => SpoolRead::Unreadable(e.to_string()),
    }
}

/// Moves a bad spool file aside (`<name>.bad`, never ingested again) with one warning.
pub(super) fn move_aside(path: &Path, why: &str) {
    let mut bad = path.as_os_str().to_owned();
    bad.push(".bad");
    let bad = PathBuf::from(bad);
    match std::fs::rename(path, &bad) {
        Ok(()) => eprintln!(
            "fracture: warning: spool file {} {why}: moved aside to {}",
            path.display(),
            bad.display()
        ),
        Err(e) => eprintln!(
            "fracture: warning: spool file {} {why}, and it cannot be moved aside ({e}): remove it",
            path.display()
        ),
    }
}

/// True when the spool file can go: nobody holds its lock (its writer is gone; the shim names
/// a file `.jsonl` only after taking its lock) and it holds no more than the `read` bytes
/// that were stored (its writer may have added lines after they were read, then exited).
/// Asked of the descriptor the file was read through, so the answer is about that file,
/// whatever the path names by now.
pub(super) fn writer_gone(file: &std::fs::File, read: usize) -> bool {
    matches!(file.try_lock(), Ok(())) && file.metadata().is_ok_and(|m| m.len() == read as u64)
}
