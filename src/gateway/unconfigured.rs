//! Bucket configurations Ferry does not keep (CORS, lifecycle, policy, website, encryption,
//! Object Lock, ownership controls, public access block, replication, logging,
//! notifications, acceleration, request payment) and ACLs, answered as S3 answers for a
//! bucket that has none: the "no such configuration" error, or the empty document; deleting
//! one is a success; an object's retention or legal hold is S3's "no Object Lock" error.
//!
//! Tools that read a bucket's whole state (Terraform's S3 bucket resource, Cyberduck,
//! s3cmd `info`) stop at a 501; they take these answers. Setting any of them stays 501, but
//! for ACLs, answered as a bucket with ACLs disabled answers: one that grants the owner alone
//! (`private`), which is what Ferry has, is taken as is; any other is
//! `AccessControlListNotSupported` (400).

use s3s::dto::*;
use s3s::{S3Error, S3ErrorCode, S3Request, S3Response, S3Result};

use super::Gateway;
use super::convert::owner;
use super::error::s3_error;

/// The one ACL Ferry has: the owner (the single key pair) holds full control.
fn owner_only() -> (Option<Owner>, Option<Grants>) {
    let o = owner();
    let grant = Grant {
        grantee: Some(Grantee {
            display_name: o.display_name.clone(),
            email_address: None,
            id: o.id.clone(),
            type_: Type::from_static(Type::CANONICAL_USER),
            uri: None,
        }),
        permission: Some(Permission::from_static(Permission::FULL_CONTROL)),
    };
    (Some(o), Some(vec![grant]))
}

fn none(code: S3ErrorCode, message: &'static str) -> S3Error {
    let mut e = S3Error::with_message(code, message);
    e.set_status_code(http::StatusCode::NOT_FOUND);
    e
}

impl Gateway {
    /// Answers for an existing bucket (NoSuchBucket otherwise).
    async fn existing(&self, bucket: &str) -> S3Result<()> {
        let (store, bucket) = self.target(bucket)?;
        store.head_bucket(&bucket).await.map_err(s3_error)?;
        Ok(())
    }

    /// The bucket exists and has no configuration of this kind.
    pub(super) async fn unconfigured<T>(
        &self,
        bucket: &str,
        code: S3ErrorCode,
        message: &'static str,
    ) -> S3Result<S3Response<T>> {
        self.existing(bucket).await?;
        Err(none(code, message))
    }

    /// The bucket exists and this configuration is its empty document.
    pub(super) async fn empty_configuration<T: Default>(
        &self,
        bucket: &str,
    ) -> S3Result<S3Response<T>> {
        self.existing(bucket).await?;
        Ok(S3Response::new(T::default()))
    }

    /// An object's retention or legal hold, asked of a bucket without Object Lock (every
    /// bucket of Ferry's): S3's 400 InvalidRequest.
    pub(super) async fn without_object_lock<T>(&self, bucket: &str) -> S3Result<S3Response<T>> {
        self.existing(bucket).await?;
        Err(S3Error::with_message(
            S3ErrorCode::InvalidRequest,
            "Bucket is missing Object Lock Configuration",
        ))
    }

    pub(super) async fn get_bucket_acl_impl(
        &self,
        req: S3Request<GetBucketAclInput>,
    ) -> S3Result<S3Response<GetBucketAclOutput>> {
        self.existing(&req.input.bucket).await?;
        let (owner, grants) = owner_only();
        Ok(S3Response::new(GetBucketAclOutput { grants, owner }))
    }

    pub(super) async fn get_object_acl_impl(
        &self,
        req: S3Request<GetObjectAclInput>,
    ) -> S3Result<S3Response<GetObjectAclOutput>> {
        let input = req.input;
        let (store, bucket) = self.target(&input.bucket)?;
        let key = self.key(&input.key)?;
        super::guard::version_id(input.version_id.as_deref())?;
        store
            .head_object(&bucket, &key, input.version_id.as_deref())
            .await
            .map_err(s3_error)?;
        let (owner, grants) = owner_only();
        Ok(S3Response::new(GetObjectAclOutput {
            grants,
            owner,
            ..Default::default()
        }))
    }

    pub(super) async fn get_bucket_request_payment_impl(
        &self,
        req: S3Request<GetBucketRequestPaymentInput>,
    ) -> S3Result<S3Response<GetBucketRequestPaymentOutput>> {
        self.existing(&req.input.bucket).await?;
        Ok(S3Response::new(GetBucketRequestPaymentOutput {
            payer: Some(Payer::from_static(Payer::BUCKET_OWNER)),
        }))
    }
}

/// Whether a Put*Acl input names grants in `x-amz-grant-*` headers.
macro_rules! grant_headers {
    ($i:expr) => {
        $i.grant_full_control.is_some()
            || $i.grant_read.is_some()
            || $i.grant_read_acp.is_some()
            || $i.grant_write.is_some()
            || $i.grant_write_acp.is_some()
    };
}

/// Takes an ACL that is the one Ferry has (the owner's full control: the `private` canned
/// ACL, `bucket-owner-full-control` for an object, or a policy granting only the owner),
/// and refuses any other as not implemented: nothing in Ferry is shared or public.
pub(super) fn check_owner_only(
    canned: Option<&str>,
    grant_headers: bool,
    policy: Option<&AccessControlPolicy>,
) -> S3Result<()> {
    // AWS's answer for a bucket with ACLs disabled (Object Ownership "bucket owner
    // enforced", the default since 2023): a client error, which clients do not retry
    // (`s3cmd put -P` retried the 501 this was for 45 s).
    let refuse = || {
        s3s::s3_error!(
            AccessControlListNotSupported,
            "The bucket does not allow ACLs: Ferry has one owner and no public access, so only \
             the private ACL is taken"
        )
    };
    if grant_headers {
        return Err(refuse());
    }
    if let Some(c) = canned
        && !matches!(c, "private" | "bucket-owner-full-control")
    {
        return Err(refuse());
    }
    if let Some(p) = policy {
        let owner_id = owner().id;
        let only_owner = p.grants.iter().flatten().all(|g| {
            g.permission.as_ref().map(Permission::as_str) == Some(Permission::FULL_CONTROL)
                && g.grantee.as_ref().is_some_and(|e| e.id == owner_id)
        });
        if !only_owner {
            return Err(refuse());
        }
    }
    Ok(())
}

impl Gateway {
    pub(super) async fn put_bucket_acl_impl(
        &self,
        req: S3Request<PutBucketAclInput>,
    ) -> S3Result<S3Response<PutBucketAclOutput>> {
        let i = req.input;
        let grants = grant_headers!(i);
        check_owner_only(
            i.acl.as_ref().map(BucketCannedACL::as_str),
            grants,
            i.access_control_policy.as_ref(),
        )?;
        self.existing(&i.bucket).await?;
        Ok(S3Response::new(PutBucketAclOutput {}))
    }

    pub(super) async fn put_object_acl_impl(
        &self,
        req: S3Request<PutObjectAclInput>,
    ) -> S3Result<S3Response<PutObjectAclOutput>> {
        let i = req.input;
        let grants = grant_headers!(i);
        check_owner_only(
            i.acl.as_ref().map(ObjectCannedACL::as_str),
            grants,
            i.access_control_policy.as_ref(),
        )?;
        let (store, bucket) = self.target(&i.bucket)?;
        let key = self.key(&i.key)?;
        super::guard::version_id(i.version_id.as_deref())?;
        store
            .head_object(&bucket, &key, i.version_id.as_deref())
            .await
            .map_err(s3_error)?;
        Ok(S3Response::new(PutObjectAclOutput::default()))
    }
}

/// `NoSuchPublicAccessBlockConfiguration`, which s3s has no variant for.
pub fn no_public_access_block() -> S3ErrorCode {
    S3ErrorCode::Custom("NoSuchPublicAccessBlockConfiguration".into())
}
