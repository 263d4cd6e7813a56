//! One namespace bucket as a [`Store`]: reads from the first read target that answers,
//! writes to the primary and every secondary, with what a secondary did not take recorded in
//! the journal first.
//!
//! The gateway hands requests for a namespace bucket to its `Namespace` exactly as it would
//! to a plain store; the `bucket` argument of every method is the client's bucket name and is
//! replaced by each target's own bucket.
//!
//! # A write, step by step
//! 1. Take the key's lock (so the primary and every secondary see changes to one key in the
//!    same order, and the catch-up worker never syncs a key while a write to it runs).
//! 2. Append one journal row per secondary, durably: from then on a crash leaves the key
//!    owed. For a PUT this runs while the body streams, and the [`tee`](super::tee) holds
//!    the end of every target's body until the rows are durable; other changes append first.
//! 3. Send the write to the primary and the secondaries at once; wait for the primary, then
//!    give the secondaries a short grace.
//! 4. Settle: a secondary that took the write is no longer owed it; one that failed, lagged
//!    or timed out keeps its row for the catch-up worker. If the primary failed, the client
//!    gets its error and the rows are forgotten, except for a secondary that did take the
//!    write (it is now ahead of the primary and must be repaired from it).
//!
//! Changes that cannot be replayed verbatim on another store (copy, tagging, multipart
//! complete, deleting one version) go to the primary only and leave the rows for the worker,
//! which copies the key's current state from the primary.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::future::BoxFuture;
use tokio::sync::Notify;

use super::locks::KeyLocks;
use super::tee::{Hashing, tee};
use crate::journal::Journal;
use crate::state::NewJournalRow;
use crate::store::{
    BucketInfo, BucketName, ByteStream, Caps, CompletedPart, CopyOptions, DeleteResult, Error,
    GetOptions, GetResult, ListPage, ListQuery, ObjectKey, ObjectMeta, PartInfo, PartsPage,
    PutOptions, Result, SharedDigests, Store, Tags, UploadsPage, UploadsQuery, Versioning,
    VersionsPage, VersionsQuery,
};

/// How long a secondary may still take once the primary has answered.
const SECONDARY_GRACE: Duration = Duration::from_secs(3);
/// Bytes buffered per secondary before it is cut from a PUT.
const TEE_BYTES: usize = 4 * 1024 * 1024;
/// Bodies declared at most this long are hashed once, in the tee, for every target.
const SHARED_HASH_MAX: u64 = 256 * 1024;

/// One target as opened: its label (`store:bucket`), its store and its bucket there.
#[derive(Clone)]
pub struct Leg {
    pub label: String,
    pub store: Arc<dyn Store>,
    pub bucket: BucketName,
}

/// Who does what for a bucket right now (derived from its policy and failover state).
pub struct Roles {
    pub primary: Leg,
    pub secondaries: Vec<Leg>,
    pub readers: Vec<Leg>,
    /// Set when failed over read-only: the label of the target serving reads.
    pub read_only: Option<String>,
    /// Secondaries that get no live writes, only journal rows (the old primary after a
    /// read-write failover: it is presumed unhealthy until failback).
    pub deferred: Vec<String>,
}

pub struct Namespace {
    pub(super) name: String,
    /// Swapped by failover, failback and policy changes, while holding `gate` for writing.
    pub(super) roles: std::sync::RwLock<Arc<Roles>>,
    /// Every write holds it for reading while it runs, so a role change waits for in-flight
    /// writes and holds new ones back (the brief pause of a failback).
    pub(super) gate: tokio::sync::RwLock<()>,
    pub(super) journal: Arc<Journal>,
    pub(super) locks: Arc<KeyLocks>,
    pub(super) wake: Arc<Notify>,
    /// Secondaries whose last write failed: live writes skip them (their rows stay owed)
    /// until the catch-up worker reaches them again, so a dead target costs the client
    /// nothing.
    pub(super) down: Mutex<HashSet<String>>,
}

fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

impl Namespace {
    /// The current roles.
    pub fn roles(&self) -> Arc<Roles> {
        match self.roles.read() {
            Ok(r) => r.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Replaces the roles; the caller holds `gate` for writing.
    pub(super) fn set_roles(&self, roles: Roles) {
        match self.roles.write() {
            Ok(mut r) => *r = Arc::new(roles),
            Err(p) => *p.into_inner() = Arc::new(roles),
        }
    }

    fn writable(&self, roles: &Roles) -> Result<()> {
        match &roles.read_only {
            Some(to) => Err(Error::ReadOnly {
                bucket: self.name.clone(),
                to: to.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Durably records that every secondary owes a change to `key`.
    async fn owe(&self, roles: &Roles, key: &str, op: &str, bytes: u64) -> Result<Pending<'_>> {
        let rows = roles
            .secondaries
            .iter()
            .map(|s| NewJournalRow {
                bucket: self.name.clone(),
                target: s.label.clone(),
                key: key.to_owned(),
                op: op.to_owned(),
                bytes: i64::try_from(bytes).unwrap_or(i64::MAX),
                created_ms: now_ms(),
            })
            .collect();
        let ids = self.journal.append(rows).await.map_err(journal_err)?;
        Ok(Pending { ns: self, ids })
    }

    /// Settles the rows of one write: `took[i]` says whether secondary `i` has the change.
    fn settle(&self, mut pending: Pending<'_>, primary_ok: bool, took: &[bool]) {
        let ids = std::mem::take(&mut pending.ids);
        let mut forget = Vec::new();
        let mut owed = Vec::new();
        for (id, took) in ids.iter().zip(took) {
            // Primary ok: a secondary that took it owes nothing. Primary failed: a secondary
            // that did not take it owes nothing; one that did must be repaired.
            if *took == primary_ok {
                forget.push(*id);
            } else {
                owed.push(*id);
            }
        }
        self.journal.forget(&forget);
        self.journal.release(&owed);
        if !owed.is_empty() {
            self.wake.notify_waiters();
        }
    }

    /// Runs `primary` and `secondaries` at once; waits for the primary, then at most
    /// [`SECONDARY_GRACE`] for the rest. Returns the primary's result and who took the write.
    async fn fan_out<T, S>(
        &self,
        roles: &Roles,
        primary: impl Future<Output = Result<T>>,
        secondaries: Vec<BoxFuture<'_, Result<S>>>,
        key: &str,
    ) -> (Result<T>, Vec<bool>) {
        let n = secondaries.len();
        let all = futures::future::join_all(secondaries);
        let mut all = std::pin::pin!(all);
        let mut primary = std::pin::pin!(primary);
        let mut done: Option<Vec<Result<S>>> = None;
        let p = loop {
            tokio::select! {
                r = &mut primary => break r,
                r = &mut all, if done.is_none() => done = Some(r),
            }
        };
        let results = match done {
            Some(r) => Some(r),
            None => tokio::time::timeout(SECONDARY_GRACE, all).await.ok(),
        };
        let took = match results {
            Some(rs) => rs
                .into_iter()
                .zip(&roles.secondaries)
                .map(|(r, leg)| match r {
                    Ok(_) => true,
                    Err(Error::Unavailable { store, .. }) if store == SKIPPED => false,
                    Err(e) => {
                        tracing::warn!(bucket = %self.name, key, target = %leg.label, error = %e, "secondary write failed; journaled");
                        if e.is_retryable() {
                            self.mark_down(&leg.label);
                        }
                        false
                    }
                })
                .collect(),
            None => {
                tracing::warn!(bucket = %self.name, key, "secondary write too slow; journaled");
                vec![false; n]
            }
        };
        (p, took)
    }

    fn mark_down(&self, label: &str) {
        if let Ok(mut d) = self.down.lock() {
            d.insert(label.to_owned());
        }
    }

    /// Called by the catch-up worker once it wrote to `label` again.
    pub(super) fn mark_up(&self, label: &str) {
        if let Ok(mut d) = self.down.lock() {
            d.remove(label);
        }
    }

    fn is_down(&self, label: &str) -> bool {
        self.down.lock().map(|d| d.contains(label)).unwrap_or(false)
    }

    /// Starts a change applied to the primary only (the secondaries are caught up from it):
    /// holds writes' share of the gate and the key's lock, and records what is owed.
    async fn begin_owed(&self, key: &ObjectKey, op: &str) -> Result<Owed<'_>> {
        let gate = self.gate.read().await;
        let roles = self.roles();
        self.writable(&roles)?;
        let (lock, pending) = if roles.secondaries.is_empty() {
            (None, None)
        } else {
            let lock = self.locks.lock(&self.name, key.as_str()).await;
            (
                Some(lock),
                Some(self.owe(&roles, key.as_str(), op, 0).await?),
            )
        };
        Ok(Owed {
            _gate: gate,
            _lock: lock,
            roles,
            pending,
        })
    }

    /// Ends a change begun with [`Self::begin_owed`].
    fn end_owed<T>(&self, mut owed: Owed<'_>, r: Result<T>) -> Result<T> {
        if let Some(p) = owed.pending.take() {
            let took = vec![false; p.ids.len()];
            self.settle(p, r.is_ok(), &took);
        }
        r
    }

    /// A bucket-level change: the primary must take it; a secondary that does not is owed it.
    async fn bucket_change(&self, change: BucketChange) -> Result<()> {
        let _gate = self.gate.read().await;
        let roles = self.roles();
        self.writable(&roles)?;
        change.apply(&roles.primary).await?;
        let mut owed = Vec::new();
        for s in &roles.secondaries {
            if let Err(e) = change.apply(s).await {
                tracing::warn!(bucket = %self.name, target = %s.label, error = %e, "bucket change not applied to a secondary; journaled");
                owed.push(NewJournalRow {
                    bucket: self.name.clone(),
                    target: s.label.clone(),
                    key: String::new(),
                    op: "bucket".into(),
                    bytes: 0,
                    created_ms: now_ms(),
                });
            }
        }
        if !owed.is_empty() {
            let ids = self.journal.append(owed).await.map_err(journal_err)?;
            self.journal.release(&ids);
            self.wake.notify_waiters();
        }
        Ok(())
    }
}

/// What [`Namespace::begin_owed`] holds until the change ends.
struct Owed<'a> {
    _gate: tokio::sync::RwLockReadGuard<'a, ()>,
    _lock: Option<tokio::sync::MutexGuard<'a, ()>>,
    roles: Arc<Roles>,
    pending: Option<Pending<'a>>,
}

/// Journal rows of a write in progress. If the write is abandoned before it settles them
/// (the client went away and its request future was dropped), they are handed to the
/// catch-up worker: owed, which is always safe.
struct Pending<'a> {
    ns: &'a Namespace,
    ids: Vec<i64>,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if !self.ids.is_empty() {
            self.ns.journal.release(&self.ids);
            self.ns.wake.notify_waiters();
        }
    }
}

enum BucketChange {
    Versioning(Versioning),
    Tags(Option<Tags>),
}

impl BucketChange {
    async fn apply(&self, l: &Leg) -> Result<()> {
        match self {
            BucketChange::Versioning(v) => l.store.set_versioning(&l.bucket, *v).await,
            BucketChange::Tags(t) => l.store.put_bucket_tags(&l.bucket, t.clone()).await,
        }
    }
}

/// Runs `$call` (an expression using `$l: &Leg`) on each read target in order until one
/// answers with anything but [`Error::Unavailable`].
macro_rules! read_first {
    ($self:ident, |$l:ident| $call:expr) => {{
        let roles = $self.roles();
        let mut last = None;
        let mut out = None;
        for $l in &roles.readers {
            match $call.await {
                Err(e @ Error::Unavailable { .. }) => last = Some(e),
                r => {
                    out = Some(r);
                    break;
                }
            }
        }
        match out {
            Some(r) => r,
            None => Err(last.unwrap_or_else(|| Error::Unavailable {
                store: $self.name.clone(),
                message: "the bucket has no read target".into(),
            })),
        }
    }};
}

/// The "store" of the error a skipped (down) secondary's share reports.
const SKIPPED: &str = "(skipped: target down)";

fn skipped<'a, T: Send + 'a>() -> BoxFuture<'a, Result<T>> {
    Box::pin(async {
        Err(Error::Unavailable {
            store: SKIPPED.into(),
            message: String::new(),
        })
    })
}

fn journal_err(e: crate::journal::Error) -> Error {
    Error::Unavailable {
        store: "journal".into(),
        message: e.to_string(),
    }
}

fn secondary_opts(opts: &PutOptions) -> PutOptions {
    PutOptions {
        attrs: opts.attrs.clone(),
        tags: opts.tags.clone(),
        checksum_algorithm: opts.checksum_algorithm,
        size_hint: opts.size_hint,
        source_md5: opts.source_md5,
        shared_digests: opts.shared_digests.clone(),
        // The primary verifies the client's digests; a secondary that commits a body the
        // primary then refuses is repaired from the primary (see `settle`).
        verify: None,
    }
}

#[async_trait]
impl Store for Namespace {
    fn name(&self) -> &str {
        &self.name
    }

    fn caps(&self) -> Caps {
        self.roles().primary.store.caps()
    }

    async fn list_buckets(&self) -> Result<Vec<BucketInfo>> {
        Ok(Vec::new())
    }

    async fn create_bucket(&self, _bucket: &BucketName) -> Result<()> {
        Err(Error::BucketAlreadyExists {
            bucket: self.name.clone(),
        })
    }

    async fn delete_bucket(&self, _bucket: &BucketName) -> Result<()> {
        Err(Error::InvalidArgument(format!(
            "{} is a namespace bucket: remove it with `ferry bucket remove`",
            self.name
        )))
    }

    async fn head_bucket(&self, _bucket: &BucketName) -> Result<BucketInfo> {
        let mut info = read_first!(self, |l| l.store.head_bucket(&l.bucket))?;
        info.name = self.name.clone();
        Ok(info)
    }

    async fn get_versioning(&self, _bucket: &BucketName) -> Result<Versioning> {
        read_first!(self, |l| l.store.get_versioning(&l.bucket))
    }

    async fn set_versioning(&self, _bucket: &BucketName, state: Versioning) -> Result<()> {
        self.bucket_change(BucketChange::Versioning(state)).await
    }

    async fn get_bucket_tags(&self, _bucket: &BucketName) -> Result<Option<Tags>> {
        read_first!(self, |l| l.store.get_bucket_tags(&l.bucket))
    }

    async fn put_bucket_tags(&self, _bucket: &BucketName, tags: Option<Tags>) -> Result<()> {
        self.bucket_change(BucketChange::Tags(tags)).await
    }

    async fn put_object(
        &self,
        _bucket: &BucketName,
        key: &ObjectKey,
        body: ByteStream,
        opts: PutOptions,
    ) -> Result<ObjectMeta> {
        let _gate = self.gate.read().await;
        let roles = self.roles();
        self.writable(&roles)?;
        let p = &roles.primary;
        if roles.secondaries.is_empty() {
            return p.store.put_object(&p.bucket, key, body, opts).await;
        }
        let _g = self.locks.lock(&self.name, key.as_str()).await;
        // The journal rows are committed while the body streams; the tee holds the end of
        // every body until they are, so no target can commit the write before it is owed.
        let record = self.owe(&roles, key.as_str(), "object", opts.size_hint.unwrap_or(0));
        let (recorded_tx, recorded_rx) = tokio::sync::oneshot::channel();
        let record = async move {
            let r = record.await;
            let _ = recorded_tx.send(r.is_ok());
            r
        };
        let up: Vec<bool> = roles
            .secondaries
            .iter()
            .map(|s| !self.is_down(&s.label) && !roles.deferred.contains(&s.label))
            .collect();
        let n_up = up.iter().filter(|u| **u).count();
        // A small body is hashed once, in the tee, for every target. A large one is hashed
        // by each target on a thread of its own: in the tee, MD5 would slow the one task
        // that receives the body.
        let mut opts = opts;
        let hashing =
            (n_up > 0 && opts.size_hint.is_some_and(|n| n <= SHARED_HASH_MAX)).then(|| {
                let into = SharedDigests::default();
                opts.shared_digests = Some(into.clone());
                Hashing {
                    algorithm: opts.checksum_algorithm,
                    into,
                }
            });
        let (lead, follow) = tee(body, n_up, TEE_BYTES, Some(recorded_rx), hashing);
        let mut follow = follow.into_iter();
        let sec: Vec<BoxFuture<'_, Result<ObjectMeta>>> = roles
            .secondaries
            .iter()
            .zip(&up)
            .map(
                |(s, up)| match (up, if *up { follow.next() } else { None }) {
                    (true, Some(stream)) => {
                        let o = secondary_opts(&opts);
                        Box::pin(async move { s.store.put_object(&s.bucket, key, stream, o).await })
                            as BoxFuture<'_, _>
                    }
                    _ => skipped(),
                },
            )
            .collect();
        let primary = p.store.put_object(&p.bucket, key, lead, opts);
        let (recorded, (r, took)) =
            tokio::join!(record, self.fan_out(&roles, primary, sec, key.as_str()));
        // Not recorded: every body ended with an error, nothing was committed anywhere.
        let pending = recorded?;
        self.settle(pending, r.is_ok(), &took);
        r
    }

    async fn get_object(
        &self,
        _bucket: &BucketName,
        key: &ObjectKey,
        opts: GetOptions,
    ) -> Result<GetResult> {
        read_first!(self, |l| l.store.get_object(&l.bucket, key, opts.clone()))
    }

    async fn head_object(
        &self,
        _bucket: &BucketName,
        key: &ObjectKey,
        version_id: Option<&str>,
    ) -> Result<ObjectMeta> {
        read_first!(self, |l| l.store.head_object(&l.bucket, key, version_id))
    }

    async fn delete_object(
        &self,
        _bucket: &BucketName,
        key: &ObjectKey,
        version_id: Option<&str>,
    ) -> Result<DeleteResult> {
        if version_id.is_some() {
            // Version ids differ between stores: the worker syncs the key's new current state.
            let w = self.begin_owed(key, "object").await?;
            let p = &w.roles.primary;
            let r = p.store.delete_object(&p.bucket, key, version_id).await;
            return self.end_owed(w, r);
        }
        let _gate = self.gate.read().await;
        let roles = self.roles();
        self.writable(&roles)?;
        let p = &roles.primary;
        if roles.secondaries.is_empty() {
            return p.store.delete_object(&p.bucket, key, None).await;
        }
        let _g = self.locks.lock(&self.name, key.as_str()).await;
        let pending = self.owe(&roles, key.as_str(), "object", 0).await?;
        let sec: Vec<BoxFuture<'_, Result<DeleteResult>>> = roles
            .secondaries
            .iter()
            .map(|s| {
                if self.is_down(&s.label) || roles.deferred.contains(&s.label) {
                    skipped()
                } else {
                    s.store.delete_object(&s.bucket, key, None)
                }
            })
            .collect();
        let primary = p.store.delete_object(&p.bucket, key, None);
        let (r, took) = self.fan_out(&roles, primary, sec, key.as_str()).await;
        self.settle(pending, r.is_ok(), &took);
        r
    }

    async fn copy_object(
        &self,
        _src_bucket: &BucketName,
        src_key: &ObjectKey,
        _dst_bucket: &BucketName,
        dst_key: &ObjectKey,
        opts: CopyOptions,
    ) -> Result<ObjectMeta> {
        let w = self.begin_owed(dst_key, "object").await?;
        let p = &w.roles.primary;
        let r = p
            .store
            .copy_object(&p.bucket, src_key, &p.bucket, dst_key, opts)
            .await;
        self.end_owed(w, r)
    }

    async fn get_object_tags(
        &self,
        _bucket: &BucketName,
        key: &ObjectKey,
        version_id: Option<&str>,
    ) -> Result<(String, Tags)> {
        read_first!(self, |l| l
            .store
            .get_object_tags(&l.bucket, key, version_id))
    }

    async fn put_object_tags(
        &self,
        _bucket: &BucketName,
        key: &ObjectKey,
        version_id: Option<&str>,
        tags: Tags,
    ) -> Result<String> {
        let w = self.begin_owed(key, "tags").await?;
        let p = &w.roles.primary;
        let r = p
            .store
            .put_object_tags(&p.bucket, key, version_id, tags)
            .await;
        self.end_owed(w, r)
    }

    async fn list_objects(&self, _bucket: &BucketName, query: &ListQuery) -> Result<ListPage> {
        read_first!(self, |l| l.store.list_objects(&l.bucket, query))
    }

    async fn list_versions(
        &self,
        _bucket: &BucketName,
        query: &VersionsQuery,
    ) -> Result<VersionsPage> {
        read_first!(self, |l| l.store.list_versions(&l.bucket, query))
    }

    async fn create_multipart(
        &self,
        _bucket: &BucketName,
        key: &ObjectKey,
        opts: PutOptions,
    ) -> Result<String> {
        let _gate = self.gate.read().await;
        let roles = self.roles();
        self.writable(&roles)?;
        let p = &roles.primary;
        p.store.create_multipart(&p.bucket, key, opts).await
    }

    async fn upload_part(
        &self,
        _bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &str,
        part_number: u32,
        body: ByteStream,
        opts: PutOptions,
    ) -> Result<PartInfo> {
        let _gate = self.gate.read().await;
        let roles = self.roles();
        self.writable(&roles)?;
        let p = &roles.primary;
        p.store
            .upload_part(&p.bucket, key, upload_id, part_number, body, opts)
            .await
    }

    async fn complete_multipart(
        &self,
        _bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &str,
        parts: &[CompletedPart],
    ) -> Result<ObjectMeta> {
        let w = self.begin_owed(key, "object").await?;
        let p = &w.roles.primary;
        let r = p
            .store
            .complete_multipart(&p.bucket, key, upload_id, parts)
            .await;
        self.end_owed(w, r)
    }

    async fn abort_multipart(
        &self,
        _bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &str,
    ) -> Result<()> {
        let p = self.roles().primary.clone();
        p.store.abort_multipart(&p.bucket, key, upload_id).await
    }

    async fn list_parts(
        &self,
        _bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &str,
        part_number_marker: Option<u32>,
        max_parts: usize,
    ) -> Result<PartsPage> {
        let p = self.roles().primary.clone();
        p.store
            .list_parts(&p.bucket, key, upload_id, part_number_marker, max_parts)
            .await
    }

    async fn list_uploads(
        &self,
        _bucket: &BucketName,
        query: &UploadsQuery,
    ) -> Result<UploadsPage> {
        let p = self.roles().primary.clone();
        p.store.list_uploads(&p.bucket, query).await
    }
}
