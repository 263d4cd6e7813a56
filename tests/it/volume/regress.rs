//! Regressions found by probing `ferry volume` against rsync: each test is named after what
//! went wrong and fails on the code before its fix.

use std::os::unix::fs::FileExt;

use super::harness::{Destination, promote, sync_ok};
use super::tree::assert_same_tree;
use crate::support::write_file;

/// Hash-compare mode (the source's manifest does not name the destination's snapshot) read a
/// large file to the end to compare it, then chunked it from the same descriptor's offset
/// (the end): a changed file of unchanged size was published empty.
#[test]
fn hash_compare_sends_a_changed_large_file_whole() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = tmp.path();
    let src = t.join("src");
    write_file(&src.join("db"), 1_000_000, 1);
    write_file(&src.join("small"), 10, 2);
    let dst = Destination::start(t, "dst");
    sync_ok(&src, &dst);
    // A lost manifest (or a failback): the next iteration compares content by hash.
    std::fs::remove_dir_all(src.join(".ferry/source")).expect("remove the manifest");
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(src.join("db"))
        .expect("open db");
    f.write_all_at(&[0x5a; 100], 500_000).expect("change db");
    drop(f);
    sync_ok(&src, &dst);
    let p = t.join("promoted");
    promote(&dst.dir, None, &p);
    assert_same_tree(&src, &p);
}
