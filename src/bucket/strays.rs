//! The multipart uploads the catch-up worker and failback open on a target while they copy
//! a large object. Each is recorded in the state database from its creation until it ends, so
//! a process killed mid-copy does not leave its parts stored (and billed) on the target for
//! ever: [`sweep`], run when a server starts, aborts what earlier processes left. With a
//! PostgreSQL state database the server says every few seconds that it is alive
//! ([`heartbeat`]): no other server takes the database meanwhile ([`claim`]), and an earlier
//! incarnation's uploads are swept once it has gone quiet.

use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;

use crate::registry::Registry;
use crate::state::{Db, Dialect, OpenUpload};
use crate::store::{self, BucketName, ObjectKey, Store};
use crate::transfer::{self, copy};

/// How long the sweep waits before trying again the uploads a store would not abort yet.
const RETRY: Duration = Duration::from_secs(60);
const PAGE: i64 = 200;
/// How often a server on a PostgreSQL state database says it is alive, and how long one may
/// stay quiet before it counts as gone (its uploads left behind, the database free).
const HEARTBEAT: Duration = Duration::from_secs(10);
const QUIET: Duration = Duration::from_secs(45);

/// This process's id as an uploads' owner: the sweep never takes its own process's uploads
/// (whatever the clock did since it started).
fn me() -> &'static str {
    static ME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ME.get_or_init(|| uuid::Uuid::new_v4().simple().to_string())
}

fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// [`transfer::copy_current`], with the uploads it opens on `dst` recorded in `state` until
/// they are completed or aborted.
pub(super) async fn copy_current(
    state: &Db,
    src: &dyn Store,
    sb: &BucketName,
    sk: &ObjectKey,
    dst: &dyn Store,
    db: &BucketName,
    dk: &ObjectKey,
) -> store::Result<transfer::Copied> {
    let rec = Recorder {
        state,
        store: dst.name(),
        bucket: db.as_str(),
        key: dk.as_str(),
        ids: Mutex::default(),
    };
    let result = transfer::copy_current(src, sb, sk, dst, db, dk, &rec).await;
    let ids = std::mem::take(&mut *rec.ids.lock().unwrap_or_else(|p| p.into_inner()));
    let last = ids.len().saturating_sub(1);
    for (i, id) in ids.iter().enumerate() {
        // The last upload of a copy that succeeded was completed; every other one was
        // aborted by the engine, unless the store refused the abort: asked again here, and
        // if it still refuses, the row stays for the next sweep.
        let ended = (result.is_ok() && i == last) || abort(dst, db, dk, id).await;
        if ended && let Err(e) = state.forget_upload(dst.name(), db.as_str(), id).await {
            // Harmless: the next sweep finds the upload gone.
            tracing::debug!(store = dst.name(), upload_id = %id, error = %e, "could not forget an ended upload");
        }
    }
    result
}

/// Asks `dst` to abort an upload; whether it is gone.
async fn abort(dst: &dyn Store, b: &BucketName, k: &ObjectKey, id: &str) -> bool {
    match dst.abort_multipart(b, k, id).await {
        Ok(()) | Err(store::Error::NoSuchUpload { .. }) => true,
        Err(store::Error::NoSuchBucket { .. }) => true,
        Err(e) => {
            tracing::warn!(store = dst.name(), bucket = %b, key = %k, upload_id = id, error = %e,
                "could not abort a multipart upload left by a copy; tried again later");
            false
        }
    }
}

struct Recorder<'a> {
    state: &'a Db,
    store: &'a str,
    bucket: &'a str,
    key: &'a str,
    ids: Mutex<Vec<String>>,
}

#[async_trait]
impl copy::Journal for Recorder<'_> {
    async fn upload(&self, upload_id: Option<&str>) -> store::Result<()> {
        // `None` (the engine gave the upload up) is settled once the copy returns.
        let Some(id) = upload_id else { return Ok(()) };
        self.ids
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(id.to_owned());
        self.state
            .record_upload(&OpenUpload {
                store: self.store.to_owned(),
                bucket: self.bucket.to_owned(),
                key: self.key.to_owned(),
                upload_id: id.to_owned(),
                owner: me().to_owned(),
                created_ms: now_ms(),
            })
            .await
            .map_err(|e| store::Error::Index(format!("recording upload {id}: {e}")))
    }

    async fn part(&self, _: u32, _: &str, _: u64) -> store::Result<()> {
        Ok(())
    }
}

/// Whether other processes may use `db` (a PostgreSQL state database; an embedded one
/// belongs to one server at a time).
fn shared(db: &Db) -> bool {
    db.dialect() == Dialect::Postgres
}

/// Where this server runs: its host and data directory. A server started again at the same
/// place (after a crash, say) is the same server, not another one.
fn place(data: &std::path::Path) -> String {
    let dir = std::fs::canonicalize(data).unwrap_or_else(|_| data.to_owned());
    format!("{}:{}", crate::jobs::run::hostname(), dir.display())
}

/// Takes a shared state database for this server: refused while another server, elsewhere,
/// says it is alive. Several servers would each serve the namespace buckets and run their
/// catch-up workers over one journal, guarded by locks each holds in its own memory (a
/// review found a copy of a key's older state landing over a write another server was
/// making, and a server's built-in store taken for another's). `ferry worker` processes
/// share a state database's jobs; `ferry serve` does not share it.
pub async fn claim(db: &Db, data: &std::path::Path) -> Result<(), super::Error> {
    if !shared(db) {
        return Ok(());
    }
    let here = place(data);
    let now = now_ms();
    db.server_alive(me(), &here, now).await?;
    let others = db
        .other_servers(me(), &here, now - QUIET.as_millis() as i64)
        .await?;
    if others.is_empty() {
        // Its earlier incarnations here are this server: gone (a probe found a crashed one's
        // row holding the database for 45 s after this one stopped cleanly).
        db.forget_place(me(), &here).await?;
    }
    if let Some((there, seen)) = others.first() {
        // Not left behind as alive: the server it defers to would take it for another.
        if let Err(e) = db.server_gone(me()).await {
            tracing::debug!(error = %e, "forgetting this refused server");
        }
        return Err(super::Error::Conflict(format!(
            "another `ferry serve` uses this state database ({there}, alive {} s ago): one \
             server serves a state database (its namespace buckets and their journal); stop \
             that one first, or give this one a database of its own",
            (now - seen).max(0) / 1000
        )));
    }
    Ok(())
}

/// Forgets this server at a clean stop (see [`claim`]).
pub async fn release(db: &Db) {
    if shared(db)
        && let Err(e) = db.server_gone(me()).await
    {
        tracing::debug!(error = %e, "forgetting this server at its stop");
    }
}

/// Says this server is alive every few seconds, for as long as it runs (a shared state
/// database only): no later server takes the database, nor sweeps its uploads.
pub(super) async fn heartbeat(db: Db, data: std::path::PathBuf) {
    if !shared(&db) {
        return;
    }
    let here = place(&data);
    loop {
        tokio::time::sleep(HEARTBEAT).await;
        if let Err(e) = db.server_alive(me(), &here, now_ms()).await {
            tracing::warn!(error = %e, "recording this server as alive in the state database");
        }
    }
}

/// Aborts the uploads of earlier processes (their copies died with them), trying again every
/// minute those a store will not abort yet, until none is left. With a shared state database
/// it keeps going, once a minute, for the uploads of processes that stopped saying they are
/// alive. A store no longer registered takes its uploads with it: its rows are dropped.
pub(super) async fn sweep(registry: std::sync::Arc<Registry>) {
    let shared = shared(registry.db());
    loop {
        // An embedded state database: every other process that recorded uploads is gone.
        let live_since = if shared {
            now_ms() - QUIET.as_millis() as i64
        } else {
            i64::MAX
        };
        if sweep_once(&registry, live_since).await == 0 && !shared {
            return;
        }
        tokio::time::sleep(RETRY).await;
    }
}

/// One pass over the uploads of processes quiet since `live_since`; how many are left.
async fn sweep_once(registry: &Registry, live_since: i64) -> usize {
    let mut left = 0usize;
    let mut after: Option<OpenUpload> = None;
    loop {
        let page = match registry
            .db()
            .open_uploads(me(), live_since, after.as_ref(), PAGE)
            .await
        {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "reading the uploads left by earlier copies");
                return left + 1;
            }
        };
        for u in &page {
            if !sweep_one(registry, u).await {
                left += 1;
            }
        }
        if (page.len() as i64) < PAGE {
            return left;
        }
        after = page.last().cloned();
    }
}

/// Aborts one recorded upload; whether its row is gone.
async fn sweep_one(registry: &Registry, u: &OpenUpload) -> bool {
    let gone = match registry.get(&u.store).await {
        Err(crate::registry::Error::State(crate::state::Error::NoSuchStore(_))) => true,
        Err(e) => {
            tracing::warn!(store = %u.store, error = %e, "cannot open a store to abort an upload left there");
            false
        }
        Ok(s) => match (BucketName::parse(&u.bucket), ObjectKey::parse(&u.key)) {
            (Ok(b), Ok(k)) => {
                let ok = abort(s.store().as_ref(), &b, &k, &u.upload_id).await;
                if ok {
                    tracing::info!(store = %u.store, bucket = %u.bucket, key = %u.key, upload_id = %u.upload_id,
                        "aborted a multipart upload an interrupted copy left behind");
                }
                ok
            }
            // Not a name this version accepts: nothing to ask the store.
            _ => true,
        },
    };
    if gone
        && let Err(e) = registry
            .db()
            .forget_upload(&u.store, &u.bucket, &u.upload_id)
            .await
    {
        tracing::warn!(error = %e, "forgetting an aborted upload");
        return false;
    }
    gone
}
