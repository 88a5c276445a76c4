//! The tail task's settings, from its environment.

use std::time::Duration;

use crate::contracts::MigrationInput;
use crate::error::StepError;

/// What the task reads from its environment: the state machine's container overrides
/// (`FERRY_TASK_TOKEN`, `FERRY_MIGRATION`, `FERRY_EXECUTION`) and the task definition
/// (`FERRY_CONTROL_QUEUE_URL`, tuning).
pub struct TailTaskSettings {
    /// The execution input (credentials by Secrets Manager ARN only).
    pub migration: MigrationInput,
    /// The StartTail token, answered once the tail is ready.
    pub ready_token: Option<String>,
    /// The control queue's URL.
    pub queue_url: String,
    /// The execution's ARN: the tail stops once it is no longer running.
    pub execution: Option<String>,
    /// How often a token being worked on is heartbeated (`FERRY_HEARTBEAT_SECS`, 60).
    pub heartbeat: Duration,
    /// SQS long-poll wait per round (`FERRY_POLL_SECS`, 20).
    pub poll_wait: Duration,
    /// How long without events counts as drained (`FERRY_DRAIN_QUIET_SECS`, 2).
    pub drain_quiet: Duration,
    /// How long a barrier or drain may take before it fails (`FERRY_DRAIN_TIMEOUT_SECS`, 900):
    /// writers that never stop must not keep a request open for ever.
    pub drain_timeout: Duration,
    /// This task replaces a tail that died (`FERRY_REPLACES`, set by the "Replace the tail"
    /// state): writes made while none followed are unseen, so it heals before it is ready.
    pub replaces: bool,
}

impl TailTaskSettings {
    /// Reads the settings; a missing or malformed variable is `InvalidInput` naming it.
    pub fn from_env() -> Result<TailTaskSettings, StepError> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let required =
            |name: &str| var(name).ok_or_else(|| StepError::invalid(format!("{name} is not set")));
        let secs = |name: &str, default: f64| -> Result<Duration, StepError> {
            match var(name) {
                None => Ok(Duration::from_secs_f64(default)),
                Some(v) => v
                    .parse::<f64>()
                    .ok()
                    .filter(|s| s.is_finite() && *s >= 0.0)
                    .map(Duration::from_secs_f64)
                    .ok_or_else(|| {
                        StepError::invalid(format!("{name}={v} is not a number of seconds"))
                    }),
            }
        };
        let json: serde_json::Value = serde_json::from_str(&required("FERRY_MIGRATION")?)
            .map_err(|_| StepError::invalid("FERRY_MIGRATION is not JSON"))?;
        Ok(TailTaskSettings {
            migration: MigrationInput::from_json(json)?,
            ready_token: var("FERRY_TASK_TOKEN"),
            queue_url: required("FERRY_CONTROL_QUEUE_URL")?,
            execution: var("FERRY_EXECUTION"),
            heartbeat: secs("FERRY_HEARTBEAT_SECS", 60.0)?,
            poll_wait: secs("FERRY_POLL_SECS", 20.0)?,
            drain_quiet: secs("FERRY_DRAIN_QUIET_SECS", 2.0)?,
            drain_timeout: secs("FERRY_DRAIN_TIMEOUT_SECS", 900.0)?,
            replaces: var("FERRY_REPLACES").is_some_and(|v| v == "true"),
        })
    }
}
