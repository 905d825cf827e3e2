use telemetry_runtime::TelemetryEvent;

#[derive(TelemetryEvent)]
struct Request {
    #[telemetry(rename = "$ip")]
    client_count: u32,
}

fn main() {}
