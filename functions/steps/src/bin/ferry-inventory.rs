//! The `inventory` step as a Lambda (handler: `ferry_steps::lambda::steps::inventory`).

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    ferry_steps::lambda::steps::inventory().await
}
