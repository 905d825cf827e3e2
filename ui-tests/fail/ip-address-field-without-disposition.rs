use std::net::IpAddr;

use telemetry_runtime::TelemetryEvent;

#[derive(TelemetryEvent)]
struct PeerConnected {
    address: IpAddr,
}

fn main() {}
