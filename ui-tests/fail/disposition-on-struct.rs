use telemetry_runtime::TelemetryEvent;

#[derive(TelemetryEvent)]
#[hash]
struct JobSubmitted {
    tasks: u32,
}

fn main() {}
