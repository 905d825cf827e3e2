use std::collections::HashMap;

use telemetry_runtime::TelemetryEvent;

#[derive(TelemetryEvent)]
struct JobSubmitted {
    labels: HashMap<String, String>,
}

fn main() {}
