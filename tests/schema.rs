//! The schema each event carries, the registry of every event linked into a binary, and the
//! Markdown and JSON documents generated from it.
#![deny(warnings, unused_qualifications)]
#![warn(clippy::pedantic)]

use std::time::Duration;

use serde_json::Value;
use telemetry_runtime::schema::{self, Disposition, Shape};
use telemetry_runtime::{TelemetryEvent, TelemetryValue};

#[derive(TelemetryValue)]
enum Engine {
    Docker,
    Wasm,
}

/// A GPU.
#[derive(TelemetryEvent)]
#[telemetry(nested)]
struct Gpu {
    /// Memory in MiB.
    memory_mib: u32,
}

/// The node every event comes from.
#[derive(TelemetryEvent)]
#[telemetry(nested)]
struct Node {
    /// CPU cores on the node.
    cores: u16,
}

/// A job was submitted.
///
/// Sent once per job.
#[derive(TelemetryEvent)]
struct JobSubmitted<'a> {
    /// The namespace, hashed.
    #[hash]
    namespace: &'a str,
    /// The image, in clear when trusted.
    #[trusted_or_hash(prefixes = ["acme/"], with = is_official)]
    image: &'a str,
    engine: Option<Engine>,
    gpus: Vec<Gpu>,
    #[telemetry(flatten)]
    node: Node,
    /// Why it failed.
    #[scrub(max_len = 64)]
    error: Option<String>,
    #[telemetry(rename = "timeout_ms")]
    timeout: Duration,
    #[plain]
    job_id: &'a str,
    #[skip]
    secret: &'a str,
}

fn is_official(_: &str) -> bool {
    false
}

/// Generic over a type: it cannot be named in the registry, so it is not listed.
#[derive(TelemetryEvent)]
struct Generic<T> {
    value: T,
}

/// An event with no properties.
#[derive(TelemetryEvent)]
struct CacheCleared {}

#[test]
fn the_schema_describes_every_sent_field_in_order() {
    let schema = JobSubmitted::SCHEMA;
    assert_eq!(schema.name, "job_submitted");
    assert_eq!(schema.rust_type, "JobSubmitted");
    assert_eq!(
        schema.description,
        "A job was submitted.\n\nSent once per job."
    );
    assert!(!schema.nested);
    let names: Vec<&str> = schema.fields.iter().map(|field| field.name).collect();
    assert_eq!(
        names,
        [
            "namespace",
            "image",
            "engine",
            "gpus",
            "node",
            "error",
            "error_truncated",
            "timeout_ms",
            "job_id"
        ]
    );
    let field = |name: &str| schema.fields.iter().find(|f| f.name == name).unwrap();
    assert_eq!(field("namespace").disposition, Disposition::Hash);
    assert_eq!(field("namespace").rust_type, "&'a str");
    assert_eq!(field("namespace").description, "The namespace, hashed.");
    assert_eq!(
        field("image").disposition,
        Disposition::TrustedOrHash {
            prefixes: &["acme/"],
            rule: Some("is_official")
        }
    );
    assert!(matches!(
        field("engine").shape,
        Shape::Nullable(Shape::Enum(["docker", "wasm"]))
    ));
    assert!(matches!(field("gpus").shape, Shape::Array(Shape::Object(gpu)) if gpu.name == "gpu"));
    assert_eq!(field("node").disposition, Disposition::Flatten);
    assert_eq!(
        field("error").disposition,
        Disposition::Scrub { max_len: 64 }
    );
    assert_eq!(field("error_truncated").disposition, Disposition::Truncated);
    assert!(matches!(field("timeout_ms").shape, Shape::Milliseconds));
    assert_eq!(field("job_id").disposition, Disposition::Plain);
    let event = JobSubmitted {
        namespace: "",
        image: "",
        engine: Some(Engine::Docker),
        gpus: vec![],
        node: Node { cores: 1 },
        error: None,
        timeout: Duration::ZERO,
        job_id: "",
        secret: "never listed",
    };
    assert!(!names.contains(&"secret") && !event.secret.is_empty());
    assert!(
        matches!(event.engine, Some(Engine::Docker)) && !matches!(Engine::Wasm, Engine::Docker)
    );
}

#[test]
fn the_registry_lists_this_binarys_events_and_only_those() {
    let names: Vec<&str> = schema::events().iter().map(|event| event.name).collect();
    // Sorted by name; nested-only types and type-generic events are not listed on their own.
    // The library's own events (its start, stop and panics, and its report of dropped
    // events) are among the events a binary can send.
    assert_eq!(
        names,
        [
            "app_fatal",
            "app_started",
            "app_stopped",
            "cache_cleared",
            "job_submitted",
            "telemetry_dropped"
        ]
    );
    let _ = Generic { value: 1u8 }.value;
}

#[test]
fn markdown_lists_nested_and_flattened_properties() {
    let markdown = schema::to_markdown(&schema::events());
    for line in [
        "## `job_submitted`",
        "A job was submitted.",
        "| `namespace` | string | keyed hash | The namespace, hashed. |",
        "| `image` | string | in clear if it starts with `acme/` (any case) or `is_official` accepts it, else keyed hash | The image, in clear when trusted. |",
        "| `engine` | one of `docker`, `wasm` or null | as is |  |",
        "| `gpus` | array of object | as is | A GPU. |",
        "| `gpus[].memory_mib` | integer | as is | Memory in MiB. |",
        "| `cores` | integer | as is | CPU cores on the node. |",
        "| `error` | string or null | scrubbed, at most 64 bytes | Why it failed. |",
        "| `error_truncated` | boolean | as is | Whether `error` was longer than 64 bytes and was cut. |",
        "| `timeout_ms` | integer (milliseconds) | as is |  |",
        "| `job_id` | `&'a str`, serialized | as is (declared safe) |  |",
        "## `cache_cleared`",
        "## `app_stopped`",
        "| `uptime_ms` | integer (milliseconds) | as is | How long telemetry ran in this process, from its start to the stop. |",
    ] {
        assert!(markdown.contains(line), "missing {line:?} in\n{markdown}");
    }
    assert!(!markdown.contains("secret"));
    assert!(
        !markdown.contains("`node`"),
        "flattened fields have no row of their own"
    );
}

#[test]
fn json_describes_every_property_with_its_shape_and_disposition() {
    let document = schema::to_json(&schema::events());
    let events = document["events"].as_array().unwrap();
    let job = events
        .iter()
        .find(|e| e["name"] == "job_submitted")
        .unwrap();
    let properties = job["properties"].as_array().unwrap();
    let property = |name: &str| -> &Value {
        properties
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in {job}"))
    };
    assert_eq!(property("namespace")["disposition"], "hash");
    assert_eq!(property("namespace")["type"], "string");
    assert_eq!(property("image")["trusted_prefixes"][0], "acme/");
    assert_eq!(property("image")["trust_rule"], "is_official");
    assert_eq!(property("engine")["enum"][1], "wasm");
    assert_eq!(property("engine")["nullable"], true);
    assert_eq!(property("gpus")["type"], "array");
    assert_eq!(
        property("gpus")["items"]["properties"][0]["name"],
        "memory_mib"
    );
    assert_eq!(property("cores")["type"], "integer");
    assert_eq!(property("error")["max_len"], 64);
    assert_eq!(property("error_truncated")["disposition"], "truncated");
    assert_eq!(property("timeout_ms")["unit"], "milliseconds");
    assert_eq!(property("job_id")["disposition"], "plain");
    assert!(
        properties
            .iter()
            .all(|p| p["name"] != "secret" && p["name"] != "node")
    );
    assert_eq!(properties.len(), 9, "{properties:#?}");
}
