//! ferry's AWS steps (design §1, §6): one Lambda per migration step, each a thin adapter that
//! turns its JSON input into engine calls (Redis, in `ferry-engine`) or ElastiCache calls and
//! its result into JSON. Credentials come from Secrets Manager by ARN only; errors carry
//! stable type names the state machine's Retry and Catch match.

pub mod after_end;
pub mod aws;
pub mod contracts;
pub mod control;
pub mod cutover;
pub mod elasticache;
pub mod error;
pub mod executions;
pub mod handlers;
pub mod iam;
pub mod lambda;
pub mod metrics;
pub mod notifications;
pub mod parameter_groups;
pub mod plans;
pub mod tail_task;

pub use aws::{Aws, Ctx};
pub use error::StepError;
