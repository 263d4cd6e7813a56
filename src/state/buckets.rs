//! Namespace bucket records: a client-visible bucket name and its policy (JSON owned by the
//! `bucket` layer; this module only stores it).

use serde::{Deserialize, Serialize};
use sqlx::Row;

use super::{Db, Error, Result};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BucketRecord {
    pub name: String,
    pub policy: serde_json::Value,
    pub created_ms: i64,
}

impl Db {
    pub async fn add_bucket(&self, rec: &BucketRecord) -> Result<()> {
        let r = sqlx::query(
            "INSERT INTO buckets (name, policy, created_ms) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
        )
        .bind(&rec.name)
        .bind(rec.policy.to_string())
        .bind(rec.created_ms)
        .execute(&self.pool)
        .await?;
        if r.rows_affected() == 0 {
            return Err(Error::BucketExists(rec.name.clone()));
        }
        Ok(())
    }

    /// Replaces a bucket's policy.
    pub async fn set_bucket_policy(&self, name: &str, policy: &serde_json::Value) -> Result<()> {
        let r = sqlx::query("UPDATE buckets SET policy = $1 WHERE name = $2")
            .bind(policy.to_string())
            .bind(name)
            .execute(&self.pool)
            .await?;
        if r.rows_affected() == 0 {
            return Err(Error::NoSuchBucket(name.to_owned()));
        }
        Ok(())
    }

    pub async fn buckets(&self) -> Result<Vec<BucketRecord>> {
        let rows = sqlx::query("SELECT name, policy, created_ms FROM buckets ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(bucket_record).collect()
    }

    pub async fn remove_bucket(&self, name: &str) -> Result<()> {
        let r = sqlx::query("DELETE FROM buckets WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await?;
        if r.rows_affected() == 0 {
            return Err(Error::NoSuchBucket(name.to_owned()));
        }
        Ok(())
    }
}

fn bucket_record(r: &sqlx::any::AnyRow) -> Result<BucketRecord> {
    let policy: String = r.try_get("policy")?;
    Ok(BucketRecord {
        name: r.try_get("name")?,
        policy: serde_json::from_str(&policy).map_err(|e| Error::Corrupt(e.to_string()))?,
        created_ms: r.try_get("created_ms")?,
    })
}
