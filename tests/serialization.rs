//! What a derived event sends, value by value, for every disposition.
#![deny(warnings, unused_qualifications)]
#![warn(clippy::pedantic)]

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};
use telemetry_runtime::{EncodeError, HashKey, TelemetryEvent, TelemetryValue};

const KEY: [u8; 32] = *b"0123456789abcdef0123456789abcdef";

/// HMAC-SHA-256 written from RFC 2104 on top of SHA-256, independently of the runtime.
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut block = [0u8; 64];
    if key.len() > block.len() {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.iter().map(|b| b ^ byte).collect::<Vec<u8>>();
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

/// The expected `#[hash]` output for `text` under [`KEY`].
fn hashed(text: &str) -> Value {
    Value::String(hex(&hmac_sha256(&KEY, text.as_bytes())))
}

fn sent<E: TelemetryEvent>(event: &E) -> Value {
    telemetry_runtime::anonymize(event, &HashKey::from_bytes(KEY))
        .expect("the event encodes")
        .to_value()
}

#[test]
fn the_reference_hmac_matches_rfc_4231() {
    // Test cases 1, 2 and 6 of RFC 4231 (short key, text key, key longer than a block).
    assert_eq!(
        hex(&hmac_sha256(&[0x0b; 20], b"Hi There")),
        "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
    );
    assert_eq!(
        hex(&hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
    assert_eq!(
        hex(&hmac_sha256(
            &[0xaa; 131],
            b"Test Using Larger Than Block-Size Key - Hash Key First"
        )),
        "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
    );
}

#[test]
fn hash_key_is_hmac_sha256_of_the_value() {
    let key = HashKey::from_bytes(KEY);
    for text in ["", "default", "payroll-prod", "ünïcödé", &"x".repeat(1000)] {
        assert_eq!(
            key.hash(text.as_bytes()),
            hmac_sha256(&KEY, text.as_bytes())
        );
        assert_eq!(Value::String(key.hash_hex(text)), hashed(text));
    }
}

#[derive(Clone, Copy, TelemetryValue)]
enum Engine {
    Docker,
    #[telemetry(rename = "wasm32")]
    Wasm,
}

#[derive(TelemetryEvent)]
#[telemetry(nested)]
struct Resources {
    cpu: f64,
    gpus: Vec<Gpu>,
}

#[derive(TelemetryEvent)]
#[telemetry(nested)]
struct Gpu {
    memory_mib: u32,
}

#[derive(TelemetryEvent)]
#[telemetry(nested)]
struct NodeInfo<'a> {
    #[hash]
    node_id: &'a str,
    node_type: Engine,
}

fn is_official(image: &str) -> bool {
    image.ends_with("@official")
}

/// Every disposition, and every kind of value sent without one.
#[derive(TelemetryEvent)]
#[telemetry(name = "everything")]
struct Everything<'a> {
    flag: bool,
    tasks: u32,
    ratio: f64,
    broken: f32,
    elapsed: Duration,
    at: SystemTime,
    engine: Engine,
    maybe: Option<i8>,
    ports: Vec<u16>,
    resources: Resources,
    #[telemetry(flatten)]
    node: NodeInfo<'a>,
    #[hash]
    namespace: &'a str,
    #[hash]
    workdir: PathBuf,
    #[hash]
    user_id: u64,
    #[hash]
    missing: Option<String>,
    #[trusted_or_hash(prefixes = ["ghcr.io/acme/", "acme/"])]
    trusted_image: &'a str,
    #[trusted_or_hash(prefixes = ["ghcr.io/acme/", "acme/"])]
    other_image: &'a str,
    #[trusted_or_hash(with = is_official)]
    base_image: String,
    #[count]
    labels: HashMap<String, String>,
    #[count]
    title: &'a str,
    #[is_set]
    name: Option<&'a str>,
    #[is_set]
    comment: String,
    #[scrub(max_len = 30)]
    error: String,
    #[plain]
    job_id: &'a str,
    #[telemetry(rename = "retry_count")]
    retries: u8,
    #[skip]
    password: &'a str,
}

fn everything() -> Everything<'static> {
    Everything {
        flag: true,
        tasks: 7,
        ratio: 0.25,
        broken: f32::NAN,
        elapsed: Duration::from_micros(1_500_999),
        at: SystemTime::UNIX_EPOCH + Duration::from_millis(1_609_459_200_250),
        engine: Engine::Wasm,
        maybe: None,
        ports: vec![80, 443],
        resources: Resources {
            cpu: 1.5,
            gpus: vec![Gpu { memory_mib: 8192 }],
        },
        node: NodeInfo {
            node_id: "node-7",
            node_type: Engine::Docker,
        },
        namespace: "payroll",
        workdir: PathBuf::from("/home/alice/work"),
        user_id: 1001,
        missing: None,
        trusted_image: "GHCR.io/Acme/worker:1.2",
        other_image: "docker.io/alice/private:latest",
        base_image: "debian@official".to_owned(),
        labels: HashMap::from([
            ("a".to_owned(), "1".to_owned()),
            ("b".to_owned(), "2".to_owned()),
        ]),
        title: "née",
        name: Some(""),
        comment: String::new(),
        error: "open /home/alice/payroll.csv: permission denied by policy".to_owned(),
        job_id: "j-42",
        retries: 3,
        password: "hunter2",
    }
}

#[test]
fn every_disposition_sends_exactly_what_it_promises() {
    let expected = json!({
        "flag": true,
        "tasks": 7,
        "ratio": 0.25,
        "broken": null,
        "elapsed": 1500,
        "at": "2021-01-01T00:00:00.250Z",
        "engine": "wasm32",
        "maybe": null,
        "ports": [80, 443],
        "resources": { "cpu": 1.5, "gpus": [{ "memory_mib": 8192 }] },
        "node_id": hashed("node-7"),
        "node_type": "docker",
        "namespace": hashed("payroll"),
        "workdir": hashed("/home/alice/work"),
        "user_id": hashed("1001"),
        "missing": null,
        "trusted_image": "GHCR.io/Acme/worker:1.2",
        "other_image": hashed("docker.io/alice/private:latest"),
        "base_image": "debian@official",
        "labels": 2,
        "title": 3,
        "name": true,
        "comment": false,
        "error": "open <path>: permission denied",
        "error_truncated": true,
        "job_id": "j-42",
        "retry_count": 3,
    });
    assert_eq!(sent(&everything()), expected);
}

#[test]
fn properties_keep_declaration_order_and_valid_json() {
    let properties =
        telemetry_runtime::anonymize(&everything(), &HashKey::from_bytes(KEY)).unwrap();
    let text = properties.as_json();
    let at = |name: &str| {
        text.find(&format!("\"{name}\":"))
            .unwrap_or_else(|| panic!("{name} is missing from {text}"))
    };
    let order = [
        "flag",
        "tasks",
        "ratio",
        "resources",
        "node_id",
        "namespace",
        "error",
        "error_truncated",
        "job_id",
        "retry_count",
    ];
    assert!(
        order.windows(2).all(|pair| at(pair[0]) < at(pair[1])),
        "{text}"
    );
    assert_eq!(
        serde_json::from_str::<Value>(text).unwrap(),
        properties.to_value()
    );
}

#[test]
fn nothing_of_the_skipped_or_hashed_values_leaves() {
    let event = everything();
    assert_eq!(event.password, "hunter2");
    let properties = telemetry_runtime::anonymize(&event, &HashKey::from_bytes(KEY)).unwrap();
    for secret in ["hunter2", "password", "payroll", "alice", "node-7", "1001"] {
        assert!(
            !properties.as_json().contains(secret),
            "`{secret}` leaked: {properties}"
        );
    }
}

#[test]
fn hashes_correlate_across_events_but_not_across_keys() {
    #[derive(TelemetryEvent)]
    struct Other<'a> {
        #[hash]
        ns: &'a str,
    }
    let other = sent(&Other { ns: "payroll" });
    assert_eq!(other["ns"], sent(&everything())["namespace"]);
    let under_another_key =
        telemetry_runtime::anonymize(&Other { ns: "payroll" }, &HashKey::from_bytes([9; 32]))
            .unwrap()
            .to_value();
    assert_ne!(under_another_key["ns"], other["ns"]);
}

#[test]
fn hashed_and_trusted_collections_are_sent_element_by_element() {
    #[derive(TelemetryEvent)]
    struct Deployment<'a> {
        #[trusted_or_hash(prefixes = ["acme/"])]
        images: Vec<&'a str>,
        #[hash]
        namespaces: [&'a str; 2],
        #[trusted_or_hash(prefixes = ["acme/"])]
        sidecar: Option<String>,
    }
    let value = sent(&Deployment {
        images: vec!["acme/a", "evil/b"],
        namespaces: ["x", "y"],
        sidecar: None,
    });
    assert_eq!(
        value,
        json!({
            "images": ["acme/a", hashed("evil/b")],
            "namespaces": [hashed("x"), hashed("y")],
            "sidecar": null,
        })
    );
}

#[test]
fn a_trusted_prefix_vouches_only_for_a_plain_reference() {
    #[derive(TelemetryEvent)]
    struct Pulled<'a> {
        #[trusted_or_hash(prefixes = ["ghcr.io/acme/", "acme/"])]
        images: Vec<&'a str>,
    }
    let trusted = [
        "ghcr.io/acme/worker:1.2",
        "ACME/worker",
        "acme/tools/lint:v2+build.7",
        "acme/worker@sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    ];
    // Each starts with a trusted prefix, and each could carry someone's text after it.
    let hostile = [
        "ghcr.io/acme/../alice.martin/payroll:1.0",
        "acme/alice.martin@example.com-secret:1.0",
        "acme/worker@sha256:not-a-digest",
        "acme/worker@",
        "acme/Alice Martin",
        "acme/tag\u{0}with-a-nul",
        "acme/caf\u{e9}",
        "acme/%2e%2e/alice",
    ];
    let images: Vec<&str> = trusted.iter().chain(&hostile).copied().collect();
    let value = sent(&Pulled { images });
    let expected: Vec<Value> = trusted
        .iter()
        .map(|image| json!(image))
        .chain(hostile.iter().map(|image| hashed(image)))
        .collect();
    assert_eq!(value, json!({ "images": expected }));
}

#[test]
fn a_plain_value_that_cannot_be_json_is_an_error_naming_its_property() {
    #[derive(TelemetryEvent)]
    struct Bad {
        #[plain]
        by_pair: BTreeMap<(u8, u8), u8>,
        fine: bool,
    }
    let error = telemetry_runtime::anonymize(
        &Bad {
            by_pair: BTreeMap::from([((1, 2), 3)]),
            fine: true,
        },
        &HashKey::from_bytes(KEY),
    )
    .unwrap_err();
    assert!(
        matches!(
            &error,
            EncodeError::Plain {
                property: "by_pair",
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("by_pair"));
}

/// One scrubbed message, as an event would carry it.
#[derive(TelemetryEvent)]
struct Failure<'a> {
    #[scrub(max_len = 300)]
    message: &'a str,
}

fn scrubbed(message: &str) -> String {
    let value = sent(&Failure { message });
    assert_eq!(value["message_truncated"], false, "{message}");
    value["message"].as_str().unwrap().to_owned()
}

#[test]
fn scrubbing_removes_paths_of_every_platform() {
    let cases = [
        (
            "failed to open /home/alice/projects/secret-plan.md: No such file",
            "failed to open <path>: No such file",
        ),
        (
            "could not write /Users/bob/Library/Application Support/app/db.sqlite",
            "could not write <path> <path>",
        ),
        (
            r"cannot find C:\Users\carol\AppData\Roaming\app\config.toml",
            "cannot find <path>",
        ),
        (
            r#"cannot find "C:\Users\carol\My Documents\taxes 2026.xlsx" (os error 2)"#,
            r#"cannot find "<path>" (os error 2)"#,
        ),
        (
            r"share \\fileserver\finance\q3 unreachable",
            "share <path> unreachable",
        ),
        ("read ~/.ssh/id_ed25519 denied", "read <path> denied"),
    ];
    for (message, expected) in cases {
        let out = scrubbed(message);
        assert_eq!(out, expected);
        for secret in [
            "alice",
            "bob",
            "carol",
            "secret-plan",
            "taxes",
            "finance",
            "id_ed25519",
        ] {
            assert!(!out.contains(secret), "`{secret}` survived in {out:?}");
        }
    }
}

#[test]
fn scrubbing_removes_urls_emails_addresses_and_tokens() {
    let cases = [
        (
            "GET https://admin:s3cr3t@internal.acme.example:8443/api/v1/users?email=x@y.z&token=abc failed",
            "GET <url> failed",
        ),
        (
            "redirect to http://10.0.0.5/login?next=/home failed",
            "redirect to <url> failed",
        ),
        (
            "mail to dana.smith+billing@example.co.uk bounced",
            "mail to <email> bounced",
        ),
        (
            "connect 192.168.1.23:5432: refused",
            "connect <ip>: refused",
        ),
        ("peer 2001:db8:85a3::8a2e:370:7334 reset", "peer <ip> reset"),
        ("bind [::1]:8080 in use", "bind [<ip>]:8080 in use"),
        (
            "job 7c9e6679-7425-40de-944b-e07fc1f90ae7 not found",
            "job <uuid> not found",
        ),
        (
            "commit deadbeefcafebabe0123456789abcdef01234567 missing",
            "commit <hex> missing",
        ),
        (
            "bearer ghp_R2d2C3poX8y9Z7w6V5u4T3s2R1q0P9o8N7m6 rejected",
            "bearer <token> rejected",
        ),
        (
            "token=ghp_R2d2C3poX8y9Z7w6V5u4T3s2R1q0P9o8N7m6&user=alice rejected",
            "token=<redacted>&user=<redacted> rejected",
        ),
        (
            "无法连接 alice@example.com：10.0.0.7，请重试",
            "无法连接 <email>：<ip>，请重试",
        ),
    ];
    for (message, expected) in cases {
        assert_eq!(scrubbed(message), expected);
    }
}

#[test]
fn scrubbing_keeps_ordinary_text() {
    let message = "I/O error: connection reset by peer after 3 retries (timeout 30s, read/write)";
    assert_eq!(scrubbed(message), message);
}

#[test]
fn multi_byte_text_is_cut_at_a_character_boundary_and_flagged() {
    #[derive(TelemetryEvent)]
    struct Short<'a> {
        #[scrub(max_len = 7)]
        message: &'a str,
    }
    // "é" is 2 bytes and "🦀" 4: 7 bytes hold "ééé" (6), never half a character.
    for (message, expected) in [
        ("éééééé", "ééé"),
        ("a🦀🦀", "a🦀"),
        ("日本語テキスト", "日本"),
    ] {
        let value = sent(&Short { message });
        assert_eq!(value["message"], expected, "{message}");
        assert_eq!(value["message_truncated"], true);
    }
    let value = sent(&Short { message: "ééé" });
    assert_eq!(value["message"], "ééé");
    assert_eq!(value["message_truncated"], false);
}

#[test]
fn scrub_takes_errors_options_and_lists() {
    #[derive(TelemetryEvent)]
    struct Failures<'a> {
        #[scrub]
        error: &'a (dyn std::error::Error + 'static),
        #[scrub]
        cause: Option<std::io::Error>,
        #[scrub]
        warnings: Vec<String>,
    }
    let io = std::io::Error::other("disk full writing /var/lib/app/blob");
    let value = sent(&Failures {
        error: &io,
        cause: None,
        warnings: vec!["slow: 10.1.1.1".to_owned(), "ok".to_owned()],
    });
    assert_eq!(
        value,
        json!({
            "error": "disk full writing <path>",
            "error_truncated": false,
            "cause": null,
            "cause_truncated": false,
            "warnings": ["slow: <ip>", "ok"],
            "warnings_truncated": false,
        })
    );
}
