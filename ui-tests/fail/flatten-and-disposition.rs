use telemetry_runtime::TelemetryEvent;

#[derive(TelemetryEvent)]
#[telemetry(nested)]
struct Node {
    cores: u8,
}

#[derive(TelemetryEvent)]
struct JobSubmitted {
    #[plain]
    #[telemetry(flatten)]
    node: Node,
}

fn main() {}
