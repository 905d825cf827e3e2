use telemetry_runtime::TelemetryEvent;

#[derive(TelemetryEvent)]
struct JobFailed {
    message: String,
}

fn main() {}
