//! Job controls (`ferry job pause|cancel|retry-dead`, the admin API's) on the state
//! database, against workers that died or other operators acting at the same time.

use std::time::Duration;

use ferry::jobs::control::{self, Error};
use ferry::state::{Db, NewTask, now_ms};

/// A running job whose listing is complete, with `n` tasks.
async fn job(db: &Db, n: usize) -> i64 {
    let id = db
        .create_job(
            "migrate",
            &serde_json::json!({}),
            &uuid::Uuid::new_v4().to_string(),
            now_ms(),
        )
        .await
        .expect("job");
    let now = now_ms();
    assert!(
        db.take_lister(id, "L", now, now + 10_000)
            .await
            .expect("lister")
    );
    let tasks: Vec<NewTask> = (0..n)
        .map(|i| NewTask {
            key: format!("k{i}"),
            action: "copy",
            size: 1,
            etag: "e".into(),
        })
        .collect();
    assert!(
        db.add_listing_page(id, "L", &tasks, Some("z"), 0, true)
            .await
            .expect("page")
    );
    id
}

async fn db() -> (tempfile::TempDir, Db) {
    let dir = tempfile::tempdir().expect("tmp");
    let db = Db::open_embedded(dir.path()).await.expect("db");
    (dir, db)
}

/// Probe 04: a worker killed with tasks claimed leaves them "running" until their lease
/// runs out; pause hands them back then instead of waiting two minutes for a claim.
#[tokio::test]
async fn pause_does_not_wait_for_the_tasks_of_a_killed_worker() {
    let (_dir, db) = db().await;
    let id = job(&db, 3).await;
    let now = now_ms();
    // The killed worker's lease ends in half a second.
    let held = db
        .claim_tasks(id, "gone:1:x", now, now + 500, 2)
        .await
        .expect("claim");
    assert_eq!(held.len(), 2);
    let parts = tokio::time::timeout(Duration::from_secs(10), control::pause(&db, id))
        .await
        .expect("pause returns once the dead worker's lease ran out")
        .expect("pause");
    assert_eq!(parts, 0);
    let c = db.task_counts(id).await.expect("counts");
    assert_eq!((c.pending, c.running), (3, 0));
    // Handed back as a claim of an expired lease would: checked against the destination
    // before they are copied again.
    control::resume(&db, id).await.expect("resume");
    let now = now_ms();
    let again = db
        .claim_tasks(id, "w", now, now + 10_000, 3)
        .await
        .expect("claim");
    assert_eq!(again.iter().filter(|t| t.interrupted).count(), 2);
}

/// Probe 13: a job resumed while its pause waits is not reported paused.
#[tokio::test]
async fn pause_reports_a_job_resumed_meanwhile() {
    let (_dir, db) = db().await;
    let id = job(&db, 1).await;
    let now = now_ms();
    // A live worker holds the task (a frozen one, say), so the pause waits.
    db.claim_tasks(id, "w", now, now + 60_000, 1)
        .await
        .expect("claim");
    let pause = tokio::spawn({
        let db = db.clone();
        async move { control::pause(&db, id).await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    control::resume(&db, id).await.expect("resume");
    let out = tokio::time::timeout(Duration::from_secs(10), pause)
        .await
        .expect("pause returns once the job is resumed")
        .expect("join");
    match out {
        Err(Error::Conflict { state, .. }) => assert_eq!(state, "running"),
        other => panic!("pause reported {other:?} for a running job"),
    }
}

/// Probes 06 and 11: a job cancelled while no runner is around (its workers were stopped
/// while it was paused, or killed) has its recorded multipart uploads aborted by the cancel
/// itself, and the tasks of its dead workers do not stay "running".
#[tokio::test]
async fn cancel_without_a_runner_aborts_the_uploads_and_frees_the_tasks() {
    use ferry::store::fs::FsStore;
    use ferry::store::{BucketName, ObjectKey, PutOptions, Store, UploadsQuery};
    let tmp = tempfile::tempdir().expect("tmp");
    std::fs::create_dir_all(tmp.path().join("in/srcb")).expect("src");
    std::fs::create_dir_all(tmp.path().join("out/dstb")).expect("dst");
    let db = Db::open_embedded(tmp.path()).await.expect("db");
    let spec = super::dir_spec(
        &tmp.path().join("in/srcb"),
        &tmp.path().join("out/dstb"),
        5 << 20,
        8 << 20,
    );
    let id = db
        .create_job(
            "migrate",
            &serde_json::to_value(&spec).expect("spec"),
            "fp",
            now_ms(),
        )
        .await
        .expect("job");
    let now = now_ms();
    assert!(
        db.take_lister(id, "L", now, now + 10_000)
            .await
            .expect("lister")
    );
    let tasks: Vec<NewTask> = ["big0", "big1"]
        .iter()
        .map(|k| NewTask {
            key: (*k).into(),
            action: "copy",
            size: 20 << 20,
            etag: "e".into(),
        })
        .collect();
    assert!(
        db.add_listing_page(id, "L", &tasks, Some("z"), 0, true)
            .await
            .expect("page")
    );
    // Two uploads started on the destination and recorded: one by a worker that stopped
    // (its task back in the queue), one by a worker killed with its task claimed.
    let dst = FsStore::open("dst", &tmp.path().join("out"))
        .await
        .expect("dst store");
    let bucket = BucketName::parse("dstb").expect("bucket");
    let claimed = db
        .claim_tasks(id, "gone:1:x", now, now + 300, 2)
        .await
        .expect("claim");
    for t in &claimed {
        let key = ObjectKey::parse(&t.key).expect("key");
        let up = dst
            .create_multipart(&bucket, &key, PutOptions::default())
            .await
            .expect("upload");
        db.set_task_upload(t.id, Some(&up)).await.expect("record");
    }
    db.release_tasks("gone:1:x", &[claimed[0].id])
        .await
        .expect("release");
    let registry = ferry::registry::Registry::new(db.clone(), &tmp.path().join("data"));
    // A cancel that cannot reach the destination (held here: a directory is open in one
    // process at a time; elsewhere, credentials missing) leaves the uploads recorded...
    let c = tokio::time::timeout(Duration::from_secs(20), control::cancel(&registry, id))
        .await
        .expect("cancel returns")
        .expect("cancel");
    assert_eq!(c.aborted, 0);
    assert!(c.not_aborted.is_some(), "{c:?}");
    assert_eq!(db.job(id).await.expect("job").state, "cancelled");
    // ...and cancelling again aborts them (a probe found it refused: "already ended", with
    // no other way to remove them).
    drop(dst);
    let c = tokio::time::timeout(Duration::from_secs(20), control::cancel(&registry, id))
        .await
        .expect("cancel returns")
        .expect("cancel");
    assert_eq!((c.aborted, c.not_aborted), (2, None));
    // With nothing left to abort, a cancelled job is ended.
    assert!(matches!(
        control::cancel(&registry, id).await,
        Err(Error::Conflict { .. })
    ));
    drop(registry);
    let dst = FsStore::open("dst", &tmp.path().join("out"))
        .await
        .expect("dst store");
    let left = dst
        .list_uploads(&bucket, &UploadsQuery::default())
        .await
        .expect("uploads");
    assert!(left.uploads.is_empty(), "{:?}", left.uploads);
    assert!(db.job_uploads(id).await.expect("recorded").is_empty());
    let c = db.task_counts(id).await.expect("counts");
    assert_eq!(c.running, 0, "a cancelled job shows tasks running");
    assert_eq!(db.job(id).await.expect("job").state, "cancelled");
}

/// Probe 12: retry-dead on a cancelled job is refused and its dead letters stay listed
/// (nothing would ever run them).
#[tokio::test]
async fn retry_dead_of_a_cancelled_job_is_refused() {
    let (_dir, db) = db().await;
    let id = job(&db, 1).await;
    let now = now_ms();
    let t = db
        .claim_tasks(id, "w", now, now + 60_000, 1)
        .await
        .expect("claim");
    db.fail_task(id, "w", t[0].id, "refused", None)
        .await
        .expect("dead");
    assert!(
        db.set_job_state(id, &["running"], "cancelled", now)
            .await
            .expect("cancel")
    );
    match control::retry_dead(&db, id).await {
        Err(Error::Conflict { state, .. }) => assert_eq!(state, "cancelled"),
        other => panic!("retry-dead of a cancelled job: {other:?}"),
    }
    // Nor does the state layer requeue them when asked directly.
    assert_eq!(db.retry_dead(id).await.expect("retry"), 0);
    let rec = db.job(id).await.expect("job");
    assert_eq!((rec.state.as_str(), rec.dead), ("cancelled", 1));
    assert_eq!(db.task_counts(id).await.expect("counts").dead, 1);
}
