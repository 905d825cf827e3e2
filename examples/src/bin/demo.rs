//! The README's first command: what a real program's telemetry sends, shown end to end on this
//! machine, with no network and no account.
//!
//! It starts a PostHog-compatible receiver on 127.0.0.1, runs the `jobs` example (a job
//! scheduler that reproduces Bacalhau's telemetry) in a sandbox of its own pointed at that
//! receiver, and prints what arrived: the exact payloads, how hashing makes values comparable
//! but unreadable, an opt-out that sends nothing, and every value of the job spec that never
//! left. The `jobs` runs are this binary run again as `jobs`: the program is compiled in from
//! `src/bin/jobs/`, so this one command is all it takes.
//!
//! Run with `cargo run -p examples --bin demo`.

#[path = "jobs/main.rs"]
mod jobs;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use examples::receiver::Receiver;
use serde_json::Value;

/// Set in the environment of a child process that is to be the `jobs` program.
const RUN_AS_JOBS: &str = "TELEMETRY_DEMO_RUN_AS_JOBS";

/// The job specs the demo submits, as checked in under `examples/specs/`.
const PAYROLL: &str = include_str!("../../specs/payroll.yaml");
const BROKEN: &str = include_str!("../../specs/broken.json");

fn main() -> ExitCode {
    if std::env::var_os(RUN_AS_JOBS).is_some() {
        return jobs::main();
    }
    match demo() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("demo: {error}");
            ExitCode::FAILURE
        }
    }
}

/// A home of its own for one installation of `jobs`, under the demo's scratch directory.
struct Installation {
    home: PathBuf,
}

impl Installation {
    fn new(scratch: &Path, name: &str) -> Installation {
        Installation {
            home: scratch.join(name),
        }
    }

    /// Runs `jobs args` as a user who turned telemetry on, with nothing inherited from this
    /// machine (no `DO_NOT_TRACK`, no CI marker, no real config), sending to `receiver`.
    fn jobs(&self, receiver: &Receiver, args: &[&str]) -> std::io::Result<Run> {
        let exe = std::env::current_exe()?;
        let mut command = Command::new(exe);
        command
            .args(args)
            .env_clear()
            .env(RUN_AS_JOBS, "1")
            .env("HOME", &self.home)
            .env("XDG_CONFIG_HOME", self.home.join(".config"))
            .env("JOBS_TELEMETRY", "on")
            .env("JOBS_TELEMETRY_ENDPOINT", receiver.origin())
            .current_dir(&self.home)
            .stdin(Stdio::null());
        let before = receiver.requests().len();
        let output = command.output()?;
        let requests = receiver.requests();
        Ok(Run {
            shown: format!("jobs {}", args.join(" ")),
            success: output.status.success(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            events: requests[before..]
                .iter()
                .flat_map(|request| request.events.iter().cloned())
                .collect(),
            bodies: requests[before..]
                .iter()
                .map(|request| request.body.clone())
                .collect(),
        })
    }
}

/// One run of `jobs` and what the receiver got from it.
struct Run {
    shown: String,
    success: bool,
    stdout: String,
    stderr: String,
    events: Vec<Value>,
    bodies: Vec<String>,
}

impl Run {
    fn print(&self, title: &str) {
        println!("\n$ {}    # {title}", self.shown);
        for line in self.stdout.lines().chain(self.stderr.lines()) {
            println!("  | {line}");
        }
        let names: Vec<&str> = self
            .events
            .iter()
            .filter_map(|event| event["event"].as_str())
            .collect();
        println!(
            "  exit: {}; the receiver got {} event(s){}{}",
            if self.success { "success" } else { "failure" },
            names.len(),
            if names.is_empty() { "" } else { ": " },
            names.join(", ")
        );
    }

    fn event(&self, name: &str) -> Option<&Value> {
        self.events.iter().find(|event| event["event"] == name)
    }
}

fn demo() -> Result<bool, Box<dyn std::error::Error>> {
    let scratch = std::env::temp_dir().join(format!("telemetry-demo-{}", std::process::id()));
    let result = demo_in(&scratch);
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

fn demo_in(scratch: &Path) -> Result<bool, Box<dyn std::error::Error>> {
    let receiver = Receiver::start()?;
    println!(
        "A PostHog-compatible receiver is listening on {}.",
        receiver.origin()
    );
    println!("Everything below stays on this machine.");

    // The specs sit under a directory named after their (fictional) owner: the path is one
    // more thing that must never leave.
    let alice = Installation::new(scratch, "alice");
    let specs = alice.home.join("home/alice/jobs");
    std::fs::create_dir_all(&specs)?;
    let payroll = specs.join("payroll.yaml");
    let broken = specs.join("broken.json");
    std::fs::write(&payroll, PAYROLL)?;
    std::fs::write(&broken, BROKEN)?;
    let payroll = payroll.to_string_lossy().into_owned();
    let broken = broken.to_string_lossy().into_owned();

    let completed = alice.jobs(&receiver, &["run", &payroll])?;
    completed.print("a rich job that completes");
    let failed = alice.jobs(&receiver, &["run", &broken])?;
    failed.print("a job whose task exits with 3, retried once");
    let opted_out = alice.jobs(
        &receiver,
        &["--config", "DisableAnalytics=true", "run", &payroll],
    )?;
    opted_out.print("the same job, opted out for this run as Bacalhau users do");
    let bob = Installation::new(scratch, "bob");
    std::fs::create_dir_all(&bob.home)?;
    let elsewhere = bob.jobs(&receiver, &["run", &payroll])?;
    elsewhere.print("the same job on another installation");

    let Some(submitted) = completed.event("job_submitted") else {
        println!("\nNo job_submitted event arrived: nothing to show.");
        return Ok(false);
    };
    let every_event = every_event_names(&alice, &receiver)?;

    println!("\n== What `job_submitted` carries (the program's own properties) ==\n");
    println!("{}", pretty(&own(submitted, &every_event)));
    println!("\n== Sent with every event (the node's and the library's) ==\n");
    println!("{}", pretty(&shared(submitted, &every_event)));
    println!("\n== Every other event of the completed job ==");
    for event in &completed.events {
        if event["event"] != "job_submitted" {
            println!("\n{}: {}", event["event"], own(event, &every_event));
        }
    }
    println!("\n== The failed job, in short ==\n");
    for event in &failed.events {
        let properties = &event["properties"];
        let mut line = format!("{:<18}", event["event"].as_str().unwrap_or_default());
        for key in [
            "compute_state",
            "exit_code",
            "compute_message",
            "state",
            "docker_image",
            "outcome",
        ] {
            if let Some(value) = properties.get(key).filter(|value| !value.is_null()) {
                let _ = write!(line, " {key}={value}");
            }
        }
        println!("{line}");
    }

    let mut ok = true;
    println!("\n== Hashing ==\n");
    let hash_of = |run: &Run, event: &str, property: &str| {
        run.event(event)
            .map(|event| event["properties"][property].clone())
            .unwrap_or(Value::Null)
    };
    let namespace = hash_of(&completed, "job_submitted", "namespace");
    let finished = hash_of(&completed, "job_finished", "namespace");
    let other = hash_of(&elsewhere, "job_submitted", "namespace");
    println!("namespace \"finance-alice\" is sent as a keyed hash:");
    println!("  job_submitted, this installation:   {namespace}");
    println!("  job_finished, this installation:    {finished}");
    println!("  job_submitted, another installation: {other}");
    println!(
        "  equal within an installation, so events correlate; different across installations, \
         and unreadable without the installation's secret key (a plain SHA-256 of a common name \
         is reversed by a dictionary)."
    );
    ok &= namespace.is_string() && namespace == finished && namespace != other;
    let private = hash_of(&completed, "job_submitted", "docker_image");
    let public = hash_of(&failed, "job_submitted", "docker_image");
    println!("docker images: a trusted prefix is sent in clear, anything else hashed:");
    println!("  ghcr.io/bacalhau-project/examples/report:1.0 -> {public}");
    println!("  docker.io/alicecorp/payroll-runner:2.3.1     -> {private}");
    ok &= public == "ghcr.io/bacalhau-project/examples/report:1.0" && private != public;

    println!("\n== Opting out ==\n");
    println!(
        "`jobs --config DisableAnalytics=true run ...` sent {} request(s); \
         `JOBS_DISABLEANALYTICS=true` and `jobs config set DisableAnalytics true` do the same.",
        opted_out.bodies.len()
    );
    ok &= opted_out.bodies.is_empty() && opted_out.success;

    println!("\n== What never left ==\n");
    let sent: String = receiver
        .requests()
        .iter()
        .map(|request| request.body.to_lowercase())
        .collect();
    let mut found = Vec::new();
    let spec: Value = serde_saphyr::from_str(PAYROLL)?;
    strings("", &spec, &mut found);
    found.push(("path".to_owned(), payroll.clone()));
    found.push(("path".to_owned(), scratch.to_string_lossy().into_owned()));
    // The values of `Type` keys (engine, publisher, network, job, input source, GPU) are a
    // fixed vocabulary, sent in clear by design; everything else is the user's.
    let (vocabulary, mut private): (Vec<_>, Vec<_>) = found
        .into_iter()
        .partition(|(key, _)| key.ends_with("Type"));
    private.sort();
    private.dedup();
    let vocabulary: Vec<String> = vocabulary.into_iter().map(|(_, text)| text).collect();
    println!(
        "The spec's types ({}) are a fixed vocabulary, sent as they are.",
        vocabulary.join(", ")
    );
    println!("Of its {} other texts, and its path:", private.len());
    for (_, text) in &private {
        if sent.contains(&text.to_lowercase()) {
            println!("  UNEXPECTED, sent: {text:?}");
            ok = false;
        } else {
            println!("  never sent, in any byte of any request: {text:?}");
        }
    }

    println!("\n== Read more ==\n");
    println!("Everything each example program can send, generated from its code:");
    for program in ["jobs", "agent", "bench", "api"] {
        println!(
            "  examples/{program}.TELEMETRY.md   (cargo run -p examples --bin {program} -- telemetry schema)"
        );
    }
    if !ok {
        println!("\nSomething above is not as it should be.");
    }
    Ok(ok)
}

/// The names of the properties sent with every event, from `jobs telemetry schema --json`.
fn every_event_names(
    installation: &Installation,
    receiver: &Receiver,
) -> Result<Vec<String>, Box<dyn std::error::Error>> {
    let run = installation.jobs(receiver, &["telemetry", "schema", "--json"])?;
    let schema: Value = serde_json::from_str(&run.stdout)?;
    Ok(schema["common_properties"]["properties"]
        .as_array()
        .map(|properties| {
            properties
                .iter()
                .filter_map(|property| property["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default())
}

/// The event's properties other than those sent with every event.
fn own(event: &Value, every_event: &[String]) -> Value {
    select(event, |name| {
        !name.starts_with('$') && !every_event.iter().any(|common| common == name)
    })
}

/// The event's properties sent with every event.
fn shared(event: &Value, every_event: &[String]) -> Value {
    select(event, |name| {
        name.starts_with('$') || every_event.iter().any(|common| common == name)
    })
}

fn select(event: &Value, keep: impl Fn(&str) -> bool) -> Value {
    let properties = event["properties"].as_object().cloned().unwrap_or_default();
    Value::Object(
        properties
            .into_iter()
            .filter(|(name, _)| keep(name))
            .collect(),
    )
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

/// Every string value in `value` of four characters or more with the key it is under, and
/// both halves of each `NAME=value`: shorter ones, such as `1`, would match by accident.
fn strings(key: &str, value: &Value, out: &mut Vec<(String, String)>) {
    let mut push = |text: &str| {
        if text.chars().count() >= 4 {
            out.push((key.to_owned(), text.to_owned()));
        }
    };
    match value {
        Value::String(text) => {
            push(text);
            if let Some((name, value)) = text.split_once('=') {
                push(name);
                push(value);
            }
        }
        Value::Array(items) => items.iter().for_each(|item| strings(key, item, out)),
        Value::Object(members) => {
            for (key, item) in members {
                strings(key, item, out);
            }
        }
        _ => {}
    }
}
