use telemetry_runtime::TelemetryEvent;

#[derive(TelemetryEvent)]
struct JobSubmitted {
    #[is_set]
    retries: u32,
}

fn main() {}
