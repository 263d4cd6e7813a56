//! The state database: SQLite by default, PostgreSQL when several processes share work.
//!
//! Owns: the connection pool over either dialect (sqlx `Any`), the schema, and the records
//! Ferry keeps about itself: registered stores, settings, namespace bucket policies
//! ([`buckets`]), the multi-write journal's rows ([`journal`]) and jobs with their tasks
//! ([`jobs`]), `ferry volume` iterations ([`volume`]), and the multipart uploads Ferry opens
//! itself until they end ([`uploads`]).
//! Imports nothing else of Ferry's. Queries use `$N` placeholders, which both dialects accept.

mod backfills;
mod buckets;
mod jobs;
mod journal;
mod uploads;
mod volume;

use std::path::Path;

use serde::{Deserialize, Serialize};
use sqlx::AnyPool;
use sqlx::Row;
use sqlx::any::AnyPoolOptions;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot open the state database {url}")]
    Open { url: String, source: sqlx::Error },
    /// A server that takes the connection and never answers (not PostgreSQL, or hung).
    #[error(
        "the state database {url} did not answer within {secs} s (is a PostgreSQL server \
         listening there, and answering?)"
    )]
    Silent { url: String, secs: u64 },
    #[error("state database: {0}")]
    Query(#[from] sqlx::Error),
    /// A call that got no answer in time: its connection may have gone half-open (a NAT or
    /// a failover dropped it without a word), which sqlx would wait on for ever.
    #[error("state database: no answer within {secs} s")]
    Stalled { secs: u64 },
    #[error("a store named {0:?} is already registered")]
    StoreExists(String),
    #[error("no store named {0:?} is registered")]
    NoSuchStore(String),
    #[error("a bucket named {0:?} already exists")]
    BucketExists(String),
    #[error("no namespace bucket named {0:?}")]
    NoSuchBucket(String),
    #[error("no job {0}")]
    NoSuchJob(i64),
    #[error("stored record is unreadable: {0}")]
    Corrupt(String),
    /// A column an upgrade adds could not be added.
    #[error("upgrading the state database: {0}")]
    Upgrade(String),
    /// The embedded database's folder refuses writes (a read-only filesystem, permissions).
    #[error("the state database {file} cannot be written: its folder refuses writes")]
    NotWritable {
        file: String,
        source: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How long opening the state database may take before it is said not to answer.
pub const CONNECT_WITHIN: std::time::Duration = std::time::Duration::from_secs(15);

pub use backfills::Backfill;
pub use buckets::BucketRecord;
pub use jobs::{
    Budget, DeadTask, JobRecord, NewTask, OpenTask, PartRow, Runner, TaskCounts, TaskRow,
    UNATTENDED_MS, VANISHED, VANISHED_NOTE, job_state,
};
pub use journal::{JournalRow, NewJournalRow, OwedStats};
pub use uploads::OpenUpload;
pub use volume::VolumeIteration;

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS stores (
        name TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        config TEXT NOT NULL,
        created_ms BIGINT NOT NULL
    )",
    "CREATE TABLE IF NOT EXISTS settings (
        name TEXT PRIMARY KEY,
        value TEXT NOT NULL
    )",
    "CREATE TABLE IF NOT EXISTS buckets (
        name TEXT PRIMARY KEY,
        policy TEXT NOT NULL,
        created_ms BIGINT NOT NULL
    )",
];

/// Puts a SQLite database in WAL mode. Switching a new database's journal mode needs an
/// exclusive lock that SQLite does not wait for: two processes opening a new database at once
/// (`ferry migrate` and a `ferry job show` watching it) made one fail with "database is
/// locked". Retried while another holds the lock, for as long as the busy timeout.
async fn wal(pool: &AnyPool) -> Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        match sqlx::query("PRAGMA journal_mode = WAL").execute(pool).await {
            Ok(_) => return Ok(()),
            Err(sqlx::Error::Database(e))
                if e.code()
                    .is_some_and(|c| c.parse::<i32>().is_ok_and(|c| c & 0xff == 5))
                    && std::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// A registered store: its kind and its kind-specific configuration (JSON, may hold
/// secrets: never print it whole).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StoreRecord {
    pub name: String,
    pub kind: String,
    pub config: serde_json::Value,
    pub created_ms: i64,
}

/// A handle on the state database.
#[derive(Clone, Debug)]
pub struct Db {
    pool: AnyPool,
    dialect: Dialect,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Db {
    /// Opens `url` (`postgres://…`, or `sqlite://PATH`) and creates the schema; a server
    /// that does not answer within [`CONNECT_WITHIN`] is said as such.
    pub async fn connect(url: &str) -> Result<Self> {
        sqlx::any::install_default_drivers();
        // Two crypto providers are built in (ring for sqlx, aws-lc-rs for the AWS SDK):
        // rustls panics choosing between them for `sslmode=verify-ca` (a probe). The
        // process's is aws-lc-rs; installed once, later calls are refused and ignored.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let dialect = if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Dialect::Postgres
        } else {
            Dialect::Sqlite
        };
        // One direct connection first: an unreachable server or a wrong password fails now,
        // with its own message, instead of after the pool's acquire timeout.
        {
            use sqlx::Connection;
            // Bounded: a listener that takes the connection and never speaks (another
            // service's port, a hung server) kept workers silent for ever (a probe).
            let conn = tokio::time::timeout(CONNECT_WITHIN, sqlx::AnyConnection::connect(url))
                .await
                .map_err(|_| Error::Silent {
                    url: redact_url(url),
                    secs: CONNECT_WITHIN.as_secs(),
                })?
                .map_err(|source| Error::Open {
                    url: redact_url(url),
                    source,
                })?;
            let _ = conn.close().await;
        }
        // No idle timeout and no lifetime: then sqlx starts no maintenance task. In sqlx
        // 0.8.6 that task can spin at 100% CPU for ever (its idle count can wrap below zero,
        // sqlx#3645), and a process whose runtime waits for it at exit never ends: a
        // `ferry job show` hung so. Connections are checked on acquire all the same.
        let pool = AnyPoolOptions::new()
            .max_connections(if dialect == Dialect::Sqlite { 1 } else { 8 })
            .idle_timeout(None)
            .max_lifetime(None)
            // Per connection, so a connection the pool opens again (after an error) waits
            // for locks and syncs like the first one did.
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    use sqlx::Executor;
                    match dialect {
                        Dialect::Sqlite => {
                            conn.execute("PRAGMA busy_timeout = 30000").await?;
                            conn.execute("PRAGMA synchronous = FULL").await?;
                        }
                        // PostgreSQL's notices ("relation … already exists, skipping" for
                        // every table at each start) are logged by sqlx: 15 lines of noise.
                        Dialect::Postgres => {
                            conn.execute("SET client_min_messages = warning").await?;
                        }
                    }
                    Ok(())
                })
            })
            // A connection left inside a transaction it cannot end is closed, not pooled:
            // a COMMIT that failed (a full disk) leaves SQLite's transaction rolled back
            // while sqlx still counts it open, and the drop's ROLLBACK then fails. Every
            // later `BEGIN IMMEDIATE` on it was refused ("non-zero transaction depth") until
            // a restart: a probe's migration stalled for good after space came back.
            .after_release(|conn, _| {
                Box::pin(async move {
                    use sqlx::Connection;
                    if !conn.is_in_transaction() {
                        return Ok(true);
                    }
                    // A dropped transaction's rollback may still be queued: let it run.
                    conn.ping().await?;
                    Ok(!conn.is_in_transaction())
                })
            })
            .connect(url)
            .await
            .map_err(|source| Error::Open {
                url: redact_url(url),
                source,
            })?;
        if dialect == Dialect::Sqlite {
            wal(&pool).await?;
        }
        let id = match dialect {
            Dialect::Sqlite => "INTEGER PRIMARY KEY AUTOINCREMENT",
            Dialect::Postgres => "BIGSERIAL PRIMARY KEY",
        };
        // One transaction; on PostgreSQL under an advisory lock, because concurrent
        // `CREATE TABLE IF NOT EXISTS` from two processes can still collide there.
        let mut tx = match dialect {
            Dialect::Sqlite => pool.begin_with("BEGIN IMMEDIATE").await?,
            Dialect::Postgres => pool.begin().await?,
        };
        if dialect == Dialect::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock(7304519)")
                .execute(&mut *tx)
                .await?;
        }
        for stmt in SCHEMA {
            sqlx::query(stmt).execute(&mut *tx).await?;
        }
        for stmt in journal::schema(id)
            .into_iter()
            .chain(jobs::schema(id))
            .chain(volume::schema(id))
            .chain(uploads::schema())
            .chain(backfills::schema())
        {
            sqlx::query(&stmt).execute(&mut *tx).await?;
        }
        // Columns added after a table was first made: a database an older Ferry created
        // gets them here (both dialects' `ADD COLUMN` keeps the rows, NULL in the new one).
        for (table, column, ty) in volume::ADDED_COLUMNS.iter().chain(journal::ADDED_COLUMNS) {
            if !has_column(&mut tx, dialect, table, column).await? {
                sqlx::query(&format!("ALTER TABLE {table} ADD COLUMN {column} {ty}"))
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| {
                        Error::Upgrade(format!(
                            "cannot add column {column} to table {table} (the database role \
                             needs to own the table, once): {e}"
                        ))
                    })?;
            }
        }
        tx.commit().await?;
        Ok(Self { pool, dialect })
    }

    /// Opens the embedded default: `DIR/state.db`.
    pub async fn open_embedded(dir: &Path) -> Result<Self> {
        let file = dir.join("state.db");
        // SQLite's own word for a folder it cannot write in is "unable to open database
        // file" (code 14), naming neither; the folder is asked first.
        if let Err(e) = rustix::fs::access(dir, rustix::fs::Access::WRITE_OK)
            && matches!(
                e,
                rustix::io::Errno::ROFS | rustix::io::Errno::ACCESS | rustix::io::Errno::PERM
            )
        {
            return Err(Error::NotWritable {
                file: file.display().to_string(),
                source: e.into(),
            });
        }
        private(&file);
        Self::connect(&format!("sqlite://{}?mode=rwc", file.display()))
            .await
            .map_err(|e| match e {
                Error::Query(source) | Error::Open { source, .. } => Error::Open {
                    url: file.display().to_string(),
                    source,
                },
                other => other,
            })
    }

    /// Begins a transaction that will write. On SQLite `BEGIN IMMEDIATE`: a deferred
    /// transaction that reads and then writes fails at once ("database is locked") when
    /// another process wrote meanwhile, since waiting could not help it; an immediate one
    /// takes the write lock first, waiting for it under the busy timeout.
    pub(crate) async fn write_tx(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        Ok(match self.dialect {
            Dialect::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Dialect::Postgres => self.pool.begin().await?,
        })
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    pub async fn add_store(&self, rec: &StoreRecord) -> Result<()> {
        let r = sqlx::query(
            "INSERT INTO stores (name, kind, config, created_ms) VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO NOTHING",
        )
        .bind(&rec.name)
        .bind(&rec.kind)
        .bind(rec.config.to_string())
        .bind(rec.created_ms)
        .execute(&self.pool)
        .await?;
        if r.rows_affected() == 0 {
            return Err(Error::StoreExists(rec.name.clone()));
        }
        Ok(())
    }

    pub async fn stores(&self) -> Result<Vec<StoreRecord>> {
        let rows = sqlx::query("SELECT name, kind, config, created_ms FROM stores ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(store_record).collect()
    }

    pub async fn store(&self, name: &str) -> Result<StoreRecord> {
        let row = sqlx::query("SELECT name, kind, config, created_ms FROM stores WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        match row {
            Some(r) => store_record(&r),
            None => Err(Error::NoSuchStore(name.to_owned())),
        }
    }

    /// Replaces a store's configuration (the built-in store's path, when the data directory
    /// moved).
    pub async fn set_store_config(&self, name: &str, config: &serde_json::Value) -> Result<()> {
        let r = sqlx::query("UPDATE stores SET config = $1 WHERE name = $2")
            .bind(config.to_string())
            .bind(name)
            .execute(&self.pool)
            .await?;
        if r.rows_affected() == 0 {
            return Err(Error::NoSuchStore(name.to_owned()));
        }
        Ok(())
    }

    pub async fn remove_store(&self, name: &str) -> Result<()> {
        let r = sqlx::query("DELETE FROM stores WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await?;
        if r.rows_affected() == 0 {
            return Err(Error::NoSuchStore(name.to_owned()));
        }
        Ok(())
    }

    pub async fn setting(&self, name: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT value FROM settings WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(r) => Some(r.try_get::<String, _>("value")?),
            None => None,
        })
    }

    pub async fn set_setting(&self, name: &str, value: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        )
        .bind(name)
        .bind(value)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn store_record(r: &sqlx::any::AnyRow) -> Result<StoreRecord> {
    let config: String = r.try_get("config")?;
    Ok(StoreRecord {
        name: r.try_get("name")?,
        kind: r.try_get("kind")?,
        config: serde_json::from_str(&config).map_err(|e| Error::Corrupt(e.to_string()))?,
        created_ms: r.try_get("created_ms")?,
    })
}

/// Hides a password in a database URL for messages: in its user info (`u:pw@`) and in a
/// `password=` query parameter.
pub fn redact_url(url: &str) -> String {
    let (head, query) = match url.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (url, None),
    };
    let mut out = match (head.find("://"), head.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &head[s + 3..at];
            match creds.find(':') {
                Some(c) => format!("{}{}:***{}", &head[..s + 3], &creds[..c], &head[at..]),
                None => head.to_owned(),
            }
        }
        _ => head.to_owned(),
    };
    if let Some(q) = query {
        let params: Vec<String> = q
            .split('&')
            .map(|p| match p.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                _ => p.to_owned(),
            })
            .collect();
        out.push('?');
        out.push_str(&params.join("&"));
    }
    out
}

/// Checks the form of a `--db` URL before anything connects with it: a PostgreSQL
/// (`postgres://`, `postgresql://`) or SQLite (`sqlite:`) URL, with a numeric port. The
/// message names the URL without its password.
pub fn check_url(url: &str) -> std::result::Result<(), String> {
    let shown = redact_url(url);
    if url.trim().is_empty() {
        return Err("--db is empty: give a postgres://… URL, or leave it out for SQLite".into());
    }
    if url.starts_with("sqlite:") {
        return Ok(());
    }
    let Some(rest) = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))
    else {
        return Err(format!(
            "--db {shown}: not a PostgreSQL URL (postgres://user@host/db) or a SQLite one (sqlite://file)"
        ));
    };
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if let Some((_, port)) = host_port.rsplit_once(':')
        && !host_port.ends_with(']')
        && port.parse::<u16>().is_err()
    {
        return Err(format!("--db {shown}: the port {port:?} is not a number"));
    }
    Ok(())
}

/// Makes the state database `file` (and its WAL and shared-memory files, which SQLite creates
/// with the database's mode) readable by its owner only, creating it so if it is missing: it
/// holds the secret keys of registered S3 stores, and a data directory made by hand (0755)
/// would otherwise leave it readable by every local user. Best effort: what fails here,
/// opening the database reports.
fn private(file: &Path) {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    if !file.exists() {
        let _ = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(file);
    }
    let beside = |suffix: &str| {
        let mut name = file.as_os_str().to_owned();
        name.push(suffix);
        std::path::PathBuf::from(name)
    };
    let (wal, shm) = (beside("-wal"), beside("-shm"));
    for f in [file, wal.as_path(), shm.as_path()] {
        if let Ok(m) = std::fs::metadata(f)
            && m.permissions().mode() & 0o077 != 0
            && let Err(e) = std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o600))
        {
            tracing::warn!(file = %f.display(), error = %e, "cannot make the state database private");
        }
    }
}

/// Whether `table` has `column` (in the current schema, on PostgreSQL).
async fn has_column(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    dialect: Dialect,
    table: &str,
    column: &str,
) -> Result<bool> {
    let sql = match dialect {
        Dialect::Sqlite => "SELECT COUNT(*) AS n FROM pragma_table_info($1) WHERE name = $2",
        Dialect::Postgres => {
            "SELECT COUNT(*) AS n FROM information_schema.columns
             WHERE table_schema = current_schema() AND table_name = $1 AND column_name = $2"
        }
    };
    let row = sqlx::query(sql)
        .bind(table)
        .bind(column)
        .fetch_one(&mut **tx)
        .await?;
    Ok(row.try_get::<i64, _>("n")? > 0)
}

#[cfg(test)]
mod tests {
    /// A new database another process writes while this one opens it (`ferry migrate` and
    /// a `ferry job show` watching it both creating the schema): the switch to WAL reads and
    /// then needs the write lock, which SQLite does not wait for then; the open failed with
    /// "database is locked" (found by a CI run). It waits for the lock now.
    #[tokio::test]
    async fn a_new_database_written_by_another_process_still_opens() {
        let dir = tempfile::tempdir().expect("tmp");
        let reader = rusqlite::Connection::open(dir.path().join("state.db")).expect("open");
        reader
            .execute_batch("CREATE TABLE t (x); BEGIN IMMEDIATE; INSERT INTO t VALUES (1);")
            .expect("a write transaction");
        let release = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(300));
            reader.execute_batch("COMMIT").expect("commit");
        });
        let db = super::Db::open_embedded(dir.path()).await.expect("opens");
        release.join().expect("reader");
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&db.pool)
            .await
            .expect("mode");
        assert_eq!(mode, "wal");
        db.set_setting("k", "v").await.expect("a write");
    }

    #[test]
    fn redacts() {
        assert_eq!(
            super::redact_url("postgres://u:pw@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(super::redact_url("sqlite://x.db"), "sqlite://x.db");
        assert_eq!(
            super::redact_url("postgres://u@h/db?sslmode=require&Password=pw&x=1"),
            "postgres://u@h/db?sslmode=require&Password=***&x=1"
        );
    }

    #[test]
    fn checks_url_forms() {
        for ok in [
            "postgres://u:pw@h:5432/db",
            "postgresql://h/db?password=pw",
            "postgres://u@[::1]:5432/db",
            "sqlite://x.db",
        ] {
            assert_eq!(super::check_url(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "notaurl",
            "mysql://u:pw@h/db",
            "postgres://u:pw@h:notaport/db",
        ] {
            let e = super::check_url(bad).expect_err(bad);
            assert!(!e.contains("pw@"), "{bad}: the password is shown: {e}");
        }
    }
}
