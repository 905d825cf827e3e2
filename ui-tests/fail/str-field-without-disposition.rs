use telemetry_runtime::TelemetryEvent;

#[derive(TelemetryEvent)]
struct JobSubmitted<'a> {
    namespace: &'a str,
}

fn main() {}
