//! A small JSON writer that encodes event properties straight into a byte buffer.
//!
//! Generated code writes each property through [`ObjectWriter::key`] and then one value into the
//! returned [`JsonBuf`]. String escaping and number formatting are delegated to `serde_json`,
//! `itoa` and `zmij`; this module only places the punctuation. Writing into a `Vec<u8>` cannot
//! fail, so the only failure is a `#[plain]` value whose `Serialize` impl refuses; that is
//! recorded in the buffer, the value becomes `null`, and the caller sees an [`EncodeError`].
//!
//! # Tapes
//!
//! `capture` must return to the application quickly, and the JSON of an event does not have to
//! exist before the background thread sends it. So on the caller's thread a `JsonBuf` records a
//! *tape* instead: each value in its cheapest form (the bytes of a string to hash or scrub, not
//! its digest or scrubbed text; the names of properties as references to the static strings
//! they are). The background thread replays the tape into exactly the JSON the direct writer
//! would have written ([`replay`]). Everything that runs the application's code (`Display`,
//! `Serialize`) still runs on the caller's thread, while the event's data is borrowed; the
//! tape holds what it produced. The raw values in a tape never leave the process: only the
//! replayed JSON is sent, spooled or printed.

use std::fmt::{self, Display};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::HashKey;
use crate::event::EncodeError;

/// The operations of a tape. Each is one byte, followed by its operands.
mod op {
    /// A property name: the next of the tape's keys.
    pub const KEY: u8 = 1;
    pub const OBJECT: u8 = 2;
    pub const OBJECT_END: u8 = 3;
    pub const ARRAY: u8 = 4;
    pub const ARRAY_END: u8 = 5;
    /// A complete JSON value: a `u32` length and the text.
    pub const RAW: u8 = 6;
    /// A string to escape: a `u32` length and its UTF-8.
    pub const STRING: u8 = 7;
    /// Bytes to hash: a `u32` length and the bytes.
    pub const HASH: u8 = 8;
    /// A time: `u64` seconds since 1970 (`u64::MAX` before it) and `u32` nanoseconds.
    pub const TIME: u8 = 9;
    /// A message to scrub: its `u32` limit, a `u32` length and its UTF-8.
    pub const SCRUB: u8 = 10;
    /// Whether a scrub since the last flag was cut short.
    pub const SCRUB_FLAG: u8 = 11;
    /// Members of an object, already encoded: a `u32` length and the text.
    pub const MEMBERS: u8 = 12;
    /// An unsigned integer: a `u64`.
    pub const UNSIGNED: u8 = 13;
    /// A signed integer: an `i64`.
    pub const SIGNED: u8 = 14;
    /// A finite `f64`: its bits, a `u64`.
    pub const F64: u8 = 15;
    /// A finite `f32`: its bits, a `u32`.
    pub const F32: u8 = 16;
}

/// The integer types [`JsonBuf::int`] writes. A tape records them as 8 bytes, and formats
/// them on replay.
pub trait Integer: itoa::Integer + sealed::Sealed {
    #[doc(hidden)]
    fn __record(self, out: &mut JsonBuf);
}

mod sealed {
    pub trait Sealed {}
}

macro_rules! integers {
    ($wide:ty, $op:expr; $($ty:ty),*) => {$(
        impl sealed::Sealed for $ty {}
        impl Integer for $ty {
            #[inline]
            fn __record(self, out: &mut JsonBuf) {
                match <$wide>::try_from(self) {
                    Ok(wide) => {
                        out.bytes.push($op);
                        out.bytes.extend_from_slice(&wide.to_le_bytes());
                    }
                    // Only 128-bit values beyond 64 bits.
                    Err(_) => out.push_op(op::RAW, itoa::Buffer::new().format(self).as_bytes()),
                }
            }
        }
    )*};
}

integers!(u64, op::UNSIGNED; u8, u16, u32, u64, u128, usize);
integers!(i64, op::SIGNED; i8, i16, i32, i64, i128, isize);

/// A JSON value being written, plus the first encoding failure seen, if any.
#[derive(Debug, Default)]
pub struct JsonBuf {
    bytes: Vec<u8>,
    current_key: &'static str,
    error: Option<EncodeError>,
    /// Recording a tape: the property names written so far.
    tape_keys: Option<Vec<&'static str>>,
    /// Whether a message scrubbed since the last `scrub_flag` was cut short.
    scrub_truncated: bool,
}

/// An event's properties recorded on the caller's thread, to be replayed into JSON.
#[derive(Debug, Default)]
pub(crate) struct Tape {
    pub bytes: Vec<u8>,
    pub keys: Vec<&'static str>,
}

impl Tape {
    /// Empties the tape, keeping its allocations.
    pub(crate) fn clear(&mut self) {
        self.bytes.clear();
        self.keys.clear();
    }
}

impl JsonBuf {
    /// An empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty buffer with room for `capacity` bytes.
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Self::reusing(Vec::with_capacity(capacity))
    }

    /// A buffer that writes after what `bytes` holds, in its allocation.
    pub(crate) fn reusing(bytes: Vec<u8>) -> Self {
        JsonBuf {
            bytes,
            ..Self::default()
        }
    }

    /// A buffer that records a tape (see the module's documentation) into `tape`, reusing
    /// its allocations.
    pub(crate) fn tape(mut tape: Tape) -> Self {
        tape.clear();
        JsonBuf {
            bytes: tape.bytes,
            tape_keys: Some(tape.keys),
            ..Self::default()
        }
    }

    #[inline]
    fn recording(&self) -> bool {
        self.tape_keys.is_some()
    }

    /// Appends an operation with a length-prefixed operand.
    #[inline]
    fn push_op(&mut self, op: u8, operand: &[u8]) {
        self.bytes.reserve(operand.len() + 5);
        self.bytes.push(op);
        self.bytes
            .extend_from_slice(&len_u32(operand.len()).to_le_bytes());
        self.bytes.extend_from_slice(operand);
    }

    /// Appends a complete JSON value that is already encoded.
    #[inline]
    pub(crate) fn raw(&mut self, json: &[u8]) {
        if self.recording() {
            self.push_op(op::RAW, json);
        } else {
            self.bytes.extend_from_slice(json);
        }
    }

    /// How many bytes were written.
    pub(crate) fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Adds `members` (the inside of an object: nothing, or `"a":1,"b":2`) to the object that
    /// ends the buffer.
    pub(crate) fn extend_last_object(&mut self, members: &[u8]) {
        if members.is_empty() || self.bytes.last() != Some(&b'}') {
            return;
        }
        self.bytes.pop();
        if self.bytes.last() != Some(&b'{') {
            self.bytes.push(b',');
        }
        self.bytes.extend_from_slice(members);
        self.bytes.push(b'}');
    }

    /// The bytes written, or the first failure.
    pub fn finish(self) -> Result<Vec<u8>, EncodeError> {
        match self.error {
            None => Ok(self.bytes),
            Some(error) => Err(error),
        }
    }

    /// The tape recorded, or the first failure.
    pub(crate) fn finish_tape(self) -> Result<Tape, EncodeError> {
        match self.error {
            None => Ok(Tape {
                bytes: self.bytes,
                keys: self.tape_keys.unwrap_or_default(),
            }),
            Some(error) => Err(error),
        }
    }

    /// Writes `null`.
    #[inline]
    pub fn null(&mut self) {
        self.raw(b"null");
    }

    /// Writes `true` or `false`.
    #[inline]
    pub fn bool(&mut self, value: bool) {
        self.raw(if value { b"true" } else { b"false" });
    }

    /// Writes an integer.
    #[inline]
    pub fn int<I: Integer>(&mut self, value: I) {
        if self.recording() {
            value.__record(self);
        } else {
            self.bytes
                .extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
        }
    }

    /// Writes a number; NaN and infinities become `null`.
    #[inline]
    pub fn f64(&mut self, value: f64) {
        if !value.is_finite() {
            self.null();
        } else if self.recording() {
            self.bytes.push(op::F64);
            self.bytes.extend_from_slice(&value.to_bits().to_le_bytes());
        } else {
            self.bytes
                .extend_from_slice(zmij::Buffer::new().format_finite(value).as_bytes());
        }
    }

    /// Writes a number; NaN and infinities become `null`.
    #[inline]
    pub fn f32(&mut self, value: f32) {
        if !value.is_finite() {
            self.null();
        } else if self.recording() {
            self.bytes.push(op::F32);
            self.bytes.extend_from_slice(&value.to_bits().to_le_bytes());
        } else {
            self.bytes
                .extend_from_slice(zmij::Buffer::new().format_finite(value).as_bytes());
        }
    }

    /// Writes a JSON string, escaped.
    #[inline]
    pub fn string(&mut self, value: &str) {
        if self.recording() {
            self.push_op(op::STRING, value.as_bytes());
        } else {
            self.escaped(value);
        }
    }

    /// Writes 64 hex digits of HMAC-SHA-256 of `bytes` under `key`.
    #[inline]
    pub(crate) fn hashed(&mut self, key: &HashKey, bytes: &[u8]) {
        if self.recording() {
            self.push_op(op::HASH, bytes);
        } else {
            self.hex(&key.hash(bytes));
        }
    }

    /// Writes the [`scrub`](crate::scrub)bed text of `value`, cut to `max_len` bytes, and
    /// remembers whether it was cut for the next [`scrub_flag`](Self::scrub_flag). Formatting
    /// stops just past what the scrubber looks at, so an error that prints megabytes costs no
    /// more than one that prints a line.
    pub(crate) fn scrubbed<T: ?Sized + Display>(&mut self, value: &T, max_len: usize) {
        // The scrubber knows a message was cut, and drops its last word (maybe the start of a
        // token), only when the text is longer than what it looks at. Formatting stops at a
        // character boundary, up to 3 bytes short of its room, so the room must exceed that
        // limit by 4 for a cut text always to stay longer.
        let limit = crate::scrub::input_limit(max_len).saturating_add(4);
        if self.recording() {
            self.bytes.push(op::SCRUB);
            self.bytes
                .extend_from_slice(&len_u32(max_len).to_le_bytes());
            let at = self.bytes.len();
            self.bytes.extend_from_slice(&[0; 4]);
            let mut text = Bounded {
                out: &mut self.bytes,
                room: limit,
            };
            let _ = fmt::Write::write_fmt(&mut text, format_args!("{value}"));
            let len = len_u32(self.bytes.len() - at - 4);
            self.bytes[at..at + 4].copy_from_slice(&len.to_le_bytes());
        } else {
            let mut text = Vec::new();
            let mut bounded = Bounded {
                out: &mut text,
                room: limit,
            };
            let _ = fmt::Write::write_fmt(&mut bounded, format_args!("{value}"));
            let text = String::from_utf8(text).expect("whole characters are kept");
            self.scrub_now(&text, max_len);
        }
    }

    fn scrub_now(&mut self, text: &str, max_len: usize) {
        let scrubbed = crate::scrub::scrub(text, max_len);
        self.scrub_truncated |= scrubbed.truncated;
        self.escaped(&scrubbed.text);
    }

    /// Writes whether a message scrubbed since the last flag was cut short.
    pub(crate) fn scrub_flag(&mut self) {
        if self.recording() {
            self.bytes.push(op::SCRUB_FLAG);
        } else {
            let truncated = std::mem::take(&mut self.scrub_truncated);
            self.bool(truncated);
        }
    }

    /// Writes a JSON string, escaped, whatever the mode.
    fn escaped(&mut self, value: &str) {
        // Most strings (every property name, enum names, hashes) need no escape.
        // A scan without an early exit, which the compiler vectorizes.
        let needs_escape = value.bytes().fold(false, |found, b| {
            found | (b < 0x20) | (b == b'"') | (b == b'\\')
        });
        if !needs_escape {
            self.bytes.reserve(value.len() + 2);
            self.bytes.push(b'"');
            self.bytes.extend_from_slice(value.as_bytes());
            self.bytes.push(b'"');
            return;
        }
        // Serializing a `str` into a `Vec` cannot fail.
        let _ = serde::Serializer::serialize_str(
            &mut serde_json::Serializer::new(&mut self.bytes),
            value,
        );
    }

    /// Writes `bytes` as a lower-case hexadecimal JSON string.
    pub fn hex(&mut self, bytes: &[u8]) {
        if self.recording() {
            let mut text = Vec::with_capacity(bytes.len() * 2 + 2);
            text.push(b'"');
            push_hex(&mut text, bytes);
            text.push(b'"');
            self.push_op(op::RAW, &text);
            return;
        }
        self.bytes.reserve(bytes.len() * 2 + 2);
        self.bytes.push(b'"');
        push_hex(&mut self.bytes, bytes);
        self.bytes.push(b'"');
    }

    /// Writes a time as an RFC 3339 UTC string with milliseconds, or `null` if it lies
    /// before 1970 or after 9999, which RFC 3339 cannot express here.
    pub fn timestamp(&mut self, time: SystemTime) {
        if self.recording() {
            let (seconds, nanos) = time
                .duration_since(UNIX_EPOCH)
                .map_or((u64::MAX, 0), |since| {
                    (since.as_secs(), since.subsec_nanos())
                });
            self.bytes.push(op::TIME);
            self.bytes.extend_from_slice(&seconds.to_le_bytes());
            self.bytes.extend_from_slice(&nanos.to_le_bytes());
            return;
        }
        match crate::time::rfc3339(time, true) {
            Some(text) => {
                self.bytes.push(b'"');
                self.bytes.extend_from_slice(&text);
                self.bytes.push(b'"');
            }
            None => self.null(),
        }
    }

    /// Writes an array with one element per item.
    pub fn array<I, F>(&mut self, items: I, mut each: F)
    where
        I: IntoIterator,
        F: FnMut(I::Item, &mut JsonBuf),
    {
        if self.recording() {
            // Replaying places the commas.
            self.bytes.push(op::ARRAY);
            for item in items {
                each(item, self);
            }
            self.bytes.push(op::ARRAY_END);
            return;
        }
        self.bytes.push(b'[');
        for (index, item) in items.into_iter().enumerate() {
            if index > 0 {
                self.bytes.push(b',');
            }
            each(item, self);
        }
        self.bytes.push(b']');
    }

    /// Starts an object; end it with [`ObjectWriter::end`].
    #[inline]
    pub fn object(&mut self) -> ObjectWriter<'_> {
        self.bytes
            .push(if self.recording() { op::OBJECT } else { b'{' });
        ObjectWriter {
            buf: self,
            empty: true,
        }
    }

    /// Writes any `Serialize` value. On failure the value becomes `null` and the error is kept.
    pub fn serialize<T: serde::Serialize + ?Sized>(&mut self, value: &T) {
        let start = self.bytes.len();
        let recording = self.recording();
        if recording {
            self.bytes.push(op::RAW);
            self.bytes.extend_from_slice(&[0; 4]);
        }
        let written = serde_json::to_writer(&mut self.bytes, value);
        if recording && written.is_ok() {
            let len = len_u32(self.bytes.len() - start - 5);
            self.bytes[start + 1..start + 5].copy_from_slice(&len.to_le_bytes());
        }
        if let Err(error) = written {
            self.bytes.truncate(start);
            self.null();
            if self.error.is_none() {
                self.error = Some(EncodeError::Plain {
                    property: self.current_key,
                    reason: error.to_string(),
                });
            }
        }
    }
}

/// Appends `bytes` to `out` as lower-case hexadecimal digits.
pub(crate) fn push_hex(out: &mut Vec<u8>, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    out.extend(bytes.iter().flat_map(|byte| {
        [
            DIGITS[usize::from(byte >> 4)],
            DIGITS[usize::from(byte & 0x0f)],
        ]
    }));
}

/// Writes the properties of one JSON object.
#[derive(Debug)]
pub struct ObjectWriter<'a> {
    buf: &'a mut JsonBuf,
    empty: bool,
}

impl ObjectWriter<'_> {
    /// Writes the property name `key` and returns the buffer that takes its value.
    #[inline]
    pub fn key(&mut self, key: &'static str) -> &mut JsonBuf {
        self.buf.current_key = key;
        if let Some(keys) = &mut self.buf.tape_keys {
            keys.push(key);
            self.buf.bytes.push(op::KEY);
            return self.buf;
        }
        if !self.empty {
            self.buf.bytes.push(b',');
        }
        self.empty = false;
        self.buf.escaped(key);
        self.buf.bytes.push(b':');
        self.buf
    }

    /// Appends properties already encoded elsewhere: the inside of a JSON object written by
    /// another `ObjectWriter` (nothing, or `"a":1,"b":2`).
    pub(crate) fn members(&mut self, inner: &[u8]) {
        if inner.is_empty() {
            return;
        }
        if self.buf.recording() {
            self.buf.push_op(op::MEMBERS, inner);
            return;
        }
        if !self.empty {
            self.buf.bytes.push(b',');
        }
        self.empty = false;
        self.buf.bytes.extend_from_slice(inner);
    }

    /// Records that a property could not be encoded, as a failing `#[plain]` value would.
    pub(crate) fn fail(&mut self, error: EncodeError) {
        self.buf.error.get_or_insert(error);
    }

    /// Closes the object.
    #[inline]
    pub fn end(self) {
        let end = if self.buf.recording() {
            op::OBJECT_END
        } else {
            b'}'
        };
        self.buf.bytes.push(end);
    }
}

/// A length as a tape stores it. Nothing this long is ever recorded: events are limited to
/// far less, and a message is cut before it is stored.
fn len_u32(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

/// A `fmt::Write` that appends at most `room` bytes, whole characters only, and then stops
/// the formatting.
struct Bounded<'a> {
    out: &'a mut Vec<u8>,
    room: usize,
}

impl fmt::Write for Bounded<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if s.len() <= self.room {
            self.out.extend_from_slice(s.as_bytes());
            self.room -= s.len();
            return Ok(());
        }
        let kept = crate::scrub::floor_boundary(s, self.room);
        self.out.extend_from_slice(&s.as_bytes()[..kept]);
        self.room = 0;
        Err(fmt::Error)
    }
}

/// Reads a tape's operands.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize) -> &'a [u8] {
        let end = (self.at + len).min(self.bytes.len());
        let taken = &self.bytes[self.at..end];
        self.at = end;
        taken
    }

    fn u32(&mut self) -> usize {
        let mut bytes = [0; 4];
        bytes.copy_from_slice(self.take(4));
        u32::from_le_bytes(bytes) as usize
    }

    fn u64(&mut self) -> u64 {
        let mut bytes = [0; 8];
        bytes.copy_from_slice(self.take(8));
        u64::from_le_bytes(bytes)
    }

    fn operand(&mut self) -> &'a [u8] {
        let len = self.u32();
        self.take(len)
    }

    fn text(&mut self) -> std::borrow::Cow<'a, str> {
        // Recorded from `str`s, so always valid; the strict check is the faster one.
        let operand = self.operand();
        match std::str::from_utf8(operand) {
            Ok(text) => std::borrow::Cow::Borrowed(text),
            Err(_) => String::from_utf8_lossy(operand),
        }
    }
}

/// How many levels of objects and arrays a replay tracks without allocating.
const SHALLOW: usize = 16;

/// The objects and arrays open during a replay: for each, whether it is an array and whether
/// it is still empty. Events nest a few levels deep, so this lives on the stack.
struct Nesting {
    shallow: [(bool, bool); SHALLOW],
    len: usize,
    deeper: Vec<(bool, bool)>,
}

impl Default for Nesting {
    fn default() -> Self {
        Nesting {
            shallow: [(false, false); SHALLOW],
            len: 0,
            deeper: Vec::new(),
        }
    }
}

impl Nesting {
    fn push(&mut self, level: (bool, bool)) {
        match self.shallow.get_mut(self.len) {
            Some(slot) => *slot = level,
            None => self.deeper.push(level),
        }
        self.len += 1;
    }

    fn pop(&mut self) {
        if self.len > SHALLOW {
            self.deeper.pop();
        }
        self.len = self.len.saturating_sub(1);
    }

    fn last_mut(&mut self) -> Option<&mut (bool, bool)> {
        match self.len {
            0 => None,
            len if len <= SHALLOW => self.shallow.get_mut(len - 1),
            _ => self.deeper.last_mut(),
        }
    }
}

/// The fewest bytes of JSON that replaying the tape of operations `bytes` and property names
/// `keys` can write: each string at least quoted, each hash 64 digits, each number one digit,
/// each scrubbed message empty. A tape is no measure of its JSON: it holds what is hashed and
/// scrubbed in full, and integers in 8 bytes, but no property names and no escapes.
pub(crate) fn json_floor(bytes: &[u8], keys: &[&'static str]) -> usize {
    // `"name":` for each property.
    let mut floor: usize = keys.iter().map(|key| key.len() + 3).sum();
    let mut reader = Reader { bytes, at: 0 };
    while let Some(&operation) = bytes.get(reader.at) {
        reader.at += 1;
        floor += match operation {
            op::KEY => 0,
            op::OBJECT | op::OBJECT_END | op::ARRAY | op::ARRAY_END => 1,
            op::RAW | op::MEMBERS => reader.operand().len(),
            op::STRING => reader.operand().len() + 2,
            op::HASH => {
                reader.operand();
                66
            }
            op::UNSIGNED | op::SIGNED | op::F64 => {
                reader.take(8);
                1
            }
            op::F32 => {
                reader.take(4);
                1
            }
            op::TIME => {
                reader.take(12);
                4
            }
            op::SCRUB => {
                reader.take(4);
                reader.operand();
                2
            }
            op::SCRUB_FLAG => 4,
            _ => return 0,
        };
    }
    floor
}

/// Writes the JSON that `tape` recorded into `out`, hashing under `key`: the same JSON the
/// direct writer would have written.
pub(crate) fn replay(tape: &Tape, key: &HashKey, out: &mut JsonBuf) {
    replay_parts(&tape.bytes, &tape.keys, key, out);
}

/// [`replay`] of a tape's operations `bytes` and property names `keys`, held apart.
pub(crate) fn replay_parts(bytes: &[u8], keys: &[&'static str], key: &HashKey, out: &mut JsonBuf) {
    // For each open object or array: whether it is an array, and whether it is still empty.
    let mut open = Nesting::default();
    let mut keys = keys.iter();
    let mut reader = Reader { bytes, at: 0 };
    // A member of an object, or (`in_array`) an element of an array, follows a comma unless
    // it is the first.
    let comma = |open: &mut Nesting, out: &mut JsonBuf, in_array: bool| {
        if let Some((is_array, empty)) = open.last_mut()
            && *is_array == in_array
            && !std::mem::take(empty)
        {
            out.bytes.push(b',');
        }
    };
    while let Some(&operation) = bytes.get(reader.at) {
        reader.at += 1;
        if operation == op::KEY {
            comma(&mut open, out, false);
            out.escaped(keys.next().copied().unwrap_or_default());
            out.bytes.push(b':');
            continue;
        }
        if matches!(operation, op::OBJECT_END | op::ARRAY_END) {
            out.bytes.push(if operation == op::OBJECT_END {
                b'}'
            } else {
                b']'
            });
            open.pop();
            continue;
        }
        if operation == op::MEMBERS {
            comma(&mut open, out, false);
            out.bytes.extend_from_slice(reader.operand());
            continue;
        }
        comma(&mut open, out, true);
        match operation {
            op::OBJECT => {
                out.bytes.push(b'{');
                open.push((false, true));
            }
            op::ARRAY => {
                out.bytes.push(b'[');
                open.push((true, true));
            }
            op::RAW => out.bytes.extend_from_slice(reader.operand()),
            op::STRING => out.escaped(&reader.text()),
            op::HASH => out.hex(&key.hash(reader.operand())),
            op::UNSIGNED => out.int(reader.u64()),
            op::SIGNED => out.int(reader.u64().cast_signed()),
            op::F64 => out.f64(f64::from_bits(reader.u64())),
            op::F32 => out.f32(f32::from_bits(reader.u32() as u32)),
            op::TIME => {
                let seconds = reader.u64();
                let nanos = reader.u32() as u32;
                let time = (seconds != u64::MAX)
                    .then(|| UNIX_EPOCH.checked_add(std::time::Duration::new(seconds, nanos)))
                    .flatten();
                match time {
                    Some(time) => out.timestamp(time),
                    None => out.null(),
                }
            }
            op::SCRUB => {
                let max_len = reader.u32();
                let text = reader.text();
                out.scrub_now(&text, max_len);
            }
            op::SCRUB_FLAG => out.scrub_flag(),
            _ => {
                debug_assert!(false, "unknown tape operation {operation}");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(f: impl FnOnce(&mut JsonBuf)) -> String {
        let mut buf = JsonBuf::new();
        f(&mut buf);
        String::from_utf8(buf.finish().unwrap()).unwrap()
    }

    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        let mut samples: Vec<String> = (0u8..0x80).map(|b| format!("a{}b", b as char)).collect();
        samples.extend(
            [
                "",
                "plain",
                "crème \u{2028} 😀",
                "\"quoted\"",
                "back\\slash",
            ]
            .map(String::from),
        );
        for sample in samples {
            assert_eq!(
                written(|buf| buf.string(&sample)),
                serde_json::to_string(&sample).unwrap()
            );
        }
    }

    /// Writes one of everything the writer can write, with what needs escaping, nesting and
    /// empty containers.
    fn everything(properties: &mut ObjectWriter<'_>, key: &HashKey) {
        use std::time::Duration;
        properties
            .key("plain")
            .string("text with \"quotes\", \\ and \n é 😀");
        properties.key("hashed").hashed(key, b"research-prod");
        properties.key("int").int(-42i64);
        properties.key("big").int(u128::MAX);
        properties.key("float").f64(2.5);
        properties.key("nan").f64(f64::NAN);
        properties.key("small").f32(0.1);
        // Integers and floats at the edges of what a tape holds in 8 bytes, and beyond.
        properties.key("u64_max").int(u64::MAX);
        properties.key("i64_min").int(i64::MIN);
        properties.key("i128_min").int(i128::MIN);
        properties.key("zero").int(0u8);
        properties.key("tiny").f64(-1e-300);
        properties.key("huge").f32(f32::MAX);
        properties.key("infinite").f32(f32::NEG_INFINITY);
        properties.key("yes").bool(true);
        properties.key("none").null();
        properties.key("hex").hex(&[0xde, 0xad]);
        properties
            .key("at")
            .timestamp(UNIX_EPOCH + Duration::from_millis(1_790_000_000_123));
        properties
            .key("before")
            .timestamp(UNIX_EPOCH - Duration::from_secs(1));
        properties.key("esc\u{1}aped\"name").bool(false);
        let mut nested = properties.key("nested").object();
        nested.key("empty").object().end();
        nested.key("none").array(Vec::<u8>::new(), |_, _| {});
        nested
            .key("list")
            .array(["a", "b\"", "c"], |item, out| out.string(item));
        nested.key("grid").array([[1, 2], [3, 4]], |row, out| {
            out.array(row, |n, out| out.int(n));
        });
        nested.key("objects").array([1, 2], |n, out| {
            let mut object = out.object();
            object.key("n").int(n);
            object.end();
        });
        nested.members(br#""m":1,"n":[true]"#);
        nested.end();
        properties
            .key("message")
            .scrubbed("cannot open /home/alice/x.txt for bob@example.com", 24);
        properties.key("message_truncated").scrub_flag();
        properties
            .key("messages")
            .array(["at 10.0.0.1", "fine"], |item, out| out.scrubbed(item, 200));
        properties.key("messages_truncated").scrub_flag();
        properties.key("serialized").serialize(&vec![Some(1), None]);
    }

    #[test]
    fn a_replayed_tape_is_exactly_what_the_direct_writer_writes() {
        let key = HashKey::from_bytes([3; 32]);
        let mut direct = JsonBuf::new();
        let mut object = direct.object();
        everything(&mut object, &key);
        object.end();
        let direct = direct.finish().unwrap();

        let mut recording = JsonBuf::tape(Tape::default());
        let mut object = recording.object();
        everything(&mut object, &key);
        object.end();
        let tape = recording.finish_tape().unwrap();
        // The tape holds what is hashed and scrubbed raw: it never leaves the process.
        assert!(tape.bytes.windows(13).any(|w| w == b"research-prod"));
        let mut replayed = JsonBuf::new();
        replay(&tape, &key, &mut replayed);
        let replayed = replayed.finish().unwrap();

        assert_eq!(
            String::from_utf8(replayed).unwrap(),
            String::from_utf8(direct.clone()).unwrap()
        );
        let value: serde_json::Value = serde_json::from_slice(&direct).unwrap();
        assert_eq!(value["hashed"], key.hash_hex("research-prod"));
        assert_eq!(value["message_truncated"], true);
        assert_eq!(value["messages"][0], "at <ip>");
        assert_eq!(value["messages_truncated"], false);
        assert_eq!(value["nested"]["n"], serde_json::json!([true]));
    }

    /// Objects in arrays in objects, `depth` levels of each, with several members per level.
    fn deep(object: &mut ObjectWriter<'_>, depth: usize) {
        object.key("n").int(depth);
        if depth == 0 {
            return;
        }
        object.key("list").array([true, false], |nested, item| {
            if nested {
                let mut inner = item.object();
                deep(&mut inner, depth - 1);
                inner.end();
            } else {
                item.int(depth);
            }
        });
        object.key("after").bool(true);
    }

    #[test]
    fn the_json_floor_of_a_tape_never_exceeds_its_json() {
        let key = HashKey::from_bytes([2; 32]);
        let mut recording = JsonBuf::tape(Tape::default());
        let mut object = recording.object();
        everything(&mut object, &key);
        object.key("long_hash").hashed(&key, &[b'x'; 5000]);
        object.key("zeros").array([0u64; 1000], |n, out| out.int(n));
        object.end();
        let tape = recording.finish_tape().unwrap();
        let mut replayed = JsonBuf::new();
        replay(&tape, &key, &mut replayed);
        let json = replayed.finish().unwrap();
        let floor = json_floor(&tape.bytes, &tape.keys);
        assert!(floor <= json.len(), "{floor} > {}", json.len());
        // A long hashed value and small integers: the tape is far longer than the JSON.
        assert!(tape.bytes.len() > json.len() + 8000);
        assert!(
            floor > json.len() / 2,
            "{floor} is no measure of {}",
            json.len()
        );
    }

    #[test]
    fn deeply_nested_tapes_replay_exactly() {
        let key = HashKey::from_bytes([1; 32]);
        for depth in [0, 1, 7, 8, 9, 30] {
            let mut direct = JsonBuf::new();
            let mut object = direct.object();
            deep(&mut object, depth);
            object.end();
            let direct = direct.finish().unwrap();
            let mut recording = JsonBuf::tape(Tape::default());
            let mut object = recording.object();
            deep(&mut object, depth);
            object.end();
            let mut replayed = JsonBuf::new();
            replay(&recording.finish_tape().unwrap(), &key, &mut replayed);
            let replayed = replayed.finish().unwrap();
            assert_eq!(replayed, direct, "depth {depth}");
            serde_json::from_slice::<serde_json::Value>(&replayed).unwrap();
        }
    }

    #[test]
    fn a_failing_serialize_fails_a_tape_too() {
        use std::collections::BTreeMap;
        let bad: BTreeMap<(u8, u8), u8> = [((1, 2), 3)].into_iter().collect();
        let mut buf = JsonBuf::tape(Tape::default());
        let mut object = buf.object();
        object.key("bad").serialize(&bad);
        object.end();
        assert!(matches!(
            buf.finish_tape(),
            Err(EncodeError::Plain {
                property: "bad",
                ..
            })
        ));
    }

    #[test]
    fn objects_and_arrays_are_punctuated() {
        let text = written(|buf| {
            let mut obj = buf.object();
            obj.key("a").int(1u8);
            obj.key("b").array([1.5f64, f64::NAN], |x, out| out.f64(x));
            let mut inner = obj.key("c").object();
            inner.key("d\"").string("e\n");
            inner.end();
            obj.key("empty").object().end();
            obj.end();
        });
        assert_eq!(
            text,
            r#"{"a":1,"b":[1.5,null],"c":{"d\"":"e\n"},"empty":{}}"#
        );
        serde_json::from_str::<serde_json::Value>(&text).unwrap();
    }

    #[test]
    fn times_outside_rfc3339_become_null() {
        use std::time::{Duration, UNIX_EPOCH};
        let before = UNIX_EPOCH - Duration::from_secs(1);
        assert_eq!(written(|b| b.timestamp(before)), "null");
        let far = UNIX_EPOCH + Duration::from_secs(253_402_300_800);
        assert_eq!(written(|b| b.timestamp(far)), "null");
        let t = UNIX_EPOCH + Duration::from_millis(1_500);
        assert_eq!(written(|b| b.timestamp(t)), "\"1970-01-01T00:00:01.500Z\"");
    }

    #[test]
    fn a_failing_serialize_becomes_null_and_an_error() {
        use std::collections::BTreeMap;
        let mut buf = JsonBuf::new();
        let mut obj = buf.object();
        // JSON object keys must be strings: a map keyed by a tuple cannot be written.
        let bad: BTreeMap<(u8, u8), u8> = [((1, 2), 3)].into_iter().collect();
        obj.key("bad").serialize(&bad);
        obj.key("good").bool(true);
        obj.end();
        let error = buf.finish().unwrap_err();
        assert!(
            matches!(
                error,
                EncodeError::Plain {
                    property: "bad",
                    ..
                }
            ),
            "{error:?}"
        );
    }
}
