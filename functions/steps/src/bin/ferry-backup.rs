//! The `backup` step as a Lambda (handler: `ferry_steps::lambda::steps::backup`).

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    ferry_steps::lambda::steps::backup().await
}
