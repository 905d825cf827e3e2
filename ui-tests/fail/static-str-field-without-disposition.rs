use telemetry_runtime::TelemetryEvent;

#[derive(TelemetryEvent)]
struct JobSubmitted {
    namespace: &'static str,
}

fn main() {}
