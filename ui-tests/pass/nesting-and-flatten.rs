#![deny(warnings, unused_qualifications)]

use telemetry_runtime::{HashKey, TelemetryEvent};

/// Fields shared by every event of a node.
#[derive(TelemetryEvent)]
#[telemetry(nested)]
struct NodeInfo<'a> {
    #[hash]
    node_id: &'a str,
    cores: u16,
}

#[derive(TelemetryEvent)]
#[telemetry(nested)]
struct Gpu {
    memory_mib: u32,
}

#[derive(TelemetryEvent)]
#[telemetry(nested)]
struct Resources<'a> {
    cpu: f32,
    gpus: &'a [Gpu],
    spare: Option<Gpu>,
}

#[derive(TelemetryEvent)]
#[telemetry(name = "job_done")]
struct JobDone<'a> {
    #[telemetry(flatten)]
    node: &'a NodeInfo<'a>,
    resources: Resources<'a>,
    history: Vec<Resources<'a>>,
    #[telemetry(flatten)]
    extra: Box<Extra>,
}

#[derive(TelemetryEvent)]
#[telemetry(nested)]
struct Extra {
    retries: u8,
}

/// An event with no properties.
#[derive(TelemetryEvent)]
struct AppStarted {}

fn main() {
    let node = NodeInfo { node_id: "n1", cores: 8 };
    let gpus = [Gpu { memory_mib: 1024 }];
    let event = JobDone {
        node: &node,
        resources: Resources { cpu: 0.5, gpus: &gpus, spare: None },
        history: vec![],
        extra: Box::new(Extra { retries: 2 }),
    };
    let sent = telemetry_runtime::anonymize(&event, &HashKey::from_bytes([2; 32]))
        .unwrap()
        .to_value();
    assert_eq!(sent["cores"], 8);
    assert_eq!(sent["retries"], 2);
    assert_eq!(sent["resources"]["gpus"][0]["memory_mib"], 1024);
    assert!(sent["resources"]["spare"].is_null());
    assert!(sent.get("node").is_none());
    let empty = telemetry_runtime::anonymize(&AppStarted {}, &HashKey::from_bytes([2; 32])).unwrap();
    assert_eq!(empty.as_json(), "{}");
    assert_eq!(JobDone::SCHEMA.name, "job_done");
}
