//! What an application can send: the schema of every event, gathered when the binary is linked.
//!
//! `#[derive(TelemetryEvent)]` emits an [`EventSchema`] for each event: its name, its description
//! (the struct's doc comment) and, for each property sent, its JSON name, Rust type, disposition
//! and doc comment. Every event linked into a binary is registered, so the binary can list
//! everything it can ever send with [`events`], as Markdown ([`to_markdown`]) or JSON
//! ([`to_json`]).
//!
//! ```
//! use telemetry_runtime::{schema, TelemetryEvent};
//!
//! /// A job was submitted.
//! #[derive(TelemetryEvent)]
//! struct JobSubmitted {
//!     /// Number of tasks in the job.
//!     tasks: u32,
//! }
//!
//! let events = schema::events();
//! let job = events.iter().find(|e| e.name == "job_submitted").unwrap();
//! assert_eq!(job.description, "A job was submitted.");
//! assert!(schema::to_markdown(&events).contains("| `tasks` | integer |"));
//! ```

use std::fmt::Write as _;

use serde_json::{Map, Value, json};

/// One event: its name and every property it sends.
#[derive(Debug)]
pub struct EventSchema {
    /// The event name sent to the backend, e.g. `job_submitted`.
    pub name: &'static str,
    /// The struct's doc comment.
    pub description: &'static str,
    /// The name of the Rust type.
    pub rust_type: &'static str,
    /// Whether the type is only sent inside other events (`#[telemetry(nested)]`).
    pub nested: bool,
    /// The properties, in declaration order. Skipped fields are absent.
    pub fields: &'static [FieldSchema],
}

/// One property of an event.
#[derive(Debug)]
pub struct FieldSchema {
    /// The JSON property name.
    pub name: &'static str,
    /// The Rust type of the field, as written.
    pub rust_type: &'static str,
    /// How the field's value is turned into what is sent.
    pub disposition: Disposition,
    /// The field's doc comment.
    pub description: &'static str,
    /// The JSON shape of what is sent.
    pub shape: Shape,
}

/// How a field's value is turned into what is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Disposition {
    /// Sent as is: a number, a flag, a time, a value enum or a nested event.
    Value,
    /// `#[hash]`: the keyed hash of the value.
    Hash,
    /// `#[trusted_or_hash]`: the value in clear when trusted, else its keyed hash.
    TrustedOrHash {
        /// Case-insensitive prefixes that make a value trusted.
        prefixes: &'static [&'static str],
        /// The path of the function that decides whether a value is trusted, if any.
        rule: Option<&'static str>,
    },
    /// `#[count]`: the number of items or characters.
    Count,
    /// `#[is_set]`: whether the value is present or non-empty.
    IsSet,
    /// `#[scrub]`: the message with paths, addresses and tokens replaced, cut to `max_len` bytes.
    Scrub {
        /// The longest text sent, in bytes.
        max_len: usize,
    },
    /// The flag sent next to a `#[scrub]` property: whether its text was cut.
    Truncated,
    /// `#[plain]`: sent as is; the author vouches that it is safe.
    Plain,
    /// `#[telemetry(flatten)]`: the nested event's properties are sent at this level.
    Flatten,
}

/// The JSON shape of a property.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum Shape {
    /// `true` or `false`.
    Boolean,
    /// A whole number.
    Integer,
    /// A number; NaN and infinities are sent as `null`.
    Number,
    /// A string.
    String,
    /// A duration, as whole milliseconds.
    Milliseconds,
    /// A point in time, as an RFC 3339 UTC string.
    Timestamp,
    /// One of a fixed set of strings.
    Enum(&'static [&'static str]),
    /// A nested object.
    Object(&'static EventSchema),
    /// An array of values of one shape.
    Array(&'static Shape),
    /// A value of the inner shape, or `null`.
    Nullable(&'static Shape),
    /// Any JSON value (`#[plain]` fields).
    Any,
}

impl Shape {
    /// The nested event inside this shape, looking through arrays and nulls.
    pub fn object(&self) -> Option<&'static EventSchema> {
        match *self {
            Shape::Object(schema) => Some(schema),
            Shape::Array(inner) | Shape::Nullable(inner) => inner.object(),
            _ => None,
        }
    }
}

impl FieldSchema {
    /// The field's doc comment, or for an undocumented nested event, that event's.
    pub fn description_or_nested(&self) -> &'static str {
        match self.shape.object() {
            Some(nested) if self.description.is_empty() => nested.description,
            _ => self.description,
        }
    }
}

#[doc(hidden)]
pub struct Registration(pub &'static EventSchema);

inventory::collect!(Registration);

/// Every event linked into this binary, sorted by name. Types marked
/// `#[telemetry(nested)]` are not listed on their own; they appear inside the events that
/// carry them. Events generic over types are not registered: the registry holds only types it
/// can name.
pub fn events() -> Vec<&'static EventSchema> {
    let mut events: Vec<&'static EventSchema> = inventory::iter::<Registration>
        .into_iter()
        .map(|registration| registration.0)
        .collect();
    events.sort_by(|a, b| (a.name, a.rust_type).cmp(&(b.name, b.rust_type)));
    events.dedup_by(|a, b| std::ptr::eq(*a, *b));
    events
}

/// The properties the library adds to every event (ids, CI, a description of the system).
pub fn common_properties() -> &'static EventSchema {
    crate::builtin::every_event()
}

/// A Markdown document describing `events`: one section per event, one table row per property,
/// and a last section for the properties sent with every event. Nested objects are expanded as
/// `parent.child` rows, arrays of objects as `parent[].child`.
pub fn to_markdown(events: &[&EventSchema]) -> String {
    to_markdown_with(events, None)
}

/// As [`to_markdown`], with the application's properties sent with every event (those given
/// to [`Builder::properties`](crate::Builder::properties)) at the end of the last section:
/// what `telemetry schema` prints.
pub fn to_markdown_with(events: &[&EventSchema], every_event: Option<&EventSchema>) -> String {
    let mut out = String::from("# Telemetry events\n");
    let common = common_properties();
    // Events that share a name (one `command` event per instrumented function) are told apart
    // by their Rust type.
    let shared_name = |name: &str| events.iter().filter(|e| e.name == name).count() > 1;
    let sections = events
        .iter()
        .map(|event| {
            let title = if shared_name(event.name) {
                format!("`{}` (`{}`)", event.name, event.rust_type)
            } else {
                format!("`{}`", event.name)
            };
            (title, *event)
        })
        .chain([("Sent with every event".to_owned(), common)]);
    for (title, event) in sections {
        let _ = write!(out, "\n## {title}\n\n");
        if !event.description.is_empty() {
            let _ = write!(out, "{}\n\n", event.description);
        }
        out.push_str("| Property | Type | Sent as | Description |\n| --- | --- | --- | --- |\n");
        markdown_rows(event.fields, "", &mut out);
    }
    if let Some(app) = every_event {
        markdown_rows(app.fields, "", &mut out);
    }
    out
}

fn markdown_rows(fields: &[FieldSchema], prefix: &str, out: &mut String) {
    for field in fields {
        if field.disposition == Disposition::Flatten
            && let Some(inner) = field.shape.object()
        {
            markdown_rows(inner.fields, prefix, out);
            continue;
        }
        let path = format!("{prefix}{}", field.name);
        let shape = match field.shape {
            // A flattened event the registry cannot name (of a generic type).
            Shape::Any if field.disposition == Disposition::Flatten => {
                format!("the properties of `{}`", field.rust_type)
            }
            Shape::Any if field.disposition == Disposition::Plain => {
                format!("`{}`, serialized", field.rust_type)
            }
            // An argument of a generic type: what is sent depends on the type.
            Shape::Any => format!("`{}`", field.rust_type),
            shape => shape_text(&shape),
        };
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} |",
            path,
            cell(&shape),
            cell(&disposition_text(&field.disposition)),
            cell(field.description_or_nested()),
        );
        if let Some(inner) = field.shape.object() {
            let separator = if matches!(strip_nullable(&field.shape), Shape::Array(_)) {
                "[]."
            } else {
                "."
            };
            markdown_rows(inner.fields, &format!("{path}{separator}"), out);
        }
    }
}

fn strip_nullable(shape: &Shape) -> &Shape {
    match shape {
        Shape::Nullable(inner) => strip_nullable(inner),
        other => other,
    }
}

fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace(['\r', '\n'], " ")
}

fn shape_text(shape: &Shape) -> String {
    match shape {
        Shape::Boolean => "boolean".into(),
        Shape::Integer => "integer".into(),
        Shape::Number => "number".into(),
        Shape::String => "string".into(),
        Shape::Milliseconds => "integer (milliseconds)".into(),
        Shape::Timestamp => "string (RFC 3339 time)".into(),
        Shape::Enum(values) => {
            let values: Vec<String> = values.iter().map(|v| format!("`{v}`")).collect();
            format!("one of {}", values.join(", "))
        }
        Shape::Object(_) => "object".into(),
        Shape::Array(inner) => format!("array of {}", shape_text(inner)),
        Shape::Nullable(inner) => format!("{} or null", shape_text(inner)),
        Shape::Any => "any JSON".into(),
    }
}

fn disposition_text(disposition: &Disposition) -> String {
    match disposition {
        Disposition::Value | Disposition::Truncated => "as is".into(),
        Disposition::Hash => "keyed hash".into(),
        Disposition::TrustedOrHash { prefixes, rule } => {
            let mut trusted: Vec<String> = Vec::new();
            if !prefixes.is_empty() {
                let prefixes: Vec<String> = prefixes.iter().map(|p| format!("`{p}`")).collect();
                trusted.push(format!("it starts with {} (any case)", prefixes.join(", ")));
            }
            if let Some(rule) = rule {
                trusted.push(format!("`{rule}` accepts it"));
            }
            format!("in clear if {}, else keyed hash", trusted.join(" or "))
        }
        Disposition::Count => "count".into(),
        Disposition::IsSet => "whether set".into(),
        Disposition::Scrub { max_len } => format!("scrubbed, at most {max_len} bytes"),
        Disposition::Plain => "as is (declared safe)".into(),
        Disposition::Flatten => "flattened".into(),
    }
}

/// A JSON description of `events`: `{"events": [{"name", "description", "rust_type",
/// "properties": [...]}], "common_properties": {"description", "properties": [...]}}`, the
/// last being what is sent with every event. Each property has its `name`, `disposition`, `rust_type`,
/// `description` and its shape in JSON-Schema words (`type`, `items`, `enum`, `nullable`,
/// nested `properties`). Flattened events are inlined.
pub fn to_json(events: &[&EventSchema]) -> Value {
    to_json_with(events, None)
}

/// As [`to_json`], with the application's properties sent with every event (those given to
/// [`Builder::properties`](crate::Builder::properties)) at the end of `common_properties`:
/// what `telemetry schema --json` prints.
pub fn to_json_with(events: &[&EventSchema], every_event: Option<&EventSchema>) -> Value {
    let events: Vec<Value> = events
        .iter()
        .map(|event| {
            json!({
                "name": event.name,
                "description": event.description,
                "rust_type": event.rust_type,
                "properties": json_properties(event.fields),
            })
        })
        .collect();
    let common = common_properties();
    let mut properties = json_properties(common.fields);
    if let Some(app) = every_event {
        properties.extend(json_properties(app.fields));
    }
    json!({
        "events": events,
        "common_properties": {
            "description": common.description,
            "properties": properties,
        },
    })
}

fn json_properties(fields: &[FieldSchema]) -> Vec<Value> {
    let mut properties = Vec::new();
    for field in fields {
        if field.disposition == Disposition::Flatten
            && let Some(inner) = field.shape.object()
        {
            properties.extend(json_properties(inner.fields));
            continue;
        }
        let mut property = Map::new();
        property.insert("name".into(), field.name.into());
        property.extend(json_shape(&field.shape));
        let (name, details) = json_disposition(&field.disposition);
        property.insert("disposition".into(), name.into());
        property.extend(details);
        property.insert("rust_type".into(), field.rust_type.into());
        property.insert("description".into(), field.description_or_nested().into());
        properties.push(Value::Object(property));
    }
    properties
}

fn json_shape(shape: &Shape) -> Map<String, Value> {
    let mut map = Map::new();
    let simple = |map: &mut Map<String, Value>, ty: &str| {
        map.insert("type".into(), ty.into());
    };
    match shape {
        Shape::Boolean => simple(&mut map, "boolean"),
        Shape::Integer => simple(&mut map, "integer"),
        Shape::Number => simple(&mut map, "number"),
        Shape::String => simple(&mut map, "string"),
        Shape::Milliseconds => {
            simple(&mut map, "integer");
            map.insert("unit".into(), "milliseconds".into());
        }
        Shape::Timestamp => {
            simple(&mut map, "string");
            map.insert("format".into(), "date-time".into());
        }
        Shape::Enum(values) => {
            simple(&mut map, "string");
            map.insert("enum".into(), json!(values));
        }
        Shape::Object(schema) => {
            simple(&mut map, "object");
            map.insert(
                "properties".into(),
                Value::Array(json_properties(schema.fields)),
            );
        }
        Shape::Array(inner) => {
            simple(&mut map, "array");
            map.insert("items".into(), Value::Object(json_shape(inner)));
        }
        Shape::Nullable(inner) => {
            map = json_shape(inner);
            map.insert("nullable".into(), true.into());
        }
        Shape::Any => simple(&mut map, "any"),
    }
    map
}

fn json_disposition(disposition: &Disposition) -> (&'static str, Map<String, Value>) {
    let mut details = Map::new();
    let name = match disposition {
        Disposition::Value => "value",
        Disposition::Hash => "hash",
        Disposition::TrustedOrHash { prefixes, rule } => {
            details.insert("trusted_prefixes".into(), json!(prefixes));
            if let Some(rule) = rule {
                details.insert("trust_rule".into(), (*rule).into());
            }
            "trusted_or_hash"
        }
        Disposition::Count => "count",
        Disposition::IsSet => "is_set",
        Disposition::Scrub { max_len } => {
            details.insert("max_len".into(), (*max_len).into());
            "scrub"
        }
        Disposition::Truncated => "truncated",
        Disposition::Plain => "plain",
        Disposition::Flatten => "flatten",
    };
    (name, details)
}
