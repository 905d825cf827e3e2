//! The background thread: batches queued events and hands them to the sink (PostHog, or the
//! local log), retrying what may succeed later and spooling what is still pending at the end.

use std::collections::HashSet;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::builtin::TelemetryDropped;
use crate::consent::Mode;
use crate::pipeline::{Captured, Control, Counters, Line, Outbox, Shared, Text, counted, lock};
use crate::state::LocalLog;
use crate::upload::{Outcome, Uploader, print_pretty};

/// How long the thread sleeps when nothing is pending; any event or request wakes it.
const IDLE: Duration = Duration::from_secs(3600);

/// How long the thread keeps its buffers (and the pooled tapes beyond a few) once nothing
/// is pending.
const RELEASE_AFTER: Duration = Duration::from_secs(5);

/// Runs the background thread until shutdown. A panic in here disables telemetry for the
/// process and goes no further; whatever is pending is spooled by the shutdown that follows.
pub(crate) fn run(shared: &Arc<Shared>) {
    // Its panics are contained here, not the application's: the panic hook leaves them alone.
    let _inside = crate::crash::Inside::enter();
    contain_panic(shared, || Worker::new(shared).run());
}

/// Runs `body`; if it panics, telemetry is disabled and the panic goes no further.
fn contain_panic(shared: &Shared, body: impl FnOnce()) {
    if catch_unwind(AssertUnwindSafe(body)).is_err() {
        shared.disable("its background thread panicked");
    }
}

/// Random bytes for uuids, read from the OS a block at a time.
pub(crate) struct RandomPool {
    bytes: [u8; 1024],
    used: usize,
}

impl RandomPool {
    pub(crate) fn new() -> RandomPool {
        RandomPool {
            bytes: [0; 1024],
            used: 1024,
        }
    }

    /// Ten fresh random bytes: the random part of a v7 uuid.
    pub(crate) fn take(&mut self) -> [u8; 10] {
        if self.used + 10 > self.bytes.len() {
            crate::state::fill_random(&mut self.bytes);
            self.used = 0;
        }
        let mut out = [0; 10];
        out.copy_from_slice(&self.bytes[self.used..self.used + 10]);
        self.used += 10;
        out
    }
}

enum Sink<'a> {
    Upload(Box<Uploader>),
    Local(&'a LocalLog),
    /// Local mode without a usable state directory: events can only be printed (in debug
    /// mode) and counted.
    Nowhere,
}

/// What became of a batch, as far as the accounting is concerned.
enum Settlement {
    Delivered,
    Retry(Option<Duration>),
    TooLarge,
    Rejected(u16),
    /// The local log could not take it.
    Unstorable,
}

struct Worker<'a> {
    shared: &'a Shared,
    sink: Sink<'a>,
    random: RandomPool,
    /// When the oldest unsent line arrived; a batch goes out an interval after it.
    oldest: Option<Instant>,
    /// Send without waiting for the interval (events restored from the spool waited enough).
    due_now: bool,
    /// Set after a failed attempt: nothing is sent before then.
    retry_at: Option<Instant>,
    attempts: u32,
    /// The most lines per request; halved on 413 until the lines that were too many are sent.
    batch_limit: usize,
    split_left: usize,
    reported_drops: u64,
    warned: HashSet<u16>,
    /// The most lines held in memory; older ones go to the spool.
    outbox_cap: usize,
    /// The body of the batch being sent, kept for the next one.
    body: Vec<u8>,
    /// Since when nothing has been pending.
    idle_since: Option<Instant>,
}

impl<'a> Worker<'a> {
    fn new(shared: &'a Shared) -> Worker<'a> {
        let label = format!("{} telemetry", shared.settings.app);
        let sink = match (
            &shared.settings.endpoint,
            shared.settings.mode,
            &shared.local_log,
        ) {
            (Some(endpoint), Mode::On, _) => Sink::Upload(Box::new(Uploader::new(
                endpoint,
                shared.settings.proxy.clone(),
                &shared.settings.api_key,
                &shared.settings.limits,
                shared.settings.debug.then_some(label),
            ))),
            (_, _, Some(log)) => Sink::Local(log),
            _ => Sink::Nowhere,
        };
        let limits = &shared.settings.limits;
        Worker {
            shared,
            sink,
            random: RandomPool::new(),
            oldest: None,
            due_now: false,
            retry_at: None,
            attempts: 0,
            batch_limit: limits.batch_size.max(1),
            split_left: 0,
            reported_drops: 0,
            warned: HashSet::new(),
            outbox_cap: limits.queue_capacity.max(limits.batch_size).max(1),
            body: Vec::new(),
            idle_since: None,
        }
    }

    fn run(mut self) {
        // The description of the system is read here, off the application's path.
        self.shared.common_properties();
        if !self.shared.settings.hold {
            self.restore();
        }
        let events = &self.shared.events_rx;
        let control = &self.shared.control_rx;
        let batch = self.shared.settings.limits.batch_size;
        loop {
            if lock(&self.shared.outbox).closed {
                // A shutting-down caller took the lines over; nothing is left to do.
                return;
            }
            match control.try_recv() {
                Ok(Control::Flush { until, done }) => {
                    let delivered = self.deliver_until(until, events.len());
                    let _ = done.send(delivered);
                    continue;
                }
                Ok(Control::Shutdown { until, done }) => {
                    self.accept(usize::MAX);
                    self.deliver_until(until, 0);
                    self.shared.close_and_spool();
                    let _ = done.send(());
                    return;
                }
                Err(_) => {}
            }
            // An event is taken off the queue under the outbox lock, so a shutdown closing
            // the outbox can never miss one held here.
            if !events.is_empty() {
                self.accept(self.room());
            }
            let now = Instant::now();
            if self.is_due(now) {
                self.send_batch(None);
                continue;
            }
            let wake = self.next_wake(now);
            let idle = wake.is_none() && lock(&self.shared.outbox).is_empty();
            let timeout = if idle {
                // Buffers are freed only after a while with nothing to do: a burst that
                // empties the queue for a moment finds them still there.
                let since = *self.idle_since.get_or_insert(now);
                match (since + RELEASE_AFTER).checked_duration_since(now) {
                    Some(left) if !left.is_zero() => left,
                    _ => {
                        self.release();
                        IDLE
                    }
                }
            } else {
                self.idle_since = None;
                wake.map_or(IDLE, |at| at.saturating_duration_since(now))
            };
            self.shared.doorbell.wait(timeout, idle, || {
                !control.is_empty()
                    || if idle {
                        !events.is_empty()
                    } else {
                        events.len() >= batch
                    }
            });
        }
    }

    /// Frees the buffers kept for the next batch, for when nothing is pending: a daemon that
    /// sends a batch now and then does not hold on to them in between.
    fn release(&mut self) {
        self.body = Vec::new();
        if let Sink::Upload(uploader) = &mut self.sink {
            uploader.release();
        }
        self.shared.tapes.trim(crate::pipeline::IDLE_TAPES);
    }

    /// Reads the spool left by earlier processes into the outbox.
    fn restore(&mut self) {
        let Some(spool) = &self.shared.spool else {
            return;
        };
        let claimed = spool.claim(self.outbox_cap);
        let mut outbox = lock(&self.shared.outbox);
        if outbox.closed {
            // Shut down already: leave the files, unsettled, for the next process.
            return;
        }
        let counters = &self.shared.counters;
        let restored = claimed.lines.iter().filter(|line| line.counted).count() as u64;
        Counters::add(&counters.restored, restored + claimed.discarded);
        Counters::add(&counters.discarded, claimed.discarded);
        if claimed.lines.is_empty() {
            return;
        }
        for line in claimed.lines {
            outbox.push_back(Line {
                text: Text::Json(line.json),
                counted: line.counted,
                origin: Some(line.claim),
            });
        }
        self.oldest = Some(Instant::now());
        self.due_now = true;
    }

    /// How many more events the outbox should take from the queue. While batches are being
    /// delivered, enough for the next two: the rest wait in the queue, and once that is full
    /// further captures are dropped and counted. Holding more would only delay them, and
    /// take memory that a burst of captures then has to allocate afresh. While the endpoint
    /// is failing (or a first run holds its events), all of them: the oldest lines beyond the
    /// outbox's bound go to the spool for a later process.
    fn room(&self) -> usize {
        if self.attempts > 0 || self.shared.settings.hold {
            return usize::MAX;
        }
        (2 * self.batch_limit).saturating_sub(lock(&self.shared.outbox).len())
    }

    /// Moves up to `most` queued events into the outbox, but never more than were queued when
    /// it started, so a steady stream of captures cannot keep it here; how many it moved.
    /// Accepting an event only moves it: its JSON is written when it is sent or spooled.
    fn accept(&mut self, most: usize) -> usize {
        let limits = &self.shared.settings.limits;
        let mut outbox = lock(&self.shared.outbox);
        if outbox.closed {
            return 0;
        }
        let most = most.min(self.shared.events_rx.len());
        let mut accepted = 0;
        while accepted < most {
            let Some(captured) = self.shared.take_queued() else {
                break;
            };
            outbox.push_back(Line::recorded(captured, self.random.take()));
            accepted += 1;
        }
        if !outbox.is_empty() {
            self.oldest.get_or_insert_with(Instant::now);
        }
        // Memory stays bounded: the oldest lines beyond the limits go to the spool, in one
        // write.
        let mut spill = outbox.len().saturating_sub(self.outbox_cap);
        let mut bytes = outbox.bytes() - outbox.lines().take(spill).map(Line::size).sum::<usize>();
        for line in outbox.lines().skip(spill) {
            if bytes <= limits.max_buffer_bytes {
                break;
            }
            bytes -= line.size();
            spill += 1;
        }
        let problem = self.shared.store(outbox.take_front(spill));
        drop(outbox);
        if let Some(problem) = problem {
            log::warn!("{problem}");
        }
        accepted
    }

    fn next_wake(&self, now: Instant) -> Option<Instant> {
        let outbox = lock(&self.shared.outbox);
        if outbox.closed || outbox.is_empty() || self.shared.settings.hold {
            // A first run that holds its events sends nothing: shutdown spools them.
            return None;
        }
        if let Some(at) = self.retry_at {
            return Some(at);
        }
        if self.due_now || outbox.len() >= self.batch_limit {
            return Some(now);
        }
        self.oldest
            .and_then(|oldest| oldest.checked_add(self.shared.settings.limits.flush_interval))
    }

    fn is_due(&self, now: Instant) -> bool {
        self.next_wake(now).is_some_and(|at| at <= now)
    }

    /// Sends until nothing is pending or `until` passes, taking up to `backlog` more events
    /// from the queue as the outbox has room; whether everything was delivered.
    fn deliver_until(&mut self, until: Instant, mut backlog: usize) -> bool {
        loop {
            if backlog > 0 {
                let room = self.room();
                backlog -= self.accept(backlog.min(room));
                if self.shared.events_rx.is_empty() {
                    backlog = 0;
                }
            }
            {
                let outbox = lock(&self.shared.outbox);
                if outbox.closed || outbox.is_empty() || self.shared.settings.hold {
                    return outbox.is_empty() && backlog == 0;
                }
            }
            let now = Instant::now();
            if until.saturating_duration_since(now) < Duration::from_millis(1) {
                return false;
            }
            if let Some(at) = self.retry_at {
                if at > until {
                    return false;
                }
                std::thread::sleep(at.saturating_duration_since(now));
            }
            self.send_batch(Some(until));
        }
    }

    /// Puts the pipeline's own report of events dropped since the last one at the front of
    /// the outbox, so that the loss is visible upstream.
    fn report_drops(&mut self) {
        let counters = &self.shared.counters;
        let get = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
        let (queue_full, unencodable, too_large) = (
            get(&counters.queue_full),
            get(&counters.unencodable),
            get(&counters.too_large),
        );
        let dropped = queue_full + unencodable + too_large;
        if dropped <= self.reported_drops {
            return;
        }
        let report = TelemetryDropped {
            dropped: dropped - self.reported_drops,
            queue_full,
            unencodable,
            too_large,
        };
        let mut properties = crate::json::JsonBuf::tape(crate::json::Tape::default());
        crate::event::write_properties(
            &report,
            &mut properties,
            &self.shared.settings.identity.key,
        );
        let Ok(properties) = properties
            .finish_tape()
            .map(crate::pipeline::Properties::of)
        else {
            return;
        };
        let report = Captured {
            name: <TelemetryDropped as crate::TelemetryEvent>::SCHEMA.name,
            at: std::time::SystemTime::now(),
            properties,
        };
        let mut line = Line::recorded(report, self.random.take());
        line.counted = false;
        let mut outbox = lock(&self.shared.outbox);
        if !outbox.closed {
            outbox.push_front(line);
            self.reported_drops = dropped;
        }
    }

    /// Writes the JSON of the lines at the front of the outbox into `out`, as many as make a
    /// batch: at most `batch_limit` lines and `max_batch_bytes` (but at least one line), with
    /// commas between them if `comma`. A line at the front too large to be sent is dropped and
    /// counted. Returns where each line's JSON is in `out`.
    fn write_front(
        &self,
        outbox: &mut Outbox,
        out: &mut Vec<u8>,
        comma: bool,
    ) -> Vec<(usize, usize)> {
        let max_bytes = self.shared.settings.limits.max_batch_bytes;
        let base = out.len();
        let mut spans = Vec::new();
        while spans.len() < self.batch_limit {
            let Some(line) = outbox.get(spans.len()) else {
                break;
            };
            let mark = out.len();
            if comma && !spans.is_empty() {
                out.push(b',');
            }
            let start = out.len();
            if !self.shared.write_line(line, out) {
                out.truncate(mark);
                if !spans.is_empty() {
                    // Sent first, in a batch of its own, and dropped then.
                    break;
                }
                let dropped = outbox.take_front(1);
                Counters::add(&self.shared.counters.too_large, counted(&dropped));
                self.shared.settle(dropped);
                continue;
            }
            if !spans.is_empty() && out.len() - base > max_bytes {
                out.truncate(mark);
                break;
            }
            spans.push((start, out.len()));
        }
        spans
    }

    /// Sends one batch from the front of the outbox.
    fn send_batch(&mut self, until: Option<Instant>) {
        self.report_drops();
        let limits = &self.shared.settings.limits;
        // The batch is written under the lock, which is never held across the network or a
        // write to stderr, so a shutting-down caller can always take the lines over.
        let mut body = std::mem::take(&mut self.body);
        body.clear();
        let spans = {
            let mut outbox = lock(&self.shared.outbox);
            match &self.sink {
                _ if outbox.closed => Vec::new(),
                Sink::Upload(uploader) => {
                    uploader.begin_body(&mut body);
                    let spans = self.write_front(&mut outbox, &mut body, true);
                    uploader.end_body(&mut body);
                    spans
                }
                Sink::Local(_) | Sink::Nowhere => self.write_front(&mut outbox, &mut body, false),
            }
        };
        let count = spans.len();
        if count == 0 {
            // Closed, or nothing left once lines too large to send were dropped.
            self.body = body;
            return;
        }
        let texts: Vec<&str> = match self.sink {
            Sink::Upload(_) => Vec::new(),
            Sink::Local(_) | Sink::Nowhere => spans
                .iter()
                .map(|&(start, end)| {
                    std::str::from_utf8(&body[start..end]).expect("the encoder writes UTF-8")
                })
                .collect(),
        };
        let settlement = match &mut self.sink {
            Sink::Upload(uploader) => {
                let timeout = until.map_or(limits.request_timeout, |until| {
                    until
                        .saturating_duration_since(Instant::now())
                        .min(limits.request_timeout)
                });
                match uploader.post(&body, timeout) {
                    Outcome::Delivered => Settlement::Delivered,
                    Outcome::Retry { after, reason } => {
                        log::debug!("telemetry upload failed: {reason}");
                        Settlement::Retry(after)
                    }
                    Outcome::TooLarge => Settlement::TooLarge,
                    Outcome::Rejected { status } => Settlement::Rejected(status),
                }
            }
            Sink::Local(log) if self.shared.settings.debug => {
                let label = format!("{} telemetry (local)", self.shared.settings.app);
                let destination = log.path().display().to_string();
                for text in &texts {
                    print_pretty(&label, &destination, text.as_bytes());
                }
                Settlement::Delivered
            }
            Sink::Local(_) => Settlement::Delivered,
            Sink::Nowhere => {
                if self.shared.settings.debug {
                    let label = format!("{} telemetry (not recorded)", self.shared.settings.app);
                    for text in &texts {
                        print_pretty(&label, "nowhere", text.as_bytes());
                    }
                }
                Settlement::Unstorable
            }
        };
        self.settle(count, settlement, &texts);
        drop(texts);
        self.body = body;
    }

    /// Applies what happened to the first `count` lines, all under one lock, so that a
    /// shutdown sees them either still pending or fully settled.
    /// `texts` are the lines' JSON, for the local log.
    fn settle(&mut self, count: usize, settlement: Settlement, texts: &[&str]) {
        let problem = self.settle_locked(count, settlement, texts);
        // Logged after the lock is released: a logger may call back into telemetry.
        if let Some(problem) = problem {
            log::warn!("{problem}");
        }
    }

    fn settle_locked(
        &mut self,
        count: usize,
        settlement: Settlement,
        texts: &[&str],
    ) -> Option<String> {
        let shared = self.shared;
        let counters = &shared.counters;
        let mut outbox = lock(&shared.outbox);
        if outbox.closed {
            // A shutting-down caller spooled these lines, the batch in flight included.
            return None;
        }
        match settlement {
            Settlement::Delivered => {
                let lines = outbox.take_front(count);
                let result = match &self.sink {
                    Sink::Local(log) => log.append(texts.iter().copied()),
                    _ => Ok(()),
                };
                let problem = match result {
                    Ok(()) => {
                        Counters::add(&counters.delivered, counted(&lines));
                        None
                    }
                    Err(error) => {
                        Counters::add(&counters.unstorable, counted(&lines));
                        Some(format!("could not write the local telemetry log: {error}"))
                    }
                };
                shared.settle(lines);
                self.attempts = 0;
                self.retry_at = None;
                self.due_now = false;
                if self.split_left > 0 {
                    self.split_left = self.split_left.saturating_sub(count);
                    if self.split_left == 0 {
                        self.batch_limit = shared.settings.limits.batch_size.max(1);
                    }
                }
                self.oldest = (!outbox.is_empty()).then(Instant::now);
                problem
            }
            Settlement::Retry(after) => {
                self.attempts += 1;
                if self.attempts >= shared.settings.limits.max_attempts {
                    // Not retried forever: a later process sends it.
                    let lines = outbox.take_front(count);
                    self.attempts = 0;
                    self.retry_at = None;
                    shared.store(lines)
                } else {
                    let wait = backoff(&shared.settings.limits, self.attempts, &mut self.random);
                    let wait = after.map_or(wait, |after| after.max(wait));
                    self.retry_at = Some(crate::pipeline::after(wait));
                    None
                }
            }
            Settlement::TooLarge if count > 1 => {
                self.batch_limit = (count / 2).max(1);
                self.split_left = self.split_left.max(count);
                None
            }
            Settlement::TooLarge | Settlement::Rejected(_) => {
                let status = match settlement {
                    Settlement::Rejected(status) => status,
                    _ => 413,
                };
                let lines = outbox.take_front(count);
                Counters::add(&counters.rejected, counted(&lines));
                shared.settle(lines);
                self.attempts = 0;
                self.retry_at = None;
                self.warned.insert(status).then(|| {
                    format!(
                        "{} telemetry: the server refused a batch with HTTP {status}; \
                         its events were dropped (check the API key and endpoint)",
                        shared.settings.app
                    )
                })
            }
            Settlement::Unstorable => {
                let lines = outbox.take_front(count);
                Counters::add(&counters.unstorable, counted(&lines));
                shared.settle(lines);
                None
            }
        }
    }
}

/// Exponential backoff with jitter: attempt `n` waits between half and all of
/// `base · 2^(n-1)`, capped at the maximum.
fn backoff(limits: &crate::config::Limits, attempt: u32, random: &mut RandomPool) -> Duration {
    let exponent = attempt.saturating_sub(1).min(20);
    let full = limits
        .backoff_base
        .saturating_mul(1 << exponent)
        .min(limits.backoff_max);
    let bytes = random.take();
    let fraction = f64::from(u16::from_le_bytes([bytes[0], bytes[1]])) / f64::from(u16::MAX);
    full.mul_f64(0.5 + 0.5 * fraction)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_stays_within_its_bounds() {
        let limits = crate::config::Limits {
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_secs(1),
            ..Default::default()
        };
        let mut random = RandomPool::new();
        for _ in 0..100 {
            let first = backoff(&limits, 1, &mut random);
            assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
            let third = backoff(&limits, 3, &mut random);
            assert!(third >= Duration::from_millis(200) && third <= Duration::from_millis(400));
            let late = backoff(&limits, 40, &mut random);
            assert!(late >= Duration::from_millis(500) && late <= Duration::from_secs(1));
        }
    }

    /// An event with one counter.
    #[derive(crate::TelemetryEvent)]
    #[telemetry(crate = crate)]
    struct Ticked {
        n: u32,
    }

    #[test]
    fn a_panic_in_the_background_disables_telemetry_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let shared = Shared::new(crate::pipeline::Settings::local_for_tests(dir.path()));
        contain_panic(&shared, || panic!("a bug in the background thread"));
        assert!(!shared.is_open());
        shared.capture(&Ticked { n: 1 });
        assert_eq!(shared.counters.ignored.load(Ordering::Relaxed), 1);
        assert_eq!(shared.counters.captured.load(Ordering::Relaxed), 0);
        shared.shutdown(crate::pipeline::after(Duration::from_secs(1)), true);
        assert!(!dir.path().join(crate::state::LOG_FILE).exists());
    }

    #[test]
    fn random_bytes_do_not_repeat() {
        let mut random = RandomPool::new();
        let seen: HashSet<[u8; 10]> = (0..1000).map(|_| random.take()).collect();
        assert_eq!(seen.len(), 1000);
    }
}
