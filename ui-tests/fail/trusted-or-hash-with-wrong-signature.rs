use telemetry_runtime::TelemetryEvent;

fn is_trusted(image: &String) -> bool {
    image.starts_with("acme/")
}

#[derive(TelemetryEvent)]
struct JobSubmitted {
    #[trusted_or_hash(with = is_trusted)]
    image: String,
}

fn main() {}
