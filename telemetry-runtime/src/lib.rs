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
