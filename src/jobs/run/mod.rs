//! Running a job in this process: a lister (while the listing is not complete), a claimer
//! that leases tasks from the state database, workers that copy, a committer that marks
//! finished tasks done in batches, a heartbeat that renews this process's leases, and a
//! watcher that follows the job's state (pause, resume, cancel) from the database, so a
//! `ferry job pause` from any process stops every worker of the job at a part boundary.
//!
//! Owners are `host:pid:nonce`; a process that starts a job first takes back the tasks of
//! owners on its host that no longer run, other owners' tasks come back when their lease
//! expires.
//!
//! A process that cannot renew its leases in time (frozen by SIGSTOP, swapped out, cut off
//! from the database) may have lost its tasks to another process, which then copies them
//! again, perhaps newer content. So it fences itself: a [`Fence`] says until when its
//! leases surely hold, and every write of a copy (each chunk of a body, each part, the
//! completion of an upload) first checks it; a task that ran while the fence lapsed is given
//! back (if it is still ours), never marked done.
//!
//! Failures are classified: retryable ones go back to the queue with exponential backoff,
//! others (and retryable ones after the job's attempt limit) go to its dead-letter list.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use tokio::sync::{Mutex, mpsc, watch};

use super::fence::{FENCE_MARGIN_MS, Fence};
use super::open::Side;
use super::spec::{Filter, MigrateSpec};
use super::{Result, list};
use crate::state::{Budget, Db, JobRecord, TaskRow, job_state};
use crate::store;
use crate::transfer::copy::Plan;
use crate::transfer::throttle::Limiter;

mod owners;
pub(crate) use owners::{hostname, runner_host};
mod task;

pub use owners::reclaim_dead;
pub use task::retryable;

/// Bytes of tasks claimed ahead of the workers, per worker, at most: claims of many small
/// objects go in batches, while a process does not hold large objects another process could
/// start (a second `ferry worker` joining a job of large objects finds them left).
const QUEUED_BYTES_PER_WORKER: u64 = 2 << 20;

/// How long a claimed task stays this process's without a heartbeat.
pub const LEASE_MS: i64 = 15_000;
const HEARTBEAT: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(200);
/// Finished tasks marked done per transaction, at most.
const COMMIT_BATCH: usize = 512;
/// How long one call to the state database from the run's loops may take (SQLite waits up
/// to 30 s for a lock): a call on a connection gone half-open never ends, and a run's
/// watcher stuck so never saw its job complete (a test's cut of the database, once).
const DB_CALL_LIMIT: Duration = Duration::from_secs(60);

/// `call`, failed as [`crate::state::Error::Stalled`] past [`DB_CALL_LIMIT`].
async fn bounded<T, E: From<crate::state::Error>>(
    call: impl std::future::Future<Output = std::result::Result<T, E>>,
) -> std::result::Result<T, E> {
    let secs = DB_CALL_LIMIT.as_secs();
    tokio::time::timeout(DB_CALL_LIMIT, call)
        .await
        .unwrap_or_else(|_| Err(crate::state::Error::Stalled { secs }.into()))
}

/// How this process runs its share of a job.
#[derive(Clone)]
pub struct Settings {
    pub workers: usize,
    /// The bandwidth limit: one for every job the process runs, so they share it.
    pub limiter: Option<Arc<Limiter>>,
    /// Objects copied at once per large object.
    pub parallel_parts: usize,
}

impl Settings {
    /// `workers` copies at once per job, and at most `bandwidth` bytes per second for all
    /// the jobs together.
    pub fn new(workers: usize, bandwidth: Option<u64>) -> Self {
        Self {
            workers,
            limiter: bandwidth.map(|b| Arc::new(Limiter::new(b))),
            parallel_parts: 4,
        }
    }
}

/// Live counters of this process (the database has the durable ones).
#[derive(Default)]
pub struct Live {
    /// Body bytes moved, including parts of objects not finished yet.
    pub moved: Arc<AtomicU64>,
    /// Failed attempts (retried or dead).
    pub failures: AtomicU64,
    pub in_flight: AtomicUsize,
    /// Woken when the listing ends or a batch of finished tasks is recorded, so the end of a
    /// job is noticed at once rather than at the next poll.
    pub settled: tokio::sync::Notify,
    /// Set when the run cannot go on for a reason that retrying does not cure: a side that
    /// cannot be listed (access denied, the bucket gone), a destination out of space. The run
    /// ends with it instead of retrying (or dead-lettering every object); the job stays as it
    /// was, for a run after the cause is fixed.
    halted: std::sync::Mutex<Option<String>>,
    /// Objects listed on the source and gone when their copy started (rsync's "file has
    /// vanished"): their tasks are finished, nothing was copied. The first keys are kept
    /// for the run's report.
    pub vanished: AtomicU64,
    pub vanished_keys: std::sync::Mutex<Vec<String>>,
}

impl Live {
    /// Ends the run with `why` (the first reason given wins), waking the watcher at once;
    /// returns whether this was the first.
    fn halt(&self, why: impl FnOnce() -> String) -> bool {
        let mut halted = self
            .halted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let first = halted.is_none();
        if first {
            *halted = Some(why());
        }
        drop(halted);
        self.settled.notify_one();
        first
    }

    /// Why the run was halted, if it was.
    fn halted(&self) -> Option<String> {
        self.halted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// Vanished keys a run's report names, at most.
pub const VANISHED_SHOWN: usize = 20;

/// Consecutive listing failures that retrying does not cure before a run gives up.
const PERMANENT_LISTING_FAILURES: u32 = 3;

/// One process's runner of one job.
pub struct Runner {
    db: Db,
    job: i64,
    owner: String,
    spec: MigrateSpec,
    filter: Filter,
    src: Side,
    dst: Side,
    plan: Plan,
    workers: usize,
    pub live: Arc<Live>,
    fence: Arc<Fence>,
    /// Bytes of the tasks claimed and not yet taken by a worker.
    queued_bytes: AtomicU64,
    /// Since when a side has not answered (no copy has succeeded since), if one has not.
    down_since: std::sync::Mutex<Option<std::time::Instant>>,
    /// The tasks this process holds (claimed, and not yet recorded done or given back):
    /// the heartbeat renews these leases only (see [`Db::renew_leases`]).
    held: std::sync::Mutex<std::collections::HashSet<i64>>,
}

/// How long a side may not answer before a run of the job stops (see `failed`).
pub const OUTAGE_LIMIT: Duration = Duration::from_secs(300);

/// Why [`Runner::run`] returned.
#[derive(Debug)]
pub enum Ended {
    /// The job finished (its record says how: done, with or without dead tasks).
    Done(JobRecord),
    Cancelled(JobRecord),
    /// This process was asked to stop; the job goes on when something runs it again.
    Stopped,
}

impl Runner {
    /// How long a side has not answered while copies wait for it (they are tried again
    /// without spending attempts; past [`OUTAGE_LIMIT`] the run stops), if one does not.
    pub fn unanswered_for(&self) -> Option<Duration> {
        self.down_since
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .map(|since| since.elapsed())
    }

    pub fn new(
        db: Db,
        job: i64,
        spec: MigrateSpec,
        src: Side,
        dst: Side,
        settings: &Settings,
    ) -> Result<Self> {
        let filter = Filter::new(&spec.options)?;
        let live = Arc::new(Live::default());
        let plan = Plan {
            threshold: spec.options.multipart_threshold,
            part_size: spec.options.part_size,
            parallel_parts: settings.parallel_parts,
            limiter: settings.limiter.clone(),
            moved: live.moved.clone(),
            // Server-side when both sides are one store; but a copy between two folders of
            // one disk moves its bytes here all the same, and a bandwidth limit covers it
            // (as rclone's does a local copy), so it goes through the metered stream then.
            same_store: src.identity == dst.identity
                && !(settings.limiter.is_some() && dst.store.caps().path_semantics),
            keep_uploads: true,
            record_mtime: true,
            // Set per task (see `run_task`).
            alive: None,
        };
        Ok(Self {
            db,
            job,
            owner: format!(
                "{}:{}:{}",
                runner_host(),
                std::process::id(),
                &uuid::Uuid::new_v4().simple().to_string()[..8]
            ),
            spec,
            filter,
            src,
            dst,
            plan,
            workers: settings.workers.max(1),
            live,
            fence: Arc::new(Fence::new()),
            queued_bytes: AtomicU64::new(0),
            down_since: std::sync::Mutex::new(None),
            held: std::sync::Mutex::new(std::collections::HashSet::new()),
        })
    }

    /// Runs until the job ends or `shutdown` turns true.
    pub async fn run(self: Arc<Self>, shutdown: watch::Receiver<bool>) -> Result<Ended> {
        reclaim_dead(&self.db, self.job).await?;
        self.db
            .runner_alive(self.job, &self.owner, crate::state::now_ms())
            .await?;
        // Every lease is claimed from now on, so lasts at least this long.
        self.fence.renewed(Instant::now());
        let rec = self.db.job(self.job).await?;
        let (go_tx, go_rx) = watch::channel(rec.state == job_state::RUNNING && !*shutdown.borrow());
        let (stop_tx, stop_rx) = watch::channel(!*go_rx.borrow());
        let mut tasks = tokio::task::JoinSet::new();
        // Not in `tasks`: the leases must hold while the workers stop.
        let heartbeat = tokio::spawn(self.clone().heartbeat());
        let _heartbeat = AbortOnDrop(heartbeat.abort_handle());
        tasks.spawn(self.clone().lister(go_rx.clone()));
        let (queue_tx, queue_rx) = mpsc::channel::<Claimed>(self.workers * 2);
        let queue_rx = Arc::new(Mutex::new(queue_rx));
        let (done_tx, done_rx) = mpsc::unbounded_channel::<(i64, i64)>();
        // Not aborted with the others: it records what the workers finished until they
        // have all stopped, else those tasks would stay "running" in an ended job.
        let committer = tokio::spawn(self.clone().committer(done_rx));
        let _committer = AbortOnDrop(committer.abort_handle());
        tasks.spawn(self.clone().claimer(go_rx.clone(), queue_tx));
        let mut workers = tokio::task::JoinSet::new();
        for _ in 0..self.workers {
            workers.spawn(self.clone().worker(
                queue_rx.clone(),
                go_rx.clone(),
                stop_rx.clone(),
                done_tx.clone(),
            ));
        }
        drop(done_tx);
        let ended = self.watch(shutdown, &go_tx, &stop_tx).await;
        // Stop everything: workers finish or release what they hold.
        let _ = go_tx.send(false);
        let _ = stop_tx.send(true);
        tasks.abort_all();
        while workers.join_next().await.is_some() {}
        // Bounded: it retries for as long as the database does not answer.
        let _ = tokio::time::timeout(Duration::from_secs(30), committer).await;
        // Awaited, not only aborted: each task holds the job's stores, and a directory's
        // store stays locked until its last holder is gone; a run that follows in this
        // process (the relisting of a resumed job, the server's next try) opens it again.
        heartbeat.abort();
        let _ = heartbeat.await;
        while tasks.join_next().await.is_some() {}
        self.release_queued(&queue_rx).await;
        // Only now: a worker still running could have started an upload after an abort.
        // Before this process stops being the job's runner: `ferry job cancel` waits for
        // that, then aborts what is left (it cannot open a directory this process holds).
        if let Ok(Ended::Cancelled(_)) = &ended {
            abort_uploads(&self.db, self.job, &self.dst).await;
        }
        if let Err(e) = bounded(self.db.runner_gone(self.job, &self.owner)).await {
            tracing::warn!(job = self.job, error = %e, "forgetting this process as the job's runner failed");
        }
        ended
    }

    /// Follows the job's state until it ends; decides when it is complete.
    async fn watch(
        &self,
        mut shutdown: watch::Receiver<bool>,
        go: &watch::Sender<bool>,
        stop: &watch::Sender<bool>,
    ) -> Result<Ended> {
        // The state database not answering (a restart, a failover) is ridden out as an S3
        // side's outage is: a probe's 30 s PostgreSQL restart ended the foreground run (exit
        // 1) and left its workers idle for another 30 s. The workers' claims and commits
        // retry on their own; past OUTAGE_LIMIT the run ends and the job waits.
        let mut unanswered: Option<Instant> = None;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(POLL) => {}
                _ = shutdown.changed() => {}
                _ = self.live.settled.notified() => {}
            }
            if *shutdown.borrow() {
                return Ok(Ended::Stopped);
            }
            if let Some(why) = self.live.halted() {
                return Err(super::Error::Halted(why));
            }
            let rec = match bounded(self.db.job(self.job)).await {
                Ok(rec) => {
                    if unanswered.take().is_some() {
                        tracing::info!(job = self.job, "the state database answers again");
                    }
                    rec
                }
                Err(e) => {
                    let since = *unanswered.get_or_insert_with(Instant::now);
                    if since.elapsed() > OUTAGE_LIMIT {
                        return Err(e.into());
                    }
                    tracing::warn!(job = self.job, error = %e, "the state database does not answer; waiting for it");
                    continue;
                }
            };
            match rec.state.as_str() {
                job_state::RUNNING => {}
                job_state::PAUSED => {
                    go.send_if_modified(|g| std::mem::replace(g, false));
                    stop.send_if_modified(|s| !std::mem::replace(s, true));
                    continue;
                }
                // Its uploads are aborted once the workers stopped (see `run`).
                job_state::CANCELLED => return Ok(Ended::Cancelled(rec)),
                _ => return Ok(Ended::Done(rec)),
            }
            go.send_if_modified(|g| !std::mem::replace(g, true));
            stop.send_if_modified(|s| std::mem::replace(s, false));
            if rec.listing_done && self.live.in_flight.load(Ordering::Relaxed) == 0 {
                // Failing here, the next round asks again (the database going away between
                // two calls).
                let Ok(c) = bounded(self.db.task_counts(self.job)).await else {
                    continue;
                };
                // The counts are a hint; the transition checks them again itself, so a
                // `retry-dead` between the two does not leave a done job with tasks queued.
                if c.pending == 0
                    && c.running == 0
                    && bounded(self.db.finish_job(self.job, crate::state::now_ms()))
                        .await
                        .unwrap_or(false)
                {
                    return Ok(Ended::Done(bounded(self.db.job(self.job)).await?));
                }
            }
        }
    }

    async fn heartbeat(self: Arc<Self>) {
        loop {
            tokio::time::sleep(HEARTBEAT).await;
            let sent = Instant::now();
            // A freeze (SIGSTOP, a stalled machine) shows here first: the fence must be
            // seen lapsed before a renewal moves it on.
            if self.fence.current().is_none() {
                tracing::warn!(
                    job = self.job,
                    "this process's task leases may have expired: the copies in flight stop"
                );
            }
            let held: Vec<i64> = self.held().iter().copied().collect();
            let lease = crate::state::now_ms() + LEASE_MS;
            match bounded(self.db.renew_leases(&self.owner, &held, lease)).await {
                Ok(()) => self.fence.renewed(sent),
                Err(e) => {
                    tracing::warn!(job = self.job, error = %e, "renewing task leases failed")
                }
            }
            let now = crate::state::now_ms();
            if let Err(e) = bounded(self.db.runner_alive(self.job, &self.owner, now)).await {
                tracing::warn!(job = self.job, error = %e, "recording this process's heartbeat failed");
            }
            // A process of this host that died while this one runs: its tasks come back now,
            // not when their leases run out.
            if let Err(e) = bounded(reclaim_dead(&self.db, self.job)).await {
                tracing::warn!(job = self.job, error = %e, "taking back the work of gone processes failed");
            }
        }
    }

    async fn lister(self: Arc<Self>, mut go: watch::Receiver<bool>) {
        let mut backoff = Duration::from_millis(500);
        let mut permanent = 0u32;
        loop {
            if go.wait_for(|g| *g).await.is_err() {
                return;
            }
            let rec = match bounded(self.db.job(self.job)).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(job = self.job, error = %e, "reading the job failed");
                    tokio::time::sleep(backoff).await;
                    continue;
                }
            };
            if rec.listing_done {
                return;
            }
            match list::list_job(
                &self.db,
                self.job,
                rec.listed_after.as_deref(),
                &self.owner,
                (&self.src, &self.dst),
                (&self.filter, &self.spec.options),
                &go,
            )
            .await
            {
                Ok(true) => {
                    self.live.settled.notify_one();
                    return;
                }
                // Paused, or another process lists: look again shortly.
                Ok(false) => tokio::time::sleep(Duration::from_secs(1)).await,
                Err(e) => {
                    let why = crate::telemetry::one_line(&e);
                    let cured_by_retry = match &e {
                        super::Error::Listing { source, .. }
                        | super::Error::Side { source, .. } => source.is_retryable(),
                        _ => true,
                    };
                    permanent = if cured_by_retry { 0 } else { permanent + 1 };
                    if permanent >= PERMANENT_LISTING_FAILURES {
                        tracing::warn!(job = self.job, error = %why, "listing failed; giving up");
                        self.live.halt(|| why);
                        return;
                    }
                    tracing::warn!(job = self.job, error = %why, "listing failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
    }

    async fn claimer(self: Arc<Self>, mut go: watch::Receiver<bool>, queue: mpsc::Sender<Claimed>) {
        loop {
            if go.wait_for(|g| *g).await.is_err() {
                return;
            }
            let room = queue.capacity() as i64;
            let queued = self.queued_bytes.load(Ordering::Relaxed);
            let budget = QUEUED_BYTES_PER_WORKER * self.workers as u64;
            if room == 0 || queued >= budget {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
            // Read before the claim: a lapse while it runs fences what it claims.
            let Some(generation) = self.fence.current() else {
                // Leases cannot be renewed (or this process was frozen): claim no more
                // until they are.
                tokio::time::sleep(POLL).await;
                continue;
            };
            let now = crate::state::now_ms();
            let asked = Instant::now();
            // One task at least when none waits, else what fits.
            let within = Budget {
                bytes: (budget - queued) as i64,
                first: queued == 0,
            };
            let claimed = match bounded(self.db.claim_tasks_within(
                self.job,
                &self.owner,
                now,
                now + LEASE_MS,
                room,
                within,
            ))
            .await
            {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(job = self.job, error = %e, "claiming tasks failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            if claimed.is_empty() {
                tokio::time::sleep(POLL / 4).await;
                continue;
            }
            // An answer that came so late that the leases it took may have run out (another
            // process may run those tasks now): given back, not run. The heartbeat renews
            // only what is in `held`, so a lease of a claim in flight is not renewed.
            if asked.elapsed() >= Duration::from_millis((LEASE_MS - FENCE_MARGIN_MS) as u64) {
                let ids: Vec<i64> = claimed.iter().map(|t| t.id).collect();
                tracing::warn!(
                    job = self.job,
                    tasks = ids.len(),
                    "a claim was answered too late to run its tasks; giving them back"
                );
                if let Err(e) = bounded(self.db.release_tasks(&self.owner, &ids)).await {
                    tracing::warn!(job = self.job, error = %e, "releasing tasks failed; their leases will expire");
                }
                continue;
            }
            self.held().extend(claimed.iter().map(|t| t.id));
            for task in claimed {
                self.queued_bytes
                    .fetch_add(task.size.max(0) as u64, Ordering::Relaxed);
                if queue.send(Claimed { task, generation }).await.is_err() {
                    return;
                }
            }
        }
    }

    async fn committer(self: Arc<Self>, mut done: mpsc::UnboundedReceiver<(i64, i64)>) {
        let mut batch = Vec::new();
        while done.recv_many(&mut batch, COMMIT_BATCH).await > 0 {
            loop {
                match bounded(self.db.finish_tasks(self.job, &self.owner, &batch)).await {
                    Ok(()) => break,
                    Err(e) => {
                        tracing::warn!(job = self.job, error = %e, "recording finished tasks failed; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
            {
                let mut held = self.held();
                for (id, _) in &batch {
                    held.remove(id);
                }
            }
            let before = self
                .live
                .in_flight
                .fetch_sub(batch.len(), Ordering::Relaxed);
            if before == batch.len() {
                self.live.settled.notify_one();
            }
            batch.clear();
        }
    }

    async fn worker(
        self: Arc<Self>,
        queue: Arc<Mutex<mpsc::Receiver<Claimed>>>,
        go: watch::Receiver<bool>,
        stop: watch::Receiver<bool>,
        done: mpsc::UnboundedSender<(i64, i64)>,
    ) {
        loop {
            // Ends when the claimer is gone and the queue is drained; while the job is
            // paused, queued tasks are handed back below.
            let claimed = queue.lock().await.recv().await;
            let Some(Claimed { task, generation }) = claimed else {
                return;
            };
            self.queued_bytes
                .fetch_sub(task.size.max(0) as u64, Ordering::Relaxed);
            self.live.in_flight.fetch_add(1, Ordering::Relaxed);
            let started = *go.borrow() && self.fence.holds(generation);
            let result = if started {
                self.run_task(&task, generation, &stop).await
            } else {
                Ok(None)
            };
            // Whatever it did, a task whose lease may have lapsed while it ran is not
            // this process's to mark done or failed: another process may run it now.
            let result = if self.fence.holds(generation) {
                result
            } else {
                tracing::warn!(job = self.job, key = ?task.key,
                    "the lease on a task may have lapsed while it ran; giving it back");
                Ok(None)
            };
            match result {
                Ok(Some(bytes)) => {
                    *self.down_since.lock().unwrap_or_else(|p| p.into_inner()) = None;
                    // The committer counts it out of `in_flight` once it is recorded.
                    let _ = done.send((task.id, bytes));
                    continue;
                }
                Ok(None) => {
                    // Out of `held` first: once given back, it may be claimed again by this
                    // process's claimer, and is held again then.
                    self.held().remove(&task.id);
                    // A copy stopped halfway (a pause, Ctrl-C) may have landed: the next run
                    // of it looks first rather than copying it again.
                    let released = match started {
                        true => bounded(self.db.release_started(&self.owner, &[task.id])).await,
                        false => bounded(self.db.release_tasks(&self.owner, &[task.id])).await,
                    };
                    if let Err(e) = released {
                        tracing::warn!(job = self.job, error = %e, "releasing a task failed; its lease will expire");
                    }
                }
                Err(e) => {
                    // As above: deferred or failed, it is no longer this process's to renew
                    // (if that cannot be recorded, its lease runs out and it is claimed again).
                    self.held().remove(&task.id);
                    self.failed(&task, &e).await
                }
            }
            self.live.in_flight.fetch_sub(1, Ordering::Relaxed);
        }
    }

    fn held(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<i64>> {
        self.held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn release_queued(&self, queue: &Mutex<mpsc::Receiver<Claimed>>) {
        let mut q = queue.lock().await;
        let mut ids = Vec::new();
        while let Ok(c) = q.try_recv() {
            self.queued_bytes
                .fetch_sub(c.task.size.max(0) as u64, Ordering::Relaxed);
            ids.push(c.task.id);
        }
        {
            let mut held = self.held();
            for id in &ids {
                held.remove(id);
            }
        }
        if !ids.is_empty()
            && let Err(e) = bounded(self.db.release_tasks(&self.owner, &ids)).await
        {
            tracing::warn!(job = self.job, error = %e, "releasing queued tasks failed; their leases will expire");
        }
    }
}

/// Aborts the multipart uploads a job's unfinished tasks recorded (a cancelled job leaves
/// nothing half-written on the destination) and forgets them; returns how many were
/// aborted (or already gone) and the error of the first that could not be.
pub async fn abort_uploads(db: &Db, job: i64, dst: &Side) -> (usize, Option<String>) {
    let uploads = match db.job_uploads(job).await {
        Ok(u) => u,
        Err(e) => return (0, Some(e.to_string())),
    };
    let (mut aborted, mut failed) = (0, None);
    for (id, key, upload) in uploads {
        match dst.abort_upload(&key, &upload).await {
            Ok(()) => {
                aborted += 1;
                if let Err(e) = db.set_task_upload(id, None).await {
                    tracing::warn!(job, error = %e, "forgetting an aborted upload failed");
                }
            }
            Err(e) => {
                tracing::warn!(job, %key, upload, error = %e,
                    "could not abort a cancelled job's multipart upload; its parts stay on the destination");
                failed.get_or_insert(e.to_string());
            }
        }
    }
    (aborted, failed)
}

fn state_err(e: crate::state::Error) -> store::Error {
    store::Error::Index(e.to_string())
}

/// Aborts a task when dropped (with the runner's future, say).
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A claimed task and the [`Fence`] generation it was claimed under.
struct Claimed {
    task: TaskRow,
    generation: u64,
}
