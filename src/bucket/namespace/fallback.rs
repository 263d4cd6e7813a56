//! Reads that fall back from the first read target to a later one (the first does not
//! answer): a target still owed a write of a key holds an older state of it, or a write the
//! primary refused (the client got an error), so what it says of that key is not served.
//!
//! Owns: deciding whether a fallback answer is fresh, by the journal. Does not own: which
//! target reads come from (the policy's `read_from`, or a failover, whose target serves its
//! state as it is: see docs/buckets.md).

use super::{Leg, Namespace};
use crate::store::Error;

/// Owed keys looked at per fallback listing page; more than that and the page is refused.
const OWED_LOOKED_AT: i64 = 10_000;

impl Namespace {
    /// `Some(error)` when `leg`, serving a fallback read of `key`, is owed a write of it.
    pub(super) async fn stale_key(&self, leg: &Leg, key: &str) -> Option<Error> {
        match self
            .journal
            .db()
            .owes_key(&self.name, &leg.label, key)
            .await
        {
            Ok(false) => None,
            Ok(true) => Some(self.stale(leg, &format!("key {key:?}"))),
            Err(e) => Some(self.unchecked(leg, &format!("key {key:?}"), e)),
        }
    }

    /// `Some(error)` when `leg`, serving a fallback listing page of the keys under `prefix`
    /// after `after` (`(key, true)`: from that key on) up to `upto` (a truncated page's last
    /// key or common prefix), is owed a write of a key in that range.
    pub(super) async fn stale_listing(
        &self,
        leg: &Leg,
        prefix: &str,
        after: Option<(&str, bool)>,
        upto: Option<&str>,
    ) -> Option<Error> {
        let what = format!("keys under {prefix:?}");
        let keys = match self
            .journal
            .db()
            .owed_keys_under(&self.name, &leg.label, prefix, OWED_LOOKED_AT + 1)
            .await
        {
            Ok(keys) => keys,
            Err(e) => return Some(self.unchecked(leg, &what, e)),
        };
        let in_page = |k: &String| {
            after.is_none_or(|(a, from)| k.as_str() > a || from && k.as_str() == a)
                && upto.is_none_or(|u| k.as_str() <= u || k.starts_with(u))
        };
        match keys.len() as i64 > OWED_LOOKED_AT || keys.iter().any(in_page) {
            true => Some(self.stale(leg, &what)),
            false => None,
        }
    }

    fn unchecked(&self, leg: &Leg, what: &str, e: crate::state::Error) -> Error {
        Error::Unavailable {
            store: leg.label.clone(),
            message: format!(
                "bucket {}: the first read target does not answer, and whether {} has caught \
                 up on {what} could not be read from the journal: {e}",
                self.name, leg.label
            ),
        }
    }

    fn stale(&self, leg: &Leg, what: &str) -> Error {
        Error::Unavailable {
            store: leg.label.clone(),
            message: format!(
                "bucket {}: the first read target does not answer, and {} has not caught up \
                 on {what} yet",
                self.name, leg.label
            ),
        }
    }
}
