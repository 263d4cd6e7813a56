//! Where a key's file goes: making room for it (its folders, beneath the root, no symlink
//! followed) and proving, before anything is committed, that the store may put or take a
//! file there (a folder's permissions, a read-only mount, a sticky folder).

use std::io;
use std::path::Path;

use super::confine::Root;
use crate::store::*;

/// Makes room for a file at `path` (relative to `bucket_dir`'s parent): creates parent
/// directories, refuses when a parent is a file or the path is a non-empty directory.
pub(super) fn prepare_key_path(confined: &Root, bucket: &str, key: &ObjectKey) -> Result<()> {
    // The usual case, a key whose folders are there, in three short lookups.
    if confined.ready_for_file(&format!("{bucket}/{}", key.as_str())) {
        return Ok(());
    }
    let root = confined.path();
    // Only looks: folders are made (and a folder left empty at the key's path removed) by the
    // commit thread as it moves the file in, where it also settles two writes that race for
    // one path. A folder made here could be taken away under it, or stand in its way.
    let conflict = |why: String| Error::PathConflict {
        key: key.to_string(),
        why,
    };
    let mut dir = root.join(bucket);
    // A bucket folder a POSIX user replaced with a symlink is refused as the commit thread
    // would refuse it: nothing is written through it.
    if !std::fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir()) {
        return Err(conflict(
            "the bucket's folder is not a plain folder (a symlink?)".into(),
        ));
    }
    let segs: Vec<&str> = key.segments().collect();
    let (last, parents) = segs
        .split_last()
        .ok_or_else(|| conflict("empty key".into()))?;
    for (i, seg) in parents.iter().enumerate() {
        dir.push(seg);
        let parent_is_object = |upto: usize| {
            conflict(format!(
                "its parent {:?} is an object",
                segs[..upto.max(1)].join("/")
            ))
        };
        match std::fs::symlink_metadata(&dir) {
            Ok(m) if m.is_dir() => {}
            Ok(m) if m.is_symlink() => {
                return Err(conflict(format!(
                    "its folder {:?} is a symlink, which Ferry does not follow",
                    segs[..=i].join("/")
                )));
            }
            Ok(_) => return Err(parent_is_object(i + 1)),
            Err(e) if e.kind() == io::ErrorKind::NotADirectory => {
                return Err(parent_is_object(i));
            }
            // Nothing below is there either: the folders are made in the last one there.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return writable(dir.parent().unwrap_or(root), None, bucket, key);
            }
            Err(e) => return Err(Error::io(format!("checking {}", dir.display()), e)),
        }
    }
    let target = dir.join(last);
    if let Ok(m) = std::fs::symlink_metadata(&target)
        && m.is_dir()
        && !super::intent::only_dirs(&target)
    {
        return Err(conflict(
            "other objects exist below it (it is a prefix of their keys)".into(),
        ));
    }
    writable(&dir, Some(&target), bucket, key)
}

/// Refuses a write whose file could not be moved into `dir` (permissions a POSIX user set,
/// a read-only mount) before anything is committed: found only when the commit thread
/// moves the file, the index row would be in and the file not (listed, yet unreadable).
///
/// `file`, the file that would be replaced or moved away in `dir`: in a folder with the
/// sticky bit (`chmod +t`, as `/tmp`), only its owner (or the folder's) may do that, which
/// `access(2)` does not tell.
pub(super) fn writable(
    dir: &Path,
    file: Option<&Path>,
    bucket: &str,
    key: &ObjectKey,
) -> Result<()> {
    use rustix::fs::Access;
    if let Some(f) = file
        && sticky_denies(dir, f)
    {
        return Err(Error::Denied(format!(
            "cannot change {key} in bucket {bucket}: its folder is sticky and another user owns the file"
        )));
    }
    match rustix::fs::access(dir, Access::WRITE_OK | Access::EXEC_OK) {
        Ok(()) => Ok(()),
        Err(
            e @ (rustix::io::Errno::ACCESS | rustix::io::Errno::ROFS | rustix::io::Errno::PERM),
        ) => Err(Error::Denied(format!(
            "cannot write {key} in bucket {bucket}: the store may not write in its folder ({})",
            io::Error::from(e)
        ))),
        // Anything else shows when the file is moved.
        Err(_) => Ok(()),
    }
}

/// Whether `dir` has the sticky bit and `file` in it is another user's, the folder not ours
/// either, and this process not root: then the file cannot be replaced or moved away.
fn sticky_denies(dir: &Path, file: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let me = rustix::process::geteuid();
    if me.is_root() {
        return false;
    }
    let (Ok(d), Ok(f)) = (std::fs::metadata(dir), std::fs::symlink_metadata(file)) else {
        return false;
    };
    d.mode() & 0o1000 != 0 && f.uid() != me.as_raw() && d.uid() != me.as_raw()
}

impl super::FsStore {
    /// Makes the folder an empty folder marker (`photos/`) stands for, where a directory's
    /// files are what users see (`ferry migrate` into a directory): the marker itself lives
    /// in the index, out of sight. `false` when a file or a symlink is where a folder goes
    /// (`photos` beside `photos/`): the marker stays in the index only.
    pub async fn make_marker_folder(&self, bucket: &BucketName, key: &ObjectKey) -> Result<bool> {
        key.check_new_path()?;
        let (root, rel) = (self.confined.clone(), format!("{bucket}/{key}"));
        let made = tokio::task::spawn_blocking(move || root.make_dirs(rel.trim_end_matches('/')))
            .await
            .map_err(|e| Error::Index(format!("file task failed: {e}")))?;
        match made {
            Ok(()) => Ok(true),
            Err(e)
                if e.get_ref()
                    .is_some_and(|i| i.is::<super::confine::NotAFile>()) =>
            {
                Ok(false)
            }
            Err(e) => Err(Error::io(format!("making the folder {key}"), e)),
        }
    }

    /// Removes the folder of an empty folder marker that was deleted, if nothing is in it
    /// (see [`Self::make_marker_folder`]).
    pub async fn remove_marker_folder(&self, bucket: &BucketName, key: &ObjectKey) {
        if key.check_path().is_err() {
            return;
        }
        let (root, rel) = (self.confined.clone(), format!("{bucket}/{key}"));
        let _ =
            tokio::task::spawn_blocking(move || root.remove_empty_dir(rel.trim_end_matches('/')))
                .await;
    }
}
