//! Bucket operations: create, delete, head, list, location, versioning, bucket tagging.

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::Gateway;
use super::convert::{self, ts};
use super::error::s3_error;
use super::guard;
use crate::store::{self, BucketName, Store, Versioning};

impl Gateway {
    pub(super) async fn create_bucket_impl(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        guard::plain(&req.uri)?;
        guard::create_bucket(
            &req.input,
            &req.headers,
            &self.region,
            req.region.as_ref().map(|r| r.as_str()),
        )?;
        let (store, bucket) = self.target(&req.input.bucket)?;
        store.create_bucket(&bucket).await.map_err(s3_error)?;
        Ok(S3Response::new(CreateBucketOutput {
            location: Some(format!("/{bucket}")),
        }))
    }

    pub(super) async fn delete_bucket_impl(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        guard::plain(&req.uri)?;
        let (store, bucket) = self.target(&req.input.bucket)?;
        store.delete_bucket(&bucket).await.map_err(s3_error)?;
        Ok(S3Response::new(DeleteBucketOutput {}))
    }

    pub(super) async fn head_bucket_impl(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        let (store, bucket) = self.target(&req.input.bucket)?;
        store.head_bucket(&bucket).await.map_err(s3_error)?;
        Ok(S3Response::new(HeadBucketOutput {
            bucket_region: Some(self.region.clone()),
            ..Default::default()
        }))
    }

    pub(super) async fn list_buckets_impl(
        &self,
        req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        let input = req.input;
        let max = match input.max_buckets {
            None => usize::MAX,
            Some(n) if (1..=10_000).contains(&n) => n as usize,
            Some(_) => {
                return Err(super::error::invalid_argument(
                    "max-buckets must be between 1 and 10000",
                ));
            }
        };
        // The token is the last name of the page before (buckets are listed by name).
        let after = match input
            .continuation_token
            .as_deref()
            .filter(|t| !t.is_empty())
        {
            None => None,
            Some(t) => Some(
                store::digest::b64_decode(t)
                    .and_then(|b| String::from_utf8(b).ok())
                    .ok_or_else(|| {
                        super::error::invalid_argument(
                            "The continuation token provided is incorrect",
                        )
                    })?,
            ),
        };
        let mut buckets: Vec<Bucket> = self
            .default_store
            .list_buckets()
            .await
            .map_err(s3_error)?
            .into_iter()
            .map(|b| Bucket {
                name: Some(b.name),
                creation_date: Some(ts(b.created)),
                bucket_region: None,
            })
            .collect();
        if let Some(bs) = &self.buckets {
            // A namespace bucket's primary is often the default store's bucket of the same
            // name: list it once.
            // The default store's buckets other namespace buckets keep their objects in are
            // not served as buckets of their own.
            let names = bs.names();
            buckets.retain(|b| {
                b.name
                    .as_ref()
                    .is_none_or(|n| !names.contains(n) && bs.holder_of(n).is_none())
            });
            for name in names {
                let Some(ns) = bs.get(&name) else { continue };
                // A namespace bucket whose read targets are all down is still listed.
                let created = ns
                    .head_bucket(&BucketName::parse(&name).map_err(super::error::name_error)?)
                    .await
                    .map(|i| i.created)
                    .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
                buckets.push(Bucket {
                    name: Some(name),
                    creation_date: Some(ts(created)),
                    bucket_region: None,
                });
            }
        }
        buckets.sort_by(|a, b| a.name.cmp(&b.name));
        let prefix = input.prefix.clone().unwrap_or_default();
        buckets.retain(|b| {
            b.name
                .as_deref()
                .is_some_and(|n| n.starts_with(&prefix) && after.as_deref().is_none_or(|a| n > a))
        });
        let next = (buckets.len() > max)
            .then(|| {
                buckets[max - 1]
                    .name
                    .as_deref()
                    .map(|n| store::digest::b64(n.as_bytes()))
            })
            .flatten();
        buckets.truncate(max);
        Ok(S3Response::new(ListBucketsOutput {
            buckets: Some(buckets),
            continuation_token: next,
            prefix: input.prefix,
            owner: Some(convert::owner()),
        }))
    }

    pub(super) async fn get_bucket_location_impl(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        let (store, bucket) = self.target(&req.input.bucket)?;
        store.head_bucket(&bucket).await.map_err(s3_error)?;
        // us-east-1 is reported as an empty constraint, as AWS does.
        let loc = (self.region != "us-east-1")
            .then(|| BucketLocationConstraint::from(self.region.clone()));
        Ok(S3Response::new(GetBucketLocationOutput {
            location_constraint: loc,
        }))
    }

    pub(super) async fn get_bucket_versioning_impl(
        &self,
        req: S3Request<GetBucketVersioningInput>,
    ) -> S3Result<S3Response<GetBucketVersioningOutput>> {
        let (store, bucket) = self.target(&req.input.bucket)?;
        let status = match store.get_versioning(&bucket).await.map_err(s3_error)? {
            Versioning::Unversioned => None,
            Versioning::Enabled => Some(BucketVersioningStatus::from_static(
                BucketVersioningStatus::ENABLED,
            )),
            Versioning::Suspended => Some(BucketVersioningStatus::from_static(
                BucketVersioningStatus::SUSPENDED,
            )),
        };
        Ok(S3Response::new(GetBucketVersioningOutput {
            status,
            mfa_delete: None,
        }))
    }

    pub(super) async fn put_bucket_versioning_impl(
        &self,
        req: S3Request<PutBucketVersioningInput>,
    ) -> S3Result<S3Response<PutBucketVersioningOutput>> {
        let input = req.input;
        let (store, bucket) = self.target(&input.bucket)?;
        // MFA Delete (a device code to delete versions) Ferry cannot check: refused rather
        // than taken and dropped, as Object Lock is.
        if input
            .versioning_configuration
            .mfa_delete
            .as_ref()
            .is_some_and(|m| m.as_str() == MFADelete::ENABLED)
        {
            return Err(s3_error!(NotImplemented, "MFA Delete is not implemented"));
        }
        let state = match input
            .versioning_configuration
            .status
            .as_ref()
            .map(|s| s.as_str())
        {
            Some(BucketVersioningStatus::ENABLED) => Versioning::Enabled,
            Some(BucketVersioningStatus::SUSPENDED) => Versioning::Suspended,
            Some(other) => {
                return Err(s3_error!(
                    MalformedXML,
                    "versioning status must be Enabled or Suspended, not \"{other}\""
                ));
            }
            None => {
                return Err(s3_error!(
                    MalformedXML,
                    "versioning status must be Enabled or Suspended; none was given"
                ));
            }
        };
        store
            .set_versioning(&bucket, state)
            .await
            .map_err(s3_error)?;
        Ok(S3Response::new(PutBucketVersioningOutput {}))
    }

    pub(super) async fn get_bucket_tagging_impl(
        &self,
        req: S3Request<GetBucketTaggingInput>,
    ) -> S3Result<S3Response<GetBucketTaggingOutput>> {
        let (store, bucket) = self.target(&req.input.bucket)?;
        match store.get_bucket_tags(&bucket).await.map_err(s3_error)? {
            Some(tags) => Ok(S3Response::new(GetBucketTaggingOutput {
                tag_set: convert::tags_to_dto(tags),
            })),
            None => Err(s3_error!(NoSuchTagSet, "bucket {bucket} has no tag set")),
        }
    }

    pub(super) async fn put_bucket_tagging_impl(
        &self,
        req: S3Request<PutBucketTaggingInput>,
    ) -> S3Result<S3Response<PutBucketTaggingOutput>> {
        let input = req.input;
        let (store, bucket) = self.target(&input.bucket)?;
        let tags: store::Tags = input
            .tagging
            .tag_set
            .into_iter()
            .map(|t| (t.key.unwrap_or_default(), t.value.unwrap_or_default()))
            .collect();
        convert::validate_tags_up_to(&tags, convert::MAX_BUCKET_TAGS)?;
        store
            .put_bucket_tags(&bucket, Some(tags))
            .await
            .map_err(s3_error)?;
        // S3 answers 204; s3s 0.14 says 200 and ignores a status set here (see `NoContent`).
        let mut res = S3Response::new(PutBucketTaggingOutput {});
        res.extensions.insert(super::server::NoContent);
        Ok(res)
    }

    pub(super) async fn delete_bucket_tagging_impl(
        &self,
        req: S3Request<DeleteBucketTaggingInput>,
    ) -> S3Result<S3Response<DeleteBucketTaggingOutput>> {
        let (store, bucket) = self.target(&req.input.bucket)?;
        store
            .put_bucket_tags(&bucket, None)
            .await
            .map_err(s3_error)?;
        Ok(S3Response::new(DeleteBucketTaggingOutput {}))
    }
}
