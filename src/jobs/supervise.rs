//! Running every job that is in the running state (`ferry worker`, and `ferry serve` for jobs
//! handed to it with `migrate --detach`): one [`Runner`] per job, started as jobs appear.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::run::{Ended, Runner, Settings};
use super::spec::MigrateSpec;
use super::{Error, Result};
use crate::registry::Registry;
use crate::state::JobRecord;

/// How often the job list is read.
const SCAN: Duration = Duration::from_secs(2);
/// How long a job whose sides could not be opened, or whose run failed, waits before the
/// next try.
const RETRY_OPEN: Duration = Duration::from_secs(30);

/// Runs jobs until `shutdown` turns true.
pub async fn supervise(
    registry: Arc<Registry>,
    settings: Settings,
    mut shutdown: watch::Receiver<bool>,
) -> Result<()> {
    // Each runner's task answers whether it failed (a listing refused, the destination out
    // of space): such a job waits before it is run again, rather than being restarted, and
    // its sides opened (and rescanned), at every scan.
    let mut running = HashMap::<i64, tokio::task::JoinHandle<bool>>::new();
    let mut not_before = HashMap::<i64, Instant>::new();
    loop {
        let mut failed = Vec::new();
        running.retain(|id, h| {
            if !h.is_finished() {
                return true;
            }
            if let Some(Ok(true)) = futures::FutureExt::now_or_never(&mut *h) {
                failed.push(*id);
            }
            false
        });
        for id in failed {
            not_before.insert(id, Instant::now() + RETRY_OPEN);
        }
        match registry.db().running_jobs().await {
            Ok(jobs) => {
                for rec in jobs {
                    if running.contains_key(&rec.id)
                        || not_before.get(&rec.id).is_some_and(|t| *t > Instant::now())
                    {
                        continue;
                    }
                    let id = rec.id;
                    let had_error = rec.error.is_some();
                    match start(&registry, rec, &settings).await {
                        Ok(runner) => {
                            let sd = shutdown.clone();
                            let db = registry.db().clone();
                            running.insert(
                                id,
                                tokio::spawn(async move {
                                    let ended = runner.run(sd).await;
                                    // Said on the job, not only in this process's log.
                                    let why = ended.as_ref().err().map(|e| {
                                        format!(
                                            "the last run on {} failed: {}",
                                            super::run::hostname(),
                                            crate::telemetry::one_line(e)
                                        )
                                    });
                                    if (why.is_some() || had_error || matches!(ended, Ok(Ended::Done(_))))
                                        && let Err(e) = db.set_job_error(id, why.as_deref()).await
                                    {
                                        tracing::warn!(job = id, error = %e, "recording why the job failed failed");
                                    }
                                    match ended {
                                        Ok(Ended::Done(r)) => {
                                            tracing::info!(job = id, objects = r.done, dead = r.dead, "job finished");
                                            false
                                        }
                                        Ok(Ended::Cancelled(_)) => {
                                            tracing::info!(job = id, "job cancelled");
                                            false
                                        }
                                        Ok(Ended::Stopped) => false,
                                        Err(e) => {
                                            tracing::warn!(job = id, error = %crate::telemetry::one_line(&e), "job runner failed; trying again later");
                                            true
                                        }
                                    }
                                }),
                            );
                        }
                        Err(e) => {
                            let why = crate::telemetry::one_line(&e);
                            tracing::warn!(job = id, error = %why, "cannot run the job here; trying again later");
                            let said = format!("{} cannot run it: {why}", super::run::hostname());
                            if let Err(e) = registry.db().set_job_error(id, Some(&said)).await {
                                tracing::warn!(job = id, error = %e, "recording why the job cannot run failed");
                            }
                            not_before.insert(id, Instant::now() + RETRY_OPEN);
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "reading the job list failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(SCAN) => {}
            _ = shutdown.wait_for(|s| *s) => break,
        }
    }
    for (_, h) in running {
        let _ = h.await;
    }
    Ok(())
}

/// Opens a stored job's sides and makes its runner.
pub async fn start(
    registry: &Registry,
    rec: JobRecord,
    settings: &Settings,
) -> Result<Arc<Runner>> {
    let spec: MigrateSpec = serde_json::from_value(rec.spec.clone())
        .map_err(|e| Error::State(crate::state::Error::Corrupt(format!("job {}: {e}", rec.id))))?;
    let (src, dst) = super::open::open_sides(&spec, spec.options.checksum, registry).await?;
    Ok(Arc::new(Runner::new(
        registry.db().clone(),
        rec.id,
        spec,
        src,
        dst,
        settings,
    )?))
}
