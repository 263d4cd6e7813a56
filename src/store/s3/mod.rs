//! An S3-compatible backend: [`S3Store`] implements [`Store`] over aws-sdk-s3.
//!
//! Owns: the client for one remote S3 endpoint ([`S3Config`]: endpoint, credentials,
//! addressing style, checksum behaviour, retries and timeouts), the S3 call behind each trait
//! method (bucket operations in [`bucket`], listings in [`list`], multipart uploads in
//! [`multipart`], parts sent with a checksum given up front in [`parts`]), and the
//! translation at the SDK boundary — errors ([`error`]), types ([`convert`]) and bodies
//! ([`body`]); small buffered PUTs and GETs without checksum validation, to a custom
//! endpoint, go around the SDK's orchestrator ([`lean`]). Does not own: how the gateway
//! answers its own clients, which store serves a bucket, or retrying beyond the SDK's own
//! few attempts.
//!
//! # How the contract is kept
//! - **Atomic visibility and durability** are the backend's: S3 makes a PUT, copy or
//!   completed multipart upload visible whole, and answers only once it is durable.
//! - **Verification before commit**: a buffered body (small, or of unknown size) is verified
//!   before the request is sent and sent with `Content-MD5` (or, when nobody needs its MD5, a
//!   checksum the backend echoes; see [`put`]); a streamed body holds back its last chunk
//!   until the verifier has passed, so a body that fails never reaches the backend whole (see
//!   [`body`]). A body whose returned ETag is a plain MD5 that differs from the one computed
//!   here (a backend that ignores `Content-MD5` keeps what it got) is deleted again (by
//!   version id when there is one) and refused.
//! - **Checksums**: with [`ChecksumMode::WhenSupported`] the SDK adds its checksums (trailers
//!   on streamed bodies) and validates responses; with [`ChecksumMode::WhenRequired`] only
//!   `Content-MD5` is sent, for servers that reject the SDK's trailers.
//!
//! # What the S3 API does not say
//! - `list_objects` entries carry no version ids: they say `"null"` and `is_latest`.
//! - HEAD/GET of a specific version report `is_latest: false` without checking.
//! - A HEAD answer has no error body, so its 404 does not say what is missing: the store asks
//!   HeadBucket before reporting a missing key or version, so a missing bucket is named.
//! - Listing entries carry no attributes, checksums or tag counts.
//! - The metadata of a PUT or uploaded part has `last_modified` of this machine's clock
//!   (S3 does not return it); complete and copy read it back with a HEAD.

mod body;
mod bucket;
mod config;
mod convert;
mod error;
mod lean;
mod list;
mod multipart;
mod parts;
mod put;

use std::fmt;

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::types as sdk;
use time::OffsetDateTime;

use self::body::download_stream;
pub use self::config::{ChecksumMode, S3Config};
use self::convert::{
    checksum_of, copy_source, from_sdk_tags, meta_of, parse_content_range, range_header,
    sdk_algorithm, sdk_tags, tagging_header, to_u64, version_or_null, with_attrs,
};
use self::error::{Ctx, map_sdk_error};
use super::{
    BucketInfo, BucketName, ByteStream, Caps, CompletedPart, CopyOptions, DeleteResult, Error,
    GetOptions, GetResult, ListPage, ListQuery, NULL_VERSION, ObjectKey, ObjectMeta, PartInfo,
    PartsPage, PutOptions, Result, Store, Tags, UploadsPage, UploadsQuery, Versioning,
    VersionsPage, VersionsQuery,
};

/// A [`Store`] backed by a remote S3-compatible service.
#[derive(Clone)]
pub struct S3Store {
    name: String,
    client: Client,
    /// Small PUTs bypass the SDK's orchestrator (see [`lean`]).
    lean: Option<std::sync::Arc<lean::Lean>>,
    /// Bounds the bytes of bodies buffered in memory at once across all PUTs, in 4 KiB
    /// permits ([`config::BUFFER_BUDGET`]).
    buffers: std::sync::Arc<tokio::sync::Semaphore>,
    region: String,
    checksum_mode: ChecksumMode,
    /// AWS itself (no endpoint): it takes checksum headers whatever the mode.
    on_aws: bool,
    /// Whether the backend checks checksum headers on PUT (see [`put`]).
    echo: std::sync::Arc<put::Echo>,
    /// What the backend does with part checksums (see [`parts`]).
    part_echo: std::sync::Arc<parts::PartEcho>,
}

impl fmt::Debug for S3Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Store")
            .field("name", &self.name)
            .field("region", &self.region)
            .field("checksum_mode", &self.checksum_mode)
            .finish_non_exhaustive()
    }
}

impl S3Store {
    fn err<E>(&self, ctx: Ctx<'_>, e: SdkError<E>) -> Error
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        map_sdk_error(&self.name, ctx, e)
    }

    fn supported(&self) -> bool {
        self.checksum_mode == ChecksumMode::WhenSupported
    }

    /// Whether a checksum value known before the body is sent goes with it as a header
    /// (never a trailer) on the SDK's path: with SDK checksums, and to AWS itself in either
    /// mode (other servers go the lean way, which can send the body again without it).
    fn sends_known_checksums(&self) -> bool {
        self.supported() || self.on_aws
    }

    /// A HEAD answer has no body, so a 404 cannot say whether the key or the bucket is
    /// missing; the error maps to a missing key (or version). Asks about the bucket in that
    /// case, so a missing bucket is reported as one.
    /// A HEAD refused with 403 says nothing of why (no body): credentials the backend does
    /// not accept, a policy that denies the key, or a missing key without the right to list.
    /// A one-byte GET of the same object answers with the code, which replaces the bare 403
    /// (a runner must tell refused credentials, which fail every call, from one key denied).
    async fn explain_bare_403(&self, ctx: Ctx<'_>, err: Error) -> Error {
        if !matches!(&err, Error::Remote { status: 403, code, .. } if code == "Http403") {
            return err;
        }
        let Some(key) = ctx.key else { return err };
        match self
            .client
            .get_object()
            .bucket(ctx.bucket)
            .key(key)
            .set_version_id(ctx.version_id.map(str::to_owned))
            .range("bytes=0-0")
            .send()
            .await
        {
            // Only a refusal that says why replaces the bare one (a GET that times out, or
            // answers 416, says nothing of the HEAD's 403).
            Err(e) => match self.err(ctx, e) {
                explained @ Error::Remote { status: 403, .. } if !matches!(&explained, Error::Remote { code, .. } if code == "Http403") => {
                    explained
                }
                _ => err,
            },
            Ok(_) => err,
        }
    }

    async fn missing_bucket_or(&self, bucket: &BucketName, err: Error) -> Error {
        let from_404 = matches!(
            err,
            Error::NoSuchKey {
                delete_marker: None,
                ..
            } | Error::NoSuchVersion { .. }
        );
        if from_404
            && let Err(e) = self
                .client
                .head_bucket()
                .bucket(bucket.as_str())
                .send()
                .await
            && let bucket_err @ Error::NoSuchBucket { .. } =
                self.err(Ctx::bucket(bucket.as_str()), e)
        {
            return bucket_err;
        }
        err
    }

    /// Deletes what a refused write left behind; failures are only logged.
    async fn discard(&self, bucket: &str, key: &str, version_id: Option<&str>) {
        let req = self.client.delete_object().bucket(bucket).key(key);
        if let Err(e) = req
            .set_version_id(version_id.map(str::to_owned))
            .send()
            .await
        {
            let e = self.err(Ctx::key(bucket, key), e);
            tracing::warn!(store = %self.name, bucket, key, error = %e,
                "could not delete an object that failed verification");
        }
    }
}

#[async_trait]
impl Store for S3Store {
    fn name(&self) -> &str {
        &self.name
    }

    fn caps(&self) -> Caps {
        Caps {
            versioning: true,
            tagging: true,
            path_semantics: false,
            local: false,
            keeps_modified: false,
        }
    }

    async fn list_buckets(&self) -> Result<Vec<BucketInfo>> {
        bucket::list(self).await
    }

    async fn create_bucket(&self, bucket: &BucketName) -> Result<()> {
        bucket::create(self, bucket).await
    }

    async fn delete_bucket(&self, bucket: &BucketName) -> Result<()> {
        bucket::delete(self, bucket).await
    }

    async fn head_bucket(&self, bucket: &BucketName) -> Result<BucketInfo> {
        bucket::head(self, bucket).await
    }

    async fn get_versioning(&self, bucket: &BucketName) -> Result<Versioning> {
        bucket::versioning(self, bucket).await
    }

    async fn set_versioning(&self, bucket: &BucketName, state: Versioning) -> Result<()> {
        bucket::set_versioning(self, bucket, state).await
    }

    async fn get_bucket_tags(&self, bucket: &BucketName) -> Result<Option<Tags>> {
        bucket::tags(self, bucket).await
    }

    async fn put_bucket_tags(&self, bucket: &BucketName, tags: Option<Tags>) -> Result<()> {
        bucket::put_tags(self, bucket, tags).await
    }

    async fn put_object(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        body: ByteStream,
        opts: PutOptions,
    ) -> Result<ObjectMeta> {
        self.put_impl(bucket, key, body, opts).await
    }

    async fn get_object(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        opts: GetOptions,
    ) -> Result<GetResult> {
        let ctx = Ctx::key(bucket.as_str(), key.as_str()).version(opts.version_id.as_deref());
        // Without response checksum validation there is nothing the SDK adds to a GET.
        if let Some(lean) = self.lean.as_ref().filter(|_| !self.supported()) {
            let (head, body) = lean
                .get(&self.name, ctx, opts.range.map(range_header))
                .await?;
            let header = |name: &str| head.headers.get(name).and_then(|v| v.to_str().ok());
            let length = header("content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let served = opts
                .range
                .and(header("content-range"))
                .and_then(parse_content_range);
            let (range, size) = match served {
                Some((r, total)) => (Some(r), total.unwrap_or(r.1.saturating_add(1))),
                None => (None, length),
            };
            let meta =
                lean::meta_from_head(key.clone(), &head.headers, size, opts.version_id.is_none());
            return Ok(GetResult { meta, range, body });
        }
        let mut req = self
            .client
            .get_object()
            .bucket(bucket.as_str())
            .key(key.as_str())
            .set_version_id(opts.version_id.clone());
        if let Some(r) = opts.range {
            req = req.range(range_header(r));
        }
        // The object's checksum is asked for in either mode (one sent as a header is kept
        // in either); the SDK then checks a whole object's against its body.
        req = req.checksum_mode(sdk::ChecksumMode::Enabled);
        let out = req.send().await.map_err(|e| self.err(ctx, e))?;
        let length = to_u64(out.content_length());
        let served = opts
            .range
            .and(out.content_range())
            .and_then(parse_content_range);
        let (range, size) = match served {
            Some((r, total)) => (Some(r), total.unwrap_or(r.1.saturating_add(1))),
            None => (None, length),
        };
        let meta = meta_of!(&out, key.clone(), size, opts.version_id.is_none());
        Ok(GetResult {
            meta,
            range,
            body: download_stream(out.body),
        })
    }

    async fn head_object(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        version_id: Option<&str>,
    ) -> Result<ObjectMeta> {
        let ctx = Ctx::key(bucket.as_str(), key.as_str()).version(version_id);
        let mut req = self
            .client
            .head_object()
            .bucket(bucket.as_str())
            .key(key.as_str())
            .set_version_id(version_id.map(str::to_owned));
        // A HEAD has no body to validate: the object's checksum is asked for in either mode
        // (a small body's is stored in either; see `put`).
        req = req.checksum_mode(sdk::ChecksumMode::Enabled);
        let out = match req.send().await {
            Ok(out) => out,
            Err(e) => {
                let err = self.explain_bare_403(ctx, self.err(ctx, e)).await;
                return Err(self.missing_bucket_or(bucket, err).await);
            }
        };
        Ok(meta_of!(
            &out,
            key.clone(),
            to_u64(out.content_length()),
            version_id.is_none()
        ))
    }

    async fn delete_object(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        version_id: Option<&str>,
    ) -> Result<DeleteResult> {
        let ctx = Ctx::key(bucket.as_str(), key.as_str()).version(version_id);
        let out = self
            .client
            .delete_object()
            .bucket(bucket.as_str())
            .key(key.as_str())
            .set_version_id(version_id.map(str::to_owned))
            .send()
            .await
            .map_err(|e| self.err(ctx, e))?;
        Ok(DeleteResult {
            version_id: out.version_id().or(version_id).map(str::to_owned),
            delete_marker: out.delete_marker().unwrap_or(false),
        })
    }

    async fn copy_object(
        &self,
        src_bucket: &BucketName,
        src_key: &ObjectKey,
        dst_bucket: &BucketName,
        dst_key: &ObjectKey,
        opts: CopyOptions,
    ) -> Result<ObjectMeta> {
        let src_version = opts.source_version_id.as_deref();
        let source = copy_source(src_bucket.as_str(), src_key.as_str(), src_version);
        let mut req = self
            .client
            .copy_object()
            .bucket(dst_bucket.as_str())
            .key(dst_key.as_str())
            .copy_source(source);
        match &opts.attrs {
            Some(attrs) => {
                req = req.metadata_directive(sdk::MetadataDirective::Replace);
                req = with_attrs!(req, attrs);
            }
            None => req = req.metadata_directive(sdk::MetadataDirective::Copy),
        }
        match &opts.tags {
            Some(tags) => {
                req = req.tagging_directive(sdk::TaggingDirective::Replace);
                if !tags.is_empty() {
                    req = req.tagging(tagging_header(tags));
                }
            }
            None => req = req.tagging_directive(sdk::TaggingDirective::Copy),
        }
        if let Some(a) = opts.checksum_algorithm {
            req = req.checksum_algorithm(sdk_algorithm(a));
        }
        // Missing keys and versions are the source's; a missing bucket is named by the answer.
        let ctx = Ctx::key(src_bucket.as_str(), src_key.as_str()).version(src_version);
        let out = req
            .customize()
            .config_override(Self::long_call())
            .send()
            .await
            .map_err(|e| self.err(ctx, e))?;
        // Read back what was written (S3 does not say its size); the version when there is one.
        let version = out.version_id().filter(|v| *v != NULL_VERSION);
        let mut meta = self.head_object(dst_bucket, dst_key, version).await?;
        meta.is_latest = true;
        Ok(meta)
    }

    async fn get_object_tags(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        version_id: Option<&str>,
    ) -> Result<(String, Tags)> {
        let ctx = Ctx::key(bucket.as_str(), key.as_str()).version(version_id);
        let out = self
            .client
            .get_object_tagging()
            .bucket(bucket.as_str())
            .key(key.as_str())
            .set_version_id(version_id.map(str::to_owned))
            .send()
            .await
            .map_err(|e| self.err(ctx, e))?;
        Ok((
            version_or_null(out.version_id().or(version_id)),
            from_sdk_tags(out.tag_set()),
        ))
    }

    async fn put_object_tags(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        version_id: Option<&str>,
        tags: Tags,
    ) -> Result<String> {
        let ctx = Ctx::key(bucket.as_str(), key.as_str()).version(version_id);
        if tags.is_empty() {
            // The same on S3, and what every server takes (moto fails an empty PutObjectTagging
            // with a 500, which a catch-up worker would retry forever).
            let out = self
                .client
                .delete_object_tagging()
                .bucket(bucket.as_str())
                .key(key.as_str())
                .set_version_id(version_id.map(str::to_owned))
                .send()
                .await
                .map_err(|e| self.err(ctx, e))?;
            return Ok(version_or_null(out.version_id().or(version_id)));
        }
        let tagging = sdk::Tagging::builder()
            .set_tag_set(Some(sdk_tags(&tags).map_err(Error::InvalidArgument)?))
            .build()
            .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        let out = self
            .client
            .put_object_tagging()
            .bucket(bucket.as_str())
            .key(key.as_str())
            .set_version_id(version_id.map(str::to_owned))
            .tagging(tagging)
            .send()
            .await
            .map_err(|e| self.err(ctx, e))?;
        Ok(version_or_null(out.version_id().or(version_id)))
    }

    async fn list_objects(&self, bucket: &BucketName, query: &ListQuery) -> Result<ListPage> {
        list::objects(self, bucket, query).await
    }

    async fn list_versions(
        &self,
        bucket: &BucketName,
        query: &VersionsQuery,
    ) -> Result<VersionsPage> {
        list::versions(self, bucket, query).await
    }

    async fn create_multipart(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        opts: PutOptions,
    ) -> Result<String> {
        multipart::create(self, bucket, key, opts).await
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
        multipart::upload_part(self, bucket, key, upload_id, part_number, body, opts).await
    }

    async fn complete_multipart(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &str,
        parts: &[CompletedPart],
        checksum: Option<&crate::store::Checksum>,
    ) -> Result<ObjectMeta> {
        multipart::complete(self, bucket, key, upload_id, parts, checksum).await
    }

    async fn abort_multipart(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &str,
    ) -> Result<()> {
        multipart::abort(self, bucket, key, upload_id).await
    }

    async fn part_range(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        version_id: Option<&str>,
        part: u32,
    ) -> Result<crate::store::PartRange> {
        multipart::part_range(self, bucket, key, version_id, part).await
    }

    async fn list_parts(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &str,
        part_number_marker: Option<u32>,
        max_parts: usize,
    ) -> Result<PartsPage> {
        list::parts(self, bucket, key, upload_id, part_number_marker, max_parts).await
    }

    async fn list_uploads(&self, bucket: &BucketName, query: &UploadsQuery) -> Result<UploadsPage> {
        list::uploads(self, bucket, query).await
    }

    /// One HeadBucket, not retried: any HTTP answer (a 403, a 503 SlowDown) is a backend
    /// that is there; only no answer is not.
    async fn alive(&self, bucket: &BucketName) -> std::result::Result<(), String> {
        let once = aws_sdk_s3::config::Builder::new()
            .retry_config(aws_sdk_s3::config::retry::RetryConfig::disabled());
        match self
            .client
            .head_bucket()
            .bucket(bucket.as_str())
            .customize()
            .config_override(once)
            .send()
            .await
        {
            Ok(_) | Err(SdkError::ServiceError(_)) => Ok(()),
            Err(e) => Err(error::chain(&e)),
        }
    }
}

/// The metadata of an object a single PUT has just written (S3 does not return its time:
/// this machine's clock stands in): its version id, ETag and whether that ETag is opaque.
fn written(
    key: &ObjectKey,
    (version_id, etag, opaque_etag): (String, String, bool),
    size: u64,
    attrs: crate::store::types::ObjectAttrs,
    checksum: Option<crate::store::types::Checksum>,
    tags: &Tags,
) -> ObjectMeta {
    ObjectMeta {
        key: key.clone(),
        version_id,
        is_latest: true,
        delete_marker: false,
        size,
        etag,
        last_modified: OffsetDateTime::now_utc(),
        attrs,
        checksum,
        tag_count: tags.len(),
        parts_count: None,
        opaque_etag,
    }
}
