//! The same job submitted from several places at once is one job: a probe sent the same
//! `ferry migrate --detach` six times at once and got up to three jobs, each copying every
//! object. Both dialects.

use ferry::state::Db;

async fn one_job_for_one_command(db: &Db, fingerprint: &str) {
    let spec = serde_json::json!({ "probe": fingerprint });
    let tries = (0..8).map(|_| db.find_or_create_job("migrate", &spec, fingerprint, 1));
    let got: Vec<(i64, bool)> = futures::future::try_join_all(tries).await.expect("submit");
    let created = got.iter().filter(|(_, c)| *c).count();
    assert_eq!(created, 1, "{got:?}");
    assert!(got.iter().all(|(id, _)| *id == got[0].0), "{got:?}");
    // Once it has ended, the same command makes a new job.
    let ended = db
        .set_job_state(got[0].0, &["running"], "done", 2)
        .await
        .expect("finish it");
    assert!(ended);
    let (next, created) = db
        .find_or_create_job("migrate", &spec, fingerprint, 3)
        .await
        .expect("submit again");
    assert!(created && next != got[0].0);
}

#[tokio::test]
async fn sqlite_makes_one_job_of_simultaneous_submissions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open_embedded(dir.path()).await.expect("open");
    one_job_for_one_command(&db, "same-command").await;
}

#[tokio::test]
async fn postgres_makes_one_job_of_simultaneous_submissions() {
    let db = Db::connect(&super::pg_url()).await.expect("connect");
    let fp = format!(
        "same-command-{}-{}",
        std::process::id(),
        ferry::state::now_ms()
    );
    one_job_for_one_command(&db, &fp).await;
}
