#![forbid(unsafe_code)]
#![deny(warnings, unused_qualifications, missing_docs)]
//! Synchronous commands: every disposition on parameters, listed values, flattened options,
//! and return values passed through unchanged.

use std::path::Path;

use telemetry_runtime::{TelemetryEvent, TelemetryValue, instrument_command, schema};

/// The engine a job runs on.
#[derive(TelemetryValue, Clone, Copy)]
pub enum Engine {
    /// Containers.
    Docker,
    /// WebAssembly.
    Wasm,
}

/// Options sent flattened into the command's event.
#[derive(TelemetryEvent)]
#[telemetry(nested)]
pub struct Options {
    /// How often to retry.
    pub retries: u8,
}

/// Submits a job.
#[instrument_command(name = "job submit", args(engine, tasks))]
pub fn submit(
    #[hash] namespace: &str,
    #[trusted_or_hash(prefixes = ["ghcr.io/acme/"])] image: &str,
    #[count] inputs: &[String],
    #[is_set] queue: Option<&str>,
    #[scrub] note: &str,
    #[plain] labels: &[&str],
    #[telemetry] options: &Options,
    #[telemetry(rename = "spec_path")]
    #[hash]
    path: &Path,
    engine: Engine,
    tasks: u32,
    secret: String,
) -> Result<usize, std::io::Error> {
    let _ = (namespace, image, queue, note, labels, options.retries, path, engine, tasks);
    Ok(inputs.len() + secret.len())
}

/// Returns nothing at all.
#[instrument_command]
pub fn nothing() {}

/// Returns a borrowed value with the parameter's lifetime.
#[instrument_command]
pub fn first<'a>(#[count] items: &'a [&'a str]) -> Option<&'a str> {
    items.first().copied()
}

/// Returns an opaque type.
#[instrument_command]
pub fn evens(#[plain] limit: u32) -> impl Iterator<Item = u32> {
    (0..limit).filter(|n| n % 2 == 0)
}

fn main() {
    let options = Options { retries: 2 };
    let returned = submit(
        "payroll",
        "ghcr.io/acme/worker",
        &["a".to_owned()],
        None,
        "see /home/alice",
        &["gpu"],
        &options,
        Path::new("/tmp/job.yaml"),
        Engine::Docker,
        4,
        "abc".to_owned(),
    );
    assert_eq!(returned.unwrap(), 4);
    nothing();
    assert_eq!(first(&["x", "y"]), Some("x"));
    assert_eq!(evens(5).collect::<Vec<_>>(), [0, 2, 4]);
    let _ = Engine::Wasm;

    let events = schema::events();
    let submit = events
        .iter()
        .find(|event| event.rust_type.ends_with("::submit"))
        .unwrap();
    let names: Vec<&str> = submit.fields.iter().map(|field| field.name).collect();
    assert_eq!(
        names,
        [
            "command", "duration_ms", "outcome", "error_type", "namespace", "image", "inputs",
            "queue", "note", "note_truncated", "labels", "options", "spec_path", "engine", "tasks",
        ]
    );
}
