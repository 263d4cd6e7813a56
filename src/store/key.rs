//! Validated names: [`BucketName`] and [`ObjectKey`].
//!
//! Owns the rules for what a client may name. Everything below the gateway takes these types,
//! never raw strings. A key is what S3 allows (1 to 1024 bytes of UTF-8; Ferry also refuses a
//! NUL byte), so keys pass unchanged between S3 stores, whatever they look like (`/a`,
//! `a//b`, `a/../b`). A store whose keys are paths (the fs store) refuses, with
//! [`ObjectKey::check_path`], every key that does not map safely onto one, with a message
//! that says why.

use std::fmt;

/// The longest key S3 accepts, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;
/// The longest path component most Linux filesystems accept, in bytes.
pub const MAX_SEGMENT_BYTES: usize = 255;

/// Why a bucket name or key was refused. The message names the offending input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("invalid bucket name {name:?}: {why}")]
    Bucket { name: String, why: &'static str },
    #[error("invalid key {key:?}: {why}")]
    Key { key: String, why: &'static str },
    #[error("key is too long: {len} bytes (the limit is {MAX_KEY_BYTES})")]
    KeyTooLong { len: usize },
}

/// A bucket name that follows the S3 naming rules (3–63 characters of lowercase letters,
/// digits, dots and hyphens; starts and ends with a letter or digit; not an IP address).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BucketName(String);

impl BucketName {
    pub fn parse(name: &str) -> Result<Self, NameError> {
        let err = |why| NameError::Bucket {
            name: name.to_owned(),
            why,
        };
        if name.len() < 3 || name.len() > 63 {
            return Err(err("must be 3 to 63 characters long"));
        }
        if !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        {
            return Err(err(
                "only lowercase letters, digits, '.' and '-' are allowed",
            ));
        }
        let first = name.as_bytes()[0];
        let last = name.as_bytes()[name.len() - 1];
        if !(first.is_ascii_alphanumeric() && last.is_ascii_alphanumeric()) {
            return Err(err("must start and end with a letter or digit"));
        }
        if name.contains("..") || name.contains(".-") || name.contains("-.") {
            return Err(err("must not contain '..', '.-' or '-.'"));
        }
        if name.parse::<std::net::Ipv4Addr>().is_ok() {
            return Err(err("must not be formatted as an IP address"));
        }
        // The prefixes and suffixes AWS keeps for its own names (access point aliases, Object
        // Lambda, multi-Region access points, directory and table buckets, its demos).
        const PREFIXES: [&str; 3] = ["xn--", "sthree-", "amzn-s3-demo-"];
        const SUFFIXES: [&str; 5] = ["-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"];
        if PREFIXES.iter().any(|p| name.starts_with(p))
            || SUFFIXES.iter().any(|x| name.ends_with(x))
        {
            return Err(err("uses a prefix or suffix S3 reserves"));
        }
        Ok(Self(name.to_owned()))
    }

    /// A bucket name as S3 took them in us-east-1 before March 2018 (up to 255 characters of
    /// letters of either case, digits, `.`, `-` and `_`): such buckets still exist, and a
    /// migration off one must be able to name it. For S3 sides only: never a folder's name.
    pub fn legacy(name: &str) -> Result<Self, NameError> {
        if let Ok(b) = Self::parse(name) {
            return Ok(b);
        }
        let ok = (3..=255).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
        match ok {
            true => Ok(Self(name.to_owned())),
            // The current rules' reason, which is what a new name must meet.
            false => Self::parse(name),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for BucketName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An object key as S3 allows it: valid UTF-8, 1 to 1024 bytes, and (Ferry's own rule) no NUL
/// byte. Whether it can also be a path is [`ObjectKey::check_path`]'s question.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey(String);

impl ObjectKey {
    pub fn parse(key: &str) -> Result<Self, NameError> {
        let err = |why| NameError::Key {
            key: key.to_owned(),
            why,
        };
        if key.is_empty() {
            return Err(err("must not be empty"));
        }
        if key.len() > MAX_KEY_BYTES {
            return Err(NameError::KeyTooLong { len: key.len() });
        }
        if key.bytes().any(|b| b == 0) {
            return Err(err("must not contain a NUL byte"));
        }
        Ok(Self(key.to_owned()))
    }

    /// Whether the key maps to a safe relative path, as a store whose keys are paths needs:
    /// segments separated by `/` are non-empty, not `.` or `..`, and at most 255 bytes. A
    /// single trailing `/` is allowed (a "directory marker" object such as `photos/`).
    pub fn check_path(&self) -> Result<(), NameError> {
        let key = self.0.as_str();
        let err = |why| NameError::Key {
            key: key.to_owned(),
            why,
        };
        if key.starts_with('/') {
            return Err(err("must not start with '/'"));
        }
        let body = key.strip_suffix('/').unwrap_or(key);
        for seg in body.split('/') {
            if seg.is_empty() {
                return Err(err("must not contain an empty path segment ('//')"));
            }
            if seg == "." || seg == ".." {
                return Err(err("must not contain a '.' or '..' path segment"));
            }
            if seg.len() > MAX_SEGMENT_BYTES {
                return Err(err("has a path segment longer than 255 bytes"));
            }
        }
        Ok(())
    }

    /// Whether a store whose keys are paths may make this key: a path
    /// ([`Self::check_path`]) with no `.ferry/index.db` in it, the file an fs store keeps its
    /// index in. A folder holding one is taken for a store's root: a later job refused it,
    /// or opened a store there whose index its outer store served as objects.
    pub fn check_new_path(&self) -> Result<(), NameError> {
        self.check_path()?;
        let segs: Vec<&str> = self.segments().collect();
        match segs
            .windows(2)
            .any(|w| w[0] == crate::store::fs::META_DIR && w[1] == "index.db")
        {
            true => Err(NameError::Key {
                key: self.0.clone(),
                why: "must not hold \".ferry/index.db\": a folder holding that file is taken for a Ferry fs store",
            }),
            false => Ok(()),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True for keys ending in `/` ("directory marker" objects).
    pub fn is_dir_marker(&self) -> bool {
        self.0.ends_with('/')
    }

    /// The key's `/`-separated segments, without a trailing empty one.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.strip_suffix('/').unwrap_or(&self.0).split('/')
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_bucket_names_are_for_s3_sides() {
        for ok in [
            "Legacy_Bucket",
            "UPPER",
            "a_b",
            "my-bucket.v2",
            &"x".repeat(255),
        ] {
            assert!(BucketName::legacy(ok).is_ok(), "{ok}");
        }
        for bad in ["ab", "a b", "a/b", "../x", "ä-bucket", &"x".repeat(256)] {
            assert!(BucketName::legacy(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bucket_names() {
        for ok in ["abc", "my-bucket.v2", "a1b", "123"] {
            assert!(BucketName::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "ab",
            "ABC",
            "-abc",
            "abc-",
            "a..b",
            "192.168.1.1",
            "a_b",
            "xn--abc",
            "sthree-abc",
            "amzn-s3-demo-bucket",
            "abc-s3alias",
            "abc--ol-s3",
            "abc.mrap",
            "abc--x-s3",
            "abc--table-s3",
            "",
        ] {
            assert!(BucketName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn keys() {
        for ok in [
            "a",
            "a/b/c",
            "dir/",
            "with space/ünïcødé",
            ".hidden",
            "a/.b",
            "...",
            "a..b",
        ] {
            assert!(ObjectKey::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a\0b"] {
            assert!(ObjectKey::parse(bad).is_err(), "{bad:?}");
        }
        // S3 takes these; a path cannot be them.
        let long_seg = "x".repeat(256);
        for s3_only in [
            "/a", "a//b", "../x", "a/../b", "a/./b", ".", "a/..", "a//", &long_seg,
        ] {
            let key = ObjectKey::parse(s3_only).expect("an S3 key");
            assert!(key.check_path().is_err(), "{s3_only:?} is no path");
        }
        for ok in ["a", "a/b/c", "dir/", ".hidden", "a/.b", "...", "a..b"] {
            let key = ObjectKey::parse(ok).expect("key");
            assert!(key.check_path().is_ok(), "{ok}");
        }
        let long_key = "a/".repeat(600);
        assert!(matches!(
            ObjectKey::parse(&long_key),
            Err(NameError::KeyTooLong { .. })
        ));
    }
}
