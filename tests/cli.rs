//! The `ferry` command end to end: exit codes, JSON report, bad input refused with nothing
//! written, TLS and ACL users, a target running out of memory, compare and repair. Every run
//! with credentials uses a marker password that must never appear in any output.

mod common;

use common::{ferry, text};
use rig::{Config, Server};

const MARKER: &str = "Mark3rS3cretPw";

fn json_report(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("report written"))
        .expect("report is JSON")
}

fn seed(server: &Server, keys: &str) {
    let out = ferry(
        &[
            "seed",
            "--target",
            &server.plain_url(0),
            "--keys",
            keys,
            "--streams",
            "3",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn snapshot_copies_verifies_and_writes_a_json_report() {
    let (source, target) = (Server::start(), Server::start());
    seed(&source, "3000");
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let out = common::replicate(
        &source.url(),
        &target.url(),
        &["--json", report.to_str().unwrap()],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("outcome: verified"), "{}", text(&out));
    let r = json_report(&report);
    assert_eq!(r["outcome"], "verified");
    assert_eq!(r["exit_code"], 0);
    assert!(r["copy"]["counts"]["copied"].as_u64().unwrap() >= 3003);
    assert_eq!(r["verify"]["total"]["missing"], 0);
    assert!(r["verify"]["total"]["ok"].as_u64().unwrap() >= 3003);
    assert_eq!(target.cmd(&["DBSIZE"]), ":3003");
}

#[test]
fn tls_and_acl_users_on_both_sides_with_verification_on() {
    let tls_acl = || {
        Server::with(Config {
            tls: true,
            acl_user: Some(("migrator".into(), MARKER.into())),
            ..Config::default()
        })
    };
    let (source, target) = (tls_acl(), tls_acl());
    seed(&source, "500");
    let url = |s: &Server| s.url().replace(&format!(":{MARKER}@"), "@");
    let env = [
        ("FERRY_SOURCE_PASSWORD", MARKER),
        ("FERRY_TARGET_PASSWORD", MARKER),
    ];
    let (sca, tca) = (
        source.ca_file().unwrap().to_str().unwrap(),
        target.ca_file().unwrap().to_str().unwrap(),
    );

    // Verification is on by default: an unknown CA is refused, nothing written.
    let out = common::replicate(&url(&source), &url(&target), &[], &env);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("TLS failure"), "{}", text(&out));

    let out = common::replicate(
        &url(&source),
        &url(&target),
        // Debug logs too: nothing at any log level may show the password.
        &["--source-ca", sca, "--target-ca", tca, "--json", "-", "-vv"],
        &env,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("DEBUG"), "debug logs were captured");
    assert!(
        !text(&out).contains(MARKER),
        "password leaked: {}",
        text(&out)
    );
    assert_eq!(target.cmd(&["DBSIZE"]), ":503");

    // --*-insecure works, and warns.
    let fresh = tls_acl();
    let out = common::replicate(
        &url(&source),
        &url(&fresh),
        &["--source-ca", sca, "--target-insecure"],
        &env,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("verification is OFF"), "{}", text(&out));
}

#[test]
fn tls_name_mismatch_is_refused() {
    let source = Server::with(Config {
        tls: true,
        tls_names: vec!["cache.example.invalid".into()],
        ..Config::default()
    });
    let target = Server::start();
    let ca = source.ca_file().unwrap().to_str().unwrap().to_string();
    let out = common::replicate(&source.url(), &target.url(), &["--source-ca", &ca], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("TLS failure") && text(&out).contains("not valid for name"),
        "{}",
        text(&out)
    );
}

#[test]
fn bad_input_gets_a_specific_message_exit_2_and_no_writes() {
    let source = Server::with(Config {
        password: Some(MARKER.into()),
        ..Config::default()
    });
    seed(&source, "100");
    let target = Server::start();
    let dead = format!("redis://127.0.0.1:{}", rig::free_port());
    let wrong = source.url().replace(MARKER, "wrong-password");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec![dead.clone(), target.url()], "cannot reach source"),
        (vec![source.url(), dead.clone()], "cannot reach target"),
        (vec![wrong, target.url()], "authentication failed"),
        (
            vec![
                source.url().replace(&format!(":{MARKER}@"), ""),
                target.url(),
            ],
            "NOAUTH",
        ),
        (
            vec!["http://127.0.0.1:1".into(), target.url()],
            "scheme 'http'",
        ),
        (
            vec![format!("redis://127.0.0.1:{}/x", source.port), target.url()],
            "not a database number",
        ),
        (vec![source.url(), source.url()], "same server"),
        (
            vec![format!("rediss://127.0.0.1:{}", source.port), target.url()],
            "TLS failure",
        ),
    ];
    for (urls, expected) in cases {
        let out = common::replicate(&urls[0], &urls[1], &[], &[]);
        let t = text(&out);
        assert_eq!(out.status.code(), Some(2), "{urls:?}: {t}");
        assert!(
            t.contains(expected),
            "{urls:?}: expected '{expected}' in {t}"
        );
        assert!(!t.contains(MARKER), "password leaked: {t}");
    }
    assert_eq!(target.cmd(&["DBSIZE"]), ":0");

    // Options.
    for (args, expected) in [
        (vec!["--db-map", "nonsense"], "--db-map"),
        (vec!["--mode", "sideways"], "invalid value"),
        (vec!["--shards", "0"], "at least 1"),
    ] {
        let mut all = vec!["replicate", "--source", &dead, "--target", &dead];
        all.extend(args);
        let out = ferry(&all, &[]);
        assert_eq!(out.status.code(), Some(2), "{all:?}: {}", text(&out));
        assert!(text(&out).contains(expected), "{all:?}: {}", text(&out));
    }
}

#[test]
fn a_non_empty_target_is_refused_unless_allowed() {
    let (source, target) = (Server::start(), Server::start());
    seed(&source, "200");
    target.cmd(&["SET", "precious", "data"]);
    let out = common::replicate(&source.url(), &target.url(), &[], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("TargetNotEmpty") && text(&out).contains("--allow-nonempty-target")
    );
    assert_eq!(target.cmd(&["DBSIZE"]), ":1", "nothing written");
    let out = common::replicate(
        &source.url(),
        &target.url(),
        &["--allow-nonempty-target", "--verify", "quick"],
        &[],
    );
    // The extra key is reported by the reverse pass: exit 3, and it is still there.
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(text(&out).contains("extra 1"), "{}", text(&out));
    assert_eq!(target.cmd(&["GET", "precious"]), "data");
}

#[test]
fn acl_user_without_dump_permission_stops_with_auth_failed_and_writes_nothing() {
    let source = Server::with(Config {
        acl_user: Some(("reader".into(), MARKER.into())),
        ..Config::default()
    });
    seed(&source, "100");
    source.cmd(&["ACL", "SETUSER", "reader", "-dump"]);
    let target = Server::start();
    let out = common::replicate(&source.url(), &target.url(), &["--type", "dump"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("AuthFailed") && text(&out).contains("NOPERM"),
        "{}",
        text(&out)
    );
    assert!(!text(&out).contains(MARKER));
    assert_eq!(target.cmd(&["DBSIZE"]), ":0");
}

#[test]
fn target_out_of_memory_stops_reports_progress_and_claims_nothing() {
    let source = Server::start();
    seed(&source, "20000");
    let target = Server::with(Config {
        args: vec![
            "--maxmemory".into(),
            "3mb".into(),
            "--maxmemory-policy".into(),
            "noeviction".into(),
        ],
        ..Config::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("r.json");
    let out = common::replicate(
        &source.url(),
        &target.url(),
        &["--json", report.to_str().unwrap()],
        &[],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let r = json_report(&report);
    assert_eq!(r["error"]["kind"], "TargetOutOfMemory", "{r}");
    assert_eq!(r["outcome"], "failed");
    assert!(r.get("verify").is_none(), "no verify is claimed");
    let copied = r["copy"]["counts"]["copied"].as_u64().unwrap();
    assert!(copied > 0 && copied < 20_000, "copied {copied}");
    assert!(
        text(&out).contains("capacity")
            || r["inventory"]["notes"].to_string().contains("maxmemory")
    );
}

#[test]
fn compare_finds_differences_exit_3_and_repair_fixes_them() {
    let (source, target) = (Server::start(), Server::start());
    seed(&source, "1000");
    source.cmd(&["SET", "fixed:1", "one"]);
    source.cmd(&["SET", "fixed:2", "two"]);
    let out = common::replicate(&source.url(), &target.url(), &[], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    target.cmd(&["DEL", "fixed:1"]);
    target.cmd(&["SET", "stray", "x"]);
    source.cmd(&["SET", "fixed:2", "changed on the source"]);
    let out = common::replicate(&source.url(), &target.url(), &["--mode", "compare"], &[]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let t = text(&out);
    assert!(
        t.contains("missing 1") && t.contains("extra 1") && t.contains("value 1"),
        "{t}"
    );
    assert_eq!(target.cmd(&["GET", "stray"]), "x", "compare writes nothing");
    let out = common::replicate(
        &source.url(),
        &target.url(),
        &["--mode", "compare", "--repair"],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("re-copied 2, deleted 1 extra, 0 still different"),
        "{}",
        text(&out)
    );
    let out = common::replicate(&source.url(), &target.url(), &["--mode", "compare"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

#[test]
fn help_reads_well() {
    let out = ferry(&["replicate", "--help"], &[]);
    let t = text(&out);
    assert!(out.status.success());
    for flag in [
        "--source",
        "--target",
        "--mode",
        "--type",
        "--key-pattern",
        "--key-type",
        "--shards",
        "--verify",
        "--json",
        "--repair",
        "--db-map",
        "--max-ops-per-sec",
    ] {
        assert!(t.contains(flag), "{flag} missing from --help");
    }
}
