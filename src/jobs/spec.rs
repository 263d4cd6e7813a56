//! What a migration job is asked to do: its two sides and its options, as stored with the
//! job (JSON, never a secret), and the filter that decides which keys take part.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::Error;

/// One side of a migration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Endpoint {
    /// A store registered with `ferry store add`.
    Store {
        store: String,
        bucket: String,
        prefix: String,
    },
    /// An S3 endpoint named inline (`s3://bucket/prefix`); credentials come from the
    /// environment of every process that works on the job, never from the job record.
    S3 {
        endpoint: Option<String>,
        region: String,
        bucket: String,
        prefix: String,
    },
    /// A local directory (an fs store rooted at its parent; the bucket is its name), on the
    /// machine that made the job (`None` in jobs recorded before machines were).
    Dir {
        path: PathBuf,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        machine: Option<String>,
    },
}

impl Endpoint {
    /// Parses `store:bucket[/prefix]`, `s3://bucket[/prefix]` or a directory path.
    pub fn parse(s: &str, endpoint: Option<&str>, region: &str) -> Result<Self, Error> {
        if let Some(rest) = s.strip_prefix("s3://") {
            let (bucket, prefix) = split_bucket(s, rest)?;
            if bucket.is_empty() {
                return Err(Error::Usage(format!("{s:?} names no bucket")));
            }
            return Ok(Endpoint::S3 {
                endpoint: endpoint.map(str::to_owned),
                region: region.to_owned(),
                bucket,
                prefix,
            });
        }
        if let Some((store, rest)) = s.split_once(':')
            && !store.is_empty()
            && !store.contains('/')
            && !s.starts_with('.')
        {
            let (bucket, prefix) = split_bucket(s, rest)?;
            if bucket.is_empty() {
                return Err(Error::Usage(format!(
                    "{s:?} names no bucket (store:bucket[/prefix])"
                )));
            }
            return Ok(Endpoint::Store {
                store: store.to_owned(),
                bucket,
                prefix,
            });
        }
        if s.is_empty() {
            return Err(Error::Usage("an empty SRC or DST".into()));
        }
        let path =
            std::path::absolute(s).map_err(|e| Error::Usage(format!("directory {s:?}: {e}")))?;
        Ok(Endpoint::Dir {
            path: normalize(&path),
            machine: Some(this_machine()),
        })
    }

    /// How to show this side in messages.
    pub fn display(&self) -> String {
        match self {
            Endpoint::Store {
                store,
                bucket,
                prefix,
            } => format!("{store}:{bucket}{}", slash(prefix)),
            Endpoint::S3 {
                endpoint,
                bucket,
                prefix,
                ..
            } => match endpoint {
                Some(e) => format!("s3://{bucket}{} at {e}", slash(prefix)),
                None => format!("s3://{bucket}{}", slash(prefix)),
            },
            Endpoint::Dir { path, .. } => path.display().to_string(),
        }
    }

    /// The key prefix this side covers (empty or ending in `/`).
    pub fn prefix(&self) -> &str {
        match self {
            Endpoint::Store { prefix, .. } | Endpoint::S3 { prefix, .. } => prefix,
            Endpoint::Dir { .. } => "",
        }
    }
}

fn slash(prefix: &str) -> String {
    if prefix.is_empty() {
        String::new()
    } else {
        format!("/{prefix}")
    }
}

/// `bucket/some/prefix` → (`bucket`, `some/prefix/`): a prefix names a folder, as in rclone.
/// Refuses a prefix no key Ferry can name starts with (`q//`, `../x`), before any work: every
/// object under it would fail on its own.
/// `bucket[/prefix]` split, the prefix read as the folder it names (`in` and `in/` both
/// mean the keys under `in/`); `side` names the argument in the error.
fn split_bucket(side: &str, s: &str) -> Result<(String, String), Error> {
    let (b, p) = s.split_once('/').unwrap_or((s, ""));
    let p = crate::transfer::diff::folder_prefix(p)
        .map_err(|e| Error::Usage(format!("{side:?}: {e}")))?;
    Ok((b.to_owned(), p))
}

/// Removes `.` and `..` components lexically (the directory may not exist yet).
fn normalize(p: &std::path::Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            c => out.push(c),
        }
    }
    out
}

/// Options stored with a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Options {
    #[serde(default)]
    pub include: Vec<String>,
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Only objects modified at or after this time (ms since the epoch).
    #[serde(default)]
    pub newer_than_ms: Option<i64>,
    /// Only objects modified before this time.
    #[serde(default)]
    pub older_than_ms: Option<i64>,
    /// Compare content (ETag or checksum), not size and modification time.
    #[serde(default)]
    pub checksum: bool,
    /// Delete what the destination has and the source does not.
    #[serde(default)]
    pub delete: bool,
    pub part_size: u64,
    pub multipart_threshold: u64,
    /// Attempts of a task before it goes to the dead-letter list.
    pub max_attempts: u32,
}

/// The smallest part S3 takes (but the last).
pub const MIN_PART: u64 = 5 << 20;
/// The largest part, and the largest single PUT.
pub const MAX_PART: u64 = 5 << 30;

/// A migration job as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrateSpec {
    pub src: Endpoint,
    pub dst: Endpoint,
    pub options: Options,
}

impl MigrateSpec {
    /// Checks what the CLI's parsing guarantees, for a spec that came another way (the admin
    /// API's `POST /api/v1/jobs`): sides as `ferry migrate` would have parsed them, and
    /// options within S3's limits. The filters are checked by [`Filter::new`].
    pub fn check(&self) -> Result<(), Error> {
        for (ep, role) in [(&self.src, "src"), (&self.dst, "dst")] {
            match ep {
                Endpoint::Store { bucket, prefix, .. } | Endpoint::S3 { bucket, prefix, .. } => {
                    if bucket.is_empty() {
                        return Err(Error::Usage(format!("{role}: no bucket")));
                    }
                    let canonical = crate::transfer::diff::folder_prefix(prefix)
                        .map_err(|e| Error::Usage(format!("{role} prefix {prefix:?}: {e}")))?;
                    if &canonical != prefix {
                        return Err(Error::Usage(format!(
                            "{role} prefix {prefix:?}: write it as {canonical:?}"
                        )));
                    }
                }
                Endpoint::Dir { path, .. } => {
                    if !path.is_absolute() || normalize(path) != *path {
                        return Err(Error::Usage(format!(
                            "{role} directory {}: an absolute path without `.` or `..` is needed",
                            path.display()
                        )));
                    }
                }
            }
        }
        for (ep, role) in [(&self.src, "src"), (&self.dst, "dst")] {
            if let Endpoint::S3 {
                endpoint: Some(e), ..
            } = ep
                && !e.parse::<http::Uri>().is_ok_and(|u| {
                    matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some()
                })
            {
                return Err(Error::Usage(format!(
                    "--{role}-endpoint {e:?} is not an http:// or https:// URL"
                )));
            }
        }
        let o = &self.options;
        if let (Some(newer), Some(older)) = (o.newer_than_ms, o.older_than_ms)
            && newer >= older
        {
            return Err(Error::Usage(
                "newer_than_ms not before older_than_ms: no time is both".into(),
            ));
        }
        if o.max_attempts == 0 {
            return Err(Error::Usage(
                "max_attempts 0: every object needs at least one attempt".into(),
            ));
        }
        if !(MIN_PART..=MAX_PART).contains(&o.part_size) {
            return Err(Error::Usage(format!(
                "part size {}: parts must be 5 MiB to 5 GiB",
                o.part_size
            )));
        }
        if o.multipart_threshold > MAX_PART {
            return Err(Error::Usage(format!(
                "multipart threshold {}: one PUT takes at most 5 GiB",
                o.multipart_threshold
            )));
        }
        Ok(())
    }

    /// What identifies "the same command" for resuming: both sides and what selects keys.
    /// Run-time settings (workers, bandwidth) and relative ages are not part of it.
    pub fn fingerprint(&self, ages: &str) -> String {
        let o = &self.options;
        let id = serde_json::json!({
            "src": self.src, "dst": self.dst, "include": o.include, "exclude": o.exclude,
            "ages": ages, "checksum": o.checksum, "delete": o.delete,
        });
        hex::encode(&Sha256::digest(id.to_string().as_bytes())[..12])
    }
}

pub use super::filter::Filter;

/// This machine, as a directory side records it: its host name and `/etc/machine-id`
/// (which stays across reboots, and tells apart machines of one host name).
pub fn this_machine() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "host".into());
    let id = ["/etc/machine-id", "/var/lib/dbus/machine-id"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .map(|id| id.trim().chars().take(12).collect::<String>())
        .unwrap_or_default();
    if id.is_empty() {
        host
    } else {
        format!("{host}/{id}")
    }
}

/// Parses an age (`90s`, `15m`, `12h`, `7d`, `2w`) or a date (`2026-01-31`, RFC 3339) into
/// a cutoff in ms since the epoch.
pub fn cutoff(s: &str, now_ms: i64, flag: &str) -> Result<i64, Error> {
    let bad = || {
        Error::Usage(format!(
            "{flag} {s:?}: expected an age like 90s, 15m, 12h, 7d, 2w or a date like 2026-01-31"
        ))
    };
    if let Some(unit) = s.chars().last().filter(|c| c.is_ascii_alphabetic())
        && let Ok(n) = s[..s.len() - 1].parse::<u64>()
    {
        let secs: u64 = match unit {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 604_800,
            _ => return Err(bad()),
        };
        // An age older than the epoch means "any time": no overflow, no wrap.
        let ms = n
            .checked_mul(secs)
            .and_then(|s| s.checked_mul(1000))
            .and_then(|ms| i64::try_from(ms).ok())
            .unwrap_or(i64::MAX);
        return Ok(now_ms.saturating_sub(ms).max(0));
    }
    use time::format_description::well_known::Rfc3339;
    if let Ok(t) = time::OffsetDateTime::parse(s, &Rfc3339) {
        return Ok((t.unix_timestamp_nanos() / 1_000_000) as i64);
    }
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    if let Ok(d) = time::Date::parse(s, &fmt) {
        return Ok(d.midnight().assume_utc().unix_timestamp() * 1000);
    }
    Err(bad())
}

/// Parses a size: `8M`, `64MiB`, `1G`, `512k`, or plain bytes (binary units throughout).
pub fn size(s: &str, flag: &str) -> Result<u64, Error> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.trim_end_matches("ib").trim_end_matches('b');
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1u64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('t') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    num.trim()
        .parse::<f64>()
        .ok()
        .filter(|n| *n >= 0.0)
        .map(|n| (n * mult as f64) as u64)
        .ok_or_else(|| Error::Usage(format!("{flag} {s:?}: expected a size like 16M or 1G")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sides() {
        assert_eq!(
            Endpoint::parse("dr:photos/2024", None, "us-east-1").ok(),
            Some(Endpoint::Store {
                store: "dr".into(),
                bucket: "photos".into(),
                prefix: "2024/".into()
            })
        );
        assert!(matches!(
            Endpoint::parse("s3://b", Some("http://h:1"), "r"),
            Ok(Endpoint::S3 { ref bucket, ref prefix, .. }) if bucket == "b" && prefix.is_empty()
        ));
        assert!(matches!(
            Endpoint::parse("/tmp/x/../data", None, "r"),
            Ok(Endpoint::Dir { ref path, .. }) if path == std::path::Path::new("/tmp/data")
        ));
        assert!(matches!(
            Endpoint::parse("s3://", None, "r"),
            Err(Error::Usage(_))
        ));
        // An empty segment right after the bucket is refused, as one further on is.
        for side in ["s3://b//x", "dr:b//x", "s3://b/in//x", "s3://b//"] {
            assert!(
                matches!(Endpoint::parse(side, None, "r"), Err(Error::Usage(_))),
                "{side}"
            );
        }
        assert!(Endpoint::parse("s3://b/", None, "r").is_ok());
    }

    #[test]
    fn parses_sizes_and_ages() {
        assert_eq!(size("16M", "f").ok(), Some(16 << 20));
        assert_eq!(size("64MiB", "f").ok(), Some(64 << 20));
        assert_eq!(size("1000", "f").ok(), Some(1000));
        assert!(size("lots", "f").is_err());
        assert_eq!(
            cutoff("2d", 1_000_000_000, "f").ok(),
            Some(1_000_000_000 - 172_800_000)
        );
        assert_eq!(cutoff("1970-01-02", 0, "f").ok(), Some(86_400_000));
        assert!(cutoff("soon", 0, "f").is_err());
        // A negative age is no age; a huge one reaches back to the epoch, never wraps.
        assert!(cutoff("-7d", 1_000_000_000, "f").is_err());
        assert_eq!(cutoff("99999999999999w", 1_000_000_000, "f").ok(), Some(0));
    }
}
