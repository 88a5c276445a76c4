//! The `cleanup` step as a Lambda (handler: `ferry_steps::lambda::steps::cleanup`).

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    ferry_steps::lambda::steps::cleanup().await
}
