//! The upload body shapes against their promises: a streamed body's last chunk withheld
//! until its digests are verified, wrong lengths refused, small bodies buffered, digests a
//! source already knows taken rather than recomputed, unknown sizes spooled.

use super::*;

fn stream(chunks: &[&'static [u8]]) -> ByteStream {
    let items: Vec<io::Result<Bytes>> = chunks.iter().map(|c| Ok(Bytes::from_static(c))).collect();
    Box::pin(futures::stream::iter(items))
}

async fn drain(mut body: HashingBody) -> (Vec<u8>, Option<String>) {
    let mut out = Vec::new();
    let mut pinned = Pin::new(&mut body);
    loop {
        let frame = futures::future::poll_fn(|cx| pinned.as_mut().poll_frame(cx)).await;
        match frame {
            None => return (out, None),
            Some(Err(e)) => return (out, Some(e.to_string())),
            Some(Ok(f)) => out.extend_from_slice(f.data_ref().map(|b| &b[..]).unwrap_or(&[])),
        }
    }
}

fn hashing(chunks: &[&'static [u8]], expected: u64, verify: Option<Verifier>) -> HashingBody {
    let state = StreamState {
        inner: stream(chunks),
        hasher: Some(BodyHasher::new(None)),
        verify,
        held: None,
        done: false,
        expected,
        outcome: Arc::new(Mutex::new(Outcome::default())),
    };
    HashingBody {
        state: Mutex::new(state),
        expected,
    }
}

#[tokio::test]
async fn streams_whole_body_after_verification() {
    let (out, err) = drain(hashing(&[b"hel", b"lo"], 5, None)).await;
    assert_eq!(out, b"hello");
    assert_eq!(err, None);
}

#[tokio::test]
async fn failed_verification_withholds_last_chunk() {
    let verify: Verifier = Box::new(|_| Err(Error::BadDigest { what: "MD5".into() }));
    let (out, err) = drain(hashing(&[b"hel", b"lo"], 5, Some(verify))).await;
    assert_eq!(out, b"hel");
    assert!(err.is_some());
}

#[tokio::test]
async fn wrong_lengths_fail() {
    let (_, err) = drain(hashing(&[b"hel", b"lo"], 4, None)).await;
    assert!(err.is_some());
    let (_, err) = drain(hashing(&[b"hel"], 5, None)).await;
    assert!(err.is_some());
}

#[tokio::test]
async fn small_bodies_are_buffered_and_verified() {
    let p = prepare_upload(stream(&[b"hello"]), Some(5), None, Known::default(), None).await;
    assert!(p.is_ok_and(|p| p.pending.known().is_some_and(|d| d.size == 5)));
    let verify: Verifier = Box::new(|_| Err(Error::BadDigest { what: "MD5".into() }));
    let p = prepare_upload(
        stream(&[b"hello"]),
        Some(5),
        None,
        Known::default(),
        Some(verify),
    )
    .await;
    assert!(matches!(p, Err(Error::BadDigest { .. })));
    let p = prepare_upload(stream(&[b"hello!"]), Some(5), None, Known::default(), None).await;
    assert!(matches!(p, Err(Error::InvalidArgument(_))));
}

#[tokio::test]
async fn a_checksum_only_body_carries_its_checksum_and_no_md5() {
    let known = Known {
        checksum_only: true,
        ..Known::default()
    };
    let p = prepare_upload(
        stream(&[b"hel", b"lo"]),
        Some(5),
        Some(ChecksumAlgorithm::Crc32c),
        known,
        None,
    )
    .await;
    let Ok(p) = p else { panic!("prepare failed") };
    let d = p.pending.known().expect("buffered digests");
    let mut crc = crate::store::digest::ChecksumHasher::new(ChecksumAlgorithm::Crc32c);
    crc.update(b"hello");
    assert_eq!(d.checksum.as_ref(), Some(&crc.finalize()));
    assert_eq!((d.size, d.md5), (5, [0u8; 16]), "no MD5 is computed");
    assert_eq!(p.buffered.as_deref(), Some(&b"hello"[..]));
    // A short body is still refused.
    let known = Known {
        checksum_only: true,
        ..Known::default()
    };
    let p = prepare_upload(
        stream(&[b"hel"]),
        Some(5),
        Some(ChecksumAlgorithm::Crc32c),
        known,
        None,
    )
    .await;
    assert!(matches!(p, Err(Error::IncompleteBody { .. })));
}

fn from_source(md5: [u8; 16]) -> Known {
    Known {
        source_md5: Some(md5),
        shared: None,
        checksum_only: false,
    }
}

#[tokio::test]
async fn shared_digests_are_taken_not_recomputed() {
    let shared = SharedDigests::default();
    let set = Digests {
        size: 5,
        md5: [3u8; 16],
        checksum: None,
    };
    shared.set(set.clone());
    let known = Known {
        source_md5: None,
        shared: Some(shared),
        checksum_only: false,
    };
    let p = prepare_upload(stream(&[b"hel", b"lo"]), Some(5), None, known, None).await;
    let Ok(p) = p else { panic!("prepare failed") };
    assert_eq!(
        p.pending.known(),
        Some(&set),
        "the producer's digests, not a new MD5"
    );
    assert!(!p.md5_from_source);
    let unset = Known {
        source_md5: None,
        shared: Some(SharedDigests::default()),
        checksum_only: false,
    };
    let p = prepare_upload(stream(&[b"hello"]), Some(5), None, unset, None).await;
    assert!(p.is_err(), "digests never set are an error, not a guess");
}

#[tokio::test]
async fn a_source_md5_is_sent_instead_of_hashing() {
    let md5 = [7u8; 16];
    let p = prepare_upload(
        stream(&[b"hel", b"lo"]),
        Some(5),
        None,
        from_source(md5),
        None,
    )
    .await;
    let Ok(p) = p else { panic!("prepare failed") };
    assert!(p.md5_from_source);
    assert!(
        p.pending
            .known()
            .is_some_and(|d| d.md5 == md5 && d.size == 5)
    );
    assert_eq!(p.buffered.as_deref(), Some(&b"hello"[..]));
    // Lengths are still enforced, and a checksum algorithm means hashing after all.
    let p = prepare_upload(stream(&[b"hel"]), Some(5), None, from_source(md5), None).await;
    assert!(matches!(p, Err(Error::IncompleteBody { .. })));
    let p = prepare_upload(
        stream(&[b"hello"]),
        Some(5),
        Some(ChecksumAlgorithm::Crc32),
        from_source(md5),
        None,
    )
    .await;
    assert!(p.is_ok_and(|p| !p.md5_from_source && p.pending.known().is_some_and(|d| d.md5 != md5)));
}

#[tokio::test]
async fn unknown_sizes_are_spooled() {
    let p = prepare_upload(stream(&[b"hel", b"lo"]), None, None, Known::default(), None).await;
    let Ok(p) = p else { panic!("spooling failed") };
    assert_eq!(p.len, 5);
    let path = p.pending._spool.as_ref().map(|s| s.path.clone());
    assert!(path.as_ref().is_some_and(|p| p.exists()));
    drop(p);
    assert!(path.is_some_and(|p| !p.exists()));
}
