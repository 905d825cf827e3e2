use telemetry_runtime::TelemetryEvent;

#[derive(TelemetryEvent)]
struct JobSubmitted {
    #[trusted_or_hash(prefixes = ["acme/", ""])]
    image: String,
}

fn main() {}
