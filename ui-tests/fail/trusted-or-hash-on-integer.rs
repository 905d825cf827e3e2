use telemetry_runtime::TelemetryEvent;

#[derive(TelemetryEvent)]
struct JobSubmitted {
    #[trusted_or_hash(prefixes = ["acme/"])]
    image_id: u64,
}

fn main() {}
