use telemetry_runtime::TelemetryEvent;

#[derive(TelemetryEvent)]
#[telemetry(nmae = "job_submitted")]
struct JobSubmitted {
    tasks: u32,
}

fn main() {}
