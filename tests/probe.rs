//! A minimal program that uses telemetry the way an application does: start, capture through
//! the global `capture`, and exit by dropping the guard. The tests run it as a child process,
//! configured only through its environment, and read its final accounting from stdout.

use telemetry_runtime::{Telemetry, TelemetryEvent};

/// The probe did one unit of work.
#[derive(TelemetryEvent)]
struct Worked {
    /// Which unit.
    n: u32,
}

fn main() {
    let events: u32 = std::env::args()
        .nth(1)
        .map_or(0, |n| n.parse().expect("a number of events"));
    // Stands in for `option_env!`: the endpoint a release build would have compiled in.
    let compiled_in = std::env::var("PROBE_COMPILED_ENDPOINT").ok();
    let guard = Telemetry::builder("probe", "0.1.0")
        .api_key("phc_probe")
        .endpoint(compiled_in.as_deref())
        .start();
    for n in 0..events {
        telemetry_runtime::capture(&Worked { n });
    }
    let telemetry = guard.handle();
    drop(guard);
    let stats = telemetry.stats();
    println!(
        "{{\"captured\":{},\"restored\":{},\"delivered\":{},\"spooled\":{},\"dropped\":{}}}",
        stats.captured,
        stats.restored,
        stats.delivered,
        stats.spooled,
        stats.dropped.total()
    );
}
