//! S3 store (in progress).
