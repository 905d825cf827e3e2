use telemetry_runtime::TelemetryEvent;

#[derive(TelemetryEvent)]
struct ReadFailed {
    error: std::io::Error,
}

fn main() {}
