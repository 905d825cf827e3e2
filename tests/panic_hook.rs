//! The panic hook against a receiver on 127.0.0.1: what `app_fatal` says, that the hook before
//! it still runs, that it waits no longer than the flush deadline, and that it does nothing when
//! there is nothing to send through or the panic is the library's own.
//!
//! The panic hook and the global telemetry belong to a whole process, so each test runs in a
//! process of its own: it runs this test binary again for itself alone, and that child does the
//! work.

#![deny(warnings, unused_qualifications)]

mod support;

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{PATIENCE, Receiver, Reply, builder, events, job};
use telemetry_runtime::{Stats, TelemetryEvent};

/// The variable that tells a child which test it runs.
const CHILD: &str = "PANIC_HOOK_TEST_CHILD";

/// Runs `body` in a new process that runs only the test `name`, and fails if it fails there,
/// or does not finish in time (a hook that deadlocks would hang it).
fn in_own_process(name: &str, body: impl FnOnce()) {
    if std::env::var(CHILD).as_deref() == Ok(name) {
        body();
        return;
    }
    let child = Command::new(std::env::current_exe().expect("the test binary"))
        .args([name, "--exact", "--test-threads=1", "--nocapture"])
        .env(CHILD, name)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the test binary");
    let pid = child.id().to_string();
    let (done, finished) = mpsc::channel();
    thread::spawn(move || done.send(child.wait_with_output()));
    let Ok(output) = finished.recv_timeout(2 * PATIENCE) else {
        let _ = Command::new("kill").args(["-KILL", &pid]).status();
        panic!("{name} did not finish in its own process");
    };
    let output = output.expect("wait for the test binary");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "{name} failed in its own process:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Panics with `message`, where it is called; first sends `line`, which the caller passes as
/// `line!()`, so that the test knows the line the panic names.
#[track_caller]
fn fail(message: &str, line: u32, lines: &mpsc::Sender<u32>) -> ! {
    assert_eq!(std::panic::Location::caller().line(), line);
    let _ = lines.send(line);
    panic!("{message}")
}

/// Runs `body` on a new thread, named if `name` is given, and expects it to panic.
fn panics_on_thread(name: Option<&str>, body: impl FnOnce() + Send + 'static) {
    let mut spawner = thread::Builder::new();
    if let Some(name) = name {
        spawner = spawner.name(name.to_owned());
    }
    let outcome = spawner.spawn(body).expect("spawn a thread").join();
    assert!(outcome.is_err(), "the thread did not panic");
}

/// The calls made to the hook that [`count_panics`] installed.
static PANICS_SEEN: AtomicUsize = AtomicUsize::new(0);
/// The events the global telemetry had captured at each of those calls.
static CAPTURED_WHEN_SEEN: Mutex<Vec<u64>> = Mutex::new(Vec::new());

/// Replaces the panic hook with one that only counts, as an application's own hook would.
fn count_panics() {
    std::panic::set_hook(Box::new(|_| {
        PANICS_SEEN.fetch_add(1, Ordering::SeqCst);
        let captured = telemetry_runtime::global().stats().captured;
        // Never wait in a panic hook: a failing assertion may hold the lock.
        if let Ok(mut seen) = CAPTURED_WHEN_SEEN.try_lock() {
            seen.push(captured);
        }
    }));
}

/// The events named `name` among `events`.
fn named<'a>(events: &'a [Value], name: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|event| event["event"] == name)
        .collect()
}

#[test]
fn a_panic_is_sent_with_its_thread_place_and_a_scrubbed_message() {
    in_own_process(
        "a_panic_is_sent_with_its_thread_place_and_a_scrubbed_message",
        || {
            let receiver = Receiver::healthy();
            let dir = tempfile::tempdir().unwrap();
            let telemetry = builder(Some(&receiver.origin), dir.path(), &[]).start();
            telemetry_runtime::install_panic_hook();
            let (lines, line) = mpsc::channel();
            panics_on_thread(Some("ingest-worker"), move || {
                fail("cannot open /home/alice/secret.txt", line!(), &lines)
            });
            let line = line.recv().unwrap();
            // No name, and a payload that is not text.
            panics_on_thread(None, || std::panic::panic_any(42_u8));
            let stats = telemetry.shutdown(PATIENCE);
            assert_eq!((stats.captured, stats.delivered), (2, 2), "{stats:?}");

            let sent = events(&receiver.received());
            assert_eq!(named(&sent, "app_fatal").len(), 2, "{sent:?}");
            let fatal = &sent[0]["properties"];
            assert_eq!(fatal["thread"], "ingest-worker");
            assert_eq!(fatal["thread_truncated"], false);
            assert_eq!(fatal["file"], file!());
            assert!(!fatal["file"].as_str().unwrap().starts_with('/'));
            assert_eq!(fatal["line"], line);
            assert!(fatal["column"].as_u64().unwrap() > 0, "{fatal}");
            assert_eq!(fatal["message"], "cannot open <path>");
            assert_eq!(fatal["message_truncated"], false);
            assert_eq!(fatal["command"], Value::Null);
            assert_eq!(fatal["function"], Value::Null);
            let text = sent[0].to_string();
            assert!(
                !text.contains("alice") && !text.contains("secret"),
                "{text}"
            );

            let fatal = &sent[1]["properties"];
            assert_eq!(fatal["thread"], Value::Null);
            assert_eq!(fatal["message"], "Box<dyn Any>");
        },
    );
}

#[test]
fn the_previous_hook_runs_first_and_installing_twice_reports_once() {
    in_own_process(
        "the_previous_hook_runs_first_and_installing_twice_reports_once",
        || {
            count_panics();
            let receiver = Receiver::healthy();
            let dir = tempfile::tempdir().unwrap();
            let telemetry = builder(Some(&receiver.origin), dir.path(), &[]).start();
            telemetry_runtime::install_panic_hook();
            telemetry_runtime::install_panic_hook();
            for _ in 0..2 {
                panics_on_thread(Some("job"), || panic!("the job failed"));
            }
            assert_eq!(PANICS_SEEN.load(Ordering::SeqCst), 2);
            // Each time the application's hook ran, the event was not captured yet.
            let captured_when_seen = CAPTURED_WHEN_SEEN.lock().unwrap().clone();
            assert_eq!(captured_when_seen, [0, 1]);
            telemetry.shutdown(PATIENCE);
            let sent = events(&receiver.received());
            assert_eq!(named(&sent, "app_fatal").len(), 2, "{sent:?}");
        },
    );
}

#[test]
fn a_panic_storm_sends_sixteen_events_and_counts_them_all() {
    in_own_process(
        "a_panic_storm_sends_sixteen_events_and_counts_them_all",
        || {
            count_panics();
            let receiver = Receiver::healthy();
            let dir = tempfile::tempdir().unwrap();
            let telemetry = builder(Some(&receiver.origin), dir.path(), &[])
                .lifecycle_events(true)
                .start();
            telemetry_runtime::install_panic_hook();
            for _ in 0..20 {
                panics_on_thread(Some("request"), || panic!("bad request"));
            }
            telemetry.shutdown(PATIENCE);
            assert_eq!(PANICS_SEEN.load(Ordering::SeqCst), 20);
            let sent = events(&receiver.received());
            assert_eq!(named(&sent, "app_fatal").len(), 16);
            let stopped = named(&sent, "app_stopped");
            assert_eq!(stopped.len(), 1, "{sent:?}");
            assert_eq!(stopped[0]["properties"]["panics"], 20);
        },
    );
}

/// Sends the instant it is dropped.
struct SendWhenDropped(mpsc::Sender<Instant>);

impl Drop for SendWhenDropped {
    fn drop(&mut self) {
        let _ = self.0.send(Instant::now());
    }
}

#[test]
fn the_hook_waits_at_most_the_deadline_and_the_guard_spools_without_waiting_again() {
    in_own_process(
        "the_hook_waits_at_most_the_deadline_and_the_guard_spools_without_waiting_again",
        || {
            const DEADLINE: Duration = Duration::from_secs(1);
            // A receiver that holds every request until the test ends.
            let (release, held) = mpsc::channel::<()>();
            let held = Mutex::new(held);
            let receiver = Receiver::start(move |_, _| {
                let _ = held.lock().unwrap().recv();
                Reply::ok()
            });
            // Declared after the receiver, so dropped (releasing it) before the receiver waits
            // for its thread, even when an assertion fails.
            let _release = release;
            let dir = tempfile::tempdir().unwrap();
            let guard = builder(Some(&receiver.origin), dir.path(), &[])
                .flush_deadline(DEADLINE)
                .start();
            let telemetry = guard.handle();
            telemetry_runtime::install_panic_hook();
            let (hook_done, hook_done_at) = mpsc::channel();
            let before = Instant::now();
            panics_on_thread(Some("request-7"), move || {
                let _guard = guard;
                // Dropped first as the panic unwinds, right after the hook returned.
                let _unwinding = SendWhenDropped(hook_done);
                panic!("request failed");
            });
            let ended = Instant::now();
            let hook_returned = hook_done_at.recv().unwrap();
            let hook_took = hook_returned - before;
            let guard_took = ended - hook_returned;
            assert!(
                hook_took >= DEADLINE * 9 / 10 && hook_took < DEADLINE * 5,
                "the hook took {hook_took:?} with a deadline of {DEADLINE:?}"
            );
            assert!(
                guard_took < DEADLINE / 2,
                "the guard waited {guard_took:?} after the hook had waited"
            );
            // The hook did try: the receiver holds the request.
            assert_eq!(named(receiver.next().events(), "app_fatal").len(), 1);
            let stats = telemetry.stats();
            assert_eq!(
                (stats.captured, stats.delivered, stats.spooled),
                (1, 0, 1),
                "{stats:?}"
            );
            let spooled: String = std::fs::read_dir(dir.path().join("state").join("spool"))
                .unwrap()
                .map(|entry| std::fs::read_to_string(entry.unwrap().path()).unwrap())
                .collect();
            assert!(spooled.contains(r#""event":"app_fatal""#), "{spooled}");
        },
    );
}

#[test]
fn the_hook_does_nothing_before_start_or_when_telemetry_is_off() {
    in_own_process(
        "the_hook_does_nothing_before_start_or_when_telemetry_is_off",
        || {
            count_panics();
            telemetry_runtime::install_panic_hook();
            panics_on_thread(Some("early"), || panic!("before start"));
            assert_eq!(PANICS_SEEN.load(Ordering::SeqCst), 1);
            // Not even counted as a capture before start.
            assert_eq!(telemetry_runtime::ignored_before_start(), 0);

            let receiver = Receiver::healthy();
            let dir = tempfile::tempdir().unwrap();
            let telemetry =
                builder(Some(&receiver.origin), dir.path(), &[("DO_NOT_TRACK", "1")]).start();
            panics_on_thread(Some("off"), || panic!("while off"));
            assert_eq!(PANICS_SEEN.load(Ordering::SeqCst), 2);
            assert_eq!(telemetry.shutdown(PATIENCE), Stats::default());
            assert_eq!(telemetry_runtime::global().stats(), Stats::default());
            let written: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
            assert!(written.is_empty(), "{written:?}");
            assert!(receiver.received().is_empty());
        },
    );
}

/// A value whose serialization panics, as a buggy `Serialize` impl would.
struct Exploding;

impl serde::Serialize for Exploding {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        panic!("a bug in a Serialize impl")
    }
}

/// An event that cannot be encoded.
#[derive(TelemetryEvent)]
struct Risky {
    #[plain]
    value: Exploding,
}

#[test]
fn a_panic_the_library_catches_is_left_to_it() {
    in_own_process("a_panic_the_library_catches_is_left_to_it", || {
        count_panics();
        let receiver = Receiver::healthy();
        let dir = tempfile::tempdir().unwrap();
        let telemetry = builder(Some(&receiver.origin), dir.path(), &[]).start();
        telemetry_runtime::install_panic_hook();
        telemetry_runtime::capture(&Risky { value: Exploding });
        assert_eq!(PANICS_SEEN.load(Ordering::SeqCst), 1);
        telemetry_runtime::capture(&job(1));
        let stats = telemetry.shutdown(PATIENCE);
        assert_eq!(stats.dropped.unencodable, 1, "{stats:?}");
        let sent = events(&receiver.received());
        let names: Vec<&str> = sent.iter().map(|e| e["event"].as_str().unwrap()).collect();
        assert_eq!(names, ["telemetry_dropped", "job_submitted"]);
    });
}

/// A command that panics when `depth` is not 0.
#[telemetry_runtime::instrument_command(name = "job ingest")]
fn ingest(#[plain] depth: u8) {
    assert!(depth == 0, "ingest failed on /home/alice/batch.csv");
}

#[test]
fn a_panic_inside_an_instrumented_function_names_it() {
    in_own_process("a_panic_inside_an_instrumented_function_names_it", || {
        let receiver = Receiver::healthy();
        let dir = tempfile::tempdir().unwrap();
        let telemetry = builder(Some(&receiver.origin), dir.path(), &[]).start();
        telemetry_runtime::install_panic_hook();
        ingest(0);
        panics_on_thread(Some("ingest"), || ingest(1));
        // After the call, the thread is in no command any more.
        panics_on_thread(Some("after"), || {
            ingest(0);
            panic!("after the command")
        });
        let stats = telemetry.shutdown(PATIENCE);
        assert_eq!(stats.captured, 5, "{stats:?}");

        let sent = events(&receiver.received());
        let fatal = named(&sent, "app_fatal");
        assert_eq!(fatal.len(), 2, "{sent:?}");
        assert_eq!(fatal[0]["properties"]["command"], "job ingest");
        assert_eq!(fatal[0]["properties"]["function"], "ingest");
        assert_eq!(fatal[0]["properties"]["message"], "ingest failed on <path>");
        assert_eq!(fatal[1]["properties"]["command"], Value::Null);
        assert_eq!(fatal[1]["properties"]["function"], Value::Null);
        let outcomes: Vec<&Value> = named(&sent, "command")
            .iter()
            .map(|event| &event["properties"]["outcome"])
            .collect();
        assert_eq!(outcomes, ["ok", "panic", "ok"]);
    });
}
