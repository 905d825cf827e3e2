use telemetry_runtime::TelemetryEvent;

#[derive(TelemetryEvent)]
#[telemetry(name = "job_submitted", name = "job_created")]
struct JobSubmitted {
    tasks: u32,
}

fn main() {}
