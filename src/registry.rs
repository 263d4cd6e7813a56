//! The stores this process knows: opens registered stores (records in the state database) by
//! name and keeps them open.
//!
//! Owns: turning a [`StoreRecord`] into a live store, the built-in `local` fs store under the
//! data directory, and what may be shown of a store (never its secret key). Sits above
//! `store` and `state`, below `gateway` and `admin`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crate::state::{self, Db, StoreRecord};
use crate::store::fs::FsStore;
use crate::store::s3::{ChecksumMode, S3Config, S3Store};
use crate::store::{self as st, Store};

/// The name of the fs store `ferry serve` creates under its data directory.
pub const LOCAL: &str = "local";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    State(#[from] state::Error),
    #[error("{}", named(name, source))]
    Store { name: String, source: st::Error },
    #[error("invalid store {name:?}: {why}")]
    Invalid { name: String, why: String },
    /// The store is in use (a bucket's policy names it): a conflict, not bad input.
    #[error("store {name:?} is in use: {why}")]
    InUse { name: String, why: String },
}

/// An open store, by kind (some operations, like rescan, exist only for one kind).
#[derive(Clone)]
pub enum Opened {
    Fs(Arc<FsStore>),
    S3(Arc<S3Store>),
}

impl Opened {
    pub fn store(&self) -> Arc<dyn Store> {
        match self {
            Opened::Fs(s) => s.clone(),
            Opened::S3(s) => s.clone(),
        }
    }

    /// Brings an fs store's index of `bucket` up to date with its files (POSIX users may have
    /// changed them behind its back), so a listing shows the tree as it is now, as rclone and
    /// rsync would read it: what a comparison or a copy must go by. Nothing for an s3 store,
    /// or for a bucket the store does not have.
    pub async fn refresh(&self, bucket: &crate::store::BucketName) -> crate::store::Result<()> {
        match self {
            Opened::Fs(fs) => match fs.head_bucket(bucket).await {
                Ok(_) => fs.rescan_one(bucket).await.map(drop),
                Err(crate::store::Error::NoSuchBucket { .. }) => Ok(()),
                Err(e) => Err(e),
            },
            Opened::S3(_) => Ok(()),
        }
    }
}

/// What a client asks for when registering a store.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddStore {
    pub name: String,
    pub kind: String,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub path_style: bool,
    #[serde(default)]
    pub access_key: Option<String>,
    #[serde(default)]
    pub secret_key: Option<String>,
    #[serde(default)]
    pub checksum_mode: Option<ChecksumMode>,
}

/// What may be shown of a store.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StoreSummary {
    pub name: String,
    pub kind: String,
    /// The directory of an fs store, or the endpoint of an s3 store.
    pub location: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
}

pub struct Registry {
    db: Db,
    data: PathBuf,
    open: Mutex<HashMap<String, Opened>>,
}

/// A store's error with the store named once: many name it already ("store local is
/// unavailable: …", "invalid argument: store rem4: …").
fn named(name: &str, source: &st::Error) -> String {
    let text = source.to_string();
    if text.contains(&format!("store {name}")) {
        text
    } else {
        format!("store {name}: {text}")
    }
}

/// A folder's device and inode, if it exists.
fn folder_id(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// The device and inode of `path`'s folders above it that exist (not `path` itself).
fn existing_folders(path: &Path) -> Vec<(u64, u64)> {
    path.ancestors().skip(1).filter_map(folder_id).collect()
}

/// `path` with symlinks resolved as far as it exists, the rest (not made yet) as written.
fn resolved(path: &Path) -> PathBuf {
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut rest = Vec::new();
    let mut at = abs.as_path();
    loop {
        if let Ok(canon) = std::fs::canonicalize(at) {
            return rest.iter().rev().fold(canon, |p, c| p.join(c));
        }
        match (at.parent(), at.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_owned());
                at = parent;
            }
            _ => return abs,
        }
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Registry {
    pub fn new(db: Db, data: &Path) -> Self {
        Self {
            db,
            data: data.to_path_buf(),
            open: Mutex::new(HashMap::new()),
        }
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The data directory (`--data`).
    pub fn data(&self) -> &Path {
        &self.data
    }

    /// Where the built-in `local` store lives: under the server's data directory.
    fn local_path(&self) -> PathBuf {
        let p = self.data.join("stores").join(LOCAL);
        // Recorded whole: other processes read it from elsewhere.
        std::path::absolute(&p).unwrap_or(p)
    }

    /// Whether the built-in store's path is this process's data directory's, whatever the
    /// state database recorded: an embedded database is in that directory, so they moved
    /// together. A PostgreSQL one is the server's record, which other processes on it (a
    /// `ferry worker`, `ferry migrate`) take as it is.
    fn local_is_ours(&self, name: &str) -> bool {
        name == LOCAL && self.db.dialect() == state::Dialect::Sqlite
    }

    /// `name`'s record (see [`Self::local_is_ours`]).
    async fn record(&self, name: &str) -> Result<StoreRecord, Error> {
        let mut rec = self.db.store(name).await?;
        if self.local_is_ours(name) {
            rec.config = serde_json::json!({ "path": self.local_path() });
        }
        Ok(rec)
    }

    /// Registers (first start) and opens the built-in `local` fs store: the server's, the one
    /// process of a state database that calls this. A data directory that moved (or was
    /// restored elsewhere) brings its store along: the record is brought up to date rather
    /// than an empty store made at the old path.
    pub async fn local(&self) -> Result<Arc<FsStore>, Error> {
        let path = self.local_path();
        let config = serde_json::json!({ "path": path });
        match self.db.store(LOCAL).await {
            Err(state::Error::NoSuchStore(_)) => {
                self.db
                    .add_store(&StoreRecord {
                        name: LOCAL.into(),
                        kind: "fs".into(),
                        config,
                        created_ms: now_ms(),
                    })
                    .await?;
            }
            Ok(rec) if rec.kind == "fs" && rec.config != config => {
                let was = rec
                    .config
                    .get("path")
                    .and_then(|p| p.as_str())
                    .unwrap_or("");
                tracing::info!(was, now = %path.display(),
                    "the built-in local store is served from the data directory's stores/local");
                self.db.set_store_config(LOCAL, &config).await?;
            }
            Ok(_) => {}
            Err(e) => return Err(e.into()),
        }
        match self.get(LOCAL).await? {
            Opened::Fs(s) => Ok(s),
            Opened::S3(_) => Err(Error::Invalid {
                name: LOCAL.into(),
                why: "must be an fs store".into(),
            }),
        }
    }

    pub async fn get(&self, name: &str) -> Result<Opened, Error> {
        let mut open = self.open.lock().await;
        if let Some(s) = open.get(name) {
            return Ok(s.clone());
        }
        let rec = self.record(name).await?;
        let opened = open_record(&rec).await?;
        open.insert(name.to_owned(), opened.clone());
        Ok(opened)
    }

    pub async fn add(&self, req: AddStore) -> Result<StoreSummary, Error> {
        let invalid = |why: &str| Error::Invalid {
            name: req.name.clone(),
            why: why.to_owned(),
        };
        if !valid_name(&req.name) {
            return Err(invalid("names are 1-64 letters, digits, '-' or '_'"));
        }
        // A field of the other kind would be ignored without a word (as the CLI refuses
        // its flag).
        let others: &[(bool, &str)] = match req.kind.as_str() {
            "fs" => &[
                (req.endpoint.is_some(), "endpoint"),
                (req.region.is_some(), "region"),
                (req.path_style, "path_style"),
                (req.access_key.is_some(), "access_key"),
                (req.secret_key.is_some(), "secret_key"),
                (req.checksum_mode.is_some(), "checksum_mode"),
            ],
            "s3" => &[(req.path.is_some(), "path")],
            _ => &[],
        };
        if let Some((_, field)) = others.iter().find(|(given, _)| *given) {
            return Err(invalid(&format!(
                "{field} does not apply to an {} store",
                req.kind
            )));
        }
        let config = match req.kind.as_str() {
            "fs" => {
                let path = req
                    .path
                    .clone()
                    .ok_or_else(|| invalid("an fs store needs a path"))?;
                let abs = std::path::absolute(&path)
                    .map_err(|e| invalid(&format!("path {path:?}: {e}")))?;
                serde_json::json!({ "path": abs })
            }
            "s3" => {
                let cfg = S3Config {
                    endpoint: req.endpoint.clone(),
                    region: req.region.clone().unwrap_or_else(|| "us-east-1".into()),
                    access_key: req
                        .access_key
                        .clone()
                        .ok_or_else(|| invalid("an s3 store needs an access key"))?,
                    secret_key: req
                        .secret_key
                        .clone()
                        .ok_or_else(|| invalid("an s3 store needs a secret key"))?,
                    path_style: req.path_style,
                    checksum_mode: req.checksum_mode.unwrap_or_default(),
                };
                serde_json::to_value(&cfg).map_err(|e| invalid(&e.to_string()))?
            }
            other => {
                return Err(invalid(&format!(
                    "unknown kind {other:?} (expected fs or s3)"
                )));
            }
        };
        let rec = StoreRecord {
            name: req.name.clone(),
            kind: req.kind.clone(),
            config,
            created_ms: now_ms(),
        };
        if !matches!(
            self.db.store(&rec.name).await,
            Err(state::Error::NoSuchStore(_))
        ) {
            return Err(state::Error::StoreExists(rec.name.clone()).into());
        }
        if let Some(path) = rec.config.get("path").and_then(|p| p.as_str()) {
            self.check_apart(Path::new(path))
                .await
                .map_err(|why| invalid(&why))?;
        }
        // Open first, so a store that cannot be opened is never registered.
        let opened = open_record(&rec).await?;
        self.db.add_store(&rec).await?;
        self.open.lock().await.insert(rec.name.clone(), opened);
        Ok(summary(&rec))
    }

    /// Refuses an fs store's root that is, holds or lies in another fs store's root or the
    /// data directory: one store's files (its `.ferry` index among them) would be another's
    /// objects, which any S3 client could overwrite.
    async fn check_apart(&self, path: &Path) -> Result<(), String> {
        let new = resolved(path);
        let mut others = Vec::new();
        for (name, o) in self.open.lock().await.iter() {
            if let Opened::Fs(s) = o {
                others.push((format!("the store {name:?}"), s.root().to_path_buf()));
            }
        }
        for rec in self.db.stores().await.map_err(|e| e.to_string())? {
            if let Some(p) = rec.config.get("path").and_then(|p| p.as_str()) {
                others.push((format!("the store {:?}", rec.name), resolved(Path::new(p))));
            }
        }
        // Last: a store in it is named as the store.
        others.push(("the data directory".to_owned(), resolved(&self.data)));
        let shown = path.display();
        // The same folders reached by other paths (a bind mount) are told by device and
        // inode: the folders the new path lies in, as far as they exist.
        let (new_id, within) = (folder_id(&new), existing_folders(&new));
        for (what, root) in others {
            let root_id = folder_id(&root);
            if new == root || (root_id.is_some() && new_id == root_id) {
                return Err(format!("{shown} is already {what}"));
            }
            if new.starts_with(&root) || root_id.is_some_and(|id| within.contains(&id)) {
                return Err(format!("{shown} is inside {what} ({})", root.display()));
            }
            let around = new_id.is_some_and(|id| existing_folders(&root).contains(&id));
            if root.starts_with(&new) || around {
                return Err(format!("{shown} holds {what} ({})", root.display()));
            }
        }
        Ok(())
    }

    /// Tries a first call to a newly added s3 store (a listing of its buckets, 5 s at most):
    /// what went wrong, if anything, for the operator to hear now rather than at the first
    /// bucket that uses it. The store stays registered either way (it may be down for now).
    /// A refused listing alone is no sign of trouble: a policy may allow buckets only.
    pub async fn first_call(&self, name: &str) -> Option<String> {
        let Ok(Opened::S3(store)) = self.get(name).await else {
            return None;
        };
        let listed =
            tokio::time::timeout(std::time::Duration::from_secs(5), store.list_buckets()).await;
        match listed {
            Ok(Ok(_)) => None,
            Ok(Err(st::Error::Remote { code, .. })) if code == "AccessDenied" => None,
            Ok(Err(e)) => Some(format!("a first call to store {name} failed: {e}")),
            Err(_) => Some(format!(
                "store {name} did not answer a first call within 5 s"
            )),
        }
    }

    pub async fn remove(&self, name: &str) -> Result<(), Error> {
        if name == LOCAL {
            return Err(Error::Invalid {
                name: name.into(),
                why: "the built-in local store cannot be removed".into(),
            });
        }
        // A namespace bucket that names the store would stop being served at the next start
        // (its name falling back to a plain bucket of the default store, its owed writes
        // orphaned): the bucket's policy must leave the store first.
        let mut users = Vec::new();
        for b in self.db.buckets().await? {
            let p = &b.policy;
            let targets = ["write_to", "read_from"]
                .iter()
                .filter_map(|k| p.get(*k).and_then(|v| v.as_array()))
                .flatten()
                .chain(p.get("failover").and_then(|f| f.get("to")));
            if targets
                .filter_map(|t| t.get("store").and_then(|s| s.as_str()))
                .any(|s| s == name)
            {
                users.push(b.name);
            }
        }
        if !users.is_empty() {
            return Err(Error::InUse {
                name: name.into(),
                why: format!(
                    "{} {} {}; change {} policy (`ferry bucket policy`) or remove {} first",
                    if users.len() == 1 {
                        "bucket"
                    } else {
                        "buckets"
                    },
                    users.join(", "),
                    if users.len() == 1 {
                        "uses it"
                    } else {
                        "use it"
                    },
                    if users.len() == 1 {
                        "the bucket's"
                    } else {
                        "their"
                    },
                    if users.len() == 1 {
                        "the bucket"
                    } else {
                        "them"
                    },
                ),
            });
        }
        self.db.remove_store(name).await?;
        self.open.lock().await.remove(name);
        Ok(())
    }

    pub async fn list(&self) -> Result<Vec<StoreSummary>, Error> {
        let mut recs = self.db.stores().await?;
        for rec in &mut recs {
            if self.local_is_ours(&rec.name) {
                rec.config = serde_json::json!({ "path": self.local_path() });
            }
        }
        Ok(recs.iter().map(summary).collect())
    }
}

fn summary(rec: &StoreRecord) -> StoreSummary {
    let s = |k: &str| {
        rec.config
            .get(k)
            .and_then(|v| v.as_str())
            .map(str::to_owned)
    };
    StoreSummary {
        name: rec.name.clone(),
        kind: rec.kind.clone(),
        location: if rec.kind == "fs" {
            s("path")
        } else {
            s("endpoint")
        }
        .unwrap_or_default(),
        region: if rec.kind == "s3" { s("region") } else { None },
    }
}

async fn open_record(rec: &StoreRecord) -> Result<Opened, Error> {
    let err = |source| Error::Store {
        name: rec.name.clone(),
        source,
    };
    match rec.kind.as_str() {
        "fs" => {
            let path = rec
                .config
                .get("path")
                .and_then(|p| p.as_str())
                .ok_or_else(|| Error::Invalid {
                    name: rec.name.clone(),
                    why: "the record has no path".into(),
                })?;
            Ok(Opened::Fs(
                FsStore::open(&rec.name, Path::new(path))
                    .await
                    .map_err(err)?,
            ))
        }
        "s3" => {
            let cfg: S3Config =
                serde_json::from_value(rec.config.clone()).map_err(|e| Error::Invalid {
                    name: rec.name.clone(),
                    why: e.to_string(),
                })?;
            Ok(Opened::S3(Arc::new(
                S3Store::new(&rec.name, cfg).map_err(err)?,
            )))
        }
        other => Err(Error::Invalid {
            name: rec.name.clone(),
            why: format!("unknown kind {other:?}"),
        }),
    }
}

fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_is_named_once() {
        let down = Error::Store {
            name: "local".into(),
            source: st::Error::Unavailable {
                store: "local".into(),
                message: "gone".into(),
            },
        };
        assert_eq!(down.to_string(), "store local is unavailable: gone");
        let other = Error::Store {
            name: "rem".into(),
            source: st::Error::InvalidArgument("bad".into()),
        };
        assert_eq!(other.to_string(), "store rem: invalid argument: bad");
    }
}
