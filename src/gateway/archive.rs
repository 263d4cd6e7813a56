//! Objects of S3's archive classes (GLACIER, DEEP_ARCHIVE) on a store that serves them at
//! once: what HEAD and GET say of them, and RestoreObject.
//!
//! S3 asks for such an object to be restored before it can be read, and clients check:
//! awscli's `s3 cp` skips an archived object (exit 2) unless HEAD's `x-amz-restore` says a
//! restored copy is ready. A local store keeps the class as written but has nothing to
//! restore from, so it says the copy is ready and never expires, and answers a restore
//! request as S3 answers one for an object already restored (200). An s3 store's objects
//! are as its backend says: Ferry claims nothing for them.

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::error::s3_error;
use super::{Gateway, guard};
use crate::store::{ObjectMeta, Store};

/// `x-amz-restore` of a restored copy that never expires.
const READY: &str = r#"ongoing-request="false", expiry-date="Fri, 31 Dec 9999 23:59:59 GMT""#;

fn archived(meta: &ObjectMeta) -> bool {
    matches!(
        meta.attrs.storage_class.as_deref(),
        Some(StorageClass::GLACIER | StorageClass::DEEP_ARCHIVE)
    )
}

/// What HEAD and GET say in `x-amz-restore` of `meta`, served by `store`.
pub fn restore_header(store: &dyn Store, meta: &ObjectMeta) -> Option<String> {
    (archived(meta) && store.caps().local).then(|| READY.to_owned())
}

impl Gateway {
    pub(super) async fn restore_object_impl(
        &self,
        req: S3Request<RestoreObjectInput>,
    ) -> S3Result<S3Response<RestoreObjectOutput>> {
        let input = req.input;
        let (store, bucket) = self.target(&input.bucket)?;
        let key = self.key(&input.key)?;
        guard::version_id(input.version_id.as_deref())?;
        if input
            .restore_request
            .as_ref()
            .is_some_and(|r| r.type_.is_some() || r.select_parameters.is_some())
        {
            return Err(s3_error!(
                NotImplemented,
                "a restore with a SELECT query is not supported"
            ));
        }
        let meta = store
            .head_object(&bucket, &key, input.version_id.as_deref())
            .await
            .map_err(s3_error)?;
        if !store.caps().local {
            return Err(s3_error!(
                NotImplemented,
                "this object's store is an S3 backend: restore it there"
            ));
        }
        if !archived(&meta) {
            return Err(s3_error!(
                InvalidObjectState,
                "Restore is not allowed for the object's current storage class ({})",
                super::convert::class_of(&meta)
            ));
        }
        // Already readable: S3's answer for a restored copy is 200 (202 starts a restore).
        Ok(S3Response::new(RestoreObjectOutput::default()))
    }
}
