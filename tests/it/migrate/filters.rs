//! `--include` / `--exclude` read as rclone reads them: the keys a dry run would copy are the
//! files `rclone lsf` lists with the same filter, pattern by pattern, on one tree.

use std::collections::BTreeSet;

use super::*;

const FILES: &[&str] = &[
    "top.jpg",
    "dx.jpg",
    "d1/x.txt",
    "d1/sub1/f.jpg",
    "d1/sub2/dx",
    "a/d1/y.txt",
    "a/top/z.jpg",
    "top/w.txt",
    "logs/2026/app.log",
    "x/logs/old.log",
    "sub3/keep",
    "[odd]/name.txt",
    ".env",
    ".hid/secret",
    "Straße.txt",
    "ü/é/naïve.txt",
    "ü/日本.jpg",
    "file-a.csv",
    "file-b.csv",
    "with space/a b.log",
    "cache/r.tmp",
    "cache/deep/s.tmp",
    "tmpfile",
    "tmpdir/t",
    "logs/a.log",
    "[x].txt",
    "x].txt",
];

/// `flag pattern` for each pattern.
fn flags<'a>(flag: &'a str, patterns: &[&'a str]) -> Vec<&'a str> {
    patterns.iter().flat_map(|p| [flag, *p]).collect()
}

fn ferry_set(
    m: &Migrator,
    src: &Path,
    dst: &Path,
    flag: &str,
    patterns: &[&str],
) -> BTreeSet<String> {
    let mut args = vec![
        "migrate",
        src.to_str().unwrap_or_default(),
        dst.to_str().unwrap_or_default(),
        "--dry-run",
    ];
    args.extend(flags(flag, patterns));
    let out = m.run(&args);
    ok(&out)
        .lines()
        .filter_map(|l| l.strip_prefix("would copy "))
        .filter_map(|l| l.rsplit_once(" (").map(|(k, _)| k.to_owned()))
        .collect()
}

fn rclone_set(src: &Path, flag: &str, patterns: &[&str]) -> BTreeSet<String> {
    let out = Command::new("rclone")
        .args(["lsf", "-R", "--files-only", "--config", "/dev/null"])
        .args(flags(flag, patterns))
        .arg(src)
        .output()
        .expect("rclone");
    ok(&out).lines().map(str::to_owned).collect()
}

#[test]
fn filters_select_what_rclone_selects() {
    let tmp = tempfile::tempdir().expect("tmp");
    let src = tmp.path().join("tree");
    for f in FILES {
        write_file(&src.join(f), 10, 1);
    }
    let dst = tmp.path().join("copy");
    std::fs::create_dir_all(&dst).expect("dst");
    let m = Migrator::new(tmp.path());
    let patterns = [
        "*.jpg",
        "d1/*",
        "d1/**",
        "d1*",
        "sub*",
        "d*",
        "/top/*",
        "top/*",
        "/top.jpg",
        "logs/**",
        "**/logs/*.log",
        "*/sub?/*",
        "{top,dx}.jpg",
        "\\[odd\\]/*",
        "/d1/**",
        "a/**/z.jpg",
        "**",
        "**/**",
        "Stra?e.txt",
        "?/**",
        "file-[!a].csv",
        "[!f]*.csv",
        "file-[^a].csv",
        "**/d1/*",
        "**/.*",
        "**/*",
        "**/ü/**",
        "{logs,cache}/**/*.{log,tmp}",
        "{*.csv,logs/**}",
        "cache/**.tmp",
        "tmp**",
        "**/.*/**",
        "**/d1/**",
        "with space/*",
        "*[[:alpha:]].csv",
        "\\{x\\}",
        "[[]x].txt",
        "[[]odd]/*",
    ];
    let mut differ = Vec::new();
    for flag in ["--include", "--exclude"] {
        let one = patterns.iter().map(|p| vec![*p]);
        let two = [
            vec!["*.jpg", "d1/*"],
            vec!["top/*", "**/logs/*.log"],
            vec!["*.txt", "*.jpg"],
        ];
        for p in one.chain(two) {
            let ours = ferry_set(&m, &src, &dst, flag, &p);
            let theirs = rclone_set(&src, flag, &p);
            if ours != theirs {
                differ.push(format!("{flag} {p:?}: ferry {ours:?}, rclone {theirs:?}"));
            }
        }
    }
    assert!(differ.is_empty(), "{}", differ.join("\n"));
    // A folder: its tree when excluded, as rclone; refused when included (rclone would take
    // nothing by it, silently).
    for p in ["logs/", "*/"] {
        let ours = ferry_set(&m, &src, &dst, "--exclude", &[p]);
        assert_eq!(ours, rclone_set(&src, "--exclude", &[p]), "--exclude {p:?}");
        let out = m.run(&[
            "migrate",
            src.to_str().unwrap_or_default(),
            dst.to_str().unwrap_or_default(),
            "--dry-run",
            "--include",
            p,
        ]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains("names a folder"), "{err}");
    }
}
