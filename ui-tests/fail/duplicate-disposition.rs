use telemetry_runtime::TelemetryEvent;

#[derive(TelemetryEvent)]
struct JobSubmitted {
    #[hash]
    #[hash]
    namespace: String,
}

fn main() {}
