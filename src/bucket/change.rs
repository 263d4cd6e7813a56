//! Creating, re-targeting and removing namespace buckets: the admin's changes of a bucket's
//! policy, each refused when it would strand writes the journal still owes.

use super::{BucketView, Buckets, Entry, Error, Leg, Policy, Roles, now_ms};
use crate::state::{self, BucketRecord};
use std::cmp::Ordering;

use crate::store::{self, BucketName};
use crate::transfer::diff::{Cursor, Side};

impl Buckets {
    /// Creates a namespace bucket (and its buckets on the write targets, if missing).
    /// A secondary's bucket that holds keys the primary lacks is refused, unless
    /// `delete_extra`: a secondary mirrors its primary, so they are owed as deletions.
    pub async fn create(
        &self,
        name: &str,
        write_to: &[String],
        read_from: &[String],
        delete_extra: bool,
    ) -> Result<BucketView, Error> {
        let _c = self.changing(name).await?;
        let bucket =
            BucketName::parse(name).map_err(|e| Error::Invalid(format!("bucket {name:?}: {e}")))?;
        if self.get(name).is_some() {
            return Err(Error::Exists(name.to_owned()));
        }
        if let Some(holder) = self.holder_of(name) {
            return Err(Error::Invalid(format!(
                "bucket {name} holds the objects of namespace bucket {holder}: choose another name"
            )));
        }
        // A plain bucket of that name would be hidden, unless it is the primary's own bucket
        // (`local:NAME`), which the namespace then serves. Checked before any target's
        // bucket is made.
        let asked = Policy::new(write_to, read_from).map_err(Error::Invalid)?;
        let primary = asked.write_to.first().cloned();
        let own = primary.is_some_and(|t| {
            t.store == self.default_store.name() && t.bucket_name().is_ok_and(|b| b == bucket)
        });
        match self.default_store.head_bucket(&bucket).await {
            Ok(_) if !own => {
                return Err(Error::Invalid(format!(
                    "a plain bucket named {name:?} already exists in the default store (a \
                     namespace bucket may take it over only with it as its primary, \
                     {}:{name})",
                    self.default_store.name()
                )));
            }
            Ok(_) | Err(store::Error::NoSuchBucket { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        let (policy, roles) = self.prepare(name, asked, None, delete_extra).await?;
        let (primary, secondaries) = (roles.primary.clone(), roles.secondaries.clone());
        // Recorded before the bucket is: a backfill cut short from here on is resumed.
        self.plan_backfills(name, &secondaries, delete_extra)
            .await?;
        let record = BucketRecord {
            name: name.to_owned(),
            policy: serde_json::to_value(&policy).map_err(|e| Error::Invalid(e.to_string()))?,
            created_ms: now_ms(),
        };
        if let Err(e) = self.registry.db().add_bucket(&record).await {
            self.unplan_backfills(name, &secondaries).await;
            return Err(match e {
                state::Error::BucketExists(n) => Error::Exists(n),
                e => e.into(),
            });
        }
        let mut view = self.activate(name, policy, roles).await;
        // A primary bucket that already holds objects: the secondaries are owed them.
        view.warning = self
            .backfill(name, &primary, &secondaries, delete_extra)
            .await;
        Ok(view)
    }

    /// Replaces a bucket's targets (not while it is failed over).
    /// With `drop_owed`, what targets the new policy leaves out are still owed is given up
    /// (writes they refuse for good, say) instead of refusing the change. A secondary added
    /// is refused as by [`Self::create`] when its bucket holds keys the primary lacks (a
    /// target that was left out a while, say, holding what was deleted since), unless
    /// `delete_extra`.
    pub async fn set_policy(
        &self,
        name: &str,
        write_to: &[String],
        read_from: &[String],
        drop_owed: bool,
        delete_extra: bool,
    ) -> Result<BucketView, Error> {
        let _c = self.changing(name).await?;
        let e = self.entry(name)?;
        if let Some(f) = &e.policy.failover {
            return Err(Error::Conflict(format!(
                "bucket {name} is failed over to {}: fail back before changing its policy",
                f.to
            )));
        }
        // A primary that is not yet one of the bucket's targets holds none of its objects:
        // every read would miss them, with nothing owed (a probe).
        let asked = Policy::new(write_to, read_from).map_err(Error::Invalid)?;
        if let Some(first) = asked.write_to.first()
            && !e.policy.write_to.contains(first)
        {
            return Err(Error::Invalid(format!(
                "bucket {name}: the new primary {first} is not one of its write targets, so it \
                 holds none of its objects: add it as a secondary first, wait until `ferry \
                 bucket status {name}` shows nothing owed, then make it the primary"
            )));
        }
        let (policy, roles) = self
            .prepare(name, asked, Some(&e.policy), delete_extra)
            .await?;
        let added: Vec<Leg> = roles
            .secondaries
            .iter()
            .filter(|l| !e.policy.write_to.iter().any(|t| t.to_string() == l.label))
            .cloned()
            .collect();
        let primary = roles.primary.clone();
        let mut view = {
            let _pause = e.ns.gate.close().await.map_err(|s| Error::busy(name, s))?;
            // Under the gate: no write can be journaled between this check and the switch.
            let dropped = self
                .refuse_losing_owed(name, &e.policy, Some(&policy), drop_owed)
                .await?;
            // Recorded before the policy is: a backfill cut short from here on is resumed.
            self.plan_backfills(name, &added, delete_extra).await?;
            let left: Vec<String> = e
                .policy
                .write_to
                .iter()
                .map(|t| t.to_string())
                .filter(|t| !policy.write_to.iter().any(|w| w.to_string() == *t))
                .collect();
            let view = match self.commit_switch(name, policy, roles).await {
                Ok(v) => v,
                Err(err) => {
                    self.unplan_backfills(name, &added).await;
                    return Err(err);
                }
            };
            // A target that left has nothing more to be given.
            for target in &left {
                if let Err(err) = self.registry.db().end_backfill(name, target).await {
                    tracing::warn!(bucket = %name, target = %target, error = %err,
                        "cannot forget the backfill of a target that left");
                }
            }
            // The change is made: a failure here must not skip the backfill below (the rows
            // left are refused again at the next change, which --drop-owed drops).
            for target in dropped {
                match self.registry.db().drop_journal_target(name, &target).await {
                    Ok(n) => tracing::warn!(bucket = %name, target = %target, writes = n,
                        "gave up the writes a target left out of the policy was owed (--drop-owed)"),
                    Err(e) => tracing::error!(bucket = %name, target = %target, error = %e,
                        "could not give up the writes a target left out of the policy is owed"),
                }
            }
            view
        };
        // Writes from now on reach the new secondaries; what the primary already held is
        // owed to them, so the catch-up worker copies it (and status shows how much is left).
        view.warning = self.backfill(name, &primary, &added, delete_extra).await;
        Ok(view)
    }

    /// Refuses secondaries about to be added whose buckets hold a key `primary` lacks (the
    /// backfill would delete it, a secondary mirroring its primary), unless `delete_extra`
    /// asks for that. An fs target's bucket is read as its files are now (rescanned, as
    /// `ferry verify` reads it): files put there behind the store's back count. Stops at the
    /// first such key.
    pub(super) async fn refuse_extras(
        &self,
        primary: &Leg,
        added: &[&Leg],
        creating: bool,
        delete_extra: bool,
    ) -> Result<(), Error> {
        for t in added {
            self.registry
                .get(t.store.name())
                .await?
                .refresh(&t.bucket)
                .await?;
            if delete_extra {
                continue;
            }
            let (p, ts) = (side(primary), side(t));
            let Some(extra) = Extras::new(&p, &ts).next().await? else {
                continue;
            };
            let hint = if creating {
                "; or, if that bucket holds the data, name it first (the primary)"
            } else {
                ""
            };
            return Err(Error::Conflict(format!(
                "target {} holds keys the primary {} lacks (first: {:?}): a secondary mirrors \
                 its primary, so they would be deleted; pass --delete-extra to delete them, or \
                 choose another bucket{hint}",
                t.label, primary.label, extra
            )));
        }
        Ok(())
    }

    /// Refuses a change that would strand acknowledged writes the journal still owes: a
    /// target that is owed writes leaving the policy (nothing would deliver them), or the
    /// primary changing while anything is owed (the new primary would serve reads without
    /// them, and the rows would name the wrong side). `new` is `None` for a removal. With
    /// `drop_owed` the targets leaving (every one, for a removal) may be owed writes: they are
    /// returned, for their rows to go once the change is made.
    async fn refuse_losing_owed(
        &self,
        name: &str,
        old: &Policy,
        new: Option<&Policy>,
        drop_owed: bool,
    ) -> Result<Vec<String>, Error> {
        let owed = self.registry.db().owed_stats(name).await?;
        let named = |p: &Policy, t: &str| p.write_to.iter().any(|w| w.to_string() == t);
        // A backfill not done yet: its target is owed more than the journal says, so the
        // primary may not change (whatever `--drop-owed` says; a target leaving takes its
        // backfill with it).
        if let Some(new) = new
            && old.write_to.first() != new.write_to.first()
            && let Some(b) = self
                .registry
                .db()
                .backfills(Some(name))
                .await?
                .into_iter()
                .find(|b| named(new, &b.target))
        {
            return Err(Error::Conflict(format!(
                "bucket {name}: the backfill of {} is not done (the primary's objects are                  still being journaled for it); a new primary would serve reads without them:                  wait until `ferry bucket status {name}` shows no backfill",
                b.target
            )));
        }
        let leaving: Vec<String> = owed
            .iter()
            .filter(|o| o.count > 0 && new.is_none_or(|p| !named(p, &o.target)))
            .map(|o| o.target.clone())
            .collect();
        let Some(first) = owed.iter().find(|o| o.count > 0) else {
            return Ok(Vec::new());
        };
        let wait = format!(
            "wait until `ferry bucket status {name}` shows nothing owed (a target that is down \
             must come back first), or give those writes up with --drop-owed"
        );
        let Some(new) = new else {
            if drop_owed {
                return Ok(leaving);
            }
            return Err(Error::Conflict(format!(
                "bucket {name}: {} is still owed {} acknowledged writes; removing the bucket \
                 would lose them: {wait}",
                first.target, first.count
            )));
        };
        if let Some(o) = owed.iter().find(|o| o.count > 0 && !named(new, &o.target))
            && !drop_owed
        {
            return Err(Error::Conflict(format!(
                "bucket {name}: {} is still owed {} acknowledged writes and the new policy \
                 leaves it out, so nothing would deliver them: {wait}",
                o.target, o.count
            )));
        }
        // Not given up even with --drop-owed: the new primary would be synced to the others
        // without them, and they would be gone everywhere.
        let kept = owed
            .iter()
            .find(|o| o.count > 0 && (!drop_owed || named(new, &o.target)));
        if let Some(o) = kept
            && old.write_to.first() != new.write_to.first()
        {
            return Err(Error::Conflict(format!(
                "bucket {name}: {} is still owed {} acknowledged writes; a new primary would \
                 serve reads without them: wait until `ferry bucket status {name}` shows \
                 nothing owed (a target that is down must come back first)",
                o.target, o.count
            )));
        }
        Ok(leaving)
    }

    /// Persists `policy` and swaps the roles while writes are held back.
    pub(super) async fn switch(
        &self,
        e: &Entry,
        name: &str,
        policy: Policy,
    ) -> Result<BucketView, Error> {
        let roles = self.roles(&policy).await?;
        let _pause = e.ns.gate.close().await.map_err(|s| Error::busy(name, s))?;
        self.commit_switch(name, policy, roles).await
    }

    /// The end of every role change; the caller holds the bucket's gate for writing.
    pub(super) async fn commit_switch(
        &self,
        name: &str,
        policy: Policy,
        roles: Roles,
    ) -> Result<BucketView, Error> {
        self.registry
            .db()
            .set_bucket_policy(
                name,
                &serde_json::to_value(&policy).map_err(|e| Error::Invalid(e.to_string()))?,
            )
            .await?;
        Ok(self.activate(name, policy, roles).await)
    }

    /// Stops serving a namespace bucket (its targets' data is left alone); refused while it
    /// is failed over or, unless `drop_owed`, any target is owed writes.
    pub async fn remove(&self, name: &str, drop_owed: bool) -> Result<(), Error> {
        let _c = self.changing(name).await?;
        let e = self.entry(name)?;
        if let Some(f) = &e.policy.failover {
            return Err(Error::Conflict(format!(
                "bucket {name} is failed over to {}: fail back before removing it (its writes \
                 since the failover are only there)",
                f.to
            )));
        }
        let _pause = e.ns.gate.close().await.map_err(|s| Error::busy(name, s))?;
        let dropped = self
            .refuse_losing_owed(name, &e.policy, None, drop_owed)
            .await?;
        self.registry.db().remove_bucket(name).await?;
        if !dropped.is_empty() {
            tracing::warn!(bucket = %name, targets = ?dropped,
                "removed with writes still owed; given up (--drop-owed)");
        }
        self.registry.db().drop_journal(name).await?;
        self.registry.db().drop_backfills(name).await?;
        let _ = e.stop.send(true);
        if let Ok(mut o) = self.open.write() {
            o.remove(name);
        }
        Ok(())
    }
}

/// One target as a side of a listing walk: its whole bucket.
pub(super) fn side(l: &Leg) -> Side<'_> {
    Side {
        store: l.store.as_ref(),
        bucket: l.bucket.clone(),
        prefix: String::new(),
    }
}

/// A listing of a bucket that does not exist (a target's, before it is made) is empty.
fn empty_if_missing<T>(r: store::Result<Option<T>>) -> Result<Option<T>, Error> {
    match r {
        Err(store::Error::NoSuchBucket { .. }) => Ok(None),
        r => Ok(r?),
    }
}

/// The keys a target's bucket holds that the primary's lacks, in key order: both listings
/// walked in lock step, a page at a time.
pub(super) struct Extras<'a> {
    primary: Cursor<'a>,
    target: Cursor<'a>,
}

impl<'a> Extras<'a> {
    pub(super) fn new(primary: &'a Side<'a>, target: &'a Side<'a>) -> Self {
        Self {
            primary: Cursor::new(primary),
            target: Cursor::new(target),
        }
    }

    pub(super) async fn next(&mut self) -> Result<Option<String>, Error> {
        loop {
            let key = match empty_if_missing(self.target.peek().await)? {
                Some(m) => m.key.as_str().to_owned(),
                None => return Ok(None),
            };
            let held = loop {
                let order = empty_if_missing(self.primary.peek().await)?
                    .map(|m| m.key.as_str().cmp(key.as_str()));
                match order {
                    Some(Ordering::Less) => {
                        self.primary.pop();
                    }
                    Some(o) => break o == Ordering::Equal,
                    None => break false,
                }
            };
            self.target.pop();
            if !held {
                return Ok(Some(key));
            }
        }
    }
}

/// Takes away the buckets a refused change made (a refused policy leaves nothing behind; a
/// bucket that is not empty, a folder adopted with its files, stays, said).
pub(super) async fn take_away(made: &[&Leg]) {
    for m in made {
        if let Err(e) = m.store.delete_bucket(&m.bucket).await {
            tracing::warn!(target = %m.label, error = %e, "could not take away a bucket made for a refused policy");
        }
    }
}
