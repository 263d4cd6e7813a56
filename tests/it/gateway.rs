//! S3 behaviour through real clients: the basics with awscli and boto3, and bad input that
//! must get the S3 error AWS would give (never a 500 or a dropped connection).

use crate::support::{Ferry, ok};

#[test]
fn boto3_basics() {
    let f = Ferry::start();
    let out = f.python("basics.py", &[]);
    ok(&out);
}

#[test]
fn multipart_checksum_types() {
    let f = Ferry::start();
    ok(&f.python("checksum_types.py", &[]));
}

#[test]
fn conditional_requests() {
    let f = Ferry::start();
    ok(&f.python("conditions.py", &[]));
}

#[test]
fn s3_rules_at_the_edges() {
    let f = Ferry::start();
    ok(&f.python("s3_rules.py", &[]));
}

#[test]
fn bad_input_gets_s3_errors() {
    let f = Ferry::start();
    let out = f.python("bad_input.py", &[]);
    ok(&out);
    assert!(
        !f.log().contains("panicked"),
        "server panicked:\n{}",
        f.log()
    );
}

#[test]
fn virtual_host_style() {
    let f = Ferry::start_with(&["--domain", "s3.ferry.test"]);
    ok(&f.python("virtual_host.py", &["s3.ferry.test"]));
}

#[test]
fn requests_s3_refuses_are_refused() {
    let f = Ferry::start();
    let root = f.local_root();
    ok(&f.python("s3_guards.py", &[&root.to_string_lossy()]));
}
