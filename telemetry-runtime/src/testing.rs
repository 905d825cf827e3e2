//! Recording the events a block of code captures, to assert on them in tests without a network
//! or a started telemetry.
//!
//! Inside [`record`] (or [`Recorder::record`]), everything the current thread captures, through
//! [`capture`](crate::capture), [`Telemetry::capture`](crate::Telemetry::capture) or a function
//! marked `#[instrument_command]`, is anonymized exactly as it would be for sending, then kept
//! in the recording instead of going to the pipeline. Nothing is sent, written or started, and
//! consent is not consulted: a recording works the same under CI or with `DO_NOT_TRACK` set.
//!
//! ```
//! use telemetry_runtime::{TelemetryEvent, testing};
//!
//! /// A job was submitted.
//! #[derive(TelemetryEvent)]
//! struct JobSubmitted<'a> {
//!     #[hash]
//!     namespace: &'a str,
//!     #[count]
//!     labels: &'a [&'a str],
//! }
//!
//! fn submit(namespace: &str, labels: &[&str]) {
//!     telemetry_runtime::capture(&JobSubmitted { namespace, labels });
//! }
//!
//! let events = testing::record(|| submit("payroll", &["team=hr"]));
//! let submitted = events.only("job_submitted");
//! assert_eq!(submitted["labels"], 1);
//! assert_eq!(submitted["namespace"], events.hash("payroll"));
//! assert!(!events.contains_text("payroll"));
//! ```
//!
//! The recording is per thread: code that captures on threads it spawns is recorded by calling
//! [`Recorder::record`] on each of them with one shared [`Recorder`]. The library's own
//! lifecycle events (`app_started`, `app_stopped`, `app_fatal`) come from a started telemetry,
//! not from the code under test, and are not recorded.

use std::cell::RefCell;
use std::fmt;
use std::ops::{Deref, Index};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::json::{JsonBuf, ObjectWriter};
use crate::{HashKey, TelemetryEvent};

/// How many threads are recording now: while none is, capturing never looks further.
static RECORDING_THREADS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// The recordings this thread is inside, innermost last.
    static RECORDINGS: RefCell<Vec<Arc<Collector>>> = const { RefCell::new(Vec::new()) };
}

/// Where a recording keeps what it captured.
pub(crate) struct Collector {
    key: HashKey,
    events: Mutex<Vec<RecordedEvent>>,
}

impl Collector {
    /// Anonymizes one event under the recording's key and keeps it.
    pub(crate) fn push(
        &self,
        name: &'static str,
        write: impl FnOnce(&mut ObjectWriter<'_>, &HashKey),
    ) {
        let mut buf = JsonBuf::new();
        let mut object = buf.object();
        write(&mut object, &self.key);
        object.end();
        let properties = match buf.finish() {
            Ok(bytes) => Ok(serde_json::from_slice::<Ordered>(&bytes)
                .expect("the encoder writes a JSON object")
                .0),
            Err(error) => Err(error.to_string()),
        };
        crate::pipeline::lock(&self.events).push(RecordedEvent { name, properties });
    }

    pub(crate) fn key(&self) -> &HashKey {
        &self.key
    }
}

/// The recording the current thread is inside, if any. One relaxed load when none is active
/// anywhere.
pub(crate) fn current() -> Option<Arc<Collector>> {
    if RECORDING_THREADS.load(Ordering::Relaxed) == 0 {
        return None;
    }
    RECORDINGS
        .try_with(|stack| stack.try_borrow().ok()?.last().cloned())
        .ok()
        .flatten()
}

/// Captures `event` into the current thread's recording, if there is one; returns whether it
/// did.
pub(crate) fn capture<E: TelemetryEvent + ?Sized>(event: &E) -> bool {
    match current() {
        Some(collector) => {
            collector.push(E::SCHEMA.name, |properties, key| {
                event.__write_fields(properties, key);
            });
            true
        }
        None => false,
    }
}

/// Runs `body` and returns every event it captured on this thread, under a new random key.
///
/// See the [module documentation](self).
pub fn record(body: impl FnOnce()) -> Recorded {
    let recorder = Recorder::new();
    recorder.record(body);
    recorder.events()
}

/// A recording that may span several blocks and threads. Clones share the recording.
#[derive(Clone)]
pub struct Recorder {
    collector: Arc<Collector>,
}

impl Recorder {
    /// A recording that hashes under a new random key, as an installation would.
    pub fn new() -> Recorder {
        let mut bytes = [0; HashKey::LEN];
        crate::state::fill_random(&mut bytes);
        Recorder::with_key(HashKey::from_bytes(bytes))
    }

    /// A recording that hashes under `key`.
    pub fn with_key(key: HashKey) -> Recorder {
        Recorder {
            collector: Arc::new(Collector {
                key,
                events: Mutex::new(Vec::new()),
            }),
        }
    }

    /// Runs `body`, recording what it captures on this thread, and returns what it returns.
    /// Recordings nest: the innermost one records. A panic in `body` goes on unwinding, and
    /// what was captured before it stays recorded.
    pub fn record<R>(&self, body: impl FnOnce() -> R) -> R {
        struct Leave;
        impl Drop for Leave {
            fn drop(&mut self) {
                let _ = RECORDINGS.try_with(|stack| stack.borrow_mut().pop());
                RECORDING_THREADS.fetch_sub(1, Ordering::Relaxed);
            }
        }
        RECORDINGS.with(|stack| stack.borrow_mut().push(Arc::clone(&self.collector)));
        RECORDING_THREADS.fetch_add(1, Ordering::Relaxed);
        let _leave = Leave;
        body()
    }

    /// Everything recorded so far, in the order it was captured.
    pub fn events(&self) -> Recorded {
        Recorded {
            key: self.collector.key.clone(),
            events: crate::pipeline::lock(&self.collector.events).clone(),
        }
    }

    /// What `#[hash]` sends for `text` in this recording.
    pub fn hash(&self, text: &str) -> String {
        self.collector.key.hash_hex(text)
    }
}

impl Default for Recorder {
    fn default() -> Recorder {
        Recorder::new()
    }
}

impl fmt::Debug for Recorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recorder")
            .field(
                "events",
                &crate::pipeline::lock(&self.collector.events).len(),
            )
            .finish_non_exhaustive()
    }
}

/// The events a recording captured, in order. Dereferences to a slice of [`RecordedEvent`].
#[derive(Debug, Clone)]
pub struct Recorded {
    key: HashKey,
    events: Vec<RecordedEvent>,
}

impl Recorded {
    /// The names of the events, in order.
    pub fn names(&self) -> Vec<&'static str> {
        self.events.iter().map(|event| event.name).collect()
    }

    /// The events named `name`, in order.
    pub fn named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a RecordedEvent> + 'a {
        self.events.iter().filter(move |event| event.name == name)
    }

    /// The one event named `name`.
    ///
    /// # Panics
    ///
    /// Unless exactly one was recorded, listing what was.
    #[track_caller]
    pub fn only(&self, name: &str) -> &RecordedEvent {
        let mut named = self.events.iter().filter(|event| event.name == name);
        match (named.next(), named.next()) {
            (Some(event), None) => event,
            (None, _) => panic!(
                "no `{name}` event was recorded; recorded: {:?}",
                self.names()
            ),
            (Some(_), Some(_)) => panic!(
                "more than one `{name}` event was recorded: {:?}",
                self.names()
            ),
        }
    }

    /// What `#[hash]` sent for `text` in this recording.
    pub fn hash(&self, text: &str) -> String {
        self.key.hash_hex(text)
    }

    /// Whether `needle` appears anywhere in what was recorded, in any property name or value:
    /// for asserting that something never leaves.
    pub fn contains_text(&self, needle: &str) -> bool {
        self.events
            .iter()
            .any(|event| event.to_json().contains(needle))
    }
}

impl Deref for Recorded {
    type Target = [RecordedEvent];

    fn deref(&self) -> &[RecordedEvent] {
        &self.events
    }
}

impl<'a> IntoIterator for &'a Recorded {
    type Item = &'a RecordedEvent;
    type IntoIter = std::slice::Iter<'a, RecordedEvent>;

    fn into_iter(self) -> Self::IntoIter {
        self.events.iter()
    }
}

/// A JSON object's members in the order they were written.
struct Ordered(Vec<(String, Value)>);

impl<'de> serde::Deserialize<'de> for Ordered {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Ordered, D::Error> {
        struct Members;
        impl<'de> serde::de::Visitor<'de> for Members {
            type Value = Ordered;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Ordered, A::Error> {
                let mut members = Vec::new();
                while let Some(member) = map.next_entry()? {
                    members.push(member);
                }
                Ok(Ordered(members))
            }
        }
        deserializer.deserialize_map(Members)
    }
}

/// One recorded event: its name and the properties it would send, without those the library
/// adds to every event. Indexing by a property name gives its value, or `null` when absent.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedEvent {
    /// The event's name.
    pub name: &'static str,
    /// Its properties in the order they would be sent, or why the event could not be encoded
    /// (it would have been dropped).
    pub properties: Result<Vec<(String, Value)>, String>,
}

impl RecordedEvent {
    /// The property `name`, if the event has it.
    pub fn get(&self, name: &str) -> Option<&Value> {
        let properties = self.properties.as_ref().ok()?;
        properties
            .iter()
            .find(|(property, _)| property == name)
            .map(|(_, value)| value)
    }

    /// The names of the properties, in the order they would be sent.
    pub fn property_names(&self) -> Vec<&str> {
        match &self.properties {
            Ok(properties) => properties.iter().map(|(name, _)| name.as_str()).collect(),
            Err(_) => Vec::new(),
        }
    }

    /// The event as JSON: `{"event": name, "properties": {...}}`, or with `"error"` when it
    /// could not be encoded.
    pub fn to_json(&self) -> String {
        let mut out = format!("{{\"event\":{}", Value::from(self.name));
        match &self.properties {
            Ok(properties) => {
                out.push_str(",\"properties\":{");
                for (index, (name, value)) in properties.iter().enumerate() {
                    if index > 0 {
                        out.push(',');
                    }
                    out.push_str(&format!("{}:{value}", Value::from(name.as_str())));
                }
                out.push('}');
            }
            Err(error) => out.push_str(&format!(",\"error\":{}", Value::from(error.as_str()))),
        }
        out.push('}');
        out
    }
}

impl Index<&str> for RecordedEvent {
    type Output = Value;

    fn index(&self, name: &str) -> &Value {
        static NULL: Value = Value::Null;
        self.get(name).unwrap_or(&NULL)
    }
}
