//! The `backup-status` step as a Lambda (see `ferry_steps::elasticache::backup_status`).

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    ferry_steps::lambda::run(ferry_steps::elasticache::backup_status).await
}
