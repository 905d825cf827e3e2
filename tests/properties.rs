//! Properties that hold for any input, checked over generated values: arbitrary Unicode of
//! every plane, control characters, bidi and combining marks, text far beyond every limit,
//! and every kind of float, through every disposition.

#![deny(warnings, unused_qualifications)]

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ffi::OsString;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proptest::prelude::*;
use proptest::test_runner::Config;
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use support::{Receiver, assert_accounted, builder};
use telemetry_runtime::testing::Recorder;
use telemetry_runtime::{HashKey, TelemetryEvent, TelemetryValue};

/// `cases` per property, and no file of failures written into the source tree.
fn config(cases: u32) -> Config {
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Generators
// ---------------------------------------------------------------------------------------------

/// Characters that have broken text handling somewhere: controls, NUL, line and paragraph
/// separators, bidi overrides and isolates, combining marks, joiners, a byte order mark,
/// quotes and separators the scrubber looks at, and characters of every UTF-8 length.
const SPECIAL: &[char] = &[
    '\0',
    '\u{1}',
    '\u{7}',
    '\u{8}',
    '\t',
    '\n',
    '\u{b}',
    '\u{c}',
    '\r',
    '\u{1b}',
    '\u{1f}',
    '\u{7f}',
    '\u{80}',
    '\u{85}',
    '\u{9f}',
    '\u{a0}',
    '\u{ad}',
    '\u{300}',
    '\u{301}',
    '\u{36f}',
    '\u{200b}',
    '\u{200c}',
    '\u{200d}',
    '\u{200e}',
    '\u{200f}',
    '\u{2028}',
    '\u{2029}',
    '\u{202a}',
    '\u{202b}',
    '\u{202c}',
    '\u{202d}',
    '\u{202e}',
    '\u{2066}',
    '\u{2067}',
    '\u{2068}',
    '\u{2069}',
    '\u{3000}',
    '\u{feff}',
    '\u{fffd}',
    '\u{ffff}',
    '\u{10000}',
    '\u{1f980}',
    '\u{e0001}',
    '\u{10ffff}',
    '"',
    '\\',
    '/',
    ':',
    '@',
    '%',
    '=',
    '~',
    '.',
    '\'',
    '`',
    '\u{201c}',
    '\u{201d}',
    '\u{ab}',
    '\u{bb}',
    '\u{300c}',
    '\u{300d}',
    'é',
    '日',
    'ß',
];

/// Any character, weighted towards the troublesome ones.
fn hostile_char() -> impl Strategy<Value = char> {
    prop_oneof![
        3 => any::<char>(),
        3 => prop::sample::select(SPECIAL),
        2 => prop::char::range(' ', '~'),
        1 => prop::char::range('\0', '\u{1f}'),
    ]
}

fn short_text() -> impl Strategy<Value = String> {
    prop::collection::vec(hostile_char(), 0..40).prop_map(String::from_iter)
}

/// The longest text generated: beyond the default `max_event_bytes` (32 KiB) and every
/// `#[scrub]` limit used here.
const LONG: usize = 100_000;

/// Short hostile text mostly, and sometimes a piece of it repeated up to [`LONG`] bytes.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => short_text(),
        1 => (short_text(), 1..10_000usize).prop_map(|(piece, times)| {
            let mut long = piece.repeat(times);
            long.truncate(floor_boundary(&long, LONG));
            long
        }),
    ]
}

fn floor_boundary(text: &str, at: usize) -> usize {
    (0..=at.min(text.len()))
        .rev()
        .find(|&at| text.is_char_boundary(at))
        .unwrap_or(0)
}

/// Every kind of `f64`: any bit pattern (signalling and quiet NaNs of both signs included),
/// and the edges named.
fn float() -> impl Strategy<Value = f64> {
    prop_oneof![
        2 => any::<u64>().prop_map(f64::from_bits),
        2 => prop::sample::select(vec![
            f64::NAN,
            -f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            0.0,
            -0.0,
            f64::MIN_POSITIVE,
            f64::MIN_POSITIVE / 2.0,
            -f64::from_bits(1),
            f64::from_bits(1),
            f64::MAX,
            f64::MIN,
            f64::EPSILON,
            1e21,
            1e-7,
        ]),
        1 => any::<f64>(),
    ]
}

fn float32() -> impl Strategy<Value = f32> {
    prop_oneof![
        2 => any::<u32>().prop_map(f32::from_bits),
        1 => prop::sample::select(vec![
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            -0.0,
            f32::from_bits(1),
            f32::MIN_POSITIVE / 2.0,
            f32::MAX,
        ]),
    ]
}

// ---------------------------------------------------------------------------------------------
// References written here, independently of the runtime
// ---------------------------------------------------------------------------------------------

/// HMAC-SHA-256 (RFC 2104) of `message` under a 32-byte key, as lower-case hex.
fn hmac_hex(key: &[u8; 32], message: &[u8]) -> String {
    let mut block = [0u8; 64];
    block[..32].copy_from_slice(key);
    let padded = |with: u8| block.map(|byte| byte ^ with);
    let inner = Sha256::new()
        .chain_update(padded(0x36))
        .chain_update(message)
        .finalize();
    let outer = Sha256::new()
        .chain_update(padded(0x5c))
        .chain_update(inner)
        .finalize();
    hex(&outer)
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut out, byte| {
        let _ = write!(out, "{byte:02x}");
        out
    })
}

fn is_digest(value: &Value) -> bool {
    value.as_str().is_some_and(|text| {
        text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

/// What a float field must become: `null` when not finite, else the same number.
fn assert_float(sent: &Value, value: f64, what: &str) -> Result<(), TestCaseError> {
    if value.is_finite() {
        let number = sent
            .as_f64()
            .ok_or_else(|| TestCaseError::fail(format!("{what}: {value:e} sent as {sent}")))?;
        // serde_json's default parser may be one unit in the last place off; the exact text is
        // checked where it can be isolated (`floats_are_numbers_or_null`).
        let close = number == value
            || (number - value).abs() <= value.abs() * 4.0 * f64::EPSILON
            || (value.abs() < f64::MIN_POSITIVE && (number - value).abs() <= f64::MIN_POSITIVE);
        prop_assert!(close, "{what}: {value:e} sent as {sent}");
    } else {
        prop_assert_eq!(sent, &Value::Null, "{}: {}", what, value);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// One event with every disposition, on every type each accepts
// ---------------------------------------------------------------------------------------------

#[derive(TelemetryValue, Debug, Clone, Copy)]
enum Phase {
    Queued,
    Running,
    #[telemetry(rename = "finished_ok")]
    Done,
}

impl Phase {
    fn sent(self) -> &'static str {
        match self {
            Phase::Queued => "queued",
            Phase::Running => "running",
            Phase::Done => "finished_ok",
        }
    }
}

#[derive(TelemetryEvent)]
#[telemetry(nested)]
struct Inner<'a> {
    #[hash]
    inner_id: &'a str,
    inner_ratio: f32,
    #[scrub(max_len = 16)]
    inner_note: &'a str,
    #[count]
    inner_items: &'a [String],
}

#[derive(TelemetryEvent)]
#[telemetry(nested)]
struct Flattened<'a> {
    #[trusted_or_hash(prefixes = ["acme/"])]
    flat_image: &'a str,
    #[is_set]
    flat_note: Option<&'a str>,
}

/// A message that `Display`s in several pieces, as an error's `Display` often does.
struct Pieces<'a>(&'a [String]);

impl fmt::Display for Pieces<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|piece| f.write_str(piece))
    }
}

/// A `with` rule for `#[trusted_or_hash]`: short ASCII words are trusted.
fn short_word(text: &str) -> bool {
    (1..8).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_alphanumeric())
}

const PREFIXES: &[&str] = &["ghcr.io/acme/", "acme/", "ÉCOLE/"];

/// Every disposition on every type it accepts, and every type sent as is.
#[derive(TelemetryEvent)]
#[telemetry(name = "every_disposition")]
struct Every<'a> {
    flag: bool,
    tiny: i8,
    huge: u128,
    wide: i128,
    ratio: f64,
    single: f32,
    ratios: Vec<f64>,
    maybe_ratio: Option<f64>,
    elapsed: Duration,
    at: SystemTime,
    phase: Phase,
    phases: Vec<Option<Phase>>,
    inner: Inner<'a>,
    inners: Vec<Inner<'a>>,
    #[telemetry(flatten)]
    flat: Flattened<'a>,
    #[hash]
    h_str: &'a str,
    #[hash]
    h_string: String,
    #[hash]
    h_path: PathBuf,
    #[hash]
    h_os: OsString,
    #[hash]
    h_unsigned: u64,
    #[hash]
    h_signed: i64,
    #[hash]
    h_ip: IpAddr,
    #[hash]
    h_socket: SocketAddr,
    #[hash]
    h_option: Option<&'a str>,
    #[hash]
    h_list: Vec<String>,
    #[hash]
    h_set: BTreeSet<String>,
    #[hash]
    h_array: [&'a str; 2],
    #[trusted_or_hash(prefixes = ["ghcr.io/acme/", "acme/", "ÉCOLE/"])]
    t_str: &'a str,
    #[trusted_or_hash(with = short_word)]
    t_rule: String,
    #[trusted_or_hash(prefixes = ["ghcr.io/acme/", "acme/", "ÉCOLE/"])]
    t_path: PathBuf,
    #[trusted_or_hash(prefixes = ["ghcr.io/acme/", "acme/", "ÉCOLE/"])]
    t_option: Option<String>,
    #[trusted_or_hash(prefixes = ["ghcr.io/acme/", "acme/", "ÉCOLE/"])]
    t_list: Vec<&'a str>,
    #[count]
    c_str: &'a str,
    #[count]
    c_string: String,
    #[count]
    c_list: Vec<String>,
    #[count]
    c_slice: &'a [String],
    #[count]
    c_map: BTreeMap<String, String>,
    #[count]
    c_hash_map: HashMap<String, u8>,
    #[count]
    c_set: HashSet<String>,
    #[count]
    c_option: Option<&'a str>,
    #[count]
    c_none: Option<Vec<u8>>,
    #[is_set]
    s_option: Option<&'a str>,
    #[is_set]
    s_str: &'a str,
    #[is_set]
    s_path: PathBuf,
    #[is_set]
    s_list: Vec<String>,
    #[scrub]
    m_default: &'a str,
    #[scrub(max_len = 1)]
    m_one: String,
    #[scrub(max_len = 37)]
    m_option: Option<String>,
    #[scrub(max_len = 50)]
    m_list: Vec<String>,
    #[scrub(max_len = 5000)]
    m_pieces: Pieces<'a>,
    #[scrub(max_len = 300)]
    m_error: std::io::Error,
    #[plain]
    p_str: &'a str,
    #[plain]
    p_float: f64,
    #[plain]
    p_map: BTreeMap<String, f64>,
    #[plain]
    p_list: Vec<Option<String>>,
    #[plain]
    p_pair: (u8, String),
    #[skip]
    secret: &'a str,
    #[telemetry(rename = "renamed_count")]
    renamed: u8,
}

/// How many independent texts an [`Every`] is built from.
const TEXTS: usize = 24;

/// The generated values an [`Every`] is built from.
#[derive(Debug, Clone)]
struct Inputs {
    texts: Vec<String>,
    list: Vec<String>,
    floats: Vec<f64>,
    ratio: f64,
    single: f32,
    plain_float: f64,
    tiny: i8,
    huge: u128,
    wide: i128,
    unsigned: u64,
    signed: i64,
    flag: bool,
    ip: IpAddr,
    port: u16,
    elapsed: Duration,
    at: SystemTime,
    phases: Vec<Option<u8>>,
    somes: [bool; 4],
}

fn ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(|o| IpAddr::V4(Ipv4Addr::from(o))),
        any::<[u16; 8]>().prop_map(|g| IpAddr::V6(Ipv6Addr::from(g))),
    ]
}

/// A text that a trusted prefix vouches for, or one that only starts like it, or anything.
fn reference() -> impl Strategy<Value = String> {
    prop_oneof![
        (
            prop::sample::select(PREFIXES),
            "[a-z0-9][a-z0-9._/:+-]{0,20}"
        )
            .prop_map(|(prefix, rest)| format!("{prefix}{rest}")),
        (prop::sample::select(PREFIXES), short_text())
            .prop_map(|(prefix, rest)| format!("{}{rest}", prefix.to_lowercase())),
        short_text(),
    ]
}

fn phase(n: u8) -> Phase {
    [Phase::Queued, Phase::Running, Phase::Done][usize::from(n % 3)]
}

prop_compose! {
    fn inputs()(
        mut texts in prop::collection::vec(text(), TEXTS),
        references in prop::collection::vec(reference(), 4),
        list in prop::collection::vec(short_text(), 0..6),
        floats in prop::collection::vec(float(), 0..6),
        (ratio, single, plain_float) in (float(), float32(), float()),
        (tiny, huge, wide, unsigned, signed) in
            (any::<i8>(), any::<u128>(), any::<i128>(), any::<u64>(), any::<i64>()),
        (flag, ip, port) in (any::<bool>(), ip(), any::<u16>()),
        (elapsed, at) in (any::<u64>(), 0..400_000_000_000u64),
        phases in prop::collection::vec(prop::option::of(0..3u8), 0..4),
        somes in any::<[bool; 4]>(),
    ) -> Inputs {
        // The trusted fields take texts that start with a trusted prefix more often.
        texts.splice(0..4, references);
        Inputs {
            texts,
            list,
            floats,
            ratio,
            single,
            plain_float,
            tiny,
            huge,
            wide,
            unsigned,
            signed,
            flag,
            ip,
            port,
            elapsed: Duration::from_nanos(elapsed),
            at: UNIX_EPOCH + Duration::from_secs(at),
            phases,
            somes,
        }
    }
}

impl Inputs {
    fn t(&self, at: usize) -> &str {
        &self.texts[at]
    }

    fn socket(&self) -> SocketAddr {
        SocketAddr::new(self.ip, self.port)
    }

    fn event(&self) -> Every<'_> {
        let some = |at: usize, text: &'_ str| -> Option<String> {
            self.somes[at].then(|| text.to_owned())
        };
        Every {
            flag: self.flag,
            tiny: self.tiny,
            huge: self.huge,
            wide: self.wide,
            ratio: self.ratio,
            single: self.single,
            ratios: self.floats.clone(),
            maybe_ratio: self.somes[0].then_some(self.ratio),
            elapsed: self.elapsed,
            at: self.at,
            phase: phase(self.tiny.to_le_bytes()[0]),
            phases: self.phases.iter().map(|p| p.map(phase)).collect(),
            inner: Inner {
                inner_id: self.t(4),
                inner_ratio: self.single,
                inner_note: self.t(5),
                inner_items: &self.list,
            },
            inners: self
                .list
                .iter()
                .map(|item| Inner {
                    inner_id: item,
                    inner_ratio: self.single,
                    inner_note: item,
                    inner_items: &[],
                })
                .collect(),
            flat: Flattened {
                flat_image: self.t(0),
                flat_note: self.somes[1].then_some(self.t(6)),
            },
            h_str: self.t(6),
            h_string: self.t(7).to_owned(),
            h_path: PathBuf::from(self.t(8)),
            h_os: OsString::from(self.t(9)),
            h_unsigned: self.unsigned,
            h_signed: self.signed,
            h_ip: self.ip,
            h_socket: self.socket(),
            h_option: self.somes[2].then_some(self.t(10)),
            h_list: self.list.clone(),
            h_set: self.list.iter().cloned().collect(),
            h_array: [self.t(11), self.t(12)],
            t_str: self.t(1),
            t_rule: self.t(13).to_owned(),
            t_path: PathBuf::from(self.t(2)),
            t_option: some(3, self.t(3)),
            t_list: self.texts[..4].iter().map(String::as_str).collect(),
            c_str: self.t(14),
            c_string: self.t(15).to_owned(),
            c_list: self.list.clone(),
            c_slice: &self.texts,
            c_map: self
                .list
                .iter()
                .map(|item| (item.clone(), item.clone()))
                .collect(),
            c_hash_map: self.list.iter().map(|item| (item.clone(), 1)).collect(),
            c_set: self.list.iter().cloned().collect(),
            c_option: self.somes[3].then_some(self.t(14)),
            c_none: None,
            s_option: self.somes[0].then_some(self.t(16)),
            s_str: self.t(16),
            s_path: PathBuf::from(self.t(17)),
            s_list: self.list.clone(),
            m_default: self.t(18),
            m_one: self.t(19).to_owned(),
            m_option: some(1, self.t(20)),
            m_list: self.list.iter().chain([&self.texts[20]]).cloned().collect(),
            m_pieces: Pieces(&self.texts[18..22]),
            m_error: std::io::Error::other(self.t(21).to_owned()),
            p_str: self.t(22),
            p_float: self.plain_float,
            p_map: self
                .list
                .iter()
                .cloned()
                .zip(self.floats.iter().copied().chain([self.plain_float]))
                .collect(),
            p_list: self
                .list
                .iter()
                .enumerate()
                .map(|(at, item)| (at % 2 == 0).then(|| item.clone()))
                .collect(),
            p_pair: (self.tiny.to_le_bytes()[0], self.t(22).to_owned()),
            secret: self.t(23),
            renamed: 7,
        }
    }
}

/// The names [`Every`] sends, and nothing else.
const SENT: &[&str] = &[
    "flag",
    "tiny",
    "huge",
    "wide",
    "ratio",
    "single",
    "ratios",
    "maybe_ratio",
    "elapsed",
    "at",
    "phase",
    "phases",
    "inner",
    "inners",
    "flat_image",
    "flat_note",
    "h_str",
    "h_string",
    "h_path",
    "h_os",
    "h_unsigned",
    "h_signed",
    "h_ip",
    "h_socket",
    "h_option",
    "h_list",
    "h_set",
    "h_array",
    "t_str",
    "t_rule",
    "t_path",
    "t_option",
    "t_list",
    "c_str",
    "c_string",
    "c_list",
    "c_slice",
    "c_map",
    "c_hash_map",
    "c_set",
    "c_option",
    "c_none",
    "s_option",
    "s_str",
    "s_path",
    "s_list",
    "m_default",
    "m_default_truncated",
    "m_one",
    "m_one_truncated",
    "m_option",
    "m_option_truncated",
    "m_list",
    "m_list_truncated",
    "m_pieces",
    "m_pieces_truncated",
    "m_error",
    "m_error_truncated",
    "p_str",
    "p_float",
    "p_map",
    "p_list",
    "p_pair",
    "renamed_count",
];

/// Checks a `#[hash]` output: the keyed HMAC of `input`, which neither is nor holds an input of
/// 8 or more characters, and is not its unkeyed SHA-256.
fn check_hash(sent: &Value, input: &str, key: &[u8; 32], what: &str) -> Result<(), TestCaseError> {
    prop_assert!(is_digest(sent), "{what}: {sent}");
    let digest = sent.as_str().unwrap_or_default();
    prop_assert_eq!(digest, hmac_hex(key, input.as_bytes()), "{}", what);
    prop_assert_ne!(digest, hex(&Sha256::digest(input.as_bytes())), "{}", what);
    if input.chars().count() >= 8 {
        prop_assert!(!digest.contains(input), "{what}: {input:?} in {digest}");
    }
    Ok(())
}

/// Checks a `#[trusted_or_hash]` output: in clear only when it starts with a trusted prefix (in
/// any case) and is made of the characters of a plain reference; always in clear when it is an
/// ASCII prefix and a plain lower-case name; else hashed.
fn check_trusted(
    sent: &Value,
    input: &str,
    key: &[u8; 32],
    what: &str,
) -> Result<(), TestCaseError> {
    let lower = input.to_lowercase();
    let prefixed = PREFIXES
        .iter()
        .find(|prefix| lower.starts_with(&prefix.to_lowercase()));
    if sent.as_str() == Some(input) {
        prop_assert!(prefixed.is_some(), "{what}: {input:?} sent in clear");
        let plain = input
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-/:+@".contains(&b));
        prop_assert!(
            plain && !input.contains(".."),
            "{what}: {input:?} sent in clear"
        );
    } else {
        check_hash(sent, input, key, what)?;
        // A prefix vouches only for a plain reference, ASCII throughout: one with other
        // characters (`ÉCOLE/`) never does.
        if let Some(prefix) = prefixed.filter(|prefix| prefix.is_ascii()) {
            let rest = &input[prefix.len()..];
            let plain_name = !rest.is_empty()
                && rest
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            prop_assert!(!plain_name, "{what}: {input:?} hashed");
        }
    }
    Ok(())
}

/// Checks a `#[scrub]` output: what the public `scrub` gives for the same text and limit, at
/// most `max_len` bytes.
fn check_scrub(
    sent: &Value,
    input: &str,
    max_len: usize,
    what: &str,
) -> Result<bool, TestCaseError> {
    let text = sent
        .as_str()
        .ok_or_else(|| TestCaseError::fail(format!("{what}: {sent}")))?;
    prop_assert!(text.len() <= max_len, "{what}: {} bytes", text.len());
    let expected = telemetry_runtime::scrub(input, max_len);
    prop_assert_eq!(text, expected.text.as_str(), "{}", what);
    Ok(expected.truncated)
}

fn count(sent: &Value) -> Option<u64> {
    sent.as_u64()
}

/// Checks everything [`Every`] sent for `inputs` under `key`.
#[allow(clippy::too_many_lines)]
fn check_every(inputs: &Inputs, sent: &Value, key: &[u8; 32]) -> Result<(), TestCaseError> {
    let object = sent
        .as_object()
        .ok_or_else(|| TestCaseError::fail("not an object"))?;
    let mut names: Vec<&str> = object.keys().map(String::as_str).collect();
    let mut expected_names = SENT.to_vec();
    names.sort_unstable();
    expected_names.sort_unstable();
    prop_assert_eq!(names, expected_names);
    let t = |at: usize| inputs.t(at);

    // As is.
    prop_assert_eq!(&sent["flag"], &Value::from(inputs.flag));
    prop_assert_eq!(&sent["tiny"], &Value::from(inputs.tiny));
    if let Ok(huge) = u64::try_from(inputs.huge) {
        prop_assert_eq!(&sent["huge"], &Value::from(huge));
    } else {
        prop_assert!(sent["huge"].is_number());
    }
    if let Ok(wide) = i64::try_from(inputs.wide) {
        prop_assert_eq!(&sent["wide"], &Value::from(wide));
    } else {
        prop_assert!(sent["wide"].is_number());
    }
    assert_float(&sent["ratio"], inputs.ratio, "ratio")?;
    assert_float32(&sent["single"], inputs.single, "single")?;
    let ratios = sent["ratios"].as_array().cloned().unwrap_or_default();
    prop_assert_eq!(ratios.len(), inputs.floats.len());
    for (sent, value) in ratios.iter().zip(&inputs.floats) {
        assert_float(sent, *value, "ratios")?;
    }
    if inputs.somes[0] {
        assert_float(&sent["maybe_ratio"], inputs.ratio, "maybe_ratio")?;
    } else {
        prop_assert_eq!(&sent["maybe_ratio"], &Value::Null);
    }
    let millis = u64::try_from(inputs.elapsed.as_millis()).unwrap_or(u64::MAX);
    prop_assert_eq!(&sent["elapsed"], &Value::from(millis));
    let representable = inputs.at < UNIX_EPOCH + Duration::from_secs(253_402_300_800);
    match &sent["at"] {
        Value::String(at) => {
            prop_assert!(representable && at.len() == 24 && at.ends_with('Z'), "{at}");
        }
        other => prop_assert!(!representable && other.is_null(), "{other}"),
    }
    prop_assert_eq!(
        &sent["phase"],
        &Value::from(phase(inputs.tiny.to_le_bytes()[0]).sent())
    );
    let phases: Vec<Value> = inputs
        .phases
        .iter()
        .map(|p| p.map_or(Value::Null, |p| Value::from(phase(p).sent())))
        .collect();
    prop_assert_eq!(&sent["phases"], &Value::from(phases));

    // Nested and flattened events.
    let check_inner = |sent: &Value, id: &str, note: &str, items: usize| {
        check_hash(&sent["inner_id"], id, key, "inner_id")?;
        assert_float32(&sent["inner_ratio"], inputs.single, "inner_ratio")?;
        let truncated = check_scrub(&sent["inner_note"], note, 16, "inner_note")?;
        prop_assert_eq!(&sent["inner_note_truncated"], &Value::from(truncated));
        prop_assert_eq!(count(&sent["inner_items"]), Some(items as u64));
        Ok::<(), TestCaseError>(())
    };
    check_inner(&sent["inner"], t(4), t(5), inputs.list.len())?;
    let inners = sent["inners"].as_array().cloned().unwrap_or_default();
    prop_assert_eq!(inners.len(), inputs.list.len());
    for (sent, item) in inners.iter().zip(&inputs.list) {
        check_inner(sent, item, item, 0)?;
    }
    check_trusted_prefix_acme(&sent["flat_image"], t(0), key)?;
    prop_assert_eq!(&sent["flat_note"], &Value::from(inputs.somes[1]));

    // `#[hash]`.
    for (name, input) in [
        ("h_str", t(6)),
        ("h_string", t(7)),
        ("h_path", t(8)),
        ("h_os", t(9)),
    ] {
        check_hash(&sent[name], input, key, name)?;
    }
    check_hash(
        &sent["h_unsigned"],
        &inputs.unsigned.to_string(),
        key,
        "h_unsigned",
    )?;
    check_hash(
        &sent["h_signed"],
        &inputs.signed.to_string(),
        key,
        "h_signed",
    )?;
    check_hash(&sent["h_ip"], &inputs.ip.to_string(), key, "h_ip")?;
    check_hash(
        &sent["h_socket"],
        &inputs.socket().to_string(),
        key,
        "h_socket",
    )?;
    if inputs.somes[2] {
        check_hash(&sent["h_option"], t(10), key, "h_option")?;
    } else {
        prop_assert_eq!(&sent["h_option"], &Value::Null);
    }
    let set: BTreeSet<&String> = inputs.list.iter().collect();
    for (name, items) in [
        ("h_list", inputs.list.iter().collect::<Vec<_>>()),
        ("h_set", set.into_iter().collect()),
    ] {
        let sent = sent[name].as_array().cloned().unwrap_or_default();
        prop_assert_eq!(sent.len(), items.len(), "{}", name);
        for (sent, item) in sent.iter().zip(items) {
            check_hash(sent, item, key, name)?;
        }
    }
    check_hash(&sent["h_array"][0], t(11), key, "h_array")?;
    check_hash(&sent["h_array"][1], t(12), key, "h_array")?;

    // `#[trusted_or_hash]`.
    check_trusted(&sent["t_str"], t(1), key, "t_str")?;
    check_trusted(&sent["t_path"], t(2), key, "t_path")?;
    if inputs.somes[3] {
        check_trusted(&sent["t_option"], t(3), key, "t_option")?;
    } else {
        prop_assert_eq!(&sent["t_option"], &Value::Null);
    }
    let list = sent["t_list"].as_array().cloned().unwrap_or_default();
    prop_assert_eq!(list.len(), 4);
    for (sent, input) in list.iter().zip(&inputs.texts) {
        check_trusted(sent, input, key, "t_list")?;
    }
    if short_word(t(13)) {
        prop_assert_eq!(&sent["t_rule"], &Value::from(t(13)));
    } else {
        check_hash(&sent["t_rule"], t(13), key, "t_rule")?;
    }

    // `#[count]`: characters of strings, elements of collections, `None` as 0.
    let unique: HashSet<&String> = inputs.list.iter().collect();
    for (name, expected) in [
        ("c_str", t(14).chars().count()),
        ("c_string", t(15).chars().count()),
        ("c_list", inputs.list.len()),
        ("c_slice", TEXTS),
        ("c_map", unique.len()),
        ("c_hash_map", unique.len()),
        ("c_set", unique.len()),
        (
            "c_option",
            if inputs.somes[3] {
                t(14).chars().count()
            } else {
                0
            },
        ),
        ("c_none", 0),
    ] {
        prop_assert_eq!(count(&sent[name]), Some(expected as u64), "{}", name);
    }

    // `#[is_set]`.
    prop_assert_eq!(&sent["s_option"], &Value::from(inputs.somes[0]));
    prop_assert_eq!(&sent["s_str"], &Value::from(!t(16).is_empty()));
    prop_assert_eq!(&sent["s_path"], &Value::from(!t(17).is_empty()));
    prop_assert_eq!(&sent["s_list"], &Value::from(!inputs.list.is_empty()));

    // `#[scrub]`: the public function's text, within each limit, and its flag.
    let truncated = check_scrub(&sent["m_default"], t(18), 200, "m_default")?;
    prop_assert_eq!(&sent["m_default_truncated"], &Value::from(truncated));
    let truncated = check_scrub(&sent["m_one"], t(19), 1, "m_one")?;
    prop_assert_eq!(&sent["m_one_truncated"], &Value::from(truncated));
    if inputs.somes[1] {
        let truncated = check_scrub(&sent["m_option"], t(20), 37, "m_option")?;
        prop_assert_eq!(&sent["m_option_truncated"], &Value::from(truncated));
    } else {
        prop_assert_eq!(&sent["m_option"], &Value::Null);
        prop_assert_eq!(&sent["m_option_truncated"], &Value::from(false));
    }
    let list = sent["m_list"].as_array().cloned().unwrap_or_default();
    prop_assert_eq!(list.len(), inputs.list.len() + 1);
    let mut any_truncated = false;
    for (sent, input) in list
        .iter()
        .zip(inputs.list.iter().chain([&inputs.texts[20]]))
    {
        any_truncated |= check_scrub(sent, input, 50, "m_list")?;
    }
    prop_assert_eq!(&sent["m_list_truncated"], &Value::from(any_truncated));
    let pieces = inputs.texts[18..22].concat();
    let truncated = check_scrub(&sent["m_pieces"], &pieces, 5000, "m_pieces")?;
    prop_assert_eq!(&sent["m_pieces_truncated"], &Value::from(truncated));
    let truncated = check_scrub(&sent["m_error"], t(21), 300, "m_error")?;
    prop_assert_eq!(&sent["m_error_truncated"], &Value::from(truncated));

    // `#[plain]`: as `serde_json` writes it, non-finite floats as `null`.
    prop_assert_eq!(&sent["p_str"], &Value::from(t(22)));
    assert_float(&sent["p_float"], inputs.plain_float, "p_float")?;
    let map = sent["p_map"].as_object().cloned().unwrap_or_default();
    let expected: BTreeMap<&String, f64> = inputs
        .list
        .iter()
        .zip(inputs.floats.iter().copied().chain([inputs.plain_float]))
        .collect();
    prop_assert_eq!(map.len(), expected.len());
    for (name, value) in expected {
        assert_float(&map[name.as_str()], value, "p_map")?;
    }
    let list: Vec<Value> = inputs
        .list
        .iter()
        .enumerate()
        .map(|(at, item)| {
            if at % 2 == 0 {
                Value::from(item.as_str())
            } else {
                Value::Null
            }
        })
        .collect();
    prop_assert_eq!(&sent["p_list"], &Value::from(list));
    prop_assert_eq!(
        &sent["p_pair"],
        &serde_json::json!([inputs.tiny.to_le_bytes()[0], t(22)])
    );

    // `#[skip]` sends nothing, and a rename only renames.
    prop_assert!(object.get("secret").is_none());
    prop_assert_eq!(&sent["renamed_count"], &Value::from(7));
    Ok(())
}

fn check_trusted_prefix_acme(
    sent: &Value,
    input: &str,
    key: &[u8; 32],
) -> Result<(), TestCaseError> {
    if sent.as_str() == Some(input) {
        prop_assert!(
            input.to_lowercase().starts_with("acme/")
                && input
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-/:+@".contains(&b)),
            "flat_image: {input:?} sent in clear"
        );
        Ok(())
    } else {
        check_hash(sent, input, key, "flat_image")
    }
}

fn assert_float32(sent: &Value, value: f32, what: &str) -> Result<(), TestCaseError> {
    if value.is_finite() {
        let number = sent
            .as_f64()
            .ok_or_else(|| TestCaseError::fail(format!("{what}: {value:e} sent as {sent}")))?;
        #[allow(clippy::cast_possible_truncation)]
        let back = number as f32;
        let close = back == value
            || (back - value).abs() <= value.abs() * 2.0 * f32::EPSILON
            || (value.abs() < f32::MIN_POSITIVE && (back - value).abs() <= f32::MIN_POSITIVE);
        prop_assert!(close, "{what}: {value:e} sent as {sent}");
    } else {
        prop_assert_eq!(sent, &Value::Null, "{}: {}", what, value);
    }
    Ok(())
}

/// The properties recorded for one event by [`Recorder`], as one JSON object.
fn recorded<E: TelemetryEvent>(event: &E, key: [u8; 32]) -> Value {
    let recorder = Recorder::with_key(HashKey::from_bytes(key));
    recorder.record(|| telemetry_runtime::capture(event));
    let events = recorder.events();
    assert_eq!(events.len(), 1);
    let properties = events[0].properties.clone().expect("the event encodes");
    Value::Object(properties.into_iter().collect())
}

proptest! {
    #![proptest_config(config(128))]

    /// Property 1 for every disposition: the output is valid JSON holding exactly what each
    /// disposition promises, within each documented limit, alike from `anonymize` and from a
    /// recording.
    #[test]
    fn every_disposition_sends_valid_json_within_its_limits(
        inputs in inputs(),
        key in any::<[u8; 32]>(),
    ) {
        let event = inputs.event();
        let properties = telemetry_runtime::anonymize(&event, &HashKey::from_bytes(key))
            .expect("nothing here can fail to encode");
        let parsed: Value = serde_json::from_str(properties.as_json())
            .map_err(|error| TestCaseError::fail(format!("invalid JSON: {error}")))?;
        check_every(&inputs, &parsed, &key)?;
        let secret = serde_json::to_string(event.secret).unwrap_or_default();
        let secret = secret.trim_matches('"');
        if secret.chars().count() >= 8 {
            prop_assert!(!properties.as_json().contains(secret), "the skipped field leaked");
        }
        prop_assert_eq!(recorded(&event, key), parsed);
    }
}

// ---------------------------------------------------------------------------------------------
// Floats
// ---------------------------------------------------------------------------------------------

#[derive(TelemetryEvent)]
struct Double {
    value: f64,
}

#[derive(TelemetryEvent)]
struct Single {
    value: f32,
}

#[derive(TelemetryEvent)]
struct PlainDouble {
    #[plain]
    value: f64,
}

/// The text of the one property of `event`, as written.
fn value_text<E: TelemetryEvent>(event: &E) -> Result<String, TestCaseError> {
    let properties = telemetry_runtime::anonymize(event, &HashKey::from_bytes([5; 32]))
        .map_err(|error| TestCaseError::fail(error.to_string()))?;
    let json = properties.as_json();
    serde_json::from_str::<Value>(json)
        .map_err(|error| TestCaseError::fail(format!("invalid JSON {json}: {error}")))?;
    json.strip_prefix(r#"{"value":"#)
        .and_then(|rest| rest.strip_suffix('}'))
        .map(str::to_owned)
        .ok_or_else(|| TestCaseError::fail(format!("unexpected shape: {json}")))
}

proptest! {
    #![proptest_config(config(256))]

    /// Property 2: a float is sent as a JSON number that reads back as exactly the same value
    /// (the sign of zero and subnormals included), and NaN and the infinities as `null`, as
    /// `TelemetryValue` documents; a `#[plain]` float too.
    #[test]
    fn floats_are_numbers_or_null(double in float(), single in float32()) {
        for text in [value_text(&Double { value: double })?, value_text(&PlainDouble { value: double })?] {
            if double.is_finite() {
                let back: f64 = text.parse().map_err(|_| TestCaseError::fail(text.clone()))?;
                prop_assert_eq!(back.to_bits(), double.to_bits(), "{} sent as {}", double, text);
            } else {
                prop_assert_eq!(&text, "null");
            }
        }
        let text = value_text(&Single { value: single })?;
        if single.is_finite() {
            let back: f32 = text.parse().map_err(|_| TestCaseError::fail(text.clone()))?;
            prop_assert_eq!(back.to_bits(), single.to_bits(), "{} sent as {}", single, text);
        } else {
            prop_assert_eq!(&text, "null");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Hashing and counting
// ---------------------------------------------------------------------------------------------

#[derive(TelemetryEvent)]
struct Hashed<'a> {
    #[hash]
    value: &'a str,
    #[hash]
    again: String,
}

proptest! {
    #![proptest_config(config(256))]

    /// Property 5: the same value under the same key hashes alike in two fields, two events and
    /// two recordings; under another key differently; never to its input or its unkeyed
    /// SHA-256.
    #[test]
    fn hashes_are_stable_keyed_and_opaque(
        value in text(),
        key in any::<[u8; 32]>(),
        other in any::<[u8; 32]>(),
    ) {
        prop_assume!(key != other);
        let event = Hashed { value: &value, again: value.clone() };
        let first = Recorder::with_key(HashKey::from_bytes(key));
        first.record(|| {
            telemetry_runtime::capture(&event);
            telemetry_runtime::capture(&event);
        });
        let second = recorded(&event, key);
        let elsewhere = recorded(&event, other);
        let direct = telemetry_runtime::anonymize(&event, &HashKey::from_bytes(key))
            .map_err(|error| TestCaseError::fail(error.to_string()))?
            .to_value();
        let digest = &second["value"];
        check_hash(digest, &value, &key, "value")?;
        for recorded in first.events().iter() {
            prop_assert_eq!(&recorded["value"], digest);
            prop_assert_eq!(&recorded["again"], digest);
        }
        prop_assert_eq!(&second["again"], digest);
        prop_assert_eq!(&direct["value"], digest);
        prop_assert_eq!(first.hash(&value), digest.as_str().unwrap_or_default());
        check_hash(&elsewhere["value"], &value, &other, "value")?;
        prop_assert_ne!(&elsewhere["value"], digest);
    }
}

#[derive(TelemetryEvent)]
struct Counted<'a> {
    #[count]
    text: &'a str,
    #[count]
    owned: Option<String>,
    #[count]
    items: Vec<&'a str>,
    #[count]
    by_name: BTreeMap<&'a str, usize>,
    #[count]
    missing: Option<Vec<String>>,
}

proptest! {
    #![proptest_config(config(256))]

    /// Property 6: `#[count]` sends the number of characters of a string, of elements of a
    /// collection, and 0 for `None`.
    #[test]
    fn counts_are_characters_elements_or_zero(
        text in text(),
        owned in prop::option::of(short_text()),
        items in prop::collection::vec(short_text(), 0..20),
    ) {
        let event = Counted {
            text: &text,
            owned: owned.clone(),
            items: items.iter().map(String::as_str).collect(),
            by_name: items.iter().map(|item| (item.as_str(), item.len())).collect(),
            missing: None,
        };
        let sent = recorded(&event, [3; 32]);
        let unique: BTreeSet<&String> = items.iter().collect();
        prop_assert_eq!(count(&sent["text"]), Some(text.chars().count() as u64));
        prop_assert_eq!(
            count(&sent["owned"]),
            Some(owned.map_or(0, |owned| owned.chars().count()) as u64)
        );
        prop_assert_eq!(count(&sent["items"]), Some(items.len() as u64));
        prop_assert_eq!(count(&sent["by_name"]), Some(unique.len() as u64));
        prop_assert_eq!(count(&sent["missing"]), Some(0));
    }
}

// ---------------------------------------------------------------------------------------------
// Truncation
// ---------------------------------------------------------------------------------------------

/// A limit: small ones mostly, where characters straddle it, and some beyond the text.
fn max_len() -> impl Strategy<Value = usize> {
    prop_oneof![
        4 => 0..64usize,
        2 => 64..2048usize,
        1 => 2048..200_000usize,
    ]
}

proptest! {
    #![proptest_config(config(256))]

    /// Property 4: a scrubbed text is at most `max_len` bytes of whole characters, the start of
    /// what a larger limit gives, and flagged as truncated whenever it is not all of it.
    #[test]
    fn truncation_keeps_whole_characters_of_a_prefix(text in text(), max_len in max_len()) {
        let cut = telemetry_runtime::scrub(&text, max_len);
        prop_assert!(cut.text.len() <= max_len, "{} bytes for {}", cut.text.len(), max_len);
        let whole = telemetry_runtime::scrub(&text, usize::MAX / 8);
        prop_assert!(!whole.truncated);
        // The cut falls between two characters of the whole text, never inside one.
        prop_assert!(whole.text.is_char_boundary(cut.text.len().min(whole.text.len())));
        prop_assert!(
            whole.text.starts_with(&cut.text),
            "{:?} is not the start of {:?}",
            cut.text,
            whole.text
        );
        if !cut.truncated {
            prop_assert_eq!(&cut.text, &whole.text);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Scrubbing
// ---------------------------------------------------------------------------------------------

/// A random lower-case word: the part of an embedded item that must not survive scrubbing.
fn marker() -> impl Strategy<Value = String> {
    "[a-z]{8,12}"
}

/// Shapes that embed a marker `{m}`: paths of every platform, URLs, e-mail addresses and host
/// names with a port, in the forms the scrubber documents. Left out, as the module documents
/// them unsupported: bare host names without a port, `name:password` without a key word, and
/// an unquoted Windows path with a space in its last part.
const SHAPES: &[&str] = &[
    "/home/{m}/notes.txt",
    "/Users/{m}",
    "/var/lib/{m}/db.sqlite",
    "//{m}/share",
    "~/{m}/x",
    "~{m}/notes",
    "$HOME/{m}",
    "${HOME}/{m}/.config",
    r"%APPDATA%\{m}\cfg",
    r"C:\Users\{m}\AppData\x.ini",
    "d:/{m}/x",
    r"C:\{m}",
    r"\\{m}\share",
    r"\\fileserver\{m}\q3",
    "./{m}/x",
    "../{m}",
    "docs/{m}.txt",
    "{m}/private-img",
    "src/{m}.rs:12:5",
    r#""C:\Program Files\{m} Corp\report q3.xlsx""#,
    "'/Users/{m}/My Documents/taxes'",
    r#""/home/a b/{m} c d""#,
    "file:///home/{m}/x",
    "file://{m}/share/x",
    "https://{m}:pw@host.example:8443/p?q=1",
    "http://user:{m}@host.example/p",
    "https://host.example/{m}?q=x",
    "https://host.example:8443/p?token={m}&x=1",
    "http://{m}.example.com/",
    "https://[2001:db8::1]:8080/{m}",
    "http://10.0.0.1:80/{m}",
    "ftp://{m}.lan/x",
    "postgres://{m}:secret@db:5432/app",
    "www.{m}.com",
    "{m}@example.com",
    "{m}.smith+tag@sub.example.co.uk",
    "mailto:{m}@x.org",
    "alice@{m}.example",
    "{m}.acme.internal:5432",
    "password={m}",
    "token:{m}",
    "api_key={m}&x=1",
    "user={m}",
];

/// What may come before and after an embedded item in the same word.
const WRAPPERS: &[(&str, &str)] = &[
    ("", ""),
    ("(", ")"),
    ("[", "]"),
    ("<", ">"),
    ("\"", "\""),
    ("'", "'"),
    ("`", "`"),
    ("\u{201c}", "\u{201d}"),
    ("\u{300c}", "\u{300d}"),
    ("\u{ff08}", "\u{ff09}"),
    ("", ","),
    ("", "."),
    ("", ":"),
    ("", ";"),
    ("", "!"),
    ("", "\u{3002}"),
    ("", "\u{2026}"),
    ("at=", ""),
    ("--config=", ""),
];

/// Whitespace that separates an item from the text around it.
const SPACES: &[&str] = &[
    " ", "\t", "\n", "\r\n", "  ", "\u{a0}", "\u{3000}", "\u{2028}",
];

/// An IPv4 address, maybe with a port or a prefix length.
fn ipv4_item() -> impl Strategy<Value = (String, String)> {
    (any::<[u8; 4]>(), prop::option::of(any::<u16>()), 0..3u8).prop_map(|(octets, port, form)| {
        let address = Ipv4Addr::from(octets).to_string();
        let item = match (form, port) {
            (1, Some(port)) => format!("{address}:{port}"),
            (2, _) => format!("{address}/{}", octets[0] % 33),
            _ => address.clone(),
        };
        (item, address)
    })
}

/// An IPv6 address, compressed or in full, maybe bracketed with a port, or with a zone.
fn ipv6_item() -> impl Strategy<Value = (String, String)> {
    (any::<[u16; 8]>(), 0..5u8, any::<u16>(), 0..8usize).prop_map(
        |(mut groups, form, port, zeros)| {
            // Runs of zero groups, which the compressed form shortens to `::`.
            for group in groups.iter_mut().skip(zeros).take(zeros / 2 + 1) {
                *group = 0;
            }
            // A distinctive address: not `::1`, which ordinary text might hold.
            groups[0] |= 0x2000;
            groups[7] |= 1;
            let address = Ipv6Addr::from(groups);
            let full: Vec<String> = groups.iter().map(|g| format!("{g:x}")).collect();
            let full = full.join(":");
            match form {
                0 => (address.to_string(), address.to_string()),
                1 => (full.clone(), full),
                2 => (format!("[{address}]:{port}"), address.to_string()),
                3 => (format!("{address}%eth0"), address.to_string()),
                _ => (format!("[{address}%en0]:{port}"), address.to_string()),
            }
        },
    )
}

/// One item to embed, and the part of it that must not survive.
fn item() -> impl Strategy<Value = (String, String)> {
    prop_oneof![
        4 => (prop::sample::select(SHAPES), marker())
            .prop_map(|(shape, marker)| (shape.replace("{m}", &marker), marker)),
        1 => ipv4_item(),
        1 => ipv6_item(),
    ]
    .prop_flat_map(|(item, marker)| {
        prop::sample::select(WRAPPERS)
            .prop_map(move |(before, after)| (format!("{before}{item}{after}"), marker.clone()))
    })
}

/// A message of arbitrary text with items embedded, each set apart by whitespace, and the
/// markers that must not survive.
fn message() -> impl Strategy<Value = (String, Vec<String>)> {
    prop::collection::vec(
        (
            short_text(),
            prop::sample::select(SPACES),
            item(),
            prop::sample::select(SPACES),
        ),
        1..6,
    )
    .prop_map(|parts| {
        let mut message = String::new();
        let mut markers = Vec::new();
        for (text, before, (item, marker), after) in parts {
            message.push_str(&text);
            message.push_str(before);
            message.push_str(&item);
            message.push_str(after);
            markers.push(marker);
        }
        (message, markers)
    })
}

#[derive(TelemetryEvent)]
struct Failed<'a> {
    #[scrub(max_len = 100_000)]
    message: Pieces<'a>,
    #[scrub(max_len = 100_000)]
    messages: Vec<&'a str>,
    #[scrub(max_len = 100_000)]
    cause: Option<&'a str>,
}

/// `text` in pieces cut at the given character positions.
fn pieces(text: &str, cuts: &[usize]) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut at: Vec<usize> = cuts.iter().map(|cut| cut % (chars.len() + 1)).collect();
    at.push(0);
    at.push(chars.len());
    at.sort_unstable();
    at.windows(2)
        .map(|pair| chars[pair[0]..pair[1]].iter().collect())
        .collect()
}

proptest! {
    #![proptest_config(config(512))]

    /// Property 3: no path, URL, e-mail address or IP address embedded in arbitrary text
    /// survives scrubbing, whether by `scrub` or by a `#[scrub]` field of any shape.
    #[test]
    fn scrubbing_leaves_no_embedded_item(
        (message, markers) in message(),
        cuts in prop::collection::vec(any::<usize>(), 0..4),
    ) {
        let scrubbed = telemetry_runtime::scrub(&message, 100_000);
        prop_assert!(!scrubbed.truncated);
        for marker in &markers {
            prop_assert!(
                !scrubbed.text.contains(marker.as_str()),
                "{marker:?} survived in {:?}, from {message:?}",
                scrubbed.text
            );
        }
        let pieces = pieces(&message, &cuts);
        let event = Failed {
            message: Pieces(&pieces),
            messages: vec![&message],
            cause: Some(&message),
        };
        let sent = recorded(&event, [4; 32]);
        for name in ["message", "cause"] {
            prop_assert_eq!(sent[name].as_str(), Some(scrubbed.text.as_str()), "{}", name);
        }
        prop_assert_eq!(sent["messages"][0].as_str(), Some(scrubbed.text.as_str()));
    }
}

proptest! {
    #![proptest_config(config(256))]

    /// Properties 3 and 4 where they meet: a message of items, repeated beyond what the
    /// scrubber looks at and cut at any limit, leaks none of them and is the start of the
    /// whole scrubbed message.
    #[test]
    fn a_cut_message_leaks_nothing_and_is_a_prefix(
        (message, markers) in message(),
        times in 1..100usize,
        max_len in max_len(),
    ) {
        let message = message.repeat(times);
        let cut = telemetry_runtime::scrub(&message, max_len);
        prop_assert!(cut.text.len() <= max_len);
        for marker in &markers {
            prop_assert!(!cut.text.contains(marker.as_str()), "{marker:?} survived in {:?}", cut.text);
        }
        let whole = telemetry_runtime::scrub(&message, usize::MAX / 8);
        if !cut.truncated {
            prop_assert_eq!(&cut.text, &whole.text);
        }
        prop_assert!(
            whole.text.starts_with(&cut.text),
            "{:?} is not the start of {:?}",
            cut.text,
            whole.text
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The pipeline
// ---------------------------------------------------------------------------------------------

/// An event whose encoded size differs from what capturing holds of it: a hash is 64 digits
/// whatever it hashes, a message is looked at far beyond what is sent of it, and small
/// integers are shorter in JSON than in memory.
#[derive(TelemetryEvent)]
struct Sized<'a> {
    #[hash]
    name: &'a str,
    #[scrub(max_len = 10_000)]
    message: &'a str,
    #[plain]
    note: &'a str,
    numbers: Vec<u64>,
    ratio: f64,
}

#[derive(Debug, Clone)]
struct SizedInputs {
    name: String,
    message: String,
    note: String,
    numbers: Vec<u64>,
    ratio: f64,
}

impl SizedInputs {
    fn event(&self) -> Sized<'_> {
        Sized {
            name: &self.name,
            message: &self.message,
            note: &self.note,
            numbers: self.numbers.clone(),
            ratio: self.ratio,
        }
    }
}

fn sized_inputs() -> impl Strategy<Value = SizedInputs> {
    (
        text(),
        text(),
        prop_oneof![3 => short_text(), 1 => text()],
        prop::collection::vec(0..10u64, 0..6000),
        float(),
    )
        .prop_map(|(name, message, note, numbers, ratio)| SizedInputs {
            name,
            message,
            note,
            numbers,
            ratio,
        })
}

proptest! {
    #![proptest_config(config(12))]

    /// Property 1 through the pipeline, whose encoder replays what capturing recorded: every
    /// batch a receiver gets is valid JSON, each event holds what `anonymize` gives (its hash
    /// under the installation's key), and an event is sent exactly when its encoded
    /// properties are within `max_event_bytes`, else dropped and counted, never cut.
    #[test]
    fn the_pipeline_sends_valid_json_and_exactly_the_events_within_the_limit(
        events in prop::collection::vec(sized_inputs(), 1..6),
        limit in 100..40_000usize,
    ) {
        let key = HashKey::from_bytes([6; 32]);
        let expected: Vec<(Value, bool)> = events
            .iter()
            .map(|inputs| {
                let properties = telemetry_runtime::anonymize(&inputs.event(), &key)
                    .expect("nothing here can fail to encode");
                (properties.to_value(), properties.as_json().len() <= limit)
            })
            .collect();
        let receiver = Receiver::healthy();
        let dir = tempfile::tempdir().map_err(|error| TestCaseError::fail(error.to_string()))?;
        let telemetry = builder(Some(&receiver.origin), dir.path(), &[])
            .max_event_bytes(limit)
            .start();
        for inputs in &events {
            telemetry.capture(&inputs.event());
        }
        let stats = telemetry.shutdown(support::PATIENCE);
        assert_accounted(&stats);
        let requests = receiver.received();
        for request in &requests {
            prop_assert!(request.json.is_object(), "a body that is not JSON");
        }
        let sent: Vec<&Value> = requests
            .iter()
            .flat_map(|request| request.events())
            .filter(|event| event["event"] == "sized")
            .collect();
        let fitting: Vec<(&SizedInputs, &Value)> = events
            .iter()
            .zip(&expected)
            .filter(|(_, (_, fits))| *fits)
            .map(|(inputs, (value, _))| (inputs, value))
            .collect();
        let too_large = (expected.len() - fitting.len()) as u64;
        prop_assert_eq!(stats.dropped.too_large, too_large, "{:?}", stats);
        prop_assert_eq!(sent.len(), fitting.len(), "{:?}", stats);
        let mut digests: HashMap<&str, &Value> = HashMap::new();
        let mut common: Option<Vec<String>> = None;
        for (event, (inputs, expected)) in sent.iter().zip(fitting) {
            let mut properties = event["properties"]
                .as_object()
                .cloned()
                .unwrap_or_default();
            // The event's own properties; those added to every event are tested elsewhere,
            // and here must be the same names on every event.
            let mut expected = expected.as_object().cloned().unwrap_or_default();
            let others: Vec<String> = properties
                .keys()
                .filter(|name| !expected.contains_key(*name))
                .cloned()
                .collect();
            let common = common.get_or_insert_with(|| others.clone());
            prop_assert_eq!(&*common, &others, "an event has properties of its own");
            properties.retain(|name, _| expected.contains_key(name));
            let digest = properties.remove("name").unwrap_or_default();
            prop_assert!(is_digest(&digest), "{}", digest);
            let seen = digests.entry(&inputs.name).or_insert(&event["properties"]["name"]);
            prop_assert_eq!(&**seen, &digest, "one value, one hash");
            expected.remove("name");
            prop_assert_eq!(properties, expected);
        }
    }
}

/// Found by the property above: capturing measured what it recorded, not the JSON, and
/// dropped as too large an event whose JSON fits.
#[test]
fn an_event_recorded_larger_than_the_limit_is_sent_when_its_json_fits() {
    let name = "n".repeat(50_000);
    let message = "word ".repeat(10_000);
    let inputs = SizedInputs {
        name,
        message,
        note: String::new(),
        numbers: vec![1; 5000],
        ratio: 0.5,
    };
    let json = telemetry_runtime::anonymize(&inputs.event(), &HashKey::from_bytes([1; 32]))
        .unwrap()
        .as_json()
        .len();
    assert!(json < 32 << 10, "{json}");
    let receiver = Receiver::healthy();
    let dir = tempfile::tempdir().unwrap();
    let telemetry = builder(Some(&receiver.origin), dir.path(), &[]).start();
    telemetry.capture(&inputs.event());
    let stats = telemetry.shutdown(support::PATIENCE);
    assert_eq!(
        (stats.delivered, stats.dropped.too_large),
        (1, 0),
        "{stats:?}"
    );
    let request = receiver.next();
    let sent = &request.events()[0]["properties"];
    assert_eq!(sent["numbers"].as_array().map(Vec::len), Some(5000));
    assert!(is_digest(&sent["name"]));
    assert_accounted(&stats);
}
