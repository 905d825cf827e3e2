//! `testing::record` and the application's properties sent with every event.

#![deny(warnings, unused_qualifications)]

mod support;

use std::time::Duration;

use serde_json::Value;
use support::{Receiver, builder, events, job};
use telemetry_runtime::testing::{self, Recorder};
use telemetry_runtime::{Telemetry, TelemetryCommand, TelemetryEvent, TelemetryValue};

#[derive(Debug)]
struct Refused;

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("cannot write /home/alice/out.csv")
    }
}

#[telemetry_runtime::instrument_command(name = "job export", message)]
fn export(#[hash] namespace: &str, #[count] rows: &[u32]) -> Result<(), Refused> {
    let _ = (namespace, rows);
    Err(Refused)
}

#[test]
fn every_way_of_capturing_is_recorded_and_anonymized() {
    let state = tempfile::tempdir().unwrap();
    // A started pipeline in local mode: what is recorded must not reach it.
    let telemetry = builder(None, state.path(), &[("JOBS_TELEMETRY", "local")]).start();
    let events = testing::record(|| {
        telemetry_runtime::capture(&job(1));
        telemetry.capture(&job(2));
        Telemetry::off().capture(&job(3));
        let _ = export("payroll", &[1, 2, 3]);
    });
    assert_eq!(
        events.names(),
        ["job_submitted", "job_submitted", "job_submitted", "command"]
    );
    for (event, tasks) in events.named("job_submitted").zip([1, 2, 3]) {
        assert_eq!(event["tasks"], tasks);
        assert_eq!(event["labels"], 2);
        assert_eq!(event["engine"], "docker");
        assert_eq!(event["namespace"], events.hash("payroll-team"));
        assert_eq!(
            event.property_names(),
            ["namespace", "labels", "engine", "tasks"]
        );
    }
    let command = events.only("command");
    assert_eq!(command["command"], "job export");
    assert_eq!(command["outcome"], "error");
    assert_eq!(command["error_message"], "cannot write <path>");
    assert_eq!(command["namespace"], events.hash("payroll"));
    assert_eq!(command["rows"], 3);
    assert_eq!(command["missing"], Value::Null);
    assert!(!events.contains_text("payroll"));
    assert!(!events.contains_text("alice"));
    assert!(events.contains_text("job export"));

    let stats = telemetry.shutdown(Duration::from_secs(10));
    assert_eq!(stats.captured, 0, "{stats:?}");
    assert!(!state.path().join("state/events.jsonl").exists());
}

#[test]
fn a_recording_ends_with_its_block_even_when_the_block_panics() {
    let recorder = Recorder::new();
    let panicked = std::panic::catch_unwind(|| {
        recorder.record(|| {
            telemetry_runtime::capture(&job(1));
            panic!("the code under test failed");
        })
    });
    assert!(panicked.is_err());
    telemetry_runtime::capture(&job(2));
    let recorded = recorder.events();
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0]["tasks"], 1);
}

#[test]
fn recordings_nest_and_span_threads() {
    let outer = Recorder::new();
    let inner = Recorder::new();
    let result = outer.record(|| {
        telemetry_runtime::capture(&job(1));
        inner.record(|| telemetry_runtime::capture(&job(2)));
        std::thread::scope(|scope| {
            // A thread of its own records only inside `record`.
            scope.spawn(|| telemetry_runtime::capture(&job(3)));
            scope.spawn(|| outer.record(|| telemetry_runtime::capture(&job(4))));
        });
        "done"
    });
    assert_eq!(result, "done");
    let tasks = |recorder: &Recorder| -> Vec<Value> {
        recorder
            .events()
            .iter()
            .map(|e| e["tasks"].clone())
            .collect()
    };
    assert_eq!(tasks(&outer), [1, 4]);
    assert_eq!(tasks(&inner), [2]);
    // Each recording has its own key, as installations do.
    assert_ne!(outer.hash("payroll-team"), inner.hash("payroll-team"));
}

#[derive(Debug)]
struct NotJson;

impl serde::Serialize for NotJson {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("no JSON for this"))
    }
}

/// An event one of whose values cannot be encoded.
#[derive(TelemetryEvent)]
struct Broken {
    #[plain]
    value: NotJson,
}

#[test]
fn an_event_that_would_be_dropped_is_recorded_with_the_reason() {
    let events = testing::record(|| telemetry_runtime::capture(&Broken { value: NotJson }));
    let broken = events.only("broken");
    let reason = broken.properties.as_ref().unwrap_err();
    assert!(reason.contains("no JSON for this"), "{reason}");
    assert_eq!(broken["value"], Value::Null);
}

/// The kind of node.
#[derive(TelemetryValue, Clone, Copy)]
enum NodeType {
    Compute,
}

/// The node this process runs as.
#[derive(TelemetryEvent)]
#[telemetry(nested)]
struct Node {
    /// The node's role.
    node_type: NodeType,
    /// The node's name, as a keyed hash.
    #[hash]
    node_id: String,
}

/// An event that hashes what the node's id hashes.
#[derive(TelemetryEvent)]
struct Named<'a> {
    #[hash]
    name: &'a str,
}

#[test]
fn application_properties_are_sent_with_every_event_and_hashed_under_the_installation_key() {
    let receiver = Receiver::healthy();
    let state = tempfile::tempdir().unwrap();
    let node = || Node {
        node_type: NodeType::Compute,
        node_id: "node-alice-laptop".to_owned(),
    };
    let telemetry = builder(Some(&receiver.origin), state.path(), &[])
        .properties(node())
        .start();
    telemetry.capture(&job(1));
    telemetry.capture(&Named {
        name: "node-alice-laptop",
    });
    let stats = telemetry.shutdown(Duration::from_secs(10));
    assert_eq!(stats.delivered, 2, "{stats:?}");
    let sent = events(&receiver.received());
    assert_eq!(sent.len(), 2);
    let hashed = sent[1]["properties"]["name"].clone();
    for event in &sent {
        let properties = &event["properties"];
        assert_eq!(properties["node_type"], "compute");
        assert_eq!(properties["node_id"], hashed);
        assert_eq!(
            properties["installation_id"],
            telemetry.installation_id().unwrap()
        );
        assert!(!event.to_string().contains("alice"), "{event}");
    }

    // `telemetry schema` lists them with what the library sends with every event.
    let described = builder(None, state.path(), &[]).properties(node());
    let mut out = Vec::new();
    TelemetryCommand::Schema { json: false }
        .run_to(&described, &mut out)
        .unwrap();
    let markdown = String::from_utf8(out).unwrap();
    let every = &markdown[markdown.find("## Sent with every event").unwrap()..];
    assert!(every.contains("| `installation_id` |"), "{every}");
    assert!(
        every.contains("| `node_id` | string | keyed hash | The node's name, as a keyed hash. |"),
        "{every}"
    );
    assert!(
        every.contains("| `node_type` | one of `compute` |"),
        "{every}"
    );
    let mut out = Vec::new();
    TelemetryCommand::Schema { json: true }
        .run_to(&described, &mut out)
        .unwrap();
    let json: Value = serde_json::from_slice(&out).unwrap();
    let names: Vec<&str> = json["common_properties"]["properties"]
        .as_array()
        .unwrap()
        .iter()
        .map(|property| property["name"].as_str().unwrap())
        .collect();
    assert!(names.ends_with(&["node_type", "node_id"]), "{names:?}");
}

/// Properties that would replace one of the library's.
#[derive(TelemetryEvent)]
#[telemetry(nested)]
struct Clashing {
    node_type: NodeType,
    #[telemetry(rename = "os_name")]
    os: u32,
}

#[test]
fn application_properties_that_clash_with_the_library_s_are_left_out() {
    let receiver = Receiver::healthy();
    let state = tempfile::tempdir().unwrap();
    let telemetry = builder(Some(&receiver.origin), state.path(), &[])
        .properties(Clashing {
            node_type: NodeType::Compute,
            os: 7,
        })
        .start();
    telemetry.capture(&job(1));
    let stats = telemetry.shutdown(Duration::from_secs(10));
    assert_eq!(stats.delivered, 1, "{stats:?}");
    let sent = events(&receiver.received());
    let properties = &sent[0]["properties"];
    assert_eq!(properties["node_type"], Value::Null);
    assert_ne!(properties["os_name"], 7);
    assert!(properties["os_name"].is_string(), "{properties}");
}
