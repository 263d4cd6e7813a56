//! The walk of a bucket's folder for a rescan: files handed over a bounded channel from a
//! blocking thread, what cannot be read or named set aside; and the folder checks a bucket's
//! removal makes.

use std::path::Path;

use super::scan::Unlisted;

/// A regular file the walk found, by its key.
pub(super) struct Found {
    pub key: String,
    pub ino: i64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    pub size: i64,
}

/// Whether anything but directories is below `dir` (a missing `dir` has nothing).
pub fn has_files(dir: &Path) -> std::io::Result<bool> {
    match std::fs::read_dir(dir) {
        Ok(entries) => {
            for e in entries {
                let e = e?;
                if !e.file_type()?.is_dir() || has_files(&e.path())? {
                    return Ok(true);
                }
            }
            Ok(false)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Removes a directory tree that holds only directories; fails with `DirectoryNotEmpty`
/// if any file remains.
pub fn remove_empty_tree(dir: &Path) -> std::io::Result<()> {
    match std::fs::read_dir(dir) {
        Ok(entries) => {
            for e in entries {
                let e = e?;
                if e.file_type()?.is_dir() {
                    remove_empty_tree(&e.path())?;
                } else {
                    return Err(std::io::Error::from(std::io::ErrorKind::DirectoryNotEmpty));
                }
            }
            std::fs::remove_dir(dir)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Walks `dir` in name order, sending each regular file, and each entry that cannot be a
/// key's file (a symlink, a special file, a name that is not UTF-8, a folder that cannot be
/// read) as skipped. Nothing below the root fails the walk: a folder removed meanwhile (a
/// delete pruned it) or one that cannot be read is one entry skipped, not a failed rescan.
/// Returns false when the receiver is gone.
/// Folders and entries that could not be read are also added to `unlisted.unreadable` (their
/// path and why): what they hold is unknown, not absent. Files and folders whose names are
/// not UTF-8 go to `unlisted.unnamable`: they exist, but no S3 key can name them.
pub(super) fn walk(
    dir: &Path,
    prefix: &str,
    tx: &tokio::sync::mpsc::Sender<Result<Found, String>>,
    unlisted: &mut Unlisted,
) -> bool {
    use std::os::unix::fs::MetadataExt;
    let skipped = |p: &Path, why: &str| {
        tx.blocking_send(Err(format!("{}: {why}", p.display())))
            .is_ok()
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return true,
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "rescan: cannot read a folder; its files keep their index rows");
            unlisted.unreadable.push(format!("{}: {e}", dir.display()));
            if prefix.is_empty() {
                unlisted.root_unreadable = true;
            } else {
                unlisted.unread_keys.push((
                    prefix.to_owned(),
                    format!("Ferry cannot read this folder: {e}"),
                ));
            }
            return skipped(dir, "a folder it cannot read");
        }
    };
    let mut entries: Vec<_> = entries.filter_map(|e| e.ok()).collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let Some(name) = e.file_name().to_str().map(str::to_owned) else {
            use std::os::unix::ffi::OsStrExt;
            let name = escape_bytes(e.file_name().as_bytes());
            let folder = e.file_type().is_ok_and(|t| t.is_dir());
            unlisted
                .unnamable
                .push(format!("{prefix}{name}{}", if folder { "/" } else { "" }));
            if !skipped(&e.path(), "a name that is not UTF-8") {
                return false;
            }
            continue;
        };
        let m = match std::fs::symlink_metadata(e.path()) {
            Ok(m) => m,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
            Err(err) => {
                unlisted
                    .unreadable
                    .push(format!("{}: {err}", e.path().display()));
                unlisted.unread_keys.push((
                    format!("{prefix}{name}"),
                    format!("Ferry cannot read it: {err}"),
                ));
                if !skipped(&e.path(), "cannot look at it") {
                    return false;
                }
                continue;
            }
        };
        let key = format!("{prefix}{name}");
        if m.is_dir() {
            if !walk(&e.path(), &format!("{key}/"), tx, unlisted) {
                return false;
            }
        } else if m.is_file() {
            // A path no S3 key can be (over 1,024 bytes) was skipped with a log line only:
            // a job copied everything else and said "done", 0 failed (a probe; rclone fails
            // such a file with KeyTooLongError). Named, so a job makes it a dead letter.
            if let Err(why) = crate::store::ObjectKey::parse(&key) {
                unlisted
                    .unkeyable
                    .push((key.clone(), format!("its path cannot be an S3 key: {why}")));
                if !skipped(&e.path(), "a path that cannot be an S3 key") {
                    return false;
                }
                continue;
            }
            let f = Found {
                key,
                ino: m.ino() as i64,
                mtime_ns: crate::store::fs::nanos(m.mtime(), m.mtime_nsec()),
                ctime_ns: crate::store::fs::nanos(m.ctime(), m.ctime_nsec()),
                size: m.len() as i64,
            };
            if tx.blocking_send(Ok(f)).is_err() {
                return false;
            }
        } else if !skipped(&e.path(), kind_of(&m)) {
            return false;
        }
    }
    true
}

/// What an entry that is neither a folder nor a regular file is, for the log.
fn kind_of(m: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = m.file_type();
    if t.is_symlink() {
        "a symlink (not followed)"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_block_device() || t.is_char_device() {
        "a device"
    } else {
        "not a regular file"
    }
}

/// `bytes` as text, each byte that is not part of valid UTF-8 written `\xNN`.
pub fn escape_bytes(mut bytes: &[u8]) -> String {
    let mut out = String::new();
    loop {
        match std::str::from_utf8(bytes) {
            Ok(s) => {
                out.push_str(s);
                return out;
            }
            Err(e) => {
                let (good, rest) = bytes.split_at(e.valid_up_to());
                out.push_str(std::str::from_utf8(good).unwrap_or_default());
                let bad = e.error_len().unwrap_or(rest.len());
                for b in &rest[..bad] {
                    out.push_str(&format!("\\x{b:02X}"));
                }
                bytes = &rest[bad..];
            }
        }
    }
}
