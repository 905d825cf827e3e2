//! Running an example program the way a user would, isolated from this machine: its own home
//! and config directory, an environment holding only what the test gives it, no terminal, and
//! a receiver on 127.0.0.1 standing in for PostHog.

#![allow(dead_code, reason = "each test file uses a different part")]

use std::io::{BufRead as _, BufReader, Read as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Output, Stdio};

use examples::receiver::Receiver;
use serde_json::Value;

/// A home directory, a receiver, and the program's environment-variable prefix.
pub struct Sandbox {
    pub home: tempfile::TempDir,
    pub receiver: Receiver,
    program: PathBuf,
    prefix: &'static str,
}

impl Sandbox {
    /// A sandbox for `program` (its `CARGO_BIN_EXE_*` path), whose variables start with
    /// `prefix` (`JOBS`).
    pub fn new(program: &str, prefix: &'static str) -> Sandbox {
        Sandbox {
            home: tempfile::tempdir().expect("a temporary directory"),
            receiver: Receiver::start().expect("a receiver on 127.0.0.1"),
            program: PathBuf::from(program),
            prefix,
        }
    }

    /// `$XDG_CONFIG_HOME`, inside the sandbox's home.
    pub fn config_home(&self) -> PathBuf {
        self.home.path().join(".config")
    }

    /// The program with `args`, in an environment with only the sandbox's home, its config
    /// directory and the endpoint of the receiver: telemetry neither inherits this machine's
    /// opt-outs nor the CI marker of the test run. Nothing else opts in: a test that expects
    /// events sets `PREFIX_TELEMETRY=on` ([`Sandbox::opted_in`]) or runs a second time.
    pub fn command<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> Command {
        let mut command = Command::new(&self.program);
        command
            .args(args)
            .env_clear()
            .env("HOME", self.home.path())
            .env("XDG_CONFIG_HOME", self.config_home())
            .env(
                format!("{}_TELEMETRY_ENDPOINT", self.prefix),
                self.receiver.origin(),
            )
            .current_dir(self.home.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(path) = std::env::var_os("PATH") {
            command.env("PATH", path);
        }
        command
    }

    /// As [`Sandbox::command`], with telemetry turned on explicitly (`PREFIX_TELEMETRY=on`), so
    /// that the first run sends at once, as it would after its notice.
    pub fn opted_in<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> Command {
        let mut command = self.command(args);
        command.env(format!("{}_TELEMETRY", self.prefix), "on");
        command
    }

    /// The telemetry state directory the program uses by default.
    pub fn state_dir(&self, app: &str) -> PathBuf {
        self.config_home().join(app).join("telemetry")
    }
}

/// Runs `command` to its end and returns its output, failing the test with the output when
/// it did not succeed.
#[track_caller]
pub fn run_ok(command: &mut Command) -> Output {
    let output = command.output().expect("the program runs");
    assert!(
        output.status.success(),
        "{:?} failed: {}\nstdout:\n{}\nstderr:\n{}",
        command,
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// The events named `name`.
pub fn named<'a>(events: &'a [Value], name: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|event| event["event"] == name)
        .collect()
}

/// The one event named `name`.
#[track_caller]
pub fn only<'a>(events: &'a [Value], name: &str) -> &'a Value {
    let found = named(events, name);
    assert_eq!(found.len(), 1, "one `{name}` event expected in {events:#?}");
    found[0]
}

/// The property names of an event, in the order sent, without those sent with every event.
pub fn own_properties(event: &Value, every_event: &[&str]) -> Vec<String> {
    event["properties"]
        .as_object()
        .expect("properties")
        .keys()
        .filter(|name| !name.starts_with('$') && !every_event.contains(&name.as_str()))
        .cloned()
        .collect()
}

/// Fails the test if any byte the receiver got contains one of `secrets` (case-insensitive).
#[track_caller]
pub fn assert_never_sent(receiver: &Receiver, secrets: &[&str]) {
    for request in receiver.requests() {
        let body = request.body.to_lowercase();
        for secret in secrets {
            assert!(
                !body.contains(&secret.to_lowercase()),
                "`{secret}` was sent: {}",
                request.body
            );
        }
    }
}

/// Every file under `dir`, recursively; empty when it does not exist.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_under(&path));
        } else {
            found.push(path);
        }
    }
    found
}

/// The properties the library sends with every event, from the program's
/// `telemetry schema --json`: what [`own_properties`] leaves out.
pub fn every_event_properties(sandbox: &Sandbox) -> Vec<String> {
    let output = run_ok(&mut sandbox.command(&["telemetry", "schema", "--json"]));
    let schema: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    schema["common_properties"]["properties"]
        .as_array()
        .expect("common properties")
        .iter()
        .map(|property| property["name"].as_str().expect("a name").to_owned())
        .collect()
}

/// Fails the test, saying `why`, unless the receiver got no request and the program's
/// telemetry state directory holds no file: what every opt-out must guarantee.
#[track_caller]
pub fn assert_nothing_sent_or_written(sandbox: &Sandbox, app: &str, why: &str) {
    assert!(
        sandbox.receiver.requests().is_empty(),
        "{why}: sent {:#?}",
        sandbox.receiver.events()
    );
    let files = files_under(&sandbox.state_dir(app));
    assert!(files.is_empty(), "{why}: wrote {files:?}");
}

/// A running `api serve --port 0`.
pub struct ApiServer {
    pub child: Child,
    pub stdout: BufReader<ChildStdout>,
    pub origin: String,
    agent: ureq::Agent,
}

impl ApiServer {
    /// Starts `command` (an `api serve` command) and waits for the line saying where it
    /// listens.
    pub fn start(mut command: Command) -> ApiServer {
        let mut child = command.spawn().expect("run api serve");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let Some(origin) = line.trim().strip_prefix("listening on ") else {
            let mut stderr = String::new();
            let _ = child.stderr.take().unwrap().read_to_string(&mut stderr);
            panic!("the server did not start: {line:?}\n{stderr}");
        };
        assert!(origin.starts_with("http://127.0.0.1:"), "{origin}");
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .proxy(None)
            .build()
            .into();
        ApiServer {
            origin: origin.to_owned(),
            child,
            stdout,
            agent,
        }
    }

    /// Sends a request and returns the status and the JSON answer.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> (u16, Value) {
        let url = format!("{}{path}", self.origin);
        let mut builder = ureq::http::Request::builder().method(method).uri(&url);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let request = builder.body(body.unwrap_or_default().to_owned()).unwrap();
        let mut response = self.agent.run(request).expect("the server answers");
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .with_config()
            .limit(1 << 20)
            .read_to_string()
            .unwrap();
        (status, serde_json::from_str(&text).expect("a JSON answer"))
    }

    /// Sends `signal` (`TERM`, `INT`), waits for the server to exit, asserts that it stopped
    /// cleanly, and returns what it printed after its first line.
    pub fn stop(mut self, signal: &str) -> Output {
        let sent = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(sent.success());
        let mut stdout = Vec::new();
        self.stdout.read_to_end(&mut stdout).unwrap();
        let status = self.child.wait().unwrap();
        let mut stderr = Vec::new();
        let _ = self.child.stderr.take().unwrap().read_to_end(&mut stderr);
        let (rest, errors) = (
            String::from_utf8_lossy(&stdout),
            String::from_utf8_lossy(&stderr),
        );
        assert!(status.success(), "SIG{signal}: {status}\n{rest}\n{errors}");
        assert_eq!(rest, "stopped by a signal\n", "SIG{signal}: {errors}");
        Output {
            status,
            stdout,
            stderr,
        }
    }
}
