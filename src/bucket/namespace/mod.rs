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

use futures::future::BoxFuture;
use tokio::sync::Notify;

use super::locks::KeyLocks;
use crate::journal::Journal;
use crate::state::NewJournalRow;
use crate::store::{
    BucketName, Error, ObjectKey, ObjectMeta, PutOptions, Result, Store, Tags, Versioning,
};
pub(super) use gate::Gate;
use gate::{Cut, Pass};

/// How long a secondary may still take once the primary has answered.
const SECONDARY_GRACE: Duration = Duration::from_secs(3);

/// When a secondary's write was given up (no answer within the grace), the key is synced
/// again this long after:
/// the request may still land (a stalled server or a proxy that finishes it later), over
/// what the catch-up or a later write put there meanwhile (a probe's secondary ended on
/// the older bytes, or without a deleted-then-rewritten object, with nothing owed).
pub(super) const LATE_LANDING_MS: i64 = 60_000;

/// The journal op of such a second sync (a row dated [`LATE_LANDING_MS`] ahead).
pub(super) const RECHECK_OP: &str = "recheck";

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
    /// When a read-write failover began (its target is `primary`), if one is on.
    pub failed_over_ms: Option<i64>,
}

pub struct Namespace {
    pub(super) name: String,
    /// Swapped by failover, failback and policy changes, while holding `gate` for writing.
    pub(super) roles: std::sync::RwLock<Arc<Roles>>,
    /// Every write holds it while it runs, so a role change waits for in-flight writes (a
    /// bounded time) and holds new ones back (the brief pause of a failback).
    pub(super) gate: Gate,
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

    /// [`Self::writable`], and a key every target can hold: a target whose keys are paths
    /// (an fs store) cannot hold `a//b` or `x/../y`, which S3 takes. Refused before anything
    /// is journaled or sent, or the other targets would take it and the journal would owe it
    /// to that one for ever (and a failback could never finish).
    fn writable_key(&self, roles: &Roles, key: &ObjectKey) -> Result<()> {
        self.writable(roles)?;
        let paths = std::iter::once(&roles.primary)
            .chain(&roles.secondaries)
            .any(|l| l.store.caps().path_semantics);
        if paths {
            key.check_new_path()?;
        }
        Ok(())
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
        let (p, took, late) = self.fan_out_legs(roles, primary, secondaries, key).await;
        if !late.is_empty() {
            self.recheck_later(late, key, RECHECK_OP).await;
        }
        (p, took)
    }

    /// [`Self::fan_out`]'s work; also returns the secondaries whose write was given up
    /// unanswered (it may still land). An error answer is not one: an attempt that failed
    /// to connect cannot land, and one a server failed (5xx) it rarely carries out later.
    async fn fan_out_legs<'l, T, S>(
        &self,
        roles: &'l Roles,
        primary: impl Future<Output = Result<T>>,
        secondaries: Vec<BoxFuture<'_, Result<S>>>,
        key: &str,
    ) -> (Result<T>, Vec<bool>, Vec<&'l Leg>) {
        let n = secondaries.len();
        let mut late = Vec::new();
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
                    // Slower than the primary for this body: owed, but not down.
                    Err(e) if super::tee::FellBehind::is_in(&e) => {
                        tracing::info!(bucket = %self.name, key, target = %leg.label, "secondary fell behind the primary; journaled");
                        false
                    }
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
                // Not done a grace period after the primary: a secondary that stalled (a hung
                // host, a black-holed path) would make every later write wait the grace too.
                // It is marked down, so writes skip it and owe it at once, until the catch-up
                // worker reaches it again.
                tracing::warn!(bucket = %self.name, key, "secondary write too slow; journaled, and the secondary marked down until caught up");
                for leg in &roles.secondaries {
                    self.mark_down(&leg.label);
                    late.push(leg);
                }
                vec![false; n]
            }
        };
        (p, took, late)
    }

    /// Owes `key` to `legs` once more, [`LATE_LANDING_MS`] from now: a write given up on
    /// them may still land, and the catch-up then copies the primary's state over it.
    /// Recorded before the write is answered, so a crash does not lose it.
    pub(super) async fn recheck_later(&self, legs: Vec<&Leg>, key: &str, op: &str) {
        let rows = legs
            .iter()
            .map(|leg| NewJournalRow {
                bucket: self.name.clone(),
                target: leg.label.clone(),
                key: key.to_owned(),
                op: op.to_owned(),
                bytes: 0,
                created_ms: now_ms() + LATE_LANDING_MS,
            })
            .collect();
        match self.journal.append(rows).await {
            Ok(ids) => self.journal.release(&ids),
            Err(e) => {
                tracing::warn!(bucket = %self.name, key, error = %e, "could not owe a late check of a secondary write given up on")
            }
        }
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

    /// Locks `key` for a write with `roles`, once no catch-up copy of it to the primary is in
    /// flight (one started before a failover made its target the primary; see
    /// [`super::locks`]).
    pub(super) async fn lock_key(
        &self,
        roles: &Roles,
        key: &str,
    ) -> tokio::sync::MutexGuard<'_, u64> {
        let g = self.locks.lock(&self.name, key).await;
        self.locks
            .wait_copies_to(&roles.primary.label, &self.name, key)
            .await;
        g
    }

    /// Starts a change applied to the primary only (the secondaries are caught up from it):
    /// holds writes' share of the gate and the key's lock, and records what is owed.
    async fn begin_owed(&self, key: &ObjectKey, op: &str) -> Result<Owed<'_>> {
        let gate = self.gate.enter().await;
        let roles = self.roles();
        // A version's delete ("delete") needs no key every target can hold (see
        // `write_roles`); it is owed as any change of the object.
        match op {
            "delete" => self.writable(&roles)?,
            _ => self.writable_key(&roles, key)?,
        }
        let op = if op == "delete" { "object" } else { op };
        let taken = gate
            .run(async {
                if roles.secondaries.is_empty() {
                    self.locks
                        .wait_copies_to(&roles.primary.label, &self.name, key.as_str())
                        .await;
                    return Ok::<_, Error>((None, None));
                }
                let lock = self.lock_key(&roles, key.as_str()).await;
                let pending = self.owe(&roles, key.as_str(), op, 0).await?;
                Ok((Some(lock), Some(pending)))
            })
            .await;
        let (lock, pending) = taken.map_err(|c| c.answer(&self.name))??;
        Ok(Owed {
            gate,
            _lock: lock,
            roles,
            pending,
        })
    }

    /// [`Self::end_owed`] for a change whose size is known only once the primary made it (a
    /// copy, a multipart completion): its rows carry that size, so status and metrics count
    /// the bytes owed.
    async fn end_owed_object(
        &self,
        owed: Owed<'_>,
        r: std::result::Result<Result<ObjectMeta>, Cut>,
    ) -> Result<ObjectMeta> {
        if let (Ok(Ok(m)), Some(p)) = (&r, &owed.pending)
            && let Err(e) = self
                .journal
                .db()
                .set_journal_bytes(&p.ids, i64::try_from(m.size).unwrap_or(i64::MAX))
                .await
        {
            tracing::debug!(bucket = %self.name, error = %e, "recording the size of an owed change failed");
        }
        self.end_owed(owed, r)
    }

    /// Ends a change begun with [`Self::begin_owed`] with the primary's answer, or with the
    /// cut that stopped it (its rows stay owed: the primary may have made the change).
    fn end_owed<T>(&self, mut owed: Owed<'_>, r: std::result::Result<Result<T>, Cut>) -> Result<T> {
        let r = match r {
            Ok(r) => r,
            Err(cut) => {
                drop(owed);
                return Err(cut.answer(&self.name));
            }
        };
        if let Some(p) = owed.pending.take() {
            let took = vec![false; p.ids.len()];
            self.settle(p, r.is_ok(), &took);
        }
        r
    }

    /// A bucket-level change: the primary must take it; a secondary that does not is owed it.
    async fn bucket_change(&self, change: BucketChange) -> Result<()> {
        let gate = self.gate.enter().await;
        gate.run(self.bucket_change_within(change))
            .await
            .map_err(|c| c.answer(&self.name))?
    }

    async fn bucket_change_within(&self, change: BucketChange) -> Result<()> {
        let roles = self.roles();
        self.writable(&roles)?;
        change.apply(&roles.primary).await?;
        let mut owed = Vec::new();
        for s in &roles.secondaries {
            // As for object writes: a secondary that is down is owed the change at once, and
            // one that does not answer within the grace is owed it and marked down.
            let applied = if self.is_down(&s.label) {
                Err("the secondary is down".to_owned())
            } else {
                match tokio::time::timeout(SECONDARY_GRACE, change.apply(s)).await {
                    Ok(r) => r.map_err(|e| e.to_string()),
                    Err(_) => {
                        self.mark_down(&s.label);
                        self.recheck_later(vec![s], "", "bucket").await;
                        Err(format!("no answer within {} s", SECONDARY_GRACE.as_secs()))
                    }
                }
            };
            if let Err(e) = applied {
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
    gate: Pass<'a>,
    _lock: Option<tokio::sync::MutexGuard<'a, u64>>,
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
/// answers with anything but [`Error::Unavailable`]. With `fresh`, an answer of a read
/// target after the first (a fallback) is taken only if `$check` (an `Option<Error>` future
/// using `$l` and `$r`, the answer) is `None` (see `fallback.rs`).
macro_rules! read_first {
    ($self:ident, |$l:ident| $call:expr) => {
        read_first!($self, |$l| $call, fresh | _r | async { None })
    };
    ($self:ident, |$l:ident| $call:expr, fresh |$r:ident| $check:expr) => {{
        let roles = $self.roles();
        let mut last = None;
        let mut out = None;
        for (i, $l) in roles.readers.iter().enumerate() {
            match $call.await {
                Err(e @ Error::Unavailable { .. }) => last = Some(e),
                $r => {
                    if i > 0 && $l.label != roles.primary.label {
                        let checked: Option<Error> = $check.await;
                        if let Some(e) = checked {
                            last = Some(e);
                            continue;
                        }
                    }
                    out = Some($r);
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
        checksum_suffices: opts.checksum_suffices,
        checksum: opts.checksum.clone(),
        full_object_checksum: opts.full_object_checksum,
        // The primary verifies the client's digests; a secondary that commits a body the
        // primary then refuses is repaired from the primary (see `settle`).
        verify: None,
    }
}

mod fallback;
mod gate;
mod store;
mod uploads;
