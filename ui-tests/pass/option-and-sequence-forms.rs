#![deny(warnings, unused_qualifications)]

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use telemetry_runtime::{HashKey, TelemetryEvent};

#[derive(TelemetryEvent)]
struct Forms<'a> {
    maybe: Option<u32>,
    many: Vec<u32>,
    slice: &'a [f64],
    array: [bool; 2],
    set: BTreeSet<i64>,
    queue: VecDeque<Duration>,
    nested: Option<Vec<Option<u8>>>,
    shared: Arc<u16>,
    boxed: Box<SystemTime>,
    #[hash]
    hashed_list: Vec<String>,
    #[hash]
    hashed_maybe: Option<&'a str>,
    #[trusted_or_hash(prefixes = ["ok/"])]
    images: &'a [&'a str],
    #[count]
    maybe_list: Option<Vec<String>>,
    #[scrub(max_len = 50)]
    warnings: Vec<String>,
    #[scrub]
    first_warning: Option<String>,
    #[scrub]
    fixed: [&'a str; 1],
}

fn main() {
    let images = ["ok/a", "other/b"];
    let event = Forms {
        maybe: None,
        many: vec![1, 2],
        slice: &[f64::NAN, 1.5],
        array: [true, false],
        set: BTreeSet::from([3, 1]),
        queue: VecDeque::from([Duration::from_millis(1500)]),
        nested: Some(vec![None, Some(1)]),
        shared: Arc::new(9),
        boxed: Box::new(SystemTime::UNIX_EPOCH),
        hashed_list: vec!["a".into()],
        hashed_maybe: None,
        images: &images,
        maybe_list: None,
        warnings: vec!["see https://x.example/y".into()],
        first_warning: None,
        fixed: ["ok"],
    };
    let sent = telemetry_runtime::anonymize(&event, &HashKey::from_bytes([4; 32]))
        .unwrap()
        .to_value();
    assert!(sent["maybe"].is_null());
    assert_eq!(sent["slice"], serde_json::json!([null, 1.5]));
    assert_eq!(sent["set"], serde_json::json!([1, 3]));
    assert_eq!(sent["queue"], serde_json::json!([1500]));
    assert_eq!(sent["nested"], serde_json::json!([null, 1]));
    assert_eq!(sent["boxed"], "1970-01-01T00:00:00.000Z");
    assert_eq!(sent["images"][0], "ok/a");
    assert_ne!(sent["images"][1], "other/b");
    assert_eq!(sent["maybe_list"], 0);
    assert_eq!(sent["warnings"], serde_json::json!(["see <url>"]));
    assert!(sent["first_warning"].is_null());
    assert_eq!(sent["first_warning_truncated"], false);
}
