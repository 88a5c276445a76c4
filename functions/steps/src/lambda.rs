//! The Lambda wrapper every step binary uses: JSON logs, SDK clients built once, the input
//! parsed into the step's type (a bad input is `InvalidInput`), the deadline passed on.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lambda_runtime::{service_fn, LambdaEvent};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::aws::{Aws, Ctx};
use crate::error::StepError;

/// Parses a step's input; serde's message is kept only up to the point where it would quote
/// a value (which may be a secret).
pub fn parse<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, StepError> {
    serde_json::from_value(value).map_err(|e| {
        let text = e.to_string();
        let safe = if text.starts_with("unknown field") || text.starts_with("missing field") {
            text.split(", expected").next().unwrap_or(&text).to_string()
        } else {
            text.split(':').next().unwrap_or("malformed").to_string()
        };
        StepError::invalid(format!("step input: {safe}"))
    })
}

/// The Lambda's deadline (milliseconds since the epoch) as an `Instant`.
fn deadline_of(epoch_ms: u64) -> Instant {
    Instant::now() + Duration::from_millis(epoch_ms.saturating_sub(crate::contracts::epoch_ms()))
}

/// Runs `handler` as this Lambda's function until the runtime stops it.
pub async fn run<In, Out, F, Fut>(handler: F) -> Result<(), lambda_runtime::Error>
where
    In: DeserializeOwned,
    Out: Serialize,
    F: Fn(Ctx, In) -> Fut,
    Fut: Future<Output = Result<Out, StepError>>,
{
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_current_span(false)
        .without_time()
        .init();
    let aws = Arc::new(Aws::from_env().await);
    let handler = &handler;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| {
        let ctx = Ctx {
            aws: aws.clone(),
            deadline: Some(deadline_of(event.context.deadline)),
        };
        async move {
            let input = parse::<In>(event.payload)?;
            // Boxed: the engine's futures are deep, and the runtime's service nests them further.
            let out = Box::pin(handler(ctx, input)).await;
            if let Err(e) = &out {
                tracing::error!(error_type = e.error_type(), error = %e, "step failed");
            }
            Ok::<_, StepError>(serde_json::to_value(out?).expect("outputs serialize"))
        }
    }))
    .await
}

/// One entry point per step, each a non-generic function: the generic runner is instantiated
/// here, once, in the library, so each step binary compiles in a moment.
pub mod steps {
    use crate::{elasticache, handlers, notifications};

    type Outcome = Result<(), lambda_runtime::Error>;

    /// The Inventory Lambda.
    pub async fn inventory() -> Outcome {
        super::run(handlers::inventory).await
    }
    /// The Plan Lambda.
    pub async fn plan() -> Outcome {
        super::run(handlers::plan).await
    }
    /// The CopyShard Lambda.
    pub async fn copy_shard() -> Outcome {
        super::run(handlers::copy_shard).await
    }
    /// The PlanVerify Lambda.
    pub async fn plan_verify() -> Outcome {
        super::run(handlers::plan_verify).await
    }
    /// The VerifyShard Lambda.
    pub async fn verify_shard() -> Outcome {
        super::run(handlers::verify_shard).await
    }
    /// The Backup Lambda.
    pub async fn backup() -> Outcome {
        super::run(elasticache::backup).await
    }
    /// The BackupStatus Lambda.
    pub async fn backup_status() -> Outcome {
        super::run(elasticache::backup_status).await
    }
    /// The EnableNotifications Lambda.
    pub async fn enable_notifications() -> Outcome {
        super::run(notifications::enable_notifications).await
    }
    /// The NotificationsStatus Lambda.
    pub async fn notifications_status() -> Outcome {
        super::run(notifications::notifications_status).await
    }
    /// The Cleanup Lambda: the Clean up states, and executions that ended outside them.
    pub async fn cleanup() -> Outcome {
        super::run(crate::after_end::cleanup_request).await
    }
}
