//! The `s3s::S3` trait for [`Gateway`]: each operation is timed into the metrics and handed
//! to its family's implementation (`bucket`, `object`, `list`, `multipart`, …). Operations
//! Ferry does not keep state for answer from [`super::unconfigured`].

use s3s::dto::*;
use s3s::{S3, S3ErrorCode, S3Request, S3Response, S3Result};

use super::{Gateway, unconfigured};

#[async_trait::async_trait]
impl S3 for Gateway {
    async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        self.timed("CreateBucket", self.create_bucket_impl(req))
            .await
    }

    async fn delete_bucket(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        self.timed("DeleteBucket", self.delete_bucket_impl(req))
            .await
    }

    async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        self.timed("HeadBucket", self.head_bucket_impl(req)).await
    }

    async fn list_buckets(
        &self,
        req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        self.timed("ListBuckets", self.list_buckets_impl(req)).await
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        self.timed("GetBucketLocation", self.get_bucket_location_impl(req))
            .await
    }

    async fn get_bucket_versioning(
        &self,
        req: S3Request<GetBucketVersioningInput>,
    ) -> S3Result<S3Response<GetBucketVersioningOutput>> {
        self.timed("GetBucketVersioning", self.get_bucket_versioning_impl(req))
            .await
    }

    async fn put_bucket_versioning(
        &self,
        req: S3Request<PutBucketVersioningInput>,
    ) -> S3Result<S3Response<PutBucketVersioningOutput>> {
        self.timed("PutBucketVersioning", self.put_bucket_versioning_impl(req))
            .await
    }

    async fn get_bucket_tagging(
        &self,
        req: S3Request<GetBucketTaggingInput>,
    ) -> S3Result<S3Response<GetBucketTaggingOutput>> {
        self.timed("GetBucketTagging", self.get_bucket_tagging_impl(req))
            .await
    }

    async fn put_bucket_tagging(
        &self,
        req: S3Request<PutBucketTaggingInput>,
    ) -> S3Result<S3Response<PutBucketTaggingOutput>> {
        self.timed("PutBucketTagging", self.put_bucket_tagging_impl(req))
            .await
    }

    async fn delete_bucket_tagging(
        &self,
        req: S3Request<DeleteBucketTaggingInput>,
    ) -> S3Result<S3Response<DeleteBucketTaggingOutput>> {
        self.timed("DeleteBucketTagging", self.delete_bucket_tagging_impl(req))
            .await
    }

    async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        self.timed("PutObject", self.put_object_impl(req)).await
    }

    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        self.timed("GetObject", self.get_object_impl(req)).await
    }

    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        self.timed("HeadObject", self.head_object_impl(req)).await
    }

    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        self.timed("DeleteObject", self.delete_object_impl(req))
            .await
    }

    async fn delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        self.timed("DeleteObjects", self.delete_objects_impl(req))
            .await
    }

    async fn copy_object(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        self.timed("CopyObject", self.copy_object_impl(req)).await
    }

    async fn get_object_attributes(
        &self,
        req: S3Request<GetObjectAttributesInput>,
    ) -> S3Result<S3Response<GetObjectAttributesOutput>> {
        self.timed("GetObjectAttributes", self.get_object_attributes_impl(req))
            .await
    }

    async fn restore_object(
        &self,
        req: S3Request<RestoreObjectInput>,
    ) -> S3Result<S3Response<RestoreObjectOutput>> {
        self.timed("RestoreObject", self.restore_object_impl(req))
            .await
    }

    async fn get_object_tagging(
        &self,
        req: S3Request<GetObjectTaggingInput>,
    ) -> S3Result<S3Response<GetObjectTaggingOutput>> {
        self.timed("GetObjectTagging", self.get_object_tagging_impl(req))
            .await
    }

    async fn put_object_tagging(
        &self,
        req: S3Request<PutObjectTaggingInput>,
    ) -> S3Result<S3Response<PutObjectTaggingOutput>> {
        self.timed("PutObjectTagging", self.put_object_tagging_impl(req))
            .await
    }

    async fn delete_object_tagging(
        &self,
        req: S3Request<DeleteObjectTaggingInput>,
    ) -> S3Result<S3Response<DeleteObjectTaggingOutput>> {
        self.timed("DeleteObjectTagging", self.delete_object_tagging_impl(req))
            .await
    }

    async fn list_objects(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        self.timed("ListObjects", self.list_objects_impl(req)).await
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        self.timed("ListObjectsV2", self.list_objects_v2_impl(req))
            .await
    }

    async fn list_object_versions(
        &self,
        req: S3Request<ListObjectVersionsInput>,
    ) -> S3Result<S3Response<ListObjectVersionsOutput>> {
        self.timed("ListObjectVersions", self.list_object_versions_impl(req))
            .await
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        self.timed(
            "CreateMultipartUpload",
            self.create_multipart_upload_impl(req),
        )
        .await
    }

    async fn upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        self.timed("UploadPart", self.upload_part_impl(req)).await
    }

    async fn upload_part_copy(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        self.timed("UploadPartCopy", self.upload_part_copy_impl(req))
            .await
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        self.timed(
            "CompleteMultipartUpload",
            self.complete_multipart_upload_impl(req),
        )
        .await
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        self.timed(
            "AbortMultipartUpload",
            self.abort_multipart_upload_impl(req),
        )
        .await
    }

    async fn list_parts(
        &self,
        req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        self.timed("ListParts", self.list_parts_impl(req)).await
    }

    async fn list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        self.timed(
            "ListMultipartUploads",
            self.list_multipart_uploads_impl(req),
        )
        .await
    }
    async fn get_bucket_acl(
        &self,
        req: S3Request<GetBucketAclInput>,
    ) -> S3Result<S3Response<GetBucketAclOutput>> {
        self.timed("GetBucketAcl", self.get_bucket_acl_impl(req))
            .await
    }

    async fn get_object_acl(
        &self,
        req: S3Request<GetObjectAclInput>,
    ) -> S3Result<S3Response<GetObjectAclOutput>> {
        self.timed("GetObjectAcl", self.get_object_acl_impl(req))
            .await
    }

    async fn get_bucket_request_payment(
        &self,
        req: S3Request<GetBucketRequestPaymentInput>,
    ) -> S3Result<S3Response<GetBucketRequestPaymentOutput>> {
        self.timed(
            "GetBucketRequestPayment",
            self.get_bucket_request_payment_impl(req),
        )
        .await
    }

    async fn get_bucket_cors(
        &self,
        req: S3Request<GetBucketCorsInput>,
    ) -> S3Result<S3Response<GetBucketCorsOutput>> {
        let f = self.unconfigured(
            &req.input.bucket,
            S3ErrorCode::NoSuchCORSConfiguration,
            "The CORS configuration does not exist",
        );
        self.timed("GetBucketCors", f).await
    }

    async fn get_bucket_lifecycle_configuration(
        &self,
        req: S3Request<GetBucketLifecycleConfigurationInput>,
    ) -> S3Result<S3Response<GetBucketLifecycleConfigurationOutput>> {
        let f = self.unconfigured(
            &req.input.bucket,
            S3ErrorCode::NoSuchLifecycleConfiguration,
            "The lifecycle configuration does not exist",
        );
        self.timed("GetBucketLifecycleConfiguration", f).await
    }

    async fn get_bucket_policy(
        &self,
        req: S3Request<GetBucketPolicyInput>,
    ) -> S3Result<S3Response<GetBucketPolicyOutput>> {
        let f = self.unconfigured(
            &req.input.bucket,
            S3ErrorCode::NoSuchBucketPolicy,
            "The bucket policy does not exist",
        );
        self.timed("GetBucketPolicy", f).await
    }

    async fn get_bucket_policy_status(
        &self,
        req: S3Request<GetBucketPolicyStatusInput>,
    ) -> S3Result<S3Response<GetBucketPolicyStatusOutput>> {
        let f = self.unconfigured(
            &req.input.bucket,
            S3ErrorCode::NoSuchBucketPolicy,
            "The bucket policy does not exist",
        );
        self.timed("GetBucketPolicyStatus", f).await
    }

    async fn get_bucket_website(
        &self,
        req: S3Request<GetBucketWebsiteInput>,
    ) -> S3Result<S3Response<GetBucketWebsiteOutput>> {
        let f = self.unconfigured(
            &req.input.bucket,
            S3ErrorCode::NoSuchWebsiteConfiguration,
            "The specified bucket does not have a website configuration",
        );
        self.timed("GetBucketWebsite", f).await
    }

    async fn get_bucket_encryption(
        &self,
        req: S3Request<GetBucketEncryptionInput>,
    ) -> S3Result<S3Response<GetBucketEncryptionOutput>> {
        let f = self.unconfigured(
            &req.input.bucket,
            S3ErrorCode::ServerSideEncryptionConfigurationNotFoundError,
            "The server side encryption configuration was not found",
        );
        self.timed("GetBucketEncryption", f).await
    }

    async fn get_object_lock_configuration(
        &self,
        req: S3Request<GetObjectLockConfigurationInput>,
    ) -> S3Result<S3Response<GetObjectLockConfigurationOutput>> {
        let f = self.unconfigured(
            &req.input.bucket,
            S3ErrorCode::ObjectLockConfigurationNotFoundError,
            "Object Lock configuration does not exist for this bucket",
        );
        self.timed("GetObjectLockConfiguration", f).await
    }

    async fn get_bucket_ownership_controls(
        &self,
        req: S3Request<GetBucketOwnershipControlsInput>,
    ) -> S3Result<S3Response<GetBucketOwnershipControlsOutput>> {
        let f = self.unconfigured(
            &req.input.bucket,
            S3ErrorCode::OwnershipControlsNotFoundError,
            "The bucket ownership controls were not found",
        );
        self.timed("GetBucketOwnershipControls", f).await
    }

    async fn get_public_access_block(
        &self,
        req: S3Request<GetPublicAccessBlockInput>,
    ) -> S3Result<S3Response<GetPublicAccessBlockOutput>> {
        let f = self.unconfigured(
            &req.input.bucket,
            unconfigured::no_public_access_block(),
            "The public access block configuration was not found",
        );
        self.timed("GetPublicAccessBlock", f).await
    }

    async fn get_bucket_replication(
        &self,
        req: S3Request<GetBucketReplicationInput>,
    ) -> S3Result<S3Response<GetBucketReplicationOutput>> {
        let f = self.unconfigured(
            &req.input.bucket,
            S3ErrorCode::ReplicationConfigurationNotFoundError,
            "The replication configuration was not found",
        );
        self.timed("GetBucketReplication", f).await
    }

    async fn get_bucket_logging(
        &self,
        req: S3Request<GetBucketLoggingInput>,
    ) -> S3Result<S3Response<GetBucketLoggingOutput>> {
        let f = self.empty_configuration(&req.input.bucket);
        self.timed("GetBucketLogging", f).await
    }

    async fn get_bucket_notification_configuration(
        &self,
        req: S3Request<GetBucketNotificationConfigurationInput>,
    ) -> S3Result<S3Response<GetBucketNotificationConfigurationOutput>> {
        let f = self.empty_configuration(&req.input.bucket);
        self.timed("GetBucketNotificationConfiguration", f).await
    }

    async fn put_bucket_notification_configuration(
        &self,
        req: S3Request<PutBucketNotificationConfigurationInput>,
    ) -> S3Result<S3Response<PutBucketNotificationConfigurationOutput>> {
        let c = &req.input.notification_configuration;
        let none = c.event_bridge_configuration.is_none()
            && c.lambda_function_configurations
                .as_ref()
                .is_none_or(Vec::is_empty)
            && c.queue_configurations.as_ref().is_none_or(Vec::is_empty)
            && c.topic_configurations.as_ref().is_none_or(Vec::is_empty);
        let f = async {
            // An empty configuration turns notifications off, which they are.
            match none {
                true => self.empty_configuration(&req.input.bucket).await,
                false => Err(s3s::s3_error!(
                    NotImplemented,
                    "Ferry sends no event notifications"
                )),
            }
        };
        self.timed("PutBucketNotificationConfiguration", f).await
    }

    async fn get_bucket_accelerate_configuration(
        &self,
        req: S3Request<GetBucketAccelerateConfigurationInput>,
    ) -> S3Result<S3Response<GetBucketAccelerateConfigurationOutput>> {
        let f = self.empty_configuration(&req.input.bucket);
        self.timed("GetBucketAccelerateConfiguration", f).await
    }
    // Deleting a configuration the bucket does not have is a success (204), as in S3.

    async fn delete_bucket_cors(
        &self,
        req: S3Request<DeleteBucketCorsInput>,
    ) -> S3Result<S3Response<DeleteBucketCorsOutput>> {
        self.timed(
            "DeleteBucketCors",
            self.empty_configuration(&req.input.bucket),
        )
        .await
    }

    async fn delete_bucket_lifecycle(
        &self,
        req: S3Request<DeleteBucketLifecycleInput>,
    ) -> S3Result<S3Response<DeleteBucketLifecycleOutput>> {
        self.timed(
            "DeleteBucketLifecycle",
            self.empty_configuration(&req.input.bucket),
        )
        .await
    }

    async fn delete_bucket_policy(
        &self,
        req: S3Request<DeleteBucketPolicyInput>,
    ) -> S3Result<S3Response<DeleteBucketPolicyOutput>> {
        self.timed(
            "DeleteBucketPolicy",
            self.empty_configuration(&req.input.bucket),
        )
        .await
    }

    async fn delete_bucket_website(
        &self,
        req: S3Request<DeleteBucketWebsiteInput>,
    ) -> S3Result<S3Response<DeleteBucketWebsiteOutput>> {
        self.timed(
            "DeleteBucketWebsite",
            self.empty_configuration(&req.input.bucket),
        )
        .await
    }

    async fn delete_bucket_encryption(
        &self,
        req: S3Request<DeleteBucketEncryptionInput>,
    ) -> S3Result<S3Response<DeleteBucketEncryptionOutput>> {
        self.timed(
            "DeleteBucketEncryption",
            self.empty_configuration(&req.input.bucket),
        )
        .await
    }

    async fn delete_public_access_block(
        &self,
        req: S3Request<DeletePublicAccessBlockInput>,
    ) -> S3Result<S3Response<DeletePublicAccessBlockOutput>> {
        self.timed(
            "DeletePublicAccessBlock",
            self.empty_configuration(&req.input.bucket),
        )
        .await
    }

    async fn delete_bucket_ownership_controls(
        &self,
        req: S3Request<DeleteBucketOwnershipControlsInput>,
    ) -> S3Result<S3Response<DeleteBucketOwnershipControlsOutput>> {
        self.timed(
            "DeleteBucketOwnershipControls",
            self.empty_configuration(&req.input.bucket),
        )
        .await
    }

    async fn delete_bucket_replication(
        &self,
        req: S3Request<DeleteBucketReplicationInput>,
    ) -> S3Result<S3Response<DeleteBucketReplicationOutput>> {
        self.timed(
            "DeleteBucketReplication",
            self.empty_configuration(&req.input.bucket),
        )
        .await
    }

    async fn get_object_retention(
        &self,
        req: S3Request<GetObjectRetentionInput>,
    ) -> S3Result<S3Response<GetObjectRetentionOutput>> {
        self.timed(
            "GetObjectRetention",
            self.without_object_lock(&req.input.bucket),
        )
        .await
    }

    async fn get_object_legal_hold(
        &self,
        req: S3Request<GetObjectLegalHoldInput>,
    ) -> S3Result<S3Response<GetObjectLegalHoldOutput>> {
        self.timed(
            "GetObjectLegalHold",
            self.without_object_lock(&req.input.bucket),
        )
        .await
    }

    async fn put_bucket_acl(
        &self,
        req: S3Request<PutBucketAclInput>,
    ) -> S3Result<S3Response<PutBucketAclOutput>> {
        self.timed("PutBucketAcl", self.put_bucket_acl_impl(req))
            .await
    }

    async fn put_object_acl(
        &self,
        req: S3Request<PutObjectAclInput>,
    ) -> S3Result<S3Response<PutObjectAclOutput>> {
        self.timed("PutObjectAcl", self.put_object_acl_impl(req))
            .await
    }
}
