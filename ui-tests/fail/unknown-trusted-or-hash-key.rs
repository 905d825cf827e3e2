use telemetry_runtime::TelemetryEvent;

#[derive(TelemetryEvent)]
struct JobSubmitted {
    #[trusted_or_hash(prefix = "acme/")]
    image: String,
}

fn main() {}
