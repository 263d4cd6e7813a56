//! Where bytes live: the [`Store`] trait, its contract, and its implementations.
//!
//! Owns: the trait every backend implements ([`fs::FsStore`], [`s3::S3Store`]), validated
//! names ([`key`]), store-neutral data types ([`types`]), the store error ([`Error`]) and the
//! conformance suite every store passes ([`conformance`]). Does not own: buckets as clients
//! see them (policies, multi-write), S3 wire formats, or anything about the state database.
//! This module imports nothing else of Ferry's.
//!
//! # Contract
//! - **Atomic visibility.** No reader ever observes a partially written object: a PUT,
//!   multipart complete or copy is invisible until it is whole and durable, then visible at
//!   once. A failed or interrupted write leaves the previous version in place.
//! - **Durability before success.** When a mutating method returns `Ok`, the change survives a
//!   crash of the process or the machine.
//! - **Verification before commit.** A [`PutOptions::verify`] hook runs after the body is
//!   received and before it becomes visible; its error aborts the write.
//! - **Missing things** are errors with meaning: [`Error::NoSuchBucket`], [`Error::NoSuchKey`]
//!   (with the delete marker's version when the latest version is one),
//!   [`Error::NoSuchVersion`], [`Error::NoSuchUpload`]. Deleting a key that does not exist
//!   succeeds, as in S3.
//! - **Versions** follow S3: with versioning enabled every write makes a new version id and a
//!   plain DELETE makes a delete marker; when suspended, writes replace the `"null"` version.
//! - **Listings** are in UTF-8 byte order of keys, paged, and never require the store to hold
//!   a whole bucket in memory.

pub mod conformance;
pub mod digest;
pub mod fs;
pub mod key;
pub mod s3;
pub mod types;
pub mod watched;

use async_trait::async_trait;
use time::OffsetDateTime;

pub use key::{BucketName, NameError, ObjectKey};
pub use types::*;

/// Errors a store reports, by meaning. The gateway maps each to one S3 code in one place.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("bucket {bucket} does not exist")]
    NoSuchBucket { bucket: String },
    #[error("bucket {bucket} already exists")]
    BucketAlreadyExists { bucket: String },
    /// The name is free in the index, but something that is not a folder (a file, a symlink)
    /// sits where the bucket's folder would be.
    #[error("bucket {bucket} cannot be created: {why}")]
    BucketNameTaken { bucket: String, why: String },
    #[error("bucket {bucket} is not empty")]
    BucketNotEmpty { bucket: String },
    #[error("key {key} does not exist in bucket {bucket}")]
    NoSuchKey {
        bucket: String,
        key: String,
        /// The version id of the delete marker when the latest version is one.
        delete_marker: Option<String>,
    },
    #[error("version {version_id} of key {key} does not exist")]
    NoSuchVersion { key: String, version_id: String },
    #[error("version {version_id} of key {key} is a delete marker")]
    IsDeleteMarker {
        key: String,
        version_id: String,
        /// When the marker was made, where the store knows it (S3 sends it as Last-Modified).
        last_modified: Option<time::OffsetDateTime>,
    },
    #[error("multipart upload {upload_id} does not exist")]
    NoSuchUpload { upload_id: String },
    #[error(
        "part {part_number} was not uploaded, or its ETag or checksum does not match the part's"
    )]
    InvalidPart { part_number: u32 },
    #[error("the object has no part {part_number}")]
    InvalidPartNumber { part_number: u32 },
    #[error("parts must be listed in ascending order of part number")]
    InvalidPartOrder,
    #[error("part {part_number} is smaller than the 5 MiB minimum for a part that is not the last")]
    EntityTooSmall { part_number: u32 },
    #[error("key {key} cannot be stored: {why}")]
    PathConflict { key: String, why: String },
    #[error("the requested range is not satisfiable for an object of {size} bytes")]
    InvalidRange { size: u64 },
    /// `what` names the digest the body failed, and whose it was.
    #[error("the body does not match its {what}")]
    BadDigest { what: String },
    #[error("the body ended after {received} of {expected} declared bytes")]
    IncompleteBody { received: u64, expected: u64 },
    /// An `aws-chunked` body whose trailer lacks the checksum its `x-amz-trailer` declared.
    #[error("the body's trailer has no {name} value, which its x-amz-trailer header declared")]
    MalformedTrailer { name: String },
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A request S3 refuses as a whole (`InvalidRequest`): a part whose checksum algorithm is
    /// not its upload's, say.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("{0}")]
    Name(#[from] NameError),
    #[error("store {store} is unavailable: {message}")]
    Unavailable { store: String, message: String },
    #[error("store {store} answered {code}: {message}")]
    Remote {
        store: String,
        code: String,
        message: String,
        status: u16,
    },
    #[error("reading the request body failed: {0}")]
    Body(std::io::Error),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("store index: {0}")]
    Index(String),
    #[error("not implemented by this store: {0}")]
    NotImplemented(&'static str),
    /// The store's files refuse this process (permissions a POSIX user set, a read-only
    /// filesystem): S3's AccessDenied, with what was refused.
    #[error("{0}")]
    Denied(String),
    /// A namespace bucket that is failed over read-only refuses writes until failback.
    #[error("bucket {bucket} is failed over read-only to {to}: writes are refused until failback")]
    ReadOnly { bucket: String, to: String },
    /// A namespace bucket's upload held by a target that no longer takes the bucket's writes
    /// (S3 clients see NoSuchUpload).
    #[error(
        "multipart upload {upload_id} was begun on {holder}, which has not taken bucket \
         {bucket}'s writes since a failover or failback: begin the upload again"
    )]
    UploadElsewhere {
        bucket: String,
        upload_id: String,
        holder: String,
    },
}

impl Error {
    /// Whether trying the same call again later may succeed (the backend was down or
    /// overloaded), as opposed to an answer that will not change.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Unavailable { .. } | Error::Io { .. } | Error::Index(_) | Error::Body(_) => true,
            Error::Remote { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }

    /// Whether the store has no room left (a full disk or quota: ENOSPC, EDQUOT; a remote
    /// that says so, as Ferry's `XFerryStorageFull` or MinIO's `XMinioStorageFull`, 507).
    /// Retrying one write at a time does not cure it; making room does.
    pub fn is_storage_full(&self) -> bool {
        match self {
            Error::Io { source, .. } => {
                matches!(source.raw_os_error(), Some(28 | 122))
                    || source.kind() == std::io::ErrorKind::StorageFull
            }
            Error::Remote { code, status, .. } => {
                *status == 507 || matches!(code.as_str(), "XFerryStorageFull" | "XMinioStorageFull")
            }
            _ => false,
        }
    }

    /// Whether a remote refused the credentials themselves (an unknown access key, a
    /// signature made with the wrong secret, an expired token): every call with them fails
    /// alike, whatever the object. AccessDenied is not one: a policy may deny one key.
    pub fn is_credentials(&self) -> bool {
        matches!(self, Error::Remote { code, .. } if matches!(code.as_str(),
            "InvalidAccessKeyId" | "SignatureDoesNotMatch" | "InvalidToken" | "ExpiredToken"
                | "TokenRefreshRequired" | "InvalidClientTokenId" | "AuthorizationHeaderMalformed"))
    }

    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A place objects live. See the module docs for the contract every implementation keeps.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The store's registered name (used in errors and logs).
    fn name(&self) -> &str;
    fn caps(&self) -> Caps;

    async fn list_buckets(&self) -> Result<Vec<BucketInfo>>;
    async fn create_bucket(&self, bucket: &BucketName) -> Result<()>;
    /// Fails with [`Error::BucketNotEmpty`] while any version or upload remains.
    async fn delete_bucket(&self, bucket: &BucketName) -> Result<()>;
    async fn head_bucket(&self, bucket: &BucketName) -> Result<BucketInfo>;
    async fn get_versioning(&self, bucket: &BucketName) -> Result<Versioning>;
    async fn set_versioning(&self, bucket: &BucketName, state: Versioning) -> Result<()>;
    /// `None` when the bucket has no tag set.
    async fn get_bucket_tags(&self, bucket: &BucketName) -> Result<Option<Tags>>;
    /// `None` deletes the tag set.
    async fn put_bucket_tags(&self, bucket: &BucketName, tags: Option<Tags>) -> Result<()>;

    async fn put_object(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        body: ByteStream,
        opts: PutOptions,
    ) -> Result<ObjectMeta>;
    async fn get_object(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        opts: GetOptions,
    ) -> Result<GetResult>;
    async fn head_object(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        version_id: Option<&str>,
    ) -> Result<ObjectMeta>;
    async fn delete_object(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        version_id: Option<&str>,
    ) -> Result<DeleteResult>;
    /// Copies within this store (server-side where the backend can).
    async fn copy_object(
        &self,
        src_bucket: &BucketName,
        src_key: &ObjectKey,
        dst_bucket: &BucketName,
        dst_key: &ObjectKey,
        opts: CopyOptions,
    ) -> Result<ObjectMeta>;
    async fn get_object_tags(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        version_id: Option<&str>,
    ) -> Result<(String, Tags)>;
    /// Returns the version id the tags were applied to.
    async fn put_object_tags(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        version_id: Option<&str>,
        tags: Tags,
    ) -> Result<String>;

    /// Dates the current version of `key` `at` (a copy keeping its source's time), where
    /// [`Caps::keeps_modified`] says the store can; elsewhere it does nothing.
    async fn set_modified(
        &self,
        _bucket: &BucketName,
        _key: &ObjectKey,
        _at: OffsetDateTime,
    ) -> Result<()> {
        Ok(())
    }

    async fn list_objects(&self, bucket: &BucketName, query: &ListQuery) -> Result<ListPage>;
    async fn list_versions(
        &self,
        bucket: &BucketName,
        query: &VersionsQuery,
    ) -> Result<VersionsPage>;

    async fn create_multipart(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        opts: PutOptions,
    ) -> Result<String>;
    async fn upload_part(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &str,
        part_number: u32,
        body: ByteStream,
        opts: PutOptions,
    ) -> Result<PartInfo>;
    async fn complete_multipart(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &str,
        parts: &[CompletedPart],
        checksum: Option<&Checksum>,
    ) -> Result<ObjectMeta>;
    async fn abort_multipart(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &str,
    ) -> Result<()>;
    /// Where part `part` of a version lies as it was uploaded (S3's `?partNumber=N`); a
    /// version written in one piece is one part. Fails with [`Error::InvalidPartNumber`]
    /// for a part the version does not have.
    async fn part_range(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        version_id: Option<&str>,
        part: u32,
    ) -> Result<PartRange>;
    async fn list_parts(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &str,
        part_number_marker: Option<u32>,
        max_parts: usize,
    ) -> Result<PartsPage>;
    async fn list_uploads(&self, bucket: &BucketName, query: &UploadsQuery) -> Result<UploadsPage>;

    /// Whether the backend answers at all (any answer, an error included): one cheap call
    /// without retries, for [`watched::Watched`]. `Err` says why not.
    async fn alive(&self, bucket: &BucketName) -> std::result::Result<(), String> {
        match self.head_bucket(bucket).await {
            Err(Error::Unavailable { message, .. }) => Err(message),
            _ => Ok(()),
        }
    }
}

/// What an upload says of its checksum (see [`upload_checksums`]).
#[derive(Debug, Default)]
pub struct UploadChecksums {
    /// The algorithm the upload was created with.
    pub algorithm: Option<ChecksumAlgorithm>,
    /// Its checksum will cover the whole object (`FULL_OBJECT`).
    pub full_object: bool,
    /// The checksum of that algorithm each part carries, by part number.
    pub parts: std::collections::HashMap<u32, Checksum>,
}

/// An upload's checksum algorithm and type, and the checksum of that algorithm each part
/// carries, read from `list_parts` page by page (what CompleteMultipartUpload must name for
/// an upload created with an algorithm).
pub async fn upload_checksums(
    store: &dyn Store,
    bucket: &BucketName,
    key: &ObjectKey,
    upload_id: &str,
) -> Result<UploadChecksums> {
    let mut found = UploadChecksums::default();
    let mut marker = None;
    loop {
        let page = store
            .list_parts(bucket, key, upload_id, marker, 1000)
            .await?;
        let Some(algorithm) = page.checksum_algorithm else {
            return Ok(found);
        };
        found.algorithm = Some(algorithm);
        found.full_object = page.full_object_checksum;
        for p in page.parts {
            if let Some(c) = p.checksum.filter(|c| c.algorithm == algorithm) {
                found.parts.insert(p.part_number, c);
            }
        }
        match page.next_part_number_marker {
            Some(m) if Some(m) != marker => marker = Some(m),
            _ => return Ok(found),
        }
    }
}
