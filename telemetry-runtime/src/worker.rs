//! The background thread: batches queued events and hands them to the sink (PostHog, or the
//! local log), retrying what may succeed later and spooling what is still pending at the end.

use std::collections::{HashSet, VecDeque};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crossbeam_channel::select;

use crate::consent::Mode;
use crate::pipeline::{Captured, Control, Counters, Line, Shared, lock};
use crate::state::LocalLog;
use crate::upload::{Outcome, Uploader, print_pretty};

/// How long the thread sleeps when nothing is pending; any event or request wakes it.
const IDLE: Duration = Duration::from_secs(3600);

/// Runs the background thread until shutdown. A panic in here disables telemetry for the
/// process and goes no further; whatever is pending is spooled by the shutdown that follows.
pub(crate) fn run(shared: &Arc<Shared>) {
    let result = catch_unwind(AssertUnwindSafe(|| Worker::new(shared).run()));
    if result.is_err() {
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
            if getrandom::fill(&mut self.bytes).is_err() {
                // No OS randomness: std's per-process random hash keys still make uuids that
                // differ between processes; the counter makes them differ within one.
                use std::hash::BuildHasher as _;
                let state = std::collections::hash_map::RandomState::new();
                for (i, chunk) in self.bytes.chunks_mut(8).enumerate() {
                    let word = state.hash_one(i).to_le_bytes();
                    chunk.copy_from_slice(&word[..chunk.len()]);
                }
            }
            self.used = 0;
        }
        let mut out = [0; 10];
        out.copy_from_slice(&self.bytes[self.used..self.used + 10]);
        self.used += 10;
        out
    }
}

enum Sink<'a> {
    Upload(Uploader),
    Local(&'a LocalLog),
    /// Local mode without a usable state directory: events can only be printed (in debug
    /// mode) and counted.
    Nowhere,
}

struct Worker<'a> {
    shared: &'a Shared,
    sink: Sink<'a>,
    random: RandomPool,
    /// When the oldest unsent line arrived; a batch goes out an interval after it.
    oldest: Option<Instant>,
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
}

impl<'a> Worker<'a> {
    fn new(shared: &'a Shared) -> Worker<'a> {
        let label = format!("{} telemetry", shared.app);
        let sink = match (&shared.endpoint, shared.mode, &shared.local_log) {
            (Some(endpoint), Mode::On, _) => Sink::Upload(Uploader::new(
                endpoint,
                shared.proxy.clone(),
                &shared.api_key,
                &shared.limits,
                shared.debug.then_some(label),
            )),
            (_, _, Some(log)) => Sink::Local(log),
            _ => Sink::Nowhere,
        };
        let limits = &shared.limits;
        Worker {
            shared,
            sink,
            random: RandomPool::new(),
            oldest: None,
            retry_at: None,
            attempts: 0,
            batch_limit: limits.batch_size.max(1),
            split_left: 0,
            reported_drops: 0,
            warned: HashSet::new(),
            outbox_cap: limits.queue_capacity.max(limits.batch_size).max(1),
        }
    }

    fn run(mut self) {
        self.restore();
        loop {
            let now = Instant::now();
            let timeout = self
                .next_wake(now)
                .map_or(IDLE, |at| at.saturating_duration_since(now));
            select! {
                recv(self.shared.events_rx) -> captured => {
                    if let Ok(captured) = captured {
                        self.accept(&captured);
                        self.drain_queue(self.batch_limit);
                    }
                }
                recv(self.shared.control_rx) -> control => match control {
                    Ok(Control::Flush { until, done }) => {
                        self.drain_queue(usize::MAX);
                        let delivered = self.deliver_until(until);
                        let _ = done.send(delivered);
                    }
                    Ok(Control::Shutdown { until, done }) => {
                        self.drain_queue(usize::MAX);
                        self.deliver_until(until);
                        self.shared.close_and_spool();
                        let _ = done.send(());
                        return;
                    }
                    Err(_) => return,
                },
                default(timeout) => {}
            }
            if self.is_due(Instant::now()) {
                self.send_batch(None);
            }
        }
    }

    /// Reads the spool left by earlier processes into the outbox.
    fn restore(&mut self) {
        let Some(spool) = &self.shared.spool else {
            return;
        };
        let claimed = spool.claim(self.outbox_cap);
        let counters = &self.shared.counters;
        Counters::add(
            &counters.restored,
            claimed.lines.len() as u64 + claimed.discarded,
        );
        Counters::add(&counters.discarded, claimed.discarded);
        if claimed.lines.is_empty() {
            return;
        }
        let mut outbox = lock(&self.shared.outbox);
        outbox
            .lines
            .extend(claimed.lines.into_iter().map(|(json, claim)| Line {
                json,
                counted: true,
                origin: Some(claim),
            }));
        // What was spooled waited long enough: send it now, not an interval from now.
        self.oldest = Some(Instant::now() - self.shared.limits.flush_interval);
    }

    fn accept(&mut self, captured: &Captured) {
        let line = self.shared.assemble(captured, self.random.take());
        let mut outbox = lock(&self.shared.outbox);
        if outbox.closed {
            return;
        }
        outbox.lines.push_back(line);
        self.oldest.get_or_insert_with(Instant::now);
        if outbox.lines.len() > self.outbox_cap {
            // The sink is not keeping up: keep memory bounded by moving the oldest lines to
            // the spool.
            let spill = self.shared.limits.batch_size.min(outbox.lines.len());
            let lines: VecDeque<Line> = outbox.lines.drain(..spill).collect();
            self.shared.store(lines);
        }
    }

    fn drain_queue(&mut self, most: usize) {
        for _ in 0..most {
            match self.shared.events_rx.try_recv() {
                Ok(captured) => self.accept(&captured),
                Err(_) => break,
            }
        }
    }

    fn pending(&self) -> usize {
        lock(&self.shared.outbox).lines.len()
    }

    fn next_wake(&self, now: Instant) -> Option<Instant> {
        let pending = self.pending();
        if pending == 0 {
            return None;
        }
        if let Some(at) = self.retry_at {
            return Some(at);
        }
        if pending >= self.batch_limit {
            return Some(now);
        }
        self.oldest
            .map(|oldest| oldest + self.shared.limits.flush_interval)
    }

    fn is_due(&self, now: Instant) -> bool {
        self.next_wake(now).is_some_and(|at| at <= now)
    }

    /// Sends until nothing is pending or `until` passes; whether everything was delivered.
    fn deliver_until(&mut self, until: Instant) -> bool {
        loop {
            if self.pending() == 0 {
                return true;
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

    /// Appends the pipeline's own report of events dropped since the last one, so that the
    /// loss is visible upstream.
    fn report_drops(&mut self) {
        let counters = &self.shared.counters;
        let dropped = counters.queue_full.load(Ordering::Relaxed)
            + counters.unencodable.load(Ordering::Relaxed)
            + counters.too_large.load(Ordering::Relaxed);
        if dropped <= self.reported_drops {
            return;
        }
        let properties = format!(
            "{{\"dropped\":{},\"queue_full\":{},\"unencodable\":{},\"too_large\":{}}}",
            dropped - self.reported_drops,
            counters.queue_full.load(Ordering::Relaxed),
            counters.unencodable.load(Ordering::Relaxed),
            counters.too_large.load(Ordering::Relaxed),
        );
        self.reported_drops = dropped;
        let report = Captured {
            name: "telemetry_dropped",
            at: std::time::SystemTime::now(),
            properties: properties.into_bytes(),
        };
        let mut line = self.shared.assemble(&report, self.random.take());
        line.counted = false;
        lock(&self.shared.outbox).lines.push_front(line);
    }

    /// Sends one batch from the front of the outbox.
    fn send_batch(&mut self, until: Option<Instant>) {
        self.report_drops();
        let limits = &self.shared.limits;
        let outcome = {
            let outbox = lock(&self.shared.outbox);
            if outbox.closed || outbox.lines.is_empty() {
                return;
            }
            let mut count = 0;
            let mut bytes = 0;
            for line in outbox.lines.iter().take(self.batch_limit) {
                if count > 0 && bytes + line.json.len() > limits.max_batch_bytes {
                    break;
                }
                bytes += line.json.len() + 1;
                count += 1;
            }
            let lines = || outbox.lines.iter().take(count).map(|line| line.json.as_str());
            match &self.sink {
                Sink::Upload(uploader) => {
                    let body = uploader.body(lines());
                    // Never hold the lock across the network: a shutting-down caller must be
                    // able to take the lines over.
                    drop(outbox);
                    let timeout = until.map_or(limits.request_timeout, |until| {
                        until
                            .saturating_duration_since(Instant::now())
                            .min(limits.request_timeout)
                    });
                    (count, uploader.post(&body, timeout))
                }
                Sink::Local(log) => {
                    if self.shared.debug {
                        for line in lines() {
                            let label = format!("{} telemetry (local)", self.shared.app);
                            print_pretty(&label, &log.path().display().to_string(), line.as_bytes());
                        }
                    }
                    match log.append(lines()) {
                        Ok(()) => (count, Outcome::Delivered),
                        Err(error) => {
                            log::warn!("could not write the local telemetry log: {error}");
                            (count, Outcome::Rejected { status: 0 })
                        }
                    }
                }
                Sink::Nowhere => {
                    if self.shared.debug {
                        let label = format!("{} telemetry (not recorded)", self.shared.app);
                        for line in lines() {
                            print_pretty(&label, "nowhere", line.as_bytes());
                        }
                    }
                    (count, Outcome::Rejected { status: 0 })
                }
            }
        };
        self.settle(outcome.0, outcome.1);
    }

    fn settle(&mut self, count: usize, outcome: Outcome) {
        let counters = &self.shared.counters;
        match outcome {
            Outcome::Delivered => {
                let sent = self.take_front(count);
                Counters::add(&counters.delivered, counted(&sent));
                self.attempts = 0;
                self.retry_at = None;
                if self.split_left > 0 {
                    self.split_left = self.split_left.saturating_sub(count);
                    if self.split_left == 0 {
                        self.batch_limit = self.shared.limits.batch_size.max(1);
                    }
                }
                self.oldest = (self.pending() > 0).then(Instant::now);
            }
            Outcome::Retry { after, reason } => {
                self.attempts += 1;
                log::debug!("telemetry upload failed ({reason}), attempt {}", self.attempts);
                if self.attempts >= self.shared.limits.max_attempts {
                    log::debug!("telemetry upload keeps failing; spooling {count} events");
                    let lines = self.take_front(count);
                    self.shared.store(lines);
                    self.attempts = 0;
                    self.retry_at = None;
                } else {
                    let wait = backoff(&self.shared.limits, self.attempts, &mut self.random);
                    self.retry_at = Some(Instant::now() + after.map_or(wait, |after| after.max(wait)));
                }
            }
            Outcome::TooLarge if count > 1 => {
                self.batch_limit = (count / 2).max(1);
                self.split_left = self.split_left.max(count);
            }
            Outcome::TooLarge | Outcome::Rejected { .. } => {
                let status = match outcome {
                    Outcome::Rejected { status } => status,
                    _ => 413,
                };
                let dropped = self.take_front(count);
                Counters::add(&counters.rejected, counted(&dropped));
                if status != 0 && self.warned.insert(status) {
                    log::warn!(
                        "{} telemetry: the server refused a batch with HTTP {status}; \
                         its events were dropped (check the API key and endpoint)",
                        self.shared.app
                    );
                }
                self.attempts = 0;
                self.retry_at = None;
            }
        }
    }

    /// Removes the first `count` lines, unless a shutting-down caller took them over.
    fn take_front(&self, count: usize) -> VecDeque<Line> {
        let mut outbox = lock(&self.shared.outbox);
        if outbox.closed {
            return VecDeque::new();
        }
        let count = count.min(outbox.lines.len());
        outbox.lines.drain(..count).collect()
    }
}

fn counted(lines: &VecDeque<Line>) -> u64 {
    lines.iter().filter(|line| line.counted).count() as u64
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

    #[test]
    fn random_bytes_do_not_repeat() {
        let mut random = RandomPool::new();
        let seen: HashSet<[u8; 10]> = (0..1000).map(|_| random.take()).collect();
        assert_eq!(seen.len(), 1000);
    }
}
