use std::borrow::Cow;

use telemetry_runtime::TelemetryEvent;

#[derive(TelemetryEvent)]
struct JobSubmitted<'a> {
    namespace: Cow<'a, str>,
}

fn main() {}
