//! Local directory sides: a directory is a bucket of an fs store rooted at its parent. One a
//! job writes keeps its index beside it (the files are moved into place from there); one a job
//! only reads keeps it under the data directory, so nothing is written beside it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{Opener, Role, Side};
use crate::jobs::{Error, Result};
use crate::registry::Registry;
use crate::store::fs::FsStore;
use crate::store::{self, BucketName};

/// The directory `path` names with its symlinks resolved, the last component's included (a
/// `current -> photos-v2` root is the tree the user means, as for rclone, `cp -r` and
/// rsync); for a path that does not exist yet, its deepest existing ancestor resolved and the
/// rest appended.
pub(super) fn resolved(path: &Path) -> PathBuf {
    let mut missing = Vec::new();
    let mut p = path.to_path_buf();
    loop {
        if let Ok(mut real) = std::fs::canonicalize(&p) {
            real.extend(missing.iter().rev());
            return real;
        }
        match (p.parent(), p.file_name()) {
            (Some(parent), Some(name)) => {
                missing.push(name.to_os_string());
                p = parent.to_path_buf();
            }
            _ => return path.to_path_buf(),
        }
    }
}

/// A directory's place: its path with symlinks resolved.
pub(super) fn dir_place(dir: &Path) -> String {
    format!(
        "dir:{}",
        std::fs::canonicalize(dir)
            .unwrap_or_else(|_| dir.to_path_buf())
            .display()
    )
}

/// Where the index of a directory a job only reads is kept: below the data directory, one
/// folder per directory (named by a digest of its path), so the next run finds its files'
/// hashes again.
fn index_dir(registry: &Registry, dir: &Path) -> store::Result<PathBuf> {
    use md5::Digest;
    let digest = md5::Md5::digest(dir.as_os_str().as_encoded_bytes());
    let at = registry.data().join("dirs").join(hex::encode(&digest[..8]));
    std::fs::create_dir_all(&at)
        .map_err(|e| store::Error::io(format!("creating {}", at.display()), e))?;
    // Said where the index is, for whoever wonders what the folder is.
    let _ = std::fs::write(at.join("directory"), dir.as_os_str().as_encoded_bytes());
    Ok(at)
}

impl Opener {
    /// The store of a directory a job writes (its index in the parent's `.ferry/`, beside
    /// the files it moves into place), opened once per parent.
    async fn writable_dir(
        &mut self,
        parent: &Path,
        bucket: &BucketName,
    ) -> store::Result<Arc<FsStore>> {
        if let Some(s) = self.dirs.get(parent) {
            s.adopt_dir(bucket).await?;
            return Ok(s.clone());
        }
        std::fs::create_dir_all(parent)
            .map_err(|e| store::Error::io(format!("creating {}", parent.display()), e))?;
        let s = FsStore::open_dir(
            &parent.display().to_string(),
            parent,
            bucket,
            self.hash_dirs,
        )
        .await?;
        self.dirs.insert(parent.to_path_buf(), s.clone());
        Ok(s)
    }

    /// Opens a local directory side: its parent is the store's root and its name the bucket.
    pub(super) async fn open_dir(
        &mut self,
        path: &Path,
        role: Role,
        registry: &Registry,
        display: String,
    ) -> Result<Side> {
        let bad = |source: store::Error| Error::Side {
            side: role.word(),
            what: display.clone(),
            source,
        };
        let path = &resolved(path);
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
            return Err(Error::Usage(format!(
                "{} {display}: a directory below the root is needed",
                role.word()
            )));
        };
        if path.exists() && !path.is_dir() {
            return Err(Error::Usage(format!(
                "{} {display} is a file, not a directory",
                role.word()
            )));
        }
        if role == Role::Src && !path.is_dir() {
            return Err(Error::Usage(format!(
                "source directory {display} does not exist"
            )));
        }
        // Its index and internals are not objects to copy.
        if path.join(".ferry/index.db").exists() {
            return Err(Error::Usage(format!(
                "{} {display} is the root of a Ferry fs store: name one of its buckets ({display}/BUCKET), or migrate through the server that serves it",
                role.word()
            )));
        }
        // A destination inside a bucket of another fs store (a server's, an earlier job's
        // destination) would put this job's index among that store's objects: served, listed
        // and, by a `--delete` into that bucket, deleted (a probe).
        let writes_here = role == Role::Dst || self.share_parent;
        let in_bucket_of = |outer: &Path| {
            let db = outer.join(".ferry/index.db");
            db.exists()
                && parent
                    .strip_prefix(outer)
                    .ok()
                    .and_then(|rel| rel.components().next())
                    .is_some_and(|b| {
                        store::fs::index::holds_bucket(&db, &b.as_os_str().to_string_lossy())
                    })
        };
        if writes_here && let Some(outer) = parent.ancestors().skip(1).find(|a| in_bucket_of(a)) {
            return Err(Error::Usage(format!(
                "{} {display} is inside a bucket of the Ferry fs store {}: its index would be \
                 among that bucket's objects; name a directory outside it, or migrate through \
                 the server that serves it",
                role.word(),
                outer.display()
            )));
        }
        // After the checks of what is there: a missing folder is said as missing, whatever
        // its name.
        let name = name.to_string_lossy();
        let bucket = BucketName::parse(&name).map_err(|e| {
            Error::Usage(format!(
                "{} directory {display}: its name is used as a bucket name and {e}",
                role.word()
            ))
        })?;
        let (parent, stand_in) = match self.dry && !path.exists() {
            true => {
                let t = tempfile::TempDir::new()
                    .map_err(|e| bad(store::Error::io("making a dry run's stand-in folder", e)))?;
                std::fs::create_dir(t.path().join(name.as_ref()))
                    .map_err(|e| bad(store::Error::io("making a dry run's stand-in folder", e)))?;
                (t.path().to_path_buf(), Some(Arc::new(t)))
            }
            false => (parent.to_path_buf(), None),
        };
        let parent = parent.as_path();
        // A directory only read (a source; a dry run's destination) keeps its index
        // elsewhere, so nothing is written beside it: under the data directory, one
        // per directory, or for a dry run in a scratch folder removed afterwards.
        let read_only =
            (role == Role::Src && !self.share_parent) || (self.dry && stand_in.is_none());
        let mut scratch = None;
        let store = if read_only {
            let meta = if self.dry {
                let t = tempfile::TempDir::new()
                    .map_err(|e| bad(store::Error::io("making a dry run's scratch folder", e)))?;
                let p = t.path().to_path_buf();
                scratch = Some(Arc::new(t));
                p
            } else {
                index_dir(registry, path).map_err(bad)?
            };
            FsStore::open_dir_read_only(
                &parent.display().to_string(),
                parent,
                &bucket,
                self.hash_dirs,
                &meta,
            )
            .await
            .map_err(bad)?
        } else {
            self.writable_dir(parent, &bucket).await.map_err(bad)?
        };
        // A destination folder nothing can be written to (a read-only mount, its
        // permissions) is said once, here, not as a dead letter per file.
        if role == Role::Dst
            && stand_in.is_none()
            && let Err(e) = rustix::fs::access(
                path,
                rustix::fs::Access::WRITE_OK | rustix::fs::Access::EXEC_OK,
            )
        {
            return Err(Error::Side {
                side: role.word(),
                what: display,
                source: store::Error::Denied(format!(
                    "cannot write to {}: {}",
                    path.display(),
                    std::io::Error::from(e)
                )),
            });
        }
        let not_indexed = store.not_indexed(&bucket);
        let unreadable: Vec<String> = match (&self.deleting, store.unread(&bucket)) {
            (None, _) => Vec::new(),
            (Some(_), None) => store.unreadable(&bucket),
            (Some(filter), Some(unread)) => unread
                .into_iter()
                .filter(|(rel, _)| !filter.leaves_out(rel))
                .map(|(rel, why)| format!("{}: {why}", path.join(rel).display()))
                .collect(),
        };
        if role == Role::Src && !unreadable.is_empty() {
            return Err(Error::Side {
                side: role.word(),
                what: display,
                source: store::Error::Denied(format!(
                    "cannot read {}{}: what it holds would look deleted, and --delete \
                     would remove its copies at the destination; make it readable, \
                     --exclude it, or run without --delete",
                    unreadable[0],
                    match unreadable.len() {
                        1 => String::new(),
                        n => format!(" (and {} more)", n - 1),
                    }
                )),
            });
        }
        Ok(Side {
            store: store.clone(),
            bucket,
            prefix: String::new(),
            // A store opened only to read is no other side's store.
            identity: match read_only {
                true => format!("dir-read:{}", path.display()),
                false => format!("dir:{}", parent.display()),
            },
            place: dir_place(parent),
            display,
            not_indexed,
            stand_in: stand_in.or(scratch),
            dir: Some(super::Dir {
                path: path.to_path_buf(),
                store,
            }),
        })
    }
}
