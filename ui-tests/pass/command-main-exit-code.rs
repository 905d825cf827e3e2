#![forbid(unsafe_code)]
#![deny(warnings, unused_qualifications, missing_docs)]
//! An instrumented `main` returning an exit code, starting telemetry itself.

use std::process::ExitCode;

use telemetry_runtime::{Mode, Telemetry, instrument_command};

#[instrument_command]
fn main() -> ExitCode {
    let _telemetry = Telemetry::builder("ui", "0.1.0").mode(Mode::Off).start();
    ExitCode::SUCCESS
}
