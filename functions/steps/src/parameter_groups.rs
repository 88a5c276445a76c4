//! ElastiCache's parameter-group API as EnableNotifications and Cleanup use it: a thin adapter
//! (replication group and member listing, parameters, engine defaults, modify, attach). No
//! decisions here: those are in `notifications`.

use std::collections::HashMap;

use aws_sdk_elasticache::types::{CacheCluster, Parameter, ParameterNameValue, ReplicationGroup};

use crate::aws::Ctx;
use crate::error::StepError;

/// ModifyCacheParameterGroup takes at most 20 parameters per call.
const PARAMETERS_PER_CALL: usize = 20;

/// A member cluster of the replication group: its parameter group, that group's apply status,
/// and any modification waiting for the maintenance window.
pub struct Member {
    /// Its parameter group.
    pub group: String,
    /// That group's apply status (`in-sync`, `applying`, `pending-reboot`).
    pub apply_status: String,
    /// Modifications waiting for the maintenance window.
    pub pending: Vec<&'static str>,
}

pub async fn replication_group(ctx: &Ctx, id: &str) -> Result<ReplicationGroup, StepError> {
    let out = ctx
        .aws
        .elasticache
        .describe_replication_groups()
        .replication_group_id(id)
        .send()
        .await
        .map_err(|e| StepError::from_aws("DescribeReplicationGroups", e))?;
    out.replication_groups()
        .first()
        .cloned()
        .ok_or_else(|| StepError::invalid(format!("replication group {id} not found")))
}

/// The members of `replication_group`, from one `DescribeCacheClusters` listing (a page per 100
/// clusters) rather than a call per member: big clusters have hundreds, and the API throttles.
pub async fn members(ctx: &Ctx, replication_group: &str) -> Result<Vec<Member>, StepError> {
    let mut out = Vec::new();
    let mut marker = None;
    loop {
        let page = ctx
            .aws
            .elasticache
            .describe_cache_clusters()
            .max_records(100)
            .set_marker(marker)
            .send()
            .await
            .map_err(|e| StepError::from_aws("DescribeCacheClusters", e))?;
        for c in page.cache_clusters() {
            if c.replication_group_id() != Some(replication_group) {
                continue;
            }
            let pg = c.cache_parameter_group();
            out.push(Member {
                group: pg
                    .and_then(|p| p.cache_parameter_group_name())
                    .unwrap_or_default()
                    .to_string(),
                apply_status: pg
                    .and_then(|p| p.parameter_apply_status())
                    .unwrap_or_default()
                    .to_string(),
                pending: cluster_pending(c),
            });
        }
        match page.marker() {
            Some(m) if !m.is_empty() => marker = Some(m.to_string()),
            _ => break,
        }
    }
    if out.is_empty() || out.iter().any(|m| m.group.is_empty()) {
        return Err(StepError::retryable(format!(
            "replication group {replication_group}: its members do not all report a parameter group yet"
        )));
    }
    Ok(out)
}

pub fn cluster_pending(c: &CacheCluster) -> Vec<&'static str> {
    let Some(p) = c.pending_modified_values() else {
        return Vec::new();
    };
    [
        ("node count", p.num_cache_nodes().is_some()),
        ("node removal", !p.cache_node_ids_to_remove().is_empty()),
        ("engine version", p.engine_version().is_some()),
        ("node type", p.cache_node_type().is_some()),
        ("auth token", p.auth_token_status().is_some()),
        ("log delivery", !p.log_delivery_configurations().is_empty()),
        (
            "transit encryption",
            p.transit_encryption_enabled().is_some(),
        ),
        (
            "transit encryption mode",
            p.transit_encryption_mode().is_some(),
        ),
        ("scale config", p.scale_config().is_some()),
    ]
    .into_iter()
    .filter_map(|(name, set)| set.then_some(name))
    .collect()
}

pub fn group_pending(g: &ReplicationGroup) -> Vec<&'static str> {
    let Some(p) = g.pending_modified_values() else {
        return Vec::new();
    };
    [
        ("primary cluster", p.primary_cluster_id().is_some()),
        (
            "automatic failover",
            p.automatic_failover_status().is_some(),
        ),
        ("resharding", p.resharding().is_some()),
        ("auth token", p.auth_token_status().is_some()),
        ("user groups", p.user_groups().is_some()),
        ("log delivery", !p.log_delivery_configurations().is_empty()),
        (
            "transit encryption",
            p.transit_encryption_enabled().is_some(),
        ),
        (
            "transit encryption mode",
            p.transit_encryption_mode().is_some(),
        ),
        ("cluster mode", p.cluster_mode().is_some()),
    ]
    .into_iter()
    .filter_map(|(name, set)| set.then_some(name))
    .collect()
}

/// Every parameter of `group`, all pages.
pub async fn parameters(ctx: &Ctx, group: &str) -> Result<Vec<Parameter>, StepError> {
    let mut all = Vec::new();
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
        all.extend(page.parameters().iter().cloned());
        match page.marker() {
            Some(m) if !m.is_empty() => marker = Some(m.to_string()),
            _ => return Ok(all),
        }
    }
}

/// The engine's default value of every parameter of `family`.
/// A family's default value of one parameter, and the values ElastiCache allows for it
/// (`AllowedValues`: `0-`, `1-100`, `yes,no`…).
#[derive(Debug, Clone)]
pub struct FamilyDefault {
    pub value: String,
    pub allowed: Option<String>,
}

impl FamilyDefault {
    /// The largest number the allowed range takes (`None`: unbounded or not a range).
    pub fn max(&self) -> Option<u64> {
        let (_, max) = self.allowed.as_deref()?.split_once('-')?;
        max.trim().parse().ok()
    }
}

pub async fn family_defaults(
    ctx: &Ctx,
    family: &str,
) -> Result<HashMap<String, FamilyDefault>, StepError> {
    let mut defaults = HashMap::new();
    let mut marker = None;
    loop {
        let page = ctx
            .aws
            .elasticache
            .describe_engine_default_parameters()
            .cache_parameter_group_family(family)
            .set_marker(marker)
            .send()
            .await
            .map_err(|e| StepError::from_aws("DescribeEngineDefaultParameters", e))?;
        let engine = page.engine_defaults();
        for p in engine.map(|e| e.parameters()).unwrap_or_default() {
            if let Some(name) = p.parameter_name() {
                let default = FamilyDefault {
                    value: p.parameter_value().unwrap_or_default().to_string(),
                    allowed: p.allowed_values().map(str::to_string),
                };
                defaults.insert(name.to_string(), default);
            }
        }
        match engine.and_then(|e| e.marker()) {
            Some(m) if !m.is_empty() => marker = Some(m.to_string()),
            _ => return Ok(defaults),
        }
    }
}

pub fn value_of<'a>(params: &'a [Parameter], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|p| p.parameter_name() == Some(name))
        .and_then(|p| p.parameter_value())
}

pub async fn set_parameters(
    ctx: &Ctx,
    group: &str,
    values: &[(String, String)],
) -> Result<(), StepError> {
    for chunk in values.chunks(PARAMETERS_PER_CALL) {
        let names = chunk
            .iter()
            .map(|(n, v)| {
                ParameterNameValue::builder()
                    .parameter_name(n)
                    .parameter_value(v)
                    .build()
            })
            .collect();
        ctx.aws
            .elasticache
            .modify_cache_parameter_group()
            .cache_parameter_group_name(group)
            .set_parameter_name_values(Some(names))
            .send()
            .await
            .map_err(|e| StepError::from_aws("ModifyCacheParameterGroup", e))?;
    }
    Ok(())
}

pub async fn attach_group(
    ctx: &Ctx,
    replication_group: &str,
    group: &str,
) -> Result<(), StepError> {
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

/// A parameter group's family and description.
pub async fn describe_group(ctx: &Ctx, group: &str) -> Result<(String, Option<String>), StepError> {
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
