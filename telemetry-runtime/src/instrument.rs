//! What `#[instrument_command]` expands to: timing a call, recording how it ended, and knowing
//! which instrumented command the current thread is in.
//!
//! A call records one event when it ends: `ok` or `error` from its return value, `panic` when
//! it unwinds, `cancelled` when it is a future dropped before it finished. Its arguments are
//! encoded when it begins, under the installation's key, so a body that consumes them changes
//! nothing. When telemetry is off the whole cost is one atomic load.
//!
//! A call that began before telemetry was started (an instrumented `main` that starts
//! telemetry itself) would end after the guard it created shut telemetry down, and its event
//! would be lost. So a guard dropped inside such a call, on its thread, leaves the shutdown to
//! the call: the call records its event, then shuts telemetry down as the guard would have.

use std::cell::RefCell;
use std::fmt::Display;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use crate::HashKey;
use crate::event::EncodeError;
use crate::json::{JsonBuf, ObjectWriter};
use crate::pipeline::Shared;
use crate::schema::EventSchema;
use crate::telemetry::{Global, global_state};

/// The innermost instrumented call running on this thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Frame {
    /// The command's name (`#[instrument_command(name = "...")]`, else the function's name).
    pub command: &'static str,
    /// The name of the instrumented function.
    pub function: &'static str,
}

/// One instrumented call on this thread's stack.
struct Entry {
    frame: Frame,
    /// The call began before any telemetry was started.
    before_start: bool,
    /// A shutdown left to this call by a guard dropped inside it, and when it must end.
    deferred: Option<(Arc<Shared>, Instant)>,
}

thread_local! {
    static STACK: RefCell<Vec<Entry>> = const { RefCell::new(Vec::new()) };
}

/// The innermost instrumented call running on this thread, if any. Never panics, even while
/// the thread is being torn down or is inside this module.
pub(crate) fn current() -> Option<Frame> {
    STACK
        .try_with(|stack| stack.try_borrow().ok()?.last().map(|entry| entry.frame))
        .ok()
        .flatten()
}

/// Called by a guard about to shut `shared` down: if this thread is inside an instrumented
/// call that began before telemetry was started, delivers what is pending now (so that even a
/// `process::exit` after the guard loses nothing), and leaves the shutdown to the outermost such
/// call, to run once it has recorded its own event, by the same deadline. Returns whether it
/// did.
pub(crate) fn defer_shutdown(shared: &Arc<Shared>, until: Instant) -> bool {
    let is_global =
        matches!(global_state(), Global::Active(global) if std::ptr::eq(global, &**shared));
    let deferred = is_global
        && STACK
            .try_with(|stack| {
                let mut stack = stack.try_borrow_mut().ok()?;
                let entry = stack.iter_mut().find(|entry| entry.before_start)?;
                entry
                    .deferred
                    .get_or_insert_with(|| (Arc::clone(shared), until));
                Some(())
            })
            .ok()
            .flatten()
            .is_some();
    if deferred {
        shared.flush(until);
    }
    deferred
}

fn push(entry: Entry) -> Option<usize> {
    STACK
        .try_with(|stack| {
            let mut stack = stack.try_borrow_mut().ok()?;
            stack.push(entry);
            Some(stack.len() - 1)
        })
        .ok()
        .flatten()
}

/// Removes the entry at `depth` (and any left above it), returning the shutdown it was given.
fn pop(depth: usize) -> Option<(Arc<Shared>, Instant)> {
    STACK
        .try_with(|stack| {
            let mut stack = stack.try_borrow_mut().ok()?;
            let deferred = stack.get_mut(depth)?.deferred.take();
            stack.truncate(depth);
            deferred
        })
        .ok()
        .flatten()
}

/// What the macro knows of one instrumented function.
#[doc(hidden)]
#[derive(Debug)]
pub struct CommandSpec {
    /// The command's name.
    pub command: &'static str,
    /// The function's name.
    pub function: &'static str,
    /// The longest error message sent, when the attribute asks for it.
    pub message: Option<usize>,
    /// The event: its name and properties.
    pub schema: &'static EventSchema,
}

/// Runs a synchronous body. The closure is known to be called once, so it may return what
/// it borrowed from what it captured (`&mut self.field`).
#[doc(hidden)]
#[inline(always)]
pub fn call_once<R>(body: impl FnOnce() -> R) -> R {
    body()
}

/// How a call's return value says it went.
#[doc(hidden)]
pub enum Outcome<'a> {
    /// It succeeded.
    Ok,
    /// It failed: with an error of this type, and this message when it is to be sent.
    Error {
        type_name: Option<&'static str>,
        message: Option<&'a dyn Display>,
    },
}

/// A call's return value, looked at by [`ResultOutcome`] or, for any other type,
/// [`AnyOutcome`].
#[doc(hidden)]
pub struct Returned<'a, T: ?Sized>(pub &'a T);

/// The outcome of a `Result` (by its variant) or an `ExitCode` (failed unless `SUCCESS`).
#[doc(hidden)]
pub trait ResultOutcome {
    fn __telemetry_outcome(&self) -> Outcome<'static>;
}

impl<T, E> ResultOutcome for Returned<'_, Result<T, E>> {
    fn __telemetry_outcome(&self) -> Outcome<'static> {
        match self.0 {
            Ok(_) => Outcome::Ok,
            Err(_) => Outcome::Error {
                type_name: Some(std::any::type_name::<E>()),
                message: None,
            },
        }
    }
}

impl ResultOutcome for Returned<'_, ExitCode> {
    fn __telemetry_outcome(&self) -> Outcome<'static> {
        if *self.0 == ExitCode::SUCCESS {
            Outcome::Ok
        } else {
            Outcome::Error {
                type_name: None,
                message: None,
            }
        }
    }
}

/// Any other return value means the call succeeded.
#[doc(hidden)]
pub trait AnyOutcome {
    fn __telemetry_outcome(&self) -> Outcome<'static>;
}

impl<T: ?Sized> AnyOutcome for &Returned<'_, T> {
    fn __telemetry_outcome(&self) -> Outcome<'static> {
        Outcome::Ok
    }
}

/// A return value whose error message `#[instrument_command(message)]` can send.
#[doc(hidden)]
#[diagnostic::on_unimplemented(
    message = "`message` sends the error of a `Result`, and `{Self}` is not a `Result` whose error implements `Display`",
    label = "`#[instrument_command(message)]` needs this to be `Result<_, E>` with `E: Display`",
    note = "remove `message`, or return a `Result` whose error type implements `Display`"
)]
pub trait ErrorMessage {
    #[doc(hidden)]
    fn __outcome(&self) -> Outcome<'_>;
}

impl<T, E: Display> ErrorMessage for Result<T, E> {
    fn __outcome(&self) -> Outcome<'_> {
        match self {
            Ok(_) => Outcome::Ok,
            Err(error) => Outcome::Error {
                type_name: Some(std::any::type_name::<E>()),
                message: Some(error),
            },
        }
    }
}

/// The outcome of a call whose error message is sent.
#[doc(hidden)]
pub fn outcome_with_message<R: ErrorMessage>(returned: &R) -> Outcome<'_> {
    returned.__outcome()
}

/// How a call ended.
#[derive(Clone, Copy)]
enum Ending {
    Ok,
    Error,
    Panic,
    Cancelled,
}

impl Ending {
    fn as_str(self) -> &'static str {
        match self {
            Ending::Ok => "ok",
            Ending::Error => "error",
            Ending::Panic => "panic",
            Ending::Cancelled => "cancelled",
        }
    }
}

/// Times one instrumented call and records its event when it ends. Inert when telemetry is off.
#[doc(hidden)]
pub struct Recorder {
    spec: &'static CommandSpec,
    live: Option<Live>,
}

struct Live {
    started: Instant,
    /// The arguments' properties, encoded when the call began (the inside of an object).
    arguments: Result<Vec<u8>, EncodeError>,
    before_start: bool,
    /// Where this call's entry is on the thread's stack, while it is there.
    depth: Option<usize>,
    /// The shutdown to run once the event is recorded, and when it must end.
    deferred: Option<(Arc<Shared>, Instant)>,
    recorded: bool,
    /// The test recording the call began in, which gets the event instead of the pipeline.
    recording: Option<Arc<crate::testing::Collector>>,
}

impl Recorder {
    /// Starts timing a synchronous call, which is on this thread's stack until it ends.
    pub fn start(
        spec: &'static CommandSpec,
        arguments: impl FnOnce(&mut ObjectWriter<'_>, &HashKey),
    ) -> Recorder {
        let mut recorder = Recorder::begin(spec, arguments);
        recorder.enter();
        recorder
    }

    /// Starts timing an `async` call, which is on the stack of whichever thread polls it, while
    /// it is polled ([`Recorder::run`]).
    pub fn start_async(
        spec: &'static CommandSpec,
        arguments: impl FnOnce(&mut ObjectWriter<'_>, &HashKey),
    ) -> Recorder {
        Recorder::begin(spec, arguments)
    }

    fn begin(
        spec: &'static CommandSpec,
        arguments: impl FnOnce(&mut ObjectWriter<'_>, &HashKey),
    ) -> Recorder {
        let recording = crate::testing::current();
        let (arguments, before_start) = match (&recording, global_state()) {
            (Some(collector), _) => (encode(arguments, collector.key()), false),
            (None, Global::Off) => return Recorder { spec, live: None },
            (None, Global::Unset) => (Ok(Vec::new()), true),
            (None, Global::Active(shared)) => {
                (encode(arguments, &shared.settings.identity.key), false)
            }
        };
        Recorder {
            spec,
            live: Some(Live {
                started: Instant::now(),
                arguments,
                before_start,
                depth: None,
                deferred: None,
                recorded: false,
                recording,
            }),
        }
    }

    /// Polls `future` as this call's body; see [`Run`].
    pub fn run<'a, F: Future>(&'a mut self, future: Pin<&'a mut F>) -> Run<'a, F> {
        Run {
            recorder: self,
            future,
        }
    }

    /// Records how the call ended, from its return value.
    pub fn finish(mut self, outcome: Outcome<'_>) {
        match outcome {
            Outcome::Ok => self.record(Ending::Ok, None, None),
            Outcome::Error { type_name, message } => {
                self.record(Ending::Error, type_name, message);
            }
        }
        self.end();
    }

    fn enter(&mut self) {
        let spec = self.spec;
        if let Some(live) = &mut self.live {
            live.depth = push(Entry {
                frame: Frame {
                    command: spec.command,
                    function: spec.function,
                },
                before_start: live.before_start,
                deferred: None,
            });
        }
    }

    fn exit(&mut self) {
        if let Some(live) = &mut self.live
            && let Some(depth) = live.depth.take()
            && let Some(deferred) = pop(depth)
        {
            live.deferred.get_or_insert(deferred);
        }
    }

    /// Leaves the stack and runs the shutdown a guard left to this call.
    fn end(&mut self) {
        self.exit();
        if let Some((shared, until)) = self.live.as_mut().and_then(|live| live.deferred.take()) {
            // As the guard would have: a call ending by a panic is not a clean stop.
            shared.shutdown(until, !std::thread::panicking());
        }
    }

    fn record(
        &mut self,
        ending: Ending,
        error_type: Option<&'static str>,
        message: Option<&dyn Display>,
    ) {
        let spec = self.spec;
        let Some(live) = &mut self.live else { return };
        if std::mem::replace(&mut live.recorded, true) {
            return;
        }
        let elapsed = live.started.elapsed();
        let arguments = &live.arguments;
        let write = |properties: &mut ObjectWriter<'_>, _: &HashKey| {
            properties.key("command").string(spec.command);
            properties
                .key("duration_ms")
                .int(u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX));
            properties.key("outcome").string(ending.as_str());
            match error_type {
                Some(name) => properties.key("error_type").string(name),
                None => properties.key("error_type").null(),
            }
            if let Some(max_len) = spec.message {
                match message {
                    Some(message) => properties.key("error_message").scrubbed(message, max_len),
                    None => properties.key("error_message").null(),
                }
                properties.key("error_message_truncated").scrub_flag();
            }
            match arguments {
                Ok(members) => properties.members(members),
                Err(error) => properties.fail(error.clone()),
            }
        };
        match (&live.recording, global_state()) {
            (Some(collector), _) => collector.push(spec.schema.name, write),
            (None, Global::Active(shared)) => shared.capture_with(spec.schema.name, write),
            (None, _) => {}
        }
    }
}

impl Drop for Recorder {
    /// A call that did not finish unwound (`panic`), or was a future dropped before it was
    /// done (`cancelled`).
    fn drop(&mut self) {
        if self.live.is_none() {
            return;
        }
        let ending = if std::thread::panicking() {
            Ending::Panic
        } else {
            Ending::Cancelled
        };
        self.record(ending, None, None);
        self.end();
    }
}

/// Encodes the arguments' properties. A `#[plain]` argument whose `Serialize` fails or panics
/// makes the event unencodable; the call itself goes on.
fn encode(
    arguments: impl FnOnce(&mut ObjectWriter<'_>, &HashKey),
    key: &HashKey,
) -> Result<Vec<u8>, EncodeError> {
    let encoded = catch_unwind(AssertUnwindSafe(|| {
        let mut buf = JsonBuf::new();
        let mut object = buf.object();
        arguments(&mut object, key);
        object.end();
        buf.finish()
    }));
    match encoded {
        Ok(Ok(object)) => Ok(object
            .get(1..object.len().saturating_sub(1))
            .unwrap_or_default()
            .to_vec()),
        Ok(Err(error)) => Err(error),
        Err(_) => Err(EncodeError::Plain {
            property: "arguments",
            reason: "serializing an argument panicked".to_owned(),
        }),
    }
}

/// An `async` call's body, polled with the call on the polling thread's stack. A panic while
/// polling is recorded as it unwinds, before anything else can catch it.
#[doc(hidden)]
pub struct Run<'a, F> {
    recorder: &'a mut Recorder,
    future: Pin<&'a mut F>,
}

impl<F: Future> Future for Run<'_, F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        /// Leaves the stack when the poll returns or unwinds; records a panic if it unwinds.
        struct Polling<'r>(&'r mut Recorder);
        impl Drop for Polling<'_> {
            fn drop(&mut self) {
                if self.0.live.is_some() && std::thread::panicking() {
                    self.0.record(Ending::Panic, None, None);
                }
                self.0.exit();
            }
        }
        let this = self.get_mut();
        this.recorder.enter();
        let polling = Polling(this.recorder);
        let poll = this.future.as_mut().poll(cx);
        drop(polling);
        poll
    }
}

/// The schema entries of the properties every command event sends, ahead of its arguments.
#[doc(hidden)]
pub mod fields {
    use crate::schema::{Disposition, FieldSchema, Shape};

    /// `command`: the command's name.
    pub const fn command(names: &'static [&'static str]) -> FieldSchema {
        FieldSchema {
            name: "command",
            rust_type: "&str",
            disposition: Disposition::Value,
            description: "The command that ran.",
            shape: Shape::Enum(names),
        }
    }

    /// `duration_ms`.
    pub const DURATION: FieldSchema = FieldSchema {
        name: "duration_ms",
        rust_type: "Duration",
        disposition: Disposition::Value,
        description: "How long it ran, from its start to its end.",
        shape: Shape::Milliseconds,
    };

    /// `outcome`.
    pub const OUTCOME: FieldSchema = FieldSchema {
        name: "outcome",
        rust_type: "&str",
        disposition: Disposition::Value,
        description: "How it ended: `ok`, `error` (it returned an `Err`, or an `ExitCode` other than success), `panic`, or `cancelled` (an `async` call dropped before it finished).",
        shape: Shape::Enum(&["ok", "error", "panic", "cancelled"]),
    };

    /// `error_type`.
    pub const ERROR_TYPE: FieldSchema = FieldSchema {
        name: "error_type",
        rust_type: "&str",
        disposition: Disposition::Value,
        description: "The Rust type of the error it returned (`std::any::type_name`); null unless the outcome is `error` with a `Result`.",
        shape: Shape::Nullable(&Shape::String),
    };

    /// `error_message`, when the attribute asks for it.
    pub const fn error_message(max_len: usize) -> FieldSchema {
        FieldSchema {
            name: "error_message",
            rust_type: "impl Display",
            disposition: Disposition::Scrub { max_len },
            description: "The error's message, scrubbed of paths, addresses and tokens; null unless it returned an `Err`.",
            shape: Shape::Nullable(&Shape::String),
        }
    }

    /// `error_message_truncated`.
    pub const ERROR_MESSAGE_TRUNCATED: FieldSchema = FieldSchema {
        name: "error_message_truncated",
        rust_type: "bool",
        disposition: Disposition::Truncated,
        description: "Whether `error_message` was cut.",
        shape: Shape::Boolean,
    };
}
