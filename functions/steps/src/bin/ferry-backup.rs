//! The `backup` step as a Lambda (see `ferry_steps::elasticache::backup`).

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    ferry_steps::lambda::run(ferry_steps::elasticache::backup).await
}
