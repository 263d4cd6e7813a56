//! The state layer on both dialects: SQLite (embedded default) and PostgreSQL (the local
//! server `scripts/test` starts; its URL arrives in `FERRY_TEST_PG_URL`): stores, settings,
//! bucket policies, the journal, and jobs with their leases (concurrent claims included).

use ferry::state::{
    Backfill, BucketRecord, Budget, Db, Dialect, Error, NewJournalRow, NewTask, OpenUpload,
    PartRow, StoreRecord,
};

mod submit;
mod upgrade;

fn pg_url() -> String {
    std::env::var("FERRY_TEST_PG_URL")
        .expect("FERRY_TEST_PG_URL is not set: run ./scripts/test, which starts PostgreSQL")
}

async fn exercise(db: &Db) {
    let name = format!("s-{}", uuid::Uuid::new_v4().simple());
    let rec = StoreRecord {
        name: name.clone(),
        kind: "fs".into(),
        config: serde_json::json!({ "path": "/srv/x" }),
        created_ms: 1_700_000_000_000,
    };
    db.add_store(&rec).await.expect("add");
    assert!(matches!(db.add_store(&rec).await, Err(Error::StoreExists(n)) if n == name));
    assert_eq!(db.store(&name).await.expect("get"), rec);
    assert!(db.stores().await.expect("list").contains(&rec));
    db.remove_store(&name).await.expect("remove");
    assert!(matches!(db.store(&name).await, Err(Error::NoSuchStore(_))));
    assert!(matches!(
        db.remove_store(&name).await,
        Err(Error::NoSuchStore(_))
    ));
    let key = format!("k-{name}");
    assert_eq!(db.setting(&key).await.expect("setting"), None);
    db.set_setting(&key, "one").await.expect("set");
    db.set_setting(&key, "two").await.expect("overwrite");
    assert_eq!(
        db.setting(&key).await.expect("setting").as_deref(),
        Some("two")
    );
    buckets_and_journal(db, &name).await;
    jobs_and_tasks(db, &name).await;
    concurrent_claims(db, &name).await;
    claims_within_a_budget(db, &name).await;
    retry_dead_against_the_end_of_a_job(db, &name).await;
    deletes_wait_for_the_whole_listing(db, &name).await;
    volume_iterations(db, &name).await;
    runners_tell_a_stalled_job(db, &name).await;
    open_uploads(db, &name).await;
    backfills(db, &name).await;
}

/// Backfills in progress: recorded from the start, their cursor moved, listed per bucket or
/// all, forgotten one by one or with their bucket.
async fn backfills(db: &Db, unique: &str) {
    let bucket = format!("bf-{unique}");
    let row = |target: &str| Backfill {
        bucket: bucket.clone(),
        target: target.into(),
        after: None,
        delete_extra: target == "b:x",
        created_ms: 1,
    };
    db.begin_backfills(&[row("a:x"), row("b:x")])
        .await
        .expect("begin");
    db.backfill_progress(&bucket, "a:x", "k0999")
        .await
        .expect("progress");
    let mine = db.backfills(Some(&bucket)).await.expect("list");
    let mut a = row("a:x");
    a.after = Some("k0999".into());
    assert_eq!(mine, vec![a.clone(), row("b:x")]);
    assert!(db.backfills(None).await.expect("all").contains(&a));
    // Begun again (a target added again): from the start.
    db.begin_backfills(&[row("a:x")]).await.expect("again");
    assert_eq!(
        db.backfills(Some(&bucket)).await.expect("list"),
        vec![row("a:x"), row("b:x")]
    );
    db.end_backfill(&bucket, "a:x").await.expect("end");
    assert_eq!(
        db.backfills(Some(&bucket)).await.expect("list"),
        vec![row("b:x")]
    );
    db.drop_backfills(&bucket).await.expect("drop");
    assert!(db.backfills(Some(&bucket)).await.expect("list").is_empty());
}

/// A running job whose process stopped saying it is alive reads as unattended; a heartbeat,
/// a paused job, or a process that ended cleanly (gone, then a fresh one) read as they are.
async fn runners_tell_a_stalled_job(db: &Db, unique: &str) {
    use ferry::state::UNATTENDED_MS;
    let now = ferry::state::now_ms();
    let long_ago = now - 10 * UNATTENDED_MS;
    let fp = format!("fp-runners-{unique}");
    let id = db
        .create_job(
            "migrate",
            &serde_json::json!({ "r": unique }),
            &fp,
            long_ago,
        )
        .await
        .expect("create");
    let rec = db.job(id).await.expect("job");
    assert!(rec.unattended, "a job nobody ever ran reads as attended");
    assert_eq!(rec.runner_seen_ms, None);
    db.runner_alive(id, "h:1:a", long_ago)
        .await
        .expect("old heartbeat");
    assert!(db.job(id).await.expect("job").unattended);
    db.runner_alive(id, "h:2:b", now).await.expect("heartbeat");
    let rec = db.job(id).await.expect("job");
    assert!(
        !rec.unattended,
        "a job with a live heartbeat reads as stalled"
    );
    assert_eq!(rec.runner_seen_ms, Some(now));
    let listed = db.jobs().await.expect("jobs");
    let row = listed.iter().find(|j| j.id == id).expect("listed");
    assert!(!row.unattended && row.runner_seen_ms == Some(now));
    let runners = db.job_runners(id).await.expect("runners");
    assert_eq!(
        runners
            .iter()
            .map(|r| (r.owner.as_str(), r.seen_ms))
            .collect::<Vec<_>>(),
        [("h:2:b", now), ("h:1:a", long_ago)]
    );
    // A day-old runner is forgotten at the next heartbeat.
    db.runner_alive(id, "h:3:c", now - 2 * 86_400_000)
        .await
        .expect("ancient");
    db.runner_alive(id, "h:2:b", now).await.expect("heartbeat");
    assert_eq!(db.job_runners(id).await.expect("runners").len(), 2);
    db.runner_gone(id, "h:2:b").await.expect("gone");
    assert!(db.job(id).await.expect("job").unattended);
    assert!(
        db.set_job_state(id, &["running"], "paused", long_ago)
            .await
            .expect("pause")
    );
    assert!(
        !db.job(id).await.expect("job").unattended,
        "a paused job reads as stalled"
    );
}

/// A deletion is not claimable until the whole source listing has been recorded: a listing
/// that failed after its first page had already removed destination keys it had not seen
/// in the source yet.
async fn deletes_wait_for_the_whole_listing(db: &Db, unique: &str) {
    let fp = format!("fp-held-{unique}");
    let id = db
        .create_job("migrate", &serde_json::json!({ "held": unique }), &fp, 1)
        .await
        .expect("create");
    let now = ferry::state::now_ms();
    assert!(
        db.take_lister(id, "L", now, now + 10_000)
            .await
            .expect("lease")
    );
    let gone = NewTask {
        key: "gone".into(),
        action: "delete",
        size: 0,
        etag: String::new(),
    };
    let page = [task("copied", 5), gone];
    assert!(
        db.add_listing_page(id, "L", &page, Some("m"), 0, false)
            .await
            .expect("page")
    );
    assert_eq!(
        claim_keys(db, id, now).await,
        ["copied"],
        "a deletion ran before the listing ended"
    );
    assert_eq!(db.task_counts(id).await.expect("counts").pending, 1);
    assert!(
        !db.finish_job(id, now).await.expect("finish"),
        "a job ended with its listing unfinished"
    );
    assert!(
        db.add_listing_page(id, "L", &[], None, 0, true)
            .await
            .expect("last page")
    );
    assert_eq!(claim_keys(db, id, now).await, ["gone"]);
}

/// The keys of the tasks worker `W` can claim now (at most 10).
async fn claim_keys(db: &Db, id: i64, now: i64) -> Vec<String> {
    db.claim_tasks(id, "W", now, now + 10_000, 10)
        .await
        .expect("claim")
        .into_iter()
        .map(|t| t.key)
        .collect()
}

/// `ferry volume` iteration history: newest first, failures and snapshots kept as written.
async fn volume_iterations(db: &Db, unique: &str) {
    let volume = format!("/srv/{unique}");
    let ok = ferry::state::VolumeIteration {
        volume: volume.clone(),
        role: "source".into(),
        started_ms: 1_000,
        ended_ms: 2_500,
        snapshot: Some("20261129T000000.000Z".into()),
        files_scanned: 100_000,
        bytes_scanned: 1 << 32,
        files_sent: 1_000,
        bytes_sent: 4_096_000,
        bytes_reused: 7,
        files_deleted: 3,
        wire_bytes: 3_000_000,
        consistent: true,
        error: None,
        incomplete: Some("2 path(s) could not be read (first: a/b)".into()),
    };
    let failed = ferry::state::VolumeIteration {
        started_ms: 3_000,
        ended_ms: 3_100,
        snapshot: None,
        consistent: false,
        error: Some("the connection to 10.0.0.2:7070 broke".into()),
        incomplete: None,
        ..ok.clone()
    };
    db.record_volume_iteration(&ok).await.expect("record");
    db.record_volume_iteration(&failed).await.expect("record");
    let back = db.volume_iterations(&volume, 10).await.expect("list");
    assert_eq!(back, vec![failed.clone(), ok.clone()]);
    assert_eq!(
        db.volume_iterations(&volume, 1).await.expect("list"),
        vec![failed]
    );
    assert!(
        db.volume_iterations("/nowhere", 10)
            .await
            .expect("list")
            .is_empty()
    );
}

fn task(key: &str, size: i64) -> NewTask {
    NewTask {
        key: key.into(),
        action: "copy",
        size,
        etag: format!("e-{key}"),
    }
}

/// Jobs, the listing lease, task leases, retries, dead letters and recorded parts (issue 5).
async fn jobs_and_tasks(db: &Db, unique: &str) {
    let fp = format!("fp-{unique}");
    let spec = serde_json::json!({ "test": unique });
    let id = db
        .create_job("migrate", &spec, &fp, 1)
        .await
        .expect("create");
    assert_eq!(
        db.unfinished_job(&fp).await.expect("find").map(|j| j.id),
        Some(id)
    );
    let now = ferry::state::now_ms();
    assert!(
        db.take_lister(id, "A", now, now + 10_000)
            .await
            .expect("lease")
    );
    assert!(
        !db.take_lister(id, "B", now, now + 10_000)
            .await
            .expect("held")
    );
    let tasks = [task("a", 10), task("b", 20), task("c", 30)];
    assert!(
        db.add_listing_page(id, "A", &tasks, Some("c"), 2, false)
            .await
            .expect("page")
    );
    assert!(
        !db.add_listing_page(id, "B", &tasks, Some("c"), 2, false)
            .await
            .expect("not B's")
    );
    assert!(
        db.add_listing_page(id, "A", &[], None, 0, true)
            .await
            .expect("last page")
    );
    let j = db.job(id).await.expect("job");
    assert_eq!(
        (j.listed, j.listed_bytes, j.unchanged, j.listing_done),
        (3, 60, 2, true)
    );
    assert_eq!(j.listed_after.as_deref(), Some("c"));

    let mine = db
        .claim_tasks(id, "A", now, now + 10_000, 2)
        .await
        .expect("claim");
    assert_eq!(
        mine.iter().map(|t| t.key.as_str()).collect::<Vec<_>>(),
        ["a", "b"]
    );
    let theirs = db
        .claim_tasks(id, "B", now, now + 10_000, 5)
        .await
        .expect("claim");
    assert_eq!(theirs.len(), 1);
    assert!(
        db.claim_tasks(id, "C", now, now + 10_000, 5)
            .await
            .expect("none")
            .is_empty()
    );
    let (a, b, c) = (mine[0].id, mine[1].id, theirs[0].id);

    db.set_task_upload(a, Some("u1")).await.expect("upload");
    let part = PartRow {
        part_number: 1,
        etag: "p1".into(),
        size: 5,
    };
    db.add_task_part(a, &part).await.expect("part");
    assert_eq!(db.task_parts(a).await.expect("parts"), vec![part]);
    let open = db.open_tasks(id, 10).await.expect("open");
    let ta = open.iter().find(|t| t.key == "a").expect("a is open");
    assert_eq!(
        (ta.parts_done, ta.bytes_done, ta.upload_id.as_deref()),
        (1, 5, Some("u1"))
    );

    db.finish_tasks(id, "A", &[(a, 10)]).await.expect("finish");
    db.finish_tasks(id, "A", &[(a, 10)]).await.expect("twice");
    db.finish_tasks(id, "B", &[(b, 20)])
        .await
        .expect("not B's task");
    let j = db.job(id).await.expect("job");
    assert_eq!((j.done, j.done_bytes), (1, 10));
    assert!(db.task_parts(a).await.expect("parts").is_empty());

    db.fail_task(id, "A", b, "boom", Some(now + 100_000))
        .await
        .expect("retry later");
    db.fail_task(id, "B", c, "refused", None)
        .await
        .expect("dead");
    let counts = db.task_counts(id).await.expect("counts");
    assert_eq!((counts.pending, counts.running, counts.dead), (1, 0, 1));
    assert_eq!(db.job(id).await.expect("job").dead, 1);
    assert!(
        db.claim_tasks(id, "A", now, now + 10_000, 5)
            .await
            .expect("backoff")
            .is_empty()
    );
    let dead = db.open_tasks(id, 10).await.expect("open");
    assert!(
        dead.iter()
            .any(|t| t.key == "c" && t.state == "dead" && t.error.as_deref() == Some("refused"))
    );
    let page = db.dead_tasks(id, 0, 10).await.expect("dead letters");
    assert_eq!(page.len(), 1);
    assert_eq!(
        (
            page[0].key.as_str(),
            page[0].attempts,
            page[0].error.as_deref()
        ),
        ("c", 1, Some("refused"))
    );
    assert!(
        db.dead_tasks(id, page[0].id, 10)
            .await
            .expect("after the last")
            .is_empty()
    );
    assert_eq!(db.retry_dead(id).await.expect("retry"), 1);
    assert_eq!(db.job(id).await.expect("job").dead, 0);
    assert!(db.dead_tasks(id, 0, 10).await.expect("none").is_empty());

    // A lease that runs out: the tasks go to the next claimer, marked interrupted.
    let later = now + 1_000_000;
    let got = db
        .claim_tasks(id, "A", later, later + 10_000, 5)
        .await
        .expect("claim");
    assert_eq!(got.len(), 2);
    assert!(got.iter().all(|t| !t.interrupted));
    let stolen = db
        .claim_tasks(id, "B", later + 20_000, later + 30_000, 5)
        .await
        .expect("steal");
    assert_eq!(stolen.len(), 2);
    assert!(stolen.iter().all(|t| t.interrupted));
    assert!(
        db.job_owners(id)
            .await
            .expect("owners")
            .contains(&"B".to_owned())
    );
    assert_eq!(db.reclaim_owner(id, "B").await.expect("reclaim"), 2);
    assert_eq!(db.task_counts(id).await.expect("counts").pending, 2);
    db.release_tasks("B", &[b]).await.expect("release nothing");

    assert!(
        db.set_job_state(id, &["running"], "cancelled", now)
            .await
            .expect("cancel")
    );
    assert!(
        !db.set_job_state(id, &["running"], "paused", now)
            .await
            .expect("not running")
    );
    assert_eq!(db.unfinished_job(&fp).await.expect("find"), None);
}

/// A job (fingerprint `fp`) whose listing is complete with `tasks`; its id and the time
/// its lister started.
async fn listed_job(db: &Db, fp: &str, tasks: &[NewTask]) -> (i64, i64) {
    let id = db
        .create_job("migrate", &serde_json::json!({}), fp, 1)
        .await
        .expect("create");
    let now = ferry::state::now_ms();
    assert!(
        db.take_lister(id, "L", now, now + 10_000)
            .await
            .expect("lease")
    );
    let last = tasks.last().map(|t| t.key.clone());
    assert!(
        db.add_listing_page(id, "L", tasks, last.as_deref(), 0, true)
            .await
            .expect("page")
    );
    (id, now)
}

/// Claimers racing for one job's tasks never get the same task twice.
async fn concurrent_claims(db: &Db, unique: &str) {
    let tasks: Vec<NewTask> = (0..300).map(|i| task(&format!("k{i:04}"), 1)).collect();
    let (id, now) = listed_job(db, &format!("race-{unique}"), &tasks).await;
    let mut handles = Vec::new();
    for w in 0..4 {
        let db = db.clone();
        handles.push(tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                let c = db
                    .claim_tasks(id, &format!("w{w}"), now, now + 60_000, 7)
                    .await
                    .expect("claim");
                if c.is_empty() {
                    return got;
                }
                got.extend(c.into_iter().map(|t| t.id));
            }
        }));
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.expect("join"));
    }
    let n = all.len();
    all.sort_unstable();
    all.dedup();
    assert_eq!((n, all.len()), (300, 300), "a task was claimed twice");
    db.set_job_state(id, &["running"], "cancelled", now)
        .await
        .expect("cancel");
}

/// A claim within a byte budget takes the prefix of pending tasks that fits, the first one
/// whatever its size only when asked to.
async fn claims_within_a_budget(db: &Db, unique: &str) {
    let sizes = [4, 3, 2, 10, 1, 1];
    let tasks: Vec<NewTask> = sizes
        .iter()
        .enumerate()
        .map(|(i, s)| task(&format!("b{i}"), *s))
        .collect();
    let (id, now) = listed_job(db, &format!("budget-{unique}"), &tasks).await;
    let claim = |bytes, first| async move {
        db.claim_tasks_within(id, "w", now, now + 60_000, 10, Budget { bytes, first })
            .await
            .expect("claim")
            .into_iter()
            .map(|t| t.key)
            .collect::<Vec<_>>()
    };
    assert!(claim(3, false).await.is_empty(), "b0 (4) does not fit 3");
    assert_eq!(claim(3, true).await, ["b0"], "the first, whatever its size");
    assert_eq!(
        claim(5, false).await,
        ["b1", "b2"],
        "3 + 2 fit 5, not 3 + 2 + 10"
    );
    assert_eq!(claim(9, true).await, ["b3"], "10 alone, as the first");
    assert_eq!(claim(100, false).await, ["b4", "b5"]);
    assert!(claim(100, true).await.is_empty());
    db.set_job_state(id, &["running"], "cancelled", now)
        .await
        .expect("cancel");
}

/// `retry-dead` while a job's runner finishes it (probe 07): whichever goes first, a job
/// never ends done with tasks queued, and dead letters retried after it ended run again.
async fn retry_dead_against_the_end_of_a_job(db: &Db, unique: &str) {
    let (id, now) = listed_job(db, &format!("end-{unique}"), &[task("x", 1)]).await;
    let kill = |round: i64| async move {
        let t = db
            .claim_tasks(id, "W", now + round, now + 60_000, 1)
            .await
            .expect("claim");
        assert_eq!(t.len(), 1, "round {round}");
        db.fail_task(id, "W", t[0].id, "refused", None)
            .await
            .expect("dead");
    };
    // The runner saw no task pending or running, then the dead letter was requeued: the
    // transition to done must not happen.
    kill(0).await;
    let c = db.task_counts(id).await.expect("counts");
    assert_eq!((c.pending, c.running, c.dead), (0, 0, 1));
    assert_eq!(db.retry_dead(id).await.expect("retry"), 1);
    assert!(
        !db.finish_job(id, now).await.expect("finish"),
        "a job with a task queued was marked done"
    );
    assert_eq!(db.job(id).await.expect("job").state, "running");
    // The job ended first: the retry puts it back to running with the task queued.
    kill(1).await;
    assert!(db.finish_job(id, now).await.expect("finish"));
    assert_eq!(db.retry_dead(id).await.expect("retry"), 1);
    let rec = db.job(id).await.expect("job");
    assert_eq!(
        (rec.state.as_str(), rec.dead, rec.finished_ms),
        ("running", 0, None)
    );
    // Both at once, many times (concurrently on PostgreSQL).
    for round in 2..40 {
        kill(round).await;
        let (finished, requeued) = tokio::join!(db.finish_job(id, now), db.retry_dead(id));
        let (finished, requeued) = (finished.expect("finish"), requeued.expect("retry"));
        assert_eq!(requeued, 1, "round {round}");
        let rec = db.job(id).await.expect("job");
        let c = db.task_counts(id).await.expect("counts");
        assert_eq!(c.pending, 1, "round {round}");
        assert_eq!(rec.state, "running", "round {round}: finished {finished}");
    }
    db.set_job_state(id, &["running"], "cancelled", now)
        .await
        .expect("cancel");
}

/// Namespace bucket records and the multi-write journal (issue 4).
async fn buckets_and_journal(db: &Db, unique: &str) {
    let bucket = format!("b-{unique}");
    let rec = BucketRecord {
        name: bucket.clone(),
        policy: serde_json::json!({ "write_to": [{ "store": "local", "bucket": "x" }] }),
        created_ms: 1,
    };
    db.add_bucket(&rec).await.expect("add bucket");
    assert!(matches!(
        db.add_bucket(&rec).await,
        Err(Error::BucketExists(_))
    ));
    let policy = serde_json::json!({ "write_to": [{ "store": "other", "bucket": "y" }] });
    db.set_bucket_policy(&bucket, &policy)
        .await
        .expect("policy");
    let got = db.buckets().await.expect("list");
    assert!(got.iter().any(|b| b.name == bucket && b.policy == policy));
    assert!(matches!(
        db.set_bucket_policy("no-such-bucket-x", &policy).await,
        Err(Error::NoSuchBucket(_))
    ));

    let row = |key: &str, bytes: i64, t: i64| NewJournalRow {
        bucket: bucket.clone(),
        target: "dr:y".into(),
        key: key.into(),
        op: "object".into(),
        bytes,
        created_ms: t,
    };
    let ids = db
        .append_journal(&[row("a", 10, 100), row("b", 20, 200), row("a", 30, 300)])
        .await
        .expect("append");
    assert_eq!(ids.len(), 3);
    assert!(ids[0] < ids[1] && ids[1] < ids[2], "ids grow: {ids:?}");
    let owed = db
        .owed(&bucket, "dr:y", 0, i64::MAX, 10)
        .await
        .expect("owed");
    assert_eq!(
        owed.iter().map(|r| r.key.as_str()).collect::<Vec<_>>(),
        ["a", "b", "a"]
    );
    // The keys under a prefix a target owes (fallback reads refuse them), each once.
    let mut under = db
        .owed_keys_under(&bucket, "dr:y", "", 10)
        .await
        .expect("under");
    under.sort();
    assert_eq!(under, ["a", "b"]);
    for (prefix, want) in [("a", &["a"][..]), ("b", &["b"]), ("ab", &[]), ("A", &[])] {
        let got = db
            .owed_keys_under(&bucket, "dr:y", prefix, 10)
            .await
            .expect("under");
        assert_eq!(got, want, "under {prefix:?}");
    }
    assert!(
        db.owed_keys_under(&bucket, "other:z", "", 10)
            .await
            .expect("under")
            .is_empty()
    );
    let stats = db.owed_stats(&bucket).await.expect("stats");
    assert_eq!(stats.len(), 1);
    assert_eq!((stats[0].count, stats[0].bytes), (3, 60));
    assert_eq!(stats[0].oldest_ms, Some(100));
    // Settling key a up to its first row leaves its later row owed.
    db.settle_owed_many(&bucket, "dr:y", &[("a".into(), ids[0])])
        .await
        .expect("settle");
    db.delete_journal(&[ids[1]]).await.expect("delete");
    let owed = db
        .owed(&bucket, "dr:y", 0, i64::MAX, 10)
        .await
        .expect("owed");
    assert_eq!(owed.iter().map(|r| r.id).collect::<Vec<_>>(), [ids[2]]);
    // Settling many keys at once, in one (relaxed) transaction.
    let more = db
        .append_journal(&[row("c", 1, 400), row("d", 1, 500)])
        .await
        .expect("append");
    db.settle_owed_many(
        &bucket,
        "dr:y",
        &[("c".into(), more[0]), ("a".into(), ids[2])],
    )
    .await
    .expect("settle many");
    let owed = db
        .owed(&bucket, "dr:y", 0, i64::MAX, 10)
        .await
        .expect("owed");
    assert_eq!(
        owed.iter().map(|r| r.key.as_str()).collect::<Vec<_>>(),
        ["d"]
    );
    // After the relaxed transactions, appends are still durable ones (the pool's
    // connection got its setting back): a plain append still works.
    let e = db
        .append_journal(&[row("e", 1, 600)])
        .await
        .expect("append");
    // A check owed later, pushed back: not read before its new date, not settled by a
    // sync before it; a row gone is said.
    let later = ferry::state::now_ms() + 3_600_000;
    assert!(db.postpone_journal(e[0], later).await.expect("postpone"));
    let due = |t: i64| db.owed(&bucket, "dr:y", 0, t, 10);
    let keys =
        |rows: Vec<ferry::state::JournalRow>| rows.into_iter().map(|r| r.key).collect::<Vec<_>>();
    assert_eq!(keys(due(later - 1).await.expect("owed")), ["d"]);
    assert_eq!(keys(due(later).await.expect("owed")), ["d", "e"]);
    db.settle_owed_many(&bucket, "dr:y", &[("e".into(), e[0])])
        .await
        .expect("settle");
    assert_eq!(keys(due(later).await.expect("owed")), ["d", "e"]);
    assert!(!db.postpone_journal(ids[0], later).await.expect("postpone"));
    // The backlog's age stays the first date, however often it is pushed back.
    db.delete_journal(&[more[1]]).await.expect("delete d");
    assert!(
        db.postpone_journal(e[0], later + 1)
            .await
            .expect("postpone")
    );
    let stats = db.owed_stats(&bucket).await.expect("stats");
    assert_eq!(stats[0].oldest_ms, Some(600), "{stats:?}");
    // A row dated ahead when appended (a check owed later) is owed from then: its age was
    // shown as 0 s for the minute until its date (a probe).
    db.drop_journal(&bucket).await.expect("drop");
    let before = ferry::state::now_ms();
    db.append_journal(&[NewJournalRow {
        bucket: bucket.clone(),
        target: "dr:y".into(),
        key: "late".into(),
        op: "recheck".into(),
        bytes: 0,
        created_ms: before + 60_000,
    }])
    .await
    .expect("append");
    let stats = db.owed_stats(&bucket).await.expect("stats");
    let oldest = stats[0].oldest_ms.unwrap_or(i64::MAX);
    assert!(
        (before..=ferry::state::now_ms()).contains(&oldest),
        "{stats:?}"
    );
    db.drop_journal(&bucket).await.expect("drop");
    assert!(db.owed_stats(&bucket).await.expect("stats").is_empty());
    // A bucket's own change (key "") is no key a listing shows; prefixes count characters.
    let own = |key: &str, op: &str| NewJournalRow {
        bucket: bucket.clone(),
        target: "dr:y".into(),
        key: key.into(),
        op: op.into(),
        bytes: 0,
        created_ms: 1,
    };
    db.append_journal(&[own("", "versioning"), own("\u{e9}t\u{e9}/x", "object")])
        .await
        .expect("append");
    for prefix in ["", "\u{e9}", "\u{e9}t\u{e9}/"] {
        let got = db
            .owed_keys_under(&bucket, "dr:y", prefix, 10)
            .await
            .expect("under");
        assert_eq!(got, ["\u{e9}t\u{e9}/x"], "under {prefix:?}");
    }
    db.drop_journal(&bucket).await.expect("drop");
    db.remove_bucket(&bucket).await.expect("remove bucket");
    assert!(matches!(
        db.remove_bucket(&bucket).await,
        Err(Error::NoSuchBucket(_))
    ));
}

#[tokio::test]
async fn sqlite_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open_embedded(dir.path()).await.expect("open");
    assert_eq!(db.dialect(), Dialect::Sqlite);
    exercise(&db).await;
    db.close().await;
    // Reopening keeps what was written.
    let db = Db::open_embedded(dir.path()).await.expect("reopen");
    db.set_setting("persist", "yes").await.expect("set");
    db.close().await;
    let db = Db::open_embedded(dir.path()).await.expect("reopen");
    assert_eq!(
        db.setting("persist").await.expect("get").as_deref(),
        Some("yes")
    );
}

#[tokio::test]
async fn postgres_state() {
    let db = Db::connect(&pg_url())
        .await
        .expect("connect to the test PostgreSQL");
    assert_eq!(db.dialect(), Dialect::Postgres);
    exercise(&db).await;
}

#[tokio::test]
async fn unreachable_database_names_it_without_the_password() {
    let err = Db::connect("postgres://ferry:s3cret@127.0.0.1:1/nope")
        .await
        .expect_err("must fail");
    let msg = err.to_string();
    assert!(
        msg.contains("127.0.0.1:1") && !msg.contains("s3cret"),
        "{msg}"
    );
}

#[test]
fn serve_on_postgres_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("d");
    let url = crate::support::fresh_pg_database();
    // Its tables made once already, as at every start but the first (when PostgreSQL has
    // notices to send about them).
    tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(async { Db::connect(&url).await.expect("connect").close().await });
    let mut child = std::process::Command::new(crate::support::ferry_bin())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--db",
            &url,
            "--data",
        ])
        .arg(&data)
        .env("FERRY_ADMIN_TOKEN", crate::support::ADMIN_TOKEN)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !data.join("serve.json").exists() {
        if let Ok(Some(status)) = child.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut err);
            }
            panic!("ferry serve --db exited: {status}\n{err}");
        }
        assert!(
            std::time::Instant::now() < deadline,
            "ferry serve --db did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let info: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(data.join("serve.json")).expect("serve.json"),
    )
    .expect("json");
    let out = std::process::Command::new(crate::support::ferry_bin())
        .args([
            "store",
            "list",
            "--json",
            "--server",
            info["admin"].as_str().expect("admin"),
        ])
        .env("FERRY_ADMIN_TOKEN", crate::support::ADMIN_TOKEN)
        .output()
        .expect("run");
    let _ = child.kill();
    let _ = child.wait();
    let text = crate::support::ok(&out);
    assert!(text.contains("\"local\""), "{text}");
    // PostgreSQL's notices about tables that exist already are not logged (15 lines at every
    // start, a probe).
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut err);
    }
    assert!(!err.contains("already exists, skipping"), "{err}");
}

/// A listener that takes the connection and never speaks (another service's port, a hung
/// server): opening the database kept a worker silent for ever (a probe). It is said.
#[tokio::test]
async fn a_database_that_never_answers_is_said_in_seconds() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let held = std::thread::spawn(move || {
        let (conn, _) = listener.accept().expect("accept");
        std::thread::sleep(std::time::Duration::from_secs(20));
        drop(conn);
    });
    let err = Db::connect(&format!("postgres://ferry:s3cret@127.0.0.1:{port}/x"))
        .await
        .expect_err("must fail");
    let msg = err.to_string();
    assert!(
        matches!(err, Error::Silent { .. })
            && msg.contains("did not answer")
            && !msg.contains("s3cret"),
        "{msg}"
    );
    let _ = held.join();
}

/// Managed PostgreSQL services require TLS: the build could not speak it at all ("SQLx was
/// built without TLS support", a probe). `sslmode=require` connects over TLS.
#[tokio::test]
async fn postgres_over_tls() {
    let name = format!("ferry-tls-{}", uuid::Uuid::new_v4().simple());
    let url = pg_url();
    let sep = if url.contains('?') { '&' } else { '?' };
    let db = Db::connect(&format!(
        "{url}{sep}sslmode=require&application_name={name}"
    ))
    .await
    .expect("connect over TLS");
    exercise(&db).await;
    let query = format!(
        "SELECT count(*) FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) \
         WHERE a.application_name = '{name}' AND s.ssl"
    );
    let out = crate::support::ok(
        &std::process::Command::new(crate::support::psql())
            .args(["-d", &url, "-tA", "-c", &query])
            .output()
            .expect("psql"),
    );
    assert!(out.trim().parse::<u32>().is_ok_and(|n| n >= 1), "{out}");
    db.close().await;
    // Checking the server's certificate against a CA file (the server's own, self-signed):
    // `verify-ca` panicked choosing a crypto provider (a probe).
    let cert = crate::support::ok(
        &std::process::Command::new(crate::support::psql())
            .args(["-d", &url, "-tA", "-c", "SHOW ssl_cert_file"])
            .output()
            .expect("psql"),
    );
    // (The server's certificate names `localhost`; sqlx checks the name with verify-ca too.)
    let by_name = url.replace("@127.0.0.1:", "@localhost:");
    let db = Db::connect(&format!(
        "{by_name}{sep}sslmode=verify-ca&sslrootcert={}",
        cert.trim()
    ))
    .await
    .expect("connect over TLS, the certificate checked");
    db.close().await;
}

/// Uploads recorded until they end: paged oldest first, only those of processes other than
/// this one that have not said they are alive lately, forgotten one by one.
async fn open_uploads(db: &Db, unique: &str) {
    let owner = |id: &str| match id {
        "mine" => "me".to_owned(),
        "busy" => format!("live-{unique}"),
        "quiet" => format!("quiet-{unique}"),
        _ => "earlier".to_owned(),
    };
    let up = |id: &str, ms: i64| OpenUpload {
        store: unique.to_owned(),
        bucket: "b".into(),
        key: format!("k/{id}"),
        upload_id: id.into(),
        owner: owner(id),
        created_ms: ms,
    };
    // Two at the same moment, to page across a tie.
    for (id, ms) in [
        ("u3", 30),
        ("u1", 10),
        ("u2a", 20),
        ("u2b", 20),
        ("late", 90),
        ("mine", 15),
        ("busy", 12),
        ("quiet", 40),
    ] {
        db.record_upload(&up(id, ms)).await.expect("record");
    }
    // One server said it was alive just now, the other 100 s ago (times near the clock's:
    // another test's server, on this database, forgets rows a day old).
    let now = ferry::state::now_ms();
    db.server_alive(&owner("busy"), "host-a:/d", now)
        .await
        .expect("alive");
    db.server_alive(&owner("quiet"), "host-b:/d", now - 100_000)
        .await
        .expect("alive");
    assert_eq!(
        db.other_servers(&owner("quiet"), "host-b:/d", now - 50_000)
            .await
            .expect("others")
            .iter()
            .filter(|(p, _)| p == "host-a:/d")
            .count(),
        1
    );
    assert!(
        db.other_servers(&owner("x"), "host-a:/d", now - 50_000)
            .await
            .expect("others")
            .iter()
            .all(|(p, _)| p != "host-a:/d"),
        "a server at the same place is no other"
    );
    let ours = |db: &Db| {
        let db = db.clone();
        async move {
            let mut seen = Vec::new();
            let mut after: Option<OpenUpload> = None;
            loop {
                let page = db
                    .open_uploads("me", now - 50_000, after.as_ref(), 2)
                    .await
                    .expect("page");
                seen.extend(
                    page.iter()
                        .filter(|u| u.store == unique)
                        .map(|u| u.upload_id.clone()),
                );
                if page.len() < 2 {
                    return seen;
                }
                after = page.last().cloned();
            }
        }
    };
    assert_eq!(ours(db).await, ["u1", "u2a", "u2b", "u3", "quiet", "late"]);
    db.forget_upload(unique, "b", "u2a").await.expect("forget");
    db.forget_upload(unique, "b", "nope")
        .await
        .expect("forget unknown");
    assert_eq!(ours(db).await, ["u1", "u2b", "u3", "quiet", "late"]);
    // The busy server goes quiet: its upload is left behind too.
    db.server_alive(&owner("busy"), "host-a:/d", now - 60_000)
        .await
        .expect("alive");
    assert_eq!(ours(db).await, ["u1", "busy", "u2b", "u3", "quiet", "late"]);
    for id in ["u1", "u2b", "u3", "late", "mine", "busy", "quiet"] {
        db.forget_upload(unique, "b", id).await.expect("forget");
    }
    assert!(ours(db).await.is_empty());
}
