//! The one error type of every step, with the stable error type names the state machine's
//! Retry and Catch match (design §6) — never the Rust type-name fallback.

use std::fmt::Display;

use aws_sdk_elasticache::error::{ProvideErrorMetadata, SdkError};
use lambda_runtime::Diagnostic;

/// A step's failure.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// From the engine (Redis): its kind names the type.
    #[error("{0}")]
    Engine(#[from] ferry_engine::Error),
    /// From the step itself or AWS, with its type name.
    #[error("{message}")]
    Named {
        /// The stable error type name.
        kind: &'static str,
        /// What happened, with no secret in it.
        message: String,
    },
}

impl StepError {
    /// Bad execution input.
    pub fn invalid(message: impl Into<String>) -> StepError {
        StepError::Named {
            kind: "InvalidInput",
            message: message.into(),
        }
    }

    /// A cutover that could not go ahead (the fence's check found differences, the fence
    /// expired before the switch was confirmed, …): nothing is lost, following goes on and the
    /// state machine asks the operator again.
    pub fn cutover_refused(message: impl Into<String>) -> StepError {
        StepError::Named {
            kind: "CutoverRefused",
            message: message.into(),
        }
    }

    /// A failure worth running the step again for.
    pub fn retryable(message: impl Into<String>) -> StepError {
        StepError::Named {
            kind: "Retryable",
            message: message.into(),
        }
    }

    /// The stable type name: `Retryable` for anything worth retrying (the one decision, made by
    /// [`ferry_engine::Error::is_retryable`] for Redis and [`StepError::from_aws`] for AWS).
    pub fn error_type(&self) -> &'static str {
        match self {
            StepError::Engine(e) if e.is_retryable() => "Retryable",
            StepError::Engine(e) => e.kind_name(),
            StepError::Named { kind, .. } => kind,
        }
    }

    /// Classifies an AWS SDK error of `operation`: throttling, timeouts, network trouble and
    /// busy resources are `Retryable`; missing resources named by the input are `InvalidInput`;
    /// denied permissions are `AccessDenied`; the rest `AwsError`.
    pub fn from_aws<E, R>(operation: &str, err: SdkError<E, R>) -> StepError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        let (kind, detail) = match &err {
            SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => {
                ("Retryable", "no answer from AWS".to_string())
            }
            SdkError::ResponseError(_) => ("Retryable", "unreadable answer from AWS".to_string()),
            SdkError::ServiceError(service) => {
                let e = service.err();
                let code = e.code().unwrap_or("Unknown");
                let kind = match code {
                    c if c.contains("Throttl") || c == "RequestLimitExceeded" => "Retryable",
                    c if c.starts_with("Invalid") && c.ends_with("State") => "Retryable",
                    c if c.starts_with("Invalid") && c.ends_with("StateFault") => "Retryable",
                    "ServiceUnavailable" | "InternalFailure" | "InternalServiceError" => {
                        "Retryable"
                    }
                    c if c.contains("NotFound") || c.contains("DoesNotExist") => "InvalidInput",
                    // CloudFormation's answer for a stack that is not there.
                    "ValidationError"
                        if e.message().is_some_and(|m| m.contains("does not exist")) =>
                    {
                        "InvalidInput"
                    }
                    c if c.contains("AccessDenied") || c.contains("Unauthorized") => "AccessDenied",
                    _ => "AwsError",
                };
                (kind, format!("{code}: {}", e.message().unwrap_or("")))
            }
            other => ("AwsError", display_error(other)),
        };
        StepError::Named {
            kind,
            message: format!("{operation}: {detail}"),
        }
    }

    /// Whether the state machine should run the step again.
    pub fn is_retryable(&self) -> bool {
        self.error_type() == "Retryable"
    }
}

fn display_error(e: &impl Display) -> String {
    e.to_string()
}

impl From<StepError> for Diagnostic {
    fn from(e: StepError) -> Diagnostic {
        Diagnostic {
            error_type: e.error_type().to_string(),
            error_message: e.to_string(),
        }
    }
}
