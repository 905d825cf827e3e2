use telemetry_runtime::instrument_command;

#[instrument_command(message)]
fn submit() -> u32 {
    1
}

fn main() {
    let _ = submit();
}
