//! `ferry replicate`, `ferry inventory` and `ferry seed`: the engine's steps run in sequence on
//! this machine, with progress, a summary and a JSON report.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use ferry_engine::cluster;
use ferry_engine::copy::{CopyContext, CopyOptions, Method};
use ferry_engine::lease::Lease;
use ferry_engine::migrate::{self, Migration, Purpose, StopWhen};
use ferry_engine::scope::Scope;
use ferry_engine::scope::LEASE_KEY;
use ferry_engine::seed::{self, SeedSpec};
use ferry_engine::tail::{self, Tail, TailOptions};
use ferry_engine::verify::{Level, VerifyOptions};
use ferry_engine::{Endpoint, Error, Role, Secret, TlsSettings};

use crate::args::{
    ConnectArgs, CopyType, LiveArgs, LoadArgs, Mode, ReplicateArgs, SeedArgs, TailArgs, VerifyLevel,
};
use crate::progress::Progress;
use crate::report::{live_line, CopySummary, ErrorSummary, Report, VerifySummary};
use crate::{
    EXIT_BAD_INPUT, EXIT_DIFFERENT, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_NOT_DRAINED, EXIT_OK,
};

/// How long without an event counts as quiet when a live run or `ferry tail` stops.
const DRAIN_QUIET: std::time::Duration = std::time::Duration::from_millis(300);

/// Builds an endpoint from a URL, the environment's credentials and TLS options (a CA file,
/// `insecure`, a client certificate and key for mutual TLS).
fn endpoint(
    role: Role,
    url: &str,
    ca: Option<&std::path::Path>,
    insecure: bool,
    identity: Option<(&std::path::Path, &std::path::Path)>,
) -> Result<Endpoint, Error> {
    let prefix = match role {
        Role::Source => "FERRY_SOURCE",
        Role::Target => "FERRY_TARGET",
    };
    let user = std::env::var(format!("{prefix}_USER"))
        .ok()
        .filter(|s| !s.is_empty());
    let password = std::env::var(format!("{prefix}_PASSWORD"))
        .ok()
        .filter(|s| !s.is_empty())
        .map(Secret::new);
    let mut ep = Endpoint::parse(role, url)?.with_credentials(user, password);
    if ca.is_some() || insecure || identity.is_some() {
        let tls = ep.tls.get_or_insert_with(TlsSettings::default);
        tls.ca_file = ca.map(|p| p.to_path_buf());
        tls.insecure = insecure;
        if let Some((cert, key)) = identity {
            let read = |path: &std::path::Path, what: &str| {
                std::fs::read_to_string(path).map_err(|e| {
                    Error::InvalidInput(format!(
                        "cannot read --{role}-{what} {}: {e}",
                        path.display()
                    ))
                })
            };
            tls.client_cert_pem = Some(read(cert, "cert")?);
            tls.client_key_pem = Some(Secret::new(read(key, "key")?));
        }
        if url.trim_start().starts_with("redis://") {
            return Err(Error::InvalidInput(format!(
                "a CA file, client certificate or --{role}-insecure was given but the {role} URL is redis:// (plain); use rediss://"
            )));
        }
    }
    if insecure {
        tracing::warn!(
            "TLS certificate verification is OFF for the {role}: the connection can be intercepted"
        );
        eprintln!(
            "warning: TLS certificate verification is OFF for the {role} (--{role}-insecure)"
        );
    }
    Ok(ep)
}

fn migration(c: &ConnectArgs) -> Result<Migration, Error> {
    let source = endpoint(
        Role::Source,
        &c.source,
        c.source_ca.as_deref(),
        c.source_insecure,
        c.source_cert.as_deref().zip(c.source_key.as_deref()),
    )?;
    let target = endpoint(
        Role::Target,
        &c.target,
        c.target_ca.as_deref(),
        c.target_insecure,
        c.target_cert.as_deref().zip(c.target_key.as_deref()),
    )?;
    ferry_engine::conn::set_reply_timeout(std::time::Duration::from_secs_f64(c.reply_timeout));
    let mut m = Migration::new(source, target);
    m.scope.db_map = Scope::parse_db_map(&c.db_map)?;
    m.scope
        .apply_url_dbs(m.source.db_in_url, m.target.db_in_url)?;
    Ok(m)
}

/// Takes the target's lease for a run that writes (see `ferry_engine::lease`), runs `work`,
/// and gives the lease back, whatever the outcome. A lease lost meanwhile fails the run: another
/// run may have written to the target.
async fn holding_lease<T>(
    m: &mut Migration,
    what: &str,
    work: impl AsyncFnOnce(&Migration) -> Result<T, Error>,
) -> Result<T, Error> {
    let lease = Lease::acquire(&m.target, what).await?;
    m.holds_lease = true;
    let result = work(m).await;
    let lost = lease.lost();
    if let Err(e) = lease.release().await {
        eprintln!(
            "warning: could not delete the target lease {LEASE_KEY} (it expires by itself): {e}"
        );
    }
    match result {
        Ok(_) if lost => Err(Error::TargetInUse(format!(
            "the target lease {LEASE_KEY} was taken over during the run: another run may have written to the target; compare again"
        ))),
        other => other,
    }
}

/// Exit code for an engine error.
fn exit_code_of(e: &Error) -> i32 {
    if e.is_bad_input() {
        EXIT_BAD_INPUT
    } else {
        EXIT_FAILED
    }
}

/// What a forced exit must still put back on the source: the notification flags live mode
/// changed (set while they are changed).
static RESTORE_ON_EXIT: std::sync::Mutex<Option<(Endpoint, String)>> = std::sync::Mutex::new(None);

/// Stops scanning on SIGINT / SIGTERM; in-flight batches finish and checkpoints are reported.
/// A second signal of either kind forces the exit, after putting back what ferry changed on
/// the source.
pub fn stop_on_signal() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let set = flag.clone();
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        eprintln!("stopping: finishing batches in flight (send again to force)");
        set.store(true, Ordering::Relaxed);
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        eprintln!("stopping now (forced)");
        let restore = RESTORE_ON_EXIT.lock().expect("restore").take();
        if let Some((source, flags)) = restore {
            let put_back = tail::restore_notifications(&source, &flags);
            match tokio::time::timeout(std::time::Duration::from_secs(5), put_back).await {
                Ok(Ok(())) => eprintln!("restored notify-keyspace-events to '{flags}'"),
                _ => eprintln!("warning: could not restore notify-keyspace-events to '{flags}'"),
            }
        }
        std::process::exit(EXIT_INTERRUPTED);
    });
    flag
}

/// `ferry replicate`.
pub async fn run(a: ReplicateArgs) -> i32 {
    let mut report = Report {
        mode: format!("{:?}", a.mode).to_lowercase(),
        ..Report::default()
    };
    let result = replicate(&a, &mut report).await;
    report.exit_code = match result {
        Ok(code) => code,
        Err(e) => {
            let code = exit_code_of(&e);
            report.error = Some(ErrorSummary::from(&e));
            report.outcome = "failed".into();
            code
        }
    };
    emit(&report, a.json.as_deref())
}

fn emit(report: &Report, json: Option<&std::path::Path>) -> i32 {
    let text = serde_json::to_string_pretty(report).expect("report serializes");
    match json {
        Some(p) if p.as_os_str() == "-" => {
            eprint!("{}", report.summary());
            println!("{text}");
        }
        Some(p) => {
            print!("{}", report.summary());
            if let Err(e) = std::fs::write(p, text + "\n") {
                eprintln!("cannot write the JSON report to {}: {e}", p.display());
                return EXIT_FAILED;
            }
        }
        None => print!("{}", report.summary()),
    }
    std::io::stdout().flush().ok();
    report.exit_code
}

async fn replicate(a: &ReplicateArgs, report: &mut Report) -> Result<i32, Error> {
    let mut m = migration(&a.connect)?;
    if a.mode == Mode::Live {
        m.tail_workers = a.live.tail_workers.max(1);
    }
    check_replicate_args(a, &mut m, report)?;
    // Only runs that write hold the target's lease; a compare that repairs writes too.
    if a.mode == Mode::Compare && !a.repair {
        return replicate_leased(a, report, &m).await;
    }
    let what = format!("ferry replicate --mode {}", report.mode);
    holding_lease(&mut m, &what, async |m| {
        replicate_leased(a, report, m).await
    })
    .await
}

/// Checks the options and puts them into the migration.
fn check_replicate_args(
    a: &ReplicateArgs,
    m: &mut Migration,
    report: &mut Report,
) -> Result<(), Error> {
    if a.shards == 0 || a.workers == 0 || a.parallel == 0 || a.batch_keys == 0 {
        return Err(Error::InvalidInput(
            "--shards, --parallel, --workers and --batch-keys must be at least 1".into(),
        ));
    }
    if a.mode == Mode::Compare && a.verify == VerifyLevel::None {
        return Err(Error::InvalidInput(
            "--mode compare needs --verify quick or full".into(),
        ));
    }
    report.source = m.source.redacted_url();
    report.target = m.target.redacted_url();
    m.scope.pattern = a.key_pattern.clone();
    m.scope.key_type = a.key_type.clone();
    m.copy = CopyOptions {
        method: match a.copy_type {
            CopyType::Auto => Method::Auto,
            CopyType::Dump => Method::Dump,
            CopyType::Struct => Method::Struct,
        },
        big_key_bytes: a.big_key_bytes,
        batch_keys: a.batch_keys,
        scan_count: a.scan_count.max(1),
        max_source_ops: a.max_ops_per_sec,
    };
    m.shards_per_db = a.shards;
    m.parallel = a.parallel;
    m.workers = a.workers;
    m.allow_nonempty_target = a.allow_nonempty_target;
    m.read_from_replicas = a.read_from_replicas;
    Ok(())
}

/// `ferry replicate` from inventory on, the lease held when the run writes.
async fn replicate_leased(
    a: &ReplicateArgs,
    report: &mut Report,
    m: &Migration,
) -> Result<i32, Error> {
    let purpose = if a.mode == Mode::Compare {
        Purpose::Compare
    } else {
        Purpose::Copy
    };
    let inv = migrate::inventory(m, purpose).await?;
    report.inventory = Some(inv.clone());
    let copy_ctx = Arc::new(CopyContext::new(
        m.copy.clone(),
        m.scope.clone(),
        &inv.source,
        &inv.target,
    ));
    let stop = stop_on_signal();

    // Live mode subscribes before the first shard is copied (design §4.1).
    let mut live = None;
    let mut original_flags = None;
    if a.mode == Mode::Live {
        original_flags = tail::ensure_notifications(&m.source, a.live.enable_notifications).await?;
        remember_restore(m, &original_flags);
        let dbs = migrate::source_dbs(&m.scope, &inv.source);
        let started = async {
            let t = Tail::start(m, copy_ctx.clone(), dbs, tail_options(&a.live), true).await?;
            if m.read_from_replicas {
                // A replica must hold every write made before the subscription, or a key
                // written just before it could be read stale, with no event left to correct it.
                cluster::wait_for_replicas(&m.source, std::time::Duration::from_secs(60)).await?;
            }
            Ok::<_, Error>(t)
        };
        match started.await {
            Ok(t) => live = Some(t),
            Err(e) => {
                restore_flags(m, &original_flags).await;
                return Err(e);
            }
        }
        eprintln!("live: subscribed to keyspace events; the canary key arrived");
    }
    let result = copy_and_verify(a, report, m, &inv, copy_ctx, stop, live).await;
    restore_flags(m, &original_flags).await;
    result
}

/// Records the notification flags to put back if ferry is forced to exit.
fn remember_restore(m: &Migration, original: &Option<String>) {
    *RESTORE_ON_EXIT.lock().expect("restore") =
        original.as_ref().map(|f| (m.source.clone(), f.clone()));
}

fn tail_options(l: &LiveArgs) -> TailOptions {
    TailOptions {
        workers: l.tail_workers.max(1),
        ..TailOptions::default()
    }
}

/// Puts back the notification flags live mode changed; a failure is reported, not fatal.
async fn restore_flags(m: &Migration, original: &Option<String>) {
    RESTORE_ON_EXIT.lock().expect("restore").take();
    if let Some(flags) = original {
        if let Err(e) = tail::restore_notifications(&m.source, flags).await {
            eprintln!("warning: could not restore notify-keyspace-events to '{flags}': {e}");
        }
    }
}

/// Follows live changes until a signal or `idle` seconds without an event, printing status.
async fn follow(t: &mut Tail, stop: &AtomicBool, idle: Option<f64>) -> Result<(), Error> {
    let started = Instant::now();
    let period = if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        2.0
    } else {
        5.0
    };
    let mut last_status = Instant::now();
    loop {
        if let Some(e) = t.failure() {
            return Err(e);
        }
        if stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        let quiet = t
            .dirty
            .quiet_for()
            .unwrap_or(started.elapsed())
            .min(started.elapsed());
        if idle.is_some_and(|secs| quiet.as_secs_f64() >= secs) {
            return Ok(());
        }
        if last_status.elapsed().as_secs_f64() >= period {
            let r = t.report();
            tracing::info!(
                events = r.events,
                events_per_sec = r.events_per_sec,
                keys_copied = r.keys_copied,
                keys_deleted = r.keys_deleted,
                queue_depth = r.queue_depth,
                lag_p50_ms = r.lag_p50_ms,
                lag_p99_ms = r.lag_p99_ms,
                replayed = r.replayed,
                gaps = r.gaps,
                "live tail"
            );
            eprintln!("live: {}", live_line(&r));
            last_status = Instant::now();
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The copy (snapshot and live modes), the live follow and drain, then verify and repair.
async fn copy_and_verify(
    a: &ReplicateArgs,
    report: &mut Report,
    m: &Migration,
    inv: &ferry_engine::inventory::Inventory,
    copy_ctx: Arc<CopyContext>,
    stop: Arc<AtomicBool>,
    mut live: Option<Tail>,
) -> Result<i32, Error> {
    if a.mode != Mode::Compare {
        let shards = migrate::plan_copy_shards(m, &inv.source);
        let planned = shards.len();
        let start = Instant::now();
        let counter = copy_ctx.clone();
        let progress = Progress::start(
            "copy",
            inv.source.total_keys(),
            Arc::new(move || counter.stats.copied.load(Ordering::Relaxed)),
        );
        let stopper = StopWhen {
            deadline: None,
            flag: Some(stop.clone()),
        };
        let result = migrate::copy_shards(m, copy_ctx.clone(), shards, stopper).await;
        let counts = copy_ctx.stats.counts();
        progress.finish(counts.copied);
        let seconds = start.elapsed().as_secs_f64();
        let mut summary = CopySummary {
            method: inv.copy_method.clone(),
            counts,
            seconds,
            keys_per_sec: counts.copied as f64 / seconds.max(1e-9),
            shards: planned,
            ..CopySummary::default()
        };
        let shards = match result {
            Ok(s) => s,
            Err(e) => {
                report.copy = Some(summary);
                return Err(e);
            }
        };
        summary.shards_done = shards.iter().filter(|s| s.done).count();
        summary.checkpoints = shards.into_iter().filter(|s| !s.done).collect();
        let interrupted = !summary.checkpoints.is_empty();
        report.copy = Some(summary);
        if interrupted {
            if let Some(t) = live.take() {
                report.live = t.stop().await.ok();
            }
            report.outcome = "interrupted".into();
            return Ok(EXIT_INTERRUPTED);
        }
        report.outcome = "copied".into();
    }

    if let Some(mut t) = live.take() {
        let replayed = t.barrier();
        let drain_timeout = std::time::Duration::from_secs_f64(a.live.drain_timeout);
        if !t.drain(std::time::Duration::ZERO, drain_timeout).await? {
            eprintln!("live: the barrier replay is still being copied (writers are busy)");
        }
        eprintln!(
            "live: target caught up ({replayed} keys touched during the snapshot replayed); following changes until Ctrl-C{}",
            a.live.idle_timeout.map(|s| format!(" or {s}s without events")).unwrap_or_default()
        );
        follow(&mut t, &stop, a.live.idle_timeout).await?;
        eprintln!("live: stopping: draining the tail");
        if !t.drain(DRAIN_QUIET, drain_timeout).await? {
            report.still_dirty = t.dirty_sample(20);
            report.live = Some(t.stop().await?);
            report.outcome = "not drained".into();
            eprintln!(
                "live: the source is still being written to: gave up draining after {}s (--drain-timeout); the target is behind",
                a.live.drain_timeout
            );
            return Ok(EXIT_NOT_DRAINED);
        }
        report.live = Some(t.stop().await?);
        // The first signal ended the follow; verify runs whole (a second signal forces the exit).
        stop.store(false, Ordering::Relaxed);
    }

    let level = match a.verify {
        VerifyLevel::None => return Ok(EXIT_OK),
        VerifyLevel::Quick => Level::Quick,
        VerifyLevel::Full => Level::Full,
    };
    let options = VerifyOptions {
        level,
        ttl_tolerance_ms: a.ttl_tolerance_ms,
        big_key_bytes: a.big_key_bytes,
        ..VerifyOptions::default()
    };
    // Fresh counts: keys and dbs may have come and gone since inventory (live mode).
    let start_inv = inv;
    let inv = ferry_engine::inventory::Inventory {
        source: migrate::server_info(&m.source).await?,
        target: migrate::server_info(&m.target).await?,
        ..inv.clone()
    };
    let known_dbs = migrate::source_dbs(&m.scope, &start_inv.source);
    let vctx = migrate::verify_context(m, &inv, &known_dbs, copy_ctx.limiter.clone(), options);
    let start = Instant::now();
    let checked = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let count = checked.clone();
    let progress = Progress::start(
        "verify",
        inv.source.total_keys(),
        Arc::new(move || count.load(Ordering::Relaxed)),
    );
    let on_scanned: Arc<dyn Fn(u64) + Send + Sync> = Arc::new(move |n| {
        checked.fetch_add(n, Ordering::Relaxed);
    });
    let stopper = StopWhen {
        deadline: None,
        flag: Some(stop.clone()),
    };
    let (verify_report, complete) =
        migrate::verify_all(m, &inv, vctx.clone(), on_scanned, stopper).await?;
    progress.finish(verify_report.total.ok + verify_report.total.differences());
    let differences = verify_report.total.differences();
    if !complete {
        report.verify = Some(VerifySummary {
            level: format!("{level:?}").to_lowercase(),
            seconds: start.elapsed().as_secs_f64(),
            report: verify_report,
            complete,
        });
        report.outcome = "interrupted".into();
        return Ok(EXIT_INTERRUPTED);
    }
    if a.repair && differences > 0 {
        let repaired =
            migrate::repair(m, copy_ctx.clone(), vctx.clone(), &verify_report.diffs).await?;
        let fixed = repaired.still_different == 0 && !verify_report.diffs_truncated;
        report.repair = Some(repaired);
        report.verify = Some(VerifySummary {
            level: format!("{level:?}").to_lowercase(),
            seconds: start.elapsed().as_secs_f64(),
            report: verify_report,
            complete,
        });
        report.outcome = if fixed { "repaired" } else { "different" }.into();
        return Ok(if fixed { EXIT_OK } else { EXIT_DIFFERENT });
    }
    report.verify = Some(VerifySummary {
        level: format!("{level:?}").to_lowercase(),
        seconds: start.elapsed().as_secs_f64(),
        report: verify_report,
        complete,
    });
    if differences > 0 {
        report.outcome = "different".into();
        Ok(EXIT_DIFFERENT)
    } else {
        report.outcome = "verified".into();
        Ok(EXIT_OK)
    }
}

/// `ferry tail`: follow the source alone (no snapshot), drain on SIGINT/SIGTERM or idle.
pub async fn tail(a: TailArgs) -> i32 {
    if a.from_state_machine {
        #[cfg(feature = "aws")]
        return crate::control::tail_for_state_machine(stop_on_signal()).await;
        #[cfg(not(feature = "aws"))]
        {
            eprintln!("error: this ferry was built without AWS support (cargo build -p ferry-cli --features aws)");
            return EXIT_BAD_INPUT;
        }
    }
    let Some(connect) = &a.connect else {
        eprintln!("error: ferry tail needs --source and --target (or --from-state-machine)");
        return EXIT_BAD_INPUT;
    };
    let mut report = Report {
        mode: "tail".into(),
        ..Report::default()
    };
    let result = async {
        let mut m = migration(connect)?;
        m.tail_workers = a.live.tail_workers.max(1);
        report.source = m.source.redacted_url();
        report.target = m.target.redacted_url();
        holding_lease(&mut m, "ferry tail", async |m| {
            tail_leased(&a, m, &mut report).await
        })
        .await
    }
    .await;
    report.exit_code = match result {
        Ok(code) => code,
        Err(e) => {
            report.error = Some(ErrorSummary::from(&e));
            report.outcome = "failed".into();
            exit_code_of(&e)
        }
    };
    emit(&report, a.json.as_deref())
}

/// `ferry tail` with the target's lease held: follow until a signal or idle, then drain within
/// the drain timeout.
async fn tail_leased(a: &TailArgs, m: &Migration, report: &mut Report) -> Result<i32, Error> {
    let inv = migrate::inventory(m, Purpose::Compare).await?;
    let ctx = Arc::new(CopyContext::new(
        m.copy.clone(),
        m.scope.clone(),
        &inv.source,
        &inv.target,
    ));
    let stop = stop_on_signal();
    let original = tail::ensure_notifications(&m.source, a.live.enable_notifications).await?;
    remember_restore(m, &original);
    let outcome = async {
        let dbs = migrate::source_dbs(&m.scope, &inv.source);
        let mut t = Tail::start(m, ctx, dbs, tail_options(&a.live), false).await?;
        eprintln!("tail: subscribed to keyspace events; the canary key arrived; following");
        follow(&mut t, &stop, a.live.idle_timeout).await?;
        let timeout = std::time::Duration::from_secs_f64(a.live.drain_timeout);
        let drained = t.drain(DRAIN_QUIET, timeout).await?;
        if !drained {
            report.still_dirty = t.dirty_sample(20);
        }
        Ok::<_, Error>((drained, t.stop().await?))
    }
    .await;
    restore_flags(m, &original).await;
    let (drained, live) = outcome?;
    report.live = Some(live);
    Ok(if drained {
        report.outcome = "drained".into();
        EXIT_OK
    } else {
        report.outcome = "not drained".into();
        EXIT_NOT_DRAINED
    })
}

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
        let m = migration(&c)?;
        migrate::inventory(&m, Purpose::Compare).await
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
