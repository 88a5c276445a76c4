//! The control line's messages: what the state machine asks of the running tail, and what
//! the tail answers through the task token.

use super::*;

/// What the state machine asks of the running tail (design §6): one SQS message on the control
/// queue, sent by a `sqs:sendMessage.waitForTaskToken` state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlRequest {
    /// What to do.
    pub action: ControlAction,
    /// The token the tail answers with SendTaskSuccess / SendTaskFailure when done.
    #[serde(default)]
    pub task_token: Option<String>,
    /// The migration the request is for: a tail leaves other migrations' requests alone.
    pub migration_id: String,
    /// The operator's answer to "Await cutover" (`fence` requests), as given: the console
    /// accepts any JSON, so it is read leniently ([`ControlRequest::writers_stopped`]).
    #[serde(default)]
    pub operator: Option<serde_json::Value>,
}

impl ControlRequest {
    /// The operator said every writer of the source is stopped (`ferry cutover
    /// --writers-stopped`, output `{"writers_stopped": true}`): the fence for a source that
    /// refuses `CLIENT PAUSE`.
    pub fn writers_stopped(&self) -> bool {
        self.operator
            .as_ref()
            .and_then(|o| o.get("writers_stopped"))
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false)
    }
}

/// The tail's requests, in the order of a live migration (the cutover protocol of
/// `ferry_engine::live::cutover` after the barrier).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ControlAction {
    /// The snapshot is done: replay every key touched since subscription (design §4.4), and
    /// record the keys touched from now on for the fenced check.
    Barrier,
    /// The operator is asked for the cutover: the tail heartbeats this token while it follows
    /// (a dead tail fails the state) and fails it if the tail fails; `ferry cutover` answers it.
    AwaitCutover,
    /// Fence the source, drain, check what changed since the barrier; answer `fenced` with the
    /// figures, or fail with `CutoverRefused` (fence lifted, following goes on).
    Fence,
    /// The fence is up and the operator switches the application: heartbeated like
    /// `await_cutover`; `ferry cutover --release` answers it. A fence that expires first fails
    /// it with `CutoverRefused`.
    AwaitRelease,
    /// Lift the fence, watch for stragglers, drain, answer `released` with the cutover report
    /// and exit.
    Release,
    /// Stop now (the execution failed or was aborted); no answer.
    Stop,
}

/// The tail's answer to a task token: the state machine keeps it under `$.tail`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TailAnswer {
    /// `ready`, `barrier`, `fenced` or `released`.
    pub phase: String,
    /// Keys re-copied by this barrier (0 for other phases).
    pub replayed: u64,
    /// Events, copies, lag, gaps so far.
    pub report: ferry_engine::live::tail::TailReport,
    /// The cutover's figures (`fenced`: fence and check; `released`: all of them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cutover: Option<ferry_engine::live::cutover::CutoverReport>,
}
