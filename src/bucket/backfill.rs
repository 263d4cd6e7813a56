//! Backfills: a secondary added to a namespace bucket (at creation, or by a new policy) is
//! owed every object the primary holds, and with `--delete-extra` the deletion of each key
//! it holds that the primary lacks. They are journaled a page of the primary's listing at a
//! time. A backfill is recorded (`state::Backfill`) before the policy naming its target is
//! committed, moves its cursor after each page, and is forgotten when done; one cut short
//! (the primary stopped answering, the server was killed) is resumed from its cursor at
//! start and every [`RESUME_EVERY`], until done. A probe found a create interrupted this way
//! leaving the secondary owed 7,000 of 30,000 objects, with status saying nothing was owed.

use std::sync::Arc;
use std::time::Duration;

use super::change::{Extras, side};
use super::{Buckets, Error, Leg, now_ms};
use crate::state::{self, Backfill};
use crate::store::{self, Versioning};

/// How often backfills cut short are tried again.
const RESUME_EVERY: Duration = Duration::from_secs(30);

/// Page size of the primary's listing, and of deletions journaled at once.
const PAGE: usize = 1000;

impl Buckets {
    /// Records the backfills of `added`, before the policy that names them is committed.
    pub(super) async fn plan_backfills(
        &self,
        name: &str,
        added: &[Leg],
        delete_extra: bool,
    ) -> Result<(), Error> {
        let rows: Vec<Backfill> = added
            .iter()
            .map(|t| Backfill {
                bucket: name.to_owned(),
                target: t.label.clone(),
                after: None,
                delete_extra,
                created_ms: now_ms(),
            })
            .collect();
        if rows.is_empty() {
            return Ok(());
        }
        self.registry.db().begin_backfills(&rows).await?;
        Ok(())
    }

    /// Forgets the backfills of `added` (the change that planned them was not made).
    pub(super) async fn unplan_backfills(&self, name: &str, added: &[Leg]) {
        for t in added {
            if let Err(e) = self.registry.db().end_backfill(name, &t.label).await {
                tracing::warn!(bucket = %name, target = %t.label, error = %e,
                    "cannot forget a backfill of a change not made");
            }
        }
    }

    /// Runs the backfills of `added`, planned by [`Self::plan_backfills`], once the change
    /// that needs them is made. One cut short stays recorded and is resumed in the
    /// background: the change stands, and the answer is the warning that says so (not an
    /// error: a script must not read a change that was made as refused input).
    pub(super) async fn backfill(
        &self,
        name: &str,
        primary: &Leg,
        added: &[Leg],
        delete_extra: bool,
    ) -> Option<String> {
        for t in added {
            if let Err(e) = self
                .backfill_one(name, primary, t, delete_extra, None)
                .await
            {
                tracing::warn!(bucket = %name, target = %t.label, error = %e,
                    "a backfill was cut short; it goes on in the background");
                return Some(format!(
                    "{e}; the policy is in place, and what {} is owed is journaled in the \
                     background once {} answers (`ferry bucket status {name}` shows the \
                     backfill until then)",
                    t.label, primary.label
                ));
            }
        }
        None
    }

    /// Journals what `t` is owed from `after` on, moving the recorded cursor as it goes,
    /// and forgets the backfill when done.
    async fn backfill_one(
        &self,
        name: &str,
        primary: &Leg,
        t: &Leg,
        delete_extra: bool,
        after: Option<String>,
    ) -> Result<(), Error> {
        let db = self.registry.db();
        if after.is_none() {
            self.backfill_settings(name, primary, t).await?;
        }
        let mut after = after;
        loop {
            let page = primary
                .store
                .list_objects(
                    &primary.bucket,
                    &store::ListQuery {
                        prefix: String::new(),
                        delimiter: None,
                        start_after: after.clone(),
                        max_keys: PAGE,
                    },
                )
                .await?;
            let rows: Vec<state::NewJournalRow> = page
                .objects
                .iter()
                .map(|o| state::NewJournalRow {
                    bucket: name.to_owned(),
                    target: t.label.clone(),
                    key: o.key.to_string(),
                    op: "put".into(),
                    bytes: i64::try_from(o.size).unwrap_or(i64::MAX),
                    created_ms: now_ms(),
                })
                .collect();
            self.journal_backfill(name, rows).await?;
            match page.next_marker {
                Some(m) => {
                    // Journaled up to here: a backfill cut short resumes after it.
                    db.backfill_progress(name, &t.label, &m).await?;
                    after = Some(m);
                }
                None => break,
            }
        }
        // Keys the target holds that the primary lacks: what was deleted while it was left
        // out, say. Left there, a failover would serve them again, and a failback copy them
        // back to the primary. With `--delete-extra`, the worker deletes them (it copies the
        // primary's state, which is none; a key written meanwhile is on both, and the worker
        // copies it instead). Without, the change was refused had there been any; one
        // deleted while the change was made stays there (`ferry verify` shows it). Walked
        // whole each time (a deletion journaled twice is done once).
        if delete_extra {
            let (p, ts) = (side(primary), side(t));
            let mut extras = Extras::new(&p, &ts);
            loop {
                let mut rows = Vec::new();
                while rows.len() < PAGE {
                    match extras.next().await? {
                        Some(key) => rows.push(state::NewJournalRow {
                            bucket: name.to_owned(),
                            target: t.label.clone(),
                            key,
                            op: "delete".into(),
                            bytes: 0,
                            created_ms: now_ms(),
                        }),
                        None => break,
                    }
                }
                let last = rows.len() < PAGE;
                self.journal_backfill(name, rows).await?;
                if last {
                    break;
                }
            }
        }
        db.end_backfill(name, &t.label).await?;
        Ok(())
    }

    /// The bucket's own settings first (versioning, tags), when it has any: a secondary that
    /// is to stand in for the primary keeps versions as it does. A primary that cannot say
    /// (moto answers GetBucketVersioning in a form the SDK cannot read) is taken as having
    /// none: a row the worker could never settle would stay owed for ever.
    async fn backfill_settings(&self, name: &str, primary: &Leg, t: &Leg) -> Result<(), Error> {
        let versioned = matches!(
            primary.store.get_versioning(&primary.bucket).await,
            Ok(v) if v != Versioning::Unversioned
        );
        let tagged = matches!(
            primary.store.get_bucket_tags(&primary.bucket).await,
            Ok(Some(_))
        );
        if !(versioned || tagged) {
            return Ok(());
        }
        let row = state::NewJournalRow {
            bucket: name.to_owned(),
            target: t.label.clone(),
            key: String::new(),
            op: "bucket".into(),
            bytes: 0,
            created_ms: now_ms(),
        };
        self.journal_backfill(name, vec![row]).await
    }

    async fn journal_backfill(
        &self,
        name: &str,
        rows: Vec<state::NewJournalRow>,
    ) -> Result<(), Error> {
        if rows.is_empty() {
            return Ok(());
        }
        let ids = self
            .journal
            .append(rows)
            .await
            .map_err(|e| Error::Invalid(format!("cannot journal the backfill: {e}")))?;
        self.journal.release(&ids);
        if let Ok(e) = self.entry(name) {
            e.ns.wake.notify_waiters();
        }
        Ok(())
    }

    /// Resumes the backfills cut short, now and every [`RESUME_EVERY`]. One whose bucket is
    /// gone, or whose target is no longer one of its secondaries, is forgotten; one of a
    /// bucket failed over or failing back waits.
    pub(super) async fn resume_backfills(self: Arc<Self>) {
        let mut said_failing = std::collections::HashSet::new();
        loop {
            let pending = match self.registry.db().backfills(None).await {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the backfills in progress");
                    Vec::new()
                }
            };
            for b in pending {
                // Under the bucket's change lock before anything is decided: a create plans
                // its backfill before the bucket is served, and runs it under that lock.
                let Ok(_c) = self.changing(&b.bucket).await else {
                    continue;
                };
                // An admin change may have run it meanwhile: as recorded now.
                let now = self.registry.db().backfills(Some(&b.bucket)).await;
                let Some(b) = now
                    .ok()
                    .and_then(|all| all.into_iter().find(|n| n.target == b.target))
                else {
                    continue;
                };
                let Ok(e) = self.entry(&b.bucket) else {
                    let _ = self.registry.db().end_backfill(&b.bucket, &b.target).await;
                    continue;
                };
                if e.policy.failover.is_some() {
                    continue;
                }
                let roles = e.ns.roles();
                let Some(t) = roles.secondaries.iter().find(|l| l.label == b.target) else {
                    let _ = self.registry.db().end_backfill(&b.bucket, &b.target).await;
                    continue;
                };
                let key = (b.bucket.clone(), b.target.clone());
                match self
                    .backfill_one(
                        &b.bucket,
                        &roles.primary,
                        t,
                        b.delete_extra,
                        b.after.clone(),
                    )
                    .await
                {
                    Ok(()) => {
                        said_failing.remove(&key);
                        tracing::info!(bucket = %b.bucket, target = %b.target,
                            "backfill resumed and done: everything the primary held is owed to the target");
                    }
                    Err(err) => {
                        if said_failing.insert(key) {
                            tracing::warn!(bucket = %b.bucket, target = %b.target, error = %err,
                                "a backfill cut short cannot go on yet; tried again every 30 s");
                        }
                    }
                }
            }
            tokio::time::sleep(RESUME_EVERY).await;
        }
    }
}
