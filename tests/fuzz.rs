//! The fuzz targets in `fuzz/` (cargo fuzz, libFuzzer, nightly) run briefly: each starts from its
//! small committed corpus, and any crash, panic or failed property fails this test with
//! libFuzzer's report (the crashing input is saved under `fuzz/artifacts/`).

use std::process::Command;

const TARGETS: [&str; 5] = [
    "url",
    "keyspace_channel",
    "dump_trailer",
    "resp",
    "resp_stream",
];
/// Seconds of fuzzing per target in the suite; longer runs by hand.
const SECONDS: &str = "10";

fn fuzz_dir() -> String {
    format!("{}/fuzz", env!("CARGO_MANIFEST_DIR"))
}

/// `+<channel>` of the nightly `fuzz/rust-toolchain.toml` pins (named explicitly: under `cargo
/// test`, rustup's `RUSTUP_TOOLCHAIN` would override the file).
fn nightly() -> String {
    let file = std::fs::read_to_string(format!("{}/rust-toolchain.toml", fuzz_dir())).unwrap();
    let channel = file
        .lines()
        .find_map(|l| l.strip_prefix("channel = "))
        .expect("a channel in fuzz/rust-toolchain.toml");
    format!("+{}", channel.trim_matches('"'))
}

fn cargo_fuzz(args: &[&str]) -> std::process::Output {
    Command::new("cargo")
        .arg(nightly())
        .arg("fuzz")
        .args(args)
        .current_dir(fuzz_dir())
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .expect("cargo")
}

#[test]
fn every_fuzz_target_survives_a_short_run() {
    let build = cargo_fuzz(&["build"]);
    assert!(
        build.status.success(),
        "cargo {} fuzz build failed (run scripts/setup.sh: it installs the pinned nightly toolchain and cargo-fuzz):\n{}",
        nightly(),
        String::from_utf8_lossy(&build.stderr)
    );
    for target in TARGETS {
        // New inputs go to a scratch corpus; the committed one stays small.
        let scratch = tempfile::tempdir().unwrap();
        let seeds = format!("{}/corpus/{target}", fuzz_dir());
        let time = format!("-max_total_time={SECONDS}");
        let out = cargo_fuzz(&[
            "run",
            target,
            scratch.path().to_str().unwrap(),
            &seeds,
            "--",
            &time,
            "-rss_limit_mb=1024",
        ]);
        let log = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "fuzz target {target} failed:\n{log}");
        assert!(log.contains("Done "), "{target} did not run: {log}");
    }
}
