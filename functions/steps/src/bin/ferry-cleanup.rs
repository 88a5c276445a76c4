//! The `cleanup` step as a Lambda (see `ferry_steps::elasticache::cleanup`).

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    ferry_steps::lambda::run(ferry_steps::elasticache::cleanup).await
}
