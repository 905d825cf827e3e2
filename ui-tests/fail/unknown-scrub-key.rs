use telemetry_runtime::TelemetryEvent;

#[derive(TelemetryEvent)]
struct JobFailed {
    #[scrub(max_length = 100)]
    error: String,
}

fn main() {}
