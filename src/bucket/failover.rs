//! Failover and failback of a namespace bucket: the admin's switch to a secondary
//! (read-only or read-write) and back, with the drain of what the primary is owed and the
//! repair that gives it what only the failover target holds.

use std::time::Duration;

/// How long a failback's drain waits without progress before it asks whether the primary
/// answers at all (and gives up if not).
const STALLED: Duration = Duration::from_secs(30);
/// How long a failback, with writes paused, spends aborting the uploads the failover left.
const UPLOADS_CLEANUP: Duration = Duration::from_secs(5);

use super::{
    BucketView, Buckets, DRAIN_LIMIT, Error, FailingBack, Failover, FailoverMode, Leg, Namespace,
    PAUSED_DRAIN_LIMIT, now_ms,
};
use crate::store;
use crate::transfer;

impl Buckets {
    /// Fails `name` over to its write target on store `to`.
    pub async fn failover(
        &self,
        name: &str,
        to: &str,
        mode: FailoverMode,
    ) -> Result<BucketView, Error> {
        let _c = self.changing(name).await?;
        let e = self.entry(name)?;
        if let Some(f) = &e.policy.failover {
            return Err(Error::Conflict(format!(
                "bucket {name} is already failed over to {}: fail back first",
                f.to
            )));
        }
        // `--to dr` names the store (its first target in the policy), `--to dr:b2` one target.
        let target = e.policy.write_to[1..]
            .iter()
            .find(|t| t.to_string() == to)
            .or_else(|| e.policy.write_to[1..].iter().find(|t| t.store == to))
            .cloned()
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "{} {to:?} is not a secondary write target of bucket {name} (targets: {})",
                    if to.contains(':') { "target" } else { "store" },
                    e.policy
                        .write_to
                        .iter()
                        .map(|t| t.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?;
        // A target that does not answer now is taken (the site may be on its way back, and
        // the operator decides), but said: it serves errors until it answers.
        let leg = self.leg(&target).await?;
        let warning = match self.reachable(&leg, "serve the bucket yet").await {
            Ok(()) => None,
            Err(e) => {
                tracing::warn!(bucket = %name, error = %e, "failing over to a target that does not answer");
                Some(format!(
                    "{e}: reads and writes of {name} fail until it answers"
                ))
            }
        };
        let mut policy = e.policy.clone();
        policy.failover = Some(Failover {
            to: target,
            mode,
            since_ms: now_ms(),
        });
        let mut view = self.switch(&e, name, policy).await?;
        view.warning = warning;
        Ok(view)
    }

    /// Whether the failover target a failback reads what the primary is owed from answers.
    async fn serving_answers(&self, serving: &Leg) -> Result<(), Error> {
        self.reachable(
            serving,
            "fail back from it (what the primary is owed is read there)",
        )
        .await
    }

    /// Refuses `what` unless `leg`'s bucket answers within a few seconds.
    async fn reachable(&self, leg: &Leg, what: &str) -> Result<(), Error> {
        match tokio::time::timeout(Duration::from_secs(5), leg.store.head_bucket(&leg.bucket)).await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(err)) if !err.is_retryable() => Err(Error::Invalid(format!(
                "{} refused ({err}): cannot {what}",
                leg.label
            ))),
            // A store that does not answer: 503, try again (not bad input). Its own
            // "store X is unavailable" is said once, by the answer's head.
            Ok(Err(err)) => {
                let why = match &err {
                    crate::store::Error::Unavailable { message, .. } => message.clone(),
                    e => e.to_string(),
                };
                Err(Error::Store(crate::store::Error::Unavailable {
                    store: leg.store.name().to_owned(),
                    message: format!("{} does not answer ({why}): cannot {what}", leg.label),
                }))
            }
            Err(_) => Err(Error::Store(crate::store::Error::Unavailable {
                store: leg.store.name().to_owned(),
                message: format!("{} does not answer within 5 s: cannot {what}", leg.label),
            })),
        }
    }

    /// Fails `name` back to its primary. After a read-write failover, first drains what the
    /// primary is owed, verifies primary against the failover target (repairing what
    /// differs), then holds writes back for the final drain and the switch.
    pub async fn failback(&self, name: &str) -> Result<BucketView, Error> {
        // A refusal before it starts (no such bucket, not failed over, one running) is the
        // caller's answer, not the outcome of a failback: it is not recorded.
        if self.entry(name)?.policy.failover.is_none() {
            return Err(Error::Conflict(format!("bucket {name} is not failed over")));
        }
        self.refuse_while_failing_back(name)?;
        let r = self.failback_once(name).await;
        let mut errors = self
            .failback_errors
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match &r {
            Ok(_) => errors.remove(name),
            Err(e) => errors.insert(
                name.to_owned(),
                super::FailbackError {
                    error: e.to_string(),
                    at_ms: crate::state::now_ms(),
                },
            ),
        };
        drop(errors);
        r
    }

    /// What refuses a failback at once, asked before one is started in the background: a
    /// read-write failover whose target does not answer while the primary is owed writes
    /// (they are read there). Without it, `failback` without `wait` answered 202 and failed
    /// in the background (found by a probe).
    pub async fn failback_refused(&self, name: &str) -> Result<(), Error> {
        let e = self.entry(name)?;
        let Some(f) = e.policy.failover.clone() else {
            return Err(Error::Conflict(format!("bucket {name} is not failed over")));
        };
        if f.mode == FailoverMode::ReadOnly {
            return Ok(());
        }
        let serving = self.leg(&f.to).await?;
        if let Err(down) = self.serving_answers(&serving).await {
            let primary = self.leg(e.policy.primary()).await?;
            if self.owed_to(name, &primary.label).await? > 0 {
                return Err(down);
            }
        }
        Ok(())
    }

    async fn failback_once(&self, name: &str) -> Result<BucketView, Error> {
        let _c = self.changing(name).await?;
        let _running = {
            let mut set = self.failing_back.lock().unwrap_or_else(|p| p.into_inner());
            set.insert(name.to_owned());
            FailingBack {
                set: self.failing_back.clone(),
                name: name.to_owned(),
            }
        };
        let e = self.entry(name)?;
        let Some(f) = e.policy.failover.clone() else {
            return Err(Error::Conflict(format!("bucket {name} is not failed over")));
        };
        let mut policy = e.policy.clone();
        policy.failover = None;
        if f.mode == FailoverMode::ReadOnly {
            return self.switch(&e, name, policy).await;
        }
        let primary = self.leg(e.policy.primary()).await?;
        let serving = self.leg(&f.to).await?;
        // What the primary is owed is read from the failover target, so that one must answer,
        // unless the primary is owed nothing (nothing was written during the failover): then
        // there is nothing to bring back from it. Refused at once rather than draining for an
        // hour. (A primary that drains slowly is waited for, up to the drain limit; one that
        // stops answering is given up on once nothing has drained for a while.)
        if let Err(down) = self.serving_answers(&serving).await {
            let roles = self.roles(&policy).await?;
            let _pause = e.ns.gate.close().await.map_err(|s| Error::busy(name, s))?;
            if self.owed_to(name, &primary.label).await? > 0 {
                return Err(down);
            }
            tracing::warn!(bucket = %name, target = %serving.label, "failing back without reading the failover target: it does not answer and nothing was written during the failover");
            let mut view = self.commit_switch(name, policy, roles).await?;
            view.warning = Some(format!(
                "{} does not answer: failed back without comparing it with the primary \
                 (nothing was written during the failover); it catches up once it answers",
                serving.label
            ));
            return Ok(view);
        }
        // 1. Drain while writes continue.
        self.drain(name, &primary, &serving, DRAIN_LIMIT, true)
            .await?;
        // 2. Verify and repair, writes still running.
        let (kept, capped) = self.repair(&e.ns, &serving, &primary).await?;
        // 3. Hold writes back, drain what arrived meanwhile, switch.
        let roles = self.roles(&policy).await?;
        let _pause = e.ns.gate.close().await.map_err(|s| Error::busy(name, s))?;
        self.drain(name, &primary, &serving, PAUSED_DRAIN_LIMIT, false)
            .await?;
        // Before the switch, while no client write runs and no catch-up copy goes to the
        // failover target (it takes none until it is a secondary again), so every upload
        // there since the failover is one of the bucket's clients'.
        if tokio::time::timeout(
            UPLOADS_CLEANUP,
            self.abort_uploads_left(name, &serving, f.since_ms),
        )
        .await
        .is_err()
        {
            tracing::warn!(bucket = %name, target = %serving.label, "aborting the uploads left by the failover took over {} s; the rest stay", UPLOADS_CLEANUP.as_secs());
        }
        // The keys whose primary state outlived the failover are owed to every secondary of
        // the roles to come: during the failover the other secondaries were synced from the
        // failover target, which lacked them (a probe found a DR copy left with an older
        // object and without a newer one, and nothing owed). Journaled before the switch, so
        // a crash cannot lose them, but held (no worker takes them) until the roles are
        // back: a worker of the failover's roles would copy the failover target's state.
        let targets: Vec<String> = roles.secondaries.iter().map(|s| s.label.clone()).collect();
        let owed = self.owe_kept(&e.ns, &targets, kept).await;
        let switched = self.commit_switch(name, policy, roles).await;
        let (ids, mut problem) = match owed {
            Ok(ids) => (ids, None),
            Err((ids, why)) => (ids, Some(why)),
        };
        if capped && problem.is_none() {
            problem = Some(format!(
                "more than 100,000 keys differed between {} and the primary; the rest were \
                 left as they are: `ferry verify` them",
                serving.label
            ));
        }
        e.ns.journal.release(&ids);
        e.ns.wake.notify_waiters();
        let mut view = switched?;
        view.warning = problem;
        Ok(view)
    }

    /// Journals `keys` for each of `targets`, held until released; the ids, or those and
    /// why the rest are not owed.
    async fn owe_kept(
        &self,
        ns: &Namespace,
        targets: &[String],
        keys: Vec<String>,
    ) -> Result<Vec<i64>, (Vec<i64>, String)> {
        let mut held = Vec::new();
        if keys.is_empty() || targets.is_empty() {
            return Ok(held);
        }
        let now = super::now_ms();
        for chunk in keys.chunks(1000) {
            let rows: Vec<_> = chunk
                .iter()
                .flat_map(|k| {
                    targets.iter().map(|t| crate::state::NewJournalRow {
                        bucket: ns.name.clone(),
                        target: t.clone(),
                        key: k.clone(),
                        op: "put".into(),
                        bytes: 0,
                        created_ms: now,
                    })
                })
                .collect();
            match ns.journal.append(rows).await {
                Ok(ids) => held.extend(ids),
                Err(e) => {
                    tracing::error!(bucket = %ns.name, error = %e, "failing back, but could not journal the keys the secondaries were synced without");
                    return Err((
                        held,
                        format!(
                            "the secondaries may lack keys the primary kept (journaling them failed: {e}); `ferry verify` the primary against each"
                        ),
                    ));
                }
            }
        }
        Ok(held)
    }

    /// Aborts the multipart uploads begun on `leg` since `since_ms`. Begun during a
    /// read-write failover, they cannot be finished once the primary takes the writes back
    /// (their parts are only on `leg`), and nothing else would ever remove those parts.
    /// Failures are logged: they do not stop the failback.
    async fn abort_uploads_left(&self, bucket: &str, leg: &Leg, since_ms: i64) {
        // Stores that keep whole seconds may date an upload begun in the failover's second
        // before it.
        let since = since_ms.saturating_sub(1000);
        let mut q = store::UploadsQuery {
            max_uploads: 1000,
            ..Default::default()
        };
        let mut aborted = 0u64;
        loop {
            let page = match leg.store.list_uploads(&leg.bucket, &q).await {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(bucket, target = %leg.label, error = %e, "listing the uploads left by the failover failed; their parts stay");
                    break;
                }
            };
            for u in &page.uploads {
                let begun_ms = i64::try_from(u.initiated.unix_timestamp_nanos() / 1_000_000)
                    .unwrap_or(i64::MAX);
                if begun_ms < since {
                    continue;
                }
                match leg
                    .store
                    .abort_multipart(&leg.bucket, &u.key, &u.upload_id)
                    .await
                {
                    Ok(()) | Err(store::Error::NoSuchUpload { .. }) => aborted += 1,
                    Err(e) => {
                        tracing::warn!(bucket, target = %leg.label, key = %u.key, error = %e, "aborting an upload left by the failover failed");
                    }
                }
            }
            if page.uploads.is_empty()
                || (page.next_key_marker.is_none() && page.next_upload_id_marker.is_none())
            {
                break;
            }
            q.key_marker = page.next_key_marker;
            q.upload_id_marker = page.next_upload_id_marker;
        }
        if aborted > 0 {
            tracing::info!(bucket, target = %leg.label, aborted, "aborted the multipart uploads begun during the failover");
        }
    }

    /// How many writes `target` is owed for `bucket`.
    async fn owed_to(&self, bucket: &str, target: &str) -> Result<i64, Error> {
        Ok(self
            .registry
            .db()
            .owed_stats(bucket)
            .await?
            .iter()
            .filter(|o| o.target == target)
            .map(|o| o.count)
            .sum())
    }

    /// Waits until `target` owes nothing for `bucket`, or, while `writes_run`, no more than
    /// the writes in flight hold (their rows count as owed until they settle, and a slow
    /// upload must not hold the failback: what they leave is drained with writes paused).
    /// Gives up after `limit`, or sooner once nothing has drained for [`STALLED`] and
    /// `target`, or `source` (the failover target the copies are read from), does not
    /// answer, saying how much is left. (A source that died mid-drain held `failback
    /// --wait`, and every other change of the bucket, for the whole limit: an hour.)
    async fn drain(
        &self,
        bucket: &str,
        target: &Leg,
        source: &Leg,
        limit: Duration,
        writes_run: bool,
    ) -> Result<(), Error> {
        let started = tokio::time::Instant::now();
        let mut least = i64::MAX;
        let mut progress = started;
        loop {
            let left = self.owed_to(bucket, &target.label).await?;
            // Each write in flight owes a target one row at most.
            let running = match self.get(bucket) {
                Some(ns) if writes_run => i64::try_from(ns.gate.running()).unwrap_or(i64::MAX),
                _ => 0,
            };
            if left <= running {
                return Ok(());
            }
            let now = tokio::time::Instant::now();
            if left < least {
                least = left;
                progress = now;
            }
            let stuck = if now.duration_since(progress) > STALLED {
                progress = now;
                match self.reachable(target, "be given what it is owed").await {
                    Err(e) => Some(e),
                    Ok(()) => self
                        .reachable(source, "give the primary what it is owed")
                        .await
                        .err(),
                }
            } else {
                None
            };
            if stuck.is_some() || now.duration_since(started) > limit {
                let why = match stuck {
                    Some(e) => format!("{e}; it is still owed {left} writes"),
                    None => format!(
                        "{} still owed {left} writes after {} s; is it reachable?",
                        target.label,
                        limit.as_secs()
                    ),
                };
                return Err(Error::Failback {
                    bucket: bucket.to_owned(),
                    why: format!(
                        "{why} (`ferry bucket status {bucket}`); the bucket stays failed over"
                    ),
                });
            }
            if let Some(ns) = self.get(bucket) {
                ns.wake.notify_waiters();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Makes `to` equal `from` wherever a listing comparison finds a difference, unless the
    /// primary `to` holds the newer state. Returns the keys where it does (the other targets
    /// were synced from `from` during the failover and are owed them once roles are back),
    /// and whether more keys differed than one attempt takes.
    async fn repair(
        &self,
        ns: &Namespace,
        from: &Leg,
        to: &Leg,
    ) -> Result<(Vec<String>, bool), Error> {
        let a = transfer::diff::Side {
            store: from.store.as_ref(),
            bucket: from.bucket.clone(),
            prefix: String::new(),
        };
        let b = transfer::diff::Side {
            store: to.store.as_ref(),
            bucket: to.bucket.clone(),
            prefix: String::new(),
        };
        let mut keys = Vec::new();
        let mut kept = Vec::new();
        let mut capped = false;
        transfer::diff::diff(&a, &b, false, |d| {
            use transfer::diff::Difference as D;
            let k = match d {
                // Only on the primary: written there and never given to the failover target
                // (a file picked up by a rescan, an object from before the target was added).
                // Deletions made during the failover are journaled and were drained to the
                // primary before this: what is left here was never deleted. Kept.
                D::OnlyInB { key, .. } => {
                    tracing::warn!(bucket = %ns.name, key, target = %to.label, "failback keeps an object only the primary has");
                    if kept.len() < 100_000 {
                        kept.push(key);
                    } else {
                        capped = true;
                    }
                    return;
                }
                D::OnlyInA { key, .. } | D::Size { key, .. } | D::Content { key, .. } => key,
                // A key Ferry cannot name (over 1024 bytes, a NUL): left as is.
                D::Unnamed { key, why, .. } => {
                    tracing::warn!(bucket = %ns.name, key, why, "failback cannot repair a key Ferry cannot name");
                    return;
                }
            };
            // Bounded: past this many, the rest is repaired on the next failback attempt.
            if keys.len() < 100_000 {
                keys.push(k);
            } else {
                capped = true;
            }
        })
        .await?;
        for k in keys {
            let key = store::ObjectKey::parse(&k).map_err(store::Error::from)?;
            // A key the primary cannot hold (`a//b` on an fs store: S3 took it while failed
            // over to an S3 target whose other targets all take such keys) stays where it is.
            if to.store.caps().path_semantics
                && let Err(e) = key.check_new_path()
            {
                tracing::warn!(bucket = %ns.name, key = %k, target = %to.label, error = %e, "failback leaves out a key the primary cannot hold");
                continue;
            }
            let _g = ns.locks.lock(&ns.name, &k).await;
            // `from` still owes a write of this key from before the failover (it was behind
            // when it took over, and nothing has written the key since): `to` holds the
            // newer state, which the catch-up worker gives `from` once roles are back.
            if self
                .registry
                .db()
                .owes_key(&ns.name, &from.label, &k)
                .await?
            {
                tracing::debug!(bucket = %ns.name, key = %k, target = %to.label, "failback keeps a write the failover target never got");
                kept.push(k);
                continue;
            }
            // Both hold the key, differently: the failover target's copy wins only when it is
            // not older than the primary's (a primary file changed in place, or an object the
            // target was never given, is newer and stays).
            if let (Ok(theirs), Ok(ours)) = (
                from.store.head_object(&from.bucket, &key, None).await,
                to.store.head_object(&to.bucket, &key, None).await,
            ) && ours.last_modified > theirs.last_modified
            {
                tracing::debug!(bucket = %ns.name, key = %k, target = %to.label, "failback keeps the primary's newer copy");
                kept.push(k);
                continue;
            }
            super::strays::copy_current(
                self.registry.db(),
                from.store.as_ref(),
                &from.bucket,
                &key,
                to.store.as_ref(),
                &to.bucket,
                &key,
            )
            .await
            .map_err(|err| Error::Failback {
                bucket: ns.name.clone(),
                why: format!("repairing {k:?} on {}: {err}", to.label),
            })?;
            // What the primary is given here no other target was (it reached the failover
            // target some other way: written to it directly, say): they are owed it too.
            let others: Vec<_> = ns
                .roles()
                .secondaries
                .iter()
                .filter(|s| s.label != to.label && s.label != from.label)
                .map(|s| crate::state::NewJournalRow {
                    bucket: ns.name.clone(),
                    target: s.label.clone(),
                    key: k.clone(),
                    op: "put".into(),
                    bytes: 0,
                    created_ms: super::now_ms(),
                })
                .collect();
            if !others.is_empty() {
                let ids = ns
                    .journal
                    .append(others)
                    .await
                    .map_err(|e| Error::Failback {
                        bucket: ns.name.clone(),
                        why: format!("journaling {k:?} for the other targets: {e}"),
                    })?;
                ns.journal.release(&ids);
                ns.wake.notify_waiters();
            }
        }
        // Said once, not per key (a probe counted 500 lines for one failback).
        if let Some(first) = kept.first() {
            tracing::info!(bucket = %ns.name, target = %to.label, kept = kept.len(), first = %first,
                "failback keeps the primary's state of keys the failover target had older or never got");
        }
        if capped {
            tracing::warn!(bucket = %ns.name, target = %to.label, "failback compared more than 100,000 differing keys; the rest were left as they are");
        }
        Ok((kept, capped))
    }
}
