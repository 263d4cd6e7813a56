//! What `ferry bucket status` and `/metrics` show of a namespace bucket: its mode, each
//! target's health and backlog, and the last failback's failure.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Buckets, Error, Failover, mode, now_ms};

/// Status of one target of a bucket.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TargetStatus {
    pub target: String,
    /// primary, secondary, or reader.
    pub role: String,
    pub healthy: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub owed_count: i64,
    pub owed_bytes: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oldest_owed_age_s: Option<f64>,
    pub synced: u64,
    pub synced_bytes: u64,
    /// A backfill not done: the primary's objects are still being journaled for this target
    /// (it is owed more than `owed_count`); the last key journaled, empty before the first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backfill_after: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BucketStatus {
    pub name: String,
    pub mode: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failover: Option<Failover>,
    pub targets: Vec<TargetStatus>,
    pub owed_total: i64,
    /// Why the last failback of this bucket failed, and when, until the next one starts: a
    /// failback started without `--wait` runs in the background, and its caller is gone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failback_error: Option<FailbackError>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FailbackError {
    pub error: String,
    pub at_ms: i64,
}

impl Buckets {
    /// Mode, each target's health and backlog.
    pub async fn status(&self, name: &str) -> Result<BucketStatus, Error> {
        let e = self.entry(name)?;
        let roles = e.ns.roles();
        let owed = self.registry.db().owed_stats(name).await?;
        let backfills = self.registry.db().backfills(Some(name)).await?;
        let now = now_ms();
        let mut targets = Vec::new();
        let mut seen = Vec::new();
        let legs = std::iter::once((&roles.primary, "primary"))
            .chain(roles.secondaries.iter().map(|l| {
                if roles.deferred.contains(&l.label) {
                    (l, "owed")
                } else {
                    (l, "secondary")
                }
            }))
            .chain(roles.readers.iter().map(|l| (l, "reader")));
        for (leg, role) in legs {
            if seen.contains(&leg.label) {
                continue;
            }
            seen.push(leg.label.clone());
            let probe =
                tokio::time::timeout(Duration::from_secs(3), leg.store.head_bucket(&leg.bucket))
                    .await;
            let (healthy, error) = match probe {
                Ok(Ok(_)) => (true, None),
                Ok(Err(err)) => (false, Some(err.to_string())),
                Err(_) => (false, Some("no answer within 3 s".to_owned())),
            };
            let h = self.health_of(name, &leg.label);
            let h = h.lock().map(|h| h.clone()).unwrap_or_default();
            let o = owed.iter().find(|o| o.target == leg.label);
            targets.push(TargetStatus {
                target: leg.label.clone(),
                role: role.into(),
                healthy,
                // The probe's answer may say less than the last failure did (a HEAD's bare
                // 403 against a write's SignatureDoesNotMatch): both, when they differ.
                error: match (error, h.last_error) {
                    (Some(now), Some(last)) if now != last => {
                        Some(format!("{now} (last failure: {last})"))
                    }
                    (now, last) => now.or(last),
                },
                owed_count: o.map_or(0, |o| o.count),
                owed_bytes: o.map_or(0, |o| o.bytes),
                oldest_owed_age_s: o
                    .and_then(|o| o.oldest_ms)
                    .map(|t| (now - t).max(0) as f64 / 1000.0),
                synced: h.synced,
                synced_bytes: h.synced_bytes,
                backfill_after: backfills
                    .iter()
                    .find(|b| b.target == leg.label)
                    .map(|b| b.after.clone().unwrap_or_default()),
            });
        }
        let mut mode = mode(&e.policy);
        if self.is_failing_back(name) {
            mode.push_str(" (failing back)");
        }
        Ok(BucketStatus {
            name: name.to_owned(),
            mode,
            failover: e.policy.failover.clone(),
            owed_total: owed.iter().map(|o| o.count).sum(),
            targets,
            failback_error: self
                .failback_errors
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(name)
                .cloned(),
        })
    }

    /// Reads every bucket's backlog into the metrics (before `/metrics` renders them).
    pub async fn refresh_metrics(&self) {
        let now = now_ms();
        for name in self.names() {
            let Ok(e) = self.entry(&name) else { continue };
            let Ok(owed) = self.registry.db().owed_stats(&name).await else {
                continue;
            };
            let roles = e.ns.roles();
            for leg in &roles.secondaries {
                let o = owed.iter().find(|o| o.target == leg.label);
                let age = o
                    .and_then(|o| o.oldest_ms)
                    .map_or(0.0, |t| (now - t).max(0) as f64 / 1000.0);
                self.metrics.set_backlog(
                    &name,
                    &leg.label,
                    o.map_or(0, |o| o.count),
                    o.map_or(0, |o| o.bytes),
                    age,
                );
            }
        }
    }
}
