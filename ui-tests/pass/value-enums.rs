#![deny(warnings, unused_qualifications)]

use telemetry_runtime::{HashKey, TelemetryEvent, TelemetryValue};

#[derive(Clone, Copy, TelemetryValue)]
enum NodeType {
    Hybrid,
    Orchestrator,
    #[telemetry(rename = "compute-only")]
    Compute,
}

#[derive(TelemetryValue)]
#[repr(u8)]
enum HTTPStatusClass {
    ClientError = 4,
    ServerError = 5,
}

#[derive(TelemetryValue)]
enum Never {}

#[derive(TelemetryEvent)]
struct NodeStarted {
    node_type: NodeType,
    history: Vec<NodeType>,
    last_error: Option<HTTPStatusClass>,
    never: Option<Never>,
}

fn main() {
    let event = NodeStarted {
        node_type: NodeType::Compute,
        history: vec![NodeType::Hybrid, NodeType::Orchestrator],
        last_error: Some(HTTPStatusClass::ServerError),
        never: None,
    };
    let sent = telemetry_runtime::anonymize(&event, &HashKey::from_bytes([3; 32]))
        .unwrap()
        .to_value();
    assert_eq!(sent["node_type"], "compute-only");
    assert_eq!(sent["history"], serde_json::json!(["hybrid", "orchestrator"]));
    assert_eq!(sent["last_error"], "server_error");
    let _ = HTTPStatusClass::ClientError;
}
