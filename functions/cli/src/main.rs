//! `ferry`: move a live Redis keyspace to another Redis, locally between two URLs.
//!
//! Exit codes: 0 copied and verified; 1 any other failure; 2 bad usage or input (nothing was
//! written); 3 verify found differences; 4 a live stop gave up draining (writers still
//! running); 130 interrupted.

mod args;
mod connect;
#[cfg(feature = "aws")]
mod control;
mod cutover;
mod live;
mod progress;
mod replicate;
mod report;
mod seed;
mod signals;
mod tools;

use clap::Parser;

use args::{Cli, Command};

/// Exit code for success.
pub const EXIT_OK: i32 = 0;
/// Exit code for a failure during the run.
pub const EXIT_FAILED: i32 = 1;
/// Exit code for bad usage or input: nothing was written.
pub const EXIT_BAD_INPUT: i32 = 2;
/// Exit code for a verify that found differences.
pub const EXIT_DIFFERENT: i32 = 3;
/// Exit code when a live stop could not drain within --drain-timeout: the target is behind.
pub const EXIT_NOT_DRAINED: i32 = 4;
/// Exit code after SIGINT / SIGTERM.
pub const EXIT_INTERRUPTED: i32 = 130;

fn main() {
    let cli = Cli::parse();
    init_logging(cli.verbose, cli.log_json);
    // ferry spends little CPU of its own: one thread keeps pipelines full and leaves the cores
    // to the servers when they share a machine. `--threads N` for more.
    let runtime = match cli.threads.unwrap_or(1) {
        0 | 1 => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        n => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build(),
    }
    .expect("tokio runtime");
    let code = runtime.block_on(async {
        match cli.command {
            Command::Replicate(a) => replicate::run(a).await,
            Command::Inventory(a) => tools::inventory(a).await,
            Command::Seed(a) => tools::seed(a).await,
            Command::Tail(a) => live::tail(a).await,
            Command::Load(a) => tools::load(a).await,
            #[cfg(feature = "aws")]
            Command::Start(a) => control::start(a).await,
            #[cfg(feature = "aws")]
            Command::Status(a) => control::status(a).await,
            #[cfg(feature = "aws")]
            Command::Cutover(a) => control::cutover(a).await,
            #[cfg(feature = "aws")]
            Command::Abort(a) => control::abort(a).await,
        }
    });
    std::process::exit(code);
}

fn init_logging(verbose: u8, json: bool) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("FERRY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}
