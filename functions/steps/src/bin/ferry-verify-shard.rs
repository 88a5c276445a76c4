//! The `verify-shard` step as a Lambda (see `ferry_steps::handlers::verify_shard`).

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    ferry_steps::lambda::run(ferry_steps::handlers::verify_shard).await
}
