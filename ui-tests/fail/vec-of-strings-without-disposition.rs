use telemetry_runtime::TelemetryEvent;

#[derive(TelemetryEvent)]
struct JobSubmitted {
    arguments: Vec<String>,
}

fn main() {}
