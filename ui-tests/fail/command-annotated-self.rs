use telemetry_runtime::instrument_command;

struct Jobs;

impl Jobs {
    #[instrument_command]
    fn submit(#[plain] &self) {}
}

fn main() {
    Jobs.submit();
}
