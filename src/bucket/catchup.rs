//! The catch-up worker: one task per (namespace bucket, secondary) drains what the secondary
//! owes, in journal order per key, by copying each owed key's *current* state from the
//! primary. That makes every sync idempotent (replaying a row twice, or rows of a write that
//! never reached the primary, leaves the target equal to the primary) and lets one sync settle
//! every earlier row of the same key. Failures back off exponentially (capped delay, no cap on
//! attempts); the rows stay until a sync succeeds, across restarts.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use serde::Serialize;
use tokio::sync::watch;

use super::namespace::{Leg, Namespace};
use crate::store::{self, ObjectKey, Versioning};
use crate::telemetry::Metrics;
use crate::transfer;

/// Keys synced at once per target.
const PARALLEL: usize = 32;
const PAGE: i64 = 2048;
const BACKOFF_MIN: Duration = Duration::from_millis(200);
/// The longest pause between attempts on a failing target: one probe every few seconds
/// costs nothing, and a target that comes back is noticed soon.
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Rows younger than this are left for the next pass (see `run`).
const YOUNG_MS: i64 = 1000;
/// How often an idle worker looks for rows it was not woken for.
const POLL: Duration = Duration::from_millis(500);

/// What one page of the journal owes for one key.
#[derive(Debug, Clone, Copy)]
struct Owed {
    /// The key's newest row: a sync settles it and every row before it.
    max_id: i64,
    /// Only tag changes: the sync copies tags, not the body.
    tags_only: bool,
    /// When the newest change was made (for the failover rule of [`sync_key`]).
    newest_ms: i64,
    /// A due check owed later (see [`super::namespace::RECHECK_OP`]) among the rows.
    recheck: Option<i64>,
}

/// What the worker knows about its target, for status and metrics.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Health {
    /// Set while the last attempt failed.
    pub last_error: Option<String>,
    pub last_error_ms: Option<i64>,
    pub last_ok_ms: Option<i64>,
    /// Keys synced since start.
    pub synced: u64,
    pub synced_bytes: u64,
}

pub type SharedHealth = Arc<Mutex<Health>>;

fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// Runs until `stop` turns true.
pub async fn run(
    ns: Arc<Namespace>,
    target: Leg,
    health: SharedHealth,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) {
    let db = ns.journal.db().clone();
    let mut backoff = BACKOFF_MIN;
    // Where the next page starts: the oldest rows first, but past a full page that failed,
    // so keys the target keeps refusing do not hold back every other key behind them.
    let mut after = 0i64;
    // Keys owed a second sync because a copy of them was given up unanswered, until when
    // (one such row at a time per key, however often the copy fails meanwhile).
    let mut rechecks: HashMap<String, i64> = HashMap::new();
    loop {
        if *stop.borrow() {
            return;
        }
        // Rows dated ahead (a check owed later, see `namespace`) are not read till due: a
        // page of them would hide the rows behind it for as long.
        let due = now_ms();
        let rows = match db.owed(&ns.name, &target.label, after, due, PAGE).await {
            Ok(r) => r,
            Err(e) => {
                note_error(&health, format!("reading the journal: {e}"));
                sleep_or_stop(backoff, &mut stop).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        // Rows of writes in progress, and rows settled but not yet deleted, are not owed.
        let live = ns.journal.busy();
        // Group by key, in order of each key's first row.
        let mut order: Vec<String> = Vec::new();
        let mut groups: HashMap<String, Owed> = HashMap::new();
        // Rows younger than a moment may belong to a write whose append just returned and
        // is not marked busy yet; the next pass takes them if they are still there.
        let young = now_ms() - YOUNG_MS;
        for r in rows
            .iter()
            .filter(|r| !live.contains(&r.id) && r.created_ms < young)
        {
            let e = groups.entry(r.key.clone()).or_insert_with(|| {
                order.push(r.key.clone());
                Owed {
                    max_id: r.id,
                    tags_only: true,
                    newest_ms: r.created_ms,
                    recheck: None,
                }
            });
            e.max_id = e.max_id.max(r.id);
            e.tags_only &= r.op == "tags";
            // A check owed later stands for the write given up on, made when it was due
            // less the wait: the failover rule below must see that write's time.
            let written = match r.op.as_str() {
                super::namespace::RECHECK_OP => {
                    e.recheck = Some(r.id);
                    r.created_ms - super::namespace::LATE_LANDING_MS
                }
                _ => r.created_ms,
            };
            e.newest_ms = e.newest_ms.max(written);
        }
        if order.is_empty() {
            if after > 0 {
                // The end of the rows past a failed page: start again from the oldest.
                after = 0;
                continue;
            }
            tokio::select! {
                _ = ns.wake.notified() => {}
                _ = tokio::time::sleep(POLL) => {}
                _ = stop.changed() => {}
            }
            continue;
        }
        let mut results = futures::stream::iter(order.into_iter().map(|key| {
            let Owed {
                max_id,
                tags_only,
                newest_ms,
                ..
            } = groups[&key];
            let ns = &ns;
            let target = &target;
            let stop = &stop;
            async move {
                let began = std::time::Instant::now();
                // Stopped (the roles changed): leave the rest of the page owed.
                let r = if *stop.borrow() {
                    Ok(None)
                } else {
                    sync_key(ns, target, &key, tags_only, newest_ms).await
                };
                (key, max_id, r, began.elapsed())
            }
        }))
        .buffer_unordered(PARALLEL);
        let mut failed = false;
        let mut raced = false;
        let mut settling = Settling::default();
        let mut late = Vec::new();
        // A settle runs beside the copies (they are polled meanwhile: one may hold the state
        // database's only connection, which the settle waits for).
        let mut settle: Option<futures::future::BoxFuture<'_, (bool, u64)>> = None;
        loop {
            let next = tokio::select! {
                next = results.next() => next,
                done = async {
                    match settle.as_mut() {
                        Some(f) => f.await,
                        None => std::future::pending().await,
                    }
                }, if settle.is_some() => {
                    settle = None;
                    failed |= !done.0;
                    settling.settled += done.1;
                    continue;
                }
                // Copies still running, and some done a while: settle those meanwhile.
                _ = tokio::time::sleep_until(settling.deadline()),
                    if settle.is_none() && settling.pending() => {
                    settle = Some(Box::pin(settling.take().settle(&ns, &target, &health, failed)));
                    continue;
                }
            };
            let Some((key, max_id, r, took)) = next else {
                break;
            };
            // Given up unanswered (not refused at once): the copy may still land, over
            // whatever a later sync puts there, as a client write given up may (see
            // `namespace`); a re-probe's stalled catch-up PUT did.
            if matches!(r, Err(store::Error::Unavailable { .. }))
                && took >= crate::store::watched::PROBE_TIMEOUT
            {
                late.push(key.clone());
            }
            match r {
                // Written meanwhile (or the roles changed): still owed, copied again.
                Ok(None) => raced = true,
                Ok(Some(bytes)) => {
                    settling.started();
                    settling.done.push((key, max_id));
                    settling.bytes += bytes;
                    metrics.synced(&ns.name, &target.label, bytes);
                }
                // A key the target can never hold (`a//b` on an fs store, written to the
                // primary before the target was added): owed for ever, it would hold the
                // failback back for ever too. Left out, and said.
                Err(store::Error::Name(e)) => {
                    tracing::warn!(bucket = %ns.name, target = %target.label, key, error = %e, "catch-up leaves out a key the target cannot hold");
                    note_error(
                        &health,
                        format!(
                            "key {key:?} left out: {} cannot hold it ({e})",
                            target.label
                        ),
                    );
                    settling.started();
                    settling.left_out.push((key, max_id));
                }
                Err(e) => {
                    tracing::debug!(bucket = %ns.name, target = %target.label, key, error = %e, "catch-up failed");
                    note_error(&health, format!("key {key:?}: {e}"));
                    failed = true;
                }
            }
            // Settled as they come, a batch at a time: a page of large objects settled only
            // at its end showed no progress for as long, and a crash copied it all again.
            if settle.is_none() && settling.due() {
                settle = Some(Box::pin(
                    settling.take().settle(&ns, &target, &health, failed),
                ));
            }
        }
        drop(results);
        for batch in [
            settle.take(),
            Some(Box::pin(
                settling.take().settle(&ns, &target, &health, failed),
            )),
        ]
        .into_iter()
        .flatten()
        {
            let (ok, n) = batch.await;
            failed |= !ok;
            settling.settled += n;
        }
        let now = now_ms();
        rechecks.retain(|_, due| *due > now);
        for key in late {
            if let std::collections::hash_map::Entry::Vacant(e) = rechecks.entry(key) {
                let due = now + super::namespace::LATE_LANDING_MS;
                // A check already owed and due (read with this page): pushed back, not
                // joined by another, so a target that stays stalled does not grow the
                // journal (and the owed count) by a row per key per minute.
                let moved = match groups.get(e.key()).and_then(|g| g.recheck) {
                    Some(id) => db.postpone_journal(id, due).await.unwrap_or(false),
                    None => false,
                };
                if !moved {
                    ns.recheck_later(vec![&target], e.key(), super::namespace::RECHECK_OP)
                        .await;
                }
                e.insert(due);
            }
        }
        let settled_any = settling.settled > 0;
        // A full page with failures: the next pass looks past it (a page's keys are synced
        // to their current state, so a later row of a key settles its earlier ones too).
        after = match rows.last() {
            Some(last) if failed && rows.len() as i64 == PAGE => last.id,
            _ => 0,
        };
        // Backoff when a pass settled nothing (the target refuses what it was given); a
        // pass that moved something goes on at once.
        if failed && !settled_any {
            sleep_or_stop(backoff, &mut stop).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
        } else if !failed {
            backoff = BACKOFF_MIN;
            // Only keys that clients kept writing: let their writes land before copying
            // them again, rather than copying a hot key in a loop.
            if raced && !settled_any {
                sleep_or_stop(POLL, &mut stop).await;
            }
        }
    }
}

/// Keys of a page synced (or left out) and not yet settled in the journal.
#[derive(Default)]
struct Settling {
    done: Vec<(String, i64)>,
    left_out: Vec<(String, i64)>,
    bytes: u64,
    /// Keys settled so far in this page.
    settled: u64,
    since: Option<tokio::time::Instant>,
}

/// Keys settled at once (one transaction), or every [`SETTLE_EVERY`] when fewer are done.
const SETTLE_BATCH: usize = 256;
const SETTLE_EVERY: Duration = Duration::from_secs(1);

impl Settling {
    /// Before a key is added: the first one since the last batch starts the clock.
    fn started(&mut self) {
        if !self.pending() {
            self.since = Some(tokio::time::Instant::now());
        }
    }

    fn pending(&self) -> bool {
        !self.done.is_empty() || !self.left_out.is_empty()
    }

    fn due(&self) -> bool {
        self.done.len() + self.left_out.len() >= SETTLE_BATCH
            || self.pending() && tokio::time::Instant::now() >= self.deadline()
    }

    /// When the keys done are settled at the latest, copies still running or not.
    fn deadline(&self) -> tokio::time::Instant {
        self.since.unwrap_or_else(tokio::time::Instant::now) + SETTLE_EVERY
    }

    /// The keys done so far, as a batch to settle.
    fn take(&mut self) -> Batch {
        Batch {
            done: std::mem::take(&mut self.done),
            left_out: std::mem::take(&mut self.left_out),
            bytes: std::mem::take(&mut self.bytes),
        }
    }
}

struct Batch {
    done: Vec<(String, i64)>,
    left_out: Vec<(String, i64)>,
    bytes: u64,
}

impl Batch {
    /// Settles the batch in one transaction (a commit per key would cap the drain rate at
    /// the state database's commit rate); whether that held (else the keys stay owed), and
    /// how many keys it settled.
    async fn settle(
        self,
        ns: &Namespace,
        target: &Leg,
        health: &SharedHealth,
        failed: bool,
    ) -> (bool, u64) {
        if self.done.is_empty() && self.left_out.is_empty() {
            return (true, 0);
        }
        ns.mark_up(&target.label);
        let all: Vec<(String, i64)> = self.done.iter().chain(&self.left_out).cloned().collect();
        match ns
            .journal
            .db()
            .settle_owed_many(&ns.name, &target.label, &all)
            .await
        {
            Ok(()) => {
                if let Ok(mut h) = health.lock() {
                    h.synced += self.done.len() as u64;
                    h.synced_bytes += self.bytes;
                    h.last_ok_ms = Some(now_ms());
                    if !failed && self.left_out.is_empty() {
                        h.last_error = None;
                    }
                }
                (true, self.done.len() as u64)
            }
            Err(e) => {
                note_error(health, format!("settling {} keys: {e}", self.done.len()));
                (false, 0)
            }
        }
    }
}

fn note_error(health: &SharedHealth, msg: String) {
    if let Ok(mut h) = health.lock() {
        h.last_error = Some(msg);
        h.last_error_ms = Some(now_ms());
    }
}

async fn sleep_or_stop(d: Duration, stop: &mut watch::Receiver<bool>) {
    tokio::select! {
        _ = tokio::time::sleep(d) => {}
        _ = stop.changed() => {}
    }
}

/// Makes `target`'s copy of `key` equal to the primary's; returns the bytes moved.
///
/// `None` when `target` is no longer a secondary (a failover made it the primary, or the
/// policy dropped it): the rows stay, and nothing old is copied over newer writes. The
/// roles are read under the key's lock, so a write to the new primary and this check are
/// ordered (and a role change waits for the workers' copies in flight).
///
/// The copy itself runs without the key's lock, which a client write of the key would
/// otherwise wait on for as long as a stalled target takes to fail (minutes). A write of the
/// key while the copy ran may have reached `target` first and been overwritten by the
/// copy's older bytes: then this returns `None` too, the rows stay owed, and the next pass
/// copies the current state again (see [`super::locks`]).
async fn sync_key(
    ns: &Namespace,
    target: &Leg,
    key: &str,
    tags_only: bool,
    newest_ms: i64,
) -> store::Result<Option<u64>> {
    let is_target =
        |roles: &super::namespace::Roles| roles.secondaries.iter().any(|s| s.label == target.label);
    if key.is_empty() {
        // The bucket's own settings (versioning, tags): written under the gate, not a key.
        let roles = ns.roles();
        if !is_target(&roles) {
            return Ok(None);
        }
        sync_bucket(&roles.primary, target).await?;
        return Ok(Some(0));
    }
    let k = ObjectKey::parse(key)?;
    let (roles, writes, copying) = {
        let g = ns.locks.look(&ns.name, key).await;
        let copying = ns.locks.copying(&target.label, &ns.name, key);
        (ns.roles(), *g, copying)
    };
    if !is_target(&roles) {
        return Ok(None);
    }
    // Failed over read-write to a target that still owes this key (it was behind when it
    // took over), and the key not written since: the target's copy is older than the one
    // the old primary holds, and would settle this target's rows with it (a probe found a
    // third target left with an older object, nothing owed). The rows wait for the
    // failback, which syncs them from the primary; said as a failure, so the worker looks
    // past them (and backs off) rather than reading the same page in a loop. The old
    // primary itself is fed as ever (the failback drains it).
    if let Some(since) = roles.failed_over_ms
        && newest_ms < since
        && !roles.deferred.contains(&target.label)
        && ns
            .journal
            .db()
            .owes_key(&ns.name, &roles.primary.label, key)
            .await
            .map_err(|e| store::Error::Index(format!("reading the journal: {e}")))?
    {
        return Err(store::Error::Unavailable {
            store: roles.primary.store.name().to_owned(),
            message: format!(
                "{} is behind for this key; it waits for the failback",
                roles.primary.label
            ),
        });
    }
    let moved = copy_key(ns.journal.db(), &roles.primary, target, &k, tags_only).await;
    // The copy has landed (or failed). A write waiting for it holds the key's lock while it
    // waits (see `KeyLocks::wait_copies_to`): let it go before looking again under that lock.
    drop(copying);
    let moved = moved?;
    let g = ns.locks.look(&ns.name, key).await;
    if *g != writes || !is_target(&ns.roles()) {
        return Ok(None);
    }
    Ok(Some(moved))
}

/// Copies the primary's current state of `k` (or only its tags) to `target`.
async fn copy_key(
    state: &crate::state::Db,
    p: &Leg,
    target: &Leg,
    k: &ObjectKey,
    tags_only: bool,
) -> store::Result<u64> {
    if tags_only {
        match p.store.get_object_tags(&p.bucket, k, None).await {
            Ok((_, tags)) => {
                match target
                    .store
                    .put_object_tags(&target.bucket, k, None, tags)
                    .await
                {
                    Ok(_) => return Ok(0),
                    // The target lacks the object itself: copy it whole.
                    Err(store::Error::NoSuchKey { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            Err(store::Error::NoSuchKey { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    match super::strays::copy_current(
        state,
        p.store.as_ref(),
        &p.bucket,
        k,
        target.store.as_ref(),
        &target.bucket,
        k,
    )
    .await?
    {
        transfer::Copied::Object(n) => Ok(n),
        transfer::Copied::Deleted => Ok(0),
    }
}

async fn sync_bucket(p: &Leg, target: &Leg) -> store::Result<()> {
    match p.store.get_versioning(&p.bucket).await? {
        Versioning::Unversioned => {}
        v => target.store.set_versioning(&target.bucket, v).await?,
    }
    let tags = p.store.get_bucket_tags(&p.bucket).await?;
    target.store.put_bucket_tags(&target.bucket, tags).await
}
