//! Digests computed while a body streams through: the MD5 behind an S3 ETag and the
//! `x-amz-checksum-*` algorithms. Owns the encodings S3 uses for them (hex ETags, base64
//! checksums, `-N` suffixes for multipart). Used by every store that receives bodies.

use base64::Engine as _;
// md-5 0.10 for its `asm` feature (~810 MB/s here against ~660 for 0.11's portable code;
// MD5 bounds every ETag'd write); its `Digest` trait is digest 0.10's, sha1/sha2's is 0.11's.
use md5::Digest as _;
use sha2::Digest as _;

use super::types::{Checksum, ChecksumAlgorithm, Digests};

enum Algo {
    Crc(crc_fast::Digest, usize),
    Sha1(sha1::Sha1),
    Sha256(sha2::Sha256),
}

/// Hashes one algorithm.
pub struct ChecksumHasher {
    algorithm: ChecksumAlgorithm,
    inner: Algo,
}

impl ChecksumHasher {
    pub fn new(algorithm: ChecksumAlgorithm) -> Self {
        use crc_fast::CrcAlgorithm as C;
        let inner = match algorithm {
            ChecksumAlgorithm::Crc32 => Algo::Crc(crc_fast::Digest::new(C::Crc32IsoHdlc), 4),
            ChecksumAlgorithm::Crc32c => Algo::Crc(crc_fast::Digest::new(C::Crc32Iscsi), 4),
            ChecksumAlgorithm::Crc64Nvme => Algo::Crc(crc_fast::Digest::new(C::Crc64Nvme), 8),
            ChecksumAlgorithm::Sha1 => Algo::Sha1(sha1::Sha1::new()),
            ChecksumAlgorithm::Sha256 => Algo::Sha256(sha2::Sha256::new()),
        };
        Self { algorithm, inner }
    }

    pub fn update(&mut self, data: &[u8]) {
        match &mut self.inner {
            Algo::Crc(d, _) => d.update(data),
            Algo::Sha1(d) => d.update(data),
            Algo::Sha256(d) => d.update(data),
        }
    }

    /// The raw digest bytes.
    pub fn finalize_raw(self) -> Vec<u8> {
        match self.inner {
            Algo::Crc(d, 4) => (d.finalize() as u32).to_be_bytes().to_vec(),
            Algo::Crc(d, _) => d.finalize().to_be_bytes().to_vec(),
            Algo::Sha1(d) => d.finalize().to_vec(),
            Algo::Sha256(d) => d.finalize().to_vec(),
        }
    }

    pub fn finalize(self) -> Checksum {
        let algorithm = self.algorithm;
        Checksum {
            algorithm,
            value: b64(&self.finalize_raw()),
            composite: false,
        }
    }
}

/// Hashes a body: size, MD5, and optionally one checksum algorithm.
pub struct BodyHasher {
    size: u64,
    /// `None` for a body whose MD5 nobody needs (see [`BodyHasher::checksum_only`]).
    md5: Option<md5::Md5>,
    checksum: Option<ChecksumHasher>,
}

impl BodyHasher {
    pub fn new(algorithm: Option<ChecksumAlgorithm>) -> Self {
        Self {
            size: 0,
            md5: Some(md5::Md5::new()),
            checksum: algorithm.map(ChecksumHasher::new),
        }
    }

    /// Size and one checksum, no MD5: the digests it makes carry an all-zero MD5 (see
    /// [`PutOptions::checksum_suffices`](super::types::PutOptions::checksum_suffices)).
    pub fn checksum_only(algorithm: ChecksumAlgorithm) -> Self {
        Self {
            size: 0,
            md5: None,
            checksum: Some(ChecksumHasher::new(algorithm)),
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        self.size += data.len() as u64;
        if let Some(m) = &mut self.md5 {
            m.update(data);
        }
        if let Some(c) = &mut self.checksum {
            c.update(data);
        }
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn finalize(self) -> Digests {
        let md5: [u8; 16] = self.md5.map(|m| m.finalize().into()).unwrap_or_default();
        Digests {
            size: self.size,
            md5,
            checksum: self.checksum.map(ChecksumHasher::finalize),
        }
    }
}

pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub fn b64_decode(s: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .ok()
}

/// The S3 ETag of a multipart object: MD5 of the concatenated binary part MD5s, `-N`.
pub fn multipart_etag<'a>(part_etags: impl Iterator<Item = &'a str>) -> Option<String> {
    let mut md5 = md5::Md5::new();
    let mut n = 0usize;
    for etag in part_etags {
        md5.update(hex::decode(etag.trim_matches('"')).ok()?);
        n += 1;
    }
    Some(format!("{}-{n}", hex::encode(md5.finalize())))
}

/// The composite checksum AWS reports for a multipart upload: the checksum of the
/// concatenated binary part checksums, `-N`.
pub fn composite_checksum<'a>(
    algorithm: ChecksumAlgorithm,
    part_values: impl Iterator<Item = &'a str>,
) -> Option<Checksum> {
    let mut h = ChecksumHasher::new(algorithm);
    let mut n = 0usize;
    for v in part_values {
        h.update(&b64_decode(v)?);
        n += 1;
    }
    let value = format!("{}-{n}", b64(&h.finalize_raw()));
    Some(Checksum {
        algorithm,
        value,
        composite: true,
    })
}

/// The full-object checksum of a multipart upload (S3's `FULL_OBJECT` type): the CRC of the
/// whole object, combined from each part's CRC and size in part order, so no byte is read
/// again. `None` for an algorithm that is not a CRC, no parts, or a value that is not one.
pub fn full_object_checksum<'a>(
    algorithm: ChecksumAlgorithm,
    parts: impl Iterator<Item = (&'a str, u64)>,
) -> Option<Checksum> {
    use crc_fast::CrcAlgorithm as C;
    let (crc, width) = match algorithm {
        ChecksumAlgorithm::Crc32 => (C::Crc32IsoHdlc, 4),
        ChecksumAlgorithm::Crc32c => (C::Crc32Iscsi, 4),
        ChecksumAlgorithm::Crc64Nvme => (C::Crc64Nvme, 8),
        ChecksumAlgorithm::Sha1 | ChecksumAlgorithm::Sha256 => return None,
    };
    let mut whole: Option<u64> = None;
    for (value, size) in parts {
        let raw = b64_decode(value)?;
        let part = match raw.len() {
            4 if width == 4 => u64::from(u32::from_be_bytes(raw.try_into().ok()?)),
            8 if width == 8 => u64::from_be_bytes(raw.try_into().ok()?),
            _ => return None,
        };
        whole = Some(match whole {
            None => part,
            Some(w) => crc_fast::checksum_combine(crc, w, part, size),
        });
    }
    let whole = whole?;
    let bytes = if width == 4 {
        (whole as u32).to_be_bytes().to_vec()
    } else {
        whole.to_be_bytes().to_vec()
    };
    Some(Checksum {
        algorithm,
        value: b64(&bytes),
        composite: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        let mut h = BodyHasher::new(Some(ChecksumAlgorithm::Crc32));
        h.update(b"hello");
        let d = h.finalize();
        assert_eq!(hex::encode(d.md5), "5d41402abc4b2a76b9719d911017c592");
        // CRC32("hello") = 0x3610a686
        assert_eq!(
            d.checksum.map(|c| c.value),
            Some(b64(&[0x36, 0x10, 0xa6, 0x86]))
        );
        let mut c = ChecksumHasher::new(ChecksumAlgorithm::Crc32c);
        c.update(b"123456789");
        assert_eq!(c.finalize_raw(), 0xe306_9283u32.to_be_bytes());
        let mut c = ChecksumHasher::new(ChecksumAlgorithm::Sha256);
        c.update(b"");
        assert_eq!(
            hex::encode(c.finalize_raw()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn full_object_checksum_combines_parts() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let cuts = [0usize, 40_000, 40_001, 100_000];
        for a in [
            ChecksumAlgorithm::Crc32,
            ChecksumAlgorithm::Crc32c,
            ChecksumAlgorithm::Crc64Nvme,
        ] {
            let whole = {
                let mut h = ChecksumHasher::new(a);
                h.update(&data);
                h.finalize()
            };
            let parts: Vec<(String, u64)> = cuts
                .windows(2)
                .map(|w| {
                    let mut h = ChecksumHasher::new(a);
                    h.update(&data[w[0]..w[1]]);
                    (h.finalize().value, (w[1] - w[0]) as u64)
                })
                .collect();
            let combined = full_object_checksum(a, parts.iter().map(|(v, n)| (v.as_str(), *n)));
            assert_eq!(combined, Some(whole), "{a:?}");
        }
        assert!(
            full_object_checksum(ChecksumAlgorithm::Sha256, [("AAAA", 3)].into_iter()).is_none()
        );
        assert!(
            full_object_checksum(ChecksumAlgorithm::Crc32, [("AAAAAAAAAAA=", 3)].into_iter())
                .is_none()
        );
    }

    #[test]
    fn multipart_etag_format() {
        let e = multipart_etag(["5d41402abc4b2a76b9719d911017c592"].into_iter());
        assert!(e.is_some_and(|e| e.ends_with("-1")));
        assert!(multipart_etag(["zz"].into_iter()).is_none());
    }
}
