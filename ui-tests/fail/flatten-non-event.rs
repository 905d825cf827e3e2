use telemetry_runtime::TelemetryEvent;

#[derive(TelemetryEvent)]
struct JobFailed {
    #[telemetry(flatten)]
    retries: u32,
}

fn main() {}
