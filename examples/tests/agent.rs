//! `agent` as its users run it, against a receiver on 127.0.0.1: what each flow sends, that a
//! signal stops it cleanly, what a panic reports, that each opt-out sends and writes nothing,
//! and that nothing identifying leaves the machine.

#![deny(warnings, unused_qualifications)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Value, json};
use support::{
    Sandbox, assert_never_sent, assert_nothing_sent_or_written, every_event_properties,
    files_under, named, only, own_properties, run_ok,
};

const MARKER: &str = ".opt-out-from-anonymous-statistics";

fn sandbox() -> Sandbox {
    Sandbox::new(env!("CARGO_BIN_EXE_agent"), "AGENT")
}

/// The configuration directory the agent uses by default in `sandbox`.
fn config_dir(sandbox: &Sandbox) -> PathBuf {
    sandbox.config_home().join("agent")
}

fn names(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .map(|event| event["event"].as_str().expect("a name"))
        .collect()
}

/// The property names of `event` that are its own, not sent with every event.
fn own(event: &Value, every_event: &[String]) -> Vec<String> {
    let every_event: Vec<&str> = every_event.iter().map(String::as_str).collect();
    own_properties(event, &every_event)
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

const COMMAND_PROPERTIES: [&str; 6] = [
    "command",
    "duration_ms",
    "outcome",
    "error_type",
    "error_message",
    "error_message_truncated",
];

fn with(base: &[&str], more: &[&str]) -> Vec<String> {
    base.iter()
        .chain(more)
        .map(|name| (*name).to_owned())
        .collect()
}

#[test]
fn a_run_sends_its_start_configuration_command_and_clean_stop() {
    let sandbox = sandbox();
    let every_event = every_event_properties(&sandbox);
    let output = run_ok(&mut sandbox.opted_in(&["run", "--exit-after", "0"]));
    let printed = stdout(&output);
    assert!(printed.starts_with("ready\nround 1: load "), "{printed}");
    assert!(printed.contains("stopped after 1 rounds"), "{printed}");

    let events = sandbox.receiver.events();
    assert_eq!(
        names(&events),
        ["app_started", "agent_configured", "command", "app_stopped"]
    );

    let started = only(&events, "app_started");
    assert_eq!(own(started, &every_event), ["first_run"]);
    assert_eq!(started["properties"]["first_run"], true);

    let configured = only(&events, "agent_configured");
    assert_eq!(
        own(configured, &every_event),
        ["collectors", "update_every", "config_file"]
    );
    assert_eq!(
        configured["properties"]["collectors"],
        json!(["load", "memory", "processes"])
    );
    assert_eq!(configured["properties"]["update_every"], 1000);
    assert_eq!(configured["properties"]["config_file"], false);

    let command = only(&events, "command");
    assert_eq!(
        own(command, &every_event),
        with(&COMMAND_PROPERTIES, &["exit_after", "panic_after"])
    );
    let properties = &command["properties"];
    assert_eq!(properties["command"], "run");
    assert_eq!(properties["outcome"], "ok");
    assert_eq!(properties["error_type"], Value::Null);
    assert_eq!(properties["exit_after"], 0);
    assert_eq!(properties["panic_after"], Value::Null);

    let stopped = only(&events, "app_stopped");
    assert_eq!(own(stopped, &every_event), ["uptime_ms", "panics"]);
    assert!(stopped["properties"]["uptime_ms"].is_u64(), "{stopped}");
    assert_eq!(stopped["properties"]["panics"], 0);

    // Netdata's host description comes with every event, under one random installation id.
    let installation = &started["properties"]["installation_id"];
    for event in &events {
        let properties = &event["properties"];
        for name in [
            "os_name",
            "kernel_name",
            "arch",
            "virtualization",
            "container",
        ] {
            assert!(
                properties[name].as_str().is_some_and(|v| !v.is_empty()),
                "{name} in {event}"
            );
        }
        for name in ["os_version", "os_id", "os_id_like", "kernel_release"] {
            assert!(properties.get(name).is_some(), "{name} in {event}");
        }
        assert_eq!(&properties["installation_id"], installation);
        assert_eq!(properties["$app_version"], env!("CARGO_PKG_VERSION"));
    }
}

#[test]
fn install_then_a_configured_run_report_the_settings_and_never_the_files() {
    let sandbox = sandbox();
    let every_event = every_event_properties(&sandbox);
    let output = run_ok(&mut sandbox.opted_in(&["install"]));
    assert!(
        stdout(&output).contains("to opt out"),
        "{}",
        stdout(&output)
    );
    assert!(config_dir(&sandbox).join("agent.conf").is_file());
    assert!(!config_dir(&sandbox).join(MARKER).exists());

    let events = sandbox.receiver.events();
    assert_eq!(names(&events), ["app_started", "command", "app_stopped"]);
    let command = only(&events, "command");
    assert_eq!(
        own(command, &every_event),
        with(&COMMAND_PROPERTIES, &["disable_telemetry"])
    );
    assert_eq!(command["properties"]["command"], "install");
    assert_eq!(command["properties"]["outcome"], "ok");
    assert_eq!(command["properties"]["disable_telemetry"], false);
    let installation = command["properties"]["installation_id"].clone();

    std::fs::write(
        config_dir(&sandbox).join("agent.conf"),
        "update_every = 5\ncollectors = memory\n",
    )
    .unwrap();
    sandbox.receiver.clear();
    let output = run_ok(&mut sandbox.opted_in(&["run", "--exit-after", "0"]));
    assert!(
        stdout(&output).contains("round 1: memory "),
        "{}",
        stdout(&output)
    );
    let events = sandbox.receiver.events();
    let configured = &only(&events, "agent_configured")["properties"];
    assert_eq!(configured["collectors"], json!(["memory"]));
    assert_eq!(configured["update_every"], 5000);
    assert_eq!(configured["config_file"], true);
    assert_eq!(configured["installation_id"], installation);
    assert_eq!(
        only(&events, "app_started")["properties"]["first_run"],
        false
    );
}

#[test]
fn a_malformed_configuration_fails_clearly_and_reports_no_content() {
    let sandbox = sandbox();
    std::fs::create_dir_all(config_dir(&sandbox)).unwrap();
    std::fs::write(
        config_dir(&sandbox).join("agent.conf"),
        "update_every = 1\napi_token = hunter2-from-alice\n",
    )
    .unwrap();
    let output = sandbox
        .opted_in(&["run", "--exit-after", "0"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("agent.conf, line 2: unknown setting"),
        "{}",
        stderr(&output)
    );
    assert!(!stdout(&output).contains("ready"));

    let events = sandbox.receiver.events();
    assert_eq!(names(&events), ["app_started", "command", "app_stopped"]);
    let command = &only(&events, "command")["properties"];
    assert_eq!(command["outcome"], "error");
    assert!(
        command["error_type"]
            .as_str()
            .is_some_and(|t| t.ends_with("ConfigError")),
        "{command}"
    );
    assert_eq!(
        command["error_message"],
        "<path>, line 2: unknown setting (expected update_every or collectors)"
    );
    assert_never_sent(
        &sandbox.receiver,
        &[
            "hunter2",
            "api_token",
            &sandbox.home.path().to_string_lossy(),
        ],
    );
}

/// Runs the agent until it prints `ready`, sends it `signal` with `kill`, and returns what it
/// printed after `ready` once it has exited, failing unless it exited successfully.
#[cfg(unix)]
fn stop_with(sandbox: &Sandbox, signal: &str) -> String {
    use std::io::{BufRead as _, BufReader, Read as _};
    use std::process::Stdio;

    // Left alone it would run for ten minutes: an end even if the signal were ignored.
    let mut agent = sandbox
        .opted_in(&["run", "--exit-after", "600"])
        .spawn()
        .expect("run the agent");
    let mut stdout = BufReader::new(agent.stdout.take().unwrap());
    let mut ready = String::new();
    stdout.read_line(&mut ready).unwrap();
    assert_eq!(ready, "ready\n");

    let sent = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(agent.id().to_string())
        .stdin(Stdio::null())
        .status()
        .expect("run kill");
    assert!(sent.success());
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    let status = agent.wait().unwrap();
    let mut stderr = String::new();
    agent
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(status.success(), "SIG{signal}: {status}\n{rest}\n{stderr}");
    rest
}

#[cfg(unix)]
#[test]
fn sigterm_and_sigint_stop_the_agent_cleanly() {
    for signal in ["TERM", "INT"] {
        let sandbox = sandbox();
        let rest = stop_with(&sandbox, signal);
        assert!(
            rest.contains("stopped by a signal after"),
            "SIG{signal}: {rest}"
        );

        let events = sandbox.receiver.events();
        assert_eq!(
            names(&events),
            ["app_started", "agent_configured", "command", "app_stopped"],
            "SIG{signal}: app_stopped, last and once"
        );
        let command = &only(&events, "command")["properties"];
        assert_eq!(command["outcome"], "ok");
        assert_eq!(command["exit_after"], 600);
        assert_eq!(only(&events, "app_stopped")["properties"]["panics"], 0);
    }
}

#[test]
fn a_panic_reports_process_thread_function_file_and_line() {
    let sandbox = sandbox();
    let every_event = every_event_properties(&sandbox);
    let output = sandbox
        .opted_in(&["run", "--panic-after", "0"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(stdout(&output).starts_with("ready\n"));
    assert!(
        stderr(&output).contains("--panic-after"),
        "{}",
        stderr(&output)
    );

    let events = sandbox.receiver.events();
    assert!(named(&events, "app_stopped").is_empty(), "{events:#?}");
    let fatal = only(&events, "app_fatal");
    assert_eq!(
        own(fatal, &every_event),
        [
            "process",
            "process_truncated",
            "thread",
            "thread_truncated",
            "file",
            "line",
            "column",
            "command",
            "function",
            "message",
            "message_truncated",
        ]
    );
    let properties = &fatal["properties"];
    assert_eq!(properties["process"], "agent");
    assert_eq!(properties["thread"], "main");
    assert_eq!(properties["function"], "run");
    assert_eq!(properties["command"], "run");
    let file = properties["file"].as_str().expect("a file");
    assert!(
        Path::new(file).is_relative() && file.ends_with("src/bin/agent/collect.rs"),
        "{file}"
    );
    assert!(properties["line"].as_u64().is_some_and(|line| line > 0));
    assert!(
        properties["message"]
            .as_str()
            .is_some_and(|m| m.contains("--panic-after")),
        "{properties}"
    );
    assert_never_sent(&sandbox.receiver, &[&sandbox.home.path().to_string_lossy()]);
}

/// Runs `agent run --exit-after 0` opted in, with `configure` adding an opt-out (or not), and
/// returns the sandbox once it has exited successfully.
fn run_opted_in(configure: impl FnOnce(&Sandbox, &mut Command)) -> Sandbox {
    let sandbox = sandbox();
    let mut command = sandbox.opted_in(&["run", "--exit-after", "0"]);
    configure(&sandbox, &mut command);
    let output = run_ok(&mut command);
    assert!(
        stdout(&output).starts_with("ready\n"),
        "{}",
        stdout(&output)
    );
    sandbox
}

#[track_caller]
fn assert_sent(sandbox: &Sandbox) {
    assert!(!sandbox.receiver.requests().is_empty());
    assert!(!files_under(&sandbox.state_dir("agent")).is_empty());
}

#[test]
fn a_run_with_nothing_opting_out_sends_and_keeps_its_state() {
    assert_sent(&run_opted_in(|_, _| {}));
    // Netdata's rule: DISABLE_TELEMETRY opts out only when non-empty and not 0.
    for value in ["", "0"] {
        assert_sent(&run_opted_in(|_, command| {
            command.env("DISABLE_TELEMETRY", value);
        }));
    }
}

#[test]
fn the_opt_out_marker_sends_and_writes_nothing() {
    let sandbox = run_opted_in(|sandbox, _| {
        std::fs::create_dir_all(config_dir(sandbox)).unwrap();
        std::fs::write(config_dir(sandbox).join(MARKER), b"").unwrap();
    });
    assert_nothing_sent_or_written(&sandbox, "agent", "opted out");
}

#[test]
fn the_opt_out_marker_in_a_chosen_configuration_directory_sends_and_writes_nothing() {
    let mut chosen = None;
    let sandbox = run_opted_in(|sandbox, command| {
        let dir = sandbox.home.path().join("etc-agent");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(MARKER), b"").unwrap();
        command.env("AGENT_CONFIG_DIR", &dir);
        chosen = Some(dir);
    });
    assert_nothing_sent_or_written(&sandbox, "agent", "opted out");
    assert_eq!(files_under(&chosen.unwrap()).len(), 1, "only the marker");
}

#[test]
fn disable_telemetry_sends_and_writes_nothing() {
    // Any value but empty or `0` opts out, whitespace included: `" 0"` is not `0`.
    for value in ["1", "yes", "true", " 0", "0 ", " 0 ", " ", "\t1\n"] {
        let sandbox = run_opted_in(|_, command| {
            command.env("DISABLE_TELEMETRY", value);
        });
        assert_nothing_sent_or_written(&sandbox, "agent", "opted out");
    }
}

#[test]
fn install_disable_telemetry_opts_out_for_good_and_sends_nothing_itself() {
    let sandbox = sandbox();
    let output = run_ok(&mut sandbox.opted_in(&["install", "--disable-telemetry"]));
    assert!(
        stdout(&output).contains("anonymous statistics are off"),
        "{}",
        stdout(&output)
    );
    assert!(config_dir(&sandbox).join(MARKER).is_file());
    assert!(config_dir(&sandbox).join("agent.conf").is_file());
    assert_nothing_sent_or_written(&sandbox, "agent", "opted out");

    let output = run_ok(&mut sandbox.opted_in(&["run", "--exit-after", "0"]));
    assert!(stdout(&output).starts_with("ready\n"));
    assert_nothing_sent_or_written(&sandbox, "agent", "opted out");

    // Installing again without the flag keeps the choice.
    run_ok(&mut sandbox.opted_in(&["install"]));
    assert!(config_dir(&sandbox).join(MARKER).is_file());
    assert_nothing_sent_or_written(&sandbox, "agent", "opted out");
}

#[test]
fn telemetry_enable_is_refused_while_the_marker_opts_out_and_writes_nothing() {
    let sandbox = sandbox();
    std::fs::create_dir_all(config_dir(&sandbox)).unwrap();
    std::fs::write(config_dir(&sandbox).join(MARKER), b"").unwrap();
    for command in ["enable", "local"] {
        let output = sandbox.command(&["telemetry", command]).output().unwrap();
        assert!(!output.status.success(), "{command} is refused");
        let said = stderr(&output);
        assert!(
            said.contains("telemetry stays off (opt-out file ") && said.contains(MARKER),
            "{said}"
        );
        assert!(said.contains("nothing was changed"), "{said}");
        assert_eq!(
            files_under(&config_dir(&sandbox)),
            [config_dir(&sandbox).join(MARKER)],
            "only the marker"
        );
        assert_nothing_sent_or_written(&sandbox, "agent", "opted out");
    }
    // Opting out again is always possible, and a run afterwards still sends nothing.
    run_ok(&mut sandbox.command(&["telemetry", "disable"]));
    run_ok(&mut sandbox.opted_in(&["run", "--exit-after", "0"]));
    assert!(sandbox.receiver.requests().is_empty());

    // Without the marker, `enable` saves the choice.
    std::fs::remove_file(config_dir(&sandbox).join(MARKER)).unwrap();
    let output = run_ok(&mut sandbox.command(&["telemetry", "enable"]));
    assert!(
        stdout(&output).contains("Telemetry is enabled"),
        "{}",
        stdout(&output)
    );
    run_ok(&mut sandbox.command(&["run", "--exit-after", "0"]));
    assert!(!sandbox.receiver.requests().is_empty());
}

#[test]
fn telemetry_status_names_the_opt_out() {
    let sandbox = sandbox();
    let output = run_ok(
        sandbox
            .command(&["telemetry", "status"])
            .env("DISABLE_TELEMETRY", "1"),
    );
    assert!(
        stdout(&output).contains("off (DISABLE_TELEMETRY=1)"),
        "{}",
        stdout(&output)
    );
    assert!(sandbox.receiver.requests().is_empty());
}

#[test]
fn user_names_hosts_paths_and_secrets_are_never_sent() {
    let sandbox = sandbox();
    let home = sandbox.home.path().join("alice-private");
    let config = home.join(".config");
    let command = |args: &[&str]| {
        let mut command = sandbox.opted_in(args);
        command
            .env("HOME", &home)
            .env("XDG_CONFIG_HOME", &config)
            .env("USER", "alice-private")
            .env("LOGNAME", "alice-private")
            .env("HOSTNAME", "db7-payroll.corp.example")
            .env("NETDATA_CLAIM_TOKEN", "tok-5f1e2d3c4b5a69788796")
            .current_dir(&home);
        command
    };
    std::fs::create_dir_all(&home).unwrap();
    run_ok(&mut command(&["install"]));
    run_ok(&mut command(&["run", "--exit-after", "0"]));
    let panicked = command(&["run", "--panic-after", "0"]).output().unwrap();
    assert!(!panicked.status.success());
    std::fs::write(
        config.join("agent").join("agent.conf"),
        "collectors = load, gpu-of-alice-private\n",
    )
    .unwrap();
    let failed = command(&["run", "--exit-after", "0"]).output().unwrap();
    assert_eq!(failed.status.code(), Some(2));

    let events = sandbox.receiver.events();
    assert!(named(&events, "app_fatal").len() == 1, "{events:#?}");
    assert!(
        named(&events, "command")
            .iter()
            .any(|event| event["properties"]["outcome"] == "error"),
        "{events:#?}"
    );
    assert_never_sent(
        &sandbox.receiver,
        &[
            "alice",
            "db7-payroll",
            "corp.example",
            "tok-5f1e2d3c4b5a69788796",
            "gpu-of",
            &sandbox.home.path().to_string_lossy(),
            &home.to_string_lossy(),
        ],
    );
}
