use telemetry_runtime::TelemetryEvent;

struct Resources {
    cpu: f64,
}

#[derive(TelemetryEvent)]
struct JobSubmitted {
    resources: Resources,
}

fn main() {
    let _ = Resources { cpu: 1.0 }.cpu;
}
