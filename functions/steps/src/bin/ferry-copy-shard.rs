//! The `copy-shard` step as a Lambda (handler: `ferry_steps::lambda::steps::copy_shard`).

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    ferry_steps::lambda::steps::copy_shard().await
}
