//! Anonymous product telemetry for Rust CLIs, daemons and servers.
//!
//! Describe each event as an ordinary struct and derive [`TelemetryEvent`]. Every field either
//! has a type that cannot carry personal data (numbers, flags, durations, value enums, nested
//! events) or a disposition that says what may leave the machine; anything else does not
//! compile:
//!
//! ```compile_fail
//! use telemetry_runtime::TelemetryEvent;
//!
//! #[derive(TelemetryEvent)]
//! struct Failed {
//!     message: String, // error: `String` could carry personal data, so it needs a disposition
//! }
//! ```
//!
//! ```
//! use telemetry_runtime::{HashKey, TelemetryEvent, TelemetryValue};
//!
//! #[derive(TelemetryValue)]
//! enum Outcome { Succeeded, Failed }
//!
//! /// A job finished.
//! #[derive(TelemetryEvent)]
//! struct JobFinished<'a> {
//!     /// The namespace, as a keyed hash: comparable, not readable.
//!     #[hash]
//!     namespace: &'a str,
//!     /// The image in clear when it is one of ours, else hashed.
//!     #[trusted_or_hash(prefixes = ["ghcr.io/acme/"])]
//!     image: &'a str,
//!     outcome: Outcome,
//!     /// What went wrong, without paths, addresses or tokens.
//!     #[scrub(max_len = 120)]
//!     error: Option<&'a str>,
//! }
//!
//! let event = JobFinished {
//!     namespace: "payroll",
//!     image: "ghcr.io/acme/worker:2",
//!     outcome: Outcome::Failed,
//!     error: Some("cannot open /home/alice/payroll.csv"),
//! };
//! let sent = telemetry_runtime::anonymize(&event, &HashKey::from_bytes([9; 32]))?.to_value();
//! assert_eq!(sent["image"], "ghcr.io/acme/worker:2");
//! assert_eq!(sent["outcome"], "failed");
//! assert_eq!(sent["error"], "cannot open <path>");
//! assert_eq!(sent["error_truncated"], false);
//! assert_eq!(sent["namespace"].as_str().unwrap().len(), 64);
//! # Ok::<(), telemetry_runtime::EncodeError>(())
//! ```
//!
//! The dispositions, and the types each accepts, are listed in [`dispositions`]. The schema of
//! every event linked into a binary is available at run time from [`schema`].

#![warn(missing_docs)]

// Lets the derives' generated code, which names `::telemetry_runtime`, work inside this crate.
extern crate self as telemetry_runtime;

mod builtin;
mod ci;
mod command;
mod config;
mod consent;
mod crash;
pub mod dispositions;
mod event;
mod hashing;
mod instrument;
mod json;
mod pipeline;
pub mod schema;
mod scrub;
mod spool;
mod state;
mod status;
mod sysinfo;
mod telemetry;
pub mod testing;
mod time;
mod upload;
mod worker;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

/// The README's examples, compiled and run as doc tests so that they stay true.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;

pub use command::{CommandError, TelemetryCommand, telemetry_command};
pub use consent::{CiPolicy, Decision, Mode, ParseModeError, Polarity, Source};
pub use crash::install_panic_hook;
pub use event::{EncodeError, Properties, TelemetryEvent, TelemetryValue, anonymize};
pub use hashing::HashKey;
pub use scrub::{Scrubbed, scrub};
pub use status::{IdentityState, Status};
pub use sysinfo::SystemInfo;
pub use telemetry::{
    Builder, DistinctId, Dropped, FirstRun, Stats, Telemetry, TelemetryGuard, capture, global,
    ignored_before_start,
};
/// Derives [`TelemetryEvent`](trait@TelemetryEvent) for a struct with named fields.
///
/// See the [crate documentation](crate) and [`dispositions`] for the attributes.
pub use telemetry_derive::TelemetryEvent;
/// Derives [`TelemetryValue`](trait@TelemetryValue) for an enum of unit variants, sent as the
/// variant's name in `snake_case` (or its `#[telemetry(rename = "...")]`).
pub use telemetry_derive::TelemetryValue;
/// Records one `command` event per call of a function: which command ran, how long it took
/// and how it ended, and only the arguments annotated to be sent.
///
/// ```
/// use telemetry_runtime::{instrument_command, TelemetryValue};
///
/// #[derive(TelemetryValue)]
/// enum Engine { Docker, Wasm }
///
/// #[derive(Debug)]
/// struct SubmitError;
///
/// #[instrument_command(name = "job submit", args(engine))]
/// fn submit(
///     #[hash] namespace: &str,  // a keyed hash
///     #[count] inputs: &[String], // how many
///     engine: Engine,             // as is: listed in `args`
///     spec: &str,                 // never sent: no annotation
/// ) -> Result<u32, SubmitError> {
///     let _ = (namespace, inputs, engine, spec);
///     Ok(7)
/// }
///
/// assert_eq!(submit("payroll", &[], Engine::Wasm, "{...}").unwrap(), 7);
/// ```
///
/// The event (`command` unless `event = "..."` says otherwise) has these properties, then the
/// arguments':
///
/// | Property | Sent |
/// | --- | --- |
/// | `command` | `name = "..."`, else the function's name |
/// | `duration_ms` | from the start of the call (its first poll, for `async`) to its end |
/// | `outcome` | `ok`; `error` for an `Err` or an `ExitCode` other than `SUCCESS`; `panic`; `cancelled` for a future dropped before it finished |
/// | `error_type` | the `Err`'s type (`std::any::type_name`), else null |
/// | `error_message`, `error_message_truncated` | only with `message` or `message(max_len = N)`: the `Err`'s `Display`, scrubbed like `#[scrub]` |
///
/// Arguments are sent only when annotated, with the dispositions of event fields and the same
/// compile-time check: `#[hash]`, `#[trusted_or_hash(...)]`, `#[count]`, `#[is_set]`,
/// `#[scrub]`, `#[plain]`, `#[telemetry]` (a `TelemetryEvent` whose properties are sent
/// flattened), or listed in `args(a, b)` to be sent as is, which only compiles for types that
/// cannot carry personal data. `#[telemetry(rename = "...")]` renames an argument's property.
/// `crate = path` names the runtime when it was renamed.
///
/// The function's signature, return value and panics are unchanged: a panic is recorded and
/// goes on unwinding. The outcome is read from the declared return type: a `Result` (or an
/// alias of one) or an `ExitCode`; any other type, a generic `R` included, counts as `ok`.
/// Arguments are encoded when the call begins (so the body may consume them), under the key of
/// the telemetry started first in the process (see [`capture`]); a call that begins before
/// telemetry is started sends no arguments. When telemetry is off, a call costs one atomic
/// load.
///
/// On `main`, telemetry is usually started inside the function. A guard dropped there delivers
/// what is pending at once, within the flush deadline, and leaves the final shutdown to the end
/// of the call, by the same deadline, so the `main` event is sent too (unless the process
/// exits first).
///
/// Limits: the body runs in a closure (sync) or an `async` block, so `#[track_caller]` on an
/// instrumented function no longer reaches into its body. The schema registry describes an
/// argument whose type mentions a generic parameter, `Self` or `impl Trait` by its disposition
/// alone; generic parameters of an enclosing `impl` are recognised by their usual names (one
/// capital letter, maybe with digits): in an `impl` generic over a longer name, an argument
/// whose type mentions it does not compile.
pub use telemetry_derive::instrument_command;
