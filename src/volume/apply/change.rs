//! Every change of the stream that is not a file's content: deletions, directories,
//! symlinks, hardlinks, clones of the last snapshot's files (renames) and metadata-only
//! changes, each confined to the staging tree.

use std::ffi::OsStr;
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::Ordering;

use anyhow::{Context, anyhow, bail};
use rustix::fs::{AtFlags, FileType, Mode, OFlags};

use super::{Shared, create, new_temp};
use crate::volume::confine::{Confined, clear, kind_at};
use crate::volume::index::{Content, Record};
use crate::volume::meta;
use crate::volume::snapshot::copy_file;
use crate::volume::tree::{check_path, join, shown};
use crate::volume::wire::Msg;

/// Deletions, directories, symlinks, hardlinks, clones, metadata-only changes.
pub(super) fn change(shared: &Shared, conf: &mut Confined, msg: Msg) -> anyhow::Result<()> {
    let mut problems = meta::Problems::default();
    match &msg {
        Msg::Dir { path, .. } => shared.touch(&[path, &[path.as_slice(), b"/x"].concat()]),
        Msg::Delete { path }
        | Msg::Symlink { path, .. }
        | Msg::Link { path, .. }
        | Msg::Clone { path, .. }
        | Msg::Meta { path, .. } => shared.touch(&[path]),
        _ => {}
    }
    match msg {
        Msg::Delete { path } => {
            shared.deleted.fetch_add(1, Ordering::Relaxed);
            let full = join(&shared.staging, &path);
            let (dir, name) = conf.parent(&path)?;
            clear(dir, name, &full)?;
            shared
                .index
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove_tree(&path);
        }
        Msg::Dir { path, meta } => {
            let full = join(&shared.staging, &path);
            let (dir, name) = conf.parent(&path)?;
            if kind_at(dir, name)? != Some(FileType::Directory) {
                clear(dir, name, &full)?;
                rustix::fs::mkdirat(dir, OsStr::from_bytes(name), Mode::from_raw_mode(0o700))
                    .with_context(|| format!("cannot create {}", full.display()))?;
            }
            shared.record(
                path,
                Record {
                    content: Content::Dir,
                    meta,
                    ino: 0,
                    ctime: (0, 0),
                },
            );
        }
        Msg::Symlink { path, target, meta } => {
            let full = join(&shared.staging, &path);
            let (dir, name) = conf.parent(&path)?;
            clear(dir, name, &full)?;
            rustix::fs::symlinkat(OsStr::from_bytes(&target), dir, OsStr::from_bytes(name))
                .with_context(|| format!("cannot create {}", full.display()))?;
            meta::apply_symlink(dir, name, &path, &meta, &mut problems)?;
            shared.record(
                path,
                Record {
                    content: Content::Symlink(target),
                    meta,
                    ino: 0,
                    ctime: (0, 0),
                },
            );
        }
        Msg::Link { path, to } => {
            check_path(&to).map_err(|e| anyhow!("refused {e}"))?;
            let rec = shared
                .index
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entries
                .get(&to)
                .cloned();
            let Some(
                rec @ Record {
                    content: Content::File { .. },
                    ..
                },
            ) = rec
            else {
                bail!(
                    "{}: a hardlink to {}, which is not a file",
                    shown(&path),
                    shown(&to)
                );
            };
            let (to_dir, to_name) = {
                let mut other = conf.share();
                let (d, n) = other.parent(&to)?;
                (rustix::io::dup(d)?, n.to_vec())
            };
            let full = join(&shared.staging, &path);
            let (dir, name) = conf.parent(&path)?;
            clear(dir, name, &full)?;
            rustix::fs::linkat(
                &to_dir,
                OsStr::from_bytes(&to_name),
                dir,
                OsStr::from_bytes(name),
                AtFlags::empty(),
            )
            .with_context(|| format!("cannot link {}", full.display()))?;
            shared.record(path, rec);
        }
        Msg::Clone { path, from, meta } => {
            check_path(&from).map_err(|e| anyhow!("refused {e}"))?;
            let (Some(prev_dir), Some(rec)) = (&shared.prev_dir, shared.prev.entries.get(&from))
            else {
                bail!(
                    "{}: a copy of {}, which the last snapshot lacks",
                    shown(&path),
                    shown(&from)
                );
            };
            let Content::File { size, .. } = rec.content else {
                bail!(
                    "{}: a copy of {}, which is not a file",
                    shown(&path),
                    shown(&from)
                );
            };
            let full = join(&shared.staging, &path);
            let (dir, name) = conf.parent(&path)?;
            if rec.meta == meta {
                clear(dir, name, &full)?;
                std::fs::hard_link(join(prev_dir, &from), &full)
                    .with_context(|| format!("cannot link {}", full.display()))?;
            } else {
                let src = File::open(join(prev_dir, &from))?;
                let out = create(dir, name, &full)?;
                copy_file(&src, &out, size)?;
                meta::apply_fd(&out, &path, &meta, true, &mut problems)?;
            }
            let mut rec = rec.clone();
            rec.meta = problems.applied_to(&path, meta);
            shared.record(path, rec);
        }
        Msg::Meta { path, meta } => {
            let rec = shared
                .index
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entries
                .get(&path)
                .cloned();
            let Some(
                mut rec @ Record {
                    content: Content::File { size, .. },
                    ..
                },
            ) = rec
            else {
                bail!(
                    "{}: new metadata for a file the destination lacks",
                    shown(&path)
                );
            };
            // The staged file may share its inode with the last snapshot: write a copy.
            let full = join(&shared.staging, &path);
            let (dir, name) = conf.parent(&path)?;
            let src = File::from(rustix::fs::openat(
                dir,
                OsStr::from_bytes(name),
                OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )?);
            let (tmp_name, out) = new_temp(dir)?;
            copy_file(&src, &out, size)?;
            meta::apply_fd(&out, &path, &meta, true, &mut problems)?;
            rustix::fs::renameat(
                dir,
                OsStr::from_bytes(&tmp_name),
                dir,
                OsStr::from_bytes(name),
            )
            .with_context(|| format!("cannot replace {}", full.display()))?;
            rec.meta = problems.applied_to(&path, meta);
            shared.record(path, rec);
        }
        other => bail!("unexpected message in the stream: {other:?}"),
    }
    shared.problems().append(&mut problems);
    Ok(())
}
