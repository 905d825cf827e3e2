use telemetry_runtime::TelemetryEvent;

#[derive(TelemetryEvent)]
struct JobSubmitted {
    #[hash(sha1)]
    namespace: String,
}

fn main() {}
