use telemetry_runtime::TelemetryValue;

#[derive(TelemetryValue)]
enum Engine {
    Docker { image: String },
    Wasm(String),
    Native,
}

fn main() {}
