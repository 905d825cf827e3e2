use telemetry_runtime::instrument_command;

#[instrument_command(name = "job submit", message, name = "job run", message)]
fn submit() -> Result<(), std::io::Error> {
    Ok(())
}

fn main() {
    let _ = submit();
}
