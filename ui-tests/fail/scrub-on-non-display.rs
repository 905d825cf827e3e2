use telemetry_runtime::TelemetryEvent;

struct Detail {
    code: u16,
}

#[derive(TelemetryEvent)]
struct JobFailed {
    #[scrub]
    detail: Detail,
}

fn main() {
    let _ = Detail { code: 1 }.code;
}
