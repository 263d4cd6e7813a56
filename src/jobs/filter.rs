//! `--include` / `--exclude` and the age limits: which keys (relative to the source prefix)
//! and modification times take part in a job.
//!
//! Patterns are read as rclone reads them, so a filter selects what `rclone copy` with the
//! same flags would (a test compares the two): each becomes a regular expression over the
//! key, where `*` is any run of characters but `/`, `**` any run at all, `?` one character
//! but `/`, `[...]` a class as written (`[^a]` negates; `[!a]` is `!` or `a`), `{a,b}` either,
//! `\x` the character x. A pattern that starts with `/` is anchored at the root of the side;
//! any other matches at the start of a path segment and runs to the end of the key (`*.jpg`
//! matches `a/b.jpg`; `**/d1/*` needs a folder before `d1`). rclone also walks only the
//! folders an include could match below (the folder prefixes of each pattern, and all below
//! a `**`), so `--include 'd1/*'` takes `d1/x` but not `a/d1/x`: [`Filter::key`] checks a
//! key's folders the same way (a pattern without a folder, like `*.jpg`, may be in any: with
//! one, every folder is walked). An exclude of a folder (`logs/`) excludes its whole tree;
//! an include of one is refused, since rclone would take no file by it (`logs/**` takes
//! what it holds).

use regex_automata::meta::Regex;

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
    files: Regex,
    /// None when no pattern says anything of folders (`*.jpg`): every folder is walked.
    dirs: Option<Regex>,
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

/// A pattern as rclone reads it, as a regular expression over a whole key (or a folder's
/// path with its `/`): see the module docs. `Err` says what is wrong with the pattern.
fn to_regex(glob: &str) -> Result<String, String> {
    let mut re = String::new();
    let glob = match glob.strip_prefix('/') {
        Some(anchored) => {
            re.push('^');
            anchored
        }
        None => {
            re.push_str("(?:^|/)");
            glob
        }
    };
    let (mut stars, mut brackets, mut braces, mut escaped) = (0, 0usize, false, false);
    // In a class: how many characters since its `[` (a `^` first does not count), and
    // whether a POSIX class (`[:alpha:]`) is open in it.
    let (mut in_class, mut posix, mut go_class, mut class_escape) = (0usize, false, false, false);
    // Whether the class's first character may still be a `^` that negates it.
    let mut negatable = false;
    let flush = |re: &mut String, stars: &mut u32| -> Result<(), String> {
        match std::mem::take(stars) {
            0 => {}
            1 => re.push_str("[^/]*"),
            2 => re.push_str(".*"),
            _ => return Err("more than two `*` in a row".into()),
        }
        Ok(())
    };
    for c in glob.chars() {
        if escaped {
            literal(&mut re, c);
            escaped = false;
            continue;
        }
        if c != '*' {
            flush(&mut re, &mut stars)?;
        }
        if brackets > 0 {
            // rclone copies what is between brackets as written, counting `[` and `]` for its
            // own errors, and Go's regular expressions read it: a class's `[` is itself unless
            // it opens a POSIX class (`[:alpha:]`), a `]` first in it is itself, the first
            // other `]` ends it; what follows up to rclone's last `]` is read outside it. So
            // `[[]x].txt` is `[` then `x].txt`. What the regex crate reads otherwise (a nested
            // class, `&&`, `~~`, a stray `]` or `{`) is escaped.
            match c {
                '[' => brackets += 1,
                ']' => brackets -= 1,
                _ => {}
            }
            if class_escape {
                re.push(c);
                class_escape = false;
            } else if go_class {
                let first = in_class == 0;
                in_class += 1;
                if c != '^' {
                    negatable = false;
                }
                match c {
                    ']' if posix => {
                        posix = false;
                        // Go knows these names only (rclone refuses `[[:foo:]]`).
                        let name = re
                            .rsplit_once("[:")
                            .map_or("", |(_, n)| n)
                            .trim_end_matches(':');
                        if !POSIX_CLASSES.contains(&name) {
                            return Err(format!("`[:{name}:]` is no character class"));
                        }
                        re.push(']');
                    }
                    ']' if first => re.push_str("\\]"),
                    ']' => {
                        go_class = false;
                        re.push(']');
                    }
                    '^' if first && negatable => {
                        in_class = 0;
                        negatable = false;
                        re.push('^');
                    }
                    ':' if re.ends_with("\\[") && !posix => {
                        // `[:` opens a POSIX class: its `[` is not escaped.
                        re.truncate(re.len() - 2);
                        re.push_str("[:");
                        posix = true;
                    }
                    '[' => re.push_str("\\["),
                    '\\' => {
                        re.push('\\');
                        class_escape = true;
                    }
                    '&' | '~' => {
                        re.push('\\');
                        re.push(c);
                    }
                    c => re.push(c),
                }
            } else {
                match c {
                    '[' => {
                        go_class = true;
                        in_class = 0;
                        negatable = true;
                        re.push('[');
                    }
                    ']' | '{' | '}' => {
                        re.push('\\');
                        re.push(c);
                    }
                    c => re.push(c),
                }
            }
            continue;
        }
        match c {
            '\\' => escaped = true,
            '*' => stars += 1,
            '?' => re.push_str("[^/]"),
            // rclone's count ended, Go's class goes on (`[][]`: `]` or `[`).
            '[' if go_class => {
                re.push_str("\\[");
                brackets = 1;
                in_class += 1;
            }
            '[' => {
                re.push('[');
                brackets = 1;
                go_class = true;
                in_class = 0;
                negatable = true;
            }
            ']' => return Err("a `]` with no `[`".into()),
            '{' if braces => return Err("a `{` inside `{...}`".into()),
            '{' => {
                re.push_str("(?:");
                braces = true;
            }
            '}' if !braces => return Err("a `}` with no `{`".into()),
            '}' => {
                re.push(')');
                braces = false;
            }
            ',' if braces => re.push('|'),
            c => literal(&mut re, c),
        }
    }
    flush(&mut re, &mut stars)?;
    if escaped {
        return Err("it ends with `\\`".into());
    }
    if brackets > 0 || go_class {
        return Err("a `[` with no `]`".into());
    }
    if braces {
        return Err("a `{` with no `}`".into());
    }
    re.push('$');
    Ok(re)
}

/// The POSIX classes Go's regular expressions (rclone's) know.
const POSIX_CLASSES: &[&str] = &[
    "alnum", "alpha", "ascii", "blank", "cntrl", "digit", "graph", "lower", "print", "punct",
    "space", "upper", "word", "xdigit",
];

/// What `**` becomes ([`to_regex`]): every key, and every folder.
const EVERY_FOLDER: &str = "(?:^|/).*$";

/// Appends `c` to a regular expression as itself: the characters the syntax gives a meaning
/// escaped, and only those (`\<` is a word boundary, not `<`).
fn literal(re: &mut String, c: char) {
    if "\\.+*?()|[]{}^$#&-~".contains(c) {
        re.push('\\');
    }
    re.push(c);
}

/// The regular expressions as one matcher.
fn compile(patterns: &[String], flag: &str) -> Result<Regex, Error> {
    Regex::new_many(patterns).map_err(|e| Error::Usage(format!("{flag}: {e}")))
}

/// Builds one flag's rules. `include`: folders are matched by each pattern's folder prefixes
/// (rclone walks only those); an exclude's folders only by patterns with `**`.
fn rules(patterns: &[String], flag: &str, include: bool) -> Result<Option<Rules>, Error> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let every_folder = || EVERY_FOLDER.to_owned();
    let (mut files, mut dirs) = (Vec::new(), Vec::new());
    for typed in patterns {
        let bad = |why: &dyn std::fmt::Display| Error::Usage(format!("{flag} {typed:?}: {why}"));
        if typed.is_empty() || typed == "/" {
            return Err(bad(&"an empty pattern matches nothing"));
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
        let re = to_regex(&pattern).map_err(|why| bad(&why))?;
        // Compiled alone first, so an error names its pattern and says what is wrong (a
        // class range backwards, `[z-x]`), not "error parsing pattern 0".
        if let Err(e) = Regex::new(&re) {
            return Err(bad(&e
                .syntax_error()
                .map_or_else(|| e.to_string(), |s| s.to_string())
                .lines()
                .last()
                .unwrap_or("not a pattern")
                .trim()
                .to_owned()));
        }
        // `**` may stand for folders. An include walks every folder below what comes before
        // it (`cache/**.tmp` walks all of `cache/`); an exclude leaves out the folders the
        // whole pattern matches (`logs/**` leaves out `logs/` and all below), as rclone.
        if let Some(i) = pattern.find("**") {
            dirs.push(match include {
                true => to_regex(&pattern[..i + 2]).unwrap_or_else(|_| every_folder()),
                false => re.clone(),
            });
        }
        files.push(re);
        if include && !pattern.trim_start_matches('/').contains('/') {
            // A file name without folders (`*.jpg`) may be in any folder: all are walked
            // (one anchored at the root, `/top.jpg`, is in none).
            if !pattern.starts_with('/') {
                dirs.push(every_folder());
            }
        } else if include {
            // `a/b/*.jpg`: folders `a/` and `a/b/`. A prefix that is no pattern on its own (a
            // `{x/y,z}` cut in two) cannot tell folders apart: every folder is walked.
            for (i, _) in pattern.match_indices('/') {
                let prefix = &pattern[..=i];
                if prefix != "/" {
                    dirs.push(to_regex(prefix).unwrap_or_else(|_| every_folder()));
                }
            }
        }
    }
    Ok(Some(Rules {
        files: compile(&files, flag)?,
        dirs: match dirs.is_empty() {
            true => None,
            false => Some(compile(&dirs, flag)?),
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

    /// Whether `rel` (a key, or a folder with a trailing `/`) is out of the job: a key the
    /// filter leaves out, or a folder nothing below which can take part (an exclude of the
    /// folder, or includes that do not walk into it).
    pub fn leaves_out(&self, rel: &str) -> bool {
        if !rel.ends_with('/') {
            return !self.key(rel);
        }
        // Any key inside it has the folder (and its parents) as its folders.
        let inside = format!("{rel}\u{0}");
        self.exclude.as_ref().is_some_and(|r| r.any_folder(&inside))
            || self
                .include
                .as_ref()
                .is_some_and(|r| !r.every_folder(&inside))
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
        assert_eq!(to_regex("**").as_deref(), Ok(EVERY_FOLDER));
        // Characters a regular expression gives a meaning are themselves in a pattern.
        // A `[` in a class is itself (rclone: `[[]x].txt` matches `[x].txt`); `[:digit:]`
        // is a POSIX class. rclone refuses a `]` first (`[]a]`), counting it as the end.
        let f = Filter::new(&including("[[]x].txt")).expect("filter");
        assert!(f.key("[x].txt") && !f.key("x].txt") && !f.key("[.txt"));
        let f = Filter::new(&including("v[[:digit:]]")).expect("filter");
        assert!(f.key("v7") && !f.key("vx"));
        let f = Filter::new(&including("[^^]x")).expect("filter");
        assert!(f.key("ax") && !f.key("^x"));
        let f = Filter::new(&including("[][]x")).expect("filter");
        assert!(f.key("]x") && f.key("[x") && !f.key("ax"));
        for bad in ["[[:foo:]]x", "[[:Digit:]]x"] {
            assert!(Filter::new(&including(bad)).is_err(), "{bad}");
        }
        match Filter::new(&including("[z-x]*")) {
            Err(Error::Usage(m)) => assert!(
                m.starts_with("--include \"[z-x]*\": ") && !m.contains("pattern 0"),
                "{m}"
            ),
            _ => panic!("[z-x]* accepted"),
        }
        let f = Filter::new(&including("[a&&b~~c]")).expect("filter");
        assert!(f.key("&") && f.key("~") && f.key("a"));
        let f = Filter::new(&including("a<b>#&~-(x)+.$^|!@%=,;:'\"`")).expect("filter");
        assert!(f.key("a<b>#&~-(x)+.$^|!@%=,;:'\"`"));
        assert!(!f.key("a<b>#&~-(x)+X$^|!@%=,;:'\"`"));
        // Unreadable entries a job leaves out (`--delete` is refused only for the others).
        let mut o = including("*.jpg");
        o.exclude = vec!["locked/".into(), "secret.txt".into()];
        let f = Filter::new(&o).expect("filter");
        assert!(f.leaves_out("locked/") && f.leaves_out("a/locked/") && f.leaves_out("secret.txt"));
        assert!(f.leaves_out("x.txt") && !f.leaves_out("x.jpg") && !f.leaves_out("other/"));
        let f = Filter::new(&including("d1/*")).expect("filter");
        assert!(f.leaves_out("d2/") && !f.leaves_out("d1/"));
        for bad in [
            "", "/", "[abc", "a}", "{a", "***", "x\\", "[]a]b", "[]a]]b", "[]", "[^[]z",
        ] {
            match Filter::new(&including(bad)) {
                Err(Error::Usage(m)) => {
                    assert!(m.starts_with(&format!("--include {bad:?}: ")), "{m}")
                }
                _ => panic!("{bad:?} accepted"),
            }
        }
    }
}
