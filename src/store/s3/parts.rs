//! Parts whose checksum the caller computed before sending them (a copy from a local file,
//! see [`PutOptions::checksum`]): they go with that checksum as a header, which a backend
//! that checks it verifies, instead of being hashed here for the MD5 behind their ETag.
//!
//! Owns what the store has learned about its backend's part checksums ([`PartEcho`]), found
//! out once per store with one-byte parts under the number of the part about to go (the real
//! part then replaces them): a part with a wrong checksum that is refused (`BadDigest`, or
//! Garage's `InvalidDigest`) means the backend checks; one that is taken (moto) means it does
//! not. A refusal that names the checksum is not yet an answer (it may be the header itself
//! that is refused): a second part with the right checksum tells the two apart.
//!
//! Whatever was found, a part of an upload the caller created with the algorithm carries its
//! checksum, so completion can name every part's (S3 and MinIO refuse an upload whose parts
//! lack the checksum it was created with); only a backend that refuses the header gets parts
//! without it, checked by their ETag. A backend that does not check gets its parts' ETags
//! compared with their MD5, as every other part's.

use aws_sdk_s3::operation::upload_part::UploadPartOutput;
use aws_sdk_s3::operation::upload_part::builders::UploadPartFluentBuilder;
use aws_sdk_s3::primitives::ByteStream as SdkByteStream;
use bytes::Bytes;
use time::OffsetDateTime;

use super::S3Store;
use super::body::{Known, Prepared, prepare_upload};
use super::convert::{
    checksum_of, etag_contradicts_md5, sdk_algorithm, trim_etag, with_checksum_value,
};
use super::error::Ctx;
use super::put::{refuses_header, wrong};
use crate::store::digest::ChecksumHasher;
use crate::store::types::Verifier;
use crate::store::{
    BucketName, ByteStream, Checksum, Error, ObjectKey, PartInfo, PutOptions, Result,
};

/// What a backend does with an `x-amz-checksum-*` header (on a part; [`super::put`] finds
/// out the same of a whole object's PUT).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum HeaderChecks {
    /// Verifies it and refuses a part that does not match.
    Checks,
    /// Takes the part whatever it says.
    Ignores,
    /// Refuses the header (or an upload created with a checksum algorithm) itself.
    Refuses,
}

/// What the store has learned about part checksums on its backend (see the module docs).
#[derive(Debug, Default)]
pub(super) struct PartEcho(tokio::sync::OnceCell<HeaderChecks>);

impl PartEcho {
    /// What is known so far.
    pub fn known(&self) -> Option<HeaderChecks> {
        self.0.get().copied()
    }

    /// What the backend does, found out with `t`'s part number the first time (calls at the
    /// same time wait for that probe; a probe that fails is tried again next time).
    pub async fn find_out(&self, t: &Target<'_>, sent: &Checksum) -> Result<HeaderChecks> {
        self.0.get_or_try_init(|| probe(t, sent)).await.copied()
    }

    /// Records that the backend refused an upload's checksum algorithm.
    pub fn refused(&self) {
        let _ = self.0.set(HeaderChecks::Refuses);
    }
}

/// One part of one upload on the backend.
pub(super) struct Target<'a> {
    pub store: &'a S3Store,
    pub bucket: &'a BucketName,
    pub key: &'a ObjectKey,
    pub upload_id: &'a str,
    pub number: i32,
}

impl Target<'_> {
    pub fn request(&self) -> UploadPartFluentBuilder {
        self.store
            .client
            .upload_part()
            .bucket(self.bucket.as_str())
            .key(self.key.as_str())
            .upload_id(self.upload_id)
            .part_number(self.number)
    }

    pub fn ctx(&self) -> Ctx<'_> {
        Ctx::key(self.bucket.as_str(), self.key.as_str()).upload(self.upload_id)
    }

    /// Sends a one-byte part with `checksum` (unsigned payload: a byte damaged on the way
    /// must not be refused for its payload hash instead, which would say nothing).
    async fn one_byte(&self, checksum: &Checksum) -> Result<()> {
        let req = self
            .request()
            .body(SdkByteStream::from(Bytes::from_static(ONE_BYTE)))
            .content_length(1);
        with_checksum_value!(req, checksum)
            .checksum_algorithm(sdk_algorithm(checksum.algorithm))
            .customize()
            .disable_payload_signing()
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.store.err(self.ctx(), e))
    }
}

const ONE_BYTE: &[u8] = b"\0";

/// Finds out what the backend does with part checksums (see the module docs).
async fn probe(t: &Target<'_>, sent: &Checksum) -> Result<HeaderChecks> {
    let mut h = ChecksumHasher::new(sent.algorithm);
    h.update(ONE_BYTE);
    let right = h.finalize();
    let found = match t.one_byte(&wrong(&right)).await {
        Ok(()) => HeaderChecks::Ignores,
        Err(Error::BadDigest { .. }) => HeaderChecks::Checks,
        Err(Error::Remote { code, .. }) if code == "InvalidDigest" => HeaderChecks::Checks,
        Err(e) if refuses_header(&e) => match t.one_byte(&right).await {
            Ok(()) => HeaderChecks::Checks,
            Err(e) if refuses_header(&e) => HeaderChecks::Refuses,
            Err(e) => return Err(e),
        },
        Err(e) => return Err(e),
    };
    let store = &t.store.name;
    match found {
        HeaderChecks::Checks => {}
        HeaderChecks::Ignores => tracing::info!(%store,
            "the backend does not check checksums on parts; each part's ETag is checked instead"),
        HeaderChecks::Refuses => tracing::info!(%store,
            "the backend refuses checksums on parts; each part's ETag is checked instead"),
    }
    Ok(found)
}

/// Sends a part with the checksum its caller computed up front, to a backend that takes the
/// header. A body that does not match it is refused before its last chunk (it changed since
/// it was checksummed). Its MD5 is computed and compared with the returned ETag only when
/// the backend does not check the checksum (`checks`).
pub(super) async fn upload_given(
    t: &Target<'_>,
    body: ByteStream,
    opts: PutOptions,
    sent: Checksum,
    checks: HeaderChecks,
) -> Result<PartInfo> {
    let expected = sent.clone();
    let theirs = opts.verify;
    let verify: Verifier = Box::new(move |d| {
        if d.checksum.as_ref().map(|c| &c.value) != Some(&expected.value) {
            return Err(Error::BadDigest {
                what: format!(
                    "{} checksum computed before sending (the source changed since?)",
                    expected.algorithm.as_str()
                ),
            });
        }
        theirs.map_or(Ok(()), |v| v(d))
    });
    let md5 = checks != HeaderChecks::Checks;
    let known = Known {
        checksum_only: !md5,
        ..Known::default()
    };
    let Prepared {
        body, len, pending, ..
    } = prepare_upload(
        body,
        opts.size_hint,
        Some(sent.algorithm),
        known,
        Some(verify),
    )
    .await?;
    let req = t
        .request()
        .body(body)
        .content_length(i64::try_from(len).unwrap_or(i64::MAX));
    // The signed checksum header covers the body; a payload hash would only cost SHA-256.
    let result = with_checksum_value!(req, &sent)
        .checksum_algorithm(sdk_algorithm(sent.algorithm))
        .customize()
        .config_override(S3Store::long_call())
        .disable_payload_signing()
        .send()
        .await;
    let (out, digests) = pending.settle(&t.store.name, result, |e| t.store.err(t.ctx(), e))?;
    let etag = if md5 {
        part_etag(&out, &digests.md5)?
    } else {
        trim_etag(out.e_tag())
    };
    // An echo that differs says the backend stored something else all the same.
    if let Some(other) =
        checksum_of!(&out, false).filter(|c| c.algorithm == sent.algorithm && c.value != sent.value)
    {
        return Err(Error::BadDigest {
            what: format!(
                "{} checksum: the backend answered {} for the part's {}",
                sent.algorithm.as_str(),
                other.value,
                sent.value
            ),
        });
    }
    Ok(PartInfo {
        part_number: u32::try_from(t.number).unwrap_or_default(),
        etag,
        size: digests.size,
        last_modified: OffsetDateTime::now_utc(),
        checksum: Some(sent),
    })
}

/// The ETag the backend gave a part, refused when it is a plain MD5 other than `md5` (the
/// part was damaged on the way). The part stays until it is uploaded again or the upload is
/// aborted; it cannot be completed without the ETag, which the caller never gets.
pub(super) fn part_etag(out: &UploadPartOutput, md5: &[u8; 16]) -> Result<String> {
    let etag = trim_etag(out.e_tag());
    let sse = (out.server_side_encryption(), out.sse_customer_algorithm());
    if etag_contradicts_md5(&etag, md5, sse.0, sse.1) {
        return Err(Error::BadDigest {
            what: "MD5: the backend's ETag for the part differs (damaged on the way?)".to_owned(),
        });
    }
    Ok(etag)
}
