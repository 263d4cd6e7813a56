//! A secondary write given up on (no answer within the grace) that the secondary still
//! carries out later: a probe's stalled request landed over the newer object the catch-up
//! had put there (and a stalled DELETE over a rewrite), with nothing owed. The key is owed a
//! second sync a while after, which copies the primary's state over whatever landed.

use std::process::Stdio;

use super::*;
use crate::support::{printed_port, repo};

/// `py/late_proxy.py` in front of `upstream` (an `http://127.0.0.1:PORT` endpoint): the
/// first request carrying `marker` reaches it `hold` seconds late.
struct LateProxy {
    child: std::process::Child,
    endpoint: String,
}

impl Drop for LateProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn late_proxy(upstream: &str, marker: &str, hold: u64) -> LateProxy {
    let port = upstream.rsplit(':').next().expect("a port");
    let mut child = Command::new(venv_bin("python"))
        .arg(repo().join("tests/it/py/late_proxy.py"))
        .args([port, marker, &hold.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .expect("late proxy");
    let port = printed_port(&mut child);
    LateProxy {
        child,
        endpoint: format!("http://127.0.0.1:{port}"),
    }
}

#[test]
fn a_secondary_write_that_lands_late_is_synced_over() {
    // moto, as many servers do, carries out a request whose client has gone (a Ferry
    // secondary drops it).
    let a = Ferry::start();
    let moto = Moto::start();
    let proxy = late_proxy(&moto.endpoint, "LANDS-LATE", 12);
    a.add_s3_store("dr", &proxy.endpoint, "testing", "testing");
    a.ok(&a.cli(&[
        "bucket",
        "create",
        "late",
        "--write-to",
        "local:late,dr:late",
    ]));
    let (v1, v2) = (a.dir.path().join("v1"), a.dir.path().join("v2"));
    std::fs::write(&v1, "LANDS-LATE: the first version\n").expect("v1");
    std::fs::write(&v2, "the second version\n").expect("v2");
    let started = Instant::now();
    // Given up on after the grace; the secondary is marked down, the second write owed to
    // it and synced by the catch-up, before the first lands (12 s in).
    cp_to(&a, &v1, "s3://late/k");
    cp_to(&a, &v2, "s3://late/k");
    let landed = Duration::from_secs(15);
    std::thread::sleep(landed.saturating_sub(started.elapsed()));
    wait_drained(&a, "late");
    // (The two versions differ in size.)
    assert_same(&a, "local:late", "dr:late");
}
