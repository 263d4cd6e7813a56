//! `--include` / `--exclude` and the age limits: which keys (relative to the source prefix)
//! and modification times take part in a job.
//!
//! Patterns are read as rclone reads them, so a filter selects what `rclone copy` with the
//! same flags would: `*` and `?` stay within one path segment, `**` crosses folders, `[...]`
//! and `{a,b}` as usual; a pattern that starts with `/` is anchored at the root of the side,
//! any other matches whole segments at the end of a key (`*.jpg` matches `a/b.jpg`). rclone
//! also walks only the folders an include could match below (the folder prefixes of each
//! pattern, and patterns with `**`), so `--include 'd1/*'` takes `d1/x` but not `a/d1/x`:
//! [`Filter::key`] checks a key's folders the same way (a pattern without a folder, like
//! `*.jpg`, may be in any: with one, every folder is walked). An exclude of a folder
//! (`logs/`) excludes its whole tree; an include of one is refused, since rclone would take
//! no file by it (`logs/**` takes what it holds).

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

use super::Error;
use super::spec::Options;

/// Which keys and modification times take part.
pub struct Filter {
    include: Option<Rules>,
    exclude: Option<Rules>,
    newer_than_ms: Option<i64>,
    older_than_ms: Option<i64>,
}

/// One flag's patterns: what they match of a key, and of its folders (`a/`, `a/b/`).
struct Rules {
    files: GlobSet,
    /// None when no pattern says anything of folders (`*.jpg`): every folder is walked.
    dirs: Option<GlobSet>,
}

impl Rules {
    /// Whether a folder of `key` (one of its proper prefixes ending in `/`) is matched.
    fn any_folder(&self, key: &str) -> bool {
        self.dirs
            .as_ref()
            .is_some_and(|d| key.match_indices('/').any(|(i, _)| d.is_match(&key[..=i])))
    }

    /// Whether every folder of `key` is matched.
    fn every_folder(&self, key: &str) -> bool {
        self.dirs
            .as_ref()
            .is_none_or(|d| key.match_indices('/').all(|(i, _)| d.is_match(&key[..=i])))
    }
}

/// A pattern as a glob over whole keys: anchored at the root with a leading `/`, else
/// matching at the end of the key.
fn glob(pattern: &str) -> Result<globset::Glob, globset::Error> {
    let g = match pattern.strip_prefix('/') {
        Some(anchored) => anchored.to_owned(),
        None => format!("{{{pattern},**/{pattern}}}"),
    };
    GlobBuilder::new(&g).literal_separator(true).build()
}

/// Builds one flag's rules. `include`: folders are matched by each pattern's folder prefixes
/// (rclone walks only those); an exclude's folders only by patterns with `**`.
fn rules(patterns: &[String], flag: &str, include: bool) -> Result<Option<Rules>, Error> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let (mut files, mut dirs) = (GlobSetBuilder::new(), GlobSetBuilder::new());
    let mut folders = false;
    for typed in patterns {
        let bad = |why: &dyn std::fmt::Display| Error::Usage(format!("{flag} {typed:?}: {why}"));
        if typed.is_empty() || typed == "/" {
            return Err(bad(&"an empty pattern matches nothing"));
        }
        // rclone reads `**` anywhere as "anything, folders included"; a glob takes it so only
        // as a whole segment, and as `*` elsewhere (`cache/**.tmp` would stop at a folder).
        if typed.match_indices("**").any(|(i, _)| {
            let (before, after) = (&typed[..i], &typed[i + 2..]);
            !(before.is_empty() || before.ends_with('/'))
                || !(after.is_empty() || after.starts_with('/'))
        }) {
            return Err(bad(
                &"`**` crosses folders only as a whole path segment here (`a/**/b`, \
                 `**/x.tmp`, `x/**`): write `cache/**.tmp` as `cache/**/*.tmp`",
            ));
        }
        // The error of the written pattern, not of a form made of it.
        if let Err(e) = GlobBuilder::new(typed).literal_separator(true).build() {
            return Err(bad(&e.kind()));
        }
        let pattern = match typed.ends_with('/') {
            // rclone: an include of a folder matches no file; an exclude, all it holds.
            true if include => {
                return Err(bad(&format_args!(
                    "names a folder, and an include takes files: {:?} takes what it holds",
                    format!("{typed}**")
                )));
            }
            true => format!("{typed}**"),
            false => typed.clone(),
        };
        files.add(glob(&pattern).map_err(|e| bad(&e.kind()))?);
        if pattern.contains("**") {
            dirs.add(glob(&pattern).map_err(|e| bad(&e.kind()))?);
            folders = true;
        }
        if include && !pattern.trim_start_matches('/').contains('/') {
            // A file name without folders (`*.jpg`) may be in any folder: all are walked
            // (one anchored at the root, `/top.jpg`, is in none).
            if !pattern.starts_with('/') {
                dirs.add(glob("**").map_err(|e| bad(&e.kind()))?);
                folders = true;
            }
        } else if include {
            // `a/b/*.jpg`: folders `a/` and `a/b/`. A prefix that is no glob on its own (a
            // `{x/y,z}` cut in two) cannot tell folders apart: every folder is walked.
            for (i, _) in pattern.match_indices('/') {
                let prefix = &pattern[..=i];
                if prefix == "/" {
                    continue;
                }
                match glob(prefix) {
                    Ok(g) => dirs.add(g),
                    Err(_) => dirs.add(glob("**").map_err(|e| bad(&e.kind()))?),
                };
                folders = true;
            }
        }
    }
    let build = |b: GlobSetBuilder| b.build().map_err(|e| Error::Usage(format!("{flag}: {e}")));
    Ok(Some(Rules {
        files: build(files)?,
        dirs: match folders {
            true => Some(build(dirs)?),
            false => None,
        },
    }))
}

impl Filter {
    pub fn new(o: &Options) -> Result<Self, Error> {
        Ok(Self {
            include: rules(&o.include, "--include", true)?,
            exclude: rules(&o.exclude, "--exclude", false)?,
            newer_than_ms: o.newer_than_ms,
            older_than_ms: o.older_than_ms,
        })
    }

    /// Whether the key takes part at all (both sides; the age test is for the source): an
    /// include matches it and each of its folders, and no exclude matches it or a folder.
    pub fn key(&self, rel: &str) -> bool {
        self.include
            .as_ref()
            .is_none_or(|r| r.files.is_match(rel) && r.every_folder(rel))
            && !self
                .exclude
                .as_ref()
                .is_some_and(|r| r.files.is_match(rel) || r.any_folder(rel))
    }

    pub fn age(&self, modified_ms: i64) -> bool {
        self.newer_than_ms.is_none_or(|t| modified_ms >= t)
            && self.older_than_ms.is_none_or(|t| modified_ms < t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_keys_and_ages() {
        let o = Options {
            include: vec!["*.jpg".into()],
            exclude: vec!["tmp/**".into()],
            newer_than_ms: Some(100),
            older_than_ms: None,
            checksum: false,
            delete: false,
            part_size: 1,
            multipart_threshold: 1,
            max_attempts: 1,
        };
        let f = Filter::new(&o).ok();
        let f = f.as_ref();
        assert_eq!(f.map(|f| f.key("a/b.jpg")), Some(true));
        assert_eq!(f.map(|f| f.key("b.jpg")), Some(true));
        assert_eq!(f.map(|f| f.key("tmp/b.jpg")), Some(false));
        assert_eq!(f.map(|f| f.key("a/b.png")), Some(false));
        assert_eq!(f.map(|f| f.age(100)), Some(true));
        assert_eq!(f.map(|f| f.age(99)), Some(false));
    }

    fn including(pattern: &str) -> Options {
        Options {
            include: vec![pattern.into()],
            exclude: Vec::new(),
            newer_than_ms: None,
            older_than_ms: None,
            checksum: false,
            delete: false,
            part_size: 1,
            multipart_threshold: 1,
            max_attempts: 1,
        }
    }

    /// rclone's reading of patterns (checked against `rclone lsf` in the `it` tests too).
    #[test]
    fn globs_read_as_rclone_reads_them() {
        let keys = |inc: &str| {
            let f = Filter::new(&including(inc)).expect("filter");
            [
                "d1/x", "a/d1/x", "d1/sub/x", "sub1/f", "top/x", "a/top/x", "dx.jpg", "q/dx.jpg",
            ]
            .into_iter()
            .filter(|k| f.key(k))
            .collect::<Vec<_>>()
        };
        // rclone walks only the folders an include's prefixes name: not `a/`.
        assert_eq!(keys("d1/*"), ["d1/x"]);
        assert_eq!(keys("d1/**"), ["d1/x", "d1/sub/x"]);
        assert_eq!(keys("sub*"), Vec::<&str>::new());
        assert_eq!(keys("/top/*"), ["top/x"]);
        assert_eq!(keys("d*"), ["dx.jpg", "q/dx.jpg"]);
        assert_eq!(keys("*.jpg"), ["dx.jpg", "q/dx.jpg"]);
        for bad in ["", "/", "[abc", "cache/**.tmp", "tmp**", "a**/b"] {
            match Filter::new(&including(bad)) {
                Err(Error::Usage(m)) => {
                    assert!(m.starts_with(&format!("--include {bad:?}: ")), "{m}")
                }
                _ => panic!("{bad:?} accepted"),
            }
        }
    }
}
