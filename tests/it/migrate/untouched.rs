//! A directory a job only reads is left as it was: its index is kept under the data
//! directory, not beside it, so a tree the job may not write (a read-only mount, another
//! user's files) can be a source, two jobs can read sibling folders at once, and a dry run
//! writes nothing beside either side.

use super::{Migrator, assert_same_tree, make_tree};
use crate::support::{immutable, ok};

/// The source's parent could not be written: every run (even `--dry-run`) failed making
/// `.ferry/` there. A dry run also left `.ferry/` beside an existing destination.
#[test]
fn a_source_in_a_folder_it_may_not_write_is_read_and_left_as_it_was() {
    let tmp = tempfile::tempdir().expect("tmp");
    let parent = tmp.path().join("ro");
    let src = parent.join("photos");
    make_tree(&src, 20, &[]);
    let dst_parent = tmp.path().join("out");
    let dst = dst_parent.join("copy");
    std::fs::create_dir_all(&dst).expect("dst");
    let m = Migrator::new(tmp.path());
    let (s, d) = (
        src.to_str().unwrap_or_default(),
        dst.to_str().unwrap_or_default(),
    );
    immutable(&parent, true);
    let dry = m.run(&["migrate", s, d, "--dry-run"]);
    let real = m.run(&["migrate", s, d]);
    // Run again: the index kept under the data directory is found again.
    let again = m.run(&["migrate", s, d, "--json"]);
    immutable(&parent, false);
    ok(&dry);
    ok(&real);
    let again: serde_json::Value = serde_json::from_str(&ok(&again)).expect("json");
    assert_eq!(
        (again["done"].as_i64(), again["unchanged"].as_i64()),
        (Some(0), Some(20)),
        "{again}"
    );
    assert!(
        !parent.join(".ferry").exists(),
        "an index was made beside the source"
    );
    assert_same_tree(&src, &dst);
    // A dry run, with both sides existing, writes nothing beside either.
    let dst2_parent = tmp.path().join("out2");
    std::fs::create_dir_all(dst2_parent.join("copy2")).expect("dst2");
    let d2 = dst2_parent.join("copy2");
    ok(&m.run(&["migrate", s, d2.to_str().unwrap_or_default(), "--dry-run"]));
    assert!(
        !dst2_parent.join(".ferry").exists(),
        "a dry run wrote an index"
    );
    assert_eq!(
        std::fs::read_dir(&d2).expect("ls").count(),
        0,
        "a dry run wrote files"
    );
}
