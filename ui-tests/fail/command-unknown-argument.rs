use telemetry_runtime::instrument_command;

#[instrument_command(name = "job submit", verbose)]
fn submit() {}

fn main() {
    submit();
}
