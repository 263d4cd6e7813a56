//! What the source says when an iteration fails on the other side: the cause, naming the
//! file, not only that the connection ended.

use std::io::Read;
use std::net::TcpListener;
use std::time::Duration;

use super::harness::{Destination, run, source_cmd, stderr, sync_ok, write_secret};
use crate::support::write_file;

/// A destination whose disk filled while it wrote a large file answered why and closed, but
/// the source mostly printed "the connection to the destination closed" (it stopped at its
/// own broken stream, and the closing could reset the answer away), and the answer named no
/// file: the operator could not tell a full disk from a crash.
#[test]
fn a_full_destination_disk_is_said_at_the_source_with_the_file() {
    // The small disk's mount namespace maps root only: run by another user, the
    // destination could not give files their owner.
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = tmp.path();
    let src = t.join("src");
    write_file(&src.join("small"), 100_000, 1);
    let dst = Destination::start_on_small_disk(t, "dst", 16);
    sync_ok(&src, &dst);
    // Incompressible, larger than the disk.
    write_file(&src.join("big"), 24 << 20, 2);
    for round in 0..3 {
        let out = run(source_cmd(&src, &dst.secret));
        let said = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "round {round}: {said}");
        assert!(
            said.contains("No space left on device"),
            "round {round}: {said}"
        );
        assert!(said.contains("big"), "round {round}: {said}");
    }
    // Room made (the file given up): the next iteration goes through.
    std::fs::remove_file(src.join("big")).expect("remove big");
    sync_ok(&src, &dst);
}

/// A connection reset in the TLS handshake (a destination that stopped or restarted, a
/// middlebox) was reported as "it is not the destination this secret names", which sends an
/// operator to check certificates.
#[test]
fn a_reset_in_the_handshake_is_not_called_a_wrong_destination() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = tmp.path();
    let src = t.join("src");
    write_file(&src.join("a"), 10, 1);
    let dst = Destination::start(t, "dst");
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    // Accepts, takes part of the ClientHello, and closes with the rest unread: a reset.
    let resetter = std::thread::spawn(move || {
        if let Ok((mut conn, _)) = listener.accept() {
            let mut some = [0u8; 8];
            let _ = conn.read(&mut some);
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    let mut secret = dst.secret_json();
    secret["address"] = serde_json::Value::String(addr.to_string());
    let elsewhere = t.join("elsewhere.secret.json");
    write_secret(&elsewhere, &secret);
    let out = run(source_cmd(&src, &elsewhere));
    let _ = resetter.join();
    let said = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(!said.contains("not the destination"), "{said}");
    assert!(said.contains("during the TLS handshake"), "{said}");
}
