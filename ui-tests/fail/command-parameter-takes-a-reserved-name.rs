use telemetry_runtime::instrument_command;

#[instrument_command]
fn submit(#[count] outcome: &[u8], #[hash] command: &str, #[count] inputs: &[u8], #[is_set] #[telemetry(rename = "inputs")] other: Option<u8>) {
    let _ = (outcome, command, inputs, other);
}

fn main() {
    submit(&[], "", &[], None);
}
