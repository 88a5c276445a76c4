//! The `backup-status` step as a Lambda (handler: `ferry_steps::lambda::steps::backup_status`).

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    ferry_steps::lambda::steps::backup_status().await
}
