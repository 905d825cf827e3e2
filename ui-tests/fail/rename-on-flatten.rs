use telemetry_runtime::TelemetryEvent;

#[derive(TelemetryEvent)]
#[telemetry(nested)]
struct Node {
    cores: u8,
}

#[derive(TelemetryEvent)]
struct JobSubmitted {
    #[telemetry(flatten, rename = "node")]
    node: Node,
}

fn main() {}
