use telemetry_runtime::TelemetryEvent;

#[derive(TelemetryEvent)]
#[telemetry(name = "")]
struct Request {
    count: u32,
}

fn main() {}
