//! Starting telemetry, capturing events and shutting down within a bound.

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::io::Write as _;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::ptr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

use crate::builtin::AppStarted;
use crate::config::{
    Endpoint, Env, Limits, MAX_DURATION, MAX_EVENT_BYTES, default_prefix, default_state_dir,
    proxy_for,
};
use crate::consent::{self, CiPolicy, Decision, Mode, Polarity, Rules, Source};
use crate::json::{JsonBuf, ObjectWriter};
use crate::pipeline::{Settings, Shared, after};
use crate::schema::EventSchema;
use crate::spool::Spool;
use crate::state::{Identity, check_writable, create_private_dir};
use crate::status::{IdentityState, Status};
use crate::{HashKey, TelemetryEvent};

/// A handle on a started telemetry pipeline, or on one that is off. Cheap to clone; every
/// clone captures into the same pipeline.
///
/// ```
/// use telemetry_runtime::{Mode, Telemetry, TelemetryEvent};
///
/// /// The tool started.
/// #[derive(TelemetryEvent)]
/// struct Started {
///     workers: u32,
/// }
///
/// let guard = Telemetry::builder("jobs", "1.2.0")
///     .api_key("phc_example")
///     .endpoint(option_env!("JOBS_TELEMETRY_ENDPOINT"))
///     .mode(Mode::Off) // as if the user had opted out
///     .start();
/// let telemetry = guard.handle();
/// telemetry.capture(&Started { workers: 4 });
/// assert_eq!(telemetry.mode(), Mode::Off);
/// ```
#[derive(Clone, Default)]
pub struct Telemetry {
    shared: Option<Arc<Shared>>,
    /// Why telemetry is off, when it is and was started by a builder.
    off: Option<Arc<Decided>>,
}

/// What was decided before anything was started.
#[derive(Debug)]
struct Decided {
    decision: Decision,
    state_dir: Option<PathBuf>,
    ci: Option<&'static str>,
}

/// Keeps telemetry running; dropping it shuts telemetry down within the flush deadline
/// ([`Builder::flush_deadline`]), spooling whatever was not delivered by then. Dropping it
/// other than while unwinding from a panic is a clean stop, which sends `app_stopped` (see
/// [`Builder::lifecycle_events`]).
///
/// Bind it to a named variable in `main` (`let _telemetry = ...`): `let _ = ...` would drop it,
/// and shut telemetry down, at once. `std::process::exit` skips destructors; call
/// [`Telemetry::shutdown`] before it.
#[must_use = "dropping the guard shuts telemetry down at once; bind it with `let _telemetry = ...`"]
pub struct TelemetryGuard {
    telemetry: Telemetry,
}

/// How many events went where. See [`Stats::pending`] for the accounting rule.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Events accepted by `capture` while running (including those then dropped).
    pub captured: u64,
    /// Events read back from the spool left by earlier processes.
    pub restored: u64,
    /// Events confirmed by the server, or appended to the local log in `local` mode.
    pub delivered: u64,
    /// Events written to the spool for a later process to send.
    pub spooled: u64,
    /// Events lost, by reason.
    pub dropped: Dropped,
    /// Calls to `capture` made before start or after shutdown: not events, and not counted
    /// anywhere else.
    pub ignored: u64,
}

/// Why events were dropped. Every drop is counted here; drops on the capturing side are also
/// reported upstream in a `telemetry_dropped` event with the next batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Dropped {
    /// The queue to the background thread was full.
    pub queue_full: u64,
    /// A `#[plain]` field could not be serialized, or its serialization panicked.
    pub unencodable: u64,
    /// The encoded event was larger than [`Builder::max_event_bytes`].
    pub too_large: u64,
    /// The server refused the batch for good (400, 401, 413 for a single event).
    pub rejected: u64,
    /// The spool (or local log) was full or could not be written.
    pub unstorable: u64,
    /// Spooled lines that were corrupt or older than the spool's age limit.
    pub discarded: u64,
}

impl Dropped {
    /// All drops.
    pub fn total(&self) -> u64 {
        self.queue_full
            + self.unencodable
            + self.too_large
            + self.rejected
            + self.unstorable
            + self.discarded
    }
}

impl Stats {
    /// Events neither delivered, dropped nor spooled yet. The accounting always satisfies
    /// `captured + restored == delivered + dropped.total() + spooled + pending()`, and after
    /// shutdown `pending()` is 0.
    pub fn pending(&self) -> u64 {
        (self.captured + self.restored)
            .saturating_sub(self.delivered + self.spooled + self.dropped.total())
    }
}

impl Telemetry {
    /// Starts configuring telemetry for the application `app` at `version`. `app` names the
    /// state directory and, upper-cased, the prefix of the environment variables
    /// (`jobs` → `JOBS_TELEMETRY`, `JOBS_TELEMETRY_ENDPOINT`, ...).
    pub fn builder(app: impl Into<String>, version: impl Into<String>) -> Builder {
        Builder {
            app: app.into(),
            version: version.into(),
            api_key: String::new(),
            endpoint: None,
            prefix: None,
            env: Env::Process,
            limits: Limits::default(),
            rules: Rules::default(),
            state_dir: None,
            debug: None,
            first_run: FirstRun::Hold,
            notice: None,
            command: None,
            distinct_id: Vec::new(),
            lifecycle: true,
            properties: None,
        }
    }

    /// A handle that captures nothing.
    pub fn off() -> Telemetry {
        Telemetry {
            shared: None,
            off: None,
        }
    }

    /// Anonymizes and encodes `event` on this thread, then queues it for upload without
    /// blocking. Never panics and never waits: if the queue is full the event is dropped and
    /// counted. Does nothing when telemetry is off. Inside
    /// [`testing::record`](crate::testing::record) the event is recorded instead.
    pub fn capture<E: TelemetryEvent + ?Sized>(&self, event: &E) {
        if crate::testing::capture(event) {
            return;
        }
        if let Some(shared) = &self.shared {
            shared.capture(event);
        }
    }

    /// Delivers everything pending, waiting at most `timeout`, and returns whether nothing is
    /// pending any more. Events still pending when it returns stay queued for the background
    /// thread; a batch that used up its attempts meanwhile is spooled, as it would be anyway.
    pub fn flush(&self, timeout: Duration) -> bool {
        self.shared
            .as_ref()
            .is_none_or(|shared| shared.flush(after(timeout)))
    }

    /// Stops accepting events, delivers what is pending for at most `deadline`, spools the
    /// rest and returns the final accounting. Later calls, and dropping the guard, do nothing.
    /// This is a clean stop: unless [`Builder::lifecycle_events`] turned them off, the first
    /// stop captures `app_stopped`, even when called while unwinding from a panic.
    pub fn shutdown(&self, deadline: Duration) -> Stats {
        if let Some(shared) = &self.shared {
            shared.shutdown(after(deadline), true);
        }
        self.stats()
    }

    /// The accounting so far.
    pub fn stats(&self) -> Stats {
        let Some(shared) = &self.shared else {
            return Stats::default();
        };
        let c = &shared.counters;
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        Stats {
            captured: get(&c.captured),
            restored: get(&c.restored),
            delivered: get(&c.delivered),
            spooled: get(&c.spooled),
            dropped: Dropped {
                queue_full: get(&c.queue_full),
                unencodable: get(&c.unencodable),
                too_large: get(&c.too_large),
                rejected: get(&c.rejected),
                unstorable: get(&c.unstorable),
                discarded: get(&c.discarded),
            },
            ignored: get(&c.ignored),
        }
    }

    /// What telemetry does in this process.
    pub fn mode(&self) -> Mode {
        self.shared
            .as_ref()
            .map_or(Mode::Off, |shared| shared.settings.mode)
    }

    /// The URL events are uploaded to, or `None` when nothing is uploaded.
    pub fn endpoint(&self) -> Option<&str> {
        let shared = self.shared.as_ref()?;
        match shared.settings.mode {
            Mode::On => shared
                .settings
                .endpoint
                .as_ref()
                .map(|e| e.batch_url.as_str()),
            _ => None,
        }
    }

    /// The state directory in use, or `None` if it could not be used (the identity is then
    /// ephemeral and nothing is spooled).
    pub fn state_dir(&self) -> Option<&Path> {
        self.shared.as_ref()?.settings.state_dir.as_deref()
    }

    /// The anonymous installation id events are sent under (`distinct_id`).
    pub fn installation_id(&self) -> Option<&str> {
        Some(&self.shared.as_ref()?.settings.identity.installation_id)
    }

    /// Whether the pipeline is still accepting events.
    pub fn is_running(&self) -> bool {
        self.shared.as_ref().is_some_and(|shared| shared.is_open())
    }

    /// What telemetry does in this process and why, who it sends as, and what is pending.
    pub fn status(&self) -> Status {
        if let Some(shared) = &self.shared {
            let settings = &shared.settings;
            // Files this process claimed are already counted as restored.
            let on_disk = shared
                .spool
                .as_ref()
                .map_or(0, |spool| spool.count_events(false));
            return Status {
                mode: settings.mode,
                decision: settings.decision.clone(),
                installation_id: Some(settings.identity.installation_id.clone()),
                identity: match &settings.state_problem {
                    None => IdentityState::Saved,
                    Some(reason) => IdentityState::Temporary {
                        reason: reason.clone(),
                    },
                },
                state_dir: settings.state_dir.clone(),
                state_problem: shared.spool.as_ref().and_then(Spool::problem).or_else(|| {
                    shared
                        .local_log
                        .as_ref()
                        .and_then(crate::state::LocalLog::problem)
                }),
                endpoint: self.endpoint().map(str::to_owned),
                pending: self.stats().pending() + on_disk,
                ci: settings.ci,
                holding: settings.hold,
            };
        }
        let (decision, state_dir, ci) = match &self.off {
            Some(decided) => (
                decided.decision.clone(),
                decided.state_dir.clone(),
                decided.ci,
            ),
            None => (Decision::off_by_application(), None, None),
        };
        Status::off(decision, state_dir, ci)
    }
}

impl fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Telemetry")
            .field("mode", &self.mode())
            .field("endpoint", &self.endpoint())
            .field("running", &self.is_running())
            .finish_non_exhaustive()
    }
}

impl TelemetryGuard {
    /// A handle on the same pipeline, to keep or pass around.
    pub fn handle(&self) -> Telemetry {
        self.telemetry.clone()
    }
}

impl Deref for TelemetryGuard {
    type Target = Telemetry;

    fn deref(&self) -> &Telemetry {
        &self.telemetry
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(shared) = &self.telemetry.shared {
            // Dropped by a panic's unwinding, the process is failing: no `app_stopped`.
            let clean = !std::thread::panicking();
            let mut until = after(shared.settings.limits.flush_deadline);
            if !clean && let Some(hook) = shared.panics.flush_until(shared.started) {
                // The panic hook has waited for delivery already; what is left is spooled
                // when its wait ends, not after a second deadline.
                until = until.min(hook);
            }
            if !crate::instrument::defer_shutdown(shared, until) {
                shared.shutdown(until, clean);
            }
        }
    }
}

impl fmt::Debug for TelemetryGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("TelemetryGuard")
            .field(&self.telemetry)
            .finish()
    }
}

/// Configures and starts telemetry. Every setting has a default; the environment variables
/// named below use the prefix from [`Builder::env_prefix`].
#[derive(Debug)]
#[must_use = "call `.start()` to start telemetry"]
pub struct Builder {
    app: String,
    version: String,
    api_key: String,
    endpoint: Option<String>,
    prefix: Option<String>,
    env: Env,
    limits: Limits,
    rules: Rules,
    state_dir: Option<PathBuf>,
    debug: Option<bool>,
    first_run: FirstRun,
    notice: Option<String>,
    command: Option<String>,
    distinct_id: Vec<DistinctId>,
    lifecycle: bool,
    properties: Option<AppProperties>,
}

/// The application's properties sent with every event ([`Builder::properties`]).
struct AppProperties {
    schema: &'static EventSchema,
    write: Box<WriteProperties>,
}

/// Writes an event's properties under a key.
type WriteProperties = dyn Fn(&mut ObjectWriter<'_>, &HashKey) + Send + Sync;

impl AppProperties {
    /// The properties under `key`, as the inside of a JSON object; nothing when they cannot
    /// be encoded or would replace one of the library's.
    fn encode(&self, key: &HashKey, app: &str) -> String {
        let mut names = Vec::new();
        property_names(self.schema.fields, &mut names);
        if let Some(clash) = names
            .iter()
            .find(|name| name.starts_with('$') || crate::builtin::is_common(name))
        {
            log::error!(
                "{app} telemetry does not send the properties of `{}` with every event: \
                 `{clash}` is one of the library's own",
                self.schema.rust_type
            );
            return String::new();
        }
        let mut buf = JsonBuf::new();
        let mut object = buf.object();
        (self.write)(&mut object, key);
        object.end();
        match buf.finish() {
            Ok(bytes) => {
                let text = String::from_utf8(bytes).expect("the encoder writes UTF-8");
                text[1..text.len() - 1].to_owned()
            }
            Err(error) => {
                log::error!(
                    "{app} telemetry does not send the properties of `{}` with every event: {error}",
                    self.schema.rust_type
                );
                String::new()
            }
        }
    }
}

/// The names of the properties `fields` send, flattened events expanded.
fn property_names(fields: &'static [crate::schema::FieldSchema], out: &mut Vec<&'static str>) {
    for field in fields {
        match field.shape.object() {
            Some(inner) if field.disposition == crate::schema::Disposition::Flatten => {
                property_names(inner.fields, out);
            }
            _ => out.push(field.name),
        }
    }
}

impl fmt::Debug for AppProperties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.schema.rust_type)
    }
}

/// What the first run with telemetry on does. It applies when telemetry is on by default;
/// a user who turned it on explicitly (a variable, `telemetry enable`, a flag) has no need
/// of the notice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum FirstRun {
    /// Print the notice once, and keep the events of that run in the spool: the next run sends
    /// them, unless the user opted out meanwhile (then they are deleted unsent). What a first
    /// run holds is bounded by the spool's size ([`Builder::spool_limits`]); events beyond it
    /// are dropped and counted. A first run that cannot record that the notice was shown (the
    /// state directory is not writable) would hold forever, so it sends and records nothing.
    #[default]
    Hold,
    /// Print the notice once, and send as usual.
    Notify,
    /// Print nothing, and send as usual.
    Silent,
}

/// A candidate for the `distinct_id` events are sent under; see [`Builder::distinct_id`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DistinctId {
    /// An id the application supplies, sent as is (for example an account or network id the
    /// application generated at random). Empty strings are skipped.
    Value(String),
    /// The installation id, when it is saved in the state directory (not a temporary one).
    Installation,
    /// The id of this process, new at every start.
    Instance,
}

impl Builder {
    /// The PostHog project API key (`phc_...`). It is sent with every batch; it only allows
    /// sending events, so it is not a secret.
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = key.into();
        self
    }

    /// The PostHog instance to upload to, usually compiled in with
    /// `option_env!("JOBS_TELEMETRY_ENDPOINT")`: its origin (`https://eu.i.posthog.com`) or its
    /// `/batch/` URL. `None` (the default) uploads nothing; events go to the local log. The
    /// `PREFIX_TELEMETRY_ENDPOINT` variable overrides it at run time. `http://` is refused
    /// except to loopback addresses.
    pub fn endpoint(mut self, url: Option<&str>) -> Self {
        self.endpoint = url.map(str::to_owned);
        self
    }

    /// The prefix of the environment variables. Default: the app name upper-cased, with
    /// anything but letters and digits replaced by `_` (`cua-bench` → `CUA_BENCH`).
    pub fn env_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = Some(prefix.into());
        self
    }

    /// The mode the application decided (for example from a `--no-telemetry` flag). Any
    /// opt-out elsewhere (`DO_NOT_TRACK`, `PREFIX_TELEMETRY=off`, ...) still wins over `On`.
    pub fn mode(mut self, mode: Mode) -> Self {
        self.rules.explicit = Some(mode);
        self
    }

    /// The mode when nothing else decides. Default: [`Mode::On`].
    pub fn default_mode(mut self, mode: Mode) -> Self {
        self.rules.default = Some(mode);
        self
    }

    /// Also read the variable `name`, with its polarity: `opt_out_var("JOBS_DISABLEANALYTICS",
    /// Polarity::Disables)`, `opt_out_var("BENCH_TELEMETRY_ENABLED", Polarity::Enables)`,
    /// `opt_out_var("DISABLE_TELEMETRY", Polarity::AnyValueDisables)`.
    pub fn opt_out_var(mut self, name: impl Into<String>, polarity: Polarity) -> Self {
        self.rules.variables.push((name.into(), polarity));
        self
    }

    /// Telemetry is off while `path` exists (for example
    /// `<config dir>/.opt-out-from-anonymous-statistics`).
    pub fn opt_out_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.rules.opt_out_files.push(path.into());
        self
    }

    /// A setting the application read from its own configuration, as written there, with its
    /// polarity; `what` names it in `status` (`"disableanalytics in ~/.jobs/config.yaml"`).
    /// A value that cannot be read turns telemetry off.
    pub fn config_value(
        mut self,
        what: impl Into<String>,
        value: impl Into<String>,
        polarity: Polarity,
    ) -> Self {
        self.rules
            .app_config
            .push((what.into(), value.into(), polarity));
        self
    }

    /// What to do under CI. Default: [`CiPolicy::Off`].
    pub fn ci_policy(mut self, policy: CiPolicy) -> Self {
        self.rules.ci = policy;
        self
    }

    /// What the first run does: hold its events until the next run (the default), send them,
    /// or also skip the notice.
    pub fn first_run(mut self, first_run: FirstRun) -> Self {
        self.first_run = first_run;
        self
    }

    /// The first-run notice, replacing the built-in text.
    pub fn notice(mut self, text: impl Into<String>) -> Self {
        self.notice = Some(text.into());
        self
    }

    /// How users run the telemetry subcommand, named in the first-run notice. Default:
    /// `<app> telemetry`.
    pub fn command_name(mut self, command: impl Into<String>) -> Self {
        self.command = Some(command.into());
        self
    }

    /// The order in which to pick the `distinct_id`: the first available candidate wins, and
    /// if none is, the installation id (temporary or not) is used. Default: the installation
    /// id. Bacalhau's order, for example, is an account id, a network id, the installation
    /// and the instance.
    pub fn distinct_id(mut self, order: impl IntoIterator<Item = DistinctId>) -> Self {
        self.distinct_id = order.into_iter().collect();
        self
    }

    /// Send `app_started` when telemetry starts (unless it is off), and `app_stopped` when it
    /// stops cleanly: at [`Telemetry::shutdown`], or when the guard is dropped other than while
    /// unwinding from a panic. Each is sent at most once per process; `telemetry schema` shows
    /// what they carry. Default: `true`. Panics are reported by
    /// [`install_panic_hook`](crate::install_panic_hook), whatever this says.
    pub fn lifecycle_events(mut self, on: bool) -> Self {
        self.lifecycle = on;
        self
    }

    /// Properties sent with every event, after the library's own: the fields of `properties`,
    /// a struct that derives [`TelemetryEvent`] (usually `#[telemetry(nested)]`, so it is not
    /// listed as an event), with their dispositions. They are encoded once, when telemetry
    /// starts, under the installation's key, so `#[hash]` fields hash as in any event. For
    /// example the attributes of the node a scheduler runs on: its type, and its name as a
    /// keyed hash. `telemetry schema` lists them under "Sent with every event".
    ///
    /// A property named like one of the library's (`installation_id`, `os_name`, `$...`), or a
    /// `#[plain]` field that cannot be serialized, would be ambiguous or fail every event: the
    /// whole set is then left out, with an error on the log.
    pub fn properties<E: TelemetryEvent + Send + Sync + 'static>(mut self, properties: E) -> Self {
        self.properties = Some(AppProperties {
            schema: E::SCHEMA,
            write: Box::new(move |object, key| properties.__write_fields(object, key)),
        });
        self
    }

    /// The schema of the properties given to [`Builder::properties`], if any.
    pub(crate) fn properties_schema(&self) -> Option<&'static EventSchema> {
        self.properties.as_ref().map(|properties| properties.schema)
    }

    /// The state directory (identity, key, spool, local log). Default: `PREFIX_TELEMETRY_DIR`,
    /// else `<config dir>/<app>/telemetry`, the config directory being `$XDG_CONFIG_HOME` when
    /// set, else the platform's.
    pub fn state_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.state_dir = Some(dir.into());
        self
    }

    /// Print every payload to stderr, pretty-printed, exactly as it is sent or logged.
    /// Default: whether `PREFIX_TELEMETRY_DEBUG` is set to something other than `0`/`false`.
    pub fn debug(mut self, on: bool) -> Self {
        self.debug = Some(on);
        self
    }

    /// Read the variables this library consults (`PREFIX_TELEMETRY*`, `DO_NOT_TRACK`,
    /// `XDG_CONFIG_HOME`, `HOME`, the proxy variables) from `vars` instead of the process
    /// environment. For tests, and for applications that run with a sanitized environment.
    pub fn environment<I, K, V>(mut self, vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let map: HashMap<String, String> = vars
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        self.env = Env::Map(map);
        self
    }

    /// The most events per request. Default: 500: under load, a fifth of the requests that
    /// batches of 100 would take, and still far below the 20 MB PostHog accepts per batch.
    pub fn batch_size(mut self, events: usize) -> Self {
        self.limits.batch_size = events.max(1);
        self
    }

    /// How long an event may wait for a full batch before it is sent anyway. Default: 3 s.
    /// Durations given to this builder are capped at one day.
    pub fn flush_interval(mut self, interval: Duration) -> Self {
        self.limits.flush_interval = interval.min(MAX_DURATION);
        self
    }

    /// How many events may wait between `capture` and the background thread; more are
    /// dropped and counted. It also bounds the events held in memory while the endpoint is
    /// failing (older ones are spooled). At most 1,000,000. Default: 10,000.
    pub fn queue_capacity(mut self, events: usize) -> Self {
        self.limits.queue_capacity = events.clamp(1, 1_000_000);
        self
    }

    /// The TCP (and proxy) connect timeout. Default: 1 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.limits.connect_timeout = timeout.min(MAX_DURATION);
        self
    }

    /// The most one request may take, from DNS to the end of the response. Default: 5 s.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.limits.request_timeout = timeout.min(MAX_DURATION);
        self
    }

    /// How long dropping the guard may wait for delivery before spooling what is left, and how
    /// long the panic hook ([`install_panic_hook`](crate::install_panic_hook)) may wait for its
    /// event to be delivered. Default: 300 ms.
    pub fn flush_deadline(mut self, deadline: Duration) -> Self {
        self.limits.flush_deadline = deadline.min(MAX_DURATION);
        self
    }

    /// Attempts per batch before it is spooled for a later process. Default: 5.
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.limits.max_attempts = attempts.max(1);
        self
    }

    /// The backoff between attempts: the n-th retry waits between half and all of
    /// `base · 2^(n-1)`, at most `max`, and never less than the server's `Retry-After`.
    /// Default: 500 ms, 30 s.
    pub fn backoff(mut self, base: Duration, max: Duration) -> Self {
        self.limits.backoff_base = base.min(MAX_DURATION);
        self.limits.backoff_max = max.max(base).min(MAX_DURATION);
        self
    }

    /// Bodies of at least this many bytes are sent gzip-compressed. Default: 1024.
    pub fn gzip_threshold(mut self, bytes: usize) -> Self {
        self.limits.gzip_threshold = bytes;
        self
    }

    /// Send `"$ip": "0.0.0.0"`, so PostHog does not store the sender's address with the event.
    /// Default: `true`. With `false`, PostHog records the address the request came from,
    /// unless the project discards client IPs.
    pub fn mask_ip(mut self, mask: bool) -> Self {
        self.limits.mask_ip = mask;
        self
    }

    /// The spool's limits: events beyond `max_bytes` are dropped (the oldest are kept), and
    /// spool files older than `max_age` are discarded unsent. Default: 4 MiB, 7 days.
    pub fn spool_limits(mut self, max_bytes: u64, max_age: Duration) -> Self {
        self.limits.spool_max_bytes = max_bytes;
        self.limits.spool_max_age = max_age.min(Duration::from_secs(100 * 365 * 24 * 3600));
        self
    }

    /// The local log's size: when full it is renamed to `events.1.jsonl` (replacing the
    /// previous one) and started afresh. Default: 1 MiB.
    pub fn local_log_limit(mut self, bytes: u64) -> Self {
        self.limits.local_log_max_bytes = bytes;
        self
    }

    /// Events whose encoded properties exceed this are dropped and counted. At most 900 KB,
    /// since PostHog refuses a whole batch when one event in it is above about 1 MB.
    /// Default: 32 KiB.
    pub fn max_event_bytes(mut self, bytes: usize) -> Self {
        self.limits.max_event_bytes = bytes.min(MAX_EVENT_BYTES);
        self
    }

    /// The most bytes of events held in memory while the endpoint is slow or failing; older
    /// events beyond it are spooled. It also bounds the queued events whose recorded inputs
    /// exceed `max_event_bytes` (a large value behind `#[hash]` or `#[scrub]` whose JSON still
    /// fits): more of them are dropped as if the queue were full. At least 4 MiB, the largest
    /// request. Default: 16 MiB.
    pub fn max_buffer_bytes(mut self, bytes: usize) -> Self {
        self.limits.max_buffer_bytes = bytes.max(self.limits.max_batch_bytes);
        self
    }

    /// Decides the mode and starts telemetry. Nothing is written, started or opened when the
    /// mode is off. Otherwise the state directory and identity are created if missing; the
    /// background thread starts with the first event (`app_started`, unless
    /// [`lifecycle_events`](Builder::lifecycle_events) turned it off), or now if the spool
    /// holds events from an earlier process. The first telemetry started in a process that is not off also serves
    /// the global [`capture`](crate::capture), for the rest of the process.
    pub fn start(self) -> TelemetryGuard {
        let telemetry = self.start_handle();
        install_global(&telemetry);
        TelemetryGuard { telemetry }
    }

    /// What telemetry would do if started now, and why, without starting it or writing
    /// anything: what `telemetry status` prints.
    pub fn status(&self) -> Status {
        let decided = self.decide();
        if decided.decision.mode == Mode::Off {
            return Status::off(decided.decision, decided.state_dir, decided.ci);
        }
        let endpoint = match self.endpoint_and_proxy(false) {
            (Some(endpoint), _) if decided.decision.mode == Mode::On => Some(endpoint.batch_url),
            _ => None,
        };
        let mode = running_mode(decided.decision.mode, endpoint.is_some());
        let state_dir = decided.state_dir;
        let installation_id = state_dir
            .as_deref()
            .and_then(Identity::read_installation_id);
        let unusable = match &state_dir {
            Some(dir) => unusable_dir(dir),
            None => Some("no state directory could be determined (HOME is not set)".to_owned()),
        };
        let first_run = self.first_run == FirstRun::Hold
            && self.notice_due(
                &decided.decision,
                decided.ci.is_some(),
                mode,
                state_dir.as_deref(),
            );
        if let (true, Some(problem)) = (first_run, &unusable) {
            // As `start` would find.
            let decision = decided.decision.notice_unrecorded(problem);
            return Status::off(decision, state_dir, decided.ci);
        }
        let pending = match (&state_dir, mode) {
            (Some(dir), Mode::On) => Spool::in_state_dir(dir).count_events(true),
            _ => 0,
        };
        Status {
            mode,
            decision: decided.decision,
            identity: match (unusable, &installation_id) {
                (Some(reason), _) => IdentityState::Temporary { reason },
                (None, Some(_)) => IdentityState::Saved,
                (None, None) => IdentityState::NotCreated,
            },
            installation_id,
            state_dir,
            state_problem: None,
            endpoint,
            pending,
            ci: decided.ci,
            holding: first_run,
        }
    }

    /// The prefix of the environment variables.
    pub(crate) fn prefix(&self) -> String {
        self.prefix
            .clone()
            .unwrap_or_else(|| default_prefix(&self.app))
    }

    /// The state directory, whether or not it exists.
    pub(crate) fn state_dir_path(&self) -> Option<PathBuf> {
        self.state_dir
            .clone()
            .or_else(|| default_state_dir(&self.app, &self.prefix(), &self.env))
    }

    /// What decides the mode when the saved choice is left out: an opt-out here overrides
    /// any choice `telemetry enable` or `local` could save.
    pub(crate) fn decide_without_choice(&self) -> Decision {
        consent::decide(
            &self.env,
            &self.prefix(),
            &self.rules,
            None,
            crate::ci::detect(&self.env),
        )
    }

    fn decide(&self) -> Decided {
        let state_dir = self.state_dir_path();
        let ci = crate::ci::detect(&self.env);
        let decision = consent::decide(
            &self.env,
            &self.prefix(),
            &self.rules,
            state_dir.as_deref(),
            ci,
        );
        Decided {
            decision,
            state_dir,
            ci,
        }
    }

    /// Whether this run is the first with telemetry on by default, whose notice is due. Not
    /// when someone turned telemetry on explicitly, and not under CI: nobody reads the notice
    /// there, and no next run comes.
    fn notice_due(&self, decided: &Decision, ci: bool, mode: Mode, dir: Option<&Path>) -> bool {
        mode == Mode::On
            && self.first_run != FirstRun::Silent
            && decided.source == Source::Default
            && !ci
            // Whatever is at the marker's name counts, and is not followed: a dangling link
            // must not make every run a first run that holds its events.
            && !dir.is_some_and(|dir| {
                fs::symlink_metadata(dir.join(crate::state::NOTICE_FILE)).is_ok()
            })
    }

    /// The endpoint (`PREFIX_TELEMETRY_ENDPOINT`, else the compiled-in one) and its proxy;
    /// no endpoint when either is invalid. With `warn`, says why on the log.
    fn endpoint_and_proxy(&self, warn: bool) -> (Option<Endpoint>, Option<ureq::Proxy>) {
        let prefix = self.prefix();
        let text = self
            .env
            .text(&format!("{prefix}_TELEMETRY_ENDPOINT"))
            .or_else(|| self.endpoint.clone());
        let Some(text) = text else {
            return (None, None);
        };
        let endpoint = match Endpoint::parse(&text) {
            Ok(endpoint) => endpoint,
            Err(error) => {
                if warn {
                    log::warn!("{} telemetry will not upload: {error}", self.app);
                }
                return (None, None);
            }
        };
        match proxy_for(&endpoint, &self.env) {
            None => (Some(endpoint), None),
            Some(url) => match ureq::Proxy::new(&url) {
                Ok(proxy) => (Some(endpoint), Some(proxy)),
                Err(error) => {
                    // Going around a proxy the user set up could break their network policy.
                    if warn {
                        log::warn!(
                            "{} telemetry will not upload: the proxy setting is invalid ({error})",
                            self.app
                        );
                    }
                    (None, None)
                }
            },
        }
    }

    fn start_handle(self) -> Telemetry {
        let decided = self.decide();
        let decision = decided.decision.clone();
        log::debug!("{} telemetry is {decision}", self.app);
        if decision.mode != Mode::On
            && let Some(dir) = &decided.state_dir
        {
            // Events waiting for upload are only ever sent by a run that may upload: after an
            // opt-out, even for one run, they are deleted unsent. Deleting writes nothing new.
            if let Err(error) = Spool::in_state_dir(dir).clear() {
                log::warn!(
                    "{} telemetry could not delete its unsent events: {error}",
                    self.app
                );
            }
        }
        if decision.mode == Mode::Off {
            return Telemetry {
                shared: None,
                off: Some(Arc::new(decided)),
            };
        }
        let (endpoint, proxy) = self.endpoint_and_proxy(true);
        let mode = running_mode(decision.mode, endpoint.is_some());
        let candidate_dir = decided.state_dir.clone();
        let (identity, state_dir, state_problem) = match decided.state_dir {
            Some(dir) => {
                // A directory that takes no new files cannot keep the spool or the log, nor
                // forget the identity at `telemetry reset`: it is not used at all.
                let usable = create_private_dir(&dir)
                    .and_then(|()| Identity::load_or_create(&dir))
                    .and_then(|identity| check_writable(&dir).map(|()| identity));
                match usable {
                    Ok(identity) => (identity, Some(dir), None),
                    Err(error) => {
                        let problem = format!("cannot use {}: {error}", dir.display());
                        log::warn!(
                            "{} telemetry {problem}; using a temporary identity",
                            self.app
                        );
                        (Identity::ephemeral(), None, Some(problem))
                    }
                }
            }
            None => (
                Identity::ephemeral(),
                None,
                Some("no state directory could be determined (HOME is not set)".to_owned()),
            ),
        };
        // The first run with telemetry on by default shows the notice and, by default, holds
        // its events.
        let mut hold = false;
        if self.notice_due(
            &decided.decision,
            decided.ci.is_some(),
            mode,
            state_dir.as_deref(),
        ) {
            let recorded = match state_dir.as_deref() {
                Some(dir) => crate::state::record_notice(dir).map_err(|error| error.to_string()),
                None => Err(state_problem.clone().unwrap_or_default()),
            };
            if self.first_run == FirstRun::Hold {
                if let Err(problem) = recorded {
                    // Without a record of the notice every run would be a first run, and what
                    // it holds could never be sent: better to record and send nothing at all.
                    log::debug!("{} telemetry is off: {problem}", self.app);
                    return Telemetry {
                        shared: None,
                        off: Some(Arc::new(Decided {
                            decision: decision.notice_unrecorded(&problem),
                            state_dir: candidate_dir,
                            ci: decided.ci,
                        })),
                    };
                }
                hold = true;
            }
            // Printed by whoever recorded it, or by every run that cannot record it.
            if !matches!(recorded, Ok(false)) {
                self.show_notice();
            }
        }
        let instance_id = crate::state::new_installation_id();
        let distinct_id = self
            .distinct_id
            .iter()
            .find_map(|candidate| match candidate {
                DistinctId::Value(value) if !value.trim().is_empty() => Some(value.clone()),
                DistinctId::Installation if state_problem.is_none() => {
                    Some(identity.installation_id.clone())
                }
                DistinctId::Instance => Some(instance_id.clone()),
                _ => None,
            })
            .unwrap_or_else(|| identity.installation_id.clone());
        let debug = self.debug.unwrap_or_else(|| {
            // Any value but an off-like one (`0`, `false`, `no`, `off`) turns debugging on.
            self.env
                .text(&format!("{}_TELEMETRY_DEBUG", self.prefix()))
                .is_some_and(|value| Mode::parse(&value) != Some(Mode::Off))
        });
        let app_properties = self
            .properties
            .as_ref()
            .map(|properties| properties.encode(&identity.key, &self.app))
            .unwrap_or_default();
        let shared = Shared::new(Settings {
            app_properties,
            app: self.app,
            version: self.version,
            mode,
            decision,
            limits: self.limits,
            api_key: self.api_key,
            endpoint,
            proxy,
            identity,
            instance_id,
            distinct_id,
            state_dir,
            state_problem,
            ci: decided.ci,
            hold,
            debug,
            lifecycle: self.lifecycle,
        });
        if shared.settings.lifecycle {
            shared.capture(&AppStarted {
                first_run: shared.settings.identity.created,
            });
        }
        if !hold && shared.spool.as_ref().is_some_and(|spool| spool.has_files()) {
            shared.ensure_worker();
        }
        Telemetry {
            shared: Some(shared),
            off: None,
        }
    }

    /// Prints the first-run notice to stderr, at most once per process.
    fn show_notice(&self) {
        static SHOWN_IN_THIS_PROCESS: AtomicBool = AtomicBool::new(false);
        if SHOWN_IN_THIS_PROCESS.swap(true, Ordering::AcqRel) {
            return;
        }
        let text = self.notice.clone().unwrap_or_else(|| {
            crate::status::default_notice(
                &self.app,
                self.command
                    .as_deref()
                    .unwrap_or(&format!("{} telemetry", self.app)),
                &self.prefix(),
                self.first_run == FirstRun::Hold,
            )
        });
        // Never `eprintln!`: it panics when stderr is closed.
        let _ = writeln!(std::io::stderr().lock(), "{}", text.trim_end());
    }
}

/// What a decided mode runs as: `on` with nowhere to upload to records locally.
fn running_mode(decided: Mode, has_endpoint: bool) -> Mode {
    match decided {
        Mode::On if !has_endpoint => Mode::Local,
        mode => mode,
    }
}

/// Why `dir` cannot be used as the state directory, as far as can be told without writing to
/// it: its nearest existing ancestor is not a directory. (Permissions and read-only mounts only
/// show when writing, which `start` does and `status` does not.)
fn unusable_dir(dir: &Path) -> Option<String> {
    let existing = dir.ancestors().find(|path| fs::metadata(path).is_ok())?;
    (!fs::metadata(existing).ok()?.is_dir()).then(|| {
        format!(
            "cannot use {}: {} is not a directory",
            dir.display(),
            existing.display()
        )
    })
}

// The pipeline that the free functions use. `STATE` alone decides the off case, so `capture`
// costs one atomic load when telemetry is off.
const UNSET: u8 = 0;
const OFF: u8 = 1;
const ACTIVE: u8 = 2;
static STATE: AtomicU8 = AtomicU8::new(UNSET);
static GLOBAL: AtomicPtr<Shared> = AtomicPtr::new(ptr::null_mut());
static IGNORED_BEFORE_START: AtomicU64 = AtomicU64::new(0);

fn install_global(telemetry: &Telemetry) {
    let Some(shared) = &telemetry.shared else {
        let _ = STATE.compare_exchange(UNSET, OFF, Ordering::AcqRel, Ordering::Acquire);
        return;
    };
    // Only the first pipeline started becomes the global one. It is never released: another
    // thread may be capturing through it at any time, so replacing it would leak the old one.
    let new = Arc::into_raw(Arc::clone(shared)).cast_mut();
    if GLOBAL
        .compare_exchange(ptr::null_mut(), new, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        log::debug!("telemetry was started before; the new pipeline is not the global one");
        // SAFETY: `new` came from `Arc::into_raw` just above and was not published.
        drop(unsafe { Arc::from_raw(new) });
        return;
    }
    STATE.store(ACTIVE, Ordering::Release);
}

/// Whether telemetry was started in this process, and if so the global pipeline.
pub(crate) enum Global {
    /// Nothing was started yet.
    Unset,
    /// The first telemetry started is off.
    Off,
    /// The first telemetry started that is not off.
    Active(&'static Shared),
}

/// The state of the global telemetry: one atomic load when it is off.
pub(crate) fn global_state() -> Global {
    match STATE.load(Ordering::Acquire) {
        OFF => Global::Off,
        ACTIVE => current_global().map_or(Global::Off, Global::Active),
        _ => Global::Unset,
    }
}

pub(crate) fn current_global() -> Option<&'static Shared> {
    let current = GLOBAL.load(Ordering::Acquire);
    // SAFETY: a non-null `GLOBAL` comes from `Arc::into_raw` and is never released, so it
    // points to a live `Shared` for the rest of the process.
    (!current.is_null()).then(|| unsafe { &*current })
}

/// Captures `event` through the telemetry started first in this process (see
/// [`Telemetry::capture`]). Before any start, and after shutdown, this does nothing but count
/// the call; when telemetry is off it is one atomic load. Inside
/// [`testing::record`](crate::testing::record) the event is recorded instead.
pub fn capture<E: TelemetryEvent + ?Sized>(event: &E) {
    if crate::testing::capture(event) {
        return;
    }
    match global_state() {
        Global::Off => {}
        Global::Active(shared) => shared.capture(event),
        Global::Unset => {
            IGNORED_BEFORE_START.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A handle on the global telemetry, or an off handle if none was started.
pub fn global() -> Telemetry {
    match STATE.load(Ordering::Acquire) {
        ACTIVE => {
            let current = GLOBAL.load(Ordering::Acquire);
            if current.is_null() {
                return Telemetry::off();
            }
            // SAFETY: as in `current_global`; the strong count is raised before the new `Arc`
            // is made, and the leaked reference is never released, so the count stays >= 1.
            let shared = unsafe {
                Arc::increment_strong_count(current);
                Arc::from_raw(current)
            };
            Telemetry {
                shared: Some(shared),
                off: None,
            }
        }
        _ => Telemetry::off(),
    }
}

/// Calls to the global [`capture`] made before any telemetry was started.
pub fn ignored_before_start() -> u64 {
    IGNORED_BEFORE_START.load(Ordering::Relaxed)
}
