use telemetry_runtime::TelemetryEvent;

#[derive(TelemetryEvent)]
struct JobSubmitted {
    #[hash]
    #[count]
    namespace: String,
}

fn main() {}
