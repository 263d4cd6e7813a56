//! Configuration: one TOML file, every value also from a `FERRY_*` environment variable or a
//! flag (flag > environment > file > default), validated into [`ServeConfig`].
//!
//! Owns the precedence rules, the defaults, and one-line errors naming the file, line and key
//! at fault. Secrets (S3 secret key, admin token) are redacted from `Debug`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The file's keys. Unknown keys are errors, so a typo does not silently fall back to a
/// default.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub data: Option<PathBuf>,
    pub listen: Option<String>,
    pub admin_listen: Option<String>,
    pub db: Option<String>,
    pub domain: Option<String>,
    pub region: Option<String>,
    pub access_key: Option<String>,
    pub secret_key: Option<String>,
    pub admin_token: Option<String>,
    pub max_concurrency: Option<usize>,
    pub client_timeout: Option<u64>,
    pub max_post_object_size: Option<String>,
    pub job_bandwidth_limit: Option<String>,
    /// Where each key was set (`FILE:LINE`), for errors about its value.
    #[serde(skip)]
    pub lines: std::collections::HashMap<String, String>,
}

impl FileConfig {
    /// Where `key` was set in the file, as a prefix for an error about its value.
    fn at(&self, key: &str) -> Option<String> {
        self.lines.get(key).map(|l| format!("{l}: key {key}: "))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: {message}")]
    Read { file: String, message: String },
    #[error("{file}:{line}:{column}: {message}")]
    Parse {
        file: String,
        line: usize,
        column: usize,
        message: String,
    },
    /// Settings that do not go together.
    #[error("{0}")]
    Conflict(String),
    #[error("{}invalid {what} {value:?}: {why}", at.as_deref().unwrap_or(""))]
    Invalid {
        /// `FILE:LINE: key KEY: ` when the value came from the config file.
        at: Option<String>,
        what: &'static str,
        value: String,
        why: String,
    },
}

/// The region, `us-east-1` if none is given; one a client could not sign for (anything but
/// letters, digits and dashes) is refused.
fn check_region(region: Option<String>) -> Result<String, ConfigError> {
    let r = region.unwrap_or_else(|| "us-east-1".into());
    if r.len() <= 64
        && r.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        Ok(r)
    } else {
        Err(ConfigError::Invalid {
            at: None,
            what: "region",
            value: r,
            why: "letters, digits and dashes only, like us-east-1".into(),
        })
    }
}

impl ConfigError {
    /// The same error, said to come from `at` (`FILE:LINE: key KEY: `), if given.
    fn at(self, at: Option<String>) -> Self {
        match (self, at) {
            (
                ConfigError::Invalid {
                    what, value, why, ..
                },
                Some(at),
            ) => ConfigError::Invalid {
                at: Some(at),
                what,
                value,
                why,
            },
            (e, _) => e,
        }
    }
}

/// Reads and parses a config file; errors name the file, line and key.
pub fn load_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
        file: file.clone(),
        message: e.to_string(),
    })?;
    let mut parsed: FileConfig = toml::from_str(&text).map_err(|e| {
        let (line, column) = e
            .span()
            .map(|s| {
                let before = &text[..s.start.min(text.len())];
                let line = before.matches('\n').count() + 1;
                let column = before
                    .rfind('\n')
                    .map_or(before.len(), |i| before.len() - i - 1)
                    + 1;
                (line, column)
            })
            .unwrap_or((1, 1));
        ConfigError::Parse {
            file: file.clone(),
            line,
            column,
            message: e.message().trim().replace('\n', " "),
        }
    })?;
    // A relative data directory is the file's neighbour, not the working directory's (which
    // is `/` under systemd).
    if let Some(d) = parsed.data.clone()
        && d.is_relative()
        && !d.as_os_str().is_empty()
    {
        let near = path.parent().unwrap_or(Path::new(".")).join(&d);
        // Before, it was the working directory's: state found only there is not left
        // behind for a fresh data directory (new credentials, an empty store) in silence.
        if let Ok(was) = std::path::absolute(&d)
            && std::path::absolute(&near).is_ok_and(|n| n != was)
            && was.join("state.db").exists()
            && !near.join("state.db").exists()
        {
            return Err(ConfigError::Conflict(format!(
                "{file}: data = {d:?} is now taken from the config file's folder ({}), but the \
                 data is in {}: set data to that path",
                near.display(),
                was.display()
            )));
        }
        parsed.data = Some(near);
    }
    for (n, line) in text.lines().enumerate() {
        if let Some((key, _)) = line.split_once('=') {
            let key = key.trim();
            if !key.is_empty() && !key.starts_with('#') {
                parsed
                    .lines
                    .entry(key.to_owned())
                    .or_insert_with(|| format!("{file}:{}", n + 1));
            }
        }
    }
    Ok(parsed)
}

/// Everything `ferry serve` needs, validated.
#[derive(Clone)]
pub struct ServeConfig {
    pub data: PathBuf,
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub db: Option<String>,
    pub domain: Option<String>,
    pub region: String,
    pub access_key: Option<String>,
    pub secret_key: Option<String>,
    pub admin_token: Option<String>,
    pub max_concurrency: usize,
    /// How long a client may send (or read) nothing mid-request before it is given up.
    pub client_timeout: std::time::Duration,
    /// The largest file a browser-form upload (POST Object) may carry; held in memory.
    pub max_post_object_bytes: u64,
    /// Bytes per second all the jobs this server runs may move together; `None`: no limit.
    pub job_bandwidth: Option<u64>,
}

impl std::fmt::Debug for ServeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeConfig")
            .field("data", &self.data)
            .field("listen", &self.listen)
            .field("admin_listen", &self.admin_listen)
            .field("db", &self.db.as_deref().map(crate::state::redact_url))
            .field("domain", &self.domain)
            .field("region", &self.region)
            .field("access_key", &self.access_key)
            .field(
                "secret_key",
                &self.secret_key.as_ref().map(|_| "<redacted>"),
            )
            .field(
                "admin_token",
                &self.admin_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

pub fn parse_addr(what: &'static str, value: &str) -> Result<SocketAddr, ConfigError> {
    let invalid = |why: String| ConfigError::Invalid {
        at: None,
        what,
        value: value.to_owned(),
        why: format!("{why} (expected HOST:PORT, e.g. 127.0.0.1:9000 or localhost:9000)"),
    };
    if let Ok(a) = value.parse() {
        return Ok(a);
    }
    // A host name (`localhost:9000`): its first address.
    match value.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
            use std::net::ToSocketAddrs;
            value
                .to_socket_addrs()
                .map_err(|e| invalid(format!("cannot resolve {host:?}: {e}")))?
                .next()
                .ok_or_else(|| invalid(format!("{host:?} has no address")))
        }
        _ => Err(invalid("not a host and port".into())),
    }
}

/// Flags and environment values for `serve` (each `None` when not given).
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub data: Option<PathBuf>,
    pub listen: Option<String>,
    pub admin_listen: Option<String>,
    pub db: Option<String>,
    pub domain: Option<String>,
    pub region: Option<String>,
    pub access_key: Option<String>,
    pub secret_key: Option<String>,
    pub admin_token: Option<String>,
    pub max_concurrency: Option<usize>,
    pub client_timeout: Option<u64>,
    pub max_post_object_size: Option<String>,
    pub job_bandwidth_limit: Option<String>,
}

/// The default of [`ServeConfig::client_timeout`], in seconds.
pub const DEFAULT_CLIENT_TIMEOUT_SECS: u64 = 60;

/// The default bound on a browser-form upload's file (see [`ServeConfig`]).
pub const DEFAULT_MAX_POST_OBJECT_BYTES: u64 = 16 * 1024 * 1024;

impl ServeConfig {
    pub fn resolve(o: Overrides, file: FileConfig) -> Result<Self, ConfigError> {
        // An empty variable (`FERRY_REGION=`) is unset, as for the credentials: never an
        // empty value, nor an error about one.
        let given = |v: Option<String>| v.filter(|s| !s.trim().is_empty());
        let o = Overrides {
            data: o.data.filter(|d| !d.as_os_str().is_empty()),
            listen: given(o.listen),
            admin_listen: given(o.admin_listen),
            db: given(o.db),
            domain: given(o.domain),
            region: given(o.region),
            max_post_object_size: given(o.max_post_object_size),
            job_bandwidth_limit: given(o.job_bandwidth_limit),
            ..o
        };
        let listen_at = o.listen.is_none().then(|| file.at("listen")).flatten();
        let admin_at = o
            .admin_listen
            .is_none()
            .then(|| file.at("admin_listen"))
            .flatten();
        let bandwidth_at = o
            .job_bandwidth_limit
            .is_none()
            .then(|| file.at("job_bandwidth_limit"))
            .flatten();
        let region_at = o.region.is_none().then(|| file.at("region")).flatten();
        let post_at = o
            .max_post_object_size
            .is_none()
            .then(|| file.at("max_post_object_size"))
            .flatten();
        let listen = o
            .listen
            .or(file.listen.clone())
            .unwrap_or_else(|| "127.0.0.1:9000".into());
        let admin = o
            .admin_listen
            .or(file.admin_listen.clone())
            .unwrap_or_else(|| "127.0.0.1:9001".into());
        let access_key = o.access_key.or(file.access_key).filter(|s| !s.is_empty());
        let secret_key = o.secret_key.or(file.secret_key).filter(|s| !s.is_empty());
        if access_key.is_some() != secret_key.is_some() {
            return Err(ConfigError::Conflict(format!(
                "{} is given without {}: give both FERRY_ACCESS_KEY and FERRY_SECRET_KEY (or access_key and secret_key), or neither",
                if access_key.is_some() {
                    "an access key"
                } else {
                    "a secret key"
                },
                if access_key.is_some() {
                    "a secret key"
                } else {
                    "an access key"
                },
            )));
        }
        let max_post_object_bytes =
            match o.max_post_object_size.or(file.max_post_object_size.clone()) {
                None => DEFAULT_MAX_POST_OBJECT_BYTES,
                Some(v) => crate::jobs::spec::size(&v, "max_post_object_size")
                    .ok()
                    .filter(|n| (1..=5 << 30).contains(n))
                    .ok_or_else(|| ConfigError::Invalid {
                        at: post_at,
                        what: "max_post_object_size",
                        value: v.clone(),
                        why: "expected a size from 1 byte to 5G, like 16M".into(),
                    })?,
            };
        // 0 is no limit, as for `ferry migrate --bandwidth-limit`.
        let job_bandwidth =
            match o.job_bandwidth_limit.or(file.job_bandwidth_limit.clone()) {
                None => None,
                Some(v) => Some(crate::jobs::spec::size(&v, "job_bandwidth_limit").map_err(
                    |_| ConfigError::Invalid {
                        at: bandwidth_at,
                        what: "job_bandwidth_limit",
                        value: v.clone(),
                        why: "expected bytes per second, like 50M (0 for no limit)".into(),
                    },
                )?)
                .filter(|n| *n > 0),
            };
        Ok(Self {
            max_post_object_bytes,
            job_bandwidth,
            data: o
                .data
                .or(file.data)
                .unwrap_or_else(|| PathBuf::from("ferry-data")),
            listen: parse_addr("listen address", &listen).map_err(|e| e.at(listen_at))?,
            admin_listen: parse_addr("admin listen address", &admin).map_err(|e| e.at(admin_at))?,
            db: o.db.or(file.db),
            domain: o.domain.or(file.domain),
            region: check_region(o.region.or(file.region)).map_err(|e| e.at(region_at))?,
            access_key,
            secret_key,
            admin_token: o.admin_token.or(file.admin_token).filter(|s| !s.is_empty()),
            max_concurrency: o.max_concurrency.or(file.max_concurrency).unwrap_or(256),
            client_timeout: std::time::Duration::from_secs(
                o.client_timeout
                    .or(file.client_timeout)
                    .unwrap_or(DEFAULT_CLIENT_TIMEOUT_SECS)
                    .max(1),
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_error_names_line_and_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("ferry.toml");
        std::fs::write(&p, "listen = \"127.0.0.1:9000\"\nlisen = \"x\"\n").expect("write");
        let e = load_file(&p)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("ferry.toml:2:"), "{e}");
        assert!(e.contains("lisen"), "{e}");
    }

    /// A value checked after parsing was reported without its file, line or key.
    #[test]
    fn a_bad_value_from_the_file_names_file_line_and_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("ferry.toml");
        std::fs::write(
            &p,
            "region = \"eu\"\nlisten = \"127.0.0.1:99999\"\nmax_post_object_size = \"lots\"\n",
        )
        .expect("write");
        let f = load_file(&p).expect("parses");
        let e = ServeConfig::resolve(Overrides::default(), f.clone())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("ferry.toml:3: key max_post_object_size"), "{e}");
        let o = Overrides {
            max_post_object_size: Some("16M".into()),
            ..Default::default()
        };
        let e = ServeConfig::resolve(o, f)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            e.contains("ferry.toml:2: key listen: invalid listen address"),
            "{e}"
        );
        std::fs::write(&p, "data = \"rel/data\"\nregion = \"not a region\"\n").expect("write");
        let f = load_file(&p).expect("parses");
        // A relative data directory is the file's neighbour.
        assert_eq!(
            f.data.as_deref(),
            Some(dir.path().join("rel/data").as_path())
        );
        let e = ServeConfig::resolve(Overrides::default(), f)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            e.contains("ferry.toml:2: key region: invalid region"),
            "{e}"
        );
        // One half of a key pair is named as such, not as `invalid credentials ""`.
        let o = Overrides {
            access_key: Some("AKIAONLYHALF".into()),
            ..Default::default()
        };
        let e = ServeConfig::resolve(o, FileConfig::default())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            e.starts_with("an access key is given without a secret key"),
            "{e}"
        );
    }

    #[test]
    fn precedence() {
        let o = Overrides {
            listen: Some("127.0.0.1:1".into()),
            ..Default::default()
        };
        let f = FileConfig {
            listen: Some("127.0.0.1:2".into()),
            region: Some("eu".into()),
            ..Default::default()
        };
        let c = ServeConfig::resolve(o, f).expect("valid");
        assert_eq!(c.listen.port(), 1);
        assert!(parse_addr("listen address", "localhost:9000").is_ok_and(|a| a.port() == 9000));
        assert!(parse_addr("listen address", ":9000").is_err());
        // An empty variable is unset; a region no client could sign for is refused.
        let empty = Overrides {
            listen: Some(String::new()),
            region: Some(String::new()),
            ..Default::default()
        };
        let unset = ServeConfig::resolve(empty, FileConfig::default()).expect("empty is unset");
        assert_eq!(
            (unset.listen.port(), unset.region.as_str()),
            (9000, "us-east-1")
        );
        let bad = Overrides {
            region: Some("bad region!".into()),
            ..Default::default()
        };
        assert!(ServeConfig::resolve(bad, FileConfig::default()).is_err());
        assert!(parse_addr("listen address", "127.0.0.1:99999").is_err());
        assert_eq!(c.region, "eu");
        let bad = Overrides {
            access_key: Some("a".into()),
            ..Default::default()
        };
        assert!(ServeConfig::resolve(bad, FileConfig::default()).is_err());
        let c = ServeConfig::resolve(Overrides::default(), FileConfig::default()).expect("valid");
        assert_eq!(c.max_post_object_bytes, DEFAULT_MAX_POST_OBJECT_BYTES);
        let f = FileConfig {
            max_post_object_size: Some("64M".into()),
            ..Default::default()
        };
        let c = ServeConfig::resolve(Overrides::default(), f).expect("valid");
        assert_eq!(c.max_post_object_bytes, 64 << 20);
        for bad in ["huge", "0", "6G"] {
            let o = Overrides {
                max_post_object_size: Some(bad.into()),
                ..Default::default()
            };
            let e = ServeConfig::resolve(o, FileConfig::default()).expect_err(bad);
            assert!(e.to_string().contains("max_post_object_size"), "{e}");
        }
    }

    #[test]
    fn the_jobs_bandwidth_is_a_rate_or_none() {
        let rate = |v: &str| {
            let o = Overrides {
                job_bandwidth_limit: Some(v.into()),
                ..Default::default()
            };
            ServeConfig::resolve(o, FileConfig::default()).map(|c| c.job_bandwidth)
        };
        assert_eq!(rate("50M").ok(), Some(Some(50 << 20)));
        assert_eq!(rate("0").ok(), Some(None));
        assert_eq!(rate("").ok(), Some(None));
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("ferry.toml");
        std::fs::write(&p, "job_bandwidth_limit = \"fast\"\n").expect("write");
        let e = ServeConfig::resolve(Overrides::default(), load_file(&p).expect("parses"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("ferry.toml:1: key job_bandwidth_limit"), "{e}");
    }
}
