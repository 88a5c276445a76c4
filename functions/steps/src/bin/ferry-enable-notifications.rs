//! The `enable-notifications` step as a Lambda (handler: `ferry_steps::lambda::steps::enable_notifications`).

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    ferry_steps::lambda::steps::enable_notifications().await
}
