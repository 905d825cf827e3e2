use telemetry_runtime::instrument_command;

trait Command {
    #[instrument_command]
    fn run(&self);
}

fn main() {}
