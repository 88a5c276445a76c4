//! EnableNotifications (and its status check) and Cleanup: keyspace notifications on an
//! ElastiCache source through a parameter group of ferry's own (design §4.7).
//!
//! The source's group is never edited: a default group cannot be, and a custom one may be shared
//! by other clusters, which would all start publishing events. ferry creates `ferry-<replication
//! group>` in the same family, copies every parameter whose value differs from the family's
//! defaults (and `cluster-enabled` always: ElastiCache refuses a group whose cluster mode differs
//! from the replication group's), adds the notification flags and attaches it. Cleanup attaches
//! the original again and deletes ferry's group.
//!
//! `ModifyReplicationGroup` is sent with `ApplyImmediately`, which also applies every pending
//! modification of the group (a queued node-type change, an engine upgrade): ferry refuses to
//! start while any is pending. Each poll round costs one `DescribeCacheClusters` listing (per
//! 100 clusters), and a poll gives up after `options.poll_timeout_secs`.

use std::collections::HashMap;

use aws_sdk_elasticache::types::Parameter;
use ferry_engine::inventory::notifications_cover;
use ferry_engine::live::channel::LiveChannel;
use ferry_engine::live::tail::merged_notify_flags;
use serde::{Deserialize, Serialize};

use crate::aws::Ctx;
use crate::contracts::{CleanupOutput, MigrationInput, Mode, NotificationsOutput};
use crate::error::StepError;
use crate::parameter_groups::{
    attach_group, describe_group, family_defaults, group_pending, members, parameters,
    replication_group, set_parameters, value_of, FamilyDefault,
};

const NOTIFY: &str = "notify-keyspace-events";
const CLUSTER_ENABLED: &str = "cluster-enabled";

/// The parameter group ferry creates for the source.
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

/// The pub/sub output-buffer limits ferry's group gets in place of the defaults (32 MiB, or
/// 8 MiB for 60 s): a subscriber past the limit is disconnected, which costs the tail a heal
/// pass (a compare of the whole keyspace). ferry's reader never waits on the target, but a burst
/// of writes on a busy source can still outrun one connection by tens of megabytes.
const PUBSUB_LIMITS: [(&str, u64); 3] = [
    ("client-output-buffer-limit-pubsub-hard-limit", 256 << 20),
    ("client-output-buffer-limit-pubsub-soft-limit", 64 << 20),
    ("client-output-buffer-limit-pubsub-soft-seconds", 60),
];

/// The parameters ferry's group gets: those of `original` that differ from the family's
/// defaults, `cluster-enabled` as the original has it, the notification flags, and raised
/// pub/sub limits where the original has the defaults.
fn copied_values(
    original: &[Parameter],
    defaults: &HashMap<String, FamilyDefault>,
    notify: &str,
) -> Vec<(String, String)> {
    let mut values: Vec<(String, String)> = original
        .iter()
        .filter(|p| p.is_modifiable() != Some(false))
        .filter_map(|p| Some((p.parameter_name()?, p.parameter_value()?)))
        .filter(|(name, value)| {
            *name != NOTIFY
                && (*name == CLUSTER_ENABLED
                    || defaults.get(*name).map(|d| d.value.as_str()) != Some(value))
        })
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    values.push((NOTIFY.to_string(), notify.to_string()));
    values.extend(raised_pubsub_limits(original, defaults));
    values
}

/// [`PUBSUB_LIMITS`], each within the range ElastiCache allows, when all three of the
/// original's are the family's defaults; none when an operator set any of them (theirs stay).
fn raised_pubsub_limits(
    original: &[Parameter],
    defaults: &HashMap<String, FamilyDefault>,
) -> Vec<(String, String)> {
    let tuned = PUBSUB_LIMITS.iter().any(|(name, _)| {
        let default = defaults.get(*name).map(|d| d.value.as_str());
        value_of(original, name).is_some_and(|v| Some(v) != default)
    });
    if tuned {
        return Vec::new();
    }
    PUBSUB_LIMITS
        .iter()
        .filter_map(|(name, wanted)| {
            let default = defaults.get(*name)?;
            let value = default.max().map_or(*wanted, |max| (*wanted).min(max));
            Some((name.to_string(), value.to_string()))
        })
        .collect()
}

/// EnableNotifications: makes the source deliver `K` plus `g$lshzxet` (keeping the flags it
/// had) through ferry's own copy of its parameter group. Reports the original group for
/// Cleanup. A second run finds the flags set and changes nothing; a replication group with
/// pending modifications is refused before anything is changed.
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
    let serverless = input.source.serverless_cache_name.is_some();
    if serverless && input.live_channel() == LiveChannel::Keyspace {
        return Err(ferry_engine::Error::NotificationsDisabled(
            "ElastiCache Serverless caches do not deliver keyspace notifications: use options.live_channel tracking (or auto, which picks it)".into(),
        )
        .into());
    }
    if input.live_channel() == LiveChannel::Tracking {
        return skip(match serverless {
            true => "a serverless source is followed by client tracking: nothing to configure",
            false => {
                "options.live_channel is tracking: the source's configuration is left as it is"
            }
        });
    }
    let Some(rg) = input.source.replication_group_id.as_deref() else {
        return skip("not an ElastiCache source: the tail checks notify-keyspace-events and proves delivery with its canary");
    };
    if !input.options.enable_notifications {
        return skip("options.enable_notifications is false: the tail's canary proves delivery or fails with NotificationsDisabled");
    }
    let group = replication_group(&ctx, rg).await?;
    let members = members(&ctx, rg).await?;
    let current_group = members[0].group.clone();
    let original = parameters(&ctx, &current_group).await?;
    let current = value_of(&original, NOTIFY).unwrap_or_default().to_string();
    if notifications_cover(&current) {
        let original_group = describe_group(&ctx, &current_group)
            .await?
            .1
            .as_deref()
            .and_then(original_from_description);
        return Ok(NotificationsOutput {
            parameter_group: Some(current_group),
            original_group,
            started_at_ms: Some(crate::contracts::epoch_ms()),
            ..NotificationsOutput::default()
        });
    }
    let mut pending: Vec<&str> = group_pending(&group);
    pending.extend(members.iter().flat_map(|m| m.pending.iter().copied()));
    pending.dedup();
    if !pending.is_empty() || group.status() == Some("modifying") {
        return Err(StepError::invalid(format!(
            "replication group {rg} has pending modifications ({}): attaching a parameter group applies them immediately. Apply them, or cancel them, then start again; nothing was changed",
            if pending.is_empty() { "status modifying".to_string() } else { pending.join(", ") }
        )));
    }
    let (family, _) = describe_group(&ctx, &current_group).await?;
    let defaults = family_defaults(&ctx, &family).await?;
    let own = own_group_name(rg);
    let created = ctx
        .aws
        .elasticache
        .create_cache_parameter_group()
        .cache_parameter_group_name(&own)
        .cache_parameter_group_family(&family)
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
    let values = copied_values(&original, &defaults, &merged_notify_flags(&current));
    set_parameters(&ctx, &own, &values).await?;
    attach_group(&ctx, rg, &own).await?;
    Ok(NotificationsOutput {
        parameter_group: Some(own),
        original_group: Some(current_group),
        original_value: Some(current),
        changed: true,
        started_at_ms: Some(crate::contracts::epoch_ms()),
        ..NotificationsOutput::default()
    })
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
/// applied; `PollTimeout` once `options.poll_timeout_secs` have passed since the change (a
/// member stuck in `pending-reboot` must not poll until the history limit).
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
    let members = members(&ctx, rg).await?;
    out.in_sync = members
        .iter()
        .all(|m| m.group == group && m.apply_status == "in-sync");
    let limit = step.migration.options.poll_timeout_secs;
    if !out.in_sync && crate::contracts::poll_timed_out(out.started_at_ms, limit) {
        let stuck: Vec<String> = members
            .iter()
            .filter(|m| m.group != group || m.apply_status != "in-sync")
            .map(|m| format!("{} ({})", m.group, m.apply_status))
            .collect();
        return Err(StepError::Named {
            kind: "PollTimeout",
            message: format!(
                "replication group {rg}: parameter group {group} not in sync on every member after {limit}s (options.poll_timeout_secs): {}",
                stuck.join(", ")
            ),
        });
    }
    Ok(out)
}

/// Cleanup: attaches the original group again and deletes ferry's, and reports it. Safe to run
/// twice, and after any failure.
pub async fn cleanup(ctx: Ctx, step: NotificationsStep) -> Result<CleanupOutput, StepError> {
    let mut restored = Vec::new();
    let (Some(rg), Some(n)) = (
        step.migration.source.replication_group_id.as_deref(),
        step.notifications,
    ) else {
        return Ok(CleanupOutput { restored });
    };
    let Some(original) = &n.original_group else {
        return Ok(CleanupOutput { restored });
    };
    let now = members(&ctx, rg).await?[0].group.clone();
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
    Ok(CleanupOutput { restored })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults(allowed: &str) -> HashMap<String, FamilyDefault> {
        [
            ("hard-limit", "33554432"),
            ("soft-limit", "8388608"),
            ("soft-seconds", "60"),
        ]
        .into_iter()
        .map(|(n, v)| {
            let d = FamilyDefault {
                value: v.into(),
                allowed: Some(allowed.into()),
            };
            (format!("client-output-buffer-limit-pubsub-{n}"), d)
        })
        .collect()
    }

    #[test]
    fn pubsub_limits_are_raised_within_the_allowed_range_unless_tuned() {
        let raised = raised_pubsub_limits(&[], &defaults("0-"));
        assert!(raised.contains(&(PUBSUB_LIMITS[0].0.into(), "268435456".into())));
        // A narrower range ElastiCache allows caps the value.
        let capped = raised_pubsub_limits(&[], &defaults("0-100000000"));
        assert!(capped.contains(&(PUBSUB_LIMITS[0].0.into(), "100000000".into())));
        assert!(capped.contains(&(PUBSUB_LIMITS[1].0.into(), "67108864".into())));
        // An operator's own limit is kept: nothing raised.
        let tuned = Parameter::builder()
            .parameter_name(PUBSUB_LIMITS[2].0)
            .parameter_value("10")
            .build();
        assert!(raised_pubsub_limits(&[tuned], &defaults("0-")).is_empty());
    }
}
