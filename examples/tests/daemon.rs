//! The daemon example as a service manager runs it: SIGTERM or SIGINT makes it return from
//! `main`, so its local telemetry log ends with `app_stopped`.

#![cfg(unix)]
#![deny(warnings, unused_qualifications)]

use std::io::{BufRead as _, BufReader, Read as _};
use std::process::{Command, Stdio};

use serde_json::Value;

#[test]
fn sigterm_and_sigint_stop_the_daemon_cleanly() {
    for signal in ["TERM", "INT"] {
        let state = tempfile::tempdir().unwrap();
        // Left alone it would run for a minute: far longer than the test needs, and still an
        // end if the signal were ignored.
        let mut daemon = Command::new(env!("CARGO_BIN_EXE_daemon"))
            .args(["--rounds", "6000", "--interval-ms", "10"])
            .env_clear()
            .env("HOME", state.path())
            .env("DAEMON_TELEMETRY_DIR", state.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run the daemon");
        let mut stdout = BufReader::new(daemon.stdout.take().unwrap());
        let mut ready = String::new();
        stdout.read_line(&mut ready).unwrap();
        assert_eq!(ready, "ready\n");

        let sent = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(daemon.id().to_string())
            .status()
            .expect("run kill");
        assert!(sent.success());
        let mut rest = String::new();
        stdout.read_to_string(&mut rest).unwrap();
        let status = daemon.wait().unwrap();
        let mut stderr = String::new();
        daemon
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        assert!(status.success(), "SIG{signal}: {status}\n{rest}\n{stderr}");
        assert!(
            rest.starts_with("stopped by a signal"),
            "SIG{signal}: {rest}"
        );

        let log = std::fs::read_to_string(state.path().join("events.jsonl")).unwrap();
        let events: Vec<Value> = log
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        let names: Vec<&str> = events
            .iter()
            .map(|event| event["event"].as_str().unwrap())
            .collect();
        assert_eq!(names.first(), Some(&"app_started"), "{names:?}");
        assert_eq!(names.last(), Some(&"app_stopped"), "{names:?}");
        assert_eq!(
            names.iter().filter(|name| **name == "app_stopped").count(),
            1
        );
        let stopped = &events[events.len() - 1]["properties"];
        assert!(stopped["uptime_ms"].as_u64().is_some(), "{stopped}");
        assert_eq!(stopped["panics"], 0);
    }
}
