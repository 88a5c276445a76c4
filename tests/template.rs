//! `template.yaml` (SAM): cfn-lint passes; its DefinitionSubstitutions fill exactly the state
//! machine's placeholders; every function builds a step binary that exists; and each function's
//! IAM actions are exactly the AWS calls its code makes (least privilege), found by reading the
//! step sources from the handler down through the helpers it calls.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use serde_json::Value;

fn root() -> &'static str {
    env!("CARGO_MANIFEST_DIR")
}

/// The template as JSON, read by cfn-lint's own loader (it understands !Ref, !GetAtt, …).
fn template() -> Value {
    let out = Command::new("python3")
        .args([
            "-c",
            "import json, cfnlint.decode.cfn_yaml as y; print(json.dumps(y.load('template.yaml'), default=str))",
        ])
        .current_dir(root())
        .output()
        .expect("python3 with cfn-lint: run scripts/setup.sh");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn cfn_lint_passes() {
    let out = Command::new("cfn-lint")
        .arg("template.yaml")
        .current_dir(root())
        .output()
        .expect("cfn-lint: run scripts/setup.sh (pip install cfn-lint)");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The SAM CLI that scripts/setup.sh installs in its own virtualenv (or `FERRY_SAM`).
fn sam_cli() -> String {
    std::env::var("FERRY_SAM").unwrap_or_else(|_| {
        let cache = std::env::var("XDG_CACHE_HOME")
            .unwrap_or_else(|_| format!("{}/.cache", std::env::var("HOME").unwrap()));
        format!("{cache}/ferry/sam/bin/sam")
    })
}

#[test]
fn sam_validate_lint_passes() {
    let out = Command::new(sam_cli())
        .args(["validate", "--lint"])
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("SAM_CLI_TELEMETRY", "0")
        .current_dir(root())
        .output()
        .expect("the SAM CLI: run scripts/setup.sh (aws-sam-cli in its own virtualenv)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.contains("is a valid SAM Template"),
        "{text}"
    );
}

/// `path` is an ELF executable for AArch64 (e_machine, at offset 18, is 0xB7).
fn assert_arm64_elf(path: &std::path::Path) {
    let binary = std::fs::read(path).unwrap();
    assert_eq!(&binary[..4], b"\x7fELF", "{path:?}");
    let machine = u16::from_le_bytes([binary[18], binary[19]]);
    assert_eq!(machine, 0xB7, "{path:?} is not arm64");
}

/// `sam build` of one step function (all ten build the same way: one crate, SAM's
/// rust-cargolambda builder running `cargo lambda` for arm64 with zig), in debug mode to keep the
/// suite short; the result must be an arm64 `bootstrap`.
#[test]
fn sam_build_builds_a_step_function_for_arm64() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(sam_cli())
        .args(["build", "InventoryFunction", "--build-dir"])
        .arg(dir.path())
        .env("SAM_BUILD_MODE", "debug")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("SAM_CLI_TELEMETRY", "0")
        .current_dir(root())
        .output()
        .expect("the SAM CLI: run scripts/setup.sh");
    assert!(
        out.status.success(),
        "sam build:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_arm64_elf(&dir.path().join("InventoryFunction/bootstrap"));
}

/// The tail's image builds `ferry` (ferry-cli) for arm64 (`infra/Dockerfile`, `docker build
/// --platform linux/arm64`, `--locked`). There is no Docker engine here, so the same crate is
/// cross-built for aarch64 glibc with cargo lambda's zig toolchain, `--locked` as in the
/// Dockerfile (debug, like the SAM build above, whose aarch64 dependencies in `target/` it
/// reuses); the result must be an AArch64 ELF. The image itself is not built here.
#[test]
fn the_tail_binary_builds_for_arm64_as_the_dockerfile_does() {
    let dockerfile = std::fs::read_to_string(format!("{}/infra/Dockerfile", root())).unwrap();
    assert!(
        dockerfile.contains("cargo build --release --locked -p ferry-cli"),
        "the Dockerfile builds what this test builds"
    );
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("cargo")
        .args(["lambda", "build", "--arm64", "--locked", "-p", "ferry-cli"])
        .args(["--bin", "ferry", "--lambda-dir"])
        .arg(dir.path())
        .current_dir(root())
        .output()
        .expect("cargo lambda: run scripts/setup.sh");
    assert!(
        out.status.success(),
        "cargo lambda build:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_arm64_elf(&dir.path().join("ferry/bootstrap"));
}

#[test]
fn substitutions_fill_exactly_the_definitions_placeholders() {
    let t = template();
    let subs: BTreeSet<String> = t["Resources"]["MigrationStateMachine"]["Properties"]
        ["DefinitionSubstitutions"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    let asl =
        std::fs::read_to_string(format!("{}/statemachine/migration.asl.json", root())).unwrap();
    let placeholders: BTreeSet<String> = asl
        .match_indices("${")
        .map(|(i, _)| asl[i + 2..i + 2 + asl[i + 2..].find('}').unwrap()].to_string())
        .collect();
    assert_eq!(subs, placeholders);
}

/// Each Lambda function of the template: logical id → (binary, IAM actions).
fn functions(t: &Value) -> BTreeMap<String, (String, BTreeSet<String>)> {
    let mut out = BTreeMap::new();
    for (id, r) in t["Resources"].as_object().unwrap() {
        if r["Type"] != "AWS::Serverless::Function" {
            continue;
        }
        let binary = r["Metadata"]["BuildProperties"]["Binary"]
            .as_str()
            .unwrap()
            .to_string();
        let actions = actions_of(&r["Properties"]["Policies"]);
        out.insert(id.clone(), (binary, actions));
    }
    out
}

/// The IAM actions of a list of policies (`Statement` inline or under `PolicyDocument`).
fn actions_of(policies: &Value) -> BTreeSet<String> {
    let mut actions = BTreeSet::new();
    for policy in policies.as_array().unwrap() {
        let statements = policy["Statement"]
            .as_array()
            .or(policy["PolicyDocument"]["Statement"].as_array());
        for statement in statements.into_iter().flatten() {
            match &statement["Action"] {
                Value::String(a) => {
                    actions.insert(a.clone());
                }
                Value::Array(list) => {
                    actions.extend(list.iter().map(|a| a.as_str().unwrap().to_string()))
                }
                _ => {}
            }
        }
    }
    actions
}

/// The SDK calls made on the `client` field of `Aws` in `source` (`.sqs` then
/// `.receive_message()`), as IAM actions of `service`.
fn client_calls(source: &str, client: &str, service: &str) -> BTreeSet<String> {
    let field = format!(".{client}");
    source
        .match_indices(&field)
        .filter_map(|(i, _)| {
            let rest = source[i + field.len()..].trim_start();
            let call = rest.strip_prefix('.')?;
            let ident: String = call
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            call[ident.len()..]
                .starts_with("()")
                .then(|| format!("{service}:{}", pascal(&ident)))
        })
        .collect()
}

#[test]
fn every_function_builds_an_existing_step_binary_and_every_binary_is_deployed() {
    let t = template();
    let deployed: BTreeSet<String> = functions(&t).into_values().map(|(b, _)| b).collect();
    let built: BTreeSet<String> = std::fs::read_dir(format!("{}/functions/steps/src/bin", root()))
        .unwrap()
        .map(|e| {
            e.unwrap()
                .path()
                .file_stem()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(deployed, built);
}

/// The body of `fn name` in `source` (from its first `{` to the matching `}`).
fn body<'a>(source: &'a str, name: &str) -> Option<&'a str> {
    let start = source
        .find(&format!("fn {name}("))
        .or_else(|| source.find(&format!("fn {name}<")))?;
    let open = start + source[start..].find('{')?;
    let mut depth = 0;
    for (i, c) in source[open..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(&source[open..open + i + 1]);
                }
            }
            _ => {}
        }
    }
    None
}

fn pascal(snake: &str) -> String {
    snake
        .split('_')
        .map(|w| w[..1].to_uppercase() + &w[1..])
        .collect()
}

/// The IAM actions the code behind `handler` needs: SDK calls (`.describe_snapshots()` on the
/// ElastiCache client, `.get_secret_value()` on Secrets Manager) found in its body and in the
/// bodies of the step functions it calls, transitively.
fn calls_of(sources: &str, handler: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut todo = vec![handler.to_string()];
    let mut actions = BTreeSet::new();
    while let Some(f) = todo.pop() {
        if !seen.insert(f.clone()) {
            continue;
        }
        // Signing an IAM auth token is no SDK call, but ElastiCache checks elasticache:Connect.
        if f == "with_iam" {
            actions.insert("elasticache:Connect".to_string());
        }
        let Some(b) = body(sources, &f) else { continue };
        for (i, _) in b.match_indices('.') {
            let rest = &b[i + 1..];
            let ident: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let called = rest[ident.len()..].starts_with("()");
            // A call made right on the Step Functions client: `….aws.sfn.describe_execution()`.
            let on_sfn = b[..i].trim_end().ends_with(".sfn");
            let on_s3 = b[..i].trim_end().ends_with(".s3");
            if called && on_sfn {
                actions.insert(format!("states:{}", pascal(&ident)));
            } else if called && on_s3 {
                actions.insert(format!("s3:{}", pascal(&ident)));
            } else if called && ident == "get_secret_value" {
                actions.insert("secretsmanager:GetSecretValue".to_string());
            } else if called
                && ["describe_", "create_", "modify_", "delete_"]
                    .iter()
                    .any(|p| ident.starts_with(p))
            {
                actions.insert(format!("elasticache:{}", pascal(&ident)));
            }
        }
        // Step functions it calls: `name(` or `path::name(` not preceded by `.`.
        for (i, _) in b.match_indices('(') {
            let before = &b[..i];
            let ident: String = before
                .chars()
                .rev()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            let prefix = before[..before.len() - ident.len()].chars().last();
            if !ident.is_empty() && prefix != Some('.') {
                todo.push(ident);
            }
        }
    }
    actions
}

#[test]
fn each_function_may_do_exactly_what_its_code_does() {
    let t = template();
    let steps = format!("{}/functions/steps/src", root());
    let read = |f: &str| std::fs::read_to_string(format!("{steps}/{f}")).unwrap();
    // The handlers and the helpers they call; the entry points live apart in lambda.rs.
    let sources = [
        read("handlers.rs"),
        read("elasticache.rs"),
        read("notifications.rs"),
        read("parameter_groups.rs"),
        read("after_end.rs"),
        read("executions.rs"),
        read("plans.rs"),
        read("aws.rs"),
    ]
    .join("\n");
    let entries = read("lambda.rs");
    for (id, (binary, granted)) in functions(&t) {
        let source = read(&format!("bin/{binary}.rs"));
        let main = body(&source, "main").unwrap();
        let entry = main
            .split("lambda::steps::")
            .nth(1)
            .and_then(|s| s.split('(').next())
            .unwrap_or_else(|| panic!("{binary}: no lambda::steps:: entry point"));
        let entry_body = body(&entries, entry).unwrap_or_else(|| panic!("no entry {entry}"));
        // `super::run(module::handler)`: the handler is the last path segment inside run(…).
        let handler = entry_body
            .split("run(")
            .nth(1)
            .and_then(|s| s.split(')').next())
            .and_then(|path| path.rsplit("::").next())
            .unwrap();
        let needed = calls_of(&sources, handler);
        assert!(
            !needed.is_empty(),
            "{id}: found no AWS call behind {handler}"
        );
        assert_eq!(
            granted, needed,
            "{id} ({binary} → {handler}): granted vs called"
        );
    }
}

#[test]
fn the_tail_task_may_do_exactly_what_its_code_does() {
    let t = template();
    let granted = actions_of(&t["Resources"]["TailTaskRole"]["Properties"]["Policies"]);
    let steps = format!("{}/functions/steps/src", root());
    let read = |f: &str| std::fs::read_to_string(format!("{steps}/{f}")).unwrap();
    let control = read("control.rs");
    let mut needed = client_calls(&control, "sqs", "sqs");
    needed.extend(client_calls(&control, "sfn", "states"));
    // Credentials: the task's run → start → handlers::migration → … → Secrets Manager.
    let sources = [
        read("tail_task/mod.rs"),
        read("handlers.rs"),
        read("aws.rs"),
    ]
    .join("\n");
    needed.extend(calls_of(&sources, "run"));
    assert!(needed.contains("states:SendTaskHeartbeat"), "{needed:?}");
    assert!(
        needed.contains("secretsmanager:GetSecretValue"),
        "{needed:?}"
    );
    assert_eq!(granted, needed, "TailTaskRole: granted vs called");
}

/// An alarm names exact dimensions. The stack's alarms on ferry's own metrics name none (a
/// migration's id is unknown at deploy time), so the code must publish each of those metrics
/// without dimensions too (EMF's empty dimension set), or the alarm could never fire.
#[test]
fn ferry_alarms_watch_metrics_the_code_publishes_without_dimensions() {
    let t = template();
    let steps = format!("{}/functions/steps/src", root());
    let metrics = std::fs::read_to_string(format!("{steps}/metrics.rs")).unwrap();
    assert!(
        metrics.contains(r#""Dimensions": [["MigrationId"], []]"#),
        "metrics.rs publishes an empty dimension set"
    );
    let emitting: String = ["tail_task/mod.rs", "handlers.rs"]
        .iter()
        .map(|f| std::fs::read_to_string(format!("{steps}/{f}")).unwrap())
        .collect();
    let mut watched = 0;
    for (id, r) in t["Resources"].as_object().unwrap() {
        let p = &r["Properties"];
        if r["Type"] != "AWS::CloudWatch::Alarm" || p["Namespace"] != "ferry" {
            continue;
        }
        watched += 1;
        assert!(p["Dimensions"].is_null(), "{id} names dimensions: {p}");
        let name = p["MetricName"].as_str().unwrap();
        assert!(
            emitting.contains(&format!("(\"{name}\"")),
            "{id} watches {name}, which no step emits"
        );
    }
    assert!(watched > 0, "the stack alarms on the tail's lag");
}

/// Issue 14, network: only the functions that talk to Redis (those that read the credentials'
/// secret) run in the VPC; the others reach AWS's public endpoints and need no NAT. With
/// `CreateVpcEndpoints`, every AWS service the in-VPC parts call has an endpoint: Secrets
/// Manager for the Redis Lambdas; for the tail, the services of its role's actions plus Logs
/// (awslogs) and ECR api, dkr and S3 (the image pull), without which a task never starts.
#[test]
fn only_redis_steps_are_in_the_vpc_and_endpoints_cover_what_the_vpc_calls() {
    let t = template();
    let resources = t["Resources"].as_object().unwrap();
    for (id, (_, granted)) in functions(&t) {
        let in_vpc = resources[&id]["Properties"].get("VpcConfig").is_some();
        let talks_to_redis = granted.contains("secretsmanager:GetSecretValue");
        assert_eq!(
            in_vpc, talks_to_redis,
            "{id}: in the VPC only if it talks to Redis"
        );
    }
    assert!(
        t["Globals"]["Function"].get("VpcConfig").is_none(),
        "no VPC for every function"
    );
    let endpoints: BTreeSet<String> = resources
        .values()
        .filter(|r| r["Type"] == "AWS::EC2::VPCEndpoint")
        .map(|r| {
            assert_eq!(r["Condition"], "CreateEndpoints");
            // `!Sub com.amazonaws.${AWS::Region}.<service>`
            let name = r["Properties"]["ServiceName"]["Fn::Sub"].as_str().unwrap();
            name.rsplit("}.").next().unwrap().to_string()
        })
        .collect();
    let tail = actions_of(&resources["TailTaskRole"]["Properties"]["Policies"]);
    // elasticache:Connect is checked by ElastiCache itself at AUTH (an IAM token is signed
    // offline): no API call, so no endpoint.
    let mut needed: BTreeSet<String> = tail
        .iter()
        .filter(|a| *a != "elasticache:Connect")
        .map(|a| a.split(':').next().unwrap().to_string())
        .collect();
    needed.extend(["secretsmanager", "logs", "ecr.api", "ecr.dkr", "s3"].map(String::from));
    assert_eq!(
        endpoints, needed,
        "VPC endpoints vs the services the in-VPC parts call"
    );
}
