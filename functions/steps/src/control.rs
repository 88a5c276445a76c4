//! The tail's line to the state machine (design §6): requests arrive on the SQS control queue,
//! each carrying a Step Functions task token; the tail heartbeats a token while it works and
//! answers it with SendTaskSuccess or SendTaskFailure. A thin adapter: no Redis here.

use std::future::Future;
use std::time::Duration;

use serde::Serialize;

use crate::aws::Aws;
use crate::contracts::ControlRequest;
use crate::error::StepError;

/// One received request and the handle that deletes it from the queue.
pub struct Received {
    /// The request.
    pub request: ControlRequest,
    /// SQS receipt handle.
    receipt: String,
}

/// The control queue and the task-token API, for one migration.
pub struct Control {
    aws: Aws,
    queue_url: String,
    migration_id: String,
    /// SQS long-poll wait (at most 20 s).
    poll_wait: Duration,
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
        let out = self
            .aws
            .sqs
            .receive_message()
            .queue_url(&self.queue_url)
            .wait_time_seconds(self.poll_wait.as_secs() as i32)
            .max_number_of_messages(10)
            .send()
            .await
            .map_err(|e| StepError::from_aws("ReceiveMessage", e))?;
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
        self.aws
            .sqs
            .delete_message()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt)
            .send()
            .await
            .map_err(|e| StepError::from_aws("DeleteMessage", e))?;
        Ok(())
    }

    async fn release(&self, receipt: &str) -> Result<(), StepError> {
        self.aws
            .sqs
            .change_message_visibility()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt)
            .visibility_timeout(0)
            .send()
            .await
            .map_err(|e| StepError::from_aws("ChangeMessageVisibility", e))?;
        Ok(())
    }

    /// Answers a token: the state moves on with `output` as its result.
    pub async fn succeed(&self, token: &str, output: &impl Serialize) -> Result<(), StepError> {
        let output = serde_json::to_string(output).expect("answers serialize");
        self.aws
            .sfn
            .send_task_success()
            .task_token(token)
            .output(output)
            .send()
            .await
            .map_err(|e| StepError::from_aws("SendTaskSuccess", e))?;
        Ok(())
    }

    /// Fails a token with the step error's stable type name, which the state's Catch matches.
    pub async fn fail(&self, token: &str, error: &StepError) -> Result<(), StepError> {
        self.aws
            .sfn
            .send_task_failure()
            .task_token(token)
            .error(error.error_type())
            .cause(error.to_string())
            .send()
            .await
            .map_err(|e| StepError::from_aws("SendTaskFailure", e))?;
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

    /// Whether the execution that started the tail still runs (false once it succeeded, failed
    /// or was aborted: the tail then stops on its own).
    pub async fn execution_running(&self, execution_arn: &str) -> Result<bool, StepError> {
        let out = self
            .aws
            .sfn
            .describe_execution()
            .execution_arn(execution_arn)
            .send()
            .await
            .map_err(|e| StepError::from_aws("DescribeExecution", e))?;
        Ok(out.status == aws_sdk_sfn::types::ExecutionStatus::Running)
    }
}
