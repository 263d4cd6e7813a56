//! What `ferry migrate` checks without copying: `--dry-run` (each copy and deletion the job
//! would make, and the keys a side could not name) and `--verify` (both sides compared once
//! the job ends, as its filters see them).

use anyhow::anyhow;

use super::{human, job_err};
use crate::cli::Stdout;
use crate::jobs;
use crate::jobs::list::{Comparer, sides};
use crate::jobs::spec::{Filter, MigrateSpec};
use crate::state::JobRecord;
use crate::transfer::diff;

/// Compares both sides after the job (keys the job's filters leave out are not compared;
/// destination-only keys count only with `--delete`).
pub(super) async fn verify(
    (src, dst, spec): &(jobs::open::Side, jobs::open::Side, MigrateSpec),
    rec: &JobRecord,
) -> anyhow::Result<()> {
    let filter = Filter::new(&spec.options).map_err(job_err)?;
    let (a, b) = sides(src, dst);
    let mut n = 0u64;
    let summary = diff::diff(&a, &b, false, |d| {
        let key = match &d {
            diff::Difference::OnlyInA { key, .. }
            | diff::Difference::Size { key, .. }
            | diff::Difference::Content { key, .. } => key,
            diff::Difference::OnlyInB { key, .. }
            | diff::Difference::Unnamed {
                key, in_a: false, ..
            } => {
                if !spec.options.delete {
                    return;
                }
                key
            }
            diff::Difference::Unnamed { key, .. } => key,
        };
        if filter.key(key)
            && !(spec.options.newer_than_ms.is_some() || spec.options.older_than_ms.is_some())
        {
            n += 1;
            println!("verify: {}", describe(&d));
        }
    })
    .await?;
    if n > 0 {
        return Err(anyhow!(
            "verify: job {}: {} and {} differ in {n} {}",
            rec.id,
            src.display,
            dst.display,
            crate::cli::objects(n)
        ));
    }
    eprintln!(
        "ferry: verify: {} {} compared, no differences ({} by size only)",
        summary.compared,
        crate::cli::objects(summary.compared),
        summary.size_only
    );
    if summary.size_only > 0 {
        // Same size is all that was checked of those: say how to check their bytes.
        eprintln!(
            "ferry: verify: the content of {} {} was not compared (their ETags are of other \
             part sizes, and no checksum is common to both sides); `ferry verify --download` of \
             the two as registered stores reads and compares their bytes",
            summary.size_only,
            crate::cli::objects(summary.size_only)
        );
    }
    Ok(())
}

fn describe(d: &diff::Difference) -> String {
    let shown = |k: &str| crate::cli::shown(k).into_owned();
    match d {
        diff::Difference::OnlyInA { key, size } => {
            format!("missing on the destination: {} ({size} bytes)", shown(key))
        }
        diff::Difference::OnlyInB { key, size } => {
            format!("only on the destination: {} ({size} bytes)", shown(key))
        }
        diff::Difference::Size { key, a, b } => {
            format!("size differs: {} ({a} vs {b} bytes)", shown(key))
        }
        diff::Difference::Content { key, a, b } => {
            format!(
                "content differs: {} ({})",
                shown(key),
                diff::etags_said(a, b)
            )
        }
        diff::Difference::Unnamed { key, in_a, why } => {
            let side = if *in_a { "source" } else { "destination" };
            format!("not compared: {key:?} on the {side}: Ferry cannot name it ({why})")
        }
    }
}

pub(super) async fn dry_run(
    src: &jobs::open::Side,
    dst: &jobs::open::Side,
    dst_exists: bool,
    spec: &MigrateSpec,
    as_json: bool,
) -> anyhow::Result<()> {
    use std::io::Write;
    let filter = Filter::new(&spec.options).map_err(job_err)?;
    let (a, b) = sides(src, dst);
    let mut cmp = Comparer::new(
        &a,
        dst_exists.then_some(&b),
        None,
        &filter,
        &spec.options,
        (&src.display, &dst.display),
    )
    .into_dir(dst.dir.as_ref().map(|d| d.path.as_path()));
    let (mut copies, mut bytes, mut deletes, mut unchanged) = (0u64, 0u64, 0u64, 0i64);
    let mut cannot = 0u64;
    let mut clashes = Clashes::default();
    let mut out = Stdout::lock();
    loop {
        let mut page = cmp.next_page().await.map_err(job_err)?;
        unchanged += page.unchanged;
        // In key order (pairs settled by a HEAD come last), as `Clashes` needs.
        page.tasks.sort_by(|a, b| a.key.cmp(&b.key));
        for t in &page.tasks {
            // The key on each side it touches must be one that side can name: any S3 key
            // for a bucket, a path for a directory (`a//b` cannot be a file), and one a
            // directory may be given (see `ObjectKey::check_new_path`) where it is made.
            let named = |side: &crate::jobs::open::Side, made: bool| {
                crate::store::ObjectKey::parse(&format!("{}{}", side.prefix, t.key)).and_then(|k| {
                    match (side.store.caps().path_semantics, made) {
                        (true, true) => k.check_new_path(),
                        (true, false) => k.check_path(),
                        (false, _) => Ok(()),
                    }
                })
            };
            let sides_ok = match t.action {
                "delete" => named(dst, false),
                _ => named(src, false)
                    .and_then(|()| named(dst, true))
                    .and_then(|()| dst.takes(&t.key, t.size))
                    .and_then(|()| match dst.store.caps().path_semantics {
                        true => clashes.check(&t.key),
                        false => Ok(()),
                    })
                    .and_then(|()| match (&dst.dir, spec.options.delete) {
                        (Some(d), false) => file_in_the_way(&d.path, &t.key),
                        _ => Ok(()),
                    }),
            };
            if let Err(e) = sides_ok {
                cannot += 1;
                match as_json {
                    true => writeln!(
                        out,
                        "{}",
                        serde_json::json!({ "action": "cannot", "would": t.action, "key": t.key, "error": e.to_string() })
                    )?,
                    false => writeln!(out, "cannot {} {:?}: {e}", t.action, t.key)?,
                }
                continue;
            }
            if t.action == "delete" {
                deletes += 1;
                match as_json {
                    true => writeln!(
                        out,
                        "{}",
                        serde_json::json!({ "action": "delete", "key": t.key })
                    )?,
                    false => writeln!(out, "would delete {}", crate::cli::shown(&t.key))?,
                }
            } else if t.size == 0
                && t.key.ends_with('/')
                && dst
                    .dir
                    .as_ref()
                    .is_some_and(|d| crate::jobs::list::marker_folder_there(&d.path, &t.key))
            {
                // An empty folder marker where the directory has the folder (or a file of
                // its name, which keeps the marker in the index only): the dry run reads the
                // directory's files, not the index a run records markers in, so it would
                // list the marker as one to copy after every run.
                unchanged += 1;
            } else {
                copies += 1;
                bytes += t.size as u64;
                match as_json {
                    true => writeln!(
                        out,
                        "{}",
                        serde_json::json!({ "action": "copy", "key": t.key, "size": t.size })
                    )?,
                    false => writeln!(
                        out,
                        "would copy {} ({} bytes)",
                        crate::cli::shown(&t.key),
                        t.size
                    )?,
                }
            }
        }
        if page.done {
            break;
        }
    }
    for (k, why) in src.not_indexed.iter().filter(|(k, _)| filter.key(k)) {
        cannot += 1;
        match as_json {
            true => writeln!(
                out,
                "{}",
                serde_json::json!({ "action": "cannot", "would": "copy", "key": k, "error": why })
            )?,
            false => writeln!(out, "cannot copy {k}: {why}")?,
        }
    }
    if as_json {
        writeln!(
            out,
            "{}",
            serde_json::json!({ "copy": copies, "copy_bytes": bytes, "delete": deletes, "unchanged": unchanged, "cannot": cannot })
        )?;
    } else {
        writeln!(
            out,
            "dry run: {copies} {} ({}) to copy, {deletes} to delete, {unchanged} unchanged",
            crate::cli::objects(copies),
            human(bytes)
        )?;
    }
    out.flush()?;
    // The run would end with dead letters, and exit 1: so does its dry run (rsync and
    // rclone say a partial transfer ahead too), for a script that checks before it runs.
    if cannot > 0 {
        anyhow::bail!(
            "dry run: {cannot} {} Ferry cannot copy (named above) would go to the dead-letter list",
            if cannot == 1 { "key" } else { "keys" }
        );
    }
    Ok(())
}

/// The files a dry run into a directory would make that keys after them in the listing
/// would need as folders (`p` beside `p/x`): the run copies one and makes the other a dead
/// letter, so the dry run names it. Keys come in order, and a key's folder range
/// (`p/`…`p0`) follows it closely, so only the files whose range the listing has not passed
/// are kept (a stack, as deep as the keys are nested).
#[derive(Default)]
struct Clashes {
    files: Vec<String>,
}

impl Clashes {
    fn check(&mut self, key: &str) -> Result<(), crate::store::NameError> {
        // An empty folder marker's folder is made only where no file is in its way (`p/`
        // beside a file `p` stays in the index only): no clash (one with content is refused
        // on its own, `Side::takes`).
        if key.ends_with('/') {
            return Ok(());
        }
        // `0` follows `/`: a key at or past `top0` is under no folder `top/`, nor is any later.
        while self
            .files
            .last()
            .is_some_and(|top| key >= format!("{top}0").as_str())
        {
            self.files.pop();
        }
        if self.files.iter().any(|f| {
            key.strip_prefix(f.as_str())
                .is_some_and(|r| r.starts_with('/'))
        }) {
            return Err(crate::store::NameError::Key {
                key: key.to_owned(),
                why: "a file the job copies is where this key needs a folder (a directory \
                      cannot hold both `p` and `p/x`)",
            });
        }
        if !key.ends_with('/') {
            self.files.push(key.to_owned());
        }
        Ok(())
    }
}

/// A file the destination directory already holds where `key` needs a folder (`p` there,
/// unchanged, and `p/x` to copy), or a folder where it needs a file: the run cannot copy
/// the key, and without `--delete` nothing clears the way.
fn file_in_the_way(dir: &std::path::Path, key: &str) -> Result<(), crate::store::NameError> {
    // An empty folder marker never clashes (see `Clashes`).
    if key.ends_with('/') {
        return Ok(());
    }
    if !key.ends_with('/') && std::fs::symlink_metadata(dir.join(key)).is_ok_and(|m| m.is_dir()) {
        return Err(crate::store::NameError::Key {
            key: key.to_owned(),
            why: "the destination directory holds a folder where this key needs a file",
        });
    }
    let mut at = 0;
    while let Some(i) = key[at..].find('/') {
        let folder = &key[..at + i];
        at += i + 1;
        if std::fs::symlink_metadata(dir.join(folder)).is_ok_and(|m| !m.is_dir()) {
            return Err(crate::store::NameError::Key {
                key: key.to_owned(),
                why: "the destination directory holds a file where this key needs a folder",
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn clashing_keys_are_found_in_listing_order() {
        let mut c = super::Clashes::default();
        for ok in ["a", "p", "p-1", "p.txt"] {
            assert!(c.check(ok).is_ok(), "{ok}");
        }
        assert!(c.check("p/x").is_err());
        assert!(c.check("p/").is_ok(), "an empty marker is no clash");
        assert!(c.check("p/y/z").is_err());
        assert!(c.check("p0").is_ok());
        // Past `p/`: a folder `q/` with files under it is no clash.
        for ok in ["q/", "q/r", "q/s", "qq"] {
            assert!(c.check(ok).is_ok(), "{ok}");
        }
        assert!(c.check("qq/x").is_err());
    }

    #[test]
    fn what_the_destination_holds_in_the_way_is_found() {
        let d = tempfile::tempdir().expect("tmp");
        std::fs::write(d.path().join("p"), b"x").expect("file");
        std::fs::create_dir_all(d.path().join("q/r")).expect("folder");
        for bad in ["p/x", "p/x/y", "q", "q/r"] {
            assert!(super::file_in_the_way(d.path(), bad).is_err(), "{bad}");
        }
        for ok in ["p", "q/", "q/x", "q/r/s", "s/t"] {
            assert!(super::file_in_the_way(d.path(), ok).is_ok(), "{ok}");
        }
    }
}
