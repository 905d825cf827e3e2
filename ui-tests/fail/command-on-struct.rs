use telemetry_runtime::instrument_command;

#[instrument_command]
struct Submit {
    jobs: u32,
}

fn main() {
    let _ = Submit { jobs: 1 }.jobs;
}
