//! The `verify-shard` step as a Lambda (handler: `ferry_steps::lambda::steps::verify_shard`).

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    ferry_steps::lambda::steps::verify_shard().await
}
