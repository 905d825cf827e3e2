//! Load and concurrency: many threads against a small queue, a burst of a million events with
//! the endpoint down, and processes sharing one state directory while some are killed in the
//! middle of an upload.
//!
//! The tests run one at a time (see [`serial`]): the burst measures the heap of the whole
//! binary, and the others would disturb it.

#[path = "support/heap.rs"]
mod heap;
mod support;

use std::collections::HashSet;
use std::path::Path;
use std::process::{Child, Command};
use std::sync::mpsc;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use serde_json::Value;
use support::{
    PATIENCE, Receiver, Reply, assert_accounted, builder, job, refused_origin, spooled_uuids,
};
use telemetry_runtime::Stats;

#[global_allocator]
static ALLOCATOR: heap::Counting = heap::Counting;

/// Runs the tests of this binary one after the other.
fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Long enough for any amount of work these tests do on a slow machine; a deadlock exceeds it.
const DEADLOCK: Duration = Duration::from_secs(300);

#[test]
fn eight_threads_against_a_small_queue_neither_block_nor_lose_count() {
    const THREADS: u64 = 8;
    const EACH: u32 = 100_000;
    let _serial = serial();
    let receiver = Receiver::healthy();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let telemetry = builder(Some(&receiver.origin), dir.path(), &[])
        .queue_capacity(64)
        .flush_interval(Duration::from_millis(20))
        .start();
    let (done, finished) = mpsc::channel();
    for _ in 0..THREADS {
        let telemetry = telemetry.handle();
        let done = done.clone();
        std::thread::spawn(move || {
            for n in 0..EACH {
                telemetry.capture(&job(n));
            }
            let _ = done.send(());
        });
    }
    for _ in 0..THREADS {
        finished
            .recv_timeout(DEADLOCK)
            .expect("a capturing thread is stuck");
    }
    let stats = telemetry.shutdown(PATIENCE);
    assert_accounted(&stats);
    assert_eq!(stats.captured, THREADS * u64::from(EACH), "{stats:?}");
    assert!(stats.dropped.queue_full > 0, "{stats:?}");
    assert_eq!(stats.dropped.total(), stats.dropped.queue_full, "{stats:?}");
    assert!(stats.delivered > 0, "{stats:?}");

    let requests = receiver.received();
    let uuids: Vec<String> = requests
        .iter()
        .flat_map(support::Request::app_uuids)
        .collect();
    assert_eq!(uuids.len() as u64, stats.delivered, "{stats:?}");
    let distinct: HashSet<&String> = uuids.iter().collect();
    assert_eq!(distinct.len(), uuids.len(), "an event arrived twice");
    // The loss is reported upstream, with counts that never exceed the real ones.
    let reported = support::events(&requests)
        .into_iter()
        .filter(|event| event["event"] == "telemetry_dropped")
        .map(|event| event["properties"]["queue_full"].as_u64().expect("a count"))
        .max()
        .expect("the drops were reported");
    assert!(
        reported > 0 && reported <= stats.dropped.queue_full,
        "reported {reported}: {stats:?}"
    );
}

/// The events in the spool files under `state`.
fn spooled_events(state: &Path) -> Vec<Value> {
    let mut events = Vec::new();
    for entry in std::fs::read_dir(state.join("spool"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let text = std::fs::read_to_string(entry.path()).expect("a readable spool file");
        events.extend(
            text.lines()
                .map(|line| serde_json::from_str::<Value>(line).expect("spool lines are JSON")),
        );
    }
    events
}

/// Bytes in the files of `dir`.
fn bytes_in(dir: &Path) -> u64 {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .flatten()
            .filter_map(|entry| entry.metadata().ok())
            .map(|metadata| metadata.len())
            .sum()
    })
}

/// Runs `burst`, and returns its accounting (checked) and how much the heap grew at most,
/// which must stay below `bound`.
fn heap_bounded(bound: usize, burst: impl FnOnce() -> Stats) -> Stats {
    let before = heap::live();
    heap::reset_peak();
    let stats = burst();
    let peak = heap::peak() - before;
    assert_accounted(&stats);
    assert!(
        peak < bound,
        "the heap grew by {} KiB, beyond {} KiB",
        peak >> 10,
        bound >> 10
    );
    stats
}

/// With the endpoint down, a burst of a million events costs memory bounded by the settings,
/// not by the number of events, and the spool stays within its limit: beyond both, events are
/// dropped and counted.
#[test]
fn a_burst_of_a_million_with_the_endpoint_down_is_bounded() {
    const EVENTS: u32 = 1_000_000;
    const SPOOL_BYTES: u64 = 4 << 20;
    // The bound BENCHMARKS.md derives for the default settings: `max_buffer_bytes` (16 MiB)
    // of tapes held for the endpoint, one request body (4 MiB), the spool's room (4 MiB) of
    // JSON while writing it, and the queue's 10,000 events (this event's tape is far below
    // 2 KiB); plus 4 MiB for the runtime, its threads and this test.
    const BOUND: usize = (16 << 20) + (4 << 20) + (4 << 20) + 10_000 * 2048 + (4 << 20);
    let _serial = serial();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let stats = heap_bounded(BOUND, || {
        let telemetry = builder(Some(&refused_origin()), dir.path(), &[])
            .spool_limits(SPOOL_BYTES, Duration::from_secs(7 * 24 * 3600))
            .flush_interval(Duration::from_secs(3))
            .start();
        for n in 0..EVENTS {
            telemetry.capture(&job(n));
        }
        telemetry.shutdown(PATIENCE)
    });
    assert_eq!(stats.captured, u64::from(EVENTS));
    let spool = bytes_in(&dir.path().join("state").join("spool"));
    assert!(
        spool > 0 && spool <= SPOOL_BYTES,
        "the spool holds {spool} bytes"
    );
    // The pipeline's report of its drops is spooled too, and is not one of the events.
    let spooled = spooled_events(&dir.path().join("state"));
    let events = spooled.iter().filter(|e| e["event"] != "telemetry_dropped");
    assert_eq!(events.count() as u64, stats.spooled);
    assert!(stats.dropped.total() > 0, "{stats:?}");
}

/// An event that holds a large input and sends only its keyed hash: its JSON is small, but
/// until the background thread hashes it, the whole input waits in memory.
#[derive(telemetry_runtime::TelemetryEvent)]
struct Uploaded<'a> {
    /// The uploaded file's contents, hashed.
    #[hash]
    contents: &'a str,
}

/// Events whose JSON fits but whose input is large cannot make the queue hold more memory
/// than the settings allow: beyond `max_buffer_bytes` of such inputs waiting, they are
/// dropped and counted as a full queue.
#[test]
fn a_burst_of_large_inputs_is_bounded_too() {
    const EVENTS: u32 = 2_000;
    const INPUT: usize = 256 << 10;
    // `max_buffer_bytes` (16 MiB) of large inputs in the queue; in the outbox, as much again
    // plus what the background thread has just taken off the queue before it spools the
    // oldest (at most the queue's 16 MiB); one request body and the spool's room (4 MiB
    // each), plus 8 MiB for the rest. Without a bound, the queue alone would hold 10,000 of
    // them: 2.5 GiB.
    const BOUND: usize = 3 * (16 << 20) + (4 << 20) + (4 << 20) + (8 << 20);
    let _serial = serial();
    let contents = "x".repeat(INPUT);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let stats = heap_bounded(BOUND, || {
        let telemetry = builder(Some(&refused_origin()), dir.path(), &[])
            .flush_interval(Duration::from_secs(3))
            .start();
        for _ in 0..EVENTS {
            telemetry.capture(&Uploaded {
                contents: &contents,
            });
        }
        telemetry.shutdown(PATIENCE)
    });
    assert_eq!(stats.captured, u64::from(EVENTS));
    assert!(stats.spooled > 0, "{stats:?}");
    assert_eq!(stats.dropped.too_large, 0, "their JSON fits: {stats:?}");
}

/// The probe program capturing `events`, sharing `state` as its home and state directory.
fn probe(events: u32, state: &Path, vars: &[(&str, &str)]) -> Command {
    let mut command = support::probe(&[&events.to_string()], state, vars);
    command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    command
}

/// Waits for `child` and returns its final accounting.
fn finish(child: Child) -> Value {
    support::probe_stats(&child.wait_with_output().expect("wait for the probe"))
}

/// Several processes start at once on one state directory (one installation id comes of it),
/// spool what they cannot send, and then replay that spool at once while one of them is
/// killed in the middle of its upload. Afterwards every spooled event has been accepted by a
/// receiver exactly once, and nothing is left that stops a later run.
#[test]
fn processes_sharing_state_survive_being_killed_mid_upload() {
    const PROCESSES: usize = 4;
    const EACH: u32 = 25;
    let _serial = serial();
    let state = tempfile::tempdir().expect("a temporary directory");

    // All start at once on a fresh directory, and spool everything.
    let refused = refused_origin();
    let children: Vec<Child> = (0..PROCESSES)
        .map(|_| {
            probe(
                EACH,
                state.path(),
                &[("PROBE_TELEMETRY_ENDPOINT", &refused)],
            )
            .spawn()
            .expect("start the probe")
        })
        .collect();
    let first: Vec<Value> = children.into_iter().map(finish).collect();
    let ids: HashSet<&str> = first
        .iter()
        .map(|stats| stats["installation_id"].as_str().expect("an id"))
        .collect();
    assert_eq!(ids.len(), 1, "{first:?}");
    let spooled = spooled_uuids(state.path());
    assert_eq!(spooled.len(), PROCESSES * EACH as usize);

    // All replay at once; the first request stalls, and its process is killed while waiting.
    // The first request stalls: it is never answered.
    let stalling = Receiver::start(|_, index| {
        if index == 0 {
            Reply::never()
        } else {
            Reply::ok()
        }
    });
    let vars = [
        ("PROBE_TELEMETRY_ENDPOINT", stalling.origin.as_str()),
        // Long enough that the stalled process is still waiting when it is killed.
        ("PROBE_FLUSH_DEADLINE_MS", "600000"),
    ];
    let (exits, exited) = mpsc::channel();
    let mut running = Vec::new();
    for index in 0..PROCESSES {
        let child = probe(0, state.path(), &vars)
            .spawn()
            .expect("start the probe");
        running.push((index, child.id()));
        let exits = exits.clone();
        std::thread::spawn(move || {
            let _ = exits.send((index, child.wait_with_output()));
        });
    }
    let stalled = stalling.next();
    // Each process that did not send the stalled request finishes on its own.
    let mut finished = HashSet::new();
    while finished.len() < PROCESSES - 1 {
        let (index, output) = exited.recv_timeout(PATIENCE).expect("a process to finish");
        let stats = support::probe_stats(&output.expect("wait for the probe"));
        assert_eq!(
            stats["installation_id"].as_str(),
            ids.iter().next().copied()
        );
        finished.insert(index);
    }
    let mut accepted: Vec<String> = stalling
        .received()
        .iter()
        .flat_map(support::Request::app_uuids)
        .collect();
    assert!(!stalled.app_uuids().is_empty());
    let (_, victim) = running
        .iter()
        .find(|(index, _)| !finished.contains(index))
        .expect("one process is still waiting");
    let killed = Command::new("kill")
        .args(["-KILL", &victim.to_string()])
        .status()
        .expect("run kill");
    assert!(killed.success());
    let (index, output) = exited
        .recv_timeout(PATIENCE)
        .expect("the killed process to end");
    assert!(!finished.contains(&index));
    assert!(
        !output.expect("wait for the probe").status.success(),
        "the process was killed"
    );

    // A later run finds what the killed process had claimed, and delivers it.
    let healthy = Receiver::healthy();
    let later = finish(
        probe(
            0,
            state.path(),
            &[("PROBE_TELEMETRY_ENDPOINT", &healthy.origin)],
        )
        .spawn()
        .expect("start the probe"),
    );
    assert_eq!(later["delivered"], later["restored"], "{later}");
    assert!(
        later["restored"].as_u64() >= Some(stalled.app_uuids().len() as u64),
        "{later}"
    );
    accepted.extend(
        healthy
            .received()
            .iter()
            .flat_map(support::Request::app_uuids),
    );
    let distinct: HashSet<&String> = accepted.iter().collect();
    assert_eq!(
        distinct.len(),
        accepted.len(),
        "an event was accepted twice"
    );
    accepted.sort();
    assert_eq!(accepted, spooled, "events lost or invented");
    assert!(spooled_uuids(state.path()).is_empty());
    // And nothing is left over for the next run.
    let last = finish(
        probe(
            0,
            state.path(),
            &[("PROBE_TELEMETRY_ENDPOINT", &healthy.origin)],
        )
        .spawn()
        .expect("start the probe"),
    );
    assert_eq!(
        (last["restored"].as_u64(), last["dropped"].as_u64()),
        (Some(0), Some(0))
    );
}
