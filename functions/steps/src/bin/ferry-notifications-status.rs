//! The `notifications-status` step as a Lambda (see `ferry_steps::elasticache::notifications_status`).

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    ferry_steps::lambda::run(ferry_steps::elasticache::notifications_status).await
}
