//! What the library itself sends: its report of dropped events, and the properties added to
//! every event. Both are described with the derive, so `telemetry schema` lists them beside the
//! application's events.

use crate::TelemetryEvent;

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
    #[plain]
    installation_id: &'static str,
    /// A random id of this process, new at every start.
    #[plain]
    instance_id: &'static str,
    /// Whether the process runs under CI.
    ci: bool,
    /// The CI service (`github-actions`, `gitlab`, ..., or `unknown`); only under CI.
    #[plain]
    ci_provider: Option<&'static str>,
    /// The operating system's name (`NAME` in os-release, else `Linux`, `macOS`, `Windows`, ...).
    #[plain]
    os_name: &'static str,
    /// The operating system's version (`VERSION_ID` in os-release), or null.
    #[plain]
    os_version: Option<&'static str>,
    /// The distribution's id (`ID` in os-release), or null.
    #[plain]
    os_id: Option<&'static str>,
    /// The distributions it derives from (`ID_LIKE` in os-release), or null.
    #[plain]
    os_id_like: Option<&'static str>,
    /// The kernel's name (`Linux`, ...).
    #[plain]
    kernel_name: &'static str,
    /// The kernel's release, or null.
    #[plain]
    kernel_release: Option<&'static str>,
    /// The CPU architecture (`x86_64`, `aarch64`, ...).
    #[plain]
    arch: &'static str,
    /// The hypervisor (`kvm`, `qemu`, `vmware`, `xen`, `hyper-v`, ...), `none` or `unknown`.
    #[plain]
    virtualization: &'static str,
    /// The container runtime (`docker`, `podman`, `kubernetes`, `lxc`, ...) or `none`.
    #[plain]
    container: &'static str,
    /// `container` or `local`.
    #[plain]
    environment: &'static str,
    /// The number of CPUs the process may use.
    cpu_count: u64,
    /// The total memory, in a coarse bucket such as `8-16 GiB`.
    #[plain]
    memory: &'static str,
    /// The version of the Rust compiler the application was built with.
    #[plain]
    rustc_version: &'static str,
}

/// The schema of the properties sent with every event.
pub(crate) fn every_event() -> &'static crate::schema::EventSchema {
    <EveryEvent as TelemetryEvent>::SCHEMA
}
