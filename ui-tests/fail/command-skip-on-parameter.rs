use telemetry_runtime::instrument_command;

#[instrument_command]
fn submit(#[skip] token: &str) {
    let _ = token;
}

fn main() {
    submit("");
}
