//! A state database an older Ferry made: opening it adds the columns later versions keep
//! (here `volume_iterations.incomplete`), keeps its rows, and the new column works, on
//! both dialects. Without it an upgrade failed every `ferry volume` record ("no such column").

use ferry::state::{Db, VolumeIteration};
use sqlx::Connection;

fn iteration(volume: &str, started_ms: i64, incomplete: Option<&str>) -> VolumeIteration {
    VolumeIteration {
        volume: volume.into(),
        role: "source".into(),
        started_ms,
        ended_ms: started_ms + 10,
        snapshot: Some("20261202T000000.000Z".into()),
        consistent: true,
        incomplete: incomplete.map(Into::into),
        ..Default::default()
    }
}

/// On a database whose column was just taken away: reopens it (the upgrade), records a row
/// with and one without the new column, and reads both back.
async fn upgrade<F, Fut>(open: F, volume: &str)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Db>,
{
    let db = open().await;
    let old = iteration(volume, 1_000, None);
    db.record_volume_iteration(&old).await.expect("record");
    let newer = iteration(volume, 2_000, Some("1 path(s) could not be read"));
    db.record_volume_iteration(&newer)
        .await
        .expect("record on the upgraded database");
    let back = db.volume_iterations(volume, 10).await.expect("list");
    assert_eq!(back, vec![newer, old]);
    db.close().await;
}

#[tokio::test]
async fn an_older_sqlite_database_gains_the_new_columns() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("state.db");
    let db = Db::open_embedded(dir.path()).await.expect("open");
    db.record_volume_iteration(&iteration("/srv/a", 1_000, None))
        .await
        .expect("record");
    db.close().await;
    let url = format!("sqlite://{}", file.display());
    let mut c = sqlx::SqliteConnection::connect(&url).await.expect("sqlite");
    sqlx::query("ALTER TABLE volume_iterations DROP COLUMN incomplete")
        .execute(&mut c)
        .await
        .expect("drop the column");
    c.close().await.expect("close");
    let open = || async { Db::open_embedded(dir.path()).await.expect("reopen") };
    upgrade(open, "/srv/a-later").await;
    let db = open().await;
    assert_eq!(
        db.volume_iterations("/srv/a", 10).await.expect("list"),
        vec![iteration("/srv/a", 1_000, None)],
        "the rows made before the upgrade stay"
    );
}

#[tokio::test]
async fn an_older_postgres_database_gains_the_new_columns() {
    let base = super::pg_url();
    // A schema of its own, so the shared test database's tables stay as they are.
    let schema = format!("upgrade_{}", std::process::id());
    let mut c = sqlx::PgConnection::connect(&base).await.expect("postgres");
    sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .execute(&mut c)
        .await
        .expect("drop schema");
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&mut c)
        .await
        .expect("create schema");
    let sep = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{sep}options=-c%20search_path%3D{schema}");
    let db = Db::connect(&url).await.expect("connect");
    db.record_volume_iteration(&iteration("/srv/p", 1_000, None))
        .await
        .expect("record");
    db.close().await;
    sqlx::query(&format!(
        "ALTER TABLE {schema}.volume_iterations DROP COLUMN incomplete"
    ))
    .execute(&mut c)
    .await
    .expect("drop the column");
    let open = || async { Db::connect(&url).await.expect("reconnect") };
    upgrade(open, "/srv/p-later").await;
    let db = open().await;
    assert_eq!(
        db.volume_iterations("/srv/p", 10).await.expect("list"),
        vec![iteration("/srv/p", 1_000, None)],
        "the rows made before the upgrade stay"
    );
    db.close().await;
    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(&mut c)
        .await
        .expect("drop schema");
}
