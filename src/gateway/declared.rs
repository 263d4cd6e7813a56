//! What a client declared about a request body (`Content-MD5`, a checksum header or trailer)
//! and the check of it against the digests of what was received.

use s3s::{S3Result, s3_error};

use super::convert;
use super::error::{invalid_argument, invalid_request};
use crate::store::{self, ChecksumAlgorithm, Digests};

/// What the client declared about a body, checked against what was received.
pub(super) struct Declared {
    pub md5: Option<[u8; 16]>,
    pub algorithm: Option<ChecksumAlgorithm>,
    pub value: Option<String>,
    /// The trailers of an `aws-chunked` body that declared a checksum in them
    /// (`x-amz-trailer`); the value must then be there once the body is read.
    pub trailers: Option<s3s::TrailingHeaders>,
}

impl Declared {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        content_md5: Option<&str>,
        algorithm: Option<&s3s::dto::ChecksumAlgorithm>,
        crc32: Option<&String>,
        crc32c: Option<&String>,
        crc64nvme: Option<&String>,
        sha1: Option<&String>,
        sha256: Option<&String>,
        headers: &http::HeaderMap,
        trailers: Option<s3s::TrailingHeaders>,
    ) -> S3Result<Self> {
        let md5 = match content_md5 {
            None => None,
            Some(s) => Some(
                store::digest::b64_decode(s)
                    .and_then(|v| <[u8; 16]>::try_from(v).ok())
                    .ok_or_else(|| {
                        s3_error!(InvalidDigest, "the Content-MD5 header is not a base64 MD5")
                    })?,
            ),
        };
        let given = [
            (ChecksumAlgorithm::Crc32, crc32),
            (ChecksumAlgorithm::Crc32c, crc32c),
            (ChecksumAlgorithm::Crc64Nvme, crc64nvme),
            (ChecksumAlgorithm::Sha1, sha1),
            (ChecksumAlgorithm::Sha256, sha256),
        ];
        let mut algo = convert::algorithm(algorithm)?;
        let mut value = None;
        for (a, v) in given {
            if let Some(v) = v {
                if value.is_some() {
                    return Err(invalid_argument(
                        "expecting a single x-amz-checksum- header",
                    ));
                }
                // Not base64 of the algorithm's length: refused as S3 refuses it, before the
                // body is read (it was read, then answered BadDigest).
                let len = match a {
                    ChecksumAlgorithm::Crc32 | ChecksumAlgorithm::Crc32c => 4,
                    ChecksumAlgorithm::Crc64Nvme => 8,
                    ChecksumAlgorithm::Sha1 => 20,
                    ChecksumAlgorithm::Sha256 => 32,
                };
                if store::digest::b64_decode(v).is_none_or(|d| d.len() != len) {
                    return Err(invalid_request(format!(
                        "Value for {} header is invalid.",
                        a.header_name()
                    )));
                }
                algo = Some(a);
                value = Some(v.clone());
            }
        }
        // A trailer declares its algorithm up front: `x-amz-trailer: x-amz-checksum-crc32`.
        // s3s hands a trailer handle to every `aws-chunked` body, but only those that declare
        // a trailer have one: the classic signed stream (STREAMING-AWS4-HMAC-SHA256-PAYLOAD,
        // AWS SDK for Java v1, minio-go over http) declares none. S3 then takes one checksum
        // in all (header or trailer), of an algorithm it knows.
        let declared = headers
            .get("x-amz-trailer")
            .map(|v| v.to_str().unwrap_or("").trim().to_ascii_lowercase());
        let trailers = match (trailers, declared) {
            (None, _) | (Some(_), None) => None,
            (Some(t), Some(declared)) => {
                let Some(a) = ChecksumAlgorithm::ALL
                    .into_iter()
                    .find(|a| a.header_name() == declared)
                else {
                    return Err(invalid_request(
                        "The value specified in the x-amz-trailer header is not supported",
                    ));
                };
                if value.is_some() {
                    return Err(invalid_request("Expecting a single x-amz-checksum- header"));
                }
                algo = Some(a);
                Some(t)
            }
        };
        Ok(Self {
            md5,
            algorithm: algo,
            value,
            trailers,
        })
    }

    /// The verifier a store runs before it commits the body.
    pub fn verifier(self) -> store::Verifier {
        Box::new(move |d: &Digests| {
            if let Some(m) = self.md5
                && m != d.md5
            {
                return Err(store::Error::BadDigest {
                    what: "Content-MD5".into(),
                });
            }
            let Some(algo) = self.algorithm else {
                return Ok(());
            };
            let expected = match &self.trailers {
                None => self.value,
                Some(t) => Some(
                    t.read(|h| {
                        h.get(algo.header_name())
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned)
                    })
                    .flatten()
                    .ok_or_else(|| store::Error::MalformedTrailer {
                        name: algo.header_name().to_owned(),
                    })?,
                ),
            };
            match (expected, &d.checksum) {
                (Some(e), Some(c)) if e.trim() != c.value => Err(store::Error::BadDigest {
                    what: format!("{} checksum", algo.as_str()),
                }),
                _ => Ok(()),
            }
        })
    }
}
