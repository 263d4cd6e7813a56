//! How to reach one S3-compatible endpoint: its configuration (what `ferry store add --kind
//! s3` records), and the SDK client built from it, with Ferry's timeouts, retries and
//! checksum mode.

use std::fmt;
use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
    StalledStreamProtectionConfig,
};
use serde::{Deserialize, Serialize};

use super::{S3Store, lean};
use crate::store::{Error, Result};

/// How long to wait for a TCP/TLS connection.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one attempt of a call without a body may take (body-carrying and long server-side
/// calls have no such limit; stalled-stream protection covers their bodies).
pub(super) const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a body may make no progress before the SDK gives up on it.
pub(super) const STALL_GRACE: Duration = Duration::from_secs(30);
/// Attempts per call, including the first.
pub(super) const MAX_ATTEMPTS: u32 = 3;
/// How many bytes of small bodies one store buffers at once (each up to
/// [`body::MEMORY_LIMIT`]); more concurrent PUTs wait for room.
pub(super) const BUFFER_BUDGET: usize = 8 << 20;

/// Which checksums the SDK computes on requests and validates on responses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChecksumMode {
    /// Only where the operation requires one. For servers that reject the SDK's checksum
    /// trailers (many non-AWS implementations); bodies are still sent with `Content-MD5`
    /// when it is known up front. (A small copy that needs no MD5 may still go with a plain
    /// `x-amz-checksum-*` header, once the backend has shown it checks one; see [`put`].)
    #[default]
    #[serde(alias = "when-required")]
    WhenRequired,
    /// Wherever the operation supports one (the SDK's default): checksum trailers on streamed
    /// uploads, response validation on GET.
    #[serde(alias = "when-supported")]
    WhenSupported,
}

/// How to reach one S3-compatible endpoint.
#[derive(Clone, Serialize, Deserialize)]
pub struct S3Config {
    /// `https://host[:port]`; `None` for AWS itself.
    #[serde(default)]
    pub endpoint: Option<String>,
    pub region: String,
    pub access_key: String,
    pub secret_key: String,
    /// Path-style addressing (`endpoint/bucket/key`) instead of virtual hosts.
    #[serde(default)]
    pub path_style: bool,
    #[serde(default)]
    pub checksum_mode: ChecksumMode,
}

impl fmt::Debug for S3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key", &self.access_key)
            .field("secret_key", &"<redacted>")
            .field("path_style", &self.path_style)
            .field("checksum_mode", &self.checksum_mode)
            .finish()
    }
}

impl S3Store {
    /// Builds the client. Checks the configuration but does not contact the endpoint.
    pub fn new(name: &str, cfg: S3Config) -> Result<Self> {
        let invalid = |why: String| Error::InvalidArgument(format!("store {name}: {why}"));
        if cfg.region.trim().is_empty() {
            return Err(invalid("the region must not be empty".to_owned()));
        }
        if cfg.access_key.is_empty() || cfg.secret_key.is_empty() {
            return Err(invalid(
                "the access key and secret key must not be empty".to_owned(),
            ));
        }
        let (request_checksums, response_checksums) = match cfg.checksum_mode {
            ChecksumMode::WhenRequired => (
                RequestChecksumCalculation::WhenRequired,
                ResponseChecksumValidation::WhenRequired,
            ),
            ChecksumMode::WhenSupported => (
                RequestChecksumCalculation::WhenSupported,
                ResponseChecksumValidation::WhenSupported,
            ),
        };
        let credentials =
            Credentials::new(&cfg.access_key, &cfg.secret_key, None, None, "ferry-static");
        let mut builder = aws_sdk_s3::config::Builder::new()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(cfg.region.trim().to_owned()))
            .credentials_provider(credentials)
            .force_path_style(cfg.path_style)
            .retry_config(RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS))
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(CONNECT_TIMEOUT)
                    .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                    .build(),
            )
            .stalled_stream_protection(
                StalledStreamProtectionConfig::enabled()
                    .grace_period(STALL_GRACE)
                    .build(),
            )
            .request_checksum_calculation(request_checksums)
            .response_checksum_validation(response_checksums);
        let lean = lean::Lean::new(&cfg).map(std::sync::Arc::new);
        if let Some(endpoint) = cfg
            .endpoint
            .as_deref()
            .map(str::trim)
            .filter(|e| !e.is_empty())
        {
            let uri: http::Uri = endpoint
                .parse()
                .map_err(|e| invalid(format!("endpoint {endpoint:?}: {e}")))?;
            let scheme_ok = matches!(uri.scheme_str(), Some("http" | "https"));
            if !scheme_ok || uri.host().is_none() {
                return Err(invalid(format!(
                    "endpoint {endpoint:?} must be an absolute http:// or https:// URL"
                )));
            }
            builder = builder.endpoint_url(endpoint.trim_end_matches('/'));
        }
        Ok(Self {
            name: name.to_owned(),
            client: Client::from_conf(builder.build()),
            lean,
            buffers: std::sync::Arc::new(tokio::sync::Semaphore::new(BUFFER_BUDGET / 4096)),
            region: cfg.region.trim().to_owned(),
            checksum_mode: cfg.checksum_mode,
            on_aws: cfg.endpoint.as_deref().is_none_or(|e| e.trim().is_empty()),
            echo: std::sync::Arc::default(),
            part_echo: std::sync::Arc::default(),
        })
    }

    /// The per-call override for calls that carry a body or may run long on the server:
    /// no attempt timeout.
    pub(super) fn long_call() -> aws_sdk_s3::config::Builder {
        aws_sdk_s3::config::Builder::new().timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .disable_operation_attempt_timeout()
                .build(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    fn config() -> S3Config {
        S3Config {
            endpoint: Some("http://127.0.0.1:9000/".to_owned()),
            region: "us-east-1".to_owned(),
            access_key: "AKIDEXAMPLE".to_owned(),
            secret_key: "very-secret".to_owned(),
            path_style: true,
            checksum_mode: ChecksumMode::WhenRequired,
        }
    }

    #[test]
    fn debug_redacts_the_secret() {
        let shown = format!("{:?}", config());
        assert!(!shown.contains("very-secret"));
        assert!(shown.contains("AKIDEXAMPLE"));
    }

    #[tokio::test]
    async fn builds_a_client_without_contacting_the_endpoint() {
        let store = S3Store::new("remote", config());
        assert!(
            store
                .as_ref()
                .is_ok_and(|s| s.name() == "remote" && !s.caps().path_semantics)
        );
        let supported = S3Config {
            checksum_mode: ChecksumMode::WhenSupported,
            ..config()
        };
        assert!(S3Store::new("remote", supported).is_ok_and(|s| s.supported()));
    }

    #[test]
    fn refuses_bad_configs() {
        let bad_endpoint = S3Config {
            endpoint: Some("not a url".to_owned()),
            ..config()
        };
        assert!(matches!(
            S3Store::new("r", bad_endpoint),
            Err(Error::InvalidArgument(_))
        ));
        let no_region = S3Config {
            region: " ".to_owned(),
            ..config()
        };
        assert!(matches!(
            S3Store::new("r", no_region),
            Err(Error::InvalidArgument(_))
        ));
    }

    #[test]
    fn config_serde_defaults() {
        let cfg: S3Config =
            serde_json::from_str(r#"{"region":"eu-west-1","access_key":"a","secret_key":"s"}"#)
                .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cfg.checksum_mode, ChecksumMode::WhenRequired);
        assert!(!cfg.path_style && cfg.endpoint.is_none());
        let mode: ChecksumMode =
            serde_json::from_str(r#""when_supported""#).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(mode, ChecksumMode::WhenSupported);
    }
}
