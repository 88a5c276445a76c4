//! The `plan` step as a Lambda (handler: `ferry_steps::lambda::steps::plan`).

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    ferry_steps::lambda::steps::plan().await
}
