use std::collections::BTreeSet;

use telemetry_runtime::TelemetryEvent;

#[derive(TelemetryEvent)]
struct JobSubmitted {
    tags: BTreeSet<String>,
}

fn main() {}
