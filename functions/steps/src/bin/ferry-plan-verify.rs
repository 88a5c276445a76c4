//! The `plan-verify` step as a Lambda (see `ferry_steps::handlers::plan_verify`).

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    ferry_steps::lambda::run(ferry_steps::handlers::plan_verify).await
}
