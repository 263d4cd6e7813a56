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
