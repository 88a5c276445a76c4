//! EnableNotifications, NotificationsStatus, Cleanup and serverless Backup against ElastiCache's
//! parameter-group and serverless APIs. moto implements neither, so these tests use the SDK's own test
//! facility (aws-smithy-mocks): a small stateful stand-in answers DescribeReplicationGroups,
//! DescribeCacheClusters, Describe/Create/Modify/DeleteCacheParameterGroup(s),
//! DescribeCacheParameters and ModifyReplicationGroup with responses shaped like ElastiCache's,
//! including its refusal to modify a `default.` group and to delete a group in use.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use aws_sdk_elasticache::operation::create_cache_parameter_group::{
    CreateCacheParameterGroupError, CreateCacheParameterGroupOutput,
};
use aws_sdk_elasticache::operation::delete_cache_parameter_group::{
    DeleteCacheParameterGroupError, DeleteCacheParameterGroupOutput,
};
use aws_sdk_elasticache::operation::describe_cache_clusters::DescribeCacheClustersOutput;
use aws_sdk_elasticache::operation::describe_cache_parameter_groups::DescribeCacheParameterGroupsOutput;
use aws_sdk_elasticache::operation::describe_cache_parameters::DescribeCacheParametersOutput;
use aws_sdk_elasticache::operation::describe_replication_groups::DescribeReplicationGroupsOutput;
use aws_sdk_elasticache::operation::modify_cache_parameter_group::{
    ModifyCacheParameterGroupError, ModifyCacheParameterGroupOutput,
};
use aws_sdk_elasticache::operation::modify_replication_group::ModifyReplicationGroupOutput;
use aws_sdk_elasticache::types::error::{
    CacheParameterGroupAlreadyExistsFault, CacheParameterGroupNotFoundFault,
    InvalidCacheParameterGroupStateFault,
};
use aws_sdk_elasticache::types::{
    CacheCluster, CacheParameterGroup, CacheParameterGroupStatus, Parameter, ReplicationGroup,
};
use aws_sdk_elasticache::Client as ElastiCache;
use aws_smithy_mocks::{mock, mock_client, Rule, RuleMode};
use ferry_steps::contracts::{MigrationInput, NotificationsOutput};
use ferry_steps::elasticache::{self, NotificationsStep};
use ferry_steps::{Aws, Ctx};
use serde_json::json;

/// What the stand-in remembers: the group each cluster uses, the groups and their values.
#[derive(Default)]
struct State {
    attached: String,
    /// Status DescribeCacheClusters reports; `applying` once after a change.
    applying: bool,
    /// name → (family, description, notify-keyspace-events).
    groups: HashMap<String, (String, String, String)>,
}

type Shared = Arc<Mutex<State>>;

fn stand_in(state: &Shared) -> Vec<Rule> {
    let s = state.clone();
    let describe_rg = mock!(ElastiCache::describe_replication_groups).then_output(|| {
        DescribeReplicationGroupsOutput::builder()
            .replication_groups(
                ReplicationGroup::builder()
                    .replication_group_id("orders")
                    .member_clusters("orders-001")
                    .member_clusters("orders-002")
                    .build(),
            )
            .build()
    });
    let describe_clusters = mock!(ElastiCache::describe_cache_clusters).then_output(move || {
        let mut st = s.lock().unwrap();
        let status = if st.applying { "applying" } else { "in-sync" };
        st.applying = false;
        DescribeCacheClustersOutput::builder()
            .cache_clusters(
                CacheCluster::builder()
                    .cache_cluster_id("orders-001")
                    .cache_parameter_group(
                        CacheParameterGroupStatus::builder()
                            .cache_parameter_group_name(st.attached.clone())
                            .parameter_apply_status(status)
                            .build(),
                    )
                    .build(),
            )
            .build()
    });
    let (s1, s2) = (state.clone(), state.clone());
    let asked = Arc::new(Mutex::new(String::new()));
    let (a1, a2) = (asked.clone(), asked.clone());
    let describe_groups = mock!(ElastiCache::describe_cache_parameter_groups)
        .match_requests(move |r| {
            *a1.lock().unwrap() = r
                .cache_parameter_group_name()
                .unwrap_or_default()
                .to_string();
            true
        })
        .then_output(move || {
            let name = a2.lock().unwrap().clone();
            let st = s1.lock().unwrap();
            let (family, description, _) = st.groups[&name].clone();
            DescribeCacheParameterGroupsOutput::builder()
                .cache_parameter_groups(
                    CacheParameterGroup::builder()
                        .cache_parameter_group_name(name)
                        .cache_parameter_group_family(family)
                        .description(description)
                        .build(),
                )
                .build()
        });
    let asked_params = Arc::new(Mutex::new(String::new()));
    let (p1, p2) = (asked_params.clone(), asked_params.clone());
    let describe_params = mock!(ElastiCache::describe_cache_parameters)
        .match_requests(move |r| {
            *p1.lock().unwrap() = r
                .cache_parameter_group_name()
                .unwrap_or_default()
                .to_string();
            true
        })
        .then_output(move || {
            let st = s2.lock().unwrap();
            let value = st.groups[&*p2.lock().unwrap()].2.clone();
            DescribeCacheParametersOutput::builder()
                .parameters(
                    Parameter::builder()
                        .parameter_name("maxmemory-policy")
                        .parameter_value("volatile-lru")
                        .build(),
                )
                .parameters(
                    Parameter::builder()
                        .parameter_name("notify-keyspace-events")
                        .parameter_value(value)
                        .build(),
                )
                .build()
        });
    let s3 = state.clone();
    let create_exists = mock!(ElastiCache::create_cache_parameter_group)
        .match_requests(move |r| {
            s3.lock()
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
    let s4 = state.clone();
    let create = mock!(ElastiCache::create_cache_parameter_group)
        .match_requests(move |r| {
            s4.lock().unwrap().groups.insert(
                r.cache_parameter_group_name().unwrap().to_string(),
                (
                    r.cache_parameter_group_family().unwrap().to_string(),
                    r.description().unwrap().to_string(),
                    String::new(),
                ),
            );
            true
        })
        .then_output(|| CreateCacheParameterGroupOutput::builder().build());
    let modify_default = mock!(ElastiCache::modify_cache_parameter_group)
        .match_requests(|r| {
            r.cache_parameter_group_name()
                .unwrap_or_default()
                .starts_with("default.")
        })
        .then_error(|| {
            ModifyCacheParameterGroupError::InvalidCacheParameterGroupStateFault(
                InvalidCacheParameterGroupStateFault::builder()
                    .message("default groups cannot be modified")
                    .build(),
            )
        });
    let s5 = state.clone();
    let modify = mock!(ElastiCache::modify_cache_parameter_group)
        .match_requests(move |r| {
            let mut st = s5.lock().unwrap();
            let value = r.parameter_name_values()[0]
                .parameter_value()
                .unwrap()
                .to_string();
            st.groups
                .get_mut(r.cache_parameter_group_name().unwrap())
                .unwrap()
                .2 = value;
            st.applying = true;
            true
        })
        .then_output(|| ModifyCacheParameterGroupOutput::builder().build());
    let s6 = state.clone();
    let attach = mock!(ElastiCache::modify_replication_group)
        .match_requests(move |r| {
            assert_eq!(r.apply_immediately(), Some(true));
            let mut st = s6.lock().unwrap();
            st.attached = r.cache_parameter_group_name().unwrap().to_string();
            st.applying = true;
            true
        })
        .then_output(|| ModifyReplicationGroupOutput::builder().build());
    let s7 = state.clone();
    let delete_in_use = mock!(ElastiCache::delete_cache_parameter_group)
        .match_requests(move |r| {
            s7.lock().unwrap().attached == r.cache_parameter_group_name().unwrap_or_default()
        })
        .then_error(|| {
            DeleteCacheParameterGroupError::InvalidCacheParameterGroupStateFault(
                InvalidCacheParameterGroupStateFault::builder()
                    .message("in use")
                    .build(),
            )
        });
    let s9 = state.clone();
    let delete_missing = mock!(ElastiCache::delete_cache_parameter_group)
        .match_requests(move |r| {
            !s9.lock()
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
    let s8 = state.clone();
    let delete = mock!(ElastiCache::delete_cache_parameter_group)
        .match_requests(move |r| {
            s8.lock()
                .unwrap()
                .groups
                .remove(r.cache_parameter_group_name().unwrap());
            true
        })
        .then_output(|| DeleteCacheParameterGroupOutput::builder().build());
    vec![
        describe_rg,
        describe_clusters,
        describe_groups,
        describe_params,
        create_exists,
        create,
        modify_default,
        modify,
        attach,
        delete_in_use,
        delete_missing,
        delete,
    ]
}

/// A source on ElastiCache's default group for its family, as most are.
fn on_the_default_group() -> Shared {
    let state: Shared = Default::default();
    {
        let mut st = state.lock().unwrap();
        st.attached = "default.redis7".into();
        st.groups.insert(
            "default.redis7".into(),
            (
                "redis7".into(),
                "Default parameter group for redis7".into(),
                String::new(),
            ),
        );
    }
    state
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
    elasticache::notifications_status(ctx.clone(), step)
        .await
        .unwrap()
        .in_sync
}

#[tokio::test]
async fn a_default_group_is_copied_attached_restored_and_a_second_run_changes_nothing() {
    let state = on_the_default_group();
    let rules = stand_in(&state);
    let ctx = ctx_with(&rules).await;

    let first = elasticache::enable_notifications(ctx.clone(), live_input())
        .await
        .unwrap();
    assert!(first.changed);
    assert_eq!(first.parameter_group.as_deref(), Some("ferry-orders"));
    assert_eq!(first.original_group.as_deref(), Some("default.redis7"));
    assert_eq!(first.original_value.as_deref(), Some(""));
    {
        let st = state.lock().unwrap();
        assert_eq!(st.attached, "ferry-orders");
        let (family, _, value) = &st.groups["ferry-orders"];
        assert_eq!(family, "redis7", "same family as the default group");
        assert!(
            ferry_engine::inventory::notifications_cover(value),
            "{value}"
        );
        assert_eq!(
            st.groups["default.redis7"].2, "",
            "the default group is untouched"
        );
    }
    assert!(
        !status(&ctx, &first).await,
        "applying right after the change"
    );
    assert!(status(&ctx, &first).await, "then in sync");

    let modifications = rules[7].num_calls() + rules[8].num_calls();
    let second = elasticache::enable_notifications(ctx.clone(), live_input())
        .await
        .unwrap();
    assert!(!second.changed, "{second:?}");
    assert_eq!(
        rules[7].num_calls() + rules[8].num_calls(),
        modifications,
        "no write the second time"
    );
    assert_eq!(
        second.original_group.as_deref(),
        Some("default.redis7"),
        "a rerun still knows the original"
    );

    let step = NotificationsStep {
        migration: live_input(),
        notifications: Some(first),
    };
    let cleaned = elasticache::cleanup(ctx.clone(), step.clone())
        .await
        .unwrap();
    assert_eq!(cleaned.restored.len(), 2, "{cleaned:?}");
    {
        let st = state.lock().unwrap();
        assert_eq!(st.attached, "default.redis7");
        assert!(!st.groups.contains_key("ferry-orders"));
    }
    let again = elasticache::cleanup(ctx.clone(), step).await.unwrap();
    assert!(
        again.restored.is_empty(),
        "a second cleanup changes nothing: {again:?}"
    );
}

#[tokio::test]
async fn a_custom_group_is_changed_in_place_keeping_its_flags_and_restored() {
    let state: Shared = Default::default();
    {
        let mut st = state.lock().unwrap();
        st.attached = "orders-params".into();
        st.groups.insert(
            "orders-params".into(),
            ("redis7".into(), "team settings".into(), "Ex".into()),
        );
    }
    let rules = stand_in(&state);
    let ctx = ctx_with(&rules).await;
    let out = elasticache::enable_notifications(ctx.clone(), live_input())
        .await
        .unwrap();
    assert!(out.changed && out.original_group.is_none());
    let value = state.lock().unwrap().groups["orders-params"].2.clone();
    assert!(
        value.starts_with("Ex") && ferry_engine::inventory::notifications_cover(&value),
        "{value}"
    );
    assert_eq!(
        rules[4].num_calls() + rules[5].num_calls(),
        0,
        "no new group"
    );
    let step = NotificationsStep {
        migration: live_input(),
        notifications: Some(out),
    };
    elasticache::cleanup(ctx.clone(), step).await.unwrap();
    assert_eq!(state.lock().unwrap().groups["orders-params"].2, "Ex");
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
    let first = elasticache::backup(ctx.clone(), input.clone())
        .await
        .unwrap();
    assert!(first.serverless && !first.ready, "{first:?}");
    let again = elasticache::backup(ctx.clone(), input.clone())
        .await
        .unwrap();
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
    let recorded = elasticache::enable_notifications(mocked.clone(), live_input())
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
    assert!(
        out.restored.is_empty(),
        "a success is the Clean up state's business"
    );
    assert_eq!(state.lock().unwrap().attached, "ferry-orders");

    let aborted: CleanupRequest = ferry_steps::lambda::parse(event("ABORTED")).unwrap();
    let out = after_end::cleanup_request(ctx.clone(), aborted)
        .await
        .unwrap();
    assert_eq!(out.restored.len(), 2, "{out:?}");
    let st = state.lock().unwrap();
    assert_eq!(st.attached, "default.redis7");
    assert!(!st.groups.contains_key("ferry-orders"));
}
