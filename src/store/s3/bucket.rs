//! Bucket operations: list, create (asking first, since us-east-1 answers 200 to re-creating
//! one's own bucket), delete, head (with the creation date ListBuckets knows), versioning
//! and bucket tags.

use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::types as sdk;
use time::OffsetDateTime;

use super::S3Store;
use super::convert::{from_sdk_tags, sdk_tags, to_time};
use super::error::Ctx;
use crate::store::{BucketInfo, BucketName, Error, Result, Store, Tags, Versioning};

pub(super) async fn list(s: &S3Store) -> Result<Vec<BucketInfo>> {
    let mut buckets = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let out = s
            .client
            .list_buckets()
            .set_continuation_token(token.clone())
            .send()
            .await
            .map_err(|e| s.err(Ctx::default(), e))?;
        buckets.extend(out.buckets().iter().filter_map(|b| {
            Some(BucketInfo {
                name: b.name()?.to_owned(),
                created: to_time(b.creation_date()),
            })
        }));
        match out.continuation_token() {
            Some(t) if !t.is_empty() && token.as_deref() != Some(t) => token = Some(t.to_owned()),
            _ => return Ok(buckets),
        }
    }
}

pub(super) async fn create(s: &S3Store, bucket: &BucketName) -> Result<()> {
    // In us-east-1, AWS (and moto) answer 200 to re-creating a bucket you own; the
    // contract says BucketAlreadyExists, so ask first.
    if s.client
        .head_bucket()
        .bucket(bucket.as_str())
        .send()
        .await
        .is_ok()
    {
        return Err(Error::BucketAlreadyExists {
            bucket: bucket.to_string(),
        });
    }
    let mut req = s.client.create_bucket().bucket(bucket.as_str());
    if s.region != "us-east-1" {
        let constraint = sdk::BucketLocationConstraint::from(s.region.as_str());
        req = req.create_bucket_configuration(
            sdk::CreateBucketConfiguration::builder()
                .location_constraint(constraint)
                .build(),
        );
    }
    req.send()
        .await
        .map_err(|e| s.err(Ctx::bucket(bucket.as_str()), e))?;
    Ok(())
}

pub(super) async fn delete(s: &S3Store, bucket: &BucketName) -> Result<()> {
    let ctx = Ctx::bucket(bucket.as_str());
    // Unfinished uploads go with the bucket, as on S3 (the backend decides).
    s.client
        .delete_bucket()
        .bucket(bucket.as_str())
        .send()
        .await
        .map_err(|e| s.err(ctx, e))?;
    Ok(())
}

pub(super) async fn head(s: &S3Store, bucket: &BucketName) -> Result<BucketInfo> {
    s.client
        .head_bucket()
        .bucket(bucket.as_str())
        .send()
        .await
        .map_err(|e| s.err(Ctx::bucket(bucket.as_str()), e))?;
    // HeadBucket has no creation date; ListBuckets does (best effort).
    let created = match s.client.list_buckets().prefix(bucket.as_str()).send().await {
        Ok(out) => out
            .buckets()
            .iter()
            .find(|b| b.name() == Some(bucket.as_str()))
            .map(|b| to_time(b.creation_date())),
        Err(e) => {
            let error = s.err(Ctx::default(), e);
            tracing::debug!(store = %s.name, %bucket, %error,
                "could not read the bucket's creation date");
            None
        }
    };
    Ok(BucketInfo {
        name: bucket.to_string(),
        created: created.unwrap_or(OffsetDateTime::UNIX_EPOCH),
    })
}

pub(super) async fn versioning(s: &S3Store, bucket: &BucketName) -> Result<Versioning> {
    let out = s
        .client
        .get_bucket_versioning()
        .bucket(bucket.as_str())
        .send()
        .await
        .map_err(|e| s.err(Ctx::bucket(bucket.as_str()), e))?;
    Ok(match out.status() {
        Some(sdk::BucketVersioningStatus::Enabled) => Versioning::Enabled,
        Some(sdk::BucketVersioningStatus::Suspended) => Versioning::Suspended,
        _ => Versioning::Unversioned,
    })
}

pub(super) async fn set_versioning(
    s: &S3Store,
    bucket: &BucketName,
    state: Versioning,
) -> Result<()> {
    let status = match state {
        Versioning::Enabled => sdk::BucketVersioningStatus::Enabled,
        Versioning::Suspended => sdk::BucketVersioningStatus::Suspended,
        Versioning::Unversioned => {
            return match s.get_versioning(bucket).await? {
                Versioning::Unversioned => Ok(()),
                _ => Err(Error::InvalidArgument(
                    "versioning cannot be turned off once enabled; suspend it instead".to_owned(),
                )),
            };
        }
    };
    s.client
        .put_bucket_versioning()
        .bucket(bucket.as_str())
        .versioning_configuration(
            sdk::VersioningConfiguration::builder()
                .status(status)
                .build(),
        )
        .send()
        .await
        .map_err(|e| s.err(Ctx::bucket(bucket.as_str()), e))?;
    Ok(())
}

pub(super) async fn tags(s: &S3Store, bucket: &BucketName) -> Result<Option<Tags>> {
    match s
        .client
        .get_bucket_tagging()
        .bucket(bucket.as_str())
        .send()
        .await
    {
        Ok(out) => Ok(Some(from_sdk_tags(out.tag_set()))),
        Err(e) if matches!(e.code(), Some("NoSuchTagSet" | "NoSuchTagSetError")) => Ok(None),
        Err(e) => Err(s.err(Ctx::bucket(bucket.as_str()), e)),
    }
}

pub(super) async fn put_tags(s: &S3Store, bucket: &BucketName, tags: Option<Tags>) -> Result<()> {
    let ctx = Ctx::bucket(bucket.as_str());
    match tags.filter(|t| !t.is_empty()) {
        None => {
            s.client
                .delete_bucket_tagging()
                .bucket(bucket.as_str())
                .send()
                .await
                .map_err(|e| s.err(ctx, e))?;
        }
        Some(tags) => {
            let tagging = sdk::Tagging::builder()
                .set_tag_set(Some(sdk_tags(&tags).map_err(Error::InvalidArgument)?))
                .build()
                .map_err(|e| Error::InvalidArgument(e.to_string()))?;
            s.client
                .put_bucket_tagging()
                .bucket(bucket.as_str())
                .tagging(tagging)
                .send()
                .await
                .map_err(|e| s.err(ctx, e))?;
        }
    }
    Ok(())
}
