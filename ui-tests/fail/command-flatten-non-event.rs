use telemetry_runtime::instrument_command;

struct Options {
    retries: u32,
}

#[instrument_command]
fn submit(#[telemetry] options: &Options) {
    let _ = options.retries;
}

fn main() {
    submit(&Options { retries: 1 });
}
