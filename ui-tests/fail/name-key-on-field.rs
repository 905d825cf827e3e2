use telemetry_runtime::TelemetryEvent;

#[derive(TelemetryEvent)]
struct JobSubmitted {
    #[telemetry(name = "task_count")]
    tasks: u32,
}

fn main() {}
