//! Plain data passed across the [`Store`](super::Store) trait: object metadata, options,
//! listing pages. Store-neutral: no s3s or aws-sdk types appear here, so the gateway and the
//! jobs speak one vocabulary whatever the backend.

use std::collections::BTreeMap;
use std::pin::Pin;

use bytes::Bytes;
use futures::Stream;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::key::ObjectKey;

/// An object body: a stream of chunks. Stores must not collect it whole.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, std::io::Error>> + Send>>;

/// The version id S3 uses for objects written while versioning was off or suspended.
pub const NULL_VERSION: &str = "null";

/// The largest object S3 takes in one PUT (5 GiB).
pub const MAX_PUT_BYTES: u64 = 5 * 1024 * 1024 * 1024;

/// The `Content-Type` of an object stored without one, as S3 answers it.
pub const DEFAULT_CONTENT_TYPE: &str = "binary/octet-stream";

/// Checksum algorithms S3 clients may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ChecksumAlgorithm {
    Crc32,
    Crc32c,
    Crc64Nvme,
    Sha1,
    Sha256,
}

impl ChecksumAlgorithm {
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_uppercase().as_str() {
            "CRC32" => Some(Self::Crc32),
            "CRC32C" => Some(Self::Crc32c),
            "CRC64NVME" => Some(Self::Crc64Nvme),
            "SHA1" => Some(Self::Sha1),
            "SHA256" => Some(Self::Sha256),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Crc32 => "CRC32",
            Self::Crc32c => "CRC32C",
            Self::Crc64Nvme => "CRC64NVME",
            Self::Sha1 => "SHA1",
            Self::Sha256 => "SHA256",
        }
    }

    /// The `x-amz-checksum-*` header carrying this algorithm's value.
    pub fn header_name(self) -> &'static str {
        match self {
            Self::Crc32 => "x-amz-checksum-crc32",
            Self::Crc32c => "x-amz-checksum-crc32c",
            Self::Crc64Nvme => "x-amz-checksum-crc64nvme",
            Self::Sha1 => "x-amz-checksum-sha1",
            Self::Sha256 => "x-amz-checksum-sha256",
        }
    }

    /// A CRC, whose values over consecutive parts combine into the whole object's.
    pub fn is_crc(self) -> bool {
        matches!(self, Self::Crc32 | Self::Crc32c | Self::Crc64Nvme)
    }

    pub const ALL: [ChecksumAlgorithm; 5] = [
        Self::Crc32,
        Self::Crc32c,
        Self::Crc64Nvme,
        Self::Sha1,
        Self::Sha256,
    ];
}

/// A stored checksum: algorithm, base64 value, and whether it is a full-object checksum or
/// a composite of part checksums (`value-N`, as AWS returns for multipart uploads).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checksum {
    pub algorithm: ChecksumAlgorithm,
    pub value: String,
    #[serde(default)]
    pub composite: bool,
}

/// Standard HTTP headers stored with an object and returned on GET/HEAD.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectAttrs {
    pub content_type: Option<String>,
    pub cache_control: Option<String>,
    pub content_disposition: Option<String>,
    pub content_encoding: Option<String>,
    pub content_language: Option<String>,
    pub expires: Option<String>,
    /// `x-amz-meta-*` user metadata, names lower-cased without the prefix.
    pub user_metadata: BTreeMap<String, String>,
    /// The storage class an object was written with, when not STANDARD (S3 names STANDARD
    /// by saying nothing). An fs store keeps it; an s3 store does not send it (a MinIO
    /// refuses most classes) and reports the class its backend gives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
    /// `x-amz-website-redirect-location`: kept and named back, as S3 does (Ferry serves no
    /// website; a migration through it keeps the redirects).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub website_redirect: Option<String>,
}

/// Object tags, in the order the client gave them.
pub type Tags = Vec<(String, String)>;

/// Everything known about one version of an object (or a delete marker).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    pub key: ObjectKey,
    /// `"null"` ([`NULL_VERSION`]) for objects written while versioning was off or suspended.
    pub version_id: String,
    pub is_latest: bool,
    pub delete_marker: bool,
    pub size: u64,
    /// The ETag without quotes: hex MD5 for single-part objects, `hex-N` for multipart.
    pub etag: String,
    pub last_modified: OffsetDateTime,
    pub attrs: ObjectAttrs,
    pub checksum: Option<Checksum>,
    pub tag_count: usize,
    pub parts_count: Option<u32>,
    /// The ETag has the form of an MD5 but is not the body's (S3 with SSE-KMS or SSE-C): it
    /// identifies the content but cannot check a copy of it. GET and HEAD can tell; listing
    /// entries cannot, and say `false`.
    pub opaque_etag: bool,
}

/// Digests the store computed over a body it received, handed to a [`Verifier`] before the
/// write becomes visible.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digests {
    pub size: u64,
    pub md5: [u8; 16],
    pub checksum: Option<Checksum>,
}

/// A body's digests computed once by the producer that hands the same bytes to several
/// stores (a namespace bucket's tee), set before any of their streams ends cleanly. A store
/// given one takes its digests from here instead of hashing the body a second time.
#[derive(Debug, Clone, Default)]
pub struct SharedDigests(std::sync::Arc<std::sync::OnceLock<Digests>>);

impl SharedDigests {
    pub fn set(&self, digests: Digests) {
        let _ = self.0.set(digests);
    }

    /// The digests, once the body has ended.
    pub fn get(&self) -> Result<Digests, super::Error> {
        self.0.get().cloned().ok_or_else(|| {
            super::Error::Index("the body ended before its shared digests were set".into())
        })
    }
}

/// Checks a received body's digests before it is committed (Content-MD5, `x-amz-checksum-*`
/// headers or trailers). Returning an error aborts the write: nothing becomes visible.
pub type Verifier = Box<dyn FnOnce(&Digests) -> Result<(), super::Error> + Send>;

/// Options of a PUT (also used to create a multipart upload).
#[derive(Default)]
pub struct PutOptions {
    pub attrs: ObjectAttrs,
    pub tags: Tags,
    /// The checksum algorithm to compute and store, if the client asked for one.
    pub checksum_algorithm: Option<ChecksumAlgorithm>,
    /// The body length the client declared, if any. A body of another length is refused.
    pub size_hint: Option<u64>,
    /// The body's MD5 as its source recorded it (a copy from an object whose ETag is a plain
    /// MD5). A store whose backend checks `Content-MD5` may send this instead of hashing the
    /// body itself (it still verifies what the backend stored); other stores ignore it.
    pub source_md5: Option<[u8; 16]>,
    /// Digests of the body computed by its producer (see [`SharedDigests`]); they cover the
    /// checksum algorithm above. Stores use them instead of hashing.
    pub shared_digests: Option<SharedDigests>,
    /// The caller needs no MD5 of the body: its verifier ignores [`Digests::md5`] and it
    /// compares no ETag. A store that would hash MD5 only to send `Content-MD5` may protect
    /// the transfer with a checksum instead (the s3 store: `checksum_algorithm`, or CRC32C,
    /// to a backend that checks and echoes it); the MD5 handed to `verify` is then all zeros.
    /// On `create_multipart` it says the caller will give every part's [`Self::checksum`] of
    /// `checksum_algorithm`, so the upload may be created with that algorithm.
    pub checksum_suffices: bool,
    /// The body's checksum, computed by the caller before sending (a part of a local file,
    /// read once to checksum it). With `checksum_suffices`, the s3 store sends it as a header
    /// for the backend to check instead of hashing the body's MD5 for its ETag (unless the
    /// backend was found not to check it, or to refuse the header), and refuses a body that
    /// does not match it. Other stores ignore it.
    pub checksum: Option<Checksum>,
    /// On `create_multipart`: the upload's checksum covers the whole object (S3's
    /// `FULL_OBJECT` type, CRC algorithms only), combined from its parts' CRCs, instead of
    /// being a composite of the parts' checksums (`COMPOSITE`, `value-N`). Ignored elsewhere.
    pub full_object_checksum: bool,
    pub verify: Option<Verifier>,
}

impl std::fmt::Debug for PutOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PutOptions")
            .field("attrs", &self.attrs)
            .field("tags", &self.tags)
            .field("checksum_algorithm", &self.checksum_algorithm)
            .field("size_hint", &self.size_hint)
            .finish_non_exhaustive()
    }
}

/// A byte range as clients send it in `Range: bytes=…`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// `bytes=first-last`, inclusive.
    FromTo(u64, u64),
    /// `bytes=first-`
    From(u64),
    /// `bytes=-n`: the last n bytes.
    Suffix(u64),
}

impl ByteRange {
    /// Resolves against an object size to an inclusive `(first, last)`, or `None` when the
    /// range is not satisfiable (S3 answers `InvalidRange`, 416).
    pub fn resolve(self, size: u64) -> Option<(u64, u64)> {
        match self {
            Self::FromTo(first, last) if first < size && first <= last => {
                Some((first, last.min(size - 1)))
            }
            Self::From(first) if first < size => Some((first, size - 1)),
            Self::Suffix(n) if n > 0 && size > 0 => Some((size.saturating_sub(n), size - 1)),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct GetOptions {
    pub version_id: Option<String>,
    pub range: Option<ByteRange>,
}

pub struct GetResult {
    pub meta: ObjectMeta,
    /// The inclusive byte range served, when a range was asked for.
    pub range: Option<(u64, u64)>,
    pub body: ByteStream,
}

/// What a DELETE did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteResult {
    /// The version removed, or the version id of the delete marker created.
    pub version_id: Option<String>,
    /// True when a delete marker was created, or a delete marker was removed.
    pub delete_marker: bool,
}

/// Options of a store-side copy.
#[derive(Debug, Clone, Default)]
pub struct CopyOptions {
    pub source_version_id: Option<String>,
    /// `Some` replaces the metadata (`x-amz-metadata-directive: REPLACE`); `None` copies it.
    pub attrs: Option<ObjectAttrs>,
    /// `Some` replaces the tags (`x-amz-tagging-directive: REPLACE`); `None` copies them.
    pub tags: Option<Tags>,
    pub checksum_algorithm: Option<ChecksumAlgorithm>,
}

#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub prefix: String,
    pub delimiter: Option<String>,
    /// Return keys (and common prefixes) strictly after this one.
    pub start_after: Option<String>,
    pub max_keys: usize,
}

#[derive(Debug, Clone, Default)]
pub struct ListPage {
    pub objects: Vec<ObjectMeta>,
    pub common_prefixes: Vec<String>,
    /// Keys the store holds that Ferry cannot name ([`ObjectKey::parse`](super::ObjectKey)
    /// refuses them: over 1024 bytes, or with a NUL byte), in key order: whoever walks a
    /// listing reports them rather than miss them. Only s3 stores have any.
    pub unnamed: Vec<UnnamedKey>,
    /// Set when the listing is truncated: pass it as `start_after` for the next page.
    pub next_marker: Option<String>,
}

/// A listed key Ferry cannot name, with why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnnamedKey {
    pub key: String,
    pub size: u64,
    pub why: String,
}

#[derive(Debug, Clone, Default)]
pub struct VersionsQuery {
    pub prefix: String,
    pub delimiter: Option<String>,
    pub key_marker: Option<String>,
    pub version_id_marker: Option<String>,
    pub max_keys: usize,
}

#[derive(Debug, Clone, Default)]
pub struct VersionsPage {
    /// Versions and delete markers, by key ascending, newest first within a key.
    pub versions: Vec<ObjectMeta>,
    pub common_prefixes: Vec<String>,
    pub next_key_marker: Option<String>,
    pub next_version_id_marker: Option<String>,
}

/// A bucket's versioning state, as S3 names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Versioning {
    Unversioned,
    Enabled,
    Suspended,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketInfo {
    pub name: String,
    pub created: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartInfo {
    pub part_number: u32,
    pub etag: String,
    pub size: u64,
    pub last_modified: OffsetDateTime,
    pub checksum: Option<Checksum>,
}

#[derive(Debug, Clone, Default)]
pub struct PartsPage {
    pub parts: Vec<PartInfo>,
    pub next_part_number_marker: Option<u32>,
    /// The checksum algorithm the upload was created with, as the store reports it.
    pub checksum_algorithm: Option<ChecksumAlgorithm>,
    /// The upload's checksum will cover the whole object (see
    /// [`PutOptions::full_object_checksum`]).
    pub full_object_checksum: bool,
    /// The storage class the upload was begun with, when not STANDARD.
    pub storage_class: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadInfo {
    pub key: ObjectKey,
    pub upload_id: String,
    pub initiated: OffsetDateTime,
    /// The storage class the upload was begun with, when not STANDARD.
    pub storage_class: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct UploadsQuery {
    pub prefix: String,
    /// Keys with this after the prefix roll up into one common prefix, as in a listing.
    pub delimiter: Option<String>,
    /// Uploads of keys after this one are listed; with `upload_id_marker`, also those of
    /// this key whose ids come after it.
    pub key_marker: Option<String>,
    pub upload_id_marker: Option<String>,
    pub max_uploads: usize,
}

#[derive(Debug, Clone, Default)]
pub struct UploadsPage {
    pub uploads: Vec<UploadInfo>,
    pub common_prefixes: Vec<String>,
    pub next_key_marker: Option<String>,
    pub next_upload_id_marker: Option<String>,
}

/// Where one part of a version lies (see [`Store::part_range`](super::Store::part_range)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartRange {
    /// First and last byte; `None` for an empty part.
    pub range: Option<(u64, u64)>,
    /// The ETag of the version the range belongs to: a read of the part checks it got the
    /// same version.
    pub etag: String,
    /// The version's part count, as `x-amz-mp-parts-count` reports it.
    pub parts: u32,
}

/// One part named in a CompleteMultipartUpload request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletedPart {
    pub part_number: u32,
    /// The ETag the client got for the part, without quotes.
    pub etag: String,
    /// The part's checksum, for an upload created with a checksum algorithm (S3 wants each
    /// one named); `None` when the store should ask its backend or none is needed.
    pub checksum: Option<Checksum>,
    /// The part's checksum as an S3 client named it at completion: a store refuses the
    /// completion (`InvalidPart`) when it differs from the part's own checksum of that
    /// algorithm, or has its backend check it; nothing to check against, it is ignored.
    pub claimed: Option<Checksum>,
}

/// What a store can do; differences between stores are data, so one conformance suite
/// serves them all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    pub versioning: bool,
    pub tagging: bool,
    /// Maps keys to file paths, so `a` and `a/b` cannot both exist.
    pub path_semantics: bool,
    /// The data is on this machine: reading it twice costs a copy from the page cache,
    /// not a second transfer (a copy engine may read a part once to checksum it up front).
    pub local: bool,
    /// An object's modification time can be set ([`super::Store::set_modified`]): a copy
    /// keeps its source's, as rsync and rclone keep a local file's. An S3 backend dates an
    /// object by its upload instead.
    pub keeps_modified: bool,
}
