//! The tail's line to the state machine (design §6): requests arrive on the SQS control queue,
//! each carrying a Step Functions task token; the tail heartbeats a token while it works and
//! answers it with SendTaskSuccess or SendTaskFailure. A thin adapter: no Redis here. Every
//! call rides out throttling and AWS-side errors (retried with backoff for up to 15 minutes):
//! a transient AWS error must never end a tail that is keeping a target current.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ferry_engine::util::retry::Backoff;
use serde::Serialize;

use crate::aws::Aws;
use crate::contracts::{ControlAction, ControlRequest};
use crate::error::StepError;

/// One received request and the handle that deletes it from the queue.
pub struct Received {
    /// The request.
    pub request: ControlRequest,
    /// SQS receipt handle.
    receipt: String,
}

/// The control queue and the task-token API, for one migration.
#[derive(Clone)]
pub struct Control {
    aws: Aws,
    queue_url: String,
    migration_id: String,
    /// SQS long-poll wait (at most 20 s).
    poll_wait: Duration,
}

/// How long a control call keeps retrying through throttling and AWS-side errors (after the
/// SDK's own few attempts) before the tail gives up on it: long enough for a regional hiccup,
/// short of the task tokens' lifetimes.
const RETRY_WINDOW: Duration = Duration::from_secs(15 * 60);

/// Runs `call` until it succeeds, fails with an error that is not worth retrying, or
/// [`RETRY_WINDOW`] has passed, waiting 0.5 s doubling to 15 s between attempts (the engine's
/// one backoff policy).
async fn retrying<T, F, Fut>(what: &str, call: F) -> Result<T, StepError>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T, StepError>>,
{
    let mut backoff = Backoff::new(
        Duration::from_millis(500),
        Duration::from_secs(15),
        Some(RETRY_WINDOW),
    );
    loop {
        match call().await {
            Err(e) if e.is_retryable() => {
                tracing::warn!(error = %e, call = what, retry_in_ms = backoff.next_delay().as_millis() as u64, "AWS call failed; retrying");
                if !backoff.wait().await {
                    return Err(e);
                }
            }
            other => return other,
        }
    }
}

impl Control {
    /// The control line of `migration_id` on `queue_url`.
    pub fn new(aws: Aws, queue_url: String, migration_id: String, poll_wait: Duration) -> Control {
        Control {
            aws,
            queue_url,
            migration_id,
            poll_wait: poll_wait.min(Duration::from_secs(20)),
        }
    }

    /// Waits up to the poll wait for this migration's requests. Another migration's request is
    /// put back at once; a message that is not a request is logged and deleted (it would only
    /// come back).
    pub async fn receive(&self) -> Result<Vec<Received>, StepError> {
        let out = retrying("ReceiveMessage", || async {
            self.aws
                .sqs
                .receive_message()
                .queue_url(&self.queue_url)
                .wait_time_seconds(self.poll_wait.as_secs() as i32)
                .max_number_of_messages(10)
                .send()
                .await
                .map_err(|e| StepError::from_aws("ReceiveMessage", e))
        })
        .await?;
        let mut mine = Vec::new();
        for message in out.messages.unwrap_or_default() {
            let receipt = message.receipt_handle.unwrap_or_default();
            let body = message.body.unwrap_or_default();
            match serde_json::from_str::<ControlRequest>(&body) {
                Ok(request) if request.migration_id == self.migration_id => {
                    mine.push(Received { request, receipt })
                }
                Ok(request) => {
                    tracing::debug!(migration = %request.migration_id, "request for another migration");
                    self.release(&receipt).await?;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "not a control request; deleted");
                    self.delete_receipt(&receipt).await?;
                }
            }
        }
        Ok(mine)
    }

    /// Removes a handled request from the queue.
    pub async fn delete(&self, received: &Received) -> Result<(), StepError> {
        self.delete_receipt(&received.receipt).await
    }

    async fn delete_receipt(&self, receipt: &str) -> Result<(), StepError> {
        retrying("DeleteMessage", || async {
            self.aws
                .sqs
                .delete_message()
                .queue_url(&self.queue_url)
                .receipt_handle(receipt)
                .send()
                .await
                .map_err(|e| StepError::from_aws("DeleteMessage", e))
        })
        .await?;
        Ok(())
    }

    async fn release(&self, receipt: &str) -> Result<(), StepError> {
        retrying("ChangeMessageVisibility", || async {
            self.aws
                .sqs
                .change_message_visibility()
                .queue_url(&self.queue_url)
                .receipt_handle(receipt)
                .visibility_timeout(0)
                .send()
                .await
                .map_err(|e| StepError::from_aws("ChangeMessageVisibility", e))
        })
        .await?;
        Ok(())
    }

    /// Answers a token: the state moves on with `output` as its result.
    pub async fn succeed(&self, token: &str, output: &impl Serialize) -> Result<(), StepError> {
        let output = serde_json::to_string(output).expect("answers serialize");
        retrying("SendTaskSuccess", || async {
            self.aws
                .sfn
                .send_task_success()
                .task_token(token)
                .output(&output)
                .send()
                .await
                .map_err(|e| StepError::from_aws("SendTaskSuccess", e))
        })
        .await?;
        Ok(())
    }

    /// Fails a token with the step error's stable type name, which the state's Catch matches.
    pub async fn fail(&self, token: &str, error: &StepError) -> Result<(), StepError> {
        retrying("SendTaskFailure", || async {
            self.aws
                .sfn
                .send_task_failure()
                .task_token(token)
                .error(error.error_type())
                .cause(error.to_string())
                .send()
                .await
                .map_err(|e| StepError::from_aws("SendTaskFailure", e))
        })
        .await?;
        Ok(())
    }

    /// Runs `work` while telling Step Functions every `every` that the token's task is alive
    /// (the state's HeartbeatSeconds would fail it otherwise). A failed heartbeat is logged:
    /// the answer at the end is what counts.
    pub async fn heartbeating<T>(
        &self,
        token: Option<&str>,
        every: Duration,
        work: impl Future<Output = T>,
    ) -> T {
        let Some(token) = token else {
            return work.await;
        };
        tokio::pin!(work);
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        loop {
            tokio::select! {
                out = &mut work => return out,
                _ = tick.tick() => {
                    let sent = self.aws.sfn.send_task_heartbeat().task_token(token).send().await;
                    if let Err(e) = sent {
                        tracing::warn!(error = %StepError::from_aws("SendTaskHeartbeat", e), "heartbeat");
                    }
                }
            }
        }
    }

    /// Tells Step Functions the token's task is alive. `Ok(false)` once it no longer knows the
    /// token: its state was answered (by the operator) or ended.
    pub async fn heartbeat(&self, token: &str) -> Result<bool, StepError> {
        let sent = retrying("SendTaskHeartbeat", || async {
            match self
                .aws
                .sfn
                .send_task_heartbeat()
                .task_token(token)
                .send()
                .await
            {
                Ok(_) => Ok(true),
                Err(e) => match e.as_service_error() {
                    Some(se)
                        if se.is_task_timed_out()
                            || se.is_task_does_not_exist()
                            || se.is_invalid_token() =>
                    {
                        Ok(false)
                    }
                    _ => Err(StepError::from_aws("SendTaskHeartbeat", e)),
                },
            }
        })
        .await;
        sent
    }

    /// Whether the execution that started the tail still runs (false once it succeeded, failed
    /// or was aborted: the tail then stops on its own).
    pub async fn execution_running(&self, execution_arn: &str) -> Result<bool, StepError> {
        let out = retrying("DescribeExecution", || async {
            self.aws
                .sfn
                .describe_execution()
                .execution_arn(execution_arn)
                .send()
                .await
                .map_err(|e| StepError::from_aws("DescribeExecution", e))
        })
        .await?;
        Ok(out.status == aws_sdk_sfn::types::ExecutionStatus::Running)
    }
}

/// A token that waits for the operator (`await_cutover`, `await_release`): a task of its own
/// heartbeats it while the tail follows (never held up by the request loop), so the state
/// fails if the tail dies; the tail fails it with its own error if it fails.
pub struct Waiting {
    /// The token.
    pub token: String,
    /// The request that brought it.
    pub action: ControlAction,
    /// Set by the heartbeat task once Step Functions no longer knows the token (answered).
    pub answered: Arc<AtomicBool>,
    beating: tokio::task::JoinHandle<()>,
}

impl Control {
    /// Heartbeats `token` every `every` from a task of its own until Step Functions no longer
    /// knows it (the flag `answered` is set) or the returned [`Waiting`] is dropped.
    pub fn keep_alive(&self, token: &str, action: ControlAction, every: Duration) -> Waiting {
        let answered = Arc::new(AtomicBool::new(false));
        let (control, token_owned, flag) = (self.clone(), token.to_string(), answered.clone());
        let beating = tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                match control.heartbeat(&token_owned).await {
                    Ok(true) => {}
                    Ok(false) => return flag.store(true, Ordering::SeqCst),
                    Err(e) => tracing::warn!(error = %e, "heartbeat"),
                }
            }
        });
        Waiting {
            token: token.to_string(),
            action,
            answered,
            beating,
        }
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.beating.abort();
    }
}
