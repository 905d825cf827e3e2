//! The `jobs` scheduler run as a user runs it, against a receiver on 127.0.0.1: what each flow
//! sends, field by field; that every event carries the node's attributes; that each of
//! Bacalhau's opt-outs sends nothing and writes no telemetry state; and that nothing a job
//! spec holds leaves the machine.

#![deny(warnings, unused_qualifications)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;
use support::{
    Sandbox, assert_never_sent, assert_nothing_sent_or_written, every_event_properties,
    files_under, named, only, own_properties, run_ok,
};

const BIN: &str = env!("CARGO_BIN_EXE_jobs");

/// Distinctive values of the rich spec, none of which may be sent.
const NAMESPACE: &str = "finance-zanzibar";
const JOB_NAME: &str = "payroll-of-quentin-zanzibar";
const TASK_NAME: &str = "task-zanzibar-payslips";
const PRIVATE_IMAGE: &str = "docker.io/zanzibarcorp/payroll-runner:2.3.1";
const TRUSTED_IMAGE: &str = "ghcr.io/bacalhau-project/examples/report:1.0";
const UNREACHABLE_IMAGE: &str = "registry.zanzibar.example:5000/payroll:1";
const SECRETS: &[&str] = &[
    NAMESPACE,
    JOB_NAME,
    TASK_NAME,
    PRIVATE_IMAGE,
    "zanzibarcorp",
    "registry.zanzibar.example",
    "ZANZIBAR_DB_PASSWORD",
    "hunter2-zanzibar",
    "ZANZIBAR_REGION",
    "eu-zanzibar-1",
    "ZANZIBAR_MODE",
    "final-zanzibar",
    "label-key-zanzibar",
    "label-value-zanzibar",
    "meta-key-zanzibar",
    "meta-value-zanzibar",
    "task-meta-zanzibar",
    "files.zanzibar.example",
    "quentin",
    "/outputs/zanzibar-payslips",
    "api.zanzibar.example",
    "2026-Q3-zanzibar",
];

/// A spec using every field, with `image` and `command`, whose values are the secrets above.
fn rich_spec(image: &str, command: &str) -> String {
    format!(
        "\
Name: {JOB_NAME}
Namespace: {NAMESPACE}
Type: batch
Count: 1
Labels:
  label-key-zanzibar: label-value-zanzibar
  team: label-value-zanzibar
Meta:
  meta-key-zanzibar: meta-value-zanzibar
Env:
  ZANZIBAR_REGION: eu-zanzibar-1
Tasks:
  - Name: {TASK_NAME}
    Engine:
      Type: docker
      Params:
        Image: {image}
        Entrypoint: [sh, -c]
        Parameters: [\"{command} --quarter 2026-Q3-zanzibar\"]
        EnvironmentVariables:
          - ZANZIBAR_DB_PASSWORD=hunter2-zanzibar
    Env:
      ZANZIBAR_MODE: final-zanzibar
    Meta:
      task-meta-zanzibar: task-meta-zanzibar
    Publisher:
      Type: local
    InputSources:
      - Target: /inputs/employees.csv
        Source:
          Type: urlDownload
          Params:
            URL: https://files.zanzibar.example/home/quentin/employees.csv
      - Target: /inputs/rates
        Source:
          Type: localDirectory
          Params:
            SourcePath: /home/quentin/rates
      - Target: /inputs/archive
        Source:
          Type: s3
          Params:
            Bucket: quentin-zanzibar-archive
    ResultPaths:
      - Name: payslips
        Path: /outputs/zanzibar-payslips
    Resources:
      CPU: 1500m
      Memory: 2Gi
      Disk: 3GB
      GPU: 2
      GPUType: amd
    Network:
      Type: http
      Domains: [api.zanzibar.example, files.zanzibar.example]
    Timeouts:
      ExecutionTimeout: 600
      QueueTimeout: 120
      TotalTimeout: 900
"
    )
}

/// A small JSON spec whose task runs `command` in `image`.
fn json_spec(image: &str, command: &str) -> String {
    serde_json::json!({
        "Name": JOB_NAME,
        "Namespace": NAMESPACE,
        "Type": "batch",
        "Tasks": [{
            "Name": TASK_NAME,
            "Engine": {"Type": "docker", "Params": {
                "Image": image, "Entrypoint": ["sh", "-c"], "Parameters": [command]}},
            "Resources": {"CPU": 1, "Memory": "512Mi"},
            "Timeouts": {"ExecutionTimeout": 300}
        }]
    })
    .to_string()
}

/// Writes `text` as a spec under a directory named after a user, and returns its path.
fn write_spec(sandbox: &Sandbox, file: &str, text: &str) -> PathBuf {
    let dir = sandbox.home.path().join("quentin-zanzibar").join("jobs");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(file);
    std::fs::write(&path, text).unwrap();
    path
}

fn run_spec(sandbox: &Sandbox, spec: &Path) -> Output {
    sandbox
        .opted_in(&["run".as_ref(), spec.as_os_str()])
        .output()
        .expect("jobs runs")
}

fn is_hash(value: &Value) -> bool {
    value
        .as_str()
        .is_some_and(|text| text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn names(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .map(|event| event["event"].as_str().unwrap())
        .collect()
}

fn props(event: &Value) -> &Value {
    &event["properties"]
}

const SUBMITTED: &[&str] = &[
    "job_id",
    "namespace",
    "name_set",
    "job_type",
    "count",
    "labels_count",
    "meta_count",
    "version",
    "revision",
    "task_name",
    "engine_type",
    "publisher_type",
    "env_var_count",
    "task_meta_count",
    "input_source_types",
    "result_path_count",
    "docker_image",
    "cpu",
    "memory_bytes",
    "disk_bytes",
    "gpu",
    "gpu_types",
    "network_type",
    "domain_count",
    "execution_timeout_ms",
    "queue_timeout_ms",
    "total_timeout_ms",
    "warnings",
    "warnings_truncated",
    "error",
    "error_truncated",
];

const EXECUTION: &[&str] = &[
    "execution_id",
    "job_id",
    "evaluation_id",
    "node_name",
    "namespace",
    "name_set",
    "previous_execution",
    "next_execution",
    "follow_up_evaluation",
    "revision",
    "create_time",
    "modify_time",
    "queued_ms",
    "run_ms",
    "resources",
    "desired_state",
    "compute_state",
    "compute_message",
    "compute_message_truncated",
    "error_code",
    "published_result_type",
    "exit_code",
    "stdout_truncated",
    "stderr_truncated",
];

const FINISHED: &[&str] = &[
    "job_id",
    "namespace",
    "state",
    "executions",
    "create_time",
    "modify_time",
    "duration_ms",
];

const RUN_COMMAND: &[&str] = &[
    "command",
    "duration_ms",
    "outcome",
    "error_type",
    "error_message",
    "error_message_truncated",
    "format",
];

#[test]
fn a_successful_run_sends_the_documented_events_and_fields() {
    let sandbox = Sandbox::new(BIN, "JOBS");
    let spec = write_spec(
        &sandbox,
        "payroll.yaml",
        &rich_spec(PRIVATE_IMAGE, "echo ok"),
    );
    let output = run_spec(&sandbox, &spec);
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("completed after 1 execution"), "{stdout}");

    let events = sandbox.receiver.events();
    assert_eq!(
        names(&events),
        [
            "app_started",
            "job_submitted",
            "execution_updated",
            "execution_updated",
            "execution_updated",
            "job_finished",
            "command",
            "app_stopped"
        ]
    );
    let common = every_event_properties(&sandbox);
    let common: Vec<&str> = common.iter().map(String::as_str).collect();

    let submitted = only(&events, "job_submitted");
    assert_eq!(own_properties(submitted, &common), SUBMITTED);
    let s = props(submitted);
    let job_id = s["job_id"].as_str().unwrap();
    assert!(job_id.starts_with("j-"), "{job_id}");
    assert!(is_hash(&s["namespace"]) && is_hash(&s["task_name"]), "{s}");
    assert_ne!(s["namespace"], s["task_name"]);
    assert_eq!(s["name_set"], true);
    assert_eq!(s["job_type"], "batch");
    assert_eq!(s["count"], 1);
    assert_eq!(s["labels_count"], 2);
    assert_eq!(s["meta_count"], 1);
    assert_eq!(s["engine_type"], "docker");
    assert_eq!(s["publisher_type"], "local");
    // Job Env, task Env and the engine's EnvironmentVariables: one each.
    assert_eq!(s["env_var_count"], 3);
    assert_eq!(s["task_meta_count"], 1);
    assert_eq!(
        s["input_source_types"],
        serde_json::json!(["url_download", "local_directory", "s3"])
    );
    assert_eq!(s["result_path_count"], 1);
    assert!(is_hash(&s["docker_image"]), "{s}");
    assert_eq!(s["cpu"], 1.5);
    assert_eq!(s["memory_bytes"], 2u64 << 30);
    assert_eq!(s["disk_bytes"], 3_000_000_000u64);
    assert_eq!(s["gpu"], 2);
    assert_eq!(s["gpu_types"], serde_json::json!(["amd"]));
    assert_eq!(s["network_type"], "http");
    assert_eq!(s["domain_count"], 2);
    assert_eq!(s["execution_timeout_ms"], 600_000);
    assert_eq!(s["queue_timeout_ms"], 120_000);
    assert_eq!(s["total_timeout_ms"], 900_000);
    // The password-like variable is warned about, without naming it.
    assert_eq!(s["warnings"].as_array().unwrap().len(), 1, "{s}");
    assert_eq!(s["error"], Value::Null);

    let executions = named(&events, "execution_updated");
    let mut revision = 0;
    for (execution, (desired, compute)) in executions.iter().zip([
        ("pending", "new"),
        ("running", "bid_accepted"),
        ("stopped", "completed"),
    ]) {
        revision += 1;
        assert_eq!(own_properties(execution, &common), EXECUTION);
        let e = props(execution);
        assert_eq!(e["job_id"], job_id);
        assert_eq!(e["execution_id"], props(executions[0])["execution_id"]);
        assert!(e["evaluation_id"].as_str().unwrap().starts_with("ev-"));
        assert_eq!(e["namespace"], s["namespace"]);
        assert_eq!(
            e["node_name"], e["node_id"],
            "the node's name hashes as its id"
        );
        assert_eq!(e["name_set"], true);
        assert_eq!(e["revision"], revision);
        assert_eq!(e["desired_state"], desired);
        assert_eq!(e["compute_state"], compute);
        assert_eq!(e["previous_execution"], Value::Null);
        assert_eq!(e["next_execution"], Value::Null);
        assert_eq!(e["follow_up_evaluation"], Value::Null);
        assert_eq!(e["error_code"], Value::Null);
        assert_eq!(e["resources"]["cpu"], 1.5);
        assert_eq!(e["resources"]["memory_bytes"], 2u64 << 30);
        assert_eq!(e["resources"]["gpu"], 2);
        let gpus = e["resources"]["gpus"].as_array().unwrap();
        assert_eq!(gpus.len(), 2);
        assert!(gpus.iter().all(|gpu| gpu["vendor"] == "amd"
            && gpu["name"].as_str().is_some_and(|name| !name.is_empty())));
    }
    let end = props(executions[2]);
    assert_eq!(end["exit_code"], 0);
    assert_eq!(end["published_result_type"], "local");
    assert_eq!(end["stdout_truncated"], false);
    assert_eq!(props(executions[0])["exit_code"], Value::Null);

    let finished = only(&events, "job_finished");
    assert_eq!(own_properties(finished, &common), FINISHED);
    assert_eq!(props(finished)["state"], "completed");
    assert_eq!(props(finished)["executions"], 1);
    assert_eq!(props(finished)["namespace"], s["namespace"]);

    let command = only(&events, "command");
    assert_eq!(own_properties(command, &common), RUN_COMMAND);
    assert_eq!(props(command)["command"], "run");
    assert_eq!(props(command)["outcome"], "ok");
    assert_eq!(props(command)["format"], "yaml");

    assert_never_sent(&sandbox.receiver, SECRETS);
    assert_never_sent(&sandbox.receiver, &[spec.to_str().unwrap()]);
}

#[test]
fn a_failing_run_is_retried_once_and_a_trusted_image_is_sent_in_clear() {
    let sandbox = Sandbox::new(BIN, "JOBS");
    // No extension: the format is read from the content.
    let spec = write_spec(
        &sandbox,
        "report",
        &json_spec(TRUSTED_IMAGE, "render && exit 3"),
    );
    let output = run_spec(&sandbox, &spec);
    assert_eq!(output.status.code(), Some(1), "{output:?}");

    let events = sandbox.receiver.events();
    let common = every_event_properties(&sandbox);
    let common: Vec<&str> = common.iter().map(String::as_str).collect();
    let submitted = props(only(&events, "job_submitted"));
    assert_eq!(submitted["docker_image"], TRUSTED_IMAGE);
    assert_eq!(submitted["labels_count"], 0);
    assert_eq!(submitted["publisher_type"], Value::Null);
    assert_eq!(submitted["network_type"], "none");
    assert_eq!(submitted["gpu_types"], serde_json::json!([]));

    let executions = named(&events, "execution_updated");
    assert_eq!(executions.len(), 6);
    for execution in &executions {
        assert_eq!(own_properties(execution, &common), EXECUTION);
    }
    let failed: Vec<&Value> = executions
        .iter()
        .map(|event| props(event))
        .filter(|e| e["compute_state"] == "failed")
        .collect();
    assert_eq!(failed.len(), 2);
    for end in &failed {
        assert_eq!(end["exit_code"], 3);
        assert_eq!(end["error_code"], "non_zero_exit");
        assert_eq!(end["published_result_type"], Value::Null);
        assert_eq!(end["compute_message"], "the task exited with code 3");
    }
    assert_ne!(failed[0]["execution_id"], failed[1]["execution_id"]);
    assert_eq!(failed[0]["next_execution"], failed[1]["execution_id"]);
    assert_eq!(failed[1]["previous_execution"], failed[0]["execution_id"]);
    assert_eq!(
        failed[0]["follow_up_evaluation"],
        failed[1]["evaluation_id"]
    );
    assert_eq!(failed[1]["next_execution"], Value::Null);
    assert_eq!(failed[1]["follow_up_evaluation"], Value::Null);

    let finished = props(only(&events, "job_finished"));
    assert_eq!(finished["state"], "failed");
    assert_eq!(finished["executions"], 2);
    let command = only(&events, "command");
    assert_eq!(own_properties(command, &common), RUN_COMMAND);
    assert_eq!(props(command)["format"], Value::Null);
    // The job failed, so the command did.
    assert_eq!(props(command)["outcome"], "error");
    assert_eq!(props(command)["error_message"], "the job failed");
    assert_never_sent(&sandbox.receiver, &[NAMESPACE, JOB_NAME, TASK_NAME]);
}

#[test]
fn an_image_that_cannot_be_pulled_fails_without_a_retry() {
    let sandbox = Sandbox::new(BIN, "JOBS");
    let spec = write_spec(
        &sandbox,
        "private.yaml",
        &rich_spec(UNREACHABLE_IMAGE, "echo ok"),
    );
    let output = run_spec(&sandbox, &spec);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let events = sandbox.receiver.events();
    let executions = named(&events, "execution_updated");
    assert_eq!(executions.len(), 3);
    let end = props(executions[2]);
    assert_eq!(end["error_code"], "image_pull_failed");
    assert_eq!(end["exit_code"], Value::Null);
    assert!(is_hash(
        &props(only(&events, "job_submitted"))["docker_image"]
    ));
    assert_eq!(props(only(&events, "job_finished"))["state"], "failed");
    assert_never_sent(&sandbox.receiver, SECRETS);
    assert_never_sent(&sandbox.receiver, &[UNREACHABLE_IMAGE]);
}

#[test]
fn every_event_carries_the_node_attributes() {
    let sandbox = Sandbox::new(BIN, "JOBS");
    let spec = write_spec(
        &sandbox,
        "payroll.yaml",
        &rich_spec(TRUSTED_IMAGE, "echo ok"),
    );
    run_ok(&mut sandbox.opted_in(&["run".as_ref(), spec.as_os_str()]));
    run_ok(&mut sandbox.opted_in(&["config", "list"]));
    run_ok(&mut sandbox.opted_in(&["config", "set", "NodeType", "compute"]));
    run_ok(&mut sandbox.opted_in(&["--node-type", "orchestrator", "config", "list"]));

    let config =
        std::fs::read_to_string(sandbox.config_home().join("jobs").join("config.yaml")).unwrap();
    let network_id = config
        .lines()
        .find_map(|line| line.strip_prefix("networkid: "))
        .expect("a network id in the configuration")
        .trim_matches(['"', '\'']);
    let environment = if Path::new("/.dockerenv").exists() {
        "docker"
    } else {
        "local"
    };

    let events = sandbox.receiver.events();
    assert_eq!(named(&events, "app_started").len(), 4);
    assert_eq!(named(&events, "app_stopped").len(), 4);
    assert_eq!(named(&events, "command").len(), 4);
    let node_id = props(&events[0])["node_id"].clone();
    assert!(is_hash(&node_id), "{node_id}");
    let node_types: Vec<&str> = named(&events, "app_started")
        .iter()
        .map(|event| props(event)["node_type"].as_str().unwrap())
        .collect();
    // `config set` already runs as the node it configures.
    assert_eq!(node_types, ["hybrid", "hybrid", "compute", "orchestrator"]);
    for event in &events {
        let p = props(event);
        assert!(p["node_type"].is_string(), "{event}");
        assert_eq!(p["node_id"], node_id, "{event}");
        assert_eq!(p["network_id"], network_id, "{event}");
        assert_eq!(p["node_environment"], environment, "{event}");
        for library in [
            "installation_id",
            "instance_id",
            "os_name",
            "kernel_name",
            "arch",
        ] {
            assert!(
                p[library].as_str().is_some_and(|text| !text.is_empty()),
                "{library} in {event}"
            );
        }
        assert_eq!(p["$app_version"], env!("CARGO_PKG_VERSION"));
    }
    let set = named(&events, "command")
        .into_iter()
        .find(|event| props(event)["command"] == "config set")
        .unwrap();
    assert_eq!(props(set)["key"], "node_type");
    // After `config set NodeType compute`, later runs are compute nodes unless told otherwise.
    sandbox.receiver.clear();
    run_ok(&mut sandbox.opted_in(&["config", "list"]));
    assert!(
        sandbox
            .receiver
            .events()
            .iter()
            .all(|event| props(event)["node_type"] == "compute")
    );
}

#[test]
fn hashes_are_stable_within_an_installation_and_differ_between_installations() {
    let mut seen = Vec::new();
    for _ in 0..2 {
        let sandbox = Sandbox::new(BIN, "JOBS");
        let spec = write_spec(&sandbox, "job.json", &json_spec(PRIVATE_IMAGE, "echo ok"));
        let mut hashes = Vec::new();
        for _ in 0..2 {
            sandbox.receiver.clear();
            // The same node name on both installations: only the key differs.
            run_ok(&mut sandbox.opted_in(&[
                "--config".as_ref(),
                "NodeName=node-zanzibar".as_ref(),
                "run".as_ref(),
                spec.as_os_str(),
            ]));
            let events = sandbox.receiver.events();
            let submitted = props(only(&events, "job_submitted"));
            let node_ids: Vec<&Value> = events.iter().map(|e| &props(e)["node_id"]).collect();
            assert!(node_ids.iter().all(|id| **id == *node_ids[0]));
            for hash in [
                node_ids[0],
                &submitted["namespace"],
                &submitted["docker_image"],
            ] {
                assert!(is_hash(hash), "{hash}");
            }
            hashes.push((
                node_ids[0].clone(),
                submitted["namespace"].clone(),
                submitted["docker_image"].clone(),
            ));
            assert_never_sent(&sandbox.receiver, &["node-zanzibar"]);
        }
        assert_eq!(hashes[0], hashes[1], "two runs of one installation");
        seen.push(hashes.remove(0));
    }
    assert_ne!(seen[0].0, seen[1].0, "node ids of two installations");
    assert_ne!(seen[0].1, seen[1].1, "namespaces of two installations");
    assert_ne!(seen[0].2, seen[1].2, "images of two installations");
}

/// Runs the rich spec opted in, with `prepare` applied first, and asserts what the receiver
/// and the state directory hold: something when `sends`, nothing otherwise.
fn check_run(prepare: impl Fn(&Sandbox) -> Vec<String>, env: &[(&str, &str)], sends: bool) {
    let sandbox = Sandbox::new(BIN, "JOBS");
    let spec = write_spec(
        &sandbox,
        "payroll.yaml",
        &rich_spec(PRIVATE_IMAGE, "echo ok"),
    );
    let mut args = prepare(&sandbox);
    args.push("run".into());
    args.push(spec.to_str().unwrap().into());
    let mut command = sandbox.opted_in(&args);
    for (name, value) in env {
        command.env(name, value);
    }
    let output = run_ok(&mut command);
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("completed"),
        "the job runs either way"
    );
    let state = files_under(&sandbox.state_dir("jobs"));
    if sends {
        assert!(!sandbox.receiver.requests().is_empty(), "the control sends");
        assert!(!state.is_empty(), "the control keeps its identity");
    } else {
        assert_nothing_sent_or_written(&sandbox, "jobs", "opted out");
    }
}

#[test]
fn without_an_opt_out_the_same_run_sends() {
    check_run(|_| Vec::new(), &[], true);
    check_run(|_| Vec::new(), &[("JOBS_DISABLEANALYTICS", "false")], true);
    check_run(
        |_| vec!["--config".into(), "DisableAnalytics=false".into()],
        &[],
        true,
    );
}

#[test]
fn the_disable_analytics_variable_sends_nothing() {
    // Padded or in another case, it is the same opt-out.
    for value in ["true", " true ", "TRUE\n"] {
        check_run(|_| Vec::new(), &[("JOBS_DISABLEANALYTICS", value)], false);
    }
}

#[test]
fn config_set_disable_analytics_sends_nothing_from_then_on() {
    check_run(
        |sandbox| {
            let set = run_ok(&mut sandbox.opted_in(&["config", "set", "DisableAnalytics", "TRUE"]));
            assert_eq!(
                String::from_utf8_lossy(&set.stdout),
                "disableanalytics  true\n"
            );
            let list = run_ok(&mut sandbox.opted_in(&["config", "list"]));
            let list = String::from_utf8_lossy(&list.stdout).into_owned();
            assert!(
                list.lines().any(|line| line == "disableanalytics  true"),
                "{list}"
            );
            let file = sandbox.config_home().join("jobs").join("config.yaml");
            let text = std::fs::read_to_string(file).unwrap();
            assert!(
                text.lines().any(|line| line == "disableanalytics: true"),
                "{text}"
            );
            Vec::new()
        },
        &[],
        false,
    );
}

/// Flags and variables that opt out.
type OptOut = (
    &'static [&'static str],
    &'static [(&'static str, &'static str)],
);

#[test]
fn an_opted_out_node_writes_no_configuration_or_state() {
    let opt_outs: [OptOut; 5] = [
        (&[], &[("JOBS_DISABLEANALYTICS", "true")]),
        (&["--config", "DisableAnalytics=true"], &[]),
        (&[], &[("DO_NOT_TRACK", "1")]),
        (&[], &[("JOBS_TELEMETRY", "off")]),
        (&[], &[("CI", "true")]),
    ];
    for (flags, env) in opt_outs {
        let sandbox = Sandbox::new(BIN, "JOBS");
        let spec = write_spec(
            &sandbox,
            "payroll.yaml",
            &rich_spec(PRIVATE_IMAGE, "echo ok"),
        );
        for args in [vec!["run", spec.to_str().unwrap()], vec!["config", "list"]] {
            let args: Vec<&str> = flags.iter().copied().chain(args).collect();
            let mut command = sandbox.command(&args);
            command.envs(env.iter().copied());
            run_ok(&mut command);
        }
        let written = files_under(&sandbox.config_home());
        assert!(written.is_empty(), "{flags:?} {env:?} wrote {written:?}");
        assert!(sandbox.receiver.requests().is_empty());
    }

    // The control: a node with telemetry on keeps its name and network id.
    let sandbox = Sandbox::new(BIN, "JOBS");
    run_ok(&mut sandbox.opted_in(&["config", "list"]));
    let file = sandbox.config_home().join("jobs").join("config.yaml");
    let text = std::fs::read_to_string(file).unwrap();
    assert!(text.contains("networkid:"), "{text}");

    // `config set` is asked to write, opted out or not.
    let sandbox = Sandbox::new(BIN, "JOBS");
    run_ok(
        sandbox
            .command(&["config", "set", "NodeType", "compute"])
            .env("JOBS_DISABLEANALYTICS", "true"),
    );
    let file = sandbox.config_home().join("jobs").join("config.yaml");
    assert!(
        std::fs::read_to_string(file)
            .unwrap()
            .contains("nodetype: compute")
    );
    assert!(files_under(&sandbox.state_dir("jobs")).is_empty());
}

#[test]
fn the_config_flag_sends_nothing() {
    check_run(
        |_| vec!["--config".into(), "disableanalytics=true".into()],
        &[],
        false,
    );
}

#[test]
fn a_malformed_configuration_turns_telemetry_off_and_the_job_still_runs() {
    check_run(
        |sandbox| {
            let dir = sandbox.config_home().join("jobs");
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("config.yaml"), "disableanalytics: [oops\n").unwrap();
            let list = sandbox.opted_in(&["config", "list"]).output().unwrap();
            assert_eq!(list.status.code(), Some(1));
            assert!(
                String::from_utf8_lossy(&list.stderr).contains("cannot read the configuration")
            );
            Vec::new()
        },
        &[],
        false,
    );
}

#[test]
fn a_key_given_twice_in_any_case_is_a_malformed_configuration() {
    for text in [
        "disableanalytics: false\nDisableAnalytics: true\n",
        "disableanalytics: false\ndisableanalytics: true\n",
    ] {
        check_run(
            |sandbox| {
                let dir = sandbox.config_home().join("jobs");
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(dir.join("config.yaml"), text).unwrap();
                let list = sandbox.opted_in(&["config", "list"]).output().unwrap();
                assert_eq!(list.status.code(), Some(1), "{text:?}: {list:?}");
                let stderr = String::from_utf8_lossy(&list.stderr);
                assert!(stderr.contains("cannot read the configuration"), "{stderr}");
                assert!(stderr.contains("disableanalytics"), "{stderr}");
                Vec::new()
            },
            &[],
            false,
        );
    }
}

#[test]
fn config_set_refuses_unknown_keys_and_bad_values_and_leaves_the_file_alone() {
    let sandbox = Sandbox::new(BIN, "JOBS");
    let file = sandbox.config_home().join("jobs").join("config.yaml");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, "DisableAnalytics: false\ncolour: blue\n").unwrap();
    for args in [
        ["config", "set", "Colour", "red"],
        ["config", "set", "DisableAnalytics", "maybe"],
        ["config", "set", "NodeType", "laptop"],
        ["config", "set", "networkid", "mine"],
    ] {
        let output = sandbox.command(&args).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}: {output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.starts_with("jobs: "), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert_eq!(
            std::fs::read_to_string(&file).unwrap(),
            "DisableAnalytics: false\ncolour: blue\n"
        );
    }
    let output = sandbox
        .command(&["--config", "Colour=red", "config", "list"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));

    // A valid set keeps the other keys and writes keys in lower case.
    run_ok(&mut sandbox.command(&["config", "set", "nodename", "edge-7"]));
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("disableanalytics: false"), "{text}");
    assert!(text.contains("colour: blue"), "{text}");
    assert!(text.contains("nodename: edge-7"), "{text}");
    let list = run_ok(&mut sandbox.command(&["config", "list"]));
    let list = String::from_utf8_lossy(&list.stdout).into_owned();
    assert!(
        list.lines().any(|l| l == "nodename          edge-7"),
        "{list}"
    );
    assert!(
        list.lines().any(|l| l == "colour            blue"),
        "{list}"
    );
}

#[test]
fn unreadable_and_invalid_specs_fail_clearly_and_send_no_path() {
    let sandbox = Sandbox::new(BIN, "JOBS");
    let missing = sandbox
        .home
        .path()
        .join("quentin-zanzibar")
        .join("nope.yaml");
    let malformed = write_spec(
        &sandbox,
        "bad.yaml",
        "Tasks: [unclosed\n  - quentin-zanzibar",
    );
    let invalid = write_spec(
        &sandbox,
        "invalid.json",
        &json_spec(PRIVATE_IMAGE, "echo").replace("\"batch\"", "\"nightly-zanzibar\""),
    );
    for (spec, expected) in [
        (&missing, "cannot read the job spec"),
        (&malformed, "is not a valid YAML job"),
        (&invalid, "invalid job spec"),
    ] {
        let output = run_spec(&sandbox, spec);
        assert_eq!(output.status.code(), Some(1), "{output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    let events = sandbox.receiver.events();
    let commands = named(&events, "command");
    assert_eq!(commands.len(), 3);
    for command in &commands {
        assert_eq!(props(command)["outcome"], "error");
        assert_eq!(props(command)["error_type"], "jobs::sim::RunError");
    }
    assert_eq!(
        props(commands[0])["error_message"],
        "cannot read the job spec: entity not found"
    );
    // Only the spec that could be read was submitted, with its error.
    let submitted = props(only(&events, "job_submitted"));
    assert_eq!(submitted["job_type"], Value::Null);
    assert_eq!(
        submitted["error"],
        "the job's Type is not batch, ops, daemon or service"
    );
    assert!(named(&events, "job_finished").is_empty());
    assert_never_sent(&sandbox.receiver, SECRETS);
    assert_never_sent(&sandbox.receiver, &["nightly-zanzibar", "unclosed"]);
}
