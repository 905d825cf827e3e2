use telemetry_runtime::{TelemetryEvent, instrument_command};

/// Options that send a property the command event sends too.
#[derive(TelemetryEvent)]
#[telemetry(nested)]
struct Options {
    command: u32,
}

/// Options that send a property another argument sends.
#[derive(TelemetryEvent)]
#[telemetry(nested)]
struct Limits {
    retries: u32,
}

#[instrument_command]
fn submit(#[telemetry] options: &Options, #[plain] retries: u32, #[telemetry] limits: Limits) {
    let _ = (options.command, retries, limits.retries);
}

fn main() {
    submit(&Options { command: 1 }, 2, Limits { retries: 3 });
}
