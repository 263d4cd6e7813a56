//! Namespace buckets: a client-visible bucket whose writes go to a primary and secondaries and
//! whose reads come from the first read target that answers; failover and failback.
//!
//! Owns: policies ([`policy`]), the per-bucket [`Namespace`] store the gateway writes through
//! (multi-write, [`tee`], key [`locks`]), the [`catchup`] workers that drain the journal, and
//! the admin operations on buckets ([`Buckets`]; policy changes in `change`, status in
//! `status`, failover and failback in `failover`). Does
//! not own: where the journal's rows are kept (`journal`, `state`), how one object is copied
//! (`transfer`), or S3 wire formats.

pub mod backfill;
mod catchup;
mod change;
mod failover;
mod locks;
pub mod namespace;
pub mod policy;
mod status;
mod strays;
pub use strays::{claim, release};
mod tee;

pub use status::{BucketStatus, FailbackError, TargetStatus};

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, watch};

use crate::journal::Journal;
use crate::registry::{self, Registry};
use crate::state;
use crate::store::watched::Watched;
use crate::store::{self, Store};
use crate::telemetry::Metrics;
use catchup::SharedHealth;
use locks::KeyLocks;
pub use namespace::{Leg, Namespace, Roles};
pub use policy::{Failover, FailoverMode, Policy, Target};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad input: the request is refused and nothing changed.
    #[error("{0}")]
    Invalid(String),
    #[error("no namespace bucket named {0:?}")]
    NotFound(String),
    #[error("a bucket named {0:?} already exists")]
    Exists(String),
    /// A change the bucket's state does not allow now (failed over, failing back, owed
    /// writes): the API's 409.
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    State(#[from] state::Error),
    #[error(transparent)]
    Registry(#[from] registry::Error),
    #[error("{0}")]
    Store(#[from] store::Error),
    #[error("failback of {bucket} stopped: {why}")]
    Failback { bucket: String, why: String },
    /// Writes in flight kept a role change from starting; nothing changed.
    #[error("bucket {bucket}: {why}")]
    Busy { bucket: String, why: String },
}

impl Error {
    fn busy(bucket: &str, why: impl std::fmt::Display) -> Self {
        Error::Busy {
            bucket: bucket.to_owned(),
            why: why.to_string(),
        }
    }
}

/// What the API returns for a bucket.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BucketView {
    pub name: String,
    pub policy: Policy,
    pub mode: String,
    /// What the change went ahead despite (a failover target that does not answer).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

impl BucketView {
    fn new(name: &str, policy: &Policy) -> Self {
        Self {
            name: name.to_owned(),
            mode: mode(policy),
            policy: policy.clone(),
            warning: None,
        }
    }
}

struct Entry {
    ns: Arc<Namespace>,
    policy: Policy,
    /// Stops the catch-up workers of the current roles.
    stop: watch::Sender<bool>,
    workers: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

/// The namespace buckets this server serves.
pub struct Buckets {
    registry: Arc<Registry>,
    journal: Arc<Journal>,
    locks: Arc<KeyLocks>,
    /// The plain buckets' store, so a namespace bucket cannot shadow one of its buckets.
    default_store: Arc<dyn Store>,
    open: RwLock<HashMap<String, Arc<Entry>>>,
    health: Mutex<HashMap<(String, String), SharedHealth>>,
    /// Each target store as the buckets use it: watched for a backend that stops answering
    /// (one per store, shared by its buckets).
    /// Held weakly: a store no bucket uses any more is let go (an fs store's lock with it,
    /// so a store removed and added again opens; a probe found it "open in another Ferry
    /// process", this one).
    watched: Mutex<HashMap<String, std::sync::Weak<Watched>>>,
    /// One admin change at a time per bucket (a long failback blocks only its own bucket).
    changes: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Buckets with a failback running: other admin changes to them are refused at once
    /// rather than queued behind it (a failback may wait minutes for its primary).
    failing_back: Arc<Mutex<std::collections::HashSet<String>>>,
    /// Per bucket, why its last failback failed (cleared when the next one starts).
    failback_errors: Mutex<HashMap<String, FailbackError>>,
    metrics: Arc<Metrics>,
}

/// Marks a bucket as failing back while it lives.
struct FailingBack {
    set: Arc<Mutex<std::collections::HashSet<String>>>,
    name: String,
}

impl Drop for FailingBack {
    fn drop(&mut self) {
        self.set
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.name);
    }
}

/// How long a role change waits for the old catch-up workers' in-flight copies.
const RETIRE_LIMIT: Duration = Duration::from_secs(30);
/// How long failback waits for the primary to catch up while writes continue.
const DRAIN_LIMIT: Duration = Duration::from_secs(3600);
/// How long writes may be held back for the final drain before failback gives up.
const PAUSED_DRAIN_LIMIT: Duration = Duration::from_secs(60);

fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

fn mode(p: &Policy) -> String {
    match &p.failover {
        None => "normal".into(),
        Some(f) => match f.mode {
            FailoverMode::ReadOnly => format!("failed-over-read-only to {}", f.to),
            FailoverMode::ReadWrite => format!("failed-over-read-write to {}", f.to),
        },
    }
}

impl Buckets {
    /// Opens every recorded namespace bucket and starts its catch-up workers.
    pub async fn start(
        registry: Arc<Registry>,
        journal: Arc<Journal>,
        default_store: Arc<dyn Store>,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<Self>, Error> {
        let me = Arc::new(Self {
            registry,
            journal,
            locks: Arc::new(KeyLocks::default()),
            default_store,
            open: RwLock::new(HashMap::new()),
            health: Mutex::new(HashMap::new()),
            watched: Mutex::new(HashMap::new()),
            changes: Mutex::new(HashMap::new()),
            failing_back: Arc::default(),
            failback_errors: Mutex::default(),
            metrics,
        });
        // Alive (see `strays::claim`, done before this) while it runs; the uploads of earlier
        // processes are aborted once they are quiet.
        tokio::spawn(strays::heartbeat(
            me.registry.db().clone(),
            me.registry.data().to_owned(),
        ));
        tokio::spawn(strays::sweep(me.registry.clone()));
        for rec in me.registry.db().buckets().await? {
            let policy: Policy = match serde_json::from_value(rec.policy.clone()) {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(bucket = %rec.name, error = %e, "unreadable bucket policy; bucket not served");
                    continue;
                }
            };
            match me.roles(&policy).await {
                Ok(roles) => {
                    me.install(&rec.name, policy, roles);
                }
                Err(e) => {
                    tracing::error!(bucket = %rec.name, error = %e, "cannot open the bucket's stores; bucket not served")
                }
            }
        }
        tokio::spawn(me.clone().resume_backfills());
        Ok(me)
    }

    /// Waits for other admin changes to `name` to finish; refuses at once while a failback
    /// of it runs.
    async fn changing(&self, name: &str) -> Result<tokio::sync::OwnedMutexGuard<()>, Error> {
        self.refuse_while_failing_back(name)?;
        let m = {
            let mut c = self.changes.lock().unwrap_or_else(|p| p.into_inner());
            c.entry(name.to_owned()).or_default().clone()
        };
        Ok(m.lock_owned().await)
    }

    /// Whether a failback of `name` is running.
    pub fn is_failing_back(&self, name: &str) -> bool {
        self.failing_back
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(name)
    }

    /// Refuses a change to `name` while a failback of it runs.
    pub fn refuse_while_failing_back(&self, name: &str) -> Result<(), Error> {
        if self.is_failing_back(name) {
            return Err(Error::Conflict(format!(
                "bucket {name} is failing back: wait for it to finish (`ferry bucket status {name}`)"
            )));
        }
        Ok(())
    }

    /// The namespace bucket named `name`, if there is one (the gateway's lookup).
    pub fn get(&self, name: &str) -> Option<Arc<Namespace>> {
        let open = self.open.read().ok()?;
        open.get(name).map(|e| e.ns.clone())
    }

    /// The namespace bucket (of another name) whose objects the default store's bucket
    /// `bucket` holds, if one has it as a target: writes made to it directly would reach
    /// none of that namespace's other targets, and deleting it would take its data.
    pub fn holder_of(&self, bucket: &str) -> Option<String> {
        let open = self.open.read().ok()?;
        let store = self.default_store.name();
        open.iter()
            .find(|(name, e)| {
                name.as_str() != bucket
                    && e.policy
                        .write_to
                        .iter()
                        .chain(&e.policy.read_from)
                        .any(|t| t.store == store && t.bucket == bucket)
            })
            .map(|(name, _)| name.clone())
    }

    /// Refuses a target another namespace bucket already has: two namespaces writing to one
    /// place overwrite and delete each other's objects, with neither journal knowing (a probe
    /// deleted a namespace's object on its primary through another one). A place is a
    /// store's location (its folder, or its endpoint) and a bucket: two store names for one
    /// endpoint are one place.
    async fn refuse_shared_targets(&self, name: &str, policy: &Policy) -> Result<(), Error> {
        let located: HashMap<String, String> = self
            .registry
            .list()
            .await?
            .into_iter()
            .map(|s| (s.name, s.location))
            .collect();
        let place = |t: &Target| {
            let at = located
                .get(&t.store)
                .map_or(t.store.as_str(), String::as_str);
            (at.trim_end_matches('/').to_owned(), t.bucket.clone())
        };
        let taken: Vec<((String, String), String, String)> = {
            let Ok(open) = self.open.read() else {
                return Ok(());
            };
            open.iter()
                .filter(|(other, _)| other.as_str() != name)
                .flat_map(|(other, e)| {
                    e.policy
                        .write_to
                        .iter()
                        .chain(&e.policy.read_from)
                        .map(|o| (place(o), o.to_string(), other.clone()))
                        .collect::<Vec<_>>()
                })
                .collect()
        };
        for t in policy.write_to.iter().chain(&policy.read_from) {
            let here = place(t);
            if let Some((_, theirs, other)) = taken.iter().find(|(p, _, _)| *p == here) {
                let same = if *theirs == t.to_string() {
                    String::new()
                } else {
                    format!(" (as {theirs}: the same place)")
                };
                return Err(Error::Invalid(format!(
                    "target {t} is already a target of namespace bucket {other}{same}: two \
                     namespace buckets in one place would overwrite each other's objects"
                )));
            }
        }
        Ok(())
    }

    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .open
            .read()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        v.sort();
        v
    }

    fn entry(&self, name: &str) -> Result<Arc<Entry>, Error> {
        self.open
            .read()
            .ok()
            .and_then(|o| o.get(name).cloned())
            .ok_or_else(|| Error::NotFound(name.to_owned()))
    }

    async fn leg(&self, t: &Target) -> Result<Leg, Error> {
        let store = match self.registry.get(&t.store).await {
            Ok(s) => self.watched(&t.store, s.store()),
            Err(registry::Error::State(state::Error::NoSuchStore(_))) => {
                return Err(Error::Invalid(format!(
                    "target {t}: no store named {:?} is registered",
                    t.store
                )));
            }
            Err(e) => return Err(e.into()),
        };
        let bucket = t
            .bucket_name()
            .map_err(|e| Error::Invalid(format!("target {t}: {e}")))?;
        Ok(Leg {
            label: t.to_string(),
            store,
            bucket,
        })
    }

    /// `store` (registered as `name`) watched for a backend that stops answering: the one
    /// wrapper every bucket on it shares, made anew if the store was registered again. A
    /// `verify` reads through it too: a backend the buckets found down fails it at once, and
    /// one that stops answering meanwhile within seconds, not after the SDK's three minutes.
    pub fn watched(&self, name: &str, store: Arc<dyn Store>) -> Arc<dyn Store> {
        let mut w = self.watched.lock().unwrap_or_else(|p| p.into_inner());
        w.retain(|_, e| e.strong_count() > 0);
        match w.get(name).and_then(std::sync::Weak::upgrade) {
            Some(existing) if Arc::ptr_eq(existing.inner(), &store) => existing,
            _ => {
                let made = Arc::new(Watched::new(store));
                w.insert(name.to_owned(), Arc::downgrade(&made));
                made
            }
        }
    }

    /// Who does what under `policy`.
    async fn roles(&self, policy: &Policy) -> Result<Roles, Error> {
        policy.check().map_err(Error::Invalid)?;
        let mut write = Vec::new();
        for t in &policy.write_to {
            write.push(self.leg(t).await?);
        }
        let mut readers = Vec::new();
        for t in &policy.read_from {
            readers.push(self.leg(t).await?);
        }
        Ok(match &policy.failover {
            None => {
                let primary = write.remove(0);
                Roles {
                    primary,
                    secondaries: write,
                    readers,
                    read_only: None,
                    deferred: Vec::new(),
                    failed_over_ms: None,
                }
            }
            Some(f) => {
                let i = write
                    .iter()
                    .position(|l| l.label == f.to.to_string())
                    .unwrap_or(0);
                let to = write[i].clone();
                match f.mode {
                    FailoverMode::ReadOnly => {
                        let primary = write.remove(0);
                        Roles {
                            primary,
                            secondaries: write,
                            readers: vec![to.clone()],
                            read_only: Some(to.label),
                            deferred: Vec::new(),
                            failed_over_ms: None,
                        }
                    }
                    FailoverMode::ReadWrite => {
                        // The failover target takes writes; the others, the old primary
                        // first, are owed them. The old primary gets no live writes (it is
                        // why the bucket failed over); the catch-up worker feeds it as soon
                        // as it answers, which keeps the failback short.
                        write.remove(i);
                        let deferred = vec![write[0].label.clone()];
                        Roles {
                            primary: to.clone(),
                            secondaries: write,
                            readers: vec![to],
                            read_only: None,
                            deferred,
                            failed_over_ms: Some(f.since_ms),
                        }
                    }
                }
            }
        })
    }

    fn health_of(&self, bucket: &str, target: &str) -> SharedHealth {
        let mut h = self.health.lock().unwrap_or_else(|p| p.into_inner());
        h.entry((bucket.to_owned(), target.to_owned()))
            .or_default()
            .clone()
    }

    /// Serves `name` with `roles` (new bucket or new roles) and (re)starts its workers.
    /// Returns the workers of the roles it replaced (told to stop; await them to know no
    /// copy of theirs is still running).
    fn install(
        &self,
        name: &str,
        policy: Policy,
        roles: Roles,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let (stop, stop_rx) = watch::channel(false);
        let existing = self.open.read().ok().and_then(|o| o.get(name).cloned());
        let mut retired = Vec::new();
        let ns = match existing {
            Some(old) => {
                let _ = old.stop.send(true);
                old.ns.set_roles(roles);
                if let Ok(mut w) = old.workers.lock() {
                    retired = std::mem::take(&mut *w);
                }
                old.ns.clone()
            }
            None => Arc::new(Namespace {
                name: name.to_owned(),
                roles: std::sync::RwLock::new(Arc::new(roles)),
                gate: Default::default(),
                journal: self.journal.clone(),
                locks: self.locks.clone(),
                wake: Arc::new(Notify::new()),
                down: Default::default(),
            }),
        };
        let mut workers = Vec::new();
        for leg in ns.roles().secondaries.clone() {
            let health = self.health_of(name, &leg.label);
            workers.push(tokio::spawn(catchup::run(
                ns.clone(),
                leg,
                health,
                self.metrics.clone(),
                stop_rx.clone(),
            )));
        }
        if let Ok(mut o) = self.open.write() {
            o.insert(
                name.to_owned(),
                Arc::new(Entry {
                    ns,
                    policy,
                    stop,
                    workers: Mutex::new(workers),
                }),
            );
        }
        retired
    }

    /// Serves `name` with `roles` and waits for the workers of the roles it replaced: when
    /// called during a role change (writes held back), their in-flight copies finish, so
    /// what a target is owed holds still once the change returns (a failover's RPO).
    async fn activate(&self, name: &str, policy: Policy, roles: Roles) -> BucketView {
        let view = BucketView::new(name, &policy);
        for w in self.install(name, policy, roles) {
            let _ = tokio::time::timeout(RETIRE_LIMIT, w).await;
        }
        view
    }

    /// Checks a new policy, opens its targets and creates their buckets where missing.
    async fn prepare(
        &self,
        name: &str,
        policy: Policy,
        existing: Option<&Policy>,
        delete_extra: bool,
    ) -> Result<(Policy, Roles), Error> {
        self.refuse_shared_targets(name, &policy).await?;
        let roles = self.roles(&policy).await?;
        // A read target that takes no writes must already hold the bucket, or it would serve
        // nothing but NoSuchBucket (a typo in --read-from, a target meant for --write-to).
        // Checked before any bucket is made, so a refusal leaves nothing behind.
        let writes = |l: &Leg| {
            l.label == roles.primary.label || roles.secondaries.iter().any(|s| s.label == l.label)
        };
        for leg in roles.readers.iter().filter(|l| !writes(l)) {
            if let Err(store::Error::NoSuchBucket { .. }) = leg.store.head_bucket(&leg.bucket).await
            {
                return Err(Error::Invalid(format!(
                    "read target {} has no bucket {} and gets no writes (it is not in \
                     --write-to): create it there, or write to it too",
                    leg.label, leg.bucket
                )));
            }
        }
        // Targets the bucket already writes to have their buckets: one that is down must not
        // stop a change (adding a replacement site during an outage, say).
        let had =
            |l: &Leg| existing.is_some_and(|p| p.write_to.iter().any(|t| t.to_string() == l.label));
        // Buckets made here, taken away again if a later target refuses: a refused policy
        // leaves nothing behind.
        let mut made: Vec<&Leg> = Vec::new();
        for leg in std::iter::once(&roles.primary)
            .chain(&roles.secondaries)
            .filter(|l| !had(l))
        {
            let e = match leg.store.create_bucket(&leg.bucket).await {
                Ok(()) => {
                    made.push(leg);
                    continue;
                }
                Err(store::Error::BucketAlreadyExists { .. }) => continue,
                Err(e) => e,
            };
            change::take_away(&made).await;
            // A store that does not answer is no bad input (503: try again); a local failure
            // (a permission, a full disk) is.
            let unreachable = matches!(e, store::Error::Unavailable { .. })
                || matches!(&e, store::Error::Remote { status, .. } if *status >= 500 || *status == 429);
            // Said once: "store X is unavailable" heads the answer already.
            let why = match &e {
                store::Error::Unavailable { message, .. } => message.clone(),
                e => e.to_string(),
            };
            // Nor is a store that refuses Ferry's credentials (or its rights): the API's 502.
            let refused = e.is_credentials()
                || matches!(
                    &e,
                    store::Error::Remote {
                        status: 401 | 403,
                        ..
                    }
                );
            let message = format!("target {}: cannot create its bucket: {why}", leg.label);
            return Err(match (unreachable, &e) {
                (true, _) => Error::Store(store::Error::Unavailable {
                    store: leg.store.name().to_owned(),
                    message,
                }),
                (
                    false,
                    store::Error::Remote {
                        store,
                        code,
                        status,
                        message: said,
                    },
                ) if refused => Error::Store(store::Error::Remote {
                    store: store.clone(),
                    code: code.clone(),
                    message: format!("target {}: cannot create its bucket: {said}", leg.label),
                    status: *status,
                }),
                (false, _) => Error::Invalid(message),
            });
        }
        // Checked once the buckets are made: a folder of an fs store made a bucket just now
        // brings its files with it (a probe saw them pass unseen, then deleted).
        let added: Vec<&Leg> = roles.secondaries.iter().filter(|l| !had(l)).collect();
        let checked = self.refuse_extras(&roles.primary, &added, existing.is_none(), delete_extra);
        if let Err(e) = checked.await {
            change::take_away(&made).await;
            return Err(e);
        }
        Ok((policy, roles))
    }

    pub fn list(&self) -> Vec<BucketView> {
        let o = match self.open.read() {
            Ok(o) => o,
            Err(p) => p.into_inner(),
        };
        let mut v: Vec<BucketView> = o
            .iter()
            .map(|(name, e)| BucketView::new(name, &e.policy))
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }
}
