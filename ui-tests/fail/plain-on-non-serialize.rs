use telemetry_runtime::TelemetryEvent;

struct Opaque;

#[derive(TelemetryEvent)]
struct JobFailed {
    #[plain]
    opaque: Opaque,
}

fn main() {
    let _ = Opaque;
}
