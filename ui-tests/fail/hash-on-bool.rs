use telemetry_runtime::TelemetryEvent;

#[derive(TelemetryEvent)]
struct JobSubmitted {
    #[hash]
    urgent: bool,
}

fn main() {}
