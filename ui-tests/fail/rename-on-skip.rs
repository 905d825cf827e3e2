use telemetry_runtime::TelemetryEvent;

#[derive(TelemetryEvent)]
struct JobSubmitted {
    #[skip]
    #[telemetry(rename = "secret")]
    password: String,
}

fn main() {}
