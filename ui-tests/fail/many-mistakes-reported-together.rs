use telemetry_runtime::TelemetryEvent;

#[derive(TelemetryEvent)]
#[telemetry(nmae = "x")]
struct JobSubmitted {
    #[hash]
    #[count]
    namespace: String,
    #[scrub(max_length = 3)]
    error: String,
}

fn main() {
    // The stub impl keeps this from adding errors of its own.
    fn takes<E: TelemetryEvent>(_: &E) {}
    takes(&JobSubmitted { namespace: String::new(), error: String::new() });
}
