#![deny(warnings, unused_qualifications)]

use telemetry_runtime as telemetry;

#[derive(telemetry::TelemetryValue)]
#[telemetry(crate = telemetry)]
enum Mode {
    Fast,
}

#[derive(telemetry::TelemetryEvent)]
#[telemetry(crate = telemetry, name = "renamed")]
struct Renamed {
    mode: Mode,
}

fn main() {
    assert_eq!(<Renamed as telemetry::TelemetryEvent>::SCHEMA.name, "renamed");
    let _ = Renamed { mode: Mode::Fast };
}
