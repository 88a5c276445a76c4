//! The ElastiCache backup steps: Backup and its status check (the parameter-group steps are in
//! `notifications`). Each is idempotent: a second run changes nothing the first one did. None
//! sleeps: the state machine waits and polls.

use serde::{Deserialize, Serialize};

use crate::aws::Ctx;
use crate::contracts::{BackupOutput, MigrationInput};
use crate::error::StepError;

/// Backup's input: the migration, and when its execution started (the state machine passes
/// `$$.Execution.StartTime`), which names the snapshot.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupRequest {
    /// The execution input.
    pub migration: MigrationInput,
    /// The execution's start (ISO 8601), absent when called outside a state machine.
    #[serde(default)]
    pub execution_start: Option<String>,
}

/// The snapshot's name: per migration and execution start, so a retry of the step finds its
/// own snapshot while a later run under the same migration_id never takes an old snapshot for
/// its backup (`ferry-orders-1-20261130t140331`).
pub fn snapshot_name(request: &BackupRequest) -> String {
    let id = &request.migration.migration_id;
    match &request.execution_start {
        Some(start) => {
            let stamp: String = start
                .split('.')
                .next()
                .unwrap_or_default()
                .chars()
                .filter(|c| c.is_ascii_alphanumeric())
                .collect();
            format!("ferry-{id}-{}", stamp.to_ascii_lowercase())
        }
        None => format!("ferry-{id}"),
    }
}

/// Backup: requests an ElastiCache snapshot of the source, or says why none is taken.
/// A snapshot of that name already present (a retry) is not an error.
pub async fn backup(ctx: Ctx, request: BackupRequest) -> Result<BackupOutput, StepError> {
    let name = snapshot_name(&request);
    let input = request.migration;
    input.check()?;
    let ec = &ctx.aws.elasticache;
    if !input.options.backup {
        return Ok(skipped("options.backup is false"));
    }
    if let Some(cache) = &input.source.serverless_cache_name {
        let created = ec
            .create_serverless_cache_snapshot()
            .serverless_cache_name(cache)
            .serverless_cache_snapshot_name(&name)
            .send()
            .await;
        if let Err(e) = created {
            let exists = e
                .as_service_error()
                .is_some_and(|s| s.is_serverless_cache_snapshot_already_exists_fault());
            if !exists {
                return Err(StepError::from_aws("CreateServerlessCacheSnapshot", e));
            }
        }
        return backup_status(
            ctx,
            BackupStep {
                migration: input,
                backup: started(name, true),
            },
        )
        .await;
    }
    let Some(group) = &input.source.replication_group_id else {
        return Ok(skipped(
            "the source is not an ElastiCache cache (no replication_group_id or serverless_cache_name)",
        ));
    };
    let created = ec
        .create_snapshot()
        .replication_group_id(group)
        .snapshot_name(&name)
        .send()
        .await;
    if let Err(e) = created {
        let exists = e
            .as_service_error()
            .is_some_and(|s| s.is_snapshot_already_exists_fault());
        if !exists {
            return Err(StepError::from_aws("CreateSnapshot", e));
        }
    }
    backup_status(
        ctx,
        BackupStep {
            migration: input,
            backup: started(name, false),
        },
    )
    .await
}

fn skipped(reason: &str) -> BackupOutput {
    BackupOutput {
        skipped: Some(reason.to_string()),
        ready: true,
        ..BackupOutput::default()
    }
}

fn started(name: String, serverless: bool) -> BackupOutput {
    BackupOutput {
        snapshot_name: Some(name),
        serverless,
        started_at_ms: Some(crate::contracts::epoch_ms()),
        ..BackupOutput::default()
    }
}

/// BackupStatus's input: the migration and Backup's output.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupStep {
    /// The execution input.
    pub migration: MigrationInput,
    /// What Backup returned.
    pub backup: BackupOutput,
}

/// BackupStatus: the snapshot's status; `ready` once available. A failed snapshot fails the
/// step (`BackupFailed`): the migration should not go on without the backup it asked for; so
/// does one still not available after `options.backup_timeout_secs` (`PollTimeout`).
pub async fn backup_status(ctx: Ctx, step: BackupStep) -> Result<BackupOutput, StepError> {
    let mut out = step.backup;
    let Some(name) = out.snapshot_name.clone() else {
        return Ok(out);
    };
    let ec = &ctx.aws.elasticache;
    let status = if out.serverless {
        let found = ec
            .describe_serverless_cache_snapshots()
            .serverless_cache_snapshot_name(&name)
            .send()
            .await
            .map_err(|e| StepError::from_aws("DescribeServerlessCacheSnapshots", e))?;
        found
            .serverless_cache_snapshots()
            .first()
            .and_then(|s| s.status())
            .map(str::to_string)
    } else {
        let found = ec
            .describe_snapshots()
            .snapshot_name(&name)
            .send()
            .await
            .map_err(|e| StepError::from_aws("DescribeSnapshots", e))?;
        found
            .snapshots()
            .first()
            .and_then(|s| s.snapshot_status())
            .map(str::to_string)
    };
    let status = status.unwrap_or_else(|| "creating".into());
    if status == "failed" {
        return Err(StepError::Named {
            kind: "BackupFailed",
            message: format!("snapshot {name} failed"),
        });
    }
    out.ready = status == "available";
    let limit = step.migration.options.backup_timeout_secs;
    if !out.ready && crate::contracts::poll_timed_out(out.started_at_ms, limit) {
        return Err(StepError::Named {
            kind: "PollTimeout",
            message: format!(
                "snapshot {name} is still {status} after {limit}s (options.backup_timeout_secs)"
            ),
        });
    }
    out.status = Some(status);
    Ok(out)
}
