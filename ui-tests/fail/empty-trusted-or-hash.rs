use telemetry_runtime::TelemetryEvent;

#[derive(TelemetryEvent)]
struct JobSubmitted {
    #[trusted_or_hash]
    image: String,
}

fn main() {}
