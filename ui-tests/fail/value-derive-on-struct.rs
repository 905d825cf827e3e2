use telemetry_runtime::TelemetryValue;

#[derive(TelemetryValue)]
struct Engine {
    kind: u8,
}

fn main() {}
