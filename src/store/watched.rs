//! A store whose backend may stop answering (a frozen server, a black-holed network path):
//! [`Watched`] wraps any store so that its callers learn it within seconds, not after the
//! SDK's timeouts and retries (three attempts of a minute each).
//!
//! - A call that fails with [`Error::Unavailable`] after waiting (a timeout, not a refused
//!   connection) marks the backend down.
//! - A call still running after [`SLOW`] makes a check ([`Store::alive`]: one HeadBucket
//!   without retries, [`PROBE_TIMEOUT`]),
//!   again every [`SLOW`] while it runs: a backend that answers is only slow, and the call
//!   goes on; one that does not is marked down, and the call is given up with
//!   `Unavailable` (a PUT's body that was sent whole would otherwise wait out the SDK's
//!   attempt timeout; a backend that takes more than three seconds to answer a HeadBucket
//!   is not serving anyone).
//! - While the backend is down, each call first waits for a probe, made at most every
//!   [`PROBE_EVERY`] and shared by the calls waiting for it: it answers (any answer, even an
//!   error) and the call goes through, or the call fails at once with `Unavailable`.
//!
//! Namespace buckets wrap every target in one (shared by the buckets on one store): a primary
//! that stops answering fails the clients' requests with 503 in seconds, and reads go to the
//! next read target at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use time::OffsetDateTime;

use super::{
    BucketInfo, BucketName, ByteStream, Caps, Checksum, CompletedPart, CopyOptions, DeleteResult,
    Error, GetOptions, GetResult, ListPage, ListQuery, ObjectKey, ObjectMeta, PartInfo, PartRange,
    PartsPage, PutOptions, Result, Store, Tags, UploadsPage, UploadsQuery, Versioning,
    VersionsPage, VersionsQuery,
};

/// How long a call runs before the backend is probed.
pub const SLOW: Duration = Duration::from_secs(5);
/// How long a probe may take.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// How often a backend that is down is probed again (by the calls that wait for it).
pub const PROBE_EVERY: Duration = Duration::from_secs(2);
/// A check refused faster than this was refused, not left unanswered.
const QUICK: Duration = Duration::from_secs(1);
/// How long a quick refusal's verdict holds.
const QUICK_HOLDS: Duration = Duration::from_millis(250);

/// A store with its backend's health watched (see the module docs).
pub struct Watched {
    inner: Arc<dyn Store>,
    /// Read without the lock on every call: the common case costs nothing.
    down: AtomicBool,
    health: tokio::sync::Mutex<Health>,
}

#[derive(Default)]
struct Health {
    down_since: Option<Instant>,
    /// Why it is down (the last failure or probe).
    why: String,
    /// The last check's verdict, while it holds: until when, and whether the backend
    /// answered. Only checks leave one, never a failed call (a connection reset after a long
    /// upload says nothing of the backend now). "No answer" holds for [`PROBE_EVERY`]; a
    /// quick refusal (connection refused) only for [`QUICK_HOLDS`], so a backend just
    /// restarted is seen at once, while the calls queued behind that check share it.
    probed: Option<(Instant, bool)>,
}

impl Watched {
    pub fn new(inner: Arc<dyn Store>) -> Self {
        Self {
            inner,
            down: AtomicBool::new(false),
            health: tokio::sync::Mutex::new(Health::default()),
        }
    }

    /// The store it watches.
    pub fn inner(&self) -> &Arc<dyn Store> {
        &self.inner
    }

    fn unavailable(&self, h: &Health) -> Error {
        let since = h.down_since.map_or(0, |t| t.elapsed().as_secs());
        Error::Unavailable {
            store: self.inner.name().to_owned(),
            message: format!(
                "not answering for {since} s ({}); checked again every {} s while calls wait for it",
                h.why,
                PROBE_EVERY.as_secs()
            ),
        }
    }

    /// `silent_since`: when the call or check that found no answer was made (the time it
    /// waited counts: the first error said "not answering for 0 s" after 8 s of silence).
    fn mark_down(&self, h: &mut Health, why: String, silent_since: Instant) {
        if h.down_since.is_none() {
            tracing::warn!(store = %self.inner.name(), error = %why, "store not answering; calls fail at once until it answers again");
            h.down_since = Some(silent_since);
        }
        h.why = why;
        self.down.store(true, Ordering::Relaxed);
    }

    fn mark_up(&self, h: &mut Health) {
        if let Some(t) = h.down_since.take() {
            tracing::info!(store = %self.inner.name(), down_s = t.elapsed().as_secs(), "store answering again");
        }
        self.down.store(false, Ordering::Relaxed);
    }

    /// A probe's verdict, shared: one made within [`PROBE_EVERY`] is reused. `Ok` when the
    /// backend answered.
    async fn probe(&self, bucket: &BucketName) -> std::result::Result<(), Error> {
        let mut h = self.health.lock().await;
        if let Some((until, answered)) = h.probed
            && Instant::now() < until
        {
            return match answered {
                true => Ok(()),
                false => Err(self.unavailable(&h)),
            };
        }
        let asked = Instant::now();
        let answered = match tokio::time::timeout(PROBE_TIMEOUT, self.inner.alive(bucket)).await {
            Err(_) => Err(format!(
                "no answer to a check within {} s",
                PROBE_TIMEOUT.as_secs()
            )),
            Ok(r) => r,
        };
        let holds = match (&answered, asked.elapsed() < QUICK) {
            (Ok(()), _) | (Err(_), false) => PROBE_EVERY,
            (Err(_), true) => QUICK_HOLDS,
        };
        h.probed = Some((Instant::now() + holds, answered.is_ok()));
        match answered {
            Ok(()) => {
                self.mark_up(&mut h);
                Ok(())
            }
            Err(why) => {
                self.mark_down(&mut h, why, asked);
                Err(self.unavailable(&h))
            }
        }
    }

    /// Runs one call of the inner store under watch.
    async fn call<T>(&self, bucket: &BucketName, f: impl Future<Output = Result<T>>) -> Result<T> {
        if self.down.load(Ordering::Relaxed) {
            self.probe(bucket).await?;
        }
        let started = Instant::now();
        let mut f = std::pin::pin!(f);
        let r = match tokio::time::timeout(SLOW, &mut f).await {
            Ok(r) => r,
            Err(_) => loop {
                // Slow: is the backend there at all? Asked again every SLOW while it runs.
                tokio::select! {
                    r = &mut f => break r,
                    p = async {
                        let p = self.probe(bucket).await;
                        if p.is_ok() {
                            tokio::time::sleep(SLOW).await;
                        }
                        p
                    } => p?,
                }
            },
        };
        // A failure that took its time: the next call checks the backend first (no verdict
        // is left, so none is taken from this call: it may have been a reset after a long
        // upload, from a backend that is fine). A quick one (refused) marks nothing: the
        // next call costs no more than the check would.
        if let Err(Error::Unavailable { message, .. }) = &r
            && started.elapsed() >= PROBE_TIMEOUT
        {
            let mut h = self.health.lock().await;
            self.mark_down(&mut h, message.clone(), started);
            h.probed = None;
        }
        r
    }
}

#[async_trait]
impl Store for Watched {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn caps(&self) -> Caps {
        self.inner.caps()
    }

    async fn list_buckets(&self) -> Result<Vec<BucketInfo>> {
        self.inner.list_buckets().await
    }

    async fn create_bucket(&self, bucket: &BucketName) -> Result<()> {
        self.call(bucket, self.inner.create_bucket(bucket)).await
    }

    async fn delete_bucket(&self, bucket: &BucketName) -> Result<()> {
        self.call(bucket, self.inner.delete_bucket(bucket)).await
    }

    async fn head_bucket(&self, bucket: &BucketName) -> Result<BucketInfo> {
        self.call(bucket, self.inner.head_bucket(bucket)).await
    }

    async fn get_versioning(&self, bucket: &BucketName) -> Result<Versioning> {
        self.call(bucket, self.inner.get_versioning(bucket)).await
    }

    async fn set_versioning(&self, bucket: &BucketName, state: Versioning) -> Result<()> {
        self.call(bucket, self.inner.set_versioning(bucket, state))
            .await
    }

    async fn get_bucket_tags(&self, bucket: &BucketName) -> Result<Option<Tags>> {
        self.call(bucket, self.inner.get_bucket_tags(bucket)).await
    }

    async fn put_bucket_tags(&self, bucket: &BucketName, tags: Option<Tags>) -> Result<()> {
        self.call(bucket, self.inner.put_bucket_tags(bucket, tags))
            .await
    }

    async fn put_object(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        body: ByteStream,
        opts: PutOptions,
    ) -> Result<ObjectMeta> {
        let f = self.inner.put_object(bucket, key, body, opts);
        self.call(bucket, f).await
    }

    async fn get_object(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        opts: GetOptions,
    ) -> Result<GetResult> {
        let f = self.inner.get_object(bucket, key, opts);
        self.call(bucket, f).await
    }

    async fn head_object(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        version_id: Option<&str>,
    ) -> Result<ObjectMeta> {
        let f = self.inner.head_object(bucket, key, version_id);
        self.call(bucket, f).await
    }

    async fn delete_object(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        version_id: Option<&str>,
    ) -> Result<DeleteResult> {
        let f = self.inner.delete_object(bucket, key, version_id);
        self.call(bucket, f).await
    }

    async fn copy_object(
        &self,
        src_bucket: &BucketName,
        src_key: &ObjectKey,
        dst_bucket: &BucketName,
        dst_key: &ObjectKey,
        opts: CopyOptions,
    ) -> Result<ObjectMeta> {
        let f = self
            .inner
            .copy_object(src_bucket, src_key, dst_bucket, dst_key, opts);
        self.call(dst_bucket, f).await
    }

    async fn get_object_tags(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        version_id: Option<&str>,
    ) -> Result<(String, Tags)> {
        let f = self.inner.get_object_tags(bucket, key, version_id);
        self.call(bucket, f).await
    }

    async fn put_object_tags(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        version_id: Option<&str>,
        tags: Tags,
    ) -> Result<String> {
        let f = self.inner.put_object_tags(bucket, key, version_id, tags);
        self.call(bucket, f).await
    }

    async fn set_modified(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        at: OffsetDateTime,
    ) -> Result<()> {
        let f = self.inner.set_modified(bucket, key, at);
        self.call(bucket, f).await
    }

    async fn list_objects(&self, bucket: &BucketName, query: &ListQuery) -> Result<ListPage> {
        let f = self.inner.list_objects(bucket, query);
        self.call(bucket, f).await
    }

    async fn list_versions(
        &self,
        bucket: &BucketName,
        query: &VersionsQuery,
    ) -> Result<VersionsPage> {
        let f = self.inner.list_versions(bucket, query);
        self.call(bucket, f).await
    }

    async fn create_multipart(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        opts: PutOptions,
    ) -> Result<String> {
        let f = self.inner.create_multipart(bucket, key, opts);
        self.call(bucket, f).await
    }

    async fn upload_part(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &str,
        part_number: u32,
        body: ByteStream,
        opts: PutOptions,
    ) -> Result<PartInfo> {
        let f = self
            .inner
            .upload_part(bucket, key, upload_id, part_number, body, opts);
        self.call(bucket, f).await
    }

    async fn complete_multipart(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &str,
        parts: &[CompletedPart],
        checksum: Option<&Checksum>,
    ) -> Result<ObjectMeta> {
        let f = self
            .inner
            .complete_multipart(bucket, key, upload_id, parts, checksum);
        self.call(bucket, f).await
    }

    async fn abort_multipart(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &str,
    ) -> Result<()> {
        let f = self.inner.abort_multipart(bucket, key, upload_id);
        self.call(bucket, f).await
    }

    async fn part_range(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        version_id: Option<&str>,
        part: u32,
    ) -> Result<PartRange> {
        let f = self.inner.part_range(bucket, key, version_id, part);
        self.call(bucket, f).await
    }

    async fn list_parts(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &str,
        part_number_marker: Option<u32>,
        max_parts: usize,
    ) -> Result<PartsPage> {
        let f = self
            .inner
            .list_parts(bucket, key, upload_id, part_number_marker, max_parts);
        self.call(bucket, f).await
    }

    async fn list_uploads(&self, bucket: &BucketName, query: &UploadsQuery) -> Result<UploadsPage> {
        let f = self.inner.list_uploads(bucket, query);
        self.call(bucket, f).await
    }

    async fn alive(&self, bucket: &BucketName) -> std::result::Result<(), String> {
        self.inner.alive(bucket).await
    }
}
