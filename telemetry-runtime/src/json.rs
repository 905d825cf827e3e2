//! A small JSON writer that encodes event properties straight into a byte buffer.
//!
//! Generated code writes each property through [`ObjectWriter::key`] and then one value into the
//! returned [`JsonBuf`]. String escaping and number formatting are delegated to `serde_json`,
//! `itoa` and `zmij`; this module only places the punctuation. Writing into a `Vec<u8>` cannot
//! fail, so the only failure is a `#[plain]` value whose `Serialize` impl refuses; that is
//! recorded in the buffer, the value becomes `null`, and the caller sees an [`EncodeError`].

use std::time::SystemTime;

use crate::event::EncodeError;

/// A JSON value being written, plus the first encoding failure seen, if any.
#[derive(Debug, Default)]
pub struct JsonBuf {
    bytes: Vec<u8>,
    current_key: &'static str,
    error: Option<EncodeError>,
}

impl JsonBuf {
    /// An empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty buffer with room for `capacity` bytes.
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        JsonBuf {
            bytes: Vec::with_capacity(capacity),
            ..Self::default()
        }
    }

    /// A buffer that writes after what `bytes` holds, reusing its allocation.
    pub(crate) fn from_vec(bytes: Vec<u8>) -> Self {
        JsonBuf {
            bytes,
            ..Self::default()
        }
    }

    /// Appends JSON text that is already encoded.
    pub(crate) fn raw(&mut self, json: &[u8]) {
        self.bytes.extend_from_slice(json);
    }

    /// The bytes written, or the first failure.
    pub fn finish(self) -> Result<Vec<u8>, EncodeError> {
        match self.error {
            None => Ok(self.bytes),
            Some(error) => Err(error),
        }
    }

    /// Writes `null`.
    pub fn null(&mut self) {
        self.bytes.extend_from_slice(b"null");
    }

    /// Writes `true` or `false`.
    pub fn bool(&mut self, value: bool) {
        self.bytes
            .extend_from_slice(if value { b"true" } else { b"false" });
    }

    /// Writes an integer.
    pub fn int<I: itoa::Integer>(&mut self, value: I) {
        self.bytes
            .extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
    }

    /// Writes a number; NaN and infinities become `null`.
    pub fn f64(&mut self, value: f64) {
        if value.is_finite() {
            self.bytes
                .extend_from_slice(zmij::Buffer::new().format_finite(value).as_bytes());
        } else {
            self.null();
        }
    }

    /// Writes a number; NaN and infinities become `null`.
    pub fn f32(&mut self, value: f32) {
        if value.is_finite() {
            self.bytes
                .extend_from_slice(zmij::Buffer::new().format_finite(value).as_bytes());
        } else {
            self.null();
        }
    }

    /// Writes a JSON string, escaped.
    pub fn string(&mut self, value: &str) {
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
        self.bytes.reserve(bytes.len() * 2 + 2);
        self.bytes.push(b'"');
        push_hex(&mut self.bytes, bytes);
        self.bytes.push(b'"');
    }

    /// Writes a time as an RFC 3339 UTC string with milliseconds, or `null` if it lies
    /// before 1970 or after 9999, which RFC 3339 cannot express here.
    pub fn timestamp(&mut self, time: SystemTime) {
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
    pub fn object(&mut self) -> ObjectWriter<'_> {
        self.bytes.push(b'{');
        ObjectWriter {
            buf: self,
            empty: true,
        }
    }

    /// Writes any `Serialize` value. On failure the value becomes `null` and the error is kept.
    pub fn serialize<T: serde::Serialize + ?Sized>(&mut self, value: &T) {
        let start = self.bytes.len();
        if let Err(error) = serde_json::to_writer(&mut self.bytes, value) {
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
    pub fn key(&mut self, key: &'static str) -> &mut JsonBuf {
        if !self.empty {
            self.buf.bytes.push(b',');
        }
        self.empty = false;
        self.buf.string(key);
        self.buf.bytes.push(b':');
        self.buf.current_key = key;
        self.buf
    }

    /// Appends properties already encoded elsewhere: the inside of a JSON object written by
    /// another `ObjectWriter` (nothing, or `"a":1,"b":2`).
    pub(crate) fn members(&mut self, inner: &[u8]) {
        if inner.is_empty() {
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
    pub fn end(self) {
        self.buf.bytes.push(b'}');
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
