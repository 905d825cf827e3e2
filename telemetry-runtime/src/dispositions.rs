//! The field dispositions and the types each one accepts.
//!
//! | disposition | accepts | sends |
//! |---|---|---|
//! | `#[hash]` | [`Hashable`]: strings, paths, OS strings, integers, IP addresses | 64 hex digits of HMAC-SHA-256 under the installation's key |
//! | `#[trusted_or_hash(...)]` | [`Trustable`]: strings, paths, OS strings | the value when trusted, else its hash |
//! | `#[count]` | [`Countable`]: collections, maps, slices, strings | the number of items (characters for strings) |
//! | `#[is_set]` | [`Presence`]: `Option`s, strings, paths, collections | whether it is `Some` / non-empty |
//! | `#[scrub]` | anything `Display` (messages, errors), and `Option`s and sequences of it | the text with paths, URLs, e-mails, IPs and tokens replaced (see [`scrub`](crate::scrub)) |
//! | `#[plain]` | anything `serde::Serialize` | the value as is |
//!
//! `#[hash]`, `#[trusted_or_hash]` and `#[is_set]` look through `&`, `Box`, `Rc`, `Arc` and
//! `Cow`; `#[hash]` and `#[trusted_or_hash]` also through `Option` (sent as `null` when `None`)
//! and sequences (sent as arrays). `#[count]` counts `None` as 0.
//!
//! A `#[trusted_or_hash]` prefix vouches only for a plain reference: ASCII letters, digits and
//! `._-/:+`, no `..`, and `@` only before a `sha256:` digest. Any other value is hashed, so a
//! prefix holding another character (`école/`) trusts nothing; a `with` rule decides alone.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, HashSet, LinkedList, VecDeque};
use std::ffi::{OsStr, OsString};
use std::fmt::{self, Display};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use crate::HashKey;
use crate::json::{JsonBuf, ObjectWriter};
use crate::schema::{EventSchema, Shape};

/// Types `#[hash]` accepts.
#[diagnostic::on_unimplemented(
    message = "`#[hash]` cannot hash a `{Self}`",
    label = "`#[hash]` does not fit this field's type",
    note = "`#[hash]` takes strings, paths, OS strings, integers and IP addresses, and `Option`s, `Vec`s, slices, arrays and sets of them"
)]
pub trait Hashable {
    #[doc(hidden)]
    const __SHAPE: Shape;
    #[doc(hidden)]
    fn __write_hashed(&self, out: &mut JsonBuf, key: &HashKey);
}

/// Types `#[trusted_or_hash(...)]` accepts.
#[diagnostic::on_unimplemented(
    message = "`#[trusted_or_hash]` cannot check a `{Self}`",
    label = "`#[trusted_or_hash]` does not fit this field's type",
    note = "`#[trusted_or_hash]` takes strings, paths and OS strings, and `Option`s, `Vec`s, slices, arrays and sets of them"
)]
pub trait Trustable {
    #[doc(hidden)]
    const __SHAPE: Shape;
    #[doc(hidden)]
    fn __write_trusted(&self, out: &mut JsonBuf, key: &HashKey, trust: &Trust);
}

/// Types `#[count]` accepts.
#[diagnostic::on_unimplemented(
    message = "`#[count]` cannot count a `{Self}`",
    label = "`#[count]` does not fit this field's type",
    note = "`#[count]` takes collections, maps, slices, arrays and strings (it sends their length), and `Option`s of them (`None` counts as 0)"
)]
pub trait Countable {
    #[doc(hidden)]
    fn __count(&self) -> usize;
}

/// Types `#[is_set]` accepts.
#[diagnostic::on_unimplemented(
    message = "`#[is_set]` cannot tell whether a `{Self}` is set",
    label = "`#[is_set]` does not fit this field's type",
    note = "`#[is_set]` takes `Option`s (is it `Some`), and strings, paths and collections (is it non-empty)"
)]
pub trait Presence {
    #[doc(hidden)]
    fn __is_set(&self) -> bool;
}

/// Which values `#[trusted_or_hash]` sends in clear.
#[doc(hidden)]
#[derive(Debug, Clone, Copy)]
pub struct Trust {
    pub prefixes: &'static [&'static str],
    pub rule: Option<fn(&str) -> bool>,
}

impl Trust {
    fn trusts(&self, text: &str) -> bool {
        (plain_reference(text)
            && self
                .prefixes
                .iter()
                .any(|prefix| starts_with_ignoring_case(text, prefix)))
            || self.rule.is_some_and(|rule| rule(text))
    }

    fn write(&self, text: &str, bytes: &[u8], out: &mut JsonBuf, key: &HashKey) {
        if self.trusts(text) {
            out.string(text);
        } else {
            out.hashed(key, bytes);
        }
    }
}

/// Whether `text` is a plain reference, such as an image name, that a trusted prefix may vouch
/// for: ASCII letters, digits and `._-/:+`, no `..` (which would leave the prefix's
/// namespace), and `@` only for a `@sha256:` digest. Anything else after a trusted prefix could
/// be someone's text (`ghcr.io/acme/../alice`, `acme/alice@example.com`), so it is hashed.
fn plain_reference(text: &str) -> bool {
    let (name, digest) = match text.split_once('@') {
        Some((name, digest)) => (name, Some(digest)),
        None => (text, None),
    };
    let digest_ok = digest.is_none_or(|digest| {
        digest
            .strip_prefix("sha256:")
            .is_some_and(|hex| !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()))
    });
    digest_ok
        && !name.contains("..")
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-/:+".contains(&b))
}

fn starts_with_ignoring_case(text: &str, prefix: &str) -> bool {
    if text.is_ascii() && prefix.is_ascii() {
        return text.len() >= prefix.len()
            && text.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes());
    }
    let mut text = text.chars().flat_map(char::to_lowercase);
    prefix
        .chars()
        .flat_map(char::to_lowercase)
        .all(|p| text.next() == Some(p))
}

// Strings: hashed and checked as their UTF-8 bytes; counted in characters.
macro_rules! strings {
    ($($ty:ty),*) => {$(
        impl Hashable for $ty {
            const __SHAPE: Shape = Shape::String;
            fn __write_hashed(&self, out: &mut JsonBuf, key: &HashKey) {
                out.hashed(key, self.as_bytes());
            }
        }
        impl Trustable for $ty {
            const __SHAPE: Shape = Shape::String;
            fn __write_trusted(&self, out: &mut JsonBuf, key: &HashKey, trust: &Trust) {
                trust.write(self, self.as_bytes(), out, key);
            }
        }
        impl Countable for $ty {
            fn __count(&self) -> usize {
                self.chars().count()
            }
        }
        impl Presence for $ty {
            fn __is_set(&self) -> bool {
                !self.is_empty()
            }
        }
    )*};
}
strings!(str, String);

// Paths and OS strings: hashed as their platform bytes; checked as (lossy) text.
macro_rules! os_strings {
    ($($ty:ty),*) => {$(
        impl Hashable for $ty {
            const __SHAPE: Shape = Shape::String;
            fn __write_hashed(&self, out: &mut JsonBuf, key: &HashKey) {
                let os: &OsStr = self.as_ref();
                out.hashed(key, os.as_encoded_bytes());
            }
        }
        impl Trustable for $ty {
            const __SHAPE: Shape = Shape::String;
            fn __write_trusted(&self, out: &mut JsonBuf, key: &HashKey, trust: &Trust) {
                let os: &OsStr = self.as_ref();
                trust.write(&os.to_string_lossy(), os.as_encoded_bytes(), out, key);
            }
        }
        impl Presence for $ty {
            fn __is_set(&self) -> bool {
                let os: &OsStr = self.as_ref();
                !os.is_empty()
            }
        }
    )*};
}
os_strings!(Path, PathBuf, OsStr, OsString);

// Numbers and addresses: hashed as their decimal or textual form, so the hash of `42` and of
// `"42"` agree.
macro_rules! displayed {
    ($($ty:ty),*) => {$(
        impl Hashable for $ty {
            const __SHAPE: Shape = Shape::String;
            fn __write_hashed(&self, out: &mut JsonBuf, key: &HashKey) {
                let mut text = StackText::default();
                let _ = fmt::Write::write_fmt(&mut text, format_args!("{self}"));
                out.hashed(key, text.as_bytes());
            }
        }
    )*};
}
displayed!(
    u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize, IpAddr, Ipv4Addr, Ipv6Addr,
    SocketAddr
);

/// Enough room for the text of any integer or socket address, without allocating.
struct StackText {
    bytes: [u8; 128],
    len: usize,
}

impl Default for StackText {
    fn default() -> Self {
        StackText {
            bytes: [0; 128],
            len: 0,
        }
    }
}

impl StackText {
    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

impl fmt::Write for StackText {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        self.bytes
            .get_mut(self.len..end)
            .ok_or(fmt::Error)?
            .copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

impl<T: Hashable> Hashable for Option<T> {
    const __SHAPE: Shape = Shape::Nullable(&T::__SHAPE);
    fn __write_hashed(&self, out: &mut JsonBuf, key: &HashKey) {
        match self {
            Some(value) => value.__write_hashed(out, key),
            None => out.null(),
        }
    }
}

impl<T: Trustable> Trustable for Option<T> {
    const __SHAPE: Shape = Shape::Nullable(&T::__SHAPE);
    fn __write_trusted(&self, out: &mut JsonBuf, key: &HashKey, trust: &Trust) {
        match self {
            Some(value) => value.__write_trusted(out, key, trust),
            None => out.null(),
        }
    }
}

impl<T: Countable> Countable for Option<T> {
    fn __count(&self) -> usize {
        self.as_ref().map_or(0, T::__count)
    }
}

impl<T> Presence for Option<T> {
    fn __is_set(&self) -> bool {
        self.is_some()
    }
}

macro_rules! sequences {
    ($([$($generics:tt)*] $ty:ty;)*) => {$(
        impl<T: Hashable, $($generics)*> Hashable for $ty {
            const __SHAPE: Shape = Shape::Array(&T::__SHAPE);
            fn __write_hashed(&self, out: &mut JsonBuf, key: &HashKey) {
                out.array(self, |item, out| item.__write_hashed(out, key));
            }
        }
        impl<T: Trustable, $($generics)*> Trustable for $ty {
            const __SHAPE: Shape = Shape::Array(&T::__SHAPE);
            fn __write_trusted(&self, out: &mut JsonBuf, key: &HashKey, trust: &Trust) {
                out.array(self, |item, out| item.__write_trusted(out, key, trust));
            }
        }
    )*};
}
sequences! {
    [] [T];
    [const N: usize] [T; N];
    [] Vec<T>;
    [] VecDeque<T>;
    [] LinkedList<T>;
    [] BTreeSet<T>;
    [S] HashSet<T, S>;
}

macro_rules! lengths {
    ($([$($generics:tt)*] $ty:ty;)*) => {$(
        impl<$($generics)*> Countable for $ty {
            fn __count(&self) -> usize {
                self.len()
            }
        }
        impl<$($generics)*> Presence for $ty {
            fn __is_set(&self) -> bool {
                !self.is_empty()
            }
        }
    )*};
}
lengths! {
    [T] [T];
    [T, const N: usize] [T; N];
    [T] Vec<T>;
    [T] VecDeque<T>;
    [T] LinkedList<T>;
    [T] BinaryHeap<T>;
    [T] BTreeSet<T>;
    [T, S] HashSet<T, S>;
    [K, V] BTreeMap<K, V>;
    [K, V, S] HashMap<K, V, S>;
}

macro_rules! pointers {
    ($([$($generics:tt)*] $ty:ty;)*) => {$(
        impl<$($generics)*> Hashable for $ty where T: Hashable {
            const __SHAPE: Shape = T::__SHAPE;
            fn __write_hashed(&self, out: &mut JsonBuf, key: &HashKey) {
                (**self).__write_hashed(out, key);
            }
        }
        impl<$($generics)*> Trustable for $ty where T: Trustable {
            const __SHAPE: Shape = T::__SHAPE;
            fn __write_trusted(&self, out: &mut JsonBuf, key: &HashKey, trust: &Trust) {
                (**self).__write_trusted(out, key, trust);
            }
        }
        impl<$($generics)*> Countable for $ty where T: Countable {
            fn __count(&self) -> usize {
                (**self).__count()
            }
        }
        impl<$($generics)*> Presence for $ty where T: Presence {
            fn __is_set(&self) -> bool {
                (**self).__is_set()
            }
        }
    )*};
}
pointers! {
    [T: ?Sized] &T;
    [T: ?Sized] &mut T;
    [T: ?Sized] Box<T>;
    [T: ?Sized] Rc<T>;
    [T: ?Sized] Arc<T>;
    [T: ?Sized + ToOwned] Cow<'_, T>;
}

/// What the derive needs to know of a field's type under one disposition: the JSON shape sent,
/// and the function that writes it.
///
/// The derive reaches a field's type only through these `const fn`s, once for the schema and
/// once to write, with the same span: a type that does not fit produces one error, not two.
#[doc(hidden)]
pub mod handles {
    use super::*;
    use crate::{TelemetryEvent, TelemetryValue};

    pub struct Handle<F> {
        pub shape: Shape,
        pub write: F,
    }

    pub struct FlattenHandle<T: ?Sized> {
        pub schema: &'static EventSchema,
        pub write: fn(&T, &mut ObjectWriter<'_>, &HashKey),
    }

    /// A `#[scrub]` property: the name of its text and of its truncation flag, and its limit.
    pub struct ScrubField {
        pub name: &'static str,
        pub truncated_name: &'static str,
        pub max_len: usize,
    }

    pub const fn value<T: ?Sized + TelemetryValue>() -> Handle<fn(&T, &mut JsonBuf, &HashKey)> {
        Handle {
            shape: T::__SHAPE,
            write: T::__write_json,
        }
    }

    pub const fn hash<T: ?Sized + Hashable>() -> Handle<fn(&T, &mut JsonBuf, &HashKey)> {
        Handle {
            shape: T::__SHAPE,
            write: T::__write_hashed,
        }
    }

    pub const fn trusted_or_hash<T: ?Sized + Trustable>()
    -> Handle<fn(&T, &mut JsonBuf, &HashKey, &Trust)> {
        Handle {
            shape: T::__SHAPE,
            write: T::__write_trusted,
        }
    }

    pub const fn count<T: ?Sized + Countable>() -> Handle<fn(&T, &mut JsonBuf)> {
        Handle {
            shape: Shape::Integer,
            write: |value, out| out.int(value.__count()),
        }
    }

    pub const fn is_set<T: ?Sized + Presence>() -> Handle<fn(&T, &mut JsonBuf)> {
        Handle {
            shape: Shape::Boolean,
            write: |value, out| out.bool(value.__is_set()),
        }
    }

    pub const fn plain<T: ?Sized + serde::Serialize>() -> Handle<fn(&T, &mut JsonBuf)> {
        Handle {
            shape: Shape::Any,
            write: |value, out| out.serialize(value),
        }
    }

    pub const fn flatten<T: ?Sized + TelemetryEvent>() -> FlattenHandle<T> {
        FlattenHandle {
            schema: T::SCHEMA,
            write: T::__write_fields,
        }
    }

    type ScrubWrite<T> = fn(&T, &mut ObjectWriter<'_>, &ScrubField);

    /// The same handles, for a value whose type cannot be named (`impl Trait` parameters):
    /// the type is inferred from a reference to the value.
    pub mod inferred {
        use super::*;

        pub fn value<T: ?Sized + TelemetryValue>(_: &T) -> Handle<fn(&T, &mut JsonBuf, &HashKey)> {
            super::value::<T>()
        }

        pub fn hash<T: ?Sized + Hashable>(_: &T) -> Handle<fn(&T, &mut JsonBuf, &HashKey)> {
            super::hash::<T>()
        }

        pub fn trusted_or_hash<T: ?Sized + Trustable>(
            _: &T,
        ) -> Handle<fn(&T, &mut JsonBuf, &HashKey, &Trust)> {
            super::trusted_or_hash::<T>()
        }

        pub fn count<T: ?Sized + Countable>(_: &T) -> Handle<fn(&T, &mut JsonBuf)> {
            super::count::<T>()
        }

        pub fn is_set<T: ?Sized + Presence>(_: &T) -> Handle<fn(&T, &mut JsonBuf)> {
            super::is_set::<T>()
        }

        pub fn plain<T: ?Sized + serde::Serialize>(_: &T) -> Handle<fn(&T, &mut JsonBuf)> {
            super::plain::<T>()
        }

        pub fn flatten<T: ?Sized + TelemetryEvent>(_: &T) -> FlattenHandle<T> {
            super::flatten::<T>()
        }

        pub fn scrub<T: ?Sized + Display>(_: &T) -> Handle<ScrubWrite<T>> {
            super::scrub::<T>()
        }

        pub fn scrub_option<T: Display>(_: &Option<T>) -> Handle<ScrubWrite<Option<T>>> {
            super::scrub_option::<T>()
        }
    }

    pub const fn scrub<T: ?Sized + Display>() -> Handle<ScrubWrite<T>> {
        Handle {
            shape: Shape::String,
            write: |value, properties, field| {
                properties.key(field.name).scrubbed(value, field.max_len);
                properties.key(field.truncated_name).scrub_flag();
            },
        }
    }

    pub const fn scrub_option<T: Display>() -> Handle<ScrubWrite<Option<T>>> {
        Handle {
            shape: Shape::Nullable(&Shape::String),
            write: |value, properties, field| {
                match value {
                    Some(value) => properties.key(field.name).scrubbed(value, field.max_len),
                    None => properties.key(field.name).null(),
                }
                properties.key(field.truncated_name).scrub_flag();
            },
        }
    }

    pub const fn scrub_seq<T: ?Sized + AsRef<[X]>, X: Display>() -> Handle<ScrubWrite<T>> {
        Handle {
            shape: Shape::Array(&Shape::String),
            write: |value, properties, field| {
                properties
                    .key(field.name)
                    .array(value.as_ref(), |item, out| {
                        out.scrubbed(item, field.max_len);
                    });
                properties.key(field.truncated_name).scrub_flag();
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_match_in_any_case() {
        assert!(starts_with_ignoring_case(
            "GHCR.io/Acme/app",
            "ghcr.io/acme/"
        ));
        assert!(!starts_with_ignoring_case(
            "ghcr.io/other/app",
            "ghcr.io/acme/"
        ));
        assert!(!starts_with_ignoring_case("gh", "ghcr.io/"));
        assert!(starts_with_ignoring_case("ÉCOLE/app", "école/"));
        assert!(!starts_with_ignoring_case("éco", "école/"));
    }

    /// Scrubs `value` as a `#[scrub(max_len)]` field would, directly and through a tape.
    fn scrubbed_both_ways(value: &dyn Display, max_len: usize) -> [serde_json::Value; 2] {
        let key = HashKey::from_bytes([1; 32]);
        [false, true].map(|recording| {
            let mut buf = if recording {
                JsonBuf::tape(crate::json::Tape::default())
            } else {
                JsonBuf::new()
            };
            let mut object = buf.object();
            object.key("message").scrubbed(value, max_len);
            object.key("truncated").scrub_flag();
            object.end();
            let json = if recording {
                let mut out = JsonBuf::new();
                crate::json::replay(&buf.finish_tape().unwrap(), &key, &mut out);
                out.finish().unwrap()
            } else {
                buf.finish().unwrap()
            };
            serde_json::from_slice(&json).unwrap()
        })
    }

    #[test]
    fn a_display_cut_inside_a_character_still_drops_its_partial_last_word() {
        // The scrubber looks at 1424 bytes for `max_len = 100`. The paths and the word take
        // 1415 bytes; then 9 bytes of a token and an `é` that straddles byte 1425, where
        // formatting stops: it keeps 1424 bytes, the partial token last.
        struct Cut;
        impl Display for Cut {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                for _ in 0..7 {
                    write!(f, "/{} ", "p".repeat(199))?;
                }
                f.write_str("abcdefg ")?;
                f.write_str("ghp_R2d2Cé3poX8y9Z7w6V5u4T3s2R1q0P9o8N7m6 and more")
            }
        }
        assert_eq!(crate::scrub::input_limit(100), 1424);
        let whole = Cut.to_string();
        assert_eq!(whole.find('é'), Some(1424));
        let expected = crate::scrub::scrub(&whole, 100);
        assert_eq!(expected.text, "<path> ".repeat(7) + "abcdefg");
        for sent in scrubbed_both_ways(&Cut, 100) {
            assert_eq!(
                sent,
                serde_json::json!({ "message": expected.text, "truncated": true })
            );
        }
    }

    #[test]
    fn huge_display_output_stops_early_and_never_shows_a_partial_token() {
        // Seven 200-byte paths shrink to `<path>`, so the end of what is looked at reaches the
        // output; the cut falls 10 bytes into a token too short there to be recognised.
        struct Huge;
        impl Display for Huge {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                for _ in 0..7 {
                    write!(f, "/{} ", "p".repeat(199))?;
                }
                f.write_str("abcdefg ghp_R2d2C3poX8y9Z7w6V5u4T3s2R1q0P9o8N7m6")?;
                loop {
                    f.write_str(" more")?; // never ends: only the limit stops it
                }
            }
        }
        assert_eq!(crate::scrub::input_limit(100), 1424);
        let key = HashKey::from_bytes([1; 32]);
        for recording in [false, true] {
            let mut buf = if recording {
                JsonBuf::tape(crate::json::Tape::default())
            } else {
                JsonBuf::new()
            };
            let mut object = buf.object();
            object.key("message").scrubbed(&Huge, 100);
            object.key("truncated").scrub_flag();
            object.end();
            let json = if recording {
                let mut out = JsonBuf::new();
                crate::json::replay(&buf.finish_tape().unwrap(), &key, &mut out);
                out.finish().unwrap()
            } else {
                buf.finish().unwrap()
            };
            let value: serde_json::Value = serde_json::from_slice(&json).unwrap();
            assert_eq!(
                value,
                serde_json::json!({
                    "message": "<path> ".repeat(7) + "abcdefg",
                    "truncated": true,
                })
            );
        }
    }
}
