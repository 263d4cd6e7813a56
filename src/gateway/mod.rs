//! The S3 endpoint: `impl s3s::S3 for Gateway`.
//!
//! Owns: turning S3 requests into store calls and store answers into S3 responses, grouped by
//! operation family (`bucket`, `object`, `list`, `multipart`), with every error mapped to an
//! S3 code in [`error`]. Names are validated here, once, into [`BucketName`]/[`ObjectKey`];
//! nothing below sees a raw client string. The HTTP server around it (limits, shutdown) is
//! [`server`]. Does not own: where a bucket's bytes live (a store) or what is durable.

mod archive;
mod attributes;
mod bucket;
mod conditions;
mod convert;
mod copy;
mod declared;
pub mod error;
mod form;
mod guard;
mod list;
mod multipart;
mod object;
mod ops;
mod ranges;
pub mod server;
mod sigv2;
mod subject;
mod timeouts;
mod unconfigured;
mod xml_digests;

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use s3s::dto::*;
use s3s::{S3Result, s3_error};

use crate::bucket::Buckets;
use crate::store::{BucketName, ObjectKey, Store};
use crate::telemetry::Metrics;

/// The largest object a single PUT may carry (AWS: 5 GiB).
pub const MAX_PUT_SIZE: u64 = crate::store::MAX_PUT_BYTES;

/// A resolved copy source: store, bucket, key, version.
type CopyFrom = (Arc<dyn Store>, BucketName, ObjectKey, Option<String>);

/// Serves S3 over stores. A clone shares everything with the original.
#[derive(Clone)]
pub struct Gateway {
    /// Where plain buckets (those without a namespace policy) live.
    default_store: Arc<dyn Store>,
    /// Namespace buckets: writes to several targets, failover.
    buckets: Option<Arc<Buckets>>,
    metrics: Arc<Metrics>,
    region: String,
    max_put_size: u64,
    /// Passed by every write of a key until it commits (see [`conditions`]).
    write_gate: Arc<conditions::WriteGate>,
}

impl Gateway {
    pub fn new(default_store: Arc<dyn Store>, metrics: Arc<Metrics>, region: String) -> Self {
        Self {
            default_store,
            buckets: None,
            metrics,
            region,
            max_put_size: MAX_PUT_SIZE,
            write_gate: Default::default(),
        }
    }

    /// Serves namespace buckets as well as plain ones.
    pub fn with_buckets(mut self, buckets: Arc<Buckets>) -> Self {
        self.buckets = Some(buckets);
        self
    }

    /// Resolves a client's bucket name to the store that holds it: the bucket's namespace
    /// when it has a policy, else the default store.
    fn target(&self, bucket: &str) -> S3Result<(Arc<dyn Store>, BucketName)> {
        let b = BucketName::parse(bucket).map_err(error::name_error)?;
        if let Some(bs) = &self.buckets {
            if let Some(ns) = bs.get(bucket) {
                return Ok((ns, b));
            }
            if let Some(holder) = bs.holder_of(bucket) {
                return Err(s3_error!(
                    AccessDenied,
                    "bucket {bucket} holds the objects of namespace bucket {holder}: use \
                     {holder} (what is done here directly reaches none of its other targets)"
                ));
            }
        }
        Ok((self.default_store.clone(), b))
    }

    /// Resolves `x-amz-copy-source` to the store, bucket, key and version it names.
    fn copy_source(&self, src: &CopySource) -> S3Result<CopyFrom> {
        let CopySource::Bucket {
            bucket,
            key,
            version_id,
        } = src
        else {
            return Err(s3_error!(
                NotImplemented,
                "only bucket/key copy sources are supported"
            ));
        };
        let (store, bucket) = self.target(bucket)?;
        guard::version_id(version_id.as_deref())?;
        Ok((
            store,
            bucket,
            self.key(key)?,
            version_id.as_deref().map(str::to_owned),
        ))
    }

    fn key(&self, key: &str) -> S3Result<ObjectKey> {
        ObjectKey::parse(key).map_err(error::name_error)
    }

    fn check_size(&self, len: Option<i64>) -> S3Result<Option<u64>> {
        match len {
            Some(n) if n < 0 => Err(s3_error!(
                InvalidArgument,
                "Content-Length must not be negative"
            )),
            Some(n) if n as u64 > self.max_put_size => Err(s3_error!(
                EntityTooLarge,
                "Your proposed upload exceeds the maximum allowed size of {} bytes",
                self.max_put_size
            )),
            Some(n) => Ok(Some(n as u64)),
            None => Ok(None),
        }
    }

    fn check_part_size(&self, len: Option<i64>) -> S3Result<Option<u64>> {
        self.check_size(len)
    }

    async fn timed<T>(
        &self,
        op: &'static str,
        f: impl Future<Output = S3Result<T>>,
    ) -> S3Result<T> {
        let started = Instant::now();
        let r = f.await;
        self.metrics.observe(op, r.is_ok(), started);
        r
    }
}
