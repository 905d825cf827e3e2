use telemetry_runtime::TelemetryEvent;

#[derive(TelemetryEvent)]
enum JobEvent {
    Submitted { tasks: u32 },
    Cancelled,
}

fn main() {}
