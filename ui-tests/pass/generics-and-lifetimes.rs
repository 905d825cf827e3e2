#![deny(warnings, unused_qualifications)]

use std::fmt::Display;

use telemetry_runtime::{HashKey, TelemetryEvent, TelemetryValue};

/// Borrows everything from the application's own data.
#[derive(TelemetryEvent)]
struct Borrowed<'a, 'b: 'a> {
    #[hash]
    namespace: &'a str,
    #[count]
    inputs: &'b [String],
    #[scrub]
    error: Option<&'a dyn std::error::Error>,
}

/// Generic over the types of its fields: the derive adds the bounds each field needs.
#[derive(TelemetryEvent)]
struct Generic<'a, V, H, M, const N: usize>
where
    V: Copy,
{
    value: V,
    #[hash]
    hashed: H,
    #[scrub]
    message: M,
    #[count]
    items: [V; N],
    #[plain]
    label: &'a str,
}

fn encode<E: TelemetryEvent>(event: &E) -> serde_json::Value {
    telemetry_runtime::anonymize(event, &HashKey::from_bytes([1; 32]))
        .unwrap()
        .to_value()
}

fn send_any<V: TelemetryValue + Copy, H: telemetry_runtime::dispositions::Hashable, M: Display>(
    value: V,
    hashed: H,
    message: M,
) -> serde_json::Value {
    encode(&Generic { value, hashed, message, items: [value; 2], label: "l" })
}

fn main() {
    let inputs = vec!["a".to_owned()];
    let borrowed = Borrowed { namespace: "ns", inputs: &inputs, error: None };
    assert_eq!(encode(&borrowed)["inputs"], 1);
    assert_eq!(encode(&borrowed)["error"], serde_json::Value::Null);

    let sent = send_any(3u8, "h", "at /srv/x");
    assert_eq!(sent["value"], 3);
    assert_eq!(sent["items"], 2);
    assert_eq!(sent["message"], "at <path>");
    assert_eq!(<Generic<'_, u8, &str, &str, 2> as TelemetryEvent>::SCHEMA.name, "generic");
}
