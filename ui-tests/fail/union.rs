use telemetry_runtime::TelemetryEvent;

#[derive(TelemetryEvent)]
union Number {
    int: u32,
    float: f32,
}

fn main() {}
