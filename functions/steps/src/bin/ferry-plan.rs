//! The `plan` step as a Lambda (see `ferry_steps::handlers::plan`).

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    ferry_steps::lambda::run(ferry_steps::handlers::plan).await
}
