//! The `enable-notifications` step as a Lambda (see `ferry_steps::elasticache::enable_notifications`).

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    ferry_steps::lambda::run(ferry_steps::elasticache::enable_notifications).await
}
