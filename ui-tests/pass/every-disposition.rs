#![deny(warnings, unused_qualifications)]

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::path::PathBuf;

use telemetry_runtime::{HashKey, TelemetryEvent};

fn is_trusted(image: &str) -> bool {
    image.ends_with(":official")
}

/// Every disposition, on the types each accepts.
#[derive(TelemetryEvent)]
struct Everything {
    #[hash]
    namespace: String,
    #[hash]
    workdir: PathBuf,
    #[hash]
    address: IpAddr,
    #[hash]
    user_id: u64,
    #[trusted_or_hash(prefixes = ["ghcr.io/acme/"])]
    image: String,
    #[trusted_or_hash(with = is_trusted)]
    base_image: &'static str,
    #[trusted_or_hash(prefixes = ["acme/"], with = is_trusted)]
    sidecar: Box<str>,
    #[count]
    labels: BTreeMap<String, String>,
    #[count]
    tags: HashSet<String>,
    #[count]
    title: String,
    #[is_set]
    description: Option<String>,
    #[is_set]
    comment: String,
    #[scrub]
    error: String,
    #[scrub(max_len = 10)]
    status: &'static str,
    #[scrub]
    cause: std::io::Error,
    #[plain]
    engine_type: String,
    #[skip]
    #[allow(dead_code)]
    secret: String,
}

fn main() {
    let event = Everything {
        namespace: "ns".into(),
        workdir: "/home/a".into(),
        address: [127, 0, 0, 1].into(),
        user_id: 7,
        image: "ghcr.io/acme/x".into(),
        base_image: "debian:official",
        sidecar: "other/y".into(),
        labels: BTreeMap::new(),
        tags: HashSet::new(),
        title: "été".into(),
        description: None,
        comment: String::new(),
        error: "at /tmp/x".into(),
        status: "a fairly long status",
        cause: std::io::Error::other("disk full at /mnt/data"),
        engine_type: "docker".into(),
        secret: "hunter2".into(),
    };
    let sent = telemetry_runtime::anonymize(&event, &HashKey::from_bytes([0; 32]))
        .unwrap()
        .to_value();
    assert_eq!(sent["image"], "ghcr.io/acme/x");
    assert_eq!(sent["base_image"], "debian:official");
    assert_eq!(sent["title"], 3);
    assert_eq!(sent["status_truncated"], true);
    assert_eq!(sent["cause"], "disk full at <path>");
    assert!(sent.get("secret").is_none());
}
