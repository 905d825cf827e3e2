use telemetry_runtime::{Telemetry, TelemetryEvent};

/// The program greeted someone.
#[derive(TelemetryEvent)]
struct Greeted {
    /// How many people.
    people: u32,
}

fn main() {
    let _telemetry = Telemetry::builder("hello", "1.0.0")
        .api_key("phc_hello")
        .start();
    telemetry_runtime::capture(&Greeted { people: 1 });
    println!("hello");
}
