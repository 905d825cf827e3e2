//! The application's start and stop as events, against a receiver on 127.0.0.1: `app_started`
//! first and once, `app_stopped` with the uptime on a clean stop only, and neither when they
//! are turned off or telemetry is.

#![deny(warnings, unused_qualifications)]

mod support;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{PATIENCE, Receiver, assert_accounted, builder, events, job};
use telemetry_runtime::{FirstRun, Telemetry, TelemetryGuard};

/// The names of `events`, in order.
fn names(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .map(|event| event["event"].as_str().expect("an event name"))
        .collect()
}

/// Starts telemetry as an application does, without saying anything about lifecycle events.
fn start_with_defaults(origin: &str, dir: &Path) -> TelemetryGuard {
    Telemetry::builder("jobs", "1.2.3")
        .api_key("phc_test_key")
        .endpoint(Some(origin))
        .state_dir(dir.join("state"))
        .environment([("HOME", dir.display().to_string())])
        .first_run(FirstRun::Silent)
        .start()
}

#[test]
fn app_started_is_sent_first_and_once_by_default() {
    let receiver = Receiver::healthy();
    let dir = tempfile::tempdir().unwrap();
    let telemetry = start_with_defaults(&receiver.origin, dir.path());
    telemetry.capture(&job(1));
    telemetry.capture(&job(2));
    let stats = telemetry.shutdown(PATIENCE);
    assert_eq!((stats.captured, stats.delivered), (4, 4), "{stats:?}");
    assert_accounted(&stats);
    let sent = events(&receiver.received());
    assert_eq!(
        names(&sent),
        [
            "app_started",
            "job_submitted",
            "job_submitted",
            "app_stopped"
        ]
    );
    assert_eq!(sent[0]["properties"]["first_run"], true, "{}", sent[0]);
    assert_eq!(sent[0]["distinct_id"], telemetry.installation_id().unwrap());
    drop(telemetry);
    assert!(receiver.received().is_empty(), "the guard sent more");

    // The installation id exists now: the next start is not a first run.
    let again = start_with_defaults(&receiver.origin, dir.path());
    again.shutdown(PATIENCE);
    let sent = events(&receiver.received());
    assert_eq!(names(&sent), ["app_started", "app_stopped"]);
    assert_eq!(sent[0]["properties"]["first_run"], false, "{}", sent[0]);
}

#[test]
fn app_stopped_carries_the_uptime_and_is_sent_once() {
    let receiver = Receiver::healthy();
    let dir = tempfile::tempdir().unwrap();
    let before_start = Instant::now();
    let telemetry = builder(Some(&receiver.origin), dir.path(), &[])
        .lifecycle_events(true)
        .start();
    let started = Instant::now();
    // Some work while running: a round trip to the receiver, then computing until at least
    // 20 ms have passed, so that the uptime cannot pass for zero.
    telemetry.capture(&job(1));
    assert!(telemetry.flush(PATIENCE));
    let mut work = 0u64;
    while started.elapsed() < Duration::from_millis(20) {
        work = std::hint::black_box(work.wrapping_mul(31).wrapping_add(7));
    }
    let least = started.elapsed();
    telemetry.shutdown(PATIENCE);
    let most = before_start.elapsed();
    // Neither a second shutdown nor the guard sends another.
    let stats = telemetry.shutdown(PATIENCE);
    let handle = telemetry.handle();
    drop(telemetry);
    assert_eq!(handle.stats(), stats);
    assert_eq!((stats.captured, stats.delivered, stats.ignored), (3, 3, 0));

    let sent = events(&receiver.received());
    assert_eq!(
        names(&sent),
        ["app_started", "job_submitted", "app_stopped"]
    );
    let uptime = sent[2]["properties"]["uptime_ms"]
        .as_u64()
        .unwrap_or_else(|| panic!("no uptime in {}", sent[2]));
    assert!(
        least.as_millis() <= u128::from(uptime) && u128::from(uptime) <= most.as_millis(),
        "uptime {uptime} ms, measured between {least:?} and {most:?}"
    );
}

/// Shuts telemetry down explicitly when dropped.
struct ShutDownOnDrop(Telemetry);

impl Drop for ShutDownOnDrop {
    fn drop(&mut self) {
        self.0.shutdown(PATIENCE);
    }
}

#[test]
fn a_guard_dropped_by_a_panic_sends_no_app_stopped() {
    let receiver = Receiver::healthy();
    let dir = tempfile::tempdir().unwrap();
    let mut kept = None;
    let unwound = catch_unwind(AssertUnwindSafe(|| {
        let guard = builder(Some(&receiver.origin), dir.path(), &[])
            .lifecycle_events(true)
            .start();
        kept = Some(guard.handle());
        guard.capture(&job(1));
        panic!("the job failed");
    }));
    assert!(unwound.is_err());
    let telemetry = kept.unwrap();
    assert!(!telemetry.is_running());
    let stats = telemetry.stats();
    assert_eq!((stats.captured, stats.delivered), (2, 2), "{stats:?}");
    assert_accounted(&stats);
    assert_eq!(
        names(&events(&receiver.received())),
        ["app_started", "job_submitted"]
    );
    // Stopping again afterwards is no clean stop of a running pipeline either.
    assert_eq!(telemetry.shutdown(PATIENCE).captured, 2);
    assert!(receiver.received().is_empty());

    // An explicit shutdown is a clean stop, even while unwinding.
    let other = tempfile::tempdir().unwrap();
    let unwound = catch_unwind(AssertUnwindSafe(|| {
        let guard = builder(Some(&receiver.origin), other.path(), &[])
            .lifecycle_events(true)
            .start();
        let _stop = ShutDownOnDrop(guard.handle());
        panic!("the job failed");
    }));
    assert!(unwound.is_err());
    assert_eq!(
        names(&events(&receiver.received())),
        ["app_started", "app_stopped"]
    );
}

#[test]
fn lifecycle_events_can_be_turned_off() {
    let receiver = Receiver::healthy();
    let dir = tempfile::tempdir().unwrap();
    let telemetry = Telemetry::builder("jobs", "1.2.3")
        .endpoint(Some(&receiver.origin))
        .state_dir(dir.path().join("state"))
        .environment([("HOME", dir.path().display().to_string())])
        .first_run(FirstRun::Silent)
        .lifecycle_events(false)
        .start();
    telemetry.capture(&job(1));
    let stats = telemetry.shutdown(PATIENCE);
    assert_eq!((stats.captured, stats.delivered), (1, 1));
    assert_eq!(names(&events(&receiver.received())), ["job_submitted"]);
}

#[test]
fn nothing_is_sent_or_written_when_telemetry_is_off() {
    let receiver = Receiver::healthy();
    let dir = tempfile::tempdir().unwrap();
    let telemetry = builder(Some(&receiver.origin), dir.path(), &[("DO_NOT_TRACK", "1")])
        .lifecycle_events(true)
        .start();
    telemetry.capture(&job(1));
    let handle = telemetry.handle();
    drop(telemetry);
    assert_eq!(handle.stats(), telemetry_runtime::Stats::default());
    assert!(!dir.path().join("state").exists());
    assert!(receiver.received().is_empty());
}
