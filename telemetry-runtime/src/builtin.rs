//! What the library itself sends: the application's start, stop and panics, its report of
//! dropped events, and the properties added to every event. All are described with the derive, so
//! `telemetry schema` lists them beside the application's events.

use std::time::Duration;

use crate::json::JsonBuf;
use crate::schema::Shape;
use crate::{HashKey, TelemetryEvent, TelemetryValue};

/// Text the library itself writes from a fixed vocabulary or a random id: described as a
/// string sent as is. Only used to describe [`EveryEvent`].
struct Text(&'static str);

impl TelemetryValue for Text {
    const __SHAPE: Shape = Shape::String;

    fn __write_json(&self, out: &mut JsonBuf, _: &HashKey) {
        out.string(self.0);
    }
}

/// Text the library has made safe to send itself (a source path cut to the part that names no
/// one) or that comes from the application's code (a function's name): described as a string
/// sent as is.
pub(crate) struct Sanitized<'a>(pub &'a str);

impl TelemetryValue for Sanitized<'_> {
    const __SHAPE: Shape = Shape::String;

    fn __write_json(&self, out: &mut JsonBuf, _: &HashKey) {
        out.string(self.0);
    }
}

/// Telemetry started and is not off. Sent once per process, as its first event, unless the
/// application turned lifecycle events off.
#[derive(TelemetryEvent)]
#[telemetry(crate = crate)]
pub(crate) struct AppStarted {
    /// Whether this run created the installation id: the first run with telemetry on in this
    /// state directory, or the first after `telemetry reset` or after the saved id was found
    /// corrupt. False when the identity is temporary (the state directory cannot be used).
    pub first_run: bool,
}

/// The application stopped cleanly: it called `Telemetry::shutdown`, or dropped the telemetry
/// guard other than while panicking. Sent at most once per process, and never when the
/// application turned lifecycle events off. A process that panics, is killed or calls
/// `std::process::exit` without shutting down sends none.
#[derive(TelemetryEvent)]
#[telemetry(crate = crate)]
pub(crate) struct AppStopped {
    /// How long telemetry ran in this process, from its start to the stop.
    #[telemetry(rename = "uptime_ms")]
    pub uptime: Duration,
    /// Panics the panic hook saw while telemetry ran, including those beyond the first 16,
    /// which are not sent as `app_fatal`; 0 without the hook.
    pub panics: u64,
}

/// A thread panicked. Sent by the panic hook (`install_panic_hook`) for each of the first 16
/// panics of a process, whether or not the panic ends it; later ones are only counted, in
/// `app_stopped`. Not sent for a panic the library caught in its own code.
#[derive(TelemetryEvent)]
#[telemetry(crate = crate)]
pub(crate) struct AppFatal<'a> {
    /// The program that panicked: its file name when it is the application's name or that of
    /// one of its helpers (`jobs`, `jobs-worker`), else the application's name; never the
    /// directory it was run from.
    #[scrub(max_len = 64)]
    pub process: Option<&'a str>,
    /// The name of the thread that panicked, scrubbed; null when it has none.
    #[scrub(max_len = 64)]
    pub thread: Option<&'a str>,
    /// The source file of the panic. A path relative to the package (`src/main.rs`) is sent
    /// as is; of an absolute path only the part that names no one: `<crate>-<version>/...` for
    /// a crate from a registry, what follows the revision for a git dependency, `library/...`
    /// for the standard library, else from its last `src` directory on, else only the file
    /// name. Null when unknown.
    pub file: Option<Sanitized<'a>>,
    /// The line of the panic, or null.
    pub line: Option<u32>,
    /// The column of the panic, or null.
    pub column: Option<u32>,
    /// The command of the innermost `#[instrument_command]` call running on the thread, or
    /// null.
    pub command: Option<Sanitized<'static>>,
    /// The name of the function of that call, or null.
    pub function: Option<Sanitized<'static>>,
    /// The panic's message, scrubbed; `Box<dyn Any>` when it is not text.
    #[scrub(max_len = 200)]
    pub message: &'a str,
}

/// Events the library dropped before they reached its background thread (the queue was full,
/// or an event could not be encoded or was too large), reported with the next batch so that
/// the loss is visible. Counts since the previous report.
#[derive(TelemetryEvent)]
#[telemetry(crate = crate)]
pub(crate) struct TelemetryDropped {
    /// Events dropped since the previous report.
    pub dropped: u64,
    /// Of all drops so far: the queue to the background thread was full.
    pub queue_full: u64,
    /// Of all drops so far: an event could not be encoded.
    pub unencodable: u64,
    /// Of all drops so far: an event was larger than the limit.
    pub too_large: u64,
}

/// Sent with every event, besides `$lib`, `$lib_version`, `$app_name`, `$app_version`,
/// `$process_person_profile` (false: no person profiles), `$geoip_disable` (true) and `$ip`
/// (`0.0.0.0`, unless the application turned masking off). Never the host name, user name, home
/// or working directory, or IP address.
#[derive(TelemetryEvent)]
#[telemetry(crate = crate, nested)]
#[allow(dead_code)] // Only its schema is used; the pipeline writes these properties directly.
pub(crate) struct EveryEvent {
    /// The random id of this installation, kept in the state directory.
    installation_id: Text,
    /// A random id of this process, new at every start.
    instance_id: Text,
    /// Whether the process runs under CI.
    ci: bool,
    /// The CI service (`github-actions`, `gitlab`, ..., or `unknown`); null outside CI.
    ci_provider: Option<Text>,
    /// The operating system's name (`NAME` in os-release, else `Linux`, `macOS`, `Windows`, ...).
    os_name: Text,
    /// The operating system's version (`VERSION_ID` in os-release), or null.
    os_version: Option<Text>,
    /// The distribution's id (`ID` in os-release), or null.
    os_id: Option<Text>,
    /// The distributions it derives from (`ID_LIKE` in os-release), or null.
    os_id_like: Option<Text>,
    /// The kernel's name (`Linux`, ...).
    kernel_name: Text,
    /// The kernel's release, or null.
    kernel_release: Option<Text>,
    /// The CPU architecture (`x86_64`, `aarch64`, ...).
    arch: Text,
    /// The hypervisor (`kvm`, `qemu`, `vmware`, `xen`, `hyper-v`, ...), `none` or `unknown`.
    virtualization: Text,
    /// The container runtime (`docker`, `podman`, `kubernetes`, `lxc`, ...) or `none`.
    container: Text,
    /// `container` or `local`.
    environment: Text,
    /// The number of CPUs the process may use.
    cpu_count: u64,
    /// The total memory, in a coarse bucket such as `8-16 GiB`.
    memory: Text,
    /// The version of the Rust compiler the application was built with.
    rustc_version: Text,
}

/// The schema of the properties sent with every event.
pub(crate) fn every_event() -> &'static crate::schema::EventSchema {
    <EveryEvent as TelemetryEvent>::SCHEMA
}

/// Whether `name` is a property the library sends with every event (`$`-names aside).
pub(crate) const fn is_common(name: &str) -> bool {
    let fields = <EveryEvent as TelemetryEvent>::SCHEMA.fields;
    let mut at = 0;
    while at < fields.len() {
        if same(fields[at].name, name) {
            return true;
        }
        at += 1;
    }
    false
}

const fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut at = 0;
    while at < a.len() {
        if a[at] != b[at] {
            return false;
        }
        at += 1;
    }
    true
}

/// Fails compilation with `message` when an event's property `name` is one the library sends
/// with every event, which would silently replace it.
#[doc(hidden)]
pub const fn check_property(name: &str, message: &str) {
    if is_common(name) {
        panic!("{}", message);
    }
}

/// Fails compilation with `message` when a flattened event sends a property that is already
/// taken: by the event it is flattened into (`taken`), by another flattened event (`others`),
/// or by the library itself.
#[doc(hidden)]
pub const fn check_flattened(
    schema: &crate::schema::EventSchema,
    taken: &[&str],
    others: &[&crate::schema::EventSchema],
    message: &str,
) {
    let fields = schema.fields;
    let mut at = 0;
    while at < fields.len() {
        let field = &fields[at];
        if let (crate::schema::Disposition::Flatten, crate::schema::Shape::Object(inner)) =
            (field.disposition, field.shape)
        {
            check_flattened(inner, taken, others, message);
        } else {
            let name = field.name;
            let mut clash = is_common(name);
            let mut t = 0;
            while t < taken.len() {
                clash |= same(taken[t], name);
                t += 1;
            }
            let mut o = 0;
            while o < others.len() {
                clash |= sends(others[o], name);
                o += 1;
            }
            if clash {
                panic!("{}", message);
            }
        }
        at += 1;
    }
}

/// Whether `schema` sends a property `name` at its top level (through flattening too).
const fn sends(schema: &crate::schema::EventSchema, name: &str) -> bool {
    let fields = schema.fields;
    let mut at = 0;
    while at < fields.len() {
        let field = &fields[at];
        let found = match (field.disposition, field.shape) {
            (crate::schema::Disposition::Flatten, crate::schema::Shape::Object(inner)) => {
                sends(inner, name)
            }
            _ => same(field.name, name),
        };
        if found {
            return true;
        }
        at += 1;
    }
    false
}
