use std::ffi::OsString;

use telemetry_runtime::TelemetryEvent;

#[derive(TelemetryEvent)]
struct CommandRun {
    argument: OsString,
}

fn main() {}
