//! AWS helpers for the tests that run against moto: SDK clients pointed at it, the next message
//! on a queue, and states taken from the real state machine definition.

use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region};
use aws_sdk_secretsmanager::config::Credentials;
use ferry_steps::Aws;
use rig::Moto;
use serde_json::Value;

/// ferry's SDK clients, talking to `moto` with dummy credentials.
pub async fn moto_aws(moto: &Moto) -> Aws {
    let config = aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(moto.url())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "test"))
        .load()
        .await;
    Aws::from_config(&config)
}

/// Takes the next message off `queue` (waiting up to `within`) and returns its JSON body.
pub async fn next_message(aws: &Aws, queue: &str, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        let out = aws
            .sqs
            .receive_message()
            .queue_url(queue)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        if let Some(m) = out.messages.unwrap_or_default().into_iter().next() {
            aws.sqs
                .delete_message()
                .queue_url(queue)
                .receipt_handle(m.receipt_handle.unwrap())
                .send()
                .await
                .unwrap();
            return serde_json::from_str(m.body.as_deref().unwrap()).unwrap();
        }
    }
    panic!("no message on {queue} within {within:?}");
}

/// `statemachine/migration.asl.json` with `fill`'s placeholders substituted.
pub fn asl_definition(fill: &[(&str, &str)]) -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/statemachine/migration.asl.json"
    );
    let mut text = std::fs::read_to_string(path).unwrap();
    for (placeholder, value) in fill {
        text = text.replace(&format!("${{{placeholder}}}"), value);
    }
    serde_json::from_str(&text).unwrap()
}

/// A state of `statemachine/migration.asl.json` with `fill`'s placeholders substituted, its
/// Retry and Catch removed (a test decides where failures go) and `next` after it.
pub fn asl_state(name: &str, fill: &[(&str, &str)], next: &str) -> Value {
    let mut state = asl_definition(fill)["States"][name].clone();
    let o = state
        .as_object_mut()
        .unwrap_or_else(|| panic!("no state {name}"));
    o.remove("Retry");
    o.remove("Catch");
    o.insert("Next".into(), Value::String(next.into()));
    state
}
