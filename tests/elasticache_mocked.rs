//! EnableNotifications, NotificationsStatus, Cleanup and serverless Backup against ElastiCache's
//! parameter-group and serverless APIs. moto implements neither, so these tests use the SDK's own test
//! facility (aws-smithy-mocks): a small stateful stand-in answers DescribeReplicationGroups,
//! DescribeCacheClusters, Describe/Create/Modify/DeleteCacheParameterGroup(s),
//! DescribeCacheParameters and ModifyReplicationGroup with responses shaped like ElastiCache's,
//! including its refusal to modify a `default.` group and to delete a group in use.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use aws_sdk_elasticache::error::ErrorMetadata;
use aws_sdk_elasticache::operation::create_cache_parameter_group::{
    CreateCacheParameterGroupError, CreateCacheParameterGroupOutput,
};
use aws_sdk_elasticache::operation::delete_cache_parameter_group::{
    DeleteCacheParameterGroupError, DeleteCacheParameterGroupOutput,
};
use aws_sdk_elasticache::operation::describe_cache_clusters::{
    DescribeCacheClustersError, DescribeCacheClustersOutput,
};
use aws_sdk_elasticache::operation::describe_cache_parameter_groups::{
    DescribeCacheParameterGroupsInput, DescribeCacheParameterGroupsOutput,
};
use aws_sdk_elasticache::operation::describe_cache_parameters::{
    DescribeCacheParametersInput, DescribeCacheParametersOutput,
};
use aws_sdk_elasticache::operation::describe_engine_default_parameters::{
    DescribeEngineDefaultParametersInput, DescribeEngineDefaultParametersOutput,
};
use aws_sdk_elasticache::operation::describe_replication_groups::DescribeReplicationGroupsOutput;
use aws_sdk_elasticache::operation::modify_cache_parameter_group::{
    ModifyCacheParameterGroupError, ModifyCacheParameterGroupOutput,
};
use aws_sdk_elasticache::operation::modify_replication_group::{
    ModifyReplicationGroupError, ModifyReplicationGroupOutput,
};
use aws_sdk_elasticache::types::error::{
    CacheParameterGroupAlreadyExistsFault, CacheParameterGroupNotFoundFault,
    InvalidCacheParameterGroupStateFault, InvalidParameterCombinationException,
    InvalidParameterValueException,
};
use aws_sdk_elasticache::types::{
    CacheCluster, CacheParameterGroup, CacheParameterGroupStatus, EngineDefaults, Parameter,
    PendingAutomaticFailoverStatus, ReplicationGroup, ReplicationGroupPendingModifiedValues,
};
use aws_sdk_elasticache::Client as ElastiCache;
use aws_smithy_mocks::{mock, mock_client, Rule, RuleMode};
use ferry_steps::contracts::{MigrationInput, NotificationsOutput};
use ferry_steps::elasticache;
use ferry_steps::notifications::{self, NotificationsStep};
use ferry_steps::{Aws, Ctx};
use serde_json::json;

/// One parameter group as the stand-in keeps it: every parameter's value ("" shows as no
/// value, as ElastiCache shows `notify-keyspace-events` unset).
#[derive(Clone)]
struct Group {
    family: String,
    description: String,
    params: BTreeMap<String, String>,
}

/// What the stand-in remembers.
#[derive(Default)]
struct State {
    /// The group every member uses.
    attached: String,
    /// Status DescribeCacheClusters reports; `applying` once after a change.
    applying: bool,
    /// A member never gets in sync (stuck in `pending-reboot`).
    stuck: bool,
    /// The replication group is cluster-mode enabled.
    cluster_mode: bool,
    /// The replication group has a modification waiting for its maintenance window.
    pending: bool,
    members: Vec<String>,
    groups: HashMap<String, Group>,
    /// DescribeCacheClusters calls since any other call: past 4 in a row (a call per member of
    /// a 6-member group), the stand-in throttles, as ElastiCache throttles a burst.
    clusters_in_a_row: u32,
}

type Shared = Arc<Mutex<State>>;

/// The engine defaults of a family, as DescribeEngineDefaultParameters gives them.
fn family_defaults(_family: &str) -> BTreeMap<String, String> {
    [
        ("client-output-buffer-limit-pubsub-hard-limit", "33554432"),
        ("client-output-buffer-limit-pubsub-soft-limit", "8388608"),
        ("client-output-buffer-limit-pubsub-soft-seconds", "60"),
        ("cluster-enabled", "no"),
        ("maxmemory-policy", "volatile-lru"),
        ("notify-keyspace-events", ""),
        ("timeout", "0"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// The `AllowedValues` the stand-in gives a parameter (`0-`: a non-negative integer).
fn allowed_values(name: &str) -> Option<&'static str> {
    name.starts_with("client-output-buffer-limit")
        .then_some("0-")
}

/// Whether `value` lies outside `name`'s allowed range (a `min-[max]` integer range).
fn outside_allowed(name: &str, value: &str) -> bool {
    let Some((min, max)) = allowed_values(name).and_then(|a| a.split_once('-')) else {
        return false;
    };
    let Ok(v) = value.parse::<u64>() else {
        return true;
    };
    v < min.parse().unwrap_or(0) || max.parse::<u64>().is_ok_and(|max| v > max)
}

fn parameter_list(params: &BTreeMap<String, String>) -> Vec<Parameter> {
    params
        .iter()
        .map(|(k, v)| {
            let mut p = Parameter::builder()
                .parameter_name(k)
                .source("system")
                .is_modifiable(true);
            if let Some(allowed) = allowed_values(k) {
                p = p.data_type("integer").allowed_values(allowed);
            }
            match v.is_empty() {
                true => p.build(),
                false => p.parameter_value(v).build(),
            }
        })
        .collect()
}

/// A request field remembered by a rule's matcher for its output (the mock API hands the
/// request to the matcher only).
fn remember<R: 'static>(
    pick: impl Fn(&R) -> String + Send + Sync + 'static,
) -> (
    impl Fn(&R) -> bool + Send + Sync + 'static,
    Arc<Mutex<String>>,
) {
    let asked = Arc::new(Mutex::new(String::new()));
    let a = asked.clone();
    (
        move |r: &R| {
            *a.lock().unwrap() = pick(r);
            true
        },
        asked,
    )
}

/// ElastiCache's parameter-group API as AWS documents it: a new group starts from its family's
/// defaults; a `default.` group cannot be modified; at most 20 parameters per modify; a group
/// whose `cluster-enabled` differs from the replication group's cluster mode is refused
/// (InvalidParameterCombination); a group in use cannot be deleted; pending modifications
/// show on DescribeReplicationGroups; DescribeCacheClusters lists every cluster of the account
/// (one of another replication group too) and throttles a burst of calls.
fn stand_in(state: &Shared) -> Vec<Rule> {
    let s = state.clone();
    let describe_rg = mock!(ElastiCache::describe_replication_groups).then_output(move || {
        let mut st = s.lock().unwrap();
        st.clusters_in_a_row = 0;
        let mut g = ReplicationGroup::builder()
            .replication_group_id("orders")
            .status("available")
            .set_member_clusters(Some(st.members.clone()));
        if st.pending {
            g = g.pending_modified_values(
                ReplicationGroupPendingModifiedValues::builder()
                    .automatic_failover_status(PendingAutomaticFailoverStatus::Enabled)
                    .build(),
            );
        }
        DescribeReplicationGroupsOutput::builder()
            .replication_groups(g.build())
            .build()
    });
    let s = state.clone();
    let throttled = mock!(ElastiCache::describe_cache_clusters)
        .match_requests(move |r| {
            assert!(
                r.cache_cluster_id().is_none(),
                "one listing per round, not a call per member"
            );
            let mut st = s.lock().unwrap();
            st.clusters_in_a_row += 1;
            st.clusters_in_a_row > 4
        })
        .then_error(|| {
            DescribeCacheClustersError::generic(
                ErrorMetadata::builder()
                    .code("Throttling")
                    .message("Rate exceeded")
                    .build(),
            )
        });
    let s = state.clone();
    let describe_clusters = mock!(ElastiCache::describe_cache_clusters).then_output(move || {
        let mut st = s.lock().unwrap();
        let status = if st.applying || st.stuck {
            "pending-reboot"
        } else {
            "in-sync"
        };
        st.applying = false;
        let cluster = |id: &str, rg: &str, group: &str| {
            CacheCluster::builder()
                .cache_cluster_id(id)
                .replication_group_id(rg)
                .cache_parameter_group(
                    CacheParameterGroupStatus::builder()
                        .cache_parameter_group_name(group)
                        .parameter_apply_status(status)
                        .build(),
                )
                .build()
        };
        let mut out = DescribeCacheClustersOutput::builder().cache_clusters(cluster(
            "billing-001",
            "billing",
            "default.redis7",
        ));
        for m in &st.members {
            out = out.cache_clusters(cluster(m, "orders", &st.attached));
        }
        out.build()
    });
    let s = state.clone();
    let (asked_group, group_name) = remember(|r: &DescribeCacheParameterGroupsInput| {
        r.cache_parameter_group_name()
            .unwrap_or_default()
            .to_string()
    });
    let describe_groups = mock!(ElastiCache::describe_cache_parameter_groups)
        .match_requests(asked_group)
        .then_output(move || {
            let name = group_name.lock().unwrap().clone();
            let g = s.lock().unwrap().groups[&name].clone();
            DescribeCacheParameterGroupsOutput::builder()
                .cache_parameter_groups(
                    CacheParameterGroup::builder()
                        .cache_parameter_group_name(name)
                        .cache_parameter_group_family(g.family)
                        .description(g.description)
                        .build(),
                )
                .build()
        });
    let s = state.clone();
    let (asked_params, params_of) = remember(|r: &DescribeCacheParametersInput| {
        r.cache_parameter_group_name()
            .unwrap_or_default()
            .to_string()
    });
    let describe_params = mock!(ElastiCache::describe_cache_parameters)
        .match_requests(asked_params)
        .then_output(move || {
            let st = s.lock().unwrap();
            let g = &st.groups[&*params_of.lock().unwrap()];
            DescribeCacheParametersOutput::builder()
                .set_parameters(Some(parameter_list(&g.params)))
                .build()
        });
    let (asked_family, family) = remember(|r: &DescribeEngineDefaultParametersInput| {
        r.cache_parameter_group_family()
            .unwrap_or_default()
            .to_string()
    });
    let engine_defaults = mock!(ElastiCache::describe_engine_default_parameters)
        .match_requests(asked_family)
        .then_output(move || {
            let family = family.lock().unwrap().clone();
            DescribeEngineDefaultParametersOutput::builder()
                .engine_defaults(
                    EngineDefaults::builder()
                        .cache_parameter_group_family(&family)
                        .set_parameters(Some(parameter_list(&family_defaults(&family))))
                        .build(),
                )
                .build()
        });
    let s = state.clone();
    let create_exists = mock!(ElastiCache::create_cache_parameter_group)
        .match_requests(move |r| {
            s.lock()
                .unwrap()
                .groups
                .contains_key(r.cache_parameter_group_name().unwrap_or_default())
        })
        .then_error(|| {
            CreateCacheParameterGroupError::CacheParameterGroupAlreadyExistsFault(
                CacheParameterGroupAlreadyExistsFault::builder()
                    .message("exists")
                    .build(),
            )
        });
    let s = state.clone();
    let create = mock!(ElastiCache::create_cache_parameter_group)
        .match_requests(move |r| {
            let family = r.cache_parameter_group_family().unwrap().to_string();
            s.lock().unwrap().groups.insert(
                r.cache_parameter_group_name().unwrap().to_string(),
                Group {
                    params: family_defaults(&family),
                    family,
                    description: r.description().unwrap().to_string(),
                },
            );
            true
        })
        .then_output(|| CreateCacheParameterGroupOutput::builder().build());
    let modify_refused = mock!(ElastiCache::modify_cache_parameter_group)
        .match_requests(|r| {
            r.cache_parameter_group_name()
                .unwrap_or_default()
                .starts_with("default.")
                || r.parameter_name_values().len() > 20
        })
        .then_error(|| {
            ModifyCacheParameterGroupError::InvalidCacheParameterGroupStateFault(
                InvalidCacheParameterGroupStateFault::builder()
                    .message("default groups cannot be modified; at most 20 parameters per call")
                    .build(),
            )
        });
    // ElastiCache refuses a value outside the parameter's AllowedValues.
    let modify_out_of_range = mock!(ElastiCache::modify_cache_parameter_group)
        .match_requests(|r| {
            r.parameter_name_values().iter().any(|p| {
                outside_allowed(
                    p.parameter_name().unwrap_or_default(),
                    p.parameter_value().unwrap_or_default(),
                )
            })
        })
        .then_error(|| {
            ModifyCacheParameterGroupError::InvalidParameterValueException(
                InvalidParameterValueException::builder()
                    .message("a value is outside the parameter's allowed values")
                    .build(),
            )
        });
    let s = state.clone();
    let modify = mock!(ElastiCache::modify_cache_parameter_group)
        .match_requests(move |r| {
            let mut st = s.lock().unwrap();
            st.clusters_in_a_row = 0;
            let group = st
                .groups
                .get_mut(r.cache_parameter_group_name().unwrap())
                .unwrap();
            for p in r.parameter_name_values() {
                group.params.insert(
                    p.parameter_name().unwrap().to_string(),
                    p.parameter_value().unwrap().to_string(),
                );
            }
            st.applying = true;
            true
        })
        .then_output(|| ModifyCacheParameterGroupOutput::builder().build());
    let s = state.clone();
    let attach_mismatch = mock!(ElastiCache::modify_replication_group)
        .match_requests(move |r| {
            let st = s.lock().unwrap();
            let group = &st.groups[r.cache_parameter_group_name().unwrap()];
            let on = group.params.get("cluster-enabled").map(String::as_str) == Some("yes");
            on != st.cluster_mode
        })
        .then_error(|| {
            ModifyReplicationGroupError::InvalidParameterCombinationException(
                InvalidParameterCombinationException::builder()
                    .message("the parameter group's cluster-enabled does not match the replication group")
                    .build(),
            )
        });
    let s = state.clone();
    let attach = mock!(ElastiCache::modify_replication_group)
        .match_requests(move |r| {
            assert_eq!(r.apply_immediately(), Some(true));
            let mut st = s.lock().unwrap();
            st.clusters_in_a_row = 0;
            st.attached = r.cache_parameter_group_name().unwrap().to_string();
            st.applying = true;
            true
        })
        .then_output(|| ModifyReplicationGroupOutput::builder().build());
    let s = state.clone();
    let delete_in_use = mock!(ElastiCache::delete_cache_parameter_group)
        .match_requests(move |r| {
            s.lock().unwrap().attached == r.cache_parameter_group_name().unwrap_or_default()
        })
        .then_error(|| {
            DeleteCacheParameterGroupError::InvalidCacheParameterGroupStateFault(
                InvalidCacheParameterGroupStateFault::builder()
                    .message("in use")
                    .build(),
            )
        });
    let s = state.clone();
    let delete_missing = mock!(ElastiCache::delete_cache_parameter_group)
        .match_requests(move |r| {
            !s.lock()
                .unwrap()
                .groups
                .contains_key(r.cache_parameter_group_name().unwrap_or_default())
        })
        .then_error(|| {
            DeleteCacheParameterGroupError::CacheParameterGroupNotFoundFault(
                CacheParameterGroupNotFoundFault::builder()
                    .message("not found")
                    .build(),
            )
        });
    let s = state.clone();
    let delete = mock!(ElastiCache::delete_cache_parameter_group)
        .match_requests(move |r| {
            s.lock()
                .unwrap()
                .groups
                .remove(r.cache_parameter_group_name().unwrap());
            true
        })
        .then_output(|| DeleteCacheParameterGroupOutput::builder().build());
    vec![
        describe_rg,
        throttled,
        describe_clusters,
        describe_groups,
        describe_params,
        engine_defaults,
        create_exists,
        create,
        modify_refused,
        modify_out_of_range,
        modify,
        attach_mismatch,
        attach,
        delete_in_use,
        delete_missing,
        delete,
    ]
}

/// Indexes into [`stand_in`]'s rules, for call counts.
const CREATE: std::ops::RangeInclusive<usize> = 6..=7;
const WRITES: std::ops::RangeInclusive<usize> = 6..=12;
const DESCRIBE_CLUSTERS: usize = 2;

fn calls(rules: &[Rule], range: std::ops::RangeInclusive<usize>) -> usize {
    range.map(|i| rules[i].num_calls()).sum()
}

/// A source whose members use `group` (created with `params` over its family's defaults).
fn source_on(group: &str, family: &str, cluster_mode: bool, params: &[(&str, &str)]) -> Shared {
    let state: Shared = Default::default();
    {
        let mut st = state.lock().unwrap();
        st.attached = group.into();
        st.cluster_mode = cluster_mode;
        st.members = (1..=if cluster_mode { 6 } else { 2 })
            .map(|i| format!("orders-000{i}"))
            .collect();
        let mut values = family_defaults(family);
        for (k, v) in params {
            values.insert(k.to_string(), v.to_string());
        }
        st.groups.insert(
            group.into(),
            Group {
                family: family.into(),
                description: format!("parameter group {group}"),
                params: values,
            },
        );
    }
    state
}

/// A source on ElastiCache's default group for its family, as most are.
fn on_the_default_group() -> Shared {
    source_on("default.redis7", "redis7", false, &[])
}

async fn ctx_with(rules: &[Rule]) -> Ctx {
    let refs: Vec<&Rule> = rules.iter().collect();
    let elasticache = mock_client!(aws_sdk_elasticache, RuleMode::MatchAny, refs.as_slice());
    let unused = aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .build();
    Ctx {
        aws: Arc::new(Aws {
            elasticache,
            ..Aws::from_config(&unused)
        }),
        deadline: None,
    }
}

fn live_input() -> MigrationInput {
    MigrationInput::from_json(json!({
        "migration_id": "orders-1",
        "mode": "live",
        "source": { "endpoint": "rediss://orders.cache.amazonaws.com:6379", "replication_group_id": "orders" },
        "target": { "endpoint": "rediss://target.example:12000" },
    }))
    .unwrap()
}

async fn status(ctx: &Ctx, out: &NotificationsOutput) -> bool {
    let step = NotificationsStep {
        migration: live_input(),
        notifications: Some(out.clone()),
    };
    notifications::notifications_status(ctx.clone(), step)
        .await
        .unwrap()
        .in_sync
}

fn notify_of(state: &Shared, group: &str) -> String {
    state.lock().unwrap().groups[group].params["notify-keyspace-events"].clone()
}

/// Enables notifications, checks ferry's group against `expect` (name → value), polls to in
/// sync (one DescribeCacheClusters listing per round), runs a second time (no write), cleans
/// up twice (the second changes nothing), and checks the source is as it was.
async fn enable_poll_and_clean_up(state: &Shared, expect: &[(&str, &str)]) {
    let rules = stand_in(state);
    let ctx = ctx_with(&rules).await;
    let original = state.lock().unwrap().attached.clone();
    let before = state.lock().unwrap().groups[&original].params.clone();

    let first = notifications::enable_notifications(ctx.clone(), live_input())
        .await
        .unwrap();
    assert!(first.changed);
    assert_eq!(first.parameter_group.as_deref(), Some("ferry-orders"));
    assert_eq!(first.original_group.as_deref(), Some(original.as_str()));
    {
        let st = state.lock().unwrap();
        assert_eq!(st.attached, "ferry-orders");
        let own = &st.groups["ferry-orders"];
        assert_eq!(own.family, st.groups[&original].family, "same family");
        for (name, value) in expect {
            assert_eq!(own.params[*name], *value, "{name} in ferry's group");
        }
        assert_eq!(
            st.groups[&original].params, before,
            "the original group is never edited"
        );
    }
    let notify = notify_of(state, "ferry-orders");
    assert!(
        ferry_engine::inventory::notifications_cover(&notify),
        "{notify}"
    );

    let listed = rules[DESCRIBE_CLUSTERS].num_calls();
    assert!(
        !status(&ctx, &first).await,
        "applying right after the change"
    );
    assert!(status(&ctx, &first).await, "then in sync");
    assert_eq!(
        rules[DESCRIBE_CLUSTERS].num_calls() - listed,
        2,
        "one listing per round"
    );

    let writes = calls(&rules, WRITES);
    let second = notifications::enable_notifications(ctx.clone(), live_input())
        .await
        .unwrap();
    assert!(!second.changed, "{second:?}");
    assert_eq!(calls(&rules, WRITES), writes, "no write the second time");
    assert_eq!(
        second.original_group.as_deref(),
        Some(original.as_str()),
        "a rerun still knows the original"
    );

    let step = NotificationsStep {
        migration: live_input(),
        notifications: Some(first),
    };
    let cleaned = notifications::cleanup(ctx.clone(), step.clone())
        .await
        .unwrap();
    assert_eq!(cleaned.restored.len(), 2, "{cleaned:?}");
    {
        let st = state.lock().unwrap();
        assert_eq!(st.attached, original);
        assert!(!st.groups.contains_key("ferry-orders"));
        assert_eq!(st.groups[&original].params, before);
    }
    let again = notifications::cleanup(ctx.clone(), step).await.unwrap();
    assert!(
        again.restored.is_empty(),
        "a second cleanup changes nothing: {again:?}"
    );
}

#[tokio::test]
async fn a_default_group_is_copied_attached_restored_and_a_second_run_changes_nothing() {
    let state = on_the_default_group();
    // The default pub/sub limits (32 MiB, 8 MiB for 60 s) are raised in ferry's group, so a
    // burst does not cut the tail's subscription; Cleanup's re-attach puts the defaults back.
    enable_poll_and_clean_up(
        &state,
        &[
            ("cluster-enabled", "no"),
            ("client-output-buffer-limit-pubsub-hard-limit", "268435456"),
            ("client-output-buffer-limit-pubsub-soft-limit", "67108864"),
            ("client-output-buffer-limit-pubsub-soft-seconds", "60"),
        ],
    )
    .await;
}

/// Issue 14: most production ElastiCache is cluster-mode enabled, on `default.<family>.cluster.on`.
/// ferry's group must carry `cluster-enabled yes`, or ElastiCache refuses to attach it (the
/// stand-in does, as AWS documents). Seen failing first: the copy without it was refused with
/// InvalidParameterCombination, and ferry's group was left behind.
#[tokio::test]
async fn cluster_mode_sources_on_cluster_on_default_groups_go_live_and_are_restored() {
    for family in ["redis7", "valkey7", "valkey8"] {
        let group = format!("default.{family}.cluster.on");
        let state = source_on(&group, family, true, &[("cluster-enabled", "yes")]);
        enable_poll_and_clean_up(&state, &[("cluster-enabled", "yes")]).await;
    }
}

/// A custom group may be shared by other clusters: ferry copies it (its non-default values
/// included) instead of editing it, so no other cluster starts publishing events.
#[tokio::test]
async fn a_custom_group_is_copied_with_its_settings_never_edited() {
    let state = source_on(
        "orders-params",
        "valkey8",
        false,
        &[
            ("maxmemory-policy", "allkeys-lru"),
            ("notify-keyspace-events", "Ex"),
            ("client-output-buffer-limit-pubsub-hard-limit", "67108864"),
        ],
    );
    enable_poll_and_clean_up(
        &state,
        &[
            ("maxmemory-policy", "allkeys-lru"),
            ("timeout", "0"),
            // The operator's own pub/sub limit is kept, and then none is raised.
            ("client-output-buffer-limit-pubsub-hard-limit", "67108864"),
            ("client-output-buffer-limit-pubsub-soft-limit", "8388608"),
        ],
    )
    .await;
}

/// Attaching a group applies every pending modification with it (ApplyImmediately): ferry
/// refuses before changing anything.
#[tokio::test]
async fn pending_modifications_refuse_the_change_and_nothing_is_changed() {
    let state = on_the_default_group();
    state.lock().unwrap().pending = true;
    let rules = stand_in(&state);
    let ctx = ctx_with(&rules).await;
    let e = notifications::enable_notifications(ctx, live_input())
        .await
        .unwrap_err();
    assert_eq!(e.error_type(), "InvalidInput", "{e}");
    assert!(
        e.to_string()
            .contains("pending modifications (automatic failover)"),
        "{e}"
    );
    assert_eq!(calls(&rules, CREATE), 0, "no group created");
    assert_eq!(calls(&rules, WRITES), 0, "nothing written");
    assert_eq!(state.lock().unwrap().attached, "default.redis7");
}

/// A member that never gets in sync (stuck in `pending-reboot`) fails the poll with
/// `PollTimeout` once `options.poll_timeout_secs` have passed, which the state machine's Catch
/// takes to Cleanup, instead of polling until the history limit.
#[tokio::test]
async fn a_parameter_group_poll_that_never_syncs_times_out() {
    let state = on_the_default_group();
    let rules = stand_in(&state);
    let ctx = ctx_with(&rules).await;
    let mut out = notifications::enable_notifications(ctx.clone(), live_input())
        .await
        .unwrap();
    state.lock().unwrap().stuck = true;
    assert!(!status(&ctx, &out).await, "not in sync, within the time");
    out.started_at_ms = Some(out.started_at_ms.unwrap() - 1_801_000);
    let step = NotificationsStep {
        migration: live_input(),
        notifications: Some(out),
    };
    let e = notifications::notifications_status(ctx, step)
        .await
        .unwrap_err();
    assert_eq!(e.error_type(), "PollTimeout", "{e}");
    assert!(e.to_string().contains("pending-reboot"), "{e}");
}

#[tokio::test]
async fn a_serverless_cache_is_backed_up_once_and_polled_until_available() {
    use aws_sdk_elasticache::operation::create_serverless_cache_snapshot::{
        CreateServerlessCacheSnapshotError, CreateServerlessCacheSnapshotOutput,
    };
    use aws_sdk_elasticache::operation::describe_serverless_cache_snapshots::DescribeServerlessCacheSnapshotsOutput;
    use aws_sdk_elasticache::types::error::ServerlessCacheSnapshotAlreadyExistsFault;
    use aws_sdk_elasticache::types::ServerlessCacheSnapshot;

    let created = Arc::new(Mutex::new(0));
    let (c1, c2) = (created.clone(), created.clone());
    let create_exists = mock!(ElastiCache::create_serverless_cache_snapshot)
        .match_requests(move |_| *c1.lock().unwrap() > 0)
        .then_error(|| {
            CreateServerlessCacheSnapshotError::ServerlessCacheSnapshotAlreadyExistsFault(
                ServerlessCacheSnapshotAlreadyExistsFault::builder()
                    .message("exists")
                    .build(),
            )
        });
    let create = mock!(ElastiCache::create_serverless_cache_snapshot)
        .match_requests(move |r| {
            assert_eq!(r.serverless_cache_name(), Some("orders"));
            assert_eq!(r.serverless_cache_snapshot_name(), Some("ferry-orders-1"));
            *c2.lock().unwrap() += 1;
            true
        })
        .then_output(|| CreateServerlessCacheSnapshotOutput::builder().build());
    let polls = Arc::new(Mutex::new(0));
    let describe = mock!(ElastiCache::describe_serverless_cache_snapshots).then_output(move || {
        let mut n = polls.lock().unwrap();
        *n += 1;
        let status = if *n < 3 { "creating" } else { "available" };
        DescribeServerlessCacheSnapshotsOutput::builder()
            .serverless_cache_snapshots(
                ServerlessCacheSnapshot::builder()
                    .serverless_cache_snapshot_name("ferry-orders-1")
                    .status(status)
                    .build(),
            )
            .build()
    });
    let ctx = ctx_with(&[create_exists, create, describe]).await;
    let mut input = live_input();
    input.source.replication_group_id = None;
    input.source.serverless_cache_name = Some("orders".into());
    let request = elasticache::BackupRequest {
        migration: input.clone(),
        execution_start: None,
    };
    let first = elasticache::backup(ctx.clone(), request.clone())
        .await
        .unwrap();
    assert!(first.serverless && !first.ready, "{first:?}");
    let again = elasticache::backup(ctx.clone(), request).await.unwrap();
    assert_eq!(again.snapshot_name, first.snapshot_name);
    assert_eq!(
        *created.lock().unwrap(),
        1,
        "one snapshot however many runs"
    );
    let step = ferry_steps::elasticache::BackupStep {
        migration: input,
        backup: again,
    };
    let done = elasticache::backup_status(ctx, step).await.unwrap();
    assert!(
        done.ready && done.status.as_deref() == Some("available"),
        "{done:?}"
    );
}

/// `ferry abort` (or any end the state machine's Catch cannot see) still puts the source's
/// notification settings back: the stack's EventBridge rule sends the execution's status change
/// to the Cleanup Lambda, which finds EnableNotifications' record in the execution's history.
/// Step Functions runs on moto (a real aborted execution and its history), ElastiCache on the
/// stand-in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aborted_execution_is_cleaned_up_from_its_history() {
    use ferry_steps::after_end::{self, CleanupRequest};

    let state = on_the_default_group();
    let rules = stand_in(&state);
    let mocked = ctx_with(&rules).await;
    let recorded = notifications::enable_notifications(mocked.clone(), live_input())
        .await
        .unwrap();
    assert_eq!(state.lock().unwrap().attached, "ferry-orders");

    let moto = rig::Moto::start();
    moto.run_state_machines();
    let aws = common::aws::moto_aws(&moto).await;
    // The states that matter here: EnableNotifications' record kept under $.notifications (as
    // the real "Keep notification settings" does), then a long wait the operator aborts.
    let definition = json!({
        "StartAt": "Keep notification settings",
        "States": {
            "Keep notification settings": { "Type": "Pass", "Result": serde_json::to_value(&recorded).unwrap(), "ResultPath": "$.notifications", "Next": "Await cutover" },
            "Await cutover": { "Type": "Wait", "Seconds": 600, "End": true }
        }
    });
    let machine = aws
        .sfn
        .create_state_machine()
        .name("ferry-abort")
        .definition(definition.to_string())
        .role_arn("arn:aws:iam::123456789012:role/ferry")
        .send()
        .await
        .unwrap()
        .state_machine_arn;
    let input = serde_json::to_string(&live_input()).unwrap();
    let execution = aws
        .sfn
        .start_execution()
        .state_machine_arn(&machine)
        .name("orders-1")
        .input(input)
        .send()
        .await
        .unwrap()
        .execution_arn;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    aws.sfn
        .stop_execution()
        .execution_arn(&execution)
        .send()
        .await
        .unwrap();
    let ctx = Ctx {
        aws: Arc::new(Aws {
            elasticache: mocked.aws.elasticache.clone(),
            ..aws
        }),
        deadline: None,
    };
    // The event as EventBridge delivers it (fields the handler does not use included).
    let event = |status: &str| {
        json!({
            "version": "0", "id": "315c1398-40ff-a850-213b-158f73e60175",
            "detail-type": "Step Functions Execution Status Change", "source": "aws.states",
            "account": "123456789012", "time": "2026-11-30T10:00:00Z", "region": "us-east-1",
            "resources": [execution.clone()],
            "detail": { "executionArn": execution.clone(), "stateMachineArn": machine.clone(),
                "name": "orders-1", "status": status, "startDate": 1, "stopDate": 2,
                "input": "{}", "output": null }
        })
    };
    let succeeded: CleanupRequest = ferry_steps::lambda::parse(event("SUCCEEDED")).unwrap();
    let out = after_end::cleanup_request(ctx.clone(), succeeded)
        .await
        .unwrap();
    let out = serde_json::to_value(out).unwrap();
    assert!(
        out["restored"].as_array().unwrap().is_empty(),
        "a success is the Clean up state's business"
    );
    assert_eq!(state.lock().unwrap().attached, "ferry-orders");

    let aborted: CleanupRequest = ferry_steps::lambda::parse(event("ABORTED")).unwrap();
    let out = after_end::cleanup_request(ctx.clone(), aborted)
        .await
        .unwrap();
    let out = serde_json::to_value(out).unwrap();
    assert_eq!(out["restored"].as_array().unwrap().len(), 2, "{out}");
    let st = state.lock().unwrap();
    assert_eq!(st.attached, "default.redis7");
    assert!(!st.groups.contains_key("ferry-orders"));
}

/// The stand-in's refusals and limits are ElastiCache's own, as botocore's service model (the
/// PyPI package moto installs) states them: each fault it raises is one the operation lists,
/// at most 20 parameters per ModifyCacheParameterGroup, and MaxRecords between 20 and 100.
#[test]
fn the_stand_in_refuses_what_the_elasticache_model_says() {
    let script = r#"
import gzip, json, os, botocore
m = json.load(gzip.open(os.path.dirname(botocore.__file__) + '/data/elasticache/2015-02-02/service-2.json.gz'))
out = {op: [e['shape'] for e in o.get('errors', [])] for op, o in m['operations'].items()}
out['_limits'] = [m['shapes']['ModifyCacheParameterGroupMessage']['members']['ParameterNameValues']['documentation'],
                  m['shapes']['DescribeCacheClustersMessage']['members']['MaxRecords']['documentation']]
print(json.dumps(out))
"#;
    let out = std::process::Command::new("python3")
        .args(["-c", script])
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let model: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for (operation, fault) in [
        (
            "CreateCacheParameterGroup",
            "CacheParameterGroupAlreadyExistsFault",
        ),
        (
            "ModifyCacheParameterGroup",
            "InvalidCacheParameterGroupStateFault",
        ),
        (
            "ModifyCacheParameterGroup",
            "InvalidParameterValueException",
        ),
        (
            "ModifyReplicationGroup",
            "InvalidParameterCombinationException",
        ),
        (
            "DeleteCacheParameterGroup",
            "InvalidCacheParameterGroupStateFault",
        ),
        (
            "DeleteCacheParameterGroup",
            "CacheParameterGroupNotFoundFault",
        ),
    ] {
        let listed = model[operation].as_array().unwrap();
        assert!(
            listed.contains(&json!(fault)),
            "{operation} does not raise {fault}: {listed:?}"
        );
    }
    for operation in [
        "DescribeReplicationGroups",
        "DescribeCacheClusters",
        "DescribeCacheParameters",
        "DescribeEngineDefaultParameters",
        "DescribeCacheParameterGroups",
    ] {
        assert!(model.get(operation).is_some(), "{operation}");
    }
    let limits = model["_limits"].to_string();
    assert!(
        limits.contains("A maximum of 20 parameters may be modified per request"),
        "{limits}"
    );
    assert!(limits.contains("minimum 20; maximum 100"), "{limits}");
}

/// The stand-in refuses a value outside a parameter's AllowedValues, as ElastiCache does
/// (InvalidParameterValue): ferry's raised pub/sub limits must fit the range it reads.
#[tokio::test]
async fn the_stand_in_refuses_a_value_outside_the_allowed_range() {
    use aws_sdk_elasticache::types::ParameterNameValue;
    let state = on_the_default_group();
    let rules = stand_in(&state);
    let ctx = ctx_with(&rules).await;
    ctx.aws
        .elasticache
        .create_cache_parameter_group()
        .cache_parameter_group_name("ferry-orders")
        .cache_parameter_group_family("redis7")
        .description("test")
        .send()
        .await
        .unwrap();
    let e = ctx
        .aws
        .elasticache
        .modify_cache_parameter_group()
        .cache_parameter_group_name("ferry-orders")
        .parameter_name_values(
            ParameterNameValue::builder()
                .parameter_name("client-output-buffer-limit-pubsub-hard-limit")
                .parameter_value("-1")
                .build(),
        )
        .send()
        .await
        .unwrap_err();
    assert!(
        e.as_service_error()
            .is_some_and(|s| s.is_invalid_parameter_value_exception()),
        "{e:?}"
    );
}
