use telemetry_runtime::instrument_command;

#[instrument_command]
fn submit(#[hash] (namespace, name): (&str, &str)) {
    let _ = (namespace, name);
}

fn main() {
    submit(("", ""));
}
