//! A program whose instrumented `main` starts telemetry itself, as most applications do, and
//! then ends as its first argument says: `ok`, `fail` (a failing exit code), `panic`, or `exit`
//! (sends a `worked` event, drops the guard and calls `process::exit`).
//! The endpoint comes from `PROBE_TELEMETRY_ENDPOINT`.

use std::process::ExitCode;

use telemetry_runtime::{FirstRun, Telemetry, TelemetryEvent, instrument_command};

/// Some work was done.
#[derive(TelemetryEvent)]
struct Worked {}

#[instrument_command]
fn main() -> ExitCode {
    let how = std::env::args().nth(1).unwrap_or_default();
    let telemetry = Telemetry::builder("probe", "0.1.0")
        .api_key("phc_probe")
        .first_run(FirstRun::Silent)
        .start();
    if how == "exit" {
        telemetry_runtime::capture(&Worked {});
        drop(telemetry);
        std::process::exit(3);
    }
    let _telemetry = telemetry;
    match how.as_str() {
        "fail" => ExitCode::FAILURE,
        "panic" => panic!("gave up on /home/alice/notes.txt"),
        _ => ExitCode::SUCCESS,
    }
}
