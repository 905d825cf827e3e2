//! The state shared by the callers of `capture` and the background thread, and the accounting
//! that proves nothing is lost.
//!
//! # Accounting
//!
//! Every event a running pipeline accepts is counted once as `captured`, and every event read
//! back from the spool once as `restored`. Each of them ends in exactly one of `delivered`
//! (confirmed by the server, or appended to the local log in `local` mode), `dropped` (for a
//! counted reason) or `spooled` (left on disk for the next process). Once the pipeline has
//! shut down, and at any moment with `pending` added:
//!
//! ```text
//! captured + restored == delivered + dropped + spooled (+ pending)
//! ```
//!
//! Capturing before `start()` or after shutdown is not capturing: it is counted as `ignored`.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering, fence};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::HashKey;
use crate::TelemetryEvent;
use crate::builtin::AppStopped;
use crate::config::{Endpoint, Limits};
use crate::consent::{Decision, Mode};
use crate::json::{JsonBuf, ObjectWriter, Tape};
use crate::spool::{Claim, SPOOL_DIR, Spool};
use crate::state::{Identity, LocalLog};

/// The largest tape kept for reuse, in bytes; a larger one (a rare large event) is freed.
const MAX_POOLED_CAPACITY: usize = 8 << 10;
/// How many emptied tapes stay pooled while nothing is pending.
pub(crate) const IDLE_TAPES: usize = 64;

thread_local! {
    /// The tape each thread records its events on, kept in its cache.
    static SCRATCH: std::cell::Cell<Tape> = const {
        std::cell::Cell::new(Tape { bytes: Vec::new(), keys: Vec::new() })
    };
    /// The property names of the last event this thread captured.
    static LAST_KEYS: std::cell::RefCell<Option<Arc<[&'static str]>>> =
        const { std::cell::RefCell::new(None) };
}

/// The largest scratch tape a thread keeps between captures, in bytes.
const MAX_SCRATCH: usize = 64 << 10;

/// This thread's scratch tape, or a new one if it is in use (an event captured while
/// recording another) or the thread is exiting.
fn take_scratch() -> Tape {
    let mut scratch = SCRATCH.try_with(std::cell::Cell::take).unwrap_or_default();
    if scratch.bytes.capacity() == 0 {
        scratch.bytes.reserve(1024);
        scratch.keys.reserve(64);
    }
    scratch
}

fn return_scratch(scratch: Tape) {
    if scratch.bytes.capacity() <= MAX_SCRATCH {
        let _ = SCRATCH.try_with(|cell| cell.set(scratch));
    }
}

/// Whether two lists of property names are the same names, compared by address: the names
/// are the derive's static strings.
fn same_keys(a: &[&'static str], b: &[&'static str]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(a, b)| a.as_ptr() == b.as_ptr() && a.len() == b.len())
}

/// An event's recorded properties as they travel to the background thread: the tape's
/// operations, and its property names, shared by every capture of the same event on a
/// thread. An event type sends the same names capture after capture; sharing them halves
/// what each capture writes into memory the background thread last read, on another core.
pub(crate) struct Properties {
    pub bytes: Vec<u8>,
    pub keys: Arc<[&'static str]>,
}

impl Properties {
    /// Whether the JSON these properties replay into may be at most `max` bytes. Only what
    /// certainly exceeds it is refused here; the JSON itself is measured when it is written.
    pub(crate) fn may_fit(&self, max: usize) -> bool {
        self.bytes.len() <= max || crate::json::json_floor(&self.bytes, &self.keys) <= max
    }

    /// The properties of a tape recorded on its own.
    pub(crate) fn of(tape: Tape) -> Properties {
        Properties {
            bytes: tape.bytes,
            keys: tape.keys.into(),
        }
    }

    /// Replays them into `out`, as [`crate::json::replay`] does.
    pub(crate) fn replay(&self, key: &HashKey, out: &mut JsonBuf) {
        crate::json::replay_parts(&self.bytes, &self.keys, key, out);
    }
}

/// The tapes events travel on, returned by the background thread once it has replayed them.
///
/// Reusing them saves an allocation per capture, and, more importantly, the background thread
/// freeing memory the caller's thread allocated: that takes the allocator's lock for the
/// caller's heap, which the caller is using at the same time, and in a burst it cost more
/// than everything else the thread does. Up to four batches' worth of tapes are kept (or a
/// queue's worth, if less): enough for callers to refill the queue as fast as the thread
/// empties it. Once the thread has had nothing to do for a while, all but a few are freed.
pub(crate) struct TapePool {
    tapes: Mutex<Vec<Properties>>,
    most: usize,
}

impl TapePool {
    fn new(most: usize) -> TapePool {
        TapePool {
            tapes: Mutex::new(Vec::new()),
            most,
        }
    }

    /// A copy of `recorded` on a reused tape if one is waiting, else on a new one. The names
    /// are the thread's last event's if they are the same. A caller never waits for the pool:
    /// while the background thread is returning tapes, it takes a new one.
    fn copy(&self, recorded: &Tape) -> Properties {
        let reused = match self.tapes.try_lock() {
            Ok(mut tapes) => tapes.pop(),
            Err(std::sync::TryLockError::Poisoned(poisoned)) => poisoned.into_inner().pop(),
            Err(std::sync::TryLockError::WouldBlock) => None,
        };
        let mut properties = reused.unwrap_or_else(|| Properties {
            bytes: Vec::with_capacity(recorded.bytes.len()),
            keys: Arc::from([]),
        });
        properties.bytes.extend_from_slice(&recorded.bytes);
        if !same_keys(&properties.keys, &recorded.keys) {
            properties.keys = LAST_KEYS
                .try_with(|last| {
                    let mut last = last.borrow_mut();
                    match &*last {
                        Some(keys) if same_keys(keys, &recorded.keys) => keys.clone(),
                        _ => last.insert(Arc::from(&recorded.keys[..])).clone(),
                    }
                })
                .unwrap_or_else(|_| Arc::from(&recorded.keys[..]));
        }
        properties
    }

    /// Keeps `tapes` for later captures, except unusually large ones and those beyond the
    /// pool's bound, which are freed (after the lock is released).
    pub(crate) fn give(&self, tapes: &mut Vec<Properties>) {
        let mut surplus = Vec::new();
        {
            let mut pool = lock(&self.tapes);
            for mut tape in tapes.drain(..) {
                if pool.len() < self.most && tape.bytes.capacity() <= MAX_POOLED_CAPACITY {
                    // The names stay: the next capture of the same event keeps them.
                    tape.bytes.clear();
                    pool.push(tape);
                } else {
                    surplus.push(tape);
                }
            }
        }
        drop(surplus);
    }

    /// Frees all but `keep` pooled tapes.
    pub(crate) fn trim(&self, keep: usize) {
        let surplus = {
            let mut pool = lock(&self.tapes);
            if pool.len() <= keep {
                return;
            }
            let surplus = pool.split_off(keep);
            pool.shrink_to(keep);
            surplus
        };
        drop(surplus);
    }
}

/// The bit of `gate` that says the pipeline no longer accepts events.
const CLOSED: u64 = 1 << 63;

/// How the background thread waits, as [`Doorbell`] records it.
const AWAKE: u8 = 0;
/// Waiting with something pending and a time to act: only a full batch is worth waking for.
const WAITING_TIMED: u8 = 1;
/// Waiting with nothing pending: the first event is worth waking for, to start its interval.
const WAITING_IDLE: u8 = 2;

/// Wakes the background thread when there is something for it to do, and only then.
///
/// A blocking receive on the event queue would wake the thread, a system call, for every
/// event; callers would pay it. Instead a caller rings only when the thread waits with nothing
/// pending, or when a batch is full: once per batch at most, and not at all while the thread
/// is busy.
pub(crate) struct Doorbell {
    state: AtomicU8,
    rung: Mutex<bool>,
    bell: Condvar,
}

impl Doorbell {
    fn new() -> Doorbell {
        Doorbell {
            state: AtomicU8::new(AWAKE),
            rung: Mutex::new(false),
            bell: Condvar::new(),
        }
    }

    /// Called by a caller that just queued an event; `queued` reads the queue's length (only
    /// when it matters: reading it costs a cache miss while the thread is draining the queue).
    fn nudge(&self, queued: impl FnOnce() -> usize, batch: usize) {
        // Pairs with the fence in `wait`: either this load sees the thread waiting, or the
        // thread's last look at the queue sees the event.
        fence(Ordering::SeqCst);
        match self.state.load(Ordering::Relaxed) {
            WAITING_IDLE => self.ring(),
            WAITING_TIMED if queued() >= batch => self.ring(),
            _ => {}
        }
    }

    /// Wakes the thread if it waits; a no-op while it is awake.
    pub(crate) fn ring(&self) {
        if self.state.swap(AWAKE, Ordering::SeqCst) != AWAKE {
            *lock(&self.rung) = true;
            self.bell.notify_one();
        }
    }

    /// Waits until rung or `timeout` passes, unless `ready` (checked after announcing the
    /// wait) says there is work already. `idle` says nothing is pending.
    pub(crate) fn wait(&self, timeout: Duration, idle: bool, ready: impl FnOnce() -> bool) {
        let mut rung = lock(&self.rung);
        let state = if idle { WAITING_IDLE } else { WAITING_TIMED };
        self.state.store(state, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if !ready() {
            rung = self
                .bell
                .wait_timeout_while(rung, timeout, |rung| !*rung)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        self.state.store(AWAKE, Ordering::SeqCst);
        *rung = false;
    }
}

/// An event recorded on the caller's thread, on its way to the background thread.
pub(crate) struct Captured {
    pub name: &'static str,
    pub at: SystemTime,
    /// The properties, recorded as a tape of a JSON object.
    pub properties: Properties,
}

/// A request to the background thread.
pub(crate) enum Control {
    /// Deliver what is pending until `until`, then answer whether everything was delivered.
    Flush { until: Instant, done: Sender<bool> },
    /// Deliver until `until`, spool the rest and stop.
    Shutdown { until: Instant, done: Sender<()> },
}

/// An event waiting in the outbox.
pub(crate) struct Line {
    pub text: Text,
    /// Whether the line is one of the counted events (every event except the pipeline's own
    /// report of dropped events, which is not the application's).
    pub counted: bool,
    /// The spool file the line was read from. The file is deleted once all its lines are
    /// settled; a line dropped without settling leaves it for a later process.
    pub origin: Option<Arc<Claim>>,
}

/// What an event in the outbox is made of.
pub(crate) enum Text {
    /// A complete event object, read back from the spool.
    Json(String),
    /// An event captured by this process. Its JSON is assembled (see [`Shared::assemble`])
    /// where it is needed, straight into a batch's body or a spool file, and comes out the
    /// same every time: the uuid's random part is kept, hashing and scrubbing are
    /// deterministic. Holding the compact tape instead of the JSON keeps the outbox small, and
    /// accepting an event from the queue costs next to nothing, so the queue empties as fast
    /// as callers fill it.
    Recorded {
        captured: Captured,
        random: [u8; 10],
    },
}

impl Line {
    /// A line for an event captured by this process.
    pub(crate) fn recorded(captured: Captured, random: [u8; 10]) -> Line {
        Line {
            text: Text::Recorded { captured, random },
            counted: true,
            origin: None,
        }
    }

    /// About how many bytes of memory the line holds, as the outbox's bound counts them.
    pub(crate) fn size(&self) -> usize {
        match &self.text {
            Text::Json(json) => json.len(),
            Text::Recorded { captured, .. } => {
                // The names are shared with other events.
                captured.properties.bytes.len() + size_of::<Line>()
            }
        }
    }
}

/// Lines not yet confirmed, the batch in flight included. Only the background thread takes
/// lines from the front, and only while the outbox is open; closing it takes all of them.
#[derive(Default)]
pub(crate) struct Outbox {
    lines: VecDeque<Line>,
    bytes: usize,
    /// Set once the remaining lines have been spooled; nothing is sent or counted after that.
    pub closed: bool,
}

impl Outbox {
    pub(crate) fn push_back(&mut self, line: Line) {
        self.bytes += line.size();
        self.lines.push_back(line);
    }

    pub(crate) fn push_front(&mut self, line: Line) {
        self.bytes += line.size();
        self.lines.push_front(line);
    }

    pub(crate) fn take_front(&mut self, count: usize) -> Vec<Line> {
        let count = count.min(self.lines.len());
        let taken: Vec<Line> = self.lines.drain(..count).collect();
        self.bytes -= taken.iter().map(Line::size).sum::<usize>();
        taken
    }

    pub(crate) fn get(&self, index: usize) -> Option<&Line> {
        self.lines.get(index)
    }

    pub(crate) fn lines(&self) -> impl Iterator<Item = &Line> {
        self.lines.iter()
    }

    pub(crate) fn len(&self) -> usize {
        self.lines.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// The bytes held, as [`Line::size`] counts them.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }
}

/// The running counters behind [`Stats`](crate::Stats).
#[derive(Default, Debug)]
pub(crate) struct Counters {
    pub captured: AtomicU64,
    pub restored: AtomicU64,
    pub delivered: AtomicU64,
    pub spooled: AtomicU64,
    pub ignored: AtomicU64,
    pub queue_full: AtomicU64,
    pub unencodable: AtomicU64,
    pub too_large: AtomicU64,
    pub rejected: AtomicU64,
    pub unstorable: AtomicU64,
    pub discarded: AtomicU64,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        if n > 0 {
            counter.fetch_add(n, Ordering::Relaxed);
        }
    }
}

/// Everything one started telemetry instance owns.
pub(crate) struct Shared {
    pub me: Weak<Shared>,
    pub settings: Settings,
    pub spool: Option<Spool>,
    pub local_log: Option<LocalLog>,
    /// The distinct id as a JSON string.
    distinct_id_json: String,
    /// The properties added to every event, as the inside of a JSON object. The system's
    /// description is read on first use, on the background thread, never at start.
    common_properties: OnceLock<String>,
    /// Captures in progress, plus [`CLOSED`].
    gate: AtomicU64,
    /// Set when a capture found the queue full, cleared when one was queued.
    refusing: AtomicBool,
    /// Bytes of the queued tapes larger than `max_event_bytes`: a tape holds what `#[hash]`
    /// and `#[scrub]` fields are given in full, so an event whose JSON fits can take far more
    /// memory until the background thread replays it. At most `max_buffer_bytes` of them wait
    /// in the queue; beyond that, such events are dropped as if the queue were full.
    oversized: AtomicUsize,
    pub counters: Counters,
    pub events_tx: Sender<Captured>,
    pub events_rx: Receiver<Captured>,
    pub control_tx: Sender<Control>,
    pub control_rx: Receiver<Control>,
    /// Wakes the background thread for events and requests.
    pub doorbell: Doorbell,
    /// Tapes for the events, back from the background thread.
    pub tapes: TapePool,
    worker_started: AtomicBool,
    worker: Mutex<Option<JoinHandle<()>>>,
    /// When the pipeline was made: the start of the uptime in `app_stopped`.
    pub started: Instant,
    /// Set by the first clean shutdown, which captures `app_stopped`.
    stop_recorded: AtomicBool,
    /// What the panic hook counted and when its last flush ends.
    pub panics: crate::crash::Panics,
    shut_down: AtomicBool,
    finished: Mutex<bool>,
    finished_signal: Condvar,
    pub outbox: Mutex<Outbox>,
}

/// What was decided at start.
pub(crate) struct Settings {
    pub app: String,
    pub version: String,
    /// What this process does: the decision's mode, except that `on` without an endpoint
    /// is `local`.
    pub mode: Mode,
    pub decision: Decision,
    pub limits: Limits,
    pub api_key: String,
    pub endpoint: Option<Endpoint>,
    pub proxy: Option<ureq::Proxy>,
    pub identity: Identity,
    /// This process's id.
    pub instance_id: String,
    /// The id events are sent under.
    pub distinct_id: String,
    /// `None` when it could not be used (see `state_problem`).
    pub state_dir: Option<PathBuf>,
    /// Why the identity is temporary, when it is.
    pub state_problem: Option<String>,
    /// The CI provider, when running under CI.
    pub ci: Option<&'static str>,
    /// A first run that keeps its events for the next run instead of sending them.
    pub hold: bool,
    pub debug: bool,
    /// Whether `app_started` and `app_stopped` are sent.
    pub lifecycle: bool,
    /// The application's properties sent with every event, as the inside of a JSON object.
    pub app_properties: String,
}

#[cfg(test)]
impl Settings {
    /// A pipeline in local mode writing under `dir`, with an ephemeral identity and no
    /// lifecycle events.
    pub(crate) fn local_for_tests(dir: &std::path::Path) -> Settings {
        Settings {
            app: "test".into(),
            version: "1".into(),
            mode: Mode::Local,
            decision: Decision::off_by_application(),
            limits: Limits::default(),
            api_key: String::new(),
            endpoint: None,
            proxy: None,
            identity: Identity::ephemeral(),
            instance_id: "instance".into(),
            distinct_id: "installation".into(),
            state_dir: Some(dir.to_owned()),
            state_problem: None,
            ci: None,
            hold: false,
            debug: false,
            lifecycle: false,
            app_properties: String::new(),
        }
    }
}

/// A capture inside the gate; leaving is done on drop, so a panic cannot leave it counted.
struct Gate<'a>(&'a AtomicU64);

impl<'a> Gate<'a> {
    /// Enters unless the gate is closed.
    fn enter(gate: &'a AtomicU64) -> Option<Gate<'a>> {
        if gate.fetch_add(1, Ordering::AcqRel) & CLOSED != 0 {
            gate.fetch_sub(1, Ordering::Release);
            return None;
        }
        Some(Gate(gate))
    }
}

impl Drop for Gate<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Release);
    }
}

/// Locks a mutex whose data stays consistent even if a holder panicked.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    pub(crate) fn new(parts: Settings) -> Arc<Shared> {
        let (events_tx, events_rx) = crossbeam_channel::bounded(parts.limits.queue_capacity);
        let (control_tx, control_rx) = crossbeam_channel::bounded(16);
        let spool = match (&parts.state_dir, parts.mode) {
            (Some(dir), Mode::On) => Some(Spool::new(
                dir.join(SPOOL_DIR),
                parts.limits.spool_max_bytes,
                parts.limits.spool_max_age,
            )),
            _ => None,
        };
        let local_log = match (&parts.state_dir, parts.mode) {
            (Some(dir), Mode::Local) => Some(LocalLog::new(dir, parts.limits.local_log_max_bytes)),
            _ => None,
        };
        let distinct_id_json =
            serde_json::to_string(&parts.distinct_id).expect("a string serializes");
        let tapes = TapePool::new(parts.limits.queue_capacity.min(4 * parts.limits.batch_size));
        Arc::new_cyclic(|me| Shared {
            me: me.clone(),
            settings: parts,
            spool,
            local_log,
            distinct_id_json,
            common_properties: OnceLock::new(),
            gate: AtomicU64::new(0),
            refusing: AtomicBool::new(false),
            oversized: AtomicUsize::new(0),
            counters: Counters::default(),
            events_tx,
            events_rx,
            control_tx,
            control_rx,
            doorbell: Doorbell::new(),
            tapes,
            worker_started: AtomicBool::new(false),
            worker: Mutex::new(None),
            started: Instant::now(),
            stop_recorded: AtomicBool::new(false),
            panics: crate::crash::Panics::default(),
            shut_down: AtomicBool::new(false),
            finished: Mutex::new(false),
            finished_signal: Condvar::new(),
            outbox: Mutex::new(Outbox::default()),
        })
    }

    /// The properties sent with every event, as the inside of a JSON object. The background
    /// thread builds them before anything else; only a shutdown that comes before the thread
    /// ran may build them on the caller's thread (reading a few small files: well under a
    /// millisecond).
    pub(crate) fn common_properties(&self) -> &str {
        self.common_properties.get_or_init(|| {
            let parts = &self.settings;
            let mut common = JsonBuf::new();
            let mut object = common.object();
            object.key("$lib").string("telemetry-runtime");
            object.key("$lib_version").string(env!("CARGO_PKG_VERSION"));
            object.key("$app_name").string(&parts.app);
            object.key("$app_version").string(&parts.version);
            object.key("$process_person_profile").bool(false);
            object.key("$geoip_disable").bool(true);
            if parts.limits.mask_ip {
                object.key("$ip").string("0.0.0.0");
            }
            object
                .key("installation_id")
                .string(&parts.identity.installation_id);
            object.key("instance_id").string(&parts.instance_id);
            object.key("ci").bool(parts.ci.is_some());
            match parts.ci {
                Some(provider) => object.key("ci_provider").string(provider),
                None => object.key("ci_provider").null(),
            }
            crate::sysinfo::SystemInfo::collect().write_properties(&mut object);
            object.members(parts.app_properties.as_bytes());
            object.end();
            let common = String::from_utf8(common.finish().expect("strings always encode"))
                .expect("the encoder writes UTF-8");
            common[1..common.len() - 1].to_owned()
        })
    }

    /// Whether events are still accepted.
    pub(crate) fn is_open(&self) -> bool {
        self.gate.load(Ordering::Acquire) & CLOSED == 0
    }

    /// Stops accepting events for the rest of the process, after `reason` (logged).
    pub(crate) fn disable(&self, reason: &str) {
        // Closed before logging, so a logger that captures telemetry cannot re-enter.
        self.gate.fetch_or(CLOSED, Ordering::AcqRel);
        if crate::crash::may_log() {
            log::error!(
                "{} telemetry is disabled for this process: {reason}",
                self.settings.app
            );
        }
    }

    /// Records `event` on the caller's thread and queues it without blocking; the background
    /// thread hashes, scrubs and encodes it (see [`crate::json`]). Never panics:
    /// not even a panicking logger gets through.
    pub(crate) fn capture<E: TelemetryEvent + ?Sized>(&self, event: &E) {
        self.capture_with(E::SCHEMA.name, |properties, key| {
            event.__write_fields(properties, key);
        });
    }

    /// Captures the event `name` whose properties `write` writes under the installation's key,
    /// as [`capture`](Self::capture) does.
    pub(crate) fn capture_with(
        &self,
        name: &'static str,
        write: impl FnOnce(&mut ObjectWriter<'_>, &HashKey),
    ) {
        let _inside = crate::crash::Inside::enter();
        let _ = catch_unwind(AssertUnwindSafe(|| self.try_capture(name, write)));
    }

    fn try_capture(&self, name: &'static str, write: impl FnOnce(&mut ObjectWriter<'_>, &HashKey)) {
        if !self.is_open() {
            Counters::add(&self.counters.ignored, 1);
            return;
        }
        // Looking at the queue's length costs a cache miss while the background thread is
        // taking events off it, so it is done only once a capture has found the queue full.
        if self.refusing.load(Ordering::Relaxed) && self.events_tx.is_full() {
            // Nothing would take the event: it is dropped, counted, before it costs an encoding.
            let Some(_inside) = Gate::enter(&self.gate) else {
                Counters::add(&self.counters.ignored, 1);
                return;
            };
            Counters::add(&self.counters.captured, 1);
            Counters::add(&self.counters.queue_full, 1);
            self.doorbell.ring();
            return;
        }
        let at = SystemTime::now();
        // A `#[plain]` field's `Serialize` is the application's code: if it panics, the event
        // is dropped and the panic stays here. Encoding happens before the gate, so a slow
        // encoder cannot hold up shutdown.
        let encoded = catch_unwind(AssertUnwindSafe(|| {
            let mut buf = JsonBuf::tape(take_scratch());
            let mut properties = buf.object();
            write(&mut properties, &self.settings.identity.key);
            properties.end();
            buf.finish_tape().map(|scratch| {
                let properties = self.tapes.copy(&scratch);
                return_scratch(scratch);
                properties
            })
        }));
        let dropped = {
            // Between entering and leaving the gate, shutdown waits; past it, nothing is
            // queued. The guard leaves the gate even if something in here panics.
            let Some(_inside) = Gate::enter(&self.gate) else {
                Counters::add(&self.counters.ignored, 1);
                return;
            };
            Counters::add(&self.counters.captured, 1);
            match encoded {
                Ok(Ok(properties)) if properties.may_fit(self.settings.limits.max_event_bytes) => {
                    self.ensure_worker();
                    let oversized = self.oversized(&properties);
                    if self.reserve_oversized(oversized) {
                        let captured = Captured {
                            name,
                            at,
                            properties,
                        };
                        let sent = self.events_tx.try_send(captured);
                        if self.refusing.load(Ordering::Relaxed) != sent.is_err() {
                            self.refusing.store(sent.is_err(), Ordering::Relaxed);
                        }
                        match sent {
                            Ok(()) => self
                                .doorbell
                                .nudge(|| self.events_tx.len(), self.settings.limits.batch_size),
                            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                                self.release_oversized(oversized);
                                Counters::add(&self.counters.queue_full, 1);
                                self.doorbell.ring();
                            }
                        }
                    } else {
                        Counters::add(&self.counters.queue_full, 1);
                        self.doorbell.ring();
                    }
                    None
                }
                Ok(Ok(_)) => {
                    Counters::add(&self.counters.too_large, 1);
                    Some(format!(
                        "larger than {} bytes",
                        self.settings.limits.max_event_bytes
                    ))
                }
                Ok(Err(error)) => {
                    Counters::add(&self.counters.unencodable, 1);
                    Some(error.to_string())
                }
                Err(_) => {
                    Counters::add(&self.counters.unencodable, 1);
                    Some("encoding it panicked".to_owned())
                }
            }
        };
        if let Some(reason) = dropped
            && crate::crash::may_log()
        {
            log::warn!("dropped a `{name}` event: {reason}");
        }
    }

    /// How much of [`Shared::oversized`] a tape counts against: its size when it is larger
    /// than `max_event_bytes`, else nothing (the queue's length bounds those).
    fn oversized(&self, properties: &Properties) -> usize {
        let size = properties.bytes.len();
        if size > self.settings.limits.max_event_bytes {
            size
        } else {
            0
        }
    }

    /// Counts `size` bytes of oversized tapes as queued, unless that would pass the limit.
    fn reserve_oversized(&self, size: usize) -> bool {
        if size == 0 {
            return true;
        }
        let before = self.oversized.fetch_add(size, Ordering::AcqRel);
        if before.saturating_add(size) > self.settings.limits.max_buffer_bytes {
            self.oversized.fetch_sub(size, Ordering::AcqRel);
            return false;
        }
        true
    }

    fn release_oversized(&self, size: usize) {
        if size > 0 {
            self.oversized.fetch_sub(size, Ordering::AcqRel);
        }
    }

    /// Takes the next event off the queue, without waiting.
    pub(crate) fn take_queued(&self) -> Option<Captured> {
        let captured = self.events_rx.try_recv().ok()?;
        self.release_oversized(self.oversized(&captured.properties));
        Some(captured)
    }

    /// Starts the background thread unless it runs already.
    pub(crate) fn ensure_worker(&self) {
        if !self.worker_started.load(Ordering::Acquire) {
            self.start_worker();
        }
    }

    fn start_worker(&self) {
        let _inside = crate::crash::Inside::enter();
        let mut slot = lock(&self.worker);
        if self.worker_started.load(Ordering::Acquire) || self.shut_down.load(Ordering::Acquire) {
            return;
        }
        let Some(me) = self.me.upgrade() else { return };
        let spawned = std::thread::Builder::new()
            .name(format!("{}-telemetry", self.settings.app))
            .spawn(move || crate::worker::run(&me));
        self.worker_started.store(true, Ordering::Release);
        match spawned {
            Ok(handle) => *slot = Some(handle),
            Err(error) => {
                drop(slot);
                self.disable(&format!("could not start its thread: {error}"));
            }
        }
    }

    /// Appends a captured event, completed into the object PostHog expects, to `out`: its
    /// properties are replayed from their tape, hashed and scrubbed, the common properties
    /// added, and the uuid (v7) is made from the capture time and `random`. Returns false,
    /// with `out` as it was, if the properties turn out larger than the limit.
    pub(crate) fn assemble(
        &self,
        captured: &Captured,
        random: [u8; 10],
        out: &mut Vec<u8>,
    ) -> bool {
        let millis = captured.at.duration_since(UNIX_EPOCH).map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        });
        let uuid = uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid();
        let common = self.common_properties().as_bytes();
        let before = out.len();
        let mut buf = JsonBuf::reusing(std::mem::take(out));
        let mut object = buf.object();
        object.key("event").string(captured.name);
        object
            .key("distinct_id")
            .raw(self.distinct_id_json.as_bytes());
        let target = object.key("properties");
        let start = target.len();
        captured
            .properties
            .replay(&self.settings.identity.key, target);
        let fits = target.len() - start <= self.settings.limits.max_event_bytes;
        if fits {
            target.extend_last_object(common);
            object.key("timestamp").timestamp(captured.at);
            object.key("uuid").string(
                uuid.hyphenated()
                    .encode_lower(&mut uuid::Uuid::encode_buffer()),
            );
            object.end();
        }
        *out = buf.finish().expect("only pre-encoded JSON is written");
        if !fits {
            out.truncate(before);
        }
        fits
    }

    /// Appends `line`'s JSON to `out`; false, with `out` as it was, if the event is too large
    /// to be sent.
    pub(crate) fn write_line(&self, line: &Line, out: &mut Vec<u8>) -> bool {
        match &line.text {
            Text::Json(json) => {
                out.extend_from_slice(json.as_bytes());
                true
            }
            Text::Recorded { captured, random } => self.assemble(captured, *random, out),
        }
    }

    /// Marks `lines` as having reached their end (delivered, dropped or spooled anew), and
    /// gives their tapes back for later captures.
    pub(crate) fn settle(&self, lines: impl IntoIterator<Item = Line>) {
        let mut tapes = Vec::new();
        for line in lines {
            if let Some(claim) = &line.origin {
                claim.settle_one();
            }
            if let Text::Recorded { captured, .. } = line.text {
                tapes.push(captured.properties);
            }
        }
        self.tapes.give(&mut tapes);
    }

    /// Spools every line not yet confirmed and everything still queued; nothing is sent after
    /// this. Called by the background thread at shutdown, or by the shutting-down caller when
    /// the thread did not finish in time. Holding the outbox lock while writing means the
    /// caller cannot return, and the process cannot exit, while the spool is half written.
    pub(crate) fn close_and_spool(&self) {
        let mut outbox = lock(&self.outbox);
        if outbox.closed {
            return;
        }
        outbox.closed = true;
        let mut random = crate::worker::RandomPool::new();
        while let Some(captured) = self.take_queued() {
            outbox.push_back(Line::recorded(captured, random.take()));
        }
        let lines = outbox.take_front(usize::MAX);
        let problem = self.store(lines);
        drop(outbox);
        if let Some(problem) = problem
            && crate::crash::may_log()
        {
            log::warn!("{problem}");
        }
    }

    /// Puts lines that cannot be sent now where they will be found later: the spool (or the
    /// local log in `local` mode), and settles them. A line that cannot be written is dropped
    /// and counted, unless it was read from a spool file: that file is left in place and the
    /// line stays spooled there. Callers hold the outbox lock, so a shutdown cannot finish
    /// while lines are in here; they log the returned problem after releasing it.
    #[must_use = "log the problem after releasing the outbox lock"]
    pub(crate) fn store(&self, lines: Vec<Line>) -> Option<String> {
        if lines.is_empty() {
            return None;
        }
        // The files these lines were restored from are deleted once they are settled, so
        // their bytes do not count against the spool's limit.
        let mut reclaimable = 0;
        let mut seen: Vec<&Arc<Claim>> = Vec::new();
        for claim in lines.iter().filter_map(|line| line.origin.as_ref()) {
            if !seen.iter().any(|c| Arc::ptr_eq(c, claim)) {
                reclaimable += claim.bytes;
                seen.push(claim);
            }
        }
        // Only what can fit is written out: with the spool full, a burst against a dead
        // endpoint costs no more than counting its events.
        let room = self
            .spool
            .as_ref()
            .map_or(u64::MAX, |spool| spool.room(reclaimable));
        let mut joined = Vec::new();
        let mut spans = Vec::with_capacity(lines.len());
        for line in &lines {
            if joined.len() as u64 >= room {
                break;
            }
            let start = joined.len();
            spans.push(
                self.write_line(line, &mut joined)
                    .then_some((start, joined.len())),
            );
        }
        let texts = spans.iter().flatten().map(|&(start, end)| {
            std::str::from_utf8(&joined[start..end]).expect("the encoder writes UTF-8")
        });
        let written = match (&self.spool, &self.local_log) {
            (Some(spool), _) => spool.write(texts, reclaimable),
            (None, Some(log)) => log.append(texts).map(|()| usize::MAX),
            (None, None) => Ok(0),
        };
        let (written, error) = match written {
            Ok(written) => (written, None),
            Err(error) => (0, Some(error)),
        };
        let kept = if self.spool.is_some() {
            &self.counters.spooled
        } else {
            &self.counters.delivered
        };
        let mut lost = 0;
        let mut settled = Vec::with_capacity(lines.len());
        // How many of the texts came before: the first `written` of them were kept.
        let mut texts_before = 0;
        for (at, line) in lines.into_iter().enumerate() {
            let counted = u64::from(line.counted);
            let kept_here = match spans.get(at) {
                Some(Some(_)) => {
                    texts_before += 1;
                    texts_before <= written
                }
                Some(None) => {
                    Counters::add(&self.counters.too_large, counted);
                    settled.push(line);
                    continue;
                }
                // Not written out: the spool had no room left for it.
                None => false,
            };
            if kept_here {
                Counters::add(kept, counted);
            } else if line.origin.is_some() {
                // Still intact in the file it came from: leave it there, unsettled.
                Counters::add(&self.counters.spooled, counted);
                continue;
            } else {
                lost += counted;
            }
            settled.push(line);
        }
        self.settle(settled);
        Counters::add(&self.counters.unstorable, lost);
        match (error, lost) {
            (Some(error), _) => Some(format!(
                "could not keep undelivered telemetry events ({error}); {lost} dropped"
            )),
            (None, 0) => None,
            (None, lost) => Some(format!(
                "dropped {lost} telemetry events: the spool is full"
            )),
        }
    }

    /// Stops the pipeline: no more events are accepted, what is pending is delivered until
    /// `until`, and what is not confirmed by then is spooled. A caller that finds another
    /// shutdown in progress waits for it until its own `until`, then spools what is left.
    ///
    /// The first `clean` stop of a pipeline still open captures `app_stopped` before closing
    /// it, so that the event is delivered or spooled like any other. A stop while unwinding
    /// from a panic is not clean.
    pub(crate) fn shutdown(&self, until: Instant, clean: bool) {
        let _inside = crate::crash::Inside::enter();
        if clean
            && self.settings.lifecycle
            && self.is_open()
            && !self.stop_recorded.swap(true, Ordering::AcqRel)
        {
            self.capture(&AppStopped {
                uptime: self.started.elapsed(),
                panics: self.panics.seen(),
            });
        }
        self.gate.fetch_or(CLOSED, Ordering::AcqRel);
        if self.shut_down.swap(true, Ordering::AcqRel) {
            let mut finished = lock(&self.finished);
            while !*finished {
                let left = until.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                finished = self
                    .finished_signal
                    .wait_timeout(finished, left)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
            drop(finished);
            self.close_and_spool();
            return;
        }
        // Captures inside the gate only queue (and may start the thread): wait for them, so
        // that nothing is queued after the final drain.
        while self.gate.load(Ordering::Acquire) & !CLOSED != 0 && Instant::now() < until {
            std::thread::yield_now();
        }
        let handle = lock(&self.worker).take();
        if let Some(handle) = handle {
            let (done_tx, done_rx) = crossbeam_channel::bounded(1);
            let finished = !handle.is_finished()
                && self.request(Control::Shutdown {
                    until,
                    done: done_tx,
                })
                && done_rx.recv_deadline(until).is_ok();
            if finished {
                let _ = handle.join();
            }
        }
        self.close_and_spool();
        *lock(&self.finished) = true;
        self.finished_signal.notify_all();
    }

    /// Asks the background thread to deliver everything pending, waiting at most until `until`.
    pub(crate) fn flush(&self, until: Instant) -> bool {
        let _inside = crate::crash::Inside::enter();
        if self.shut_down.load(Ordering::Acquire) {
            // Everything was delivered or spooled, or is being right now.
            return true;
        }
        if !self.is_open() {
            return self.events_rx.is_empty() && lock(&self.outbox).is_empty();
        }
        let running = lock(&self.worker)
            .as_ref()
            .is_some_and(|handle| !handle.is_finished());
        if !running {
            return self.events_rx.is_empty() && lock(&self.outbox).is_empty();
        }
        let (done_tx, done_rx) = crossbeam_channel::bounded(1);
        self.request(Control::Flush {
            until,
            done: done_tx,
        }) && done_rx.recv_deadline(until).unwrap_or(false)
    }

    /// Hands `control` to the background thread and wakes it; whether it was taken.
    fn request(&self, control: Control) -> bool {
        let sent = self.control_tx.try_send(control).is_ok();
        self.doorbell.ring();
        sent
    }
}

/// How many of `lines` are counted events.
pub(crate) fn counted(lines: &[Line]) -> u64 {
    lines.iter().filter(|line| line.counted).count() as u64
}

/// The instant `duration` from now, or one far in the future if that cannot be represented.
pub(crate) fn after(duration: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(duration)
        .or_else(|| now.checked_add(Duration::from_secs(100 * 365 * 24 * 3600)))
        .unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Waits on `bell` in another thread with `ready` saying no work, until it is woken;
    /// how long that took.
    fn woken_after(bell: &Arc<Doorbell>, idle: bool, wake: impl FnOnce(&Doorbell)) -> Duration {
        let waiter = {
            let bell = bell.clone();
            std::thread::spawn(move || {
                let start = Instant::now();
                bell.wait(Duration::from_secs(30), idle, || false);
                start.elapsed()
            })
        };
        let waiting = if idle { WAITING_IDLE } else { WAITING_TIMED };
        while bell.state.load(Ordering::SeqCst) != waiting {
            std::thread::yield_now();
        }
        wake(bell);
        waiter.join().unwrap()
    }

    #[test]
    fn pooled_tapes_carry_the_names_of_the_event_recorded_on_them() {
        let pool = TapePool::new(4);
        let tape = |keys: &[&'static str], bytes: &[u8]| Tape {
            bytes: bytes.to_vec(),
            keys: keys.to_vec(),
        };
        let a = tape(&["a", "b"], b"first");
        // Another event, with another list of names.
        let b = tape(&["a", "c"], b"second");
        let mut used = Vec::new();
        for round in 0..3 {
            for recorded in [&a, &b, &a] {
                let copy = pool.copy(recorded);
                assert_eq!(copy.bytes, recorded.bytes, "round {round}");
                assert_eq!(&copy.keys[..], &recorded.keys[..], "round {round}");
                used.push(copy);
            }
            pool.give(&mut used);
        }
        // Captures of one event share one list of names.
        let (first, second) = (pool.copy(&a), pool.copy(&a));
        assert!(Arc::ptr_eq(&first.keys, &second.keys));
    }

    #[test]
    fn an_idle_thread_wakes_for_the_first_event() {
        let bell = Arc::new(Doorbell::new());
        let took = woken_after(&bell, true, |bell| bell.nudge(|| 1, 100));
        assert!(took < Duration::from_secs(30), "{took:?}");
        assert_eq!(bell.state.load(Ordering::SeqCst), AWAKE);
    }

    #[test]
    fn a_waiting_thread_with_work_pending_wakes_only_for_a_full_batch() {
        let bell = Arc::new(Doorbell::new());
        let took = woken_after(&bell, false, |bell| {
            bell.nudge(|| 1, 100);
            bell.nudge(|| 99, 100);
            // Still waiting: neither event filled a batch.
            assert_eq!(bell.state.load(Ordering::SeqCst), WAITING_TIMED);
            bell.nudge(|| 100, 100);
        });
        assert!(took < Duration::from_secs(30), "{took:?}");
    }

    #[test]
    fn work_that_arrived_before_the_wait_is_not_slept_through() {
        let bell = Doorbell::new();
        // A ring while the thread is busy is not kept; what `ready` sees is what counts.
        bell.ring();
        let start = Instant::now();
        bell.wait(Duration::from_secs(30), true, || true);
        assert!(start.elapsed() < Duration::from_secs(30));
        assert_eq!(bell.state.load(Ordering::SeqCst), AWAKE);
    }
}
