//! The `notifications-status` step as a Lambda (handler: `ferry_steps::lambda::steps::notifications_status`).

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    ferry_steps::lambda::steps::notifications_status().await
}
