use telemetry_runtime::TelemetryEvent;

#[derive(TelemetryEvent)]
struct AppStarted;

fn main() {}
