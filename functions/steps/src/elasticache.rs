//! The ElastiCache steps: Backup (and its status check), EnableNotifications (and its status
//! check), Cleanup. Each is idempotent: a second run changes nothing the first one did. None
//! sleeps: the state machine waits and polls.

use aws_sdk_elasticache::types::ParameterNameValue;
use ferry_engine::inventory::notifications_cover;
use ferry_engine::tail::merged_notify_flags;
use serde::{Deserialize, Serialize};

use crate::aws::Ctx;
use crate::contracts::{BackupOutput, CleanupOutput, MigrationInput, Mode, NotificationsOutput};
use crate::error::StepError;

const NOTIFY: &str = "notify-keyspace-events";

/// The snapshot's name for a migration: the same on every run, so a retry finds it.
pub fn snapshot_name(input: &MigrationInput) -> String {
    format!("ferry-{}", input.migration_id)
}

/// Backup: requests an ElastiCache snapshot of the source, or says why none is taken.
/// A snapshot of that name already present (a retry) is not an error.
pub async fn backup(ctx: Ctx, input: MigrationInput) -> Result<BackupOutput, StepError> {
    input.check()?;
    let ec = &ctx.aws.elasticache;
    let name = snapshot_name(&input);
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
/// step (`BackupFailed`): the migration should not go on without the backup it asked for.
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
    out.status = Some(status);
    Ok(out)
}

/// The parameter group ferry creates when the source uses a default (unmodifiable) group.
fn own_group_name(replication_group: &str) -> String {
    format!("ferry-{replication_group}")
}

/// The description of ferry's own group; it records the group it replaced, so a retry and
/// Cleanup find the original.
fn own_group_description(original: &str) -> String {
    format!("ferry: copy of {original} with keyspace notifications; original group {original}")
}

fn original_from_description(description: &str) -> Option<String> {
    description
        .rsplit_once("original group ")
        .map(|(_, g)| g.trim().to_string())
}

/// The parameter group of the replication group's first member and its apply status per member.
async fn group_of(ctx: &Ctx, replication_group: &str) -> Result<Vec<(String, String)>, StepError> {
    let ec = &ctx.aws.elasticache;
    let groups = ec
        .describe_replication_groups()
        .replication_group_id(replication_group)
        .send()
        .await
        .map_err(|e| StepError::from_aws("DescribeReplicationGroups", e))?;
    let members: Vec<String> = groups
        .replication_groups()
        .first()
        .map(|g| g.member_clusters().to_vec())
        .unwrap_or_default();
    if members.is_empty() {
        return Err(StepError::invalid(format!(
            "replication group {replication_group} has no member clusters"
        )));
    }
    let mut out = Vec::new();
    for member in members {
        let clusters = ec
            .describe_cache_clusters()
            .cache_cluster_id(&member)
            .send()
            .await
            .map_err(|e| StepError::from_aws("DescribeCacheClusters", e))?;
        for c in clusters.cache_clusters() {
            if let Some(pg) = c.cache_parameter_group() {
                out.push((
                    pg.cache_parameter_group_name()
                        .unwrap_or_default()
                        .to_string(),
                    pg.parameter_apply_status().unwrap_or_default().to_string(),
                ));
            }
        }
    }
    if out.is_empty() {
        return Err(StepError::retryable(format!(
            "replication group {replication_group}: no member reports a parameter group yet"
        )));
    }
    Ok(out)
}

async fn parameter(ctx: &Ctx, group: &str, name: &str) -> Result<Option<String>, StepError> {
    let mut marker = None;
    loop {
        let page = ctx
            .aws
            .elasticache
            .describe_cache_parameters()
            .cache_parameter_group_name(group)
            .set_marker(marker)
            .send()
            .await
            .map_err(|e| StepError::from_aws("DescribeCacheParameters", e))?;
        if let Some(p) = page
            .parameters()
            .iter()
            .find(|p| p.parameter_name() == Some(name))
        {
            return Ok(Some(p.parameter_value().unwrap_or_default().to_string()));
        }
        match page.marker() {
            Some(m) if !m.is_empty() => marker = Some(m.to_string()),
            _ => return Ok(None),
        }
    }
}

async fn set_parameter(ctx: &Ctx, group: &str, value: &str) -> Result<(), StepError> {
    ctx.aws
        .elasticache
        .modify_cache_parameter_group()
        .cache_parameter_group_name(group)
        .parameter_name_values(
            ParameterNameValue::builder()
                .parameter_name(NOTIFY)
                .parameter_value(value)
                .build(),
        )
        .send()
        .await
        .map_err(|e| StepError::from_aws("ModifyCacheParameterGroup", e))?;
    Ok(())
}

async fn attach_group(ctx: &Ctx, replication_group: &str, group: &str) -> Result<(), StepError> {
    ctx.aws
        .elasticache
        .modify_replication_group()
        .replication_group_id(replication_group)
        .cache_parameter_group_name(group)
        .apply_immediately(true)
        .send()
        .await
        .map_err(|e| StepError::from_aws("ModifyReplicationGroup", e))?;
    Ok(())
}

/// EnableNotifications (design §4.7): makes the source's parameter group deliver `K` plus
/// `g$lshzxet`, keeping the flags it had. A default group cannot be modified, so ferry creates
/// `ferry-<replication group>` in the same family and attaches it. Reports the original
/// settings for Cleanup. A second run finds the flags set and changes nothing.
pub async fn enable_notifications(
    ctx: Ctx,
    input: MigrationInput,
) -> Result<NotificationsOutput, StepError> {
    input.check()?;
    let skip = |why: &str| {
        Ok(NotificationsOutput {
            skipped: Some(why.to_string()),
            in_sync: true,
            ..NotificationsOutput::default()
        })
    };
    if input.mode != Mode::Live {
        return skip("only live mode follows keyspace notifications");
    }
    if input.source.serverless_cache_name.is_some() {
        return Err(ferry_engine::Error::NotificationsDisabled(
            "ElastiCache Serverless caches do not deliver keyspace notifications: use snapshot mode, or a node-based cache".into(),
        )
        .into());
    }
    let Some(rg) = input.source.replication_group_id.as_deref() else {
        return skip("not an ElastiCache source: the tail checks notify-keyspace-events and proves delivery with its canary");
    };
    if !input.options.enable_notifications {
        return skip("options.enable_notifications is false: the tail's canary proves delivery or fails with NotificationsDisabled");
    }
    let current_group = group_of(&ctx, rg).await?[0].0.clone();
    let current = parameter(&ctx, &current_group, NOTIFY)
        .await?
        .unwrap_or_default();
    if notifications_cover(&current) {
        let original_group = describe_group(&ctx, &current_group)
            .await?
            .1
            .as_deref()
            .and_then(original_from_description);
        return Ok(NotificationsOutput {
            parameter_group: Some(current_group),
            original_group,
            ..NotificationsOutput::default()
        });
    }
    let wanted = merged_notify_flags(&current);
    if !current_group.starts_with("default.") {
        set_parameter(&ctx, &current_group, &wanted).await?;
        return Ok(NotificationsOutput {
            parameter_group: Some(current_group),
            original_value: Some(current),
            changed: true,
            ..NotificationsOutput::default()
        });
    }
    let (family, _) = describe_group(&ctx, &current_group).await?;
    let own = own_group_name(rg);
    let created = ctx
        .aws
        .elasticache
        .create_cache_parameter_group()
        .cache_parameter_group_name(&own)
        .cache_parameter_group_family(family)
        .description(own_group_description(&current_group))
        .send()
        .await;
    if let Err(e) = created {
        let exists = e
            .as_service_error()
            .is_some_and(|s| s.is_cache_parameter_group_already_exists_fault());
        if !exists {
            return Err(StepError::from_aws("CreateCacheParameterGroup", e));
        }
    }
    set_parameter(&ctx, &own, &wanted).await?;
    attach_group(&ctx, rg, &own).await?;
    Ok(NotificationsOutput {
        parameter_group: Some(own),
        original_group: Some(current_group),
        original_value: Some(current),
        changed: true,
        ..NotificationsOutput::default()
    })
}

/// A parameter group's family and description.
async fn describe_group(ctx: &Ctx, group: &str) -> Result<(String, Option<String>), StepError> {
    let out = ctx
        .aws
        .elasticache
        .describe_cache_parameter_groups()
        .cache_parameter_group_name(group)
        .send()
        .await
        .map_err(|e| StepError::from_aws("DescribeCacheParameterGroups", e))?;
    let g = out
        .cache_parameter_groups()
        .first()
        .ok_or_else(|| StepError::invalid(format!("parameter group {group} not found")))?;
    Ok((
        g.cache_parameter_group_family()
            .unwrap_or_default()
            .to_string(),
        g.description().map(str::to_string),
    ))
}

/// NotificationsStatus's and Cleanup's input: the migration and EnableNotifications' output.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotificationsStep {
    /// The execution input.
    pub migration: MigrationInput,
    /// What EnableNotifications returned (absent when the run failed before it).
    #[serde(default)]
    pub notifications: Option<NotificationsOutput>,
}

/// NotificationsStatus: `in_sync` once every member cluster uses the group with the change
/// applied.
pub async fn notifications_status(
    ctx: Ctx,
    step: NotificationsStep,
) -> Result<NotificationsOutput, StepError> {
    let mut out = step.notifications.unwrap_or_default();
    let (Some(rg), Some(group)) = (
        step.migration.source.replication_group_id.as_deref(),
        out.parameter_group.clone(),
    ) else {
        out.in_sync = true;
        return Ok(out);
    };
    let members = group_of(&ctx, rg).await?;
    out.in_sync = members
        .iter()
        .all(|(name, status)| *name == group && status == "in-sync");
    Ok(out)
}

/// Cleanup: puts back what EnableNotifications changed (the original group, or the original
/// value in the source's own group) and reports it. Safe to run twice, and after any failure.
pub async fn cleanup(ctx: Ctx, step: NotificationsStep) -> Result<CleanupOutput, StepError> {
    let mut restored = Vec::new();
    let (Some(rg), Some(n)) = (
        step.migration.source.replication_group_id.as_deref(),
        step.notifications,
    ) else {
        return Ok(CleanupOutput { restored });
    };
    if let Some(original) = &n.original_group {
        let now = group_of(&ctx, rg).await?[0].0.clone();
        if now != *original {
            attach_group(&ctx, rg, original).await?;
            restored.push(format!(
                "replication group {rg} uses parameter group {original} again"
            ));
        }
        // ferry's group can only be deleted once no cluster uses it; it is left otherwise.
        if let Some(own) = n.parameter_group.as_deref().filter(|g| *g != original) {
            let deleted = ctx
                .aws
                .elasticache
                .delete_cache_parameter_group()
                .cache_parameter_group_name(own)
                .send()
                .await;
            match deleted {
                Ok(_) => restored.push(format!("parameter group {own} deleted")),
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_cache_parameter_group_not_found_fault()) => {}
                Err(e) => {
                    tracing::warn!(group = own, error = %StepError::from_aws("DeleteCacheParameterGroup", e), "ferry's parameter group left in place")
                }
            }
        }
    } else if let (true, Some(group), Some(value)) = (
        n.changed,
        n.parameter_group.as_deref(),
        n.original_value.as_deref(),
    ) {
        if parameter(&ctx, group, NOTIFY).await?.as_deref() != Some(value) {
            set_parameter(&ctx, group, value).await?;
            restored.push(format!("{NOTIFY} of {group} is '{value}' again"));
        }
    }
    Ok(CleanupOutput { restored })
}
