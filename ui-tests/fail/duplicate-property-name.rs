use telemetry_runtime::TelemetryEvent;

#[derive(TelemetryEvent)]
struct JobSubmitted {
    tasks: u32,
    #[telemetry(rename = "tasks")]
    task_count: u32,
}

fn main() {}
