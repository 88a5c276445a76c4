//! Shard plans in S3. A 500-primary cluster with 16 dbs and 16 shards per db has 128,000
//! shards, and an execution's state may hold 256 KiB (beyond it `States.DataLimitExceeded`
//! ends the run where no Catch sees it). So the Plan steps write their items to the stack's
//! plan bucket and return only where they are and how many; the Distributed Maps read them
//! with `ItemReader` and write their results back with `ResultWriter`. A thin adapter: no
//! Redis here.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::aws::Aws;
use crate::contracts::StoredPlan;
use crate::error::StepError;

/// The environment variable that names the plan bucket (the stack sets it).
pub const BUCKET_ENV: &str = "FERRY_PLAN_BUCKET";

/// The plan bucket, from [`BUCKET_ENV`].
pub fn bucket() -> Result<String, StepError> {
    std::env::var(BUCKET_ENV)
        .ok()
        .filter(|b| !b.is_empty())
        .ok_or_else(|| {
            StepError::invalid(format!(
                "{BUCKET_ENV} is not set: the Plan steps write shard plans to the stack's plan bucket"
            ))
        })
}

/// Writes `items` as one JSON array to `bucket`, under the migration's prefix and a name of
/// its own (a retried step writes a new object; the bucket's lifecycle rule removes old ones).
pub async fn store<T: Serialize>(
    aws: &Aws,
    bucket: &str,
    migration_id: &str,
    kind: &str,
    items: &[T],
) -> Result<StoredPlan, StepError> {
    let body = serde_json::to_vec(items).expect("plans serialize");
    let written = crate::contracts::epoch_ms();
    let key = format!("plans/{migration_id}/{kind}-{written}.json");
    aws.s3
        .put_object()
        .bucket(bucket)
        .key(&key)
        .content_type("application/json")
        .body(body.into())
        .send()
        .await
        .map_err(|e| StepError::from_aws("PutObject", e))?;
    Ok(StoredPlan {
        bucket: bucket.to_string(),
        key,
        count: items.len(),
    })
}

/// Reads a plan [`store`] wrote.
pub async fn load<T: DeserializeOwned>(aws: &Aws, plan: &StoredPlan) -> Result<Vec<T>, StepError> {
    let out = aws
        .s3
        .get_object()
        .bucket(&plan.bucket)
        .key(&plan.key)
        .send()
        .await
        .map_err(|e| StepError::from_aws("GetObject", e))?;
    let bytes = out
        .body
        .collect()
        .await
        .map_err(|e| StepError::Named {
            kind: "Retryable",
            message: format!("reading s3://{}/{}: {e}", plan.bucket, plan.key),
        })?
        .into_bytes();
    serde_json::from_slice(&bytes).map_err(|e| {
        StepError::invalid(format!(
            "s3://{}/{} is not a plan: {e}",
            plan.bucket, plan.key
        ))
    })
}
