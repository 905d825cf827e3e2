//! The `bench` program as a user runs it, against a receiver standing in for PostHog: each
//! command sends the documented events with exactly their documented properties, every
//! opt-out leaves nothing sent and nothing written, debug mode prints exactly what is sent,
//! and what identifies the user (names, paths, prompts, keys, addresses) never leaves.

#![deny(warnings, unused_qualifications)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::Value;
use support::{
    Sandbox, assert_never_sent, assert_nothing_sent_or_written, every_event_properties,
    files_under, named, only, own_properties, run_ok,
};

fn sandbox() -> Sandbox {
    Sandbox::new(env!("CARGO_BIN_EXE_bench"), "BENCH")
}

const BATCH_STARTED: &[&str] = &[
    "dataset_name",
    "task_count",
    "variant_count",
    "parallelism",
    "agent",
    "model",
    "provider_type",
    "run_id",
];
const TASK_STARTED: &[&str] = &[
    "env_name",
    "task_index",
    "execution_mode",
    "provider_type",
    "os_type",
    "agent",
    "model",
    "max_steps",
    "run_id",
];
const EVALUATION_COMPLETED: &[&str] = &[
    "env_name",
    "task_index",
    "success",
    "reward",
    "total_steps",
    "duration_ms",
    "agent",
    "model",
    "run_id",
];
const TASK_FAILED: &[&str] = &[
    "env_name",
    "task_index",
    "error_type",
    "error_message",
    "error_message_truncated",
    "stage",
    "run_id",
];
const BATCH_TASK_COMPLETED: &[&str] = &[
    "env_name",
    "task_index",
    "batch_index",
    "success",
    "reward",
    "total_steps",
    "duration_ms",
    "error_type",
    "run_id",
];
const STEP_EXECUTED: &[&str] = &["action_type", "step_count", "duration_ms", "run_id"];
/// What every `command` event carries before the command's own arguments.
const COMMAND: &[&str] = &["command", "duration_ms", "outcome", "error_type"];

/// The secrets of the dataset file below, and of the user running it.
const USER_DIR: &str = "grace-hopper-private";
const API_KEY: &str = "sk-live-9f8e7d6c5b4a39281706f5e4";
const PRIVATE_AGENT: &str = "acme-internal-agent";
const PRIVATE_MODEL: &str = "ft:gpt-4o:acme-corp:payroll-v3";

/// One task of the dataset file the tests write: its environment, its OS, and either its
/// steps and reward or its failure.
struct Spec {
    env: &'static str,
    os: &'static str,
    outcome: Outcome,
}

enum Outcome {
    Scored {
        steps: u64,
        reward: f64,
    },
    Fails {
        stage: &'static str,
        error: &'static str,
        message: &'static str,
    },
}

const DATASET: &[Spec] = &[
    Spec {
        env: "acme-payroll-portal",
        os: "windows",
        outcome: Outcome::Scored {
            steps: 3,
            reward: 1.0,
        },
    },
    Spec {
        env: "acme-crm-export",
        os: "linux",
        outcome: Outcome::Scored {
            steps: 2,
            reward: 0.25,
        },
    },
    Spec {
        env: "acme-vpn-login",
        os: "macos",
        outcome: Outcome::Fails {
            stage: "step",
            error: "authentication_error",
            message: "login to https://vpn.acme-corp.example/?token={api_key} as grace.hopper@acme-corp.example failed",
        },
    },
    Spec {
        env: "acme-ledger",
        os: "android",
        outcome: Outcome::Fails {
            stage: "setup",
            error: "setup_error",
            message: "cannot open /home/grace/ledgers/q3-2026.db: locked",
        },
    },
];

/// Writes the dataset file under a directory named after the user, and returns its path.
fn write_dataset(sandbox: &Sandbox) -> PathBuf {
    let tasks: Vec<Value> = DATASET
        .iter()
        .map(|spec| {
            let mut task = serde_json::json!({"env": spec.env, "os": spec.os});
            match spec.outcome {
                Outcome::Scored { steps, reward } => {
                    task["outcome"] = "evaluated".into();
                    task["steps"] = steps.into();
                    task["reward"] = reward.into();
                }
                Outcome::Fails {
                    stage,
                    error,
                    message,
                } => {
                    task["outcome"] = "fails".into();
                    task["stage"] = stage.into();
                    task["error"] = error.into();
                    task["message"] = message.into();
                }
            }
            task
        })
        .collect();
    let dir = sandbox.home.path().join(USER_DIR);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("payroll-suite.json");
    std::fs::write(&path, serde_json::json!({ "tasks": tasks }).to_string()).unwrap();
    path
}

fn text(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

fn is_hash(value: &Value) -> bool {
    value
        .as_str()
        .is_some_and(|text| text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[track_caller]
fn assert_fields(events: &[&Value], expected: &[&str], every: &[&str]) {
    assert!(!events.is_empty(), "no event to check against {expected:?}");
    for event in events {
        assert_eq!(own_properties(event, every), expected, "{event:#}");
    }
}

/// The events of the receiver, other than the library's lifecycle events.
fn app_events(sandbox: &Sandbox) -> Vec<Value> {
    sandbox
        .receiver
        .events()
        .into_iter()
        .filter(|event| {
            !["app_started", "app_stopped"].contains(&event["event"].as_str().unwrap_or(""))
        })
        .collect()
}

#[test]
fn run_sends_each_documented_event_with_exactly_its_fields() {
    let sandbox = sandbox();
    let every = every_event_properties(&sandbox);
    let every: Vec<&str> = every.iter().map(String::as_str).collect();
    let dataset = write_dataset(&sandbox);
    let variants = 3u64;
    let output = run_ok(&mut sandbox.opted_in(&[
        "run",
        "--dataset",
        text(&dataset),
        "--variants",
        "3",
        "--parallelism",
        "4",
        "--agent",
        PRIVATE_AGENT,
        "--model",
        PRIVATE_MODEL,
        "--provider",
        "local",
        "--api-key",
        API_KEY,
    ]));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("12 tasks"), "{stdout}");

    let all = sandbox.receiver.events();
    let names: BTreeSet<&str> = all
        .iter()
        .map(|event| event["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        BTreeSet::from([
            "app_started",
            "app_stopped",
            "batch_started",
            "batch_task_completed",
            "command",
            "evaluation_completed",
            "task_failed",
            "task_started",
        ])
    );
    let events = app_events(&sandbox);
    let runs = DATASET.len() as u64 * variants;
    let scored = DATASET
        .iter()
        .filter(|spec| matches!(spec.outcome, Outcome::Scored { .. }))
        .count() as u64
        * variants;

    // The batch: its size from the inputs, private names hashed.
    let batch = only(&events, "batch_started");
    assert_fields(&[batch], BATCH_STARTED, &every);
    let batch = &batch["properties"];
    assert_eq!(batch["task_count"], DATASET.len());
    assert_eq!(batch["variant_count"], runs);
    assert_eq!(batch["parallelism"], 4);
    assert_eq!(batch["provider_type"], "local");
    for property in ["dataset_name", "agent", "model"] {
        assert!(is_hash(&batch[property]), "{property}: {batch:#}");
    }
    let run_id = batch["run_id"].as_str().unwrap();
    assert_eq!(run_id.len(), 36, "a UUID: {run_id}");

    let started = named(&events, "task_started");
    let evaluated = named(&events, "evaluation_completed");
    let failed = named(&events, "task_failed");
    let completed = named(&events, "batch_task_completed");
    assert_eq!(started.len() as u64, runs);
    assert_eq!(completed.len() as u64, runs);
    assert_eq!(evaluated.len() as u64, scored);
    assert_eq!(failed.len() as u64, runs - scored);
    assert_fields(&started, TASK_STARTED, &every);
    assert_fields(&evaluated, EVALUATION_COMPLETED, &every);
    assert_fields(&failed, TASK_FAILED, &every);
    assert_fields(&completed, BATCH_TASK_COMPLETED, &every);

    // Every task event belongs to the batch, and names the same agent and model hashes.
    for event in started
        .iter()
        .chain(&evaluated)
        .chain(&failed)
        .chain(&completed)
    {
        let properties = &event["properties"];
        assert_eq!(properties["run_id"], run_id, "{event:#}");
        assert!(is_hash(&properties["env_name"]), "{event:#}");
        if properties.get("agent").is_some() {
            assert_eq!(properties["agent"], batch["agent"]);
            assert_eq!(properties["model"], batch["model"]);
        }
    }
    // One hash per environment, each started once per variant, variants numbered from 0.
    let mut variants_of: BTreeMap<String, BTreeSet<u64>> = BTreeMap::new();
    for event in &started {
        let properties = &event["properties"];
        assert_eq!(properties["execution_mode"], "batch");
        assert_eq!(properties["provider_type"], "local");
        assert_eq!(properties["max_steps"], 15);
        variants_of
            .entry(properties["env_name"].as_str().unwrap().to_owned())
            .or_default()
            .insert(properties["task_index"].as_u64().unwrap());
    }
    assert_eq!(variants_of.len(), DATASET.len());
    for indexes in variants_of.values() {
        assert_eq!(*indexes, (0..variants).collect::<BTreeSet<_>>());
    }
    // The desktops' OS types are the dataset's.
    let os_types: BTreeMap<&str, usize> =
        started.iter().fold(BTreeMap::new(), |mut counts, event| {
            *counts
                .entry(event["properties"]["os_type"].as_str().unwrap())
                .or_default() += 1;
            counts
        });
    let expected_os: BTreeMap<&str, usize> = DATASET
        .iter()
        .map(|spec| (spec.os, variants as usize))
        .collect();
    assert_eq!(os_types, expected_os);

    // Scores: variant v of a task takes v steps more than its script.
    let mut got: Vec<(u64, String, bool)> = evaluated
        .iter()
        .map(|event| {
            let properties = &event["properties"];
            (
                properties["total_steps"].as_u64().unwrap(),
                properties["reward"].to_string(),
                properties["success"].as_bool().unwrap(),
            )
        })
        .collect();
    got.sort();
    let mut expected: Vec<(u64, String, bool)> = DATASET
        .iter()
        .filter_map(|spec| match spec.outcome {
            Outcome::Scored { steps, reward } => Some((steps, reward)),
            Outcome::Fails { .. } => None,
        })
        .flat_map(|(steps, reward)| {
            (0..variants).map(move |v| (steps + v, Value::from(reward).to_string(), reward == 1.0))
        })
        .collect();
    expected.sort();
    assert_eq!(got, expected);

    // Failures: their stage and type; their messages are the user's text and never sent.
    let mut got: Vec<(String, String)> = failed
        .iter()
        .map(|event| {
            let properties = &event["properties"];
            assert_eq!(properties["error_message"], Value::Null, "{event:#}");
            (
                properties["stage"].as_str().unwrap().to_owned(),
                properties["error_type"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    got.sort();
    let mut expected: Vec<(String, String)> = DATASET
        .iter()
        .filter_map(|spec| match spec.outcome {
            Outcome::Fails { stage, error, .. } => Some((stage, error)),
            Outcome::Scored { .. } => None,
        })
        .flat_map(|(stage, error)| (0..variants).map(move |_| (stage, error)))
        .map(|(stage, error)| (stage.to_owned(), error.to_owned()))
        .collect();
    expected.sort();
    assert_eq!(got, expected);

    // Each task completes once, at its own position in the batch.
    let mut positions: Vec<u64> = completed
        .iter()
        .map(|event| event["properties"]["batch_index"].as_u64().unwrap())
        .collect();
    positions.sort_unstable();
    assert_eq!(positions, (0..runs).collect::<Vec<_>>());
    let succeeded = completed
        .iter()
        .filter(|event| event["properties"]["success"] == true)
        .count() as u64;
    let full_marks = DATASET
        .iter()
        .filter(|spec| matches!(spec.outcome, Outcome::Scored { reward, .. } if reward == 1.0))
        .count() as u64;
    assert_eq!(succeeded, full_marks * variants);
    let unscored = completed
        .iter()
        .filter(|event| {
            event["properties"]["reward"].is_null() && event["properties"]["error_type"].is_string()
        })
        .count() as u64;
    assert_eq!(unscored, runs - scored);

    // The command: only its safe arguments, the dataset hashed as in the batch.
    let command = only(&events, "command");
    let mut expected_fields = COMMAND.to_vec();
    expected_fields.extend([
        "dataset",
        "tasks",
        "variants",
        "parallelism",
        "agent",
        "model",
        "provider",
        "output",
        "api_key",
    ]);
    assert_fields(&[command], &expected_fields, &every);
    let command = &command["properties"];
    assert_eq!(command["command"], "run");
    assert_eq!(command["outcome"], "ok");
    assert_eq!(command["dataset"], batch["dataset_name"]);
    assert_eq!(command["agent"], batch["agent"]);
    assert_eq!(command["model"], batch["model"]);
    assert_eq!(command["tasks"], Value::Null);
    assert_eq!(command["variants"], variants);
    assert_eq!(command["parallelism"], 4);
    assert_eq!(command["provider"], "local");
    assert_eq!(command["output"], false);
    assert_eq!(command["api_key"], true);
}

#[test]
fn built_in_names_are_sent_in_clear() {
    let sandbox = sandbox();
    let model = "anthropic/claude-sonnet-4-20250514";
    run_ok(&mut sandbox.opted_in(&[
        "run",
        "--dataset",
        "bench-basic",
        "--tasks",
        "2",
        "--agent",
        "bench-agent",
        "--model",
        model,
        "--provider",
        "docker",
    ]));
    let events = app_events(&sandbox);
    let batch = &only(&events, "batch_started")["properties"];
    assert_eq!(batch["dataset_name"], "bench-basic");
    assert_eq!(batch["task_count"], 2);
    assert_eq!(batch["variant_count"], 2);
    assert_eq!(batch["agent"], "bench-agent");
    assert_eq!(batch["model"], model);
    assert_eq!(batch["provider_type"], "docker");
    for event in named(&events, "task_started") {
        let env = event["properties"]["env_name"].as_str().unwrap();
        assert!(!is_hash(&event["properties"]["env_name"]), "{env}");
        assert!(!env.is_empty());
    }
    let command = &only(&events, "command")["properties"];
    assert_eq!(command["dataset"], "bench-basic");
    assert_eq!(command["tasks"], 2);
    assert_eq!(command["provider"], "docker");
    assert_eq!(command["model"], model);
}

#[test]
fn interact_trace_and_platform_list_send_only_their_safe_arguments() {
    let sandbox = sandbox();
    let every = every_event_properties(&sandbox);
    let every: Vec<&str> = every.iter().map(String::as_str).collect();
    let prompt = "transfer 4200 to account DE89370400440532013000 for Grace";

    run_ok(&mut sandbox.opted_in(&["interact", "--env", "fill-form", "--prompt", prompt]));
    let events = app_events(&sandbox);
    let names: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["task_started", "step_executed", "command"]);
    let started = only(&events, "task_started");
    assert_fields(&[started], TASK_STARTED, &every);
    assert_eq!(started["properties"]["execution_mode"], "interactive");
    assert_eq!(started["properties"]["env_name"], "fill-form");
    let step = only(&events, "step_executed");
    assert_fields(&[step], STEP_EXECUTED, &every);
    assert_eq!(step["properties"]["action_type"], "type");
    assert_eq!(step["properties"]["step_count"], 1);
    assert_eq!(
        step["properties"]["run_id"],
        started["properties"]["run_id"]
    );
    let command = only(&events, "command");
    let mut expected = COMMAND.to_vec();
    expected.extend(["env", "prompt"]);
    assert_fields(&[command], &expected, &every);
    assert_eq!(command["properties"]["command"], "interact");
    assert_eq!(command["properties"]["env"], "fill-form");
    assert_eq!(command["properties"]["prompt"], true);
    assert_never_sent(
        &sandbox.receiver,
        &[prompt, "DE89370400440532013000", "4200"],
    );

    // A trace written by a run, in a directory named after the user.
    let out = sandbox.home.path().join(USER_DIR).join("results");
    run_ok(&mut sandbox.opted_in(&[
        "run",
        "--tasks",
        "3",
        "--output",
        text(&out),
        "--api-key",
        API_KEY,
    ]));
    let trace = out.join("trace.jsonl");
    assert_eq!(std::fs::read_to_string(&trace).unwrap().lines().count(), 3);
    assert_never_sent(&sandbox.receiver, &[USER_DIR, API_KEY, "trace.jsonl"]);
    sandbox.receiver.clear();
    let output = run_ok(&mut sandbox.opted_in(&["trace", text(&trace), "--format", "json"]));
    let summary: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(summary["tasks"], 3);
    let events = app_events(&sandbox);
    let command = only(&events, "command");
    assert_eq!(events.len(), 1, "{events:#?}");
    let mut expected = COMMAND.to_vec();
    expected.push("format");
    assert_fields(&[command], &expected, &every);
    assert_eq!(command["properties"]["command"], "trace");
    assert_eq!(command["properties"]["outcome"], "ok");
    assert_eq!(command["properties"]["format"], "json");

    assert_never_sent(&sandbox.receiver, &[USER_DIR, API_KEY, "trace.jsonl"]);
    sandbox.receiver.clear();
    let output = run_ok(&mut sandbox.opted_in(&["platform", "list", "--json"]));
    let providers: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(providers.as_array().unwrap().len(), 3);
    let events = app_events(&sandbox);
    let command = only(&events, "command");
    assert_eq!(events.len(), 1, "{events:#?}");
    let mut expected = COMMAND.to_vec();
    expected.push("json");
    assert_fields(&[command], &expected, &every);
    assert_eq!(command["properties"]["command"], "platform list");
    assert_eq!(command["properties"]["json"], true);
    assert_never_sent(&sandbox.receiver, &[USER_DIR, API_KEY, "trace.jsonl"]);
}

#[test]
fn bad_input_is_a_clear_error_and_sends_only_the_command_outcome() {
    let sandbox = sandbox();
    let dir = sandbox.home.path().join(USER_DIR);
    std::fs::create_dir_all(&dir).unwrap();
    let malformed = dir.join("broken-suite.json");
    std::fs::write(
        &malformed,
        r#"{"tasks": [{"env": "acme-ledger", "os": "beos"}]}"#,
    )
    .unwrap();
    let trace = dir.join("not-a-trace.jsonl");
    std::fs::write(&trace, "{\"acme\": true}\n").unwrap();
    let cases: [(Vec<&str>, &str); 5] = [
        (vec!["run", "--dataset", text(&malformed)], "is not valid"),
        (
            vec!["run", "--dataset", "acme-private-suite"],
            "no dataset named",
        ),
        (vec!["run", "--provider", "cloud"], "needs an API key"),
        (
            vec!["interact", "--env", "acme-payroll-portal"],
            "no environment named",
        ),
        (vec!["trace", text(&trace)], "line 1"),
    ];
    let secrets = ["acme", USER_DIR, "beos", "broken-suite", "not-a-trace"];
    for (args, problem) in &cases {
        sandbox.receiver.clear();
        let output = sandbox.opted_in(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.starts_with("bench: "), "{args:?}: {stderr}");
        assert!(stderr.contains(problem), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        let events = app_events(&sandbox);
        assert_eq!(events.len(), 1, "{args:?}: {events:#?}");
        let command = &only(&events, "command")["properties"];
        assert_eq!(command["outcome"], "error", "{args:?}");
        assert!(command["error_type"].is_string(), "{args:?}");
        assert_eq!(command["error_message"], Value::Null, "{args:?}");
        assert_never_sent(&sandbox.receiver, &secrets);
    }
}

/// Runs one batch with `extra` environment variables, opted in otherwise.
fn run_with(sandbox: &Sandbox, extra: &[(&str, &str)]) {
    let mut command = sandbox.opted_in(&["run", "--tasks", "2"]);
    for (name, value) in extra {
        command.env(name, value);
    }
    run_ok(&mut command);
}

#[test]
fn telemetry_enabled_false_sends_and_writes_nothing_and_wins_over_an_opt_in() {
    // The control: the same run, opted in, sends and keeps an installation.
    let control = sandbox();
    run_with(&control, &[("BENCH_TELEMETRY_ENABLED", "true")]);
    assert!(!control.receiver.requests().is_empty());
    assert!(!only(&app_events(&control), "batch_started").is_null());
    assert!(!files_under(&control.state_dir("bench")).is_empty());

    // Each value that reads as false, and one that cannot be read (which counts as off).
    for value in ["false", "0", "no", "OFF", " False ", "maybe"] {
        let sandbox = sandbox();
        run_with(&sandbox, &[("BENCH_TELEMETRY_ENABLED", value)]);
        assert_nothing_sent_or_written(
            &sandbox,
            "bench",
            &format!("BENCH_TELEMETRY_ENABLED={value:?}"),
        );
        let status = run_ok(
            sandbox
                .command(&["telemetry", "status"])
                .env("BENCH_TELEMETRY_ENABLED", value),
        );
        let status = String::from_utf8_lossy(&status.stdout);
        assert!(
            status.contains("off") && status.contains("BENCH_TELEMETRY_ENABLED"),
            "{status}"
        );
    }
}

#[test]
fn the_library_opt_outs_also_leave_nothing() {
    // DO_NOT_TRACK wins over BENCH_TELEMETRY=on; the other two replace it.
    for (name, value, opted_in) in [
        ("DO_NOT_TRACK", "1", true),
        ("BENCH_TELEMETRY", "off", false),
        ("CI", "true", false),
    ] {
        let sandbox = sandbox();
        let args = ["run", "--tasks", "2"];
        let mut command = if opted_in {
            sandbox.opted_in(&args)
        } else {
            sandbox.command(&args)
        };
        command.env(name, value);
        run_ok(&mut command);
        assert!(sandbox.receiver.requests().is_empty(), "{name}={value}");
        assert!(
            files_under(&sandbox.state_dir("bench")).is_empty(),
            "{name}={value}"
        );
    }
    // A saved choice: `bench telemetry disable` wins over BENCH_TELEMETRY=on.
    let sandbox = sandbox();
    run_ok(&mut sandbox.command(&["telemetry", "disable"]));
    run_with(&sandbox, &[]);
    assert!(sandbox.receiver.requests().is_empty());
}

/// The payloads debug mode printed: each `[bench telemetry] <url>:` line followed by the
/// pretty-printed body.
fn printed_payloads(stderr: &str) -> Vec<Value> {
    let label = "[bench telemetry] ";
    let mut payloads = Vec::new();
    let mut rest = stderr;
    while let Some(start) = rest.find(label) {
        let after = &rest[start + label.len()..];
        let body_start = after.find(":\n").expect("a destination line") + 2;
        let mut stream = serde_json::Deserializer::from_str(&after[body_start..]).into_iter();
        let payload: Value = stream.next().expect("a payload").expect("JSON");
        payloads.push(payload);
        rest = &after[body_start + stream.byte_offset()..];
    }
    payloads
}

#[test]
fn debug_prints_exactly_the_events_that_are_sent() {
    let sandbox = sandbox();
    let mut command = sandbox.opted_in(&["run", "--variants", "2", "--parallelism", "2"]);
    command.env("BENCH_TELEMETRY_DEBUG", "on");
    let output = run_ok(&mut command);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let printed: BTreeMap<String, Value> = printed_payloads(&stderr)
        .into_iter()
        .flat_map(|payload| payload["batch"].as_array().cloned().unwrap_or_default())
        .map(|event| (event["uuid"].as_str().unwrap().to_owned(), event))
        .collect();
    let received: BTreeMap<String, Value> = sandbox
        .receiver
        .events()
        .into_iter()
        .map(|event| (event["uuid"].as_str().unwrap().to_owned(), event))
        .collect();
    assert!(received.len() > 10, "{received:#?}");
    assert_eq!(
        printed.keys().collect::<Vec<_>>(),
        received.keys().collect::<Vec<_>>()
    );
    for (uuid, event) in &received {
        assert_eq!(printed[uuid]["event"], event["event"], "{uuid}");
        assert_eq!(printed[uuid]["properties"], event["properties"], "{uuid}");
    }

    // Without it, nothing is printed.
    let quiet = run_ok(&mut sandbox.opted_in(&["run", "--tasks", "1"]));
    assert!(printed_payloads(&String::from_utf8_lossy(&quiet.stderr)).is_empty());
}

#[test]
fn what_identifies_the_user_is_never_sent() {
    let sandbox = sandbox();
    let dataset = write_dataset(&sandbox);
    let out = sandbox.home.path().join(USER_DIR).join("out");
    let prompt = "log in as grace with password hunter2";
    let trace = out.join("trace.jsonl");
    for args in [
        vec![
            "run",
            "--dataset",
            text(&dataset),
            "--agent",
            PRIVATE_AGENT,
            "--model",
            PRIVATE_MODEL,
            "--api-key",
            API_KEY,
            "--output",
            text(&out),
            "--provider",
            "cloud",
        ],
        // The built-in datasets' failures quote a path, a URL with the key, an address.
        vec!["run", "--dataset", "bench-basic", "--api-key", API_KEY],
        vec!["run", "--dataset", "bench-office"],
        vec!["interact", "--env", "click-button", "--prompt", prompt],
        vec!["trace", text(&trace)],
    ] {
        run_ok(&mut sandbox.opted_in(&args));
    }
    let names: Vec<Value> = sandbox.receiver.events();
    assert!(named(&names, "task_failed").len() >= 4);
    assert_never_sent(
        &sandbox.receiver,
        &[
            USER_DIR,
            "grace",
            "hopper",
            "acme",
            "payroll",
            "ledger",
            "vpn",
            API_KEY,
            "sk-live",
            "sk-bench",
            PRIVATE_MODEL,
            "gpt-4o",
            "hunter2",
            prompt,
            text(sandbox.home.path()),
            "alice",
            "agents.bench.example",
            "example.com",
            "qcow2",
        ],
    );
}

#[test]
fn a_dataset_files_failure_message_and_the_api_key_are_never_sent() {
    let sandbox = sandbox();
    let path = sandbox.home.path().join("suite.json");
    let task = serde_json::json!({
        "env": "vpn",
        "os": "linux",
        "outcome": "fails",
        "stage": "step",
        "error": "authentication_error",
        "message": "login as alice.martin with password {api_key} for Alice Martin",
    });
    std::fs::write(&path, serde_json::json!({ "tasks": [task] }).to_string()).unwrap();
    let output = run_ok(&mut sandbox.opted_in(&[
        "run",
        "--dataset",
        text(&path),
        "--api-key",
        "hunter2pass",
    ]));
    // The user sees their message; it stays on their machine.
    assert!(String::from_utf8_lossy(&output.stdout).contains("Alice Martin"));
    let events = sandbox.receiver.events();
    let failed = only(&events, "task_failed");
    assert_eq!(failed["properties"]["error_message"], Value::Null);
    assert_eq!(failed["properties"]["error_type"], "authentication_error");
    assert_eq!(failed["properties"]["stage"], "step");
    assert_never_sent(
        &sandbox.receiver,
        &["alice.martin", "Alice Martin", "hunter2pass"],
    );
}
