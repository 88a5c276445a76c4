//! The `plan-verify` step as a Lambda (handler: `ferry_steps::lambda::steps::plan_verify`).

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    ferry_steps::lambda::steps::plan_verify().await
}
