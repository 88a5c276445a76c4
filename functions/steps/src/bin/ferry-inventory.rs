//! The `inventory` step as a Lambda (see `ferry_steps::handlers::inventory`).

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    ferry_steps::lambda::run(ferry_steps::handlers::inventory).await
}
