//! The small commands: `ferry inventory`, `ferry seed` and `ferry load`.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::seed::{self, SeedSpec};
use ferry_engine::prepare::Purpose;
use ferry_engine::{Error, Role};

use crate::args::{ConnectArgs, LoadArgs, SeedArgs};
use crate::connect::{endpoint, migration};
use crate::progress::Progress;
use crate::report::exit_code_of;
use crate::EXIT_OK;
use ferry_engine::prepare;

/// Ends a small command: `on_ok` prints its result; an error is one line on stderr. Returns the
/// exit code.
fn finish<T>(result: Result<T, Error>, on_ok: impl FnOnce(T)) -> i32 {
    match result {
        Ok(value) => {
            on_ok(value);
            EXIT_OK
        }
        Err(e) => {
            eprintln!("error [{}]: {e}", e.kind_name());
            exit_code_of(&e)
        }
    }
}

/// `ferry inventory`: describe both sides and run the pairing checks, writing nothing.
pub async fn inventory(c: ConnectArgs) -> i32 {
    let result = async {
        let m = migration(&c).await?;
        prepare::inventory(&m, Purpose::Compare).await
    }
    .await;
    finish(result, |inv| {
        println!(
            "{}",
            serde_json::to_string_pretty(&inv).expect("inventory serializes")
        );
    })
}

/// `ferry load`: a steady write load, reported as JSON.
pub async fn load(a: LoadArgs) -> i32 {
    let result = async {
        let target = endpoint(Role::Target, &a.target, None, false, None)?;
        seed::load(&target, a.rate, a.seconds, a.keys, a.connections).await
    }
    .await;
    finish(result, |r| {
        println!("{}", serde_json::to_string(&r).expect("load report"));
    })
}

/// `ferry seed`: write the sample dataset.
pub async fn seed(a: SeedArgs) -> i32 {
    let result = async {
        let target = endpoint(Role::Target, &a.target, a.target_ca.as_deref(), false, None)?;
        let spec = SeedSpec {
            keys: a.keys,
            ttl_percent: a.ttl_percent,
            streams: a.streams,
            big_hashes: a.big_hashes,
            big_hash_fields: a.big_hash_fields,
            db: target.db,
            seed: a.seed,
        };
        let total = spec.keys + spec.streams + spec.big_hashes;
        let written = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let shown = written.clone();
        let progress = Progress::start(
            "seed",
            total,
            Arc::new(move || shown.load(Ordering::Relaxed)),
        );
        let n = seed::seed(&target, &spec, |n| written.store(n, Ordering::Relaxed)).await?;
        progress.finish(n);
        Ok::<u64, Error>(n)
    }
    .await;
    finish(result, |n| {
        println!("seeded {n} keys");
    })
}
