//! Which target holds a namespace bucket's multipart upload.
//!
//! An upload lives on the target that took the bucket's writes when it began (the primary, or
//! the failover target during a read-write failover) and can only be finished there: its
//! parts are nowhere else. So the upload ids a namespace bucket hands to clients name that
//! target, as `TAG.ID` with `TAG` eight hex digits derived from the target's label, and every
//! later call for the upload goes to it, or, if it no longer takes the bucket's writes,
//! fails with [`Error::UploadElsewhere`] (NoSuchUpload to S3 clients) saying why. An id
//! without a tag (handed out before ids carried one) goes to the primary.

use super::{Leg, Roles};
use crate::store::Error;

/// The tag of the target labelled `label`: FNV-1a, stable across restarts and versions.
fn tag(label: &str) -> String {
    let mut h: u32 = 0x811c_9dc5;
    for b in label.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    format!("{h:08x}")
}

/// The id a client is given for upload `id` held by `leg`.
pub fn tagged(leg: &Leg, id: &str) -> String {
    format!("{}.{id}", tag(&leg.label))
}

/// Splits a client's upload id into its tag (if it has one) and the holder's own id.
fn split(id: &str) -> (Option<&str>, &str) {
    match id.split_once('.') {
        Some((t, rest)) if t.len() == 8 && t.bytes().all(|b| b.is_ascii_hexdigit()) => {
            (Some(t), rest)
        }
        _ => (None, id),
    }
}

/// The target that holds uploads now: the primary, or, while failed over read-only, the
/// target serving reads (the primary is presumed away; its uploads cannot be finished
/// before failback anyway).
pub fn holder(roles: &Roles) -> &Leg {
    roles
        .read_only
        .as_ref()
        .and_then(|to| roles.readers.iter().find(|r| &r.label == to))
        .unwrap_or(&roles.primary)
}

/// The targets of the bucket now, each once.
fn targets(roles: &Roles) -> impl Iterator<Item = &Leg> {
    std::iter::once(&roles.primary)
        .chain(&roles.secondaries)
        .chain(&roles.readers)
}

/// The client's upload `id` split into the target it names and that target's own id. An id
/// whose tag names none of the bucket's targets is taken whole (an id from before tags, or
/// from a store whose own ids look tagged): `None` then.
fn named<'r, 'a>(roles: &'r Roles, id: &'a str) -> (Option<&'r Leg>, &'a str) {
    match split(id) {
        (Some(t), inner) => match targets(roles).find(|l| tag(&l.label) == t) {
            Some(l) => (Some(l), inner),
            None => (None, id),
        },
        (None, inner) => (None, inner),
    }
}

/// The holder's own id for the client's upload `id`, if `leg` holds it.
pub fn route<'a>(bucket: &str, roles: &Roles, leg: &Leg, id: &'a str) -> Result<&'a str, Error> {
    match named(roles, id) {
        (None, inner) => Ok(inner),
        (Some(l), inner) if l.label == leg.label => Ok(inner),
        (Some(l), _) => Err(Error::UploadElsewhere {
            bucket: bucket.to_owned(),
            upload_id: id.to_owned(),
            holder: l.label.clone(),
        }),
    }
}

/// The target holding the client's upload `id`, whichever of the bucket's targets that is
/// (the primary for an id without a tag), and its own id there.
pub fn holder_of<'r, 'a>(roles: &'r Roles, id: &'a str) -> (&'r Leg, &'a str) {
    match named(roles, id) {
        (Some(l), inner) => (l, inner),
        (None, inner) => (&roles.primary, inner),
    }
}

/// The client's upload-id marker as the holder `leg` knows it. A marker from another holder
/// (a listing paged across a role change) means nothing here and is dropped: the page then
/// starts after the key marker, as for a key marker alone.
pub fn marker(leg: &Leg, m: &str) -> Option<String> {
    match split(m) {
        (Some(t), inner) if t == tag(&leg.label) => Some(inner.to_owned()),
        (Some(_), _) => None,
        (None, inner) => Some(inner.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_name_their_holder() {
        assert_eq!(tag("local:b"), tag("local:b"));
        assert_ne!(tag("local:b"), tag("dr:b"));
        let t = format!("{}.abc.def", tag("local:b"));
        assert_eq!(split(&t), (Some(tag("local:b").as_str()), "abc.def"));
        // An id from before tags, or one whose first dot is elsewhere, is the holder's own.
        assert_eq!(split("2~xyz.q"), (None, "2~xyz.q"));
        assert_eq!(split("0123abcd"), (None, "0123abcd"));
    }
}
