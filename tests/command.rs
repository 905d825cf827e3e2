//! `#[instrument_command]`: one event per call, with its outcome, duration and annotated
//! arguments, for sync and `async` functions, methods and generic functions. Every test uses
//! the one global pipeline of this process and reads back only the events of its own command.

#![deny(warnings, unused_qualifications)]
#![warn(clippy::pedantic)]

mod support;

use std::fmt;
use std::future::Future;
use std::panic::catch_unwind;
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{Engine, PATIENCE, Receiver, builder, job};
use telemetry_runtime::{TelemetryEvent, TelemetryGuard, instrument_command};

/// The receiver and the running global pipeline, shared by every test.
struct Fixture {
    receiver: Receiver,
    /// Events received so far that no test has taken yet.
    unclaimed: Vec<Value>,
    _guard: TelemetryGuard,
}

fn fixture() -> &'static Mutex<Fixture> {
    static FIXTURE: OnceLock<Mutex<Fixture>> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let receiver = Receiver::healthy();
        // A static is never dropped, so a temporary directory would be left behind by every
        // run: the state lives in one directory under the target directory instead, emptied
        // first.
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("command-fixture");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let guard = builder(Some(&receiver.origin), &dir, &[]).start();
        Mutex::new(Fixture {
            receiver,
            unclaimed: Vec::new(),
            _guard: guard,
        })
    })
}

/// Delivers everything captured so far and takes the events whose `command` is `name`.
fn sent(name: &str) -> Vec<Value> {
    sent_where(name, |_| true)
}

/// Delivers everything captured so far and takes the events whose `command` is `name` and
/// whose properties pass `filter`.
fn sent_where(name: &str, filter: impl Fn(&Value) -> bool) -> Vec<Value> {
    let fixture = fixture();
    assert!(
        telemetry_runtime::global().flush(PATIENCE),
        "flush timed out"
    );
    let mut fixture = fixture
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let requests = fixture.receiver.received();
    fixture.unclaimed.extend(support::events(&requests));
    let (mine, others) = fixture
        .unclaimed
        .drain(..)
        .partition(|event| event["properties"]["command"] == name && filter(&event["properties"]));
    fixture.unclaimed = others;
    mine
}

/// The one event of command `name`.
fn the_event(name: &str) -> Value {
    the_event_where(name, |_| true)
}

/// The one event of command `name` whose properties pass `filter`.
fn the_event_where(name: &str, filter: impl Fn(&Value) -> bool) -> Value {
    let events = sent_where(name, filter);
    assert_eq!(events.len(), 1, "expected one `{name}` event: {events:#?}");
    events.into_iter().next().unwrap()
}

#[derive(Debug)]
struct SubmitError;

impl fmt::Display for SubmitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("cannot read /home/alice/payroll/jobs.yaml: permission denied")
    }
}

impl std::error::Error for SubmitError {}

/// Options sent flattened into the command's event.
#[derive(TelemetryEvent)]
#[telemetry(nested)]
struct SubmitOptions {
    retries: u32,
    #[is_set]
    queue: Option<String>,
}

#[instrument_command(name = "job submit", message, args(priority))]
#[allow(clippy::too_many_arguments)]
fn submit(
    #[hash] namespace: &str,
    #[plain] engine: &str,
    #[count] inputs: &[String],
    #[telemetry] options: &SubmitOptions,
    #[telemetry(rename = "kind")]
    #[trusted_or_hash(prefixes = ["batch"])]
    job_kind: &str,
    priority: u8,
    secret_note: &str,
    fail: bool,
) -> Result<usize, SubmitError> {
    let _ = (
        namespace,
        engine,
        options.retries,
        job_kind,
        priority,
        secret_note,
    );
    if fail {
        return Err(SubmitError);
    }
    let parsed: usize = "2".parse().map_err(|_| SubmitError)?;
    Ok(inputs.len() + parsed)
}

fn options() -> SubmitOptions {
    SubmitOptions {
        retries: 3,
        queue: Some("gpu-queue".to_owned()),
    }
}

#[test]
fn an_ok_call_sends_its_name_duration_outcome_and_only_the_annotated_arguments() {
    fixture();
    let inputs = vec!["a.csv".to_owned(), "b.csv".to_owned()];
    let started = Instant::now();
    let returned = submit(
        "payroll-team",
        "docker",
        &inputs,
        &options(),
        "batch-nightly",
        7,
        "the vault password is hunter2",
        false,
    );
    let outer = started.elapsed();
    assert_eq!(returned.unwrap(), 4, "the return value is unchanged");

    let event = the_event_where("job submit", |p| p["priority"] == 7);
    assert_eq!(event["event"], "command");
    let properties = &event["properties"];
    assert_eq!(properties["outcome"], "ok");
    assert_eq!(properties["error_type"], Value::Null);
    assert_eq!(properties["error_message"], Value::Null);
    assert_eq!(properties["error_message_truncated"], false);
    assert!(
        properties["duration_ms"].as_u64().unwrap() <= u64::try_from(outer.as_millis()).unwrap()
    );
    assert_eq!(properties["engine"], "docker");
    assert_eq!(properties["inputs"], 2);
    assert_eq!(properties["retries"], 3);
    assert_eq!(properties["queue"], true);
    assert_eq!(properties["kind"], "batch-nightly");
    assert_eq!(properties["priority"], 7);
    assert!(properties.get("job_kind").is_none());
    assert!(properties.get("secret_note").is_none());
    assert!(properties.get("fail").is_none());
    assert!(properties.get("options").is_none());

    // The namespace is hashed with the installation's key, exactly as an event field is.
    telemetry_runtime::capture(&job(1));
    assert!(telemetry_runtime::global().flush(PATIENCE));
    let namespace = properties["namespace"].as_str().unwrap();
    assert_eq!(namespace.len(), 64);
    let mut fixture = fixture().lock().unwrap();
    let requests = fixture.receiver.received();
    fixture.unclaimed.extend(support::events(&requests));
    let event_hash = fixture
        .unclaimed
        .iter()
        .find(|event| event["event"] == "job_submitted")
        .map(|event| event["properties"]["namespace"].clone())
        .expect("the job event was sent");
    assert_eq!(event_hash, namespace);

    let text = event.to_string();
    for secret in ["payroll-team", "hunter2", "vault", "a.csv", "gpu-queue"] {
        assert!(!text.contains(secret), "`{secret}` was sent: {text}");
    }
}

#[test]
fn an_error_is_sent_with_its_type_and_a_scrubbed_message() {
    fixture();
    let returned = submit("ns", "wasm", &[], &options(), "adhoc", 1, "", true);
    assert!(returned.is_err());

    let event = the_event_where("job submit", |p| p["priority"] == 1);
    let properties = &event["properties"];
    assert_eq!(properties["outcome"], "error");
    assert_eq!(
        properties["error_type"],
        std::any::type_name::<SubmitError>()
    );
    let message = properties["error_message"].as_str().unwrap();
    assert!(message.starts_with("cannot read <path>"), "{message}");
    assert!(!message.contains("alice"), "{message}");
    assert_eq!(properties["error_message_truncated"], false);
    // Not trusted: hashed.
    assert_eq!(properties["kind"].as_str().unwrap().len(), 64);
}

#[instrument_command(name = "explode")]
fn explode(#[plain] depth: u32) -> Result<(), SubmitError> {
    assert!(depth == 0, "failed while reading /home/alice/.ssh/id_rsa");
    Ok(())
}

#[test]
fn a_panic_is_sent_as_such_and_keeps_unwinding() {
    fixture();
    let caught = catch_unwind(|| explode(1));
    let payload = caught.expect_err("the panic went through");
    assert_eq!(
        payload.downcast_ref::<&str>(),
        Some(&"failed while reading /home/alice/.ssh/id_rsa")
    );

    let event = the_event("explode");
    let properties = &event["properties"];
    assert_eq!(properties["outcome"], "panic");
    assert_eq!(properties["error_type"], Value::Null);
    assert_eq!(properties["depth"], 1);
    assert!(!event.to_string().contains("alice"));
}

#[instrument_command(name = "slow")]
fn slow(millis: u64, #[plain] _unused: bool) -> u64 {
    // The work being measured, not a way to wait for something.
    thread::sleep(Duration::from_millis(millis));
    millis
}

#[test]
fn durations_are_measured_from_start_to_end() {
    fixture();
    let started = Instant::now();
    slow(60, false);
    let outer = u64::try_from(started.elapsed().as_millis()).unwrap();
    let event = the_event("slow");
    let duration = event["properties"]["duration_ms"].as_u64().unwrap();
    assert!(
        (60..=outer).contains(&duration),
        "{duration} ms, call took {outer} ms"
    );
}

/// A method, a generic function and an `impl Trait` argument.
struct Queue {
    name: String,
}

impl Queue {
    #[instrument_command(name = "queue drain", args(engine))]
    fn drain(&mut self, #[count] limit: &str, engine: Engine) -> Vec<String> {
        let _ = engine;
        self.name.push('!');
        vec![self.name.clone(); limit.len()]
    }
}

#[instrument_command(name = "generic")]
fn generic<T: fmt::Display, const N: usize>(
    #[scrub] item: T,
    #[count] items: [T; N],
    #[hash] label: impl AsRef<str> + telemetry_runtime::dispositions::Hashable,
) -> String {
    format!("{item}{}{}", items.len(), label.as_ref())
}

#[test]
fn methods_generic_functions_and_impl_trait_arguments_are_instrumented() {
    fixture();
    let mut queue = Queue {
        name: "q".to_owned(),
    };
    assert_eq!(queue.drain("abc", Engine::Wasm), vec!["q!"; 3]);
    let event = the_event("queue drain");
    assert_eq!(event["properties"]["limit"], 3);
    assert_eq!(event["properties"]["engine"], "wasm");

    assert_eq!(
        generic("x at /tmp/secret", ["a", "b"], "lbl"),
        "x at /tmp/secret2lbl"
    );
    let event = the_event("generic");
    let properties = &event["properties"];
    assert_eq!(properties["item"], "x at <path>");
    assert_eq!(properties["items"], 2);
    assert_eq!(properties["label"].as_str().unwrap().len(), 64);
}

fn assert_send<T: Send>(_: &T) {}

/// Polls `future` on this thread until it is ready, parking between polls.
fn block_on<F: Future>(future: F) -> F::Output {
    struct Unpark(Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    let mut context = Context::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return output;
        }
        thread::park();
    }
}

/// Returns `Pending` once, so the function around it is polled twice.
struct YieldOnce(bool);

impl Future for YieldOnce {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            Poll::Ready(())
        } else {
            self.0 = true;
            context.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

#[instrument_command(name = "fetch")]
async fn fetch(
    #[count] urls: Vec<String>,
    fail: bool,
    explode: bool,
) -> Result<usize, SubmitError> {
    YieldOnce(false).await;
    assert!(!explode, "the fetch exploded");
    if fail {
        Err(SubmitError)?;
    }
    Ok(urls.len())
}

#[test]
fn async_functions_record_ok_error_panic_and_cancellation() {
    fixture();
    let future = fetch(vec!["u".to_owned()], false, false);
    assert_send(&future);
    assert_eq!(block_on(future).unwrap(), 1);
    let event = the_event("fetch");
    assert_eq!(event["properties"]["outcome"], "ok");
    assert_eq!(event["properties"]["urls"], 1);

    assert!(block_on(fetch(Vec::new(), true, false)).is_err());
    let event = the_event("fetch");
    assert_eq!(event["properties"]["outcome"], "error");
    assert_eq!(
        event["properties"]["error_type"],
        std::any::type_name::<SubmitError>()
    );

    let caught = catch_unwind(|| block_on(fetch(Vec::new(), false, true)));
    assert!(caught.is_err());
    let event = the_event("fetch");
    assert_eq!(event["properties"]["outcome"], "panic");

    // Polled once, then dropped before it finished.
    let waker = Waker::noop();
    let mut future = Box::pin(fetch(Vec::new(), false, false));
    assert!(
        future
            .as_mut()
            .poll(&mut Context::from_waker(waker))
            .is_pending()
    );
    drop(future);
    let event = the_event("fetch");
    assert_eq!(event["properties"]["outcome"], "cancelled");

    // A future never polled never started: nothing is sent.
    drop(fetch(Vec::new(), false, false));
    assert!(sent("fetch").is_empty());
}

#[instrument_command(name = "exit code")]
fn exit_code(fail: bool) -> std::process::ExitCode {
    if fail {
        std::process::ExitCode::FAILURE
    } else {
        std::process::ExitCode::SUCCESS
    }
}

#[test]
fn an_exit_code_other_than_success_is_an_error() {
    fixture();
    let _ = exit_code(false);
    assert_eq!(the_event("exit code")["properties"]["outcome"], "ok");
    let _ = exit_code(true);
    let event = the_event("exit code");
    assert_eq!(event["properties"]["outcome"], "error");
    assert_eq!(event["properties"]["error_type"], Value::Null);
}

#[test]
fn each_instrumented_function_is_in_the_schema() {
    fixture();
    let events = telemetry_runtime::schema::events();
    let submit = events
        .iter()
        .find(|event| event.name == "command" && event.rust_type.ends_with("::submit"))
        .expect("submit is registered");
    let names: Vec<&str> = submit.fields.iter().map(|field| field.name).collect();
    assert_eq!(
        names,
        [
            "command",
            "duration_ms",
            "outcome",
            "error_type",
            "error_message",
            "error_message_truncated",
            "namespace",
            "engine",
            "inputs",
            "options",
            "kind",
            "priority",
        ]
    );
    let markdown = telemetry_runtime::schema::to_markdown(&events);
    assert!(markdown.contains("| `retries` | integer |"), "{markdown}");
    assert!(markdown.contains("`job submit`"), "{markdown}");
    // The generic function's schema cannot name `T`, but still says what is sent.
    let generic = events
        .iter()
        .find(|event| event.rust_type.ends_with("::generic"))
        .expect("generic is registered");
    let item = generic.fields.iter().find(|f| f.name == "item").unwrap();
    assert_eq!(item.rust_type, "T");
}
