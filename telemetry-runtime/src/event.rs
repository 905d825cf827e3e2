//! The event and value traits, what is sent without a disposition, and encoding an event.

use std::borrow::Cow;
use std::collections::{BTreeSet, HashSet, LinkedList, VecDeque};
use std::fmt;
use std::num::NonZero;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::HashKey;
use crate::json::{JsonBuf, ObjectWriter};
use crate::schema::{EventSchema, Shape};

/// A struct whose anonymized form can be sent as a telemetry event.
///
/// Implement it with `#[derive(TelemetryEvent)]`, which checks at compile time that every field
/// is either safe to send as is or carries a disposition saying what leaves the machine.
///
/// ```
/// use telemetry_runtime::{HashKey, TelemetryEvent, TelemetryValue};
///
/// #[derive(TelemetryValue)]
/// enum Engine { Docker, Wasm }
///
/// /// A job was submitted.
/// #[derive(TelemetryEvent)]
/// struct JobSubmitted<'a> {
///     #[hash]
///     namespace: &'a str,
///     engine: Engine,
///     #[count]
///     labels: &'a [String],
/// }
///
/// let labels = ["gpu".to_string()];
/// let event = JobSubmitted { namespace: "prod", engine: Engine::Wasm, labels: &labels };
/// let properties = telemetry_runtime::anonymize(&event, &HashKey::from_bytes([1; 32])).unwrap();
/// let value = properties.to_value();
/// assert_eq!(value["engine"], "wasm");
/// assert_eq!(value["labels"], 1);
/// assert_ne!(value["namespace"], "prod");
/// assert_eq!(<JobSubmitted as TelemetryEvent>::SCHEMA.name, "job_submitted");
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a telemetry event",
    label = "this type does not derive `TelemetryEvent`",
    note = "derive `TelemetryEvent` on a struct with named fields to send it, nest it or flatten it"
)]
pub trait TelemetryEvent {
    /// The event's name and properties.
    const SCHEMA: &'static EventSchema;

    #[doc(hidden)]
    fn __write_fields(&self, properties: &mut ObjectWriter<'_>, key: &HashKey);
}

impl<T: TelemetryEvent + ?Sized> TelemetryEvent for &T {
    const SCHEMA: &'static EventSchema = T::SCHEMA;
    fn __write_fields(&self, properties: &mut ObjectWriter<'_>, key: &HashKey) {
        (**self).__write_fields(properties, key);
    }
}

impl<T: TelemetryEvent + ?Sized> TelemetryEvent for Box<T> {
    const SCHEMA: &'static EventSchema = T::SCHEMA;
    fn __write_fields(&self, properties: &mut ObjectWriter<'_>, key: &HashKey) {
        (**self).__write_fields(properties, key);
    }
}

/// A value that carries nothing personal and is sent as is, without a disposition.
///
/// Implemented for `bool`, integers, floats (NaN and infinities are sent as `null`),
/// [`Duration`] (whole milliseconds), [`SystemTime`] (RFC 3339, UTC), enums that derive
/// `TelemetryValue` (their variant name in `snake_case`), structs that derive `TelemetryEvent`
/// (a nested object), and `Option`, `Vec`, slices, arrays and sets of these.
///
/// Strings, paths, IP addresses, errors and anything else that could carry personal data do
/// not implement it: a field of such a type needs a disposition, or the event does not compile.
#[diagnostic::on_unimplemented(
    message = "`{Self}` could carry personal data, so it needs a disposition to be sent",
    label = "this field has no disposition",
    note = "say what may leave the machine: `#[hash]` or `#[trusted_or_hash(...)]` (a keyed hash), `#[scrub]` (a message without paths, addresses or tokens), `#[count]` or `#[is_set]` (only its size or presence), `#[plain]` (as is, when you know it is safe) or `#[skip]` (nothing)",
    note = "a struct is sent as a nested object when it derives `TelemetryEvent`, and an enum of unit variants as its variant name when it derives `TelemetryValue`"
)]
pub trait TelemetryValue {
    #[doc(hidden)]
    const __SHAPE: Shape;

    #[doc(hidden)]
    fn __write_json(&self, out: &mut JsonBuf, key: &HashKey);
}

macro_rules! integers {
    ($($ty:ty),*) => {$(
        impl TelemetryValue for $ty {
            const __SHAPE: Shape = Shape::Integer;
            #[inline]
            fn __write_json(&self, out: &mut JsonBuf, _: &HashKey) {
                out.int(*self);
            }
        }
        impl TelemetryValue for NonZero<$ty> {
            const __SHAPE: Shape = Shape::Integer;
            #[inline]
            fn __write_json(&self, out: &mut JsonBuf, _: &HashKey) {
                out.int(self.get());
            }
        }
    )*};
}
integers!(
    u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize
);

impl TelemetryValue for bool {
    const __SHAPE: Shape = Shape::Boolean;
    #[inline]
    fn __write_json(&self, out: &mut JsonBuf, _: &HashKey) {
        out.bool(*self);
    }
}

impl TelemetryValue for f64 {
    const __SHAPE: Shape = Shape::Number;
    #[inline]
    fn __write_json(&self, out: &mut JsonBuf, _: &HashKey) {
        out.f64(*self);
    }
}

impl TelemetryValue for f32 {
    const __SHAPE: Shape = Shape::Number;
    #[inline]
    fn __write_json(&self, out: &mut JsonBuf, _: &HashKey) {
        out.f32(*self);
    }
}

impl TelemetryValue for Duration {
    const __SHAPE: Shape = Shape::Milliseconds;
    #[inline]
    fn __write_json(&self, out: &mut JsonBuf, _: &HashKey) {
        out.int(u64::try_from(self.as_millis()).unwrap_or(u64::MAX));
    }
}

impl TelemetryValue for SystemTime {
    const __SHAPE: Shape = Shape::Timestamp;
    #[inline]
    fn __write_json(&self, out: &mut JsonBuf, _: &HashKey) {
        out.timestamp(*self);
    }
}

impl<T: TelemetryValue> TelemetryValue for Option<T> {
    const __SHAPE: Shape = Shape::Nullable(&T::__SHAPE);
    fn __write_json(&self, out: &mut JsonBuf, key: &HashKey) {
        match self {
            Some(value) => value.__write_json(out, key),
            None => out.null(),
        }
    }
}

macro_rules! sequences {
    ($([$($generics:tt)*] $ty:ty;)*) => {$(
        impl<$($generics)*> TelemetryValue for $ty {
            const __SHAPE: Shape = Shape::Array(&T::__SHAPE);
            fn __write_json(&self, out: &mut JsonBuf, key: &HashKey) {
                out.array(self, |item, out| item.__write_json(out, key));
            }
        }
    )*};
}
sequences! {
    [T: TelemetryValue] [T];
    [T: TelemetryValue, const N: usize] [T; N];
    [T: TelemetryValue] Vec<T>;
    [T: TelemetryValue] VecDeque<T>;
    [T: TelemetryValue] LinkedList<T>;
    [T: TelemetryValue] BTreeSet<T>;
    [T: TelemetryValue, S] HashSet<T, S>;
}

macro_rules! pointers {
    ($([$($generics:tt)*] $ty:ty;)*) => {$(
        impl<$($generics)*> TelemetryValue for $ty {
            const __SHAPE: Shape = T::__SHAPE;
            fn __write_json(&self, out: &mut JsonBuf, key: &HashKey) {
                (**self).__write_json(out, key);
            }
        }
    )*};
}
pointers! {
    [T: TelemetryValue + ?Sized] &T;
    [T: TelemetryValue + ?Sized] &mut T;
    [T: TelemetryValue + ?Sized] Box<T>;
    [T: TelemetryValue + ?Sized] Rc<T>;
    [T: TelemetryValue + ?Sized] Arc<T>;
    [T: TelemetryValue + ToOwned + ?Sized] Cow<'_, T>;
}

/// Why an event could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EncodeError {
    /// A `#[plain]` field's `Serialize` implementation failed (for example a map whose keys are
    /// not strings, or a path that is not UTF-8).
    Plain {
        /// The JSON name of the property.
        property: &'static str,
        /// What `serde_json` reported.
        reason: String,
    },
}

impl std::fmt::Display for EncodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EncodeError::Plain { property, reason } => {
                write!(f, "property `{property}` could not be encoded: {reason}")
            }
        }
    }
}

impl std::error::Error for EncodeError {}

/// The anonymized properties of one event, as a JSON object in declaration order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Properties {
    json: String,
}

impl Properties {
    /// The JSON object text.
    pub fn as_json(&self) -> &str {
        &self.json
    }

    /// The properties as a `serde_json` value. Its keys are sorted unless `serde_json`'s
    /// `preserve_order` feature is on.
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::from_str(&self.json).expect("the encoder writes valid JSON")
    }
}

impl fmt::Display for Properties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.json)
    }
}

/// The properties `event` sends, with every disposition applied under `key`: what would leave
/// the process, and nothing else.
///
/// # Errors
///
/// [`EncodeError::Plain`] when a `#[plain]` field cannot be serialized as JSON.
pub fn anonymize<E: TelemetryEvent + ?Sized>(
    event: &E,
    key: &HashKey,
) -> Result<Properties, EncodeError> {
    let mut buf = JsonBuf::with_capacity(1024);
    write_properties(event, &mut buf, key);
    let bytes = buf.finish()?;
    let json = String::from_utf8(bytes).expect("the encoder writes UTF-8");
    Ok(Properties { json })
}

/// Writes `event`'s properties as one JSON object into `buf`.
pub(crate) fn write_properties<E: TelemetryEvent + ?Sized>(
    event: &E,
    buf: &mut JsonBuf,
    key: &HashKey,
) {
    let mut properties = buf.object();
    event.__write_fields(&mut properties, key);
    properties.end();
}
