use telemetry_runtime::TelemetryEvent;

#[derive(TelemetryEvent)]
struct JobFailed {
    #[scrub(max_len = 0)]
    error: String,
}

fn main() {}
