//! Bodies damaged on their way to the destination never land. A directory's files go with a
//! CRC32C instead of `Content-MD5` (nobody needs their MD5): Ferry checks it and refuses a
//! damaged body; moto ignores both the checksum and `Content-MD5`, and keeps what it got, so
//! Ferry's own comparison of the returned ETag catches it and deletes the object again.
//! Either way the copy is retried and the tree arrives whole.

use std::process::Command;

use serde_json::Value;

use super::{MOTO_KEY, Migrator, assert_same_tree, fault_proxy, make_tree, stderr};
use crate::support::{ACCESS_KEY, Ferry, Moto, SECRET_KEY, ok};

/// PUT bodies the proxy damages, per destination.
const DAMAGED: u32 = 3;

#[test]
fn bodies_damaged_on_the_way_never_land() {
    let tmp = tempfile::tempdir().expect("tmp");
    let f = Ferry::start();
    let moto = Moto::start();
    let src = tmp.path().join("tree/dmg");
    make_tree(&src, 40, &[]);
    let sides = [
        ("ferry", f.s3.as_str(), ACCESS_KEY, SECRET_KEY),
        ("moto", moto.endpoint.as_str(), MOTO_KEY, MOTO_KEY),
    ];
    for (name, upstream, ak, sk) in sides {
        let stats = tmp.path().join(format!("{name}.json"));
        let (mut proxy, endpoint) = fault_proxy(upstream, "0", &stats, DAMAGED);
        let m = Migrator::new(&tmp.path().join(name)).creds("DST", ak, sk);
        // One worker: the damaged bodies are the first ones, sent before Ferry has learned
        // whether this destination echoes checksums (moto) and after (the rest).
        let out = m.run(&[
            "migrate",
            src.to_str().unwrap_or_default(),
            "s3://dmg",
            "--dst-endpoint",
            &endpoint,
            "--workers",
            "1",
            "--attempts",
            "10",
        ]);
        let _ = proxy.kill();
        let _ = proxy.wait();
        assert!(out.status.success(), "{name}: {}", stderr(&out));
        let stats: Value =
            serde_json::from_str(&std::fs::read_to_string(&stats).expect("proxy stats"))
                .expect("json");
        assert_eq!(
            stats["corrupted"].as_u64(),
            Some(u64::from(DAMAGED)),
            "{name}: {stats}"
        );
        // Read back straight from the server, not through the proxy.
        let back = tmp.path().join(format!("back-{name}/dmg"));
        let m2 = Migrator::new(&tmp.path().join(format!("{name}-back"))).creds("SRC", ak, sk);
        ok(&m2.run(&[
            "migrate",
            "s3://dmg",
            back.to_str().unwrap_or_default(),
            "--src-endpoint",
            upstream,
        ]));
        assert_same_tree(&src, &back);
    }
    // What reached Ferry carries the CRC32C it was checked with.
    let mut head = Command::new(crate::support::venv_bin("aws"));
    head.args([
        "--endpoint-url",
        &f.s3,
        "s3api",
        "head-object",
        "--bucket",
        "dmg",
    ])
    .args(["--key", "f00001", "--checksum-mode", "ENABLED"])
    .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    .env("AWS_DEFAULT_REGION", "us-east-1");
    let meta: Value = serde_json::from_str(&ok(&head.output().expect("aws"))).expect("json");
    assert!(
        meta["ChecksumCRC32C"]
            .as_str()
            .is_some_and(|c| !c.is_empty()),
        "{meta}"
    );
}
