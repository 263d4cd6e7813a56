//! A namespace bucket's policy: where writes go, where reads come from, and whether the
//! bucket is failed over. Parsing and the checks that need no store (the registry checks that
//! named stores exist).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::store::BucketName;

/// A `store:bucket` pair.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Target {
    pub store: String,
    pub bucket: String,
}

impl Target {
    /// Parses `store:bucket`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (store, bucket) = s
            .split_once(':')
            .ok_or_else(|| format!("target {s:?} is not of the form store:bucket"))?;
        if store.is_empty() {
            return Err(format!("target {s:?} names no store"));
        }
        BucketName::parse(bucket).map_err(|e| format!("target {s:?}: {e}"))?;
        Ok(Self {
            store: store.to_owned(),
            bucket: bucket.to_owned(),
        })
    }

    pub fn bucket_name(&self) -> Result<BucketName, crate::store::NameError> {
        BucketName::parse(&self.bucket)
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.store, self.bucket)
    }
}

/// How a failed-over bucket takes writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailoverMode {
    /// Reads from the failover target; writes are refused.
    ReadOnly,
    /// Reads and writes go to the failover target; the others are owed the writes.
    ReadWrite,
}

impl FailoverMode {
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "read-only" => Ok(Self::ReadOnly),
            "read-write" => Ok(Self::ReadWrite),
            _ => Err(format!("mode {s:?} is not one of read-only, read-write")),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failover {
    /// The write target now serving (one of `write_to`, not the first).
    pub to: Target,
    pub mode: FailoverMode,
    pub since_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// Ordered; the first is the primary.
    pub write_to: Vec<Target>,
    /// Ordered; the first that answers serves reads.
    pub read_from: Vec<Target>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover: Option<Failover>,
}

impl Policy {
    /// Builds a policy from the CLI/API form; `read_from` defaults to the primary.
    pub fn new(write_to: &[String], read_from: &[String]) -> Result<Self, String> {
        let write_to = write_to
            .iter()
            .map(|s| Target::parse(s))
            .collect::<Result<Vec<_>, _>>()?;
        let mut read_from = read_from
            .iter()
            .map(|s| Target::parse(s))
            .collect::<Result<Vec<_>, _>>()?;
        if read_from.is_empty()
            && let Some(p) = write_to.first()
        {
            read_from.push(p.clone());
        }
        let p = Self {
            write_to,
            read_from,
            failover: None,
        };
        p.check()?;
        Ok(p)
    }

    /// The checks that need no store.
    pub fn check(&self) -> Result<(), String> {
        if self.write_to.is_empty() {
            return Err("write_to is empty: a bucket needs at least one write target".into());
        }
        for (i, t) in self.write_to.iter().enumerate() {
            if self.write_to[..i].contains(t) {
                return Err(format!("write_to names {t} twice"));
            }
        }
        for t in self.write_to.iter().chain(&self.read_from) {
            Target::parse(&t.to_string())?;
        }
        if let Some(f) = &self.failover
            && !self.write_to[1..].contains(&f.to)
        {
            return Err(format!(
                "failover target {} is not a secondary write target",
                f.to
            ));
        }
        Ok(())
    }

    pub fn primary(&self) -> &Target {
        &self.write_to[0]
    }

    /// Every store the policy names.
    pub fn stores(&self) -> impl Iterator<Item = &str> {
        self.write_to
            .iter()
            .chain(&self.read_from)
            .map(|t| t.store.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_checks() {
        let p = Policy::new(&["a:bkt1".into(), "b:bkt2".into()], &[]).expect("valid");
        assert_eq!(p.read_from, vec![Target::parse("a:bkt1").expect("t")]);
        assert_eq!(p.primary().to_string(), "a:bkt1");
        assert!(Policy::new(&[], &[]).is_err());
        assert!(Policy::new(&["a:bkt1".into(), "a:bkt1".into()], &[]).is_err());
        assert!(Policy::new(&["nocolon".into()], &[]).is_err());
        assert!(Policy::new(&["a:Bad_Bucket".into()], &[]).is_err());
        assert!(
            Policy::new(&["a:b1".into()], &[]).is_err(),
            "too short a bucket name"
        );
        assert!(Policy::new(&[":bkt1".into()], &[]).is_err());
        let mut p = p;
        p.failover = Some(Failover {
            to: Target::parse("a:bkt1").expect("t"),
            mode: FailoverMode::ReadOnly,
            since_ms: 0,
        });
        assert!(p.check().is_err(), "the primary is no failover target");
        assert!(FailoverMode::parse("sideways").is_err());
    }
}
