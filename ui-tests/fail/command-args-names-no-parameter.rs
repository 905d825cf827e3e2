use telemetry_runtime::instrument_command;

#[instrument_command(args(jobs, engine, jobs))]
fn submit(jobs: u32) {
    let _ = jobs;
}

fn main() {
    submit(1);
}
