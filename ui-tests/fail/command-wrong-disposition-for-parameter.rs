use telemetry_runtime::instrument_command;

#[instrument_command]
fn submit(#[count] jobs: u32, #[hash] dry_run: bool) {
    let _ = (jobs, dry_run);
}

fn main() {
    submit(1, false);
}
