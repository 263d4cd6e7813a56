//! Self-fencing of a job's process that lost its leases (frozen past them, say): what it
//! was writing never lands, and its tasks are not marked done by it, so it cannot overwrite
//! a newer copy another process made after taking the task.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;

use ferry::store::fs::FsStore;
use ferry::store::{
    BucketInfo, BucketName, ByteStream, Checksum, CompletedPart, CopyOptions, DeleteResult,
    GetOptions, GetResult, ListPage, ListQuery, ObjectKey, ObjectMeta, PartInfo, PartRange,
    PartsPage, PutOptions, Result, Store, Tags, UploadsPage, UploadsQuery, Versioning,
    VersionsPage, VersionsQuery,
};
use ferry::transfer::copy::{Item, NoJournal, Outcome, Plan, copy_object};

use crate::support::write_file;

const MIB: usize = 1 << 20;

/// An `alive` test that turns false after it answered true `n` times.
fn alive_for(n: usize) -> (ferry::transfer::throttle::Alive, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    (
        Arc::new(move || c.fetch_add(1, Ordering::SeqCst) < n),
        calls,
    )
}

async fn two_dirs(root: &Path, size: usize) -> (Arc<FsStore>, Arc<FsStore>, BucketName, ObjectKey) {
    let bucket = BucketName::parse("bkt").expect("bucket");
    let key = ObjectKey::parse("obj").expect("key");
    write_file(&root.join("src/bkt/obj"), size, 7);
    std::fs::create_dir_all(root.join("dst/bkt")).expect("dst bucket");
    let src = FsStore::open("src", &root.join("src")).await.expect("src");
    let dst = FsStore::open("dst", &root.join("dst")).await.expect("dst");
    (src, dst, bucket, key)
}

/// A whole-object PUT whose lease lapses while its body flows is cut: the destination
/// never gets the object. A multipart copy stops sending parts and never completes.
#[tokio::test]
async fn a_copy_whose_lease_lapses_midway_never_lands() {
    let tmp = tempfile::tempdir().expect("tmp");
    for (size, threshold) in [(4 * MIB, 64 * MIB as u64), (12 * MIB, 8 * MIB as u64)] {
        let (src, dst, bucket, key) = two_dirs(tmp.path(), size).await;
        let item = Item {
            src: src.as_ref(),
            sb: &bucket,
            sk: &key,
            dst: dst.as_ref(),
            db: &bucket,
            dk: &key,
            listed_etag: "",
        };
        let (alive, calls) = alive_for(2);
        let plan = Plan {
            threshold,
            part_size: 5 * MIB as u64,
            parallel_parts: 1,
            alive: Some(alive),
            ..Default::default()
        };
        let (_tx, stop) = tokio::sync::watch::channel(false);
        let out = copy_object(&item, &plan, None, false, &NoJournal, &stop).await;
        assert!(
            !matches!(out, Ok(Outcome::Copied { .. })),
            "{size}: the copy went on after its lease lapsed: {out:?}"
        );
        assert!(
            calls.load(Ordering::SeqCst) > 2,
            "{size}: never asked again"
        );
        let there = dst.head_object(&bucket, &key, None).await;
        assert!(
            matches!(there, Err(ferry::store::Error::NoSuchKey { .. })),
            "{size}: the destination got the object: {there:?}"
        );
        // With the lease held, the same copy lands.
        let plan = Plan {
            alive: Some(Arc::new(|| true)),
            ..plan
        };
        let out = copy_object(&item, &plan, None, false, &NoJournal, &stop).await;
        assert!(matches!(out, Ok(Outcome::Copied { .. })), "{out:?}");
        dst.delete_object(&bucket, &key, None)
            .await
            .expect("delete");
    }
}

/// A runner whose process freezes (here: its only thread blocks) past the fence while it
/// PUTs an object stops that PUT when it thaws, gives the task back without marking it
/// done or failed, and copies it again with a fresh lease.
#[tokio::test]
async fn a_runner_frozen_past_its_lease_does_not_finish_its_put() {
    use ferry::jobs::open::Side;
    use ferry::jobs::run::{Ended, Runner, Settings};
    let tmp = tempfile::tempdir().expect("tmp");
    let (src, dst, _, _) = two_dirs(tmp.path(), 4 * MIB).await;
    let dst = Arc::new(Freezing {
        inner: dst,
        // Past the fence (lease less its margin) whenever the last renewal was.
        freeze: Duration::from_millis(10_500),
        frozen: AtomicBool::new(false),
        puts: Mutex::new(Vec::new()),
    });
    let db = ferry::state::Db::open_embedded(tmp.path())
        .await
        .expect("db");
    let spec = super::dir_spec(
        &tmp.path().join("src/bkt"),
        &tmp.path().join("dst/bkt"),
        8 * MIB as u64,
        64 * MIB as u64,
    );
    let job = db
        .create_job(
            "migrate",
            &serde_json::to_value(&spec).expect("spec"),
            "fp",
            ferry::state::now_ms(),
        )
        .await
        .expect("job");
    let side = |store: Arc<dyn Store>, name: &str| Side {
        store,
        bucket: BucketName::parse("bkt").expect("bucket"),
        prefix: String::new(),
        identity: name.into(),
        place: name.into(),
        display: name.into(),
        not_indexed: Vec::new(),
        stand_in: None,
        dir: None,
    };
    let runner = Arc::new(
        Runner::new(
            db.clone(),
            job,
            spec,
            side(src, "src"),
            side(dst.clone(), "dst"),
            &Settings {
                parallel_parts: 1,
                ..Settings::new(1, None)
            },
        )
        .expect("runner"),
    );
    let (_stop, shutdown) = tokio::sync::watch::channel(false);
    let ended = tokio::time::timeout(Duration::from_secs(60), runner.clone().run(shutdown))
        .await
        .expect("the job ends")
        .expect("run");
    assert!(matches!(ended, Ended::Done(_)), "{ended:?}");
    let puts = dst.puts.lock().expect("puts").clone();
    assert_eq!(
        puts,
        vec![false, true],
        "the frozen PUT must fail, and the task be copied again"
    );
    assert_eq!(runner.live.failures.load(Ordering::Relaxed), 0);
    let rec = db.job(job).await.expect("job");
    assert_eq!((rec.done, rec.dead), (1, 0));
}

/// A destination whose first PUT freezes the whole process (the test's runtime has one
/// thread) after the body's first chunk, as SIGSTOP would; it records whether each PUT
/// succeeded.
struct Freezing {
    inner: Arc<FsStore>,
    freeze: Duration,
    frozen: AtomicBool,
    puts: Mutex<Vec<bool>>,
}

#[async_trait]
impl Store for Freezing {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn caps(&self) -> ferry::store::Caps {
        self.inner.caps()
    }
    async fn list_buckets(&self) -> Result<Vec<BucketInfo>> {
        self.inner.list_buckets().await
    }
    async fn create_bucket(&self, b: &BucketName) -> Result<()> {
        self.inner.create_bucket(b).await
    }
    async fn delete_bucket(&self, b: &BucketName) -> Result<()> {
        self.inner.delete_bucket(b).await
    }
    async fn head_bucket(&self, b: &BucketName) -> Result<BucketInfo> {
        self.inner.head_bucket(b).await
    }
    async fn get_versioning(&self, b: &BucketName) -> Result<Versioning> {
        self.inner.get_versioning(b).await
    }
    async fn set_versioning(&self, b: &BucketName, s: Versioning) -> Result<()> {
        self.inner.set_versioning(b, s).await
    }
    async fn get_bucket_tags(&self, b: &BucketName) -> Result<Option<Tags>> {
        self.inner.get_bucket_tags(b).await
    }
    async fn put_bucket_tags(&self, b: &BucketName, t: Option<Tags>) -> Result<()> {
        self.inner.put_bucket_tags(b, t).await
    }
    async fn put_object(
        &self,
        b: &BucketName,
        k: &ObjectKey,
        body: ByteStream,
        opts: PutOptions,
    ) -> Result<ObjectMeta> {
        let body = if self.frozen.swap(true, Ordering::SeqCst) {
            body
        } else {
            let freeze = self.freeze;
            Box::pin(body.enumerate().map(move |(i, chunk)| {
                if i == 1 {
                    std::thread::sleep(freeze);
                }
                chunk
            }))
        };
        // The freeze happens as the second chunk is polled: after the first went by.
        let r = self.inner.put_object(b, k, body, opts).await;
        self.puts.lock().expect("puts").push(r.is_ok());
        r
    }
    async fn get_object(&self, b: &BucketName, k: &ObjectKey, o: GetOptions) -> Result<GetResult> {
        self.inner.get_object(b, k, o).await
    }
    async fn head_object(
        &self,
        b: &BucketName,
        k: &ObjectKey,
        v: Option<&str>,
    ) -> Result<ObjectMeta> {
        self.inner.head_object(b, k, v).await
    }
    async fn delete_object(
        &self,
        b: &BucketName,
        k: &ObjectKey,
        v: Option<&str>,
    ) -> Result<DeleteResult> {
        self.inner.delete_object(b, k, v).await
    }
    async fn copy_object(
        &self,
        sb: &BucketName,
        sk: &ObjectKey,
        db: &BucketName,
        dk: &ObjectKey,
        o: CopyOptions,
    ) -> Result<ObjectMeta> {
        self.inner.copy_object(sb, sk, db, dk, o).await
    }
    async fn get_object_tags(
        &self,
        b: &BucketName,
        k: &ObjectKey,
        v: Option<&str>,
    ) -> Result<(String, Tags)> {
        self.inner.get_object_tags(b, k, v).await
    }
    async fn put_object_tags(
        &self,
        b: &BucketName,
        k: &ObjectKey,
        v: Option<&str>,
        t: Tags,
    ) -> Result<String> {
        self.inner.put_object_tags(b, k, v, t).await
    }
    async fn list_objects(&self, b: &BucketName, q: &ListQuery) -> Result<ListPage> {
        self.inner.list_objects(b, q).await
    }
    async fn list_versions(&self, b: &BucketName, q: &VersionsQuery) -> Result<VersionsPage> {
        self.inner.list_versions(b, q).await
    }
    async fn create_multipart(
        &self,
        b: &BucketName,
        k: &ObjectKey,
        o: PutOptions,
    ) -> Result<String> {
        self.inner.create_multipart(b, k, o).await
    }
    async fn upload_part(
        &self,
        b: &BucketName,
        k: &ObjectKey,
        u: &str,
        n: u32,
        body: ByteStream,
        o: PutOptions,
    ) -> Result<PartInfo> {
        self.inner.upload_part(b, k, u, n, body, o).await
    }
    async fn complete_multipart(
        &self,
        b: &BucketName,
        k: &ObjectKey,
        u: &str,
        p: &[CompletedPart],
        c: Option<&Checksum>,
    ) -> Result<ObjectMeta> {
        self.inner.complete_multipart(b, k, u, p, c).await
    }
    async fn abort_multipart(&self, b: &BucketName, k: &ObjectKey, u: &str) -> Result<()> {
        self.inner.abort_multipart(b, k, u).await
    }
    async fn part_range(
        &self,
        b: &BucketName,
        k: &ObjectKey,
        v: Option<&str>,
        p: u32,
    ) -> Result<PartRange> {
        self.inner.part_range(b, k, v, p).await
    }
    async fn list_parts(
        &self,
        b: &BucketName,
        k: &ObjectKey,
        u: &str,
        m: Option<u32>,
        n: usize,
    ) -> Result<PartsPage> {
        self.inner.list_parts(b, k, u, m, n).await
    }
    async fn list_uploads(&self, b: &BucketName, q: &UploadsQuery) -> Result<UploadsPage> {
        self.inner.list_uploads(b, q).await
    }
}

/// Records what a copy journals, as a job's task does.
#[derive(Default)]
struct Recorded {
    upload: Mutex<Option<String>>,
    parts: Mutex<Vec<(u32, String, u64)>>,
}

#[async_trait]
impl ferry::transfer::copy::Journal for Recorded {
    async fn upload(&self, upload_id: Option<&str>) -> Result<()> {
        *self.upload.lock().expect("lock") = upload_id.map(str::to_owned);
        Ok(())
    }
    async fn part(&self, part_number: u32, etag: &str, size: u64) -> Result<()> {
        self.parts
            .lock()
            .expect("lock")
            .push((part_number, etag.to_owned(), size));
        Ok(())
    }
}

/// A multipart copy that completed just before its process died (its task still names the
/// upload and every part) is found finished on the resume, not sent again whole: part 0 of
/// the journal (the size parts are cut to) was taken for a part, so the check never matched
/// and a probe saw a 100 MiB object sent twice.
#[tokio::test]
async fn a_multipart_copy_that_completed_before_a_crash_is_not_sent_again() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (src, dst, bucket, key) = two_dirs(tmp.path(), 12 * MIB).await;
    let item = Item {
        src: src.as_ref(),
        sb: &bucket,
        sk: &key,
        dst: dst.as_ref(),
        db: &bucket,
        dk: &key,
        listed_etag: "",
    };
    let plan = Plan {
        threshold: 8 * MIB as u64,
        part_size: 5 * MIB as u64,
        parallel_parts: 1,
        ..Default::default()
    };
    let (_tx, stop) = tokio::sync::watch::channel(false);
    let journal = Recorded::default();
    let out = copy_object(&item, &plan, None, false, &journal, &stop)
        .await
        .expect("copy");
    assert!(matches!(out, Outcome::Copied { .. }), "{out:?}");
    let resume = ferry::transfer::copy::Resume {
        upload_id: journal
            .upload
            .lock()
            .expect("lock")
            .clone()
            .expect("upload"),
        parts: journal.parts.lock().expect("lock").clone(),
    };
    assert!(resume.parts.iter().any(|p| p.0 == 0), "{:?}", resume.parts);
    let again = copy_object(&item, &plan, Some(resume), true, &NoJournal, &stop)
        .await
        .expect("resume");
    assert!(matches!(again, Outcome::AlreadyThere { .. }), "{again:?}");
}
