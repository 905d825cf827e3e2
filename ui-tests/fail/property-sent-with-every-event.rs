use telemetry_runtime::{TelemetryEvent, instrument_command};

/// A build finished.
#[derive(TelemetryEvent)]
struct BuildFinished {
    arch: u8,
    #[telemetry(rename = "memory")]
    memory_mb: u32,
}

#[instrument_command]
fn build(#[plain] container: &str) {
    let _ = container;
}

fn main() {
    let _ = BuildFinished { arch: 1, memory_mb: 2 };
    build("");
}
