use telemetry_runtime::TelemetryEvent;

#[derive(TelemetryEvent)]
struct TaskFailed {
    error: Box<dyn std::error::Error + Send + Sync>,
}

fn main() {}
