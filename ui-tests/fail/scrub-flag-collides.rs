use telemetry_runtime::TelemetryEvent;

#[derive(TelemetryEvent)]
struct JobFailed {
    #[scrub]
    error: String,
    error_truncated: bool,
}

fn main() {}
