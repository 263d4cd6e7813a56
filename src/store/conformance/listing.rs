//! Listing: prefixes, delimiters, markers and pages.

use super::helpers::*;
use crate::store::*;

/// Keys chosen to trip up orderings other than UTF-8 byte order (UTF-16 puts U+1F600 before
/// U+FF5E; case-insensitive or locale orders move `Zed`), and prefix handling (`a-b`, `a.b`
/// and `a0` sort around the `a/` prefix). No key is a path prefix of another's parent
/// directory, so stores with path semantics hold them all.
const LISTING_KEYS: [&str; 25] = [
    "a.b",
    "a-b",
    "a/",
    "a/1",
    "a/2/x",
    "a0",
    "a b/c d",
    "a b/e",
    "aé",
    "b",
    "Zed",
    "~t",
    "日本/語.txt",
    "日本/x",
    "\u{FF5E}",
    "\u{1F600}",
    "sp ace",
    "plus+eq=amp&q?h#pct%",
    "n/1",
    "n/2",
    "n/3",
    "n/4/5",
    "ü",
    "é/x",
    "zz",
];

pub async fn listing(s: &dyn Store, prefix: &str, gaps: super::Gaps) {
    let bk = bucket(prefix, "listing");
    ok(s, "create_bucket", s.create_bucket(&bk).await);
    for key in LISTING_KEYS {
        put(s, &bk, key, key.as_bytes()).await;
    }
    let all = sorted(LISTING_KEYS.iter().map(|k| (*k).to_owned()).collect());
    let q = |prefix: &str, delimiter: Option<&str>, max_keys: usize| ListQuery {
        prefix: prefix.to_owned(),
        delimiter: delimiter.map(str::to_owned),
        start_after: None,
        max_keys,
    };

    // Everything, in one page and in pages of every small size.
    let page = ok(s, "list", s.list_objects(&bk, &q("", None, 1000)).await);
    assert!(
        page.next_marker.is_none(),
        "{}: an untruncated listing has no next marker",
        s.name()
    );
    let names: Vec<String> = page.objects.iter().map(|o| o.key.to_string()).collect();
    assert_once_in_order(s, "list in one page", &names, &all);
    for o in &page.objects {
        assert_recent(
            s,
            &format!("listed last_modified of {}", o.key),
            o.last_modified,
        );
        assert_eq!(
            (o.size, o.etag.as_str()),
            (
                o.key.as_str().len() as u64,
                md5_hex(o.key.as_str().as_bytes()).as_str()
            ),
            "{}: listed size and ETag of {}",
            s.name(),
            o.key
        );
    }
    for max_keys in [1, 2, 3, 4, 7] {
        let got = list_all(s, &bk, &q("", None, max_keys)).await;
        assert_once_in_order(s, &format!("list in pages of {max_keys}"), &got, &all);
    }

    // Prefix.
    let under_a: Vec<String> = all.iter().filter(|k| k.starts_with('a')).cloned().collect();
    for max_keys in [1000, 3] {
        let got = list_all(s, &bk, &q("a", None, max_keys)).await;
        assert_once_in_order(s, &format!("prefix a, pages of {max_keys}"), &got, &under_a);
    }
    let got = list_all(s, &bk, &q("日本/", None, 1000)).await;
    assert_once_in_order(
        s,
        "a non-ASCII prefix",
        &got,
        &["日本/x".to_owned(), "日本/語.txt".to_owned()],
    );
    let got = list_all(s, &bk, &q("nothing-here", None, 1000)).await;
    assert!(
        got.is_empty(),
        "{}: prefix matching nothing: {got:?}",
        s.name()
    );

    // Delimiter: common prefixes roll up, once each, in order with the objects.
    let top: Vec<String> = sorted(
        all.iter()
            .map(|k| match k.find('/') {
                Some(i) => k[..=i].to_owned(),
                None => k.clone(),
            })
            .collect(),
    );
    let page = ok(
        s,
        "list",
        s.list_objects(&bk, &q("", Some("/"), 1000)).await,
    );
    let want_prefixes: Vec<String> = top.iter().filter(|e| e.ends_with('/')).cloned().collect();
    assert_eq!(
        page.common_prefixes,
        want_prefixes,
        "{}: common prefixes with delimiter /",
        s.name()
    );
    let objects: Vec<String> = page.objects.iter().map(|o| o.key.to_string()).collect();
    let want_objects: Vec<String> = top.iter().filter(|e| !e.ends_with('/')).cloned().collect();
    assert_eq!(
        objects,
        want_objects,
        "{}: objects with delimiter /",
        s.name()
    );
    for max_keys in [1, 2, 5] {
        let got = list_all(s, &bk, &q("", Some("/"), max_keys)).await;
        assert_once_in_order(s, &format!("delimiter /, pages of {max_keys}"), &got, &top);
    }
    for max_keys in [1000, 1] {
        let got = list_all(s, &bk, &q("a/", Some("/"), max_keys)).await;
        assert_once_in_order(
            s,
            &format!("prefix a/, delimiter /, pages of {max_keys}"),
            &got,
            &["a/".to_owned(), "a/1".to_owned(), "a/2/".to_owned()],
        );
        let got = list_all(s, &bk, &q("n/", Some("/"), max_keys)).await;
        assert_once_in_order(
            s,
            &format!("prefix n/, delimiter /, pages of {max_keys}"),
            &got,
            &["n/1", "n/2", "n/3", "n/4/"].map(str::to_owned),
        );
    }

    // start_after: an existing key, a key that does not exist, and with a prefix.
    for (prefix, after) in [
        ("", "a0"),
        ("", "m"),
        ("", "\u{FF5E}"),
        ("n/", "n/2"),
        ("a", "a/"),
    ] {
        let want: Vec<String> = all
            .iter()
            .filter(|k| k.starts_with(prefix) && k.as_str() > after)
            .cloned()
            .collect();
        for max_keys in [1000, 2] {
            let mut query = q(prefix, None, max_keys);
            query.start_after = Some(after.to_owned());
            let got = list_all(s, &bk, &query).await;
            assert_once_in_order(
                s,
                &format!("prefix {prefix:?} start_after {after:?}, pages of {max_keys}"),
                &got,
                &want,
            );
        }
    }
    let mut query = q("", Some("/"), 1000);
    query.start_after = Some("a/".to_owned());
    let got = list_all(s, &bk, &query).await;
    let want: Vec<String> = top.iter().filter(|e| e.as_str() > "a/").cloned().collect();
    assert_once_in_order(
        s,
        "delimiter / start_after a common prefix skips everything under it",
        &got,
        &want,
    );
    // A StartAfter inside a common prefix: the prefix's later keys still roll up into it.
    let sizes: &[usize] = match gaps.start_after_in_prefix {
        None => &[1000, 1],
        Some(why) => {
            eprintln!(
                "{}: skipping a StartAfter inside a common prefix: {why}",
                s.name()
            );
            &[]
        }
    };
    for &max_keys in sizes {
        let mut query = q("", Some("/"), max_keys);
        query.start_after = Some("a/1".to_owned());
        let got = list_all(s, &bk, &query).await;
        let mut want = vec!["a/".to_owned()];
        want.extend(top.iter().filter(|e| e.as_str() > "a/1").cloned());
        assert_once_in_order(
            s,
            &format!("delimiter / start_after inside a common prefix, pages of {max_keys}"),
            &got,
            &want,
        );
    }

    // A key with a character XML 1.0 cannot carry (a backend lists it URL-encoded).
    let ctl = "ctl\u{1f}k";
    put(s, &bk, ctl, b"ctl").await;
    let got = list_all(s, &bk, &q("ctl", None, 1000)).await;
    assert_once_in_order(s, "a key with a control character", &got, &[ctl.to_owned()]);
    ok(s, "delete", s.delete_object(&bk, &k(ctl), None).await);

    // Deleted keys leave the listing.
    ok(s, "delete", s.delete_object(&bk, &k("n/2"), None).await);
    let got = list_all(s, &bk, &q("n/", None, 1000)).await;
    assert_once_in_order(
        s,
        "a deleted key is not listed",
        &got,
        &["n/1", "n/3", "n/4/5"].map(str::to_owned),
    );
}
