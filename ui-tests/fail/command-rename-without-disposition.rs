use telemetry_runtime::instrument_command;

#[instrument_command]
fn submit(#[telemetry(rename = "job_count")] jobs: u32) {
    let _ = jobs;
}

fn main() {
    submit(1);
}
