//! Whole processes: a program using telemetry exits within its flush deadline whatever the
//! endpoint does, what it could not deliver is sent by the next process with the same uuids,
//! two processes never both send one spool file, and debug mode prints what is sent.

#![deny(warnings, unused_qualifications)]

mod support;

use std::collections::HashSet;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{Receiver, refused_origin, spooled_uuids};

/// Runs the probe program with only the given environment (no `CI`, no proxies, no home of
/// the machine's user) and returns its output and how long it took.
fn probe(events: u32, state: &Path, vars: &[(&str, &str)]) -> (Output, Duration) {
    probe_with(&[&events.to_string()], state, vars)
}

/// Runs the probe with `args`, as [`probe`] does.
fn probe_with(args: &[&str], state: &Path, vars: &[(&str, &str)]) -> (Output, Duration) {
    let mut command = support::probe(args, state, vars);
    let started = Instant::now();
    let output = command.output().expect("run the probe");
    let took = started.elapsed();
    assert!(
        output.status.success(),
        "the probe failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    (output, took)
}

/// The probe's final accounting.
fn stats(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).expect("the probe prints its stats as JSON")
}

/// A server on 127.0.0.1 that accepts connections and never answers, holding them open.
struct BlackHole {
    origin: String,
    _held: Arc<Mutex<Vec<TcpStream>>>,
}

fn black_hole() -> BlackHole {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let held = Arc::new(Mutex::new(Vec::new()));
    let holding = Arc::clone(&held);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            holding.lock().unwrap().push(stream);
        }
    });
    BlackHole {
        origin,
        _held: held,
    }
}

/// How much longer than its deadline a process may take to exit: scheduling on a loaded CI
/// machine, writing the spool. The default deadline is 300 ms and the endpoint's request
/// timeout is 5 s, so a process that waited for the request would exceed this by far.
const MARGIN: Duration = Duration::from_millis(1500);
const DEFAULT_DEADLINE: Duration = Duration::from_millis(300);

#[test]
fn an_endpoint_that_never_answers_cannot_hold_the_process_and_loses_nothing() {
    let hole = black_hole();
    let state = tempfile::tempdir().unwrap();
    let (_, baseline) = probe(3, state.path(), &[("PROBE_TELEMETRY", "off")]);
    let (output, took) = probe(
        3,
        state.path(),
        &[("PROBE_TELEMETRY_ENDPOINT", &hole.origin)],
    );
    assert!(
        took < baseline + DEFAULT_DEADLINE + MARGIN,
        "took {took:?}; without telemetry {baseline:?}"
    );
    let first = stats(&output);
    assert_eq!(first["captured"], 3);
    assert_eq!(first["spooled"], 3, "{first}");
    let spooled = spooled_uuids(state.path());
    assert_eq!(spooled.len(), 3);

    // The next run, with the endpoint back, sends them: same uuids, each once.
    let receiver = Receiver::healthy();
    let (output, _) = probe(
        0,
        state.path(),
        &[("PROBE_TELEMETRY_ENDPOINT", &receiver.origin)],
    );
    let second = stats(&output);
    assert_eq!(
        (second["restored"].as_u64(), second["delivered"].as_u64()),
        (Some(3), Some(3))
    );
    let mut delivered: Vec<String> = receiver.received().iter().flat_map(|r| r.uuids()).collect();
    delivered.sort();
    assert_eq!(delivered, spooled);
    assert!(
        spooled_uuids(state.path()).is_empty(),
        "the spool is emptied"
    );
}

#[test]
fn a_refused_connection_exits_within_the_deadline_and_spools() {
    let state = tempfile::tempdir().unwrap();
    let (_, baseline) = probe(5, state.path(), &[("PROBE_TELEMETRY", "off")]);
    let origin = refused_origin();
    let (output, took) = probe(5, state.path(), &[("PROBE_COMPILED_ENDPOINT", &origin)]);
    assert!(took < baseline + DEFAULT_DEADLINE + MARGIN, "took {took:?}");
    assert_eq!(stats(&output)["spooled"], 5);
    assert_eq!(spooled_uuids(state.path()).len(), 5);
}

#[test]
fn two_processes_replaying_one_spool_send_each_event_once() {
    for round in 0..3 {
        let state = tempfile::tempdir().unwrap();
        let refused = refused_origin();
        for _ in 0..4 {
            probe(10, state.path(), &[("PROBE_TELEMETRY_ENDPOINT", &refused)]);
        }
        let spooled = spooled_uuids(state.path());
        assert_eq!(spooled.len(), 40);

        let receiver = Receiver::healthy();
        let vars = [
            ("PROBE_TELEMETRY_ENDPOINT", receiver.origin.as_str()),
            ("PATH", ""),
        ];
        // Both start before either finishes.
        let spawn = || support::probe(&["0"], state.path(), &vars).spawn().unwrap();
        let (a, b) = (spawn(), spawn());
        for child in [a, b] {
            assert!(child.wait_with_output().unwrap().status.success());
        }
        let delivered: Vec<String> = receiver.received().iter().flat_map(|r| r.uuids()).collect();
        let unique: HashSet<&String> = delivered.iter().collect();
        assert_eq!(
            unique.len(),
            delivered.len(),
            "round {round}: an event was sent twice"
        );
        // Whatever a process could not send in its deadline is back in the spool.
        let mut accounted: Vec<String> = delivered.clone();
        accounted.extend(spooled_uuids(state.path()));
        accounted.sort();
        assert_eq!(accounted, spooled, "round {round}: events lost or invented");
        assert!(!delivered.is_empty());
    }
}

#[test]
fn debug_mode_prints_each_payload_as_sent() {
    let receiver = Receiver::healthy();
    let state = tempfile::tempdir().unwrap();
    let (output, _) = probe(
        2,
        state.path(),
        &[
            ("PROBE_TELEMETRY_ENDPOINT", &receiver.origin),
            ("PROBE_TELEMETRY_DEBUG", "1"),
        ],
    );
    assert_eq!(stats(&output)["delivered"], 2);
    let sent = receiver.next();
    let stderr = String::from_utf8(output.stderr).unwrap();
    let header = format!("[probe telemetry] {}/batch/:\n", receiver.origin);
    let start = stderr
        .find(&header)
        .unwrap_or_else(|| panic!("no payload in {stderr:?}"));
    let printed = &stderr[start + header.len()..];
    assert!(
        printed.starts_with("{\n  \"api_key\": \"phc_probe\",\n  \"batch\": ["),
        "{printed}"
    );
    let mut stream = serde_json::Deserializer::from_str(printed).into_iter::<Value>();
    let value = stream.next().unwrap().unwrap();
    assert_eq!(value, sent.json);
    // Exactly as sent: without the indentation, the printed text is the body byte for byte.
    let printed = &printed[..stream.byte_offset()];
    assert_eq!(
        without_layout(printed),
        String::from_utf8(sent.body).unwrap()
    );
}

/// JSON text without the whitespace outside strings.
fn without_layout(json: &str) -> String {
    let mut out = String::new();
    let (mut in_string, mut escaped) = (false, false);
    for c in json.chars() {
        if in_string {
            out.push(c);
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !c.is_whitespace() {
            out.push(c);
        }
    }
    out
}

/// The names in `dir`.
fn names_in(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir).map_or(Vec::new(), |entries| {
        entries
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    })
}

#[test]
fn off_writes_no_file_and_starts_no_thread() {
    let state = tempfile::tempdir().unwrap();
    let marker = state.path().join("opt-out");
    for vars in [
        &[("DO_NOT_TRACK", "1")][..],
        &[("PROBE_TELEMETRY", "off")],
        &[("PROBE_DISABLE_TELEMETRY", "1")],
        &[("CI", "true")],
        &[("GITHUB_ACTIONS", "true")],
        &[("PROBE_OPT_OUT_FILE", "/")],
    ] {
        let (output, _) = probe(5, state.path(), vars);
        let stats = stats(&output);
        assert_eq!(stats["mode"], "off", "{vars:?}");
        assert_eq!(stats["captured"], 0, "{vars:?}");
        assert_eq!(stats["threads_after"], stats["threads_before"], "{vars:?}");
        assert!(
            names_in(state.path()).is_empty(),
            "{vars:?}: {:?}",
            names_in(state.path())
        );
    }
    // The same count does see the background thread when telemetry runs.
    let (output, _) = probe(5, state.path(), &[]);
    let running = stats(&output);
    assert_eq!(running["mode"], "local");
    assert_eq!(
        running["threads_after"].as_u64().unwrap(),
        running["threads_before"].as_u64().unwrap() + 1
    );
    // An opt-out file the user creates turns it off again.
    std::fs::write(&marker, "").unwrap();
    let marker_text = marker.display().to_string();
    let (output, _) = probe(5, state.path(), &[("PROBE_OPT_OUT_FILE", &marker_text)]);
    assert_eq!(stats(&output)["mode"], "off");
}

#[test]
fn an_explicit_opt_in_counts_under_ci() {
    let state = tempfile::tempdir().unwrap();
    let (output, _) = probe(
        1,
        state.path(),
        &[("CI", "true"), ("PROBE_TELEMETRY", "on")],
    );
    assert_eq!(stats(&output)["mode"], "local");
    let (output, _) = probe(1, state.path(), &[("CI", "false")]);
    assert_eq!(stats(&output)["mode"], "local");
}

#[test]
fn processes_racing_on_the_first_run_agree_on_one_installation_id() {
    let state = tempfile::tempdir().unwrap();
    let children: Vec<_> = (0..8)
        .map(|_| {
            support::probe(&["1"], state.path(), &[])
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let ids: HashSet<String> = children
        .into_iter()
        .map(|child| {
            let output = child.wait_with_output().unwrap();
            assert!(output.status.success());
            stats(&output)["installation_id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(ids.len(), 1, "{ids:?}");
    let saved = std::fs::read_to_string(state.path().join("installation-id")).unwrap();
    assert!(ids.contains(saved.trim()));
}

#[test]
fn status_names_the_setting_that_decided() {
    let state = tempfile::tempdir().unwrap();
    let marker = state.path().join("opt-out");
    std::fs::write(&marker, "").unwrap();
    let marker_text = marker.display().to_string();
    for (vars, expected) in [
        (
            &[("DO_NOT_TRACK", "1")][..],
            "telemetry:        off (DO_NOT_TRACK=1)".to_owned(),
        ),
        (
            &[("PROBE_DISABLE_TELEMETRY", "yes")],
            "telemetry:        off (PROBE_DISABLE_TELEMETRY=yes)".to_owned(),
        ),
        (
            &[("PROBE_TELEMETRY", "maybe")],
            "telemetry:        off (PROBE_TELEMETRY=maybe; not true/false".to_owned(),
        ),
        (
            &[("PROBE_OPT_OUT_FILE", &marker_text)],
            format!("telemetry:        off (opt-out file {marker_text})"),
        ),
        (
            &[("TF_BUILD", "True")],
            "telemetry:        off (running in CI (azure-pipelines))".to_owned(),
        ),
        (
            &[("PROBE_TELEMETRY", "local")],
            "telemetry:        local (PROBE_TELEMETRY=local)".to_owned(),
        ),
    ] {
        let (output, _) = probe_with(&["telemetry", "status"], state.path(), vars);
        let shown = String::from_utf8(output.stdout).unwrap();
        assert!(shown.contains(&expected), "{vars:?}:\n{shown}");
    }
    let mut command = Command::new(env!("CARGO_BIN_EXE_telemetry-probe"));
    let output = command
        .args(["telemetry", "frobnicate"])
        .env_clear()
        .output()
        .unwrap();
    assert!(!output.status.success());
    let error = String::from_utf8(output.stderr).unwrap();
    assert!(error.contains("unknown telemetry command"), "{error}");
}

#[test]
fn the_first_run_notice_is_printed_once_and_its_events_wait() {
    let receiver = Receiver::healthy();
    let state = tempfile::tempdir().unwrap();
    let vars = [
        ("PROBE_COMPILED_ENDPOINT", receiver.origin.as_str()),
        ("PROBE_FIRST_RUN", "hold"),
    ];
    let (first, _) = probe(2, state.path(), &vars);
    let notice = String::from_utf8(first.stderr.clone()).unwrap();
    assert!(notice.contains("probe telemetry schema"), "{notice}");
    assert!(notice.contains("DO_NOT_TRACK=1"), "{notice}");
    assert!(notice.contains("PROBE_TELEMETRY=off"), "{notice}");
    assert_eq!(stats(&first)["spooled"], 2);
    assert!(receiver.received().is_empty());

    let (second, _) = probe(1, state.path(), &vars);
    assert!(
        !String::from_utf8_lossy(&second.stderr).contains("telemetry schema"),
        "the notice was printed twice"
    );
    let second = stats(&second);
    assert_eq!(
        (second["restored"].as_u64(), second["delivered"].as_u64()),
        (Some(2), Some(3))
    );
}

/// Runs the program whose instrumented `main` starts telemetry itself.
fn command_probe(how: &str, state: &Path, vars: &[(&str, &str)]) -> Output {
    support::hermetic(
        env!("CARGO_BIN_EXE_telemetry-command-probe"),
        &[how],
        state,
        vars,
    )
    .env("PROBE_TELEMETRY_DIR", state)
    .output()
    .expect("run the command probe")
}

#[test]
fn an_instrumented_main_that_starts_telemetry_itself_sends_its_own_event() {
    for (how, outcome, success) in [
        ("ok", "ok", true),
        ("fail", "error", false),
        ("panic", "panic", false),
    ] {
        let receiver = Receiver::healthy();
        let state = tempfile::tempdir().unwrap();
        let output = command_probe(
            how,
            state.path(),
            &[("PROBE_TELEMETRY_ENDPOINT", &receiver.origin)],
        );
        assert_eq!(output.status.success(), success, "{how}: {output:?}");
        // The process has exited: everything it sent has arrived.
        let events = support::events(&receiver.received());
        let commands: Vec<&Value> = events.iter().filter(|e| e["event"] == "command").collect();
        assert_eq!(commands.len(), 1, "{how}: {events:#?}");
        let properties = &commands[0]["properties"];
        assert_eq!(properties["command"], "main", "{how}");
        assert_eq!(properties["outcome"], outcome, "{how}");
        assert!(properties["duration_ms"].is_u64(), "{how}");
        assert!(!commands[0].to_string().contains("alice"));
        // The guard dropped inside `main` left the stop to the end of `main`: its event comes
        // before `app_stopped`, which a panic does not send.
        let names: Vec<&str> = events
            .iter()
            .map(|e| e["event"].as_str().unwrap())
            .collect();
        let expected: &[&str] = if how == "panic" {
            &["app_started", "command"]
        } else {
            &["app_started", "command", "app_stopped"]
        };
        assert_eq!(names, expected, "{how}");
    }
}

#[test]
fn dropping_the_guard_inside_an_instrumented_main_still_delivers_what_was_captured() {
    let receiver = Receiver::healthy();
    let state = tempfile::tempdir().unwrap();
    let output = command_probe(
        "exit",
        state.path(),
        &[("PROBE_TELEMETRY_ENDPOINT", &receiver.origin)],
    );
    assert_eq!(output.status.code(), Some(3), "{output:?}");
    // `process::exit` skipped the end of `main`, so its own event is not sent; what was
    // captured before the guard was dropped is.
    let events = support::events(&receiver.received());
    let names: Vec<&Value> = events.iter().map(|event| &event["event"]).collect();
    assert!(names.contains(&&Value::from("worked")), "{names:?}");
    assert!(!names.contains(&&Value::from("command")), "{names:?}");
}

#[test]
fn an_instrumented_main_with_telemetry_off_sends_and_writes_nothing() {
    let receiver = Receiver::healthy();
    let state = tempfile::tempdir().unwrap();
    let output = command_probe(
        "ok",
        state.path(),
        &[
            ("PROBE_TELEMETRY_ENDPOINT", &receiver.origin),
            ("DO_NOT_TRACK", "1"),
        ],
    );
    assert!(output.status.success(), "{output:?}");
    assert!(receiver.received().is_empty());
    assert!(names_in(state.path()).is_empty());
}

#[test]
fn lifecycle_events_start_nothing_when_off_and_frame_a_local_run() {
    let state = tempfile::tempdir().unwrap();
    for vars in [
        &[("DO_NOT_TRACK", "1"), ("PROBE_LIFECYCLE", "1")][..],
        &[("PROBE_TELEMETRY", "off"), ("PROBE_LIFECYCLE", "1")],
        &[("CI", "true"), ("PROBE_LIFECYCLE", "1")],
    ] {
        let (output, _) = probe(2, state.path(), vars);
        let stats = stats(&output);
        assert_eq!(stats["mode"], "off", "{vars:?}");
        assert_eq!(stats["captured"], 0, "{vars:?}");
        assert_eq!(stats["threads_after"], stats["threads_before"], "{vars:?}");
        assert!(names_in(state.path()).is_empty(), "{vars:?}");
    }
    let (output, _) = probe(2, state.path(), &[("PROBE_LIFECYCLE", "1")]);
    let running = stats(&output);
    assert_eq!(running["mode"], "local");
    assert_eq!(
        (running["captured"].as_u64(), running["delivered"].as_u64()),
        (Some(4), Some(4))
    );
    let log = std::fs::read_to_string(state.path().join("events.jsonl")).unwrap();
    let names: Vec<String> = log
        .lines()
        .map(|line| {
            let event: Value = serde_json::from_str(line).unwrap();
            event["event"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(names, ["app_started", "worked", "worked", "app_stopped"]);
}

#[test]
fn a_panic_on_the_main_thread_is_sent_or_spooled_before_the_process_ends() {
    let run = |state: &Path, endpoint: &str| {
        let output = support::probe(
            &["1"],
            state,
            &[
                ("PROBE_TELEMETRY_ENDPOINT", endpoint),
                ("PROBE_LIFECYCLE", "1"),
                ("PROBE_PANIC", "1"),
            ],
        )
        .output()
        .expect("run the probe");
        assert_eq!(output.status.code(), Some(101), "{output:?}");
        // The hook that was there before still printed the message.
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("could not read /home/alice"), "{stderr}");
    };
    let receiver = Receiver::healthy();
    let state = tempfile::tempdir().unwrap();
    run(state.path(), &receiver.origin);
    let sent: Vec<Value> = receiver
        .received()
        .iter()
        .flat_map(|request| request.events().to_vec())
        .collect();
    let names: Vec<&str> = sent.iter().map(|e| e["event"].as_str().unwrap()).collect();
    // Unwinding dropped the guard: no clean stop, so no `app_stopped`.
    assert_eq!(names, ["app_started", "worked", "app_fatal"]);
    let fatal = &sent[2]["properties"];
    // The program runs as `telemetry-probe`, which is neither the app's name (`probe`) nor
    // one of its helpers' (`probe-...`): the app's name is sent instead of a name chosen by
    // whoever installed it.
    assert_eq!(fatal["process"], "probe");
    assert_eq!(fatal["thread"], "main");
    assert_eq!(fatal["file"], "tests/probe.rs");
    assert_eq!(fatal["message"], "the probe could not read <path>");
    assert!(!sent[2].to_string().contains("alice"), "{}", sent[2]);
    assert!(spooled_uuids(state.path()).is_empty());

    // Nothing listening: the event waits in the spool for the next run.
    let state = tempfile::tempdir().unwrap();
    run(state.path(), &refused_origin());
    let spool = state.path().join("spool");
    let spooled: String = std::fs::read_dir(&spool)
        .unwrap()
        .map(|entry| std::fs::read_to_string(entry.unwrap().path()).unwrap())
        .collect();
    let spooled: Vec<Value> = spooled
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let names: Vec<&str> = spooled
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["app_started", "worked", "app_fatal"]);
}
