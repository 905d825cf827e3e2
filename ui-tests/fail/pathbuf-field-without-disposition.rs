use std::path::PathBuf;

use telemetry_runtime::TelemetryEvent;

#[derive(TelemetryEvent)]
struct ConfigLoaded {
    path: PathBuf,
}

fn main() {}
