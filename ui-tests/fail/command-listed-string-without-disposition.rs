use telemetry_runtime::instrument_command;

#[instrument_command(args(namespace))]
fn submit(namespace: String) {
    let _ = namespace;
}

fn main() {
    submit(String::new());
}
