//! Versioning and checksums through boto3 at default settings (`py/versioning.py`): version
//! ids, delete markers, restore by copy, suspension and the null version, ListObjectVersions
//! paging, and checksums sent, verified, stored and returned. One server per section.

use crate::support::Ferry;

/// Runs one section of `versioning.py`; a failure also shows the end of the server log.
fn section(name: &str) {
    let f = Ferry::start();
    let out = f.python("versioning.py", &[name]);
    let stdout = f.ok(&out);
    assert!(stdout.trim_end().ends_with("OK"), "{stdout}");
    assert!(
        !f.log().contains("panicked"),
        "server panicked:\n{}",
        f.log()
    );
}

#[test]
fn versions_markers_and_suspension() {
    section("versions");
}

#[test]
fn list_object_versions_paging() {
    section("paging");
}

#[test]
fn checksums() {
    section("checksums");
}
