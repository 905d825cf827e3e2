//! The upload pipeline against a real HTTP receiver on 127.0.0.1: payload shape, batching,
//! every response code, the accounting rule, local and debug modes, endpoints and proxies.

#![deny(warnings, unused_qualifications)]

mod support;

use std::collections::HashSet;
use std::io::{BufRead as _, BufReader};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use support::{Receiver, Reply, assert_accounted, builder, events, job};
use telemetry_runtime::Mode;

#[test]
fn batches_have_the_shape_posthog_expects() {
    let receiver = Receiver::healthy();
    let dir = tempfile::tempdir().unwrap();
    let before = SystemTime::now();
    let telemetry = builder(Some(&receiver.origin), dir.path(), &[])
        .gzip_threshold(usize::MAX)
        .start();
    telemetry.capture(&job(1));
    telemetry.capture(&job(2));
    let stats = telemetry.shutdown(Duration::from_secs(10));
    let after = SystemTime::now();
    assert_eq!((stats.captured, stats.delivered), (2, 2));

    let request = receiver.next();
    assert_eq!(request.method, "POST");
    assert_eq!(request.url, "/batch/");
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(request.header("content-encoding"), None);
    assert!(request.raw.starts_with(b"{"));
    let body = &request.json;
    assert_eq!(body["api_key"], "phc_test_key");
    assert!(rfc3339_millis(&body["sent_at"]) >= before);
    let batch = request.events();
    assert_eq!(batch.len(), 2);
    let id = telemetry.installation_id().unwrap();
    for (event, tasks) in batch.iter().zip([1, 2]) {
        assert_eq!(event["event"], "job_submitted");
        assert_eq!(event["distinct_id"], id);
        let properties = &event["properties"];
        assert_eq!(properties["tasks"], tasks);
        assert_eq!(properties["labels"], 2);
        assert_eq!(properties["engine"], "docker");
        let namespace = properties["namespace"].as_str().unwrap();
        assert_eq!(namespace.len(), 64);
        assert!(!namespace.contains("payroll"));
        assert_eq!(properties["$lib"], "telemetry-runtime");
        assert_eq!(properties["$lib_version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(properties["$app_name"], "jobs");
        assert_eq!(properties["$app_version"], "1.2.3");
        assert_eq!(properties["$process_person_profile"], false);
        assert_eq!(properties["$geoip_disable"], true);
        assert_eq!(properties["$ip"], "0.0.0.0");
        assert!(properties.get("$set").is_none());

        let timestamp = rfc3339_millis(&event["timestamp"]);
        assert!(before - Duration::from_millis(1) <= timestamp && timestamp <= after);
        let uuid = uuid::Uuid::parse_str(event["uuid"].as_str().unwrap()).unwrap();
        assert_eq!(uuid.get_version_num(), 7);
        let (seconds, nanos) = uuid.get_timestamp().unwrap().to_unix();
        let uuid_time = UNIX_EPOCH + Duration::new(seconds, nanos);
        assert_eq!(uuid_time, timestamp, "the uuid carries the capture time");
    }
    assert_ne!(batch[0]["uuid"], batch[1]["uuid"]);
    assert!(receiver.received().is_empty());
}

/// Parses PostHog's timestamp format, `YYYY-MM-DDTHH:MM:SS.mmmZ`, independently of the
/// library's formatter.
fn rfc3339_millis(value: &Value) -> SystemTime {
    let text = value.as_str().expect("a timestamp string");
    assert_eq!(text.len(), 24, "{text}");
    assert!(text.ends_with('Z'), "{text}");
    let num = |range: std::ops::Range<usize>| text[range].parse::<u64>().unwrap();
    let (year, month, day) = (num(0..4), num(5..7), num(8..10));
    let (hour, minute, second, millis) = (num(11..13), num(14..16), num(17..19), num(20..23));
    // Days since the epoch by the civil-from-days algorithm, inverted.
    let (y, m) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let era = y / 400;
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    UNIX_EPOCH
        + Duration::from_millis(
            ((days * 24 + hour) * 60 + minute) * 60_000 + second * 1000 + millis,
        )
}

#[test]
fn bodies_above_the_threshold_are_gzipped() {
    let receiver = Receiver::healthy();
    let dir = tempfile::tempdir().unwrap();
    let telemetry = builder(Some(&receiver.origin), dir.path(), &[])
        .gzip_threshold(200)
        .start();
    for n in 0..20 {
        telemetry.capture(&job(n));
    }
    telemetry.shutdown(Duration::from_secs(10));
    let request = receiver.next();
    assert!(request.raw.starts_with(&[0x1f, 0x8b]), "gzip magic bytes");
    assert_eq!(request.header("content-encoding"), Some("gzip"));
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(request.url, "/batch/?compression=gzip-js");
    assert_eq!(request.events().len(), 20);
    let plain = serde_json::to_vec(&request.json).unwrap();
    assert!(
        request.raw.len() < plain.len() / 2,
        "it actually compresses"
    );
}

#[test]
fn a_full_batch_is_sent_without_waiting_for_the_interval() {
    let receiver = Receiver::healthy();
    let dir = tempfile::tempdir().unwrap();
    let telemetry = builder(Some(&receiver.origin), dir.path(), &[])
        .batch_size(3)
        .start();
    for n in 0..7 {
        telemetry.capture(&job(n));
    }
    // The interval is an hour: these two batches can only have been sent for their size.
    let first = receiver.next();
    let second = receiver.next();
    assert_eq!(first.events().len(), 3);
    assert_eq!(second.events().len(), 3);
    let stats = telemetry.shutdown(Duration::from_secs(10));
    let last = receiver.next();
    assert_eq!(last.events().len(), 1);
    let tasks: Vec<u64> = events(&[first, second, last])
        .iter()
        .map(|e| e["properties"]["tasks"].as_u64().unwrap())
        .collect();
    assert_eq!(tasks, [0, 1, 2, 3, 4, 5, 6], "in capture order");
    assert_eq!(stats.delivered, 7);
    assert_accounted(&stats);
}

#[test]
fn a_partial_batch_is_sent_after_the_interval() {
    let receiver = Receiver::healthy();
    let dir = tempfile::tempdir().unwrap();
    let telemetry = builder(Some(&receiver.origin), dir.path(), &[])
        .batch_size(100)
        .flush_interval(Duration::from_millis(50))
        .start();
    telemetry.capture(&job(1));
    telemetry.capture(&job(2));
    // No shutdown, no flush and a batch far from full: only the interval can send these.
    let mut arrived = 0;
    while arrived < 2 {
        arrived += receiver.next().events().len();
    }
    assert_eq!(arrived, 2);
    assert!(telemetry.is_running());
    let stats = telemetry.shutdown(Duration::from_secs(10));
    assert_eq!(stats.delivered, 2);
}

#[test]
fn retryable_answers_are_retried_with_the_same_uuids() {
    for status in [408, 429, 500, 502, 503, 504] {
        let receiver =
            Receiver::start(move |_, index| Reply::status(if index < 2 { status } else { 200 }));
        let dir = tempfile::tempdir().unwrap();
        let telemetry = builder(Some(&receiver.origin), dir.path(), &[]).start();
        telemetry.capture(&job(1));
        telemetry.capture(&job(2));
        let stats = telemetry.shutdown(Duration::from_secs(10));
        let attempts = [receiver.next(), receiver.next(), receiver.next()];
        for attempt in &attempts[1..] {
            assert_eq!(attempt.uuids(), attempts[0].uuids(), "HTTP {status}");
            // Each attempt writes the events anew from what was captured; they come out the
            // same, hashes, timestamps and all.
            assert_eq!(attempt.events(), attempts[0].events(), "HTTP {status}");
        }
        assert_eq!(stats.delivered, 2, "HTTP {status}: {stats:?}");
        assert_accounted(&stats);
        assert!(receiver.received().is_empty());
    }
}

#[test]
fn retry_after_is_honoured() {
    let receiver = Receiver::start(|_, index| {
        if index == 0 {
            Reply {
                headers: vec![("Retry-After", "1".into())],
                ..Reply::status(429)
            }
        } else {
            Reply::ok()
        }
    });
    let dir = tempfile::tempdir().unwrap();
    // The backoff alone would retry within 5 ms.
    let telemetry = builder(Some(&receiver.origin), dir.path(), &[]).start();
    telemetry.capture(&job(1));
    assert!(telemetry.flush(Duration::from_secs(20)));
    let (first, second) = (receiver.next(), receiver.next());
    assert!(
        second.at - first.at >= Duration::from_secs(1),
        "retried after {:?}",
        second.at - first.at
    );
    assert_eq!(first.uuids(), second.uuids());
    telemetry.shutdown(Duration::from_secs(10));
}

#[test]
fn a_batch_is_not_retried_forever() {
    let receiver = Receiver::start(|_, _| Reply::status(503));
    let dir = tempfile::tempdir().unwrap();
    let telemetry = builder(Some(&receiver.origin), dir.path(), &[])
        .max_attempts(3)
        .start();
    telemetry.capture(&job(1));
    // Flushing cannot succeed; it returns once the attempts are used up and the batch is
    // spooled.
    assert!(telemetry.flush(Duration::from_secs(20)));
    let stats = telemetry.shutdown(Duration::from_secs(10));
    assert_eq!(receiver.received().len(), 3);
    assert_eq!(stats.spooled, 1, "{stats:?}");
    assert_accounted(&stats);
}

#[test]
fn refused_batches_are_dropped_without_retry() {
    for status in [400, 401, 403] {
        let receiver = Receiver::start(move |_, _| Reply::status(status));
        let dir = tempfile::tempdir().unwrap();
        let telemetry = builder(Some(&receiver.origin), dir.path(), &[]).start();
        telemetry.capture(&job(1));
        telemetry.capture(&job(2));
        let stats = telemetry.shutdown(Duration::from_secs(10));
        assert_eq!(
            receiver.received().len(),
            1,
            "HTTP {status}: one attempt only"
        );
        assert_eq!(stats.dropped.rejected, 2, "HTTP {status}: {stats:?}");
        assert_eq!(stats.spooled, 0);
        assert_accounted(&stats);
    }
}

#[test]
fn a_batch_too_large_is_split_until_it_fits() {
    let receiver = Receiver::start(|request, _| {
        Reply::status(if request.events().len() > 2 { 413 } else { 200 })
    });
    let dir = tempfile::tempdir().unwrap();
    let telemetry = builder(Some(&receiver.origin), dir.path(), &[])
        .batch_size(8)
        .start();
    for n in 0..8 {
        telemetry.capture(&job(n));
    }
    let stats = telemetry.shutdown(Duration::from_secs(10));
    let requests = receiver.received();
    let accepted: Vec<_> = requests.iter().filter(|r| r.events().len() <= 2).collect();
    let uuids: Vec<String> = accepted.iter().flat_map(|r| r.uuids()).collect();
    assert_eq!(uuids.len(), 8);
    assert_eq!(uuids.iter().collect::<HashSet<_>>().len(), 8, "each once");
    assert_eq!(stats.delivered, 8);
    assert_accounted(&stats);
}

#[test]
fn a_single_event_too_large_is_dropped() {
    let receiver = Receiver::start(|_, _| Reply::status(413));
    let dir = tempfile::tempdir().unwrap();
    let telemetry = builder(Some(&receiver.origin), dir.path(), &[])
        .batch_size(2)
        .start();
    telemetry.capture(&job(1));
    telemetry.capture(&job(2));
    let stats = telemetry.shutdown(Duration::from_secs(10));
    let sizes: Vec<usize> = receiver
        .received()
        .iter()
        .map(|r| r.events().len())
        .collect();
    assert_eq!(sizes, [2, 1, 1]);
    assert_eq!(stats.dropped.rejected, 2);
    assert_accounted(&stats);
}

#[test]
fn a_full_queue_drops_counts_and_reports() {
    let (release, held) = mpsc::channel::<()>();
    let held = std::sync::Mutex::new(held);
    let receiver = Receiver::start(move |_, index| {
        if index == 0 {
            // Hold the first request until the test has overfilled the queue.
            let _ = held.lock().unwrap().recv();
        }
        Reply::ok()
    });
    let dir = tempfile::tempdir().unwrap();
    let telemetry = builder(Some(&receiver.origin), dir.path(), &[])
        .queue_capacity(4)
        .batch_size(1)
        .start();
    telemetry.capture(&job(0));
    let first = receiver.next();
    for n in 1..50 {
        telemetry.capture(&job(n));
    }
    let dropped = telemetry.stats().dropped.queue_full;
    assert!(dropped >= 40, "{:?}", telemetry.stats());
    release.send(()).unwrap();
    let stats = telemetry.shutdown(Duration::from_secs(10));
    assert_eq!(stats.captured, 50);
    assert_eq!(stats.dropped.queue_full, dropped);
    assert_eq!(stats.delivered + stats.spooled, 50 - dropped);
    assert_accounted(&stats);

    let mut all = vec![first];
    all.extend(receiver.received());
    let reports: Vec<Value> = events(&all)
        .into_iter()
        .filter(|e| e["event"] == "telemetry_dropped")
        .collect();
    let reported: u64 = reports
        .iter()
        .map(|r| r["properties"]["dropped"].as_u64().unwrap())
        .sum();
    assert_eq!(reported, dropped, "{reports:?}");
    assert_eq!(reports[0]["properties"]["queue_full"], dropped);
    let app_events: usize = all.iter().map(|r| r.app_uuids().len()).sum();
    assert_eq!(app_events as u64, stats.delivered);
}

#[test]
fn capturing_after_shutdown_is_a_counted_no_op() {
    let receiver = Receiver::healthy();
    let dir = tempfile::tempdir().unwrap();
    let telemetry = builder(Some(&receiver.origin), dir.path(), &[]).start();
    let handle = telemetry.handle();
    telemetry.capture(&job(1));
    telemetry.shutdown(Duration::from_secs(10));
    handle.capture(&job(2));
    handle.capture(&job(3));
    let stats = handle.stats();
    assert_eq!((stats.captured, stats.ignored, stats.delivered), (1, 2, 1));
    assert!(!handle.is_running());
    drop(telemetry);
    assert_eq!(receiver.received().len(), 1);
}

#[test]
fn local_mode_logs_and_never_uploads() {
    let receiver = Receiver::healthy();
    for vars in [&[("JOBS_TELEMETRY", " LOCAL ")][..], &[]] {
        let dir = tempfile::tempdir().unwrap();
        // With the variable the endpoint is ignored; without it there is no endpoint.
        let endpoint = if vars.is_empty() {
            None
        } else {
            Some(receiver.origin.as_str())
        };
        let telemetry = builder(endpoint, dir.path(), vars).start();
        assert_eq!(telemetry.mode(), Mode::Local);
        assert_eq!(telemetry.endpoint(), None);
        telemetry.capture(&job(1));
        telemetry.capture(&job(2));
        let stats = telemetry.shutdown(Duration::from_secs(10));
        assert_eq!(stats.delivered, 2);
        let log = std::fs::read_to_string(dir.path().join("state/events.jsonl")).unwrap();
        let logged: Vec<Value> = log
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(logged.len(), 2);
        assert_eq!(logged[1]["properties"]["tasks"], 2);
        assert!(logged[0]["uuid"].is_string());
        assert!(!dir.path().join("state/spool").exists());
    }
    assert!(receiver.received().is_empty());
}

#[test]
fn the_endpoint_can_be_overridden_at_run_time() {
    let receiver = Receiver::healthy();
    let dir = tempfile::tempdir().unwrap();
    let telemetry = builder(
        Some("https://compiled-in.invalid"),
        dir.path(),
        &[("JOBS_TELEMETRY_ENDPOINT", &receiver.origin)],
    )
    .start();
    assert_eq!(
        telemetry.endpoint(),
        Some(format!("{}/batch/", receiver.origin).as_str())
    );
    telemetry.capture(&job(1));
    assert_eq!(telemetry.shutdown(Duration::from_secs(10)).delivered, 1);
    assert_eq!(receiver.next().events().len(), 1);
}

#[test]
fn plain_http_off_loopback_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    for (compiled, variable) in [
        (Some("http://telemetry.example.com"), None),
        (None, Some("http://10.1.2.3:8000")),
    ] {
        let vars: Vec<(&str, &str)> = variable
            .map(|v| ("JOBS_TELEMETRY_ENDPOINT", v))
            .into_iter()
            .collect();
        let telemetry = builder(compiled, dir.path(), &vars).start();
        assert_eq!(telemetry.endpoint(), None);
        assert_eq!(
            telemetry.mode(),
            Mode::Local,
            "recorded locally, never sent"
        );
        telemetry.shutdown(Duration::from_secs(10));
    }
}

/// Starts telemetry for an HTTPS endpoint only a proxy could reach, with `variable` naming a
/// proxy on 127.0.0.1 that never answers, sends one event and returns the proxy's side of the
/// connection and the final accounting.
fn through_silent_proxy(
    variable: &str,
    scheme: &str,
) -> (std::net::TcpStream, telemetry_runtime::Stats) {
    let proxy = TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy_url = format!("{scheme}://{}", proxy.local_addr().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let telemetry = builder(
        Some("https://telemetry.invalid"),
        dir.path(),
        &[(variable, &proxy_url)],
    )
    .max_attempts(1)
    .request_timeout(Duration::from_millis(500))
    .start();
    telemetry.capture(&job(1));
    // The proxy never answers: the one attempt times out and is spooled.
    assert!(telemetry.flush(Duration::from_secs(20)));
    proxy.set_nonblocking(true).unwrap();
    let (connection, _) = proxy.accept().expect("the proxy was contacted");
    connection.set_nonblocking(false).unwrap();
    let stats = telemetry.shutdown(Duration::from_secs(10));
    (connection, stats)
}

#[test]
fn https_goes_through_the_configured_proxy() {
    let (connection, stats) = through_silent_proxy("HTTPS_PROXY", "http");
    let mut first_line = String::new();
    BufReader::new(&connection)
        .read_line(&mut first_line)
        .unwrap();
    assert!(
        first_line.starts_with("CONNECT telemetry.invalid:443 "),
        "{first_line:?}"
    );
    assert_eq!((stats.spooled, stats.dropped.total()), (1, 0), "{stats:?}");
}

#[test]
fn no_proxy_bypasses_the_proxy() {
    let proxy = TcpListener::bind("127.0.0.1:0").unwrap();
    proxy.set_nonblocking(true).unwrap();
    let proxy_url = format!("http://{}", proxy.local_addr().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let telemetry = builder(
        Some("https://telemetry.invalid"),
        dir.path(),
        &[
            ("ALL_PROXY", &proxy_url),
            ("NO_PROXY", "localhost,.invalid"),
        ],
    )
    .max_attempts(1)
    .start();
    telemetry.capture(&job(1));
    // The attempt fails on name resolution; shutdown returns after it.
    assert!(telemetry.flush(Duration::from_secs(20)));
    let stats = telemetry.shutdown(Duration::from_secs(10));
    assert_eq!(stats.spooled, 1, "{stats:?}");
    assert_eq!(
        proxy.accept().map(|_| ()).unwrap_err().kind(),
        std::io::ErrorKind::WouldBlock,
        "the proxy was contacted"
    );
}

#[test]
fn off_creates_nothing_and_captures_nothing() {
    let dir = tempfile::tempdir().unwrap();
    for vars in [
        &[("DO_NOT_TRACK", "1")][..],
        &[("JOBS_TELEMETRY", "off")],
        &[("JOBS_TELEMETRY", "garbage")],
    ] {
        let telemetry = builder(Some("http://127.0.0.1:9"), dir.path(), vars).start();
        assert_eq!(telemetry.mode(), Mode::Off);
        telemetry.capture(&job(1));
        assert_eq!(telemetry.stats(), telemetry_runtime::Stats::default());
        assert_eq!(telemetry.installation_id(), None);
        drop(telemetry);
    }
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "no file written"
    );
}

#[test]
fn a_shutdown_racing_the_background_thread_loses_nothing() {
    let receiver = Receiver::healthy();
    for round in 0..40u32 {
        let dir = tempfile::tempdir().unwrap();
        let telemetry = builder(Some(&receiver.origin), dir.path(), &[])
            .batch_size(7)
            .start();
        for n in 0..300 {
            telemetry.capture(&job(n));
        }
        // Deadlines from zero to a few milliseconds cut the work at every stage.
        let stats = telemetry.shutdown(Duration::from_micros(u64::from(round % 8) * 500));
        assert_eq!(stats.captured, 300);
        assert_accounted(&stats);
        assert_eq!(
            support::spooled_uuids(&dir.path().join("state")).len() as u64,
            stats.spooled,
            "round {round}"
        );
    }
}

/// Captures `count` events while the endpoint refuses connections and shuts down at once, so
/// that they are all spooled under `dir`; returns their uuids.
fn spool_events(dir: &std::path::Path, count: u32) -> Vec<String> {
    let telemetry = builder(Some(&support::refused_origin()), dir, &[]).start();
    for n in 0..count {
        telemetry.capture(&job(n));
    }
    assert_eq!(telemetry.shutdown(Duration::ZERO).spooled, u64::from(count));
    let uuids = support::spooled_uuids(&dir.join("state"));
    assert_eq!(uuids.len(), count as usize);
    uuids
}

#[test]
fn a_restart_that_shuts_down_at_once_keeps_the_spool_intact() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let original = spool_events(dir.path(), 20);

    let receiver = Receiver::healthy();
    for _ in 0..20 {
        let telemetry = builder(Some(&receiver.origin), dir.path(), &[]).start();
        let stats = telemetry.shutdown(Duration::ZERO);
        assert_accounted(&stats);
    }
    let mut delivered: Vec<String> = receiver.received().iter().flat_map(|r| r.uuids()).collect();
    let sent = delivered.len();
    delivered.extend(support::spooled_uuids(&state));
    delivered.sort();
    // A request abandoned at the deadline may still have arrived: its events are spooled
    // anyway and sent again under the same uuids, which PostHog counts once. So an event may
    // be both received and spooled, but none may be lost or made up.
    delivered.dedup();
    assert_eq!(
        delivered, original,
        "{sent} were sent, the rest must still be spooled"
    );
}

#[test]
fn flushing_after_shutdown_returns_at_once() {
    let receiver = Receiver::healthy();
    let dir = tempfile::tempdir().unwrap();
    let telemetry = builder(Some(&receiver.origin), dir.path(), &[]).start();
    telemetry.capture(&job(1));
    telemetry.shutdown(Duration::from_secs(10));
    // With nobody left to answer, waiting out this timeout would hang the test.
    assert!(telemetry.flush(Duration::from_secs(24 * 3600)));
    assert!(telemetry.flush(Duration::MAX));
    telemetry.shutdown(Duration::MAX);
}

#[test]
fn a_socks_proxy_is_spoken_to() {
    // `socks5h`: the proxy resolves the name, as it must for a host only it can see.
    let (mut connection, stats) = through_silent_proxy("ALL_PROXY", "socks5h");
    let mut greeting = [0; 1];
    std::io::Read::read_exact(&mut connection, &mut greeting).unwrap();
    assert_eq!(greeting[0], 5, "a SOCKS5 greeting");
    assert_eq!((stats.spooled, stats.dropped.total()), (1, 0), "{stats:?}");
}

/// An event whose `#[plain]` field runs application code that panics.
#[derive(telemetry_runtime::TelemetryEvent)]
struct Fragile {
    #[plain]
    value: Exploding,
}

struct Exploding;

impl serde::Serialize for Exploding {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        panic!("application bug while serializing");
    }
}

#[test]
fn a_panic_while_encoding_stays_inside_capture() {
    let receiver = Receiver::healthy();
    let dir = tempfile::tempdir().unwrap();
    let telemetry = builder(Some(&receiver.origin), dir.path(), &[]).start();
    telemetry.capture(&Fragile { value: Exploding });
    telemetry.capture(&job(1));
    let stats = telemetry.shutdown(Duration::from_secs(10));
    assert_eq!(stats.dropped.unencodable, 1);
    assert_eq!(stats.delivered, 1);
    assert_accounted(&stats);
    let report = events(&receiver.received())
        .into_iter()
        .find(|e| e["event"] == "telemetry_dropped")
        .expect("the drop is reported upstream");
    assert_eq!(report["properties"]["unencodable"], 1);
}

#[test]
fn the_hashing_key_never_leaves_the_process() {
    let receiver = Receiver::healthy();
    let dir = tempfile::tempdir().unwrap();
    let telemetry = builder(Some(&receiver.origin), dir.path(), &[]).start();
    telemetry.capture(&job(1));
    telemetry.shutdown(Duration::from_secs(10));
    let key = std::fs::read_to_string(dir.path().join("state/hash-key")).unwrap();
    assert_eq!(key.trim().len(), 64);
    let body = String::from_utf8(receiver.next().body).unwrap();
    assert!(!body.contains(key.trim()));
    assert!(
        !body.contains(&dir.path().display().to_string()),
        "no path is sent"
    );
}

#[test]
fn the_state_directory_follows_xdg_and_can_be_overridden() {
    let root = tempfile::tempdir().unwrap();
    let xdg = root.path().join("xdg");
    let start = |vars: Vec<(String, String)>| {
        telemetry_runtime::Telemetry::builder("jobs", "1.0.0")
            .environment(vars)
            .start()
    };
    let telemetry = start(vec![
        ("XDG_CONFIG_HOME".into(), xdg.display().to_string()),
        ("HOME".into(), root.path().display().to_string()),
    ]);
    assert_eq!(
        telemetry.state_dir(),
        Some(xdg.join("jobs/telemetry").as_path())
    );
    assert!(xdg.join("jobs/telemetry/installation-id").is_file());
    drop(telemetry);

    let own = root.path().join("own");
    let telemetry = start(vec![
        ("XDG_CONFIG_HOME".into(), xdg.display().to_string()),
        ("JOBS_TELEMETRY_DIR".into(), own.display().to_string()),
    ]);
    assert_eq!(telemetry.state_dir(), Some(own.as_path()));
    drop(telemetry);

    let telemetry = start(vec![("HOME".into(), root.path().display().to_string())]);
    assert_eq!(
        telemetry.state_dir(),
        Some(root.path().join(".config/jobs/telemetry").as_path())
    );
}

#[cfg(unix)]
#[test]
fn the_state_is_private_to_the_user() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    spool_events(dir.path(), 1);
    let mode =
        |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    let state = dir.path().join("state");
    assert_eq!(mode(&state), 0o700);
    assert_eq!(mode(&state.join("spool")), 0o700);
    for entry in std::fs::read_dir(state.join("spool")).unwrap() {
        assert_eq!(mode(&entry.unwrap().path()), 0o600);
    }
    for file in ["installation-id", "hash-key"] {
        assert_eq!(mode(&state.join(file)), 0o600, "{file}");
    }
}

#[test]
fn restored_events_that_cannot_be_spooled_again_stay_where_they_were() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let original = spool_events(dir.path(), 5);

    // A spool too small for anything: the restored events cannot be written anew.
    let telemetry = builder(Some(&support::refused_origin()), dir.path(), &[])
        .spool_limits(10, Duration::from_secs(3600))
        .start();
    let stats = telemetry.shutdown(Duration::ZERO);
    assert_accounted(&stats);
    assert_eq!(stats.dropped.total(), 0, "{stats:?}");
    assert_eq!(support::spooled_uuids(&state), original);
}

#[test]
fn one_refusal_as_too_large_does_not_shrink_later_batches() {
    let receiver = Receiver::start(|_, index| Reply::status(if index == 0 { 413 } else { 200 }));
    let dir = tempfile::tempdir().unwrap();
    let telemetry = builder(Some(&receiver.origin), dir.path(), &[]).start();
    telemetry.capture(&job(0));
    telemetry.capture(&job(1));
    assert!(telemetry.flush(Duration::from_secs(20)));
    let sizes: Vec<usize> = receiver
        .received()
        .iter()
        .map(|r| r.events().len())
        .collect();
    assert_eq!(sizes, [2, 1, 1]);
    for n in 0..20 {
        telemetry.capture(&job(n));
    }
    let stats = telemetry.shutdown(Duration::from_secs(10));
    let sizes: Vec<usize> = receiver
        .received()
        .iter()
        .map(|r| r.events().len())
        .collect();
    assert_eq!(sizes, [20]);
    assert_eq!(stats.delivered, 22);
}

#[test]
fn flushing_under_a_steady_stream_of_captures_returns() {
    let receiver = Receiver::healthy();
    let dir = tempfile::tempdir().unwrap();
    let telemetry = builder(Some(&receiver.origin), dir.path(), &[])
        .queue_capacity(1000)
        .start();
    let producer = {
        let telemetry = telemetry.handle();
        std::thread::spawn(move || {
            let mut n = 0;
            while telemetry.is_running() {
                telemetry.capture(&job(n));
                n += 1;
            }
        })
    };
    while telemetry.stats().captured < 100 {
        std::thread::yield_now();
    }
    // The flush takes what was queued when it began, not everything captured meanwhile.
    telemetry.flush(Duration::from_secs(20));
    assert!(
        !receiver.received().is_empty(),
        "batches went out during the flush"
    );
    let stats = telemetry.shutdown(Duration::from_secs(10));
    producer.join().unwrap();
    assert_accounted(&telemetry.stats());
    assert!(stats.delivered > 0);
}

#[test]
fn a_full_spool_keeps_what_fits_and_counts_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    // Room for a few of the ten events.
    let telemetry = builder(Some(&support::refused_origin()), dir.path(), &[])
        .spool_limits(4096, Duration::from_secs(3600))
        .start();
    for n in 0..10 {
        telemetry.capture(&job(n));
    }
    let stats = telemetry.shutdown(Duration::ZERO);
    assert_accounted(&stats);
    assert!(stats.spooled > 0 && stats.spooled < 10, "{stats:?}");
    assert_eq!(stats.dropped.unstorable, 10 - stats.spooled, "{stats:?}");
    // What was kept is whole events, readable by the next process.
    let kept = support::spooled_uuids(&state);
    assert_eq!(kept.len() as u64, stats.spooled);
}
