//! Fault injection: the pipeline against servers on 127.0.0.1 that fail in every way a network
//! or a receiver can, and then against a healthy one.
//!
//! For each fault: every `capture` returns at once, shutdown returns within its deadline plus a
//! small margin, nothing panics, the accounting holds
//! (`captured + restored == delivered + dropped + spooled`), and once a healthy receiver is back,
//! every event that was neither delivered nor dropped arrives there exactly once.
//!
//! Memory is bounded: this binary counts every allocation, and each scenario checks the peak
//! of live heap bytes (of the whole binary, test servers and all) against [`MEMORY_BOUND`].
//! The same faults then run against whole processes, which must exit within their flush
//! deadline plus a margin.

#[path = "support/heap.rs"]
mod heap;
mod support;

use std::collections::HashSet;
use std::io::{Read as _, Write as _};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use support::{Receiver, Reply, assert_accounted, builder, job, refused_origin};

/// How long a shutdown may take against a failing server.
const DEADLINE: Duration = Duration::from_millis(1500);
/// What a shutdown may take beyond its deadline: a request already sent is given up at the
/// deadline, and writing the spool takes milliseconds. Generous, for slow CI machines.
const MARGIN: Duration = Duration::from_millis(1000);
/// What one `capture` may take: it never waits for the network. Generous, for the same reason.
const PROMPT: Duration = Duration::from_millis(200);
/// Events captured per scenario.
const EVENTS: u32 = 40;
/// The most heap this whole test binary may hold at once: two scenarios run at a time, each
/// with a pipeline, its servers and a healthy receiver. A client that read a hostile
/// response into memory would pass this within milliseconds on loopback.
const MEMORY_BOUND: usize = 8 << 20;

#[global_allocator]
static ALLOCATOR: heap::Counting = heap::Counting;

fn assert_memory_bounded(name: &str) {
    let peak = heap::peak();
    assert!(
        peak < MEMORY_BOUND,
        "{name}: the heap peaked at {} KiB",
        peak >> 10
    );
}

/// How a raw server misbehaves once it has read a request.
#[derive(Clone, Copy, Debug)]
enum Misbehaviour {
    /// Sends part of a response's status line, then resets the connection.
    ResetInStatus,
    /// Sends a `200` status and part of the body, then resets the connection.
    ResetInBody,
    /// Reads the request and never answers (the connection stays open).
    NeverAnswers,
    /// Answers a valid response one byte per second.
    OneBytePerSecond,
    /// Answers bytes that are not HTTP at all, then closes.
    Garbage,
    /// Answers like another protocol's server, then closes.
    NotHttp,
    /// Answers `200` with a body of 100 GB, sent as fast as the client reads it.
    HugeBody,
    /// Answers a status line and then header lines without end.
    EndlessHeaders,
}

/// A TCP server on 127.0.0.1 that reads each request and then misbehaves.
struct RawServer {
    origin: String,
    address: std::net::SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl RawServer {
    fn start(how: Misbehaviour) -> RawServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let address = listener.local_addr().expect("an address");
        let origin = format!("http://{address}");
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut held = Vec::new();
            let mut workers = Vec::new();
            for stream in listener.incoming() {
                // Dropping the server sets `stop`, then connects to wake this loop.
                if stopping.load(Ordering::Relaxed) {
                    break;
                }
                match stream {
                    Ok(stream) => {
                        let stopping = Arc::clone(&stopping);
                        match how {
                            Misbehaviour::NeverAnswers => {
                                let mut stream = stream;
                                read_request(&mut stream);
                                held.push(stream);
                            }
                            _ => workers.push(std::thread::spawn(move || {
                                misbehave(stream, how, &stopping);
                            })),
                        }
                    }
                    Err(_) => break,
                }
            }
            drop(held);
            for worker in workers {
                let _ = worker.join();
            }
        });
        RawServer {
            origin,
            address,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for RawServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = TcpStream::connect(self.address);
            let _ = thread.join();
        }
    }
}

/// Reads one HTTP request: its head and a body of `Content-Length` bytes.
fn read_request(stream: &mut TcpStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut data = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&data[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length:"))
                .and_then(|value| value.trim().parse().ok())
                .unwrap_or(0);
            if data.len() >= end + 4 + length {
                return;
            }
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => data.extend_from_slice(&chunk[..n]),
        }
    }
}

fn misbehave(mut stream: TcpStream, how: Misbehaviour, stop: &AtomicBool) {
    if let Misbehaviour::ResetInStatus | Misbehaviour::ResetInBody = how {
        // Closing a socket with unread data resets the connection: read only the start of the
        // request, make sure more of it has arrived, and answer the start of a response.
        let mut start = [0u8; 16];
        let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
        let _ = stream.read_exact(&mut start);
        let _ = stream.peek(&mut start[..1]);
        let partial: &[u8] = match how {
            Misbehaviour::ResetInStatus => b"HTTP/1.1 20",
            _ => b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"sta",
        };
        let _ = stream.write_all(partial);
        drop(stream);
        return;
    }
    read_request(&mut stream);
    match how {
        Misbehaviour::ResetInStatus | Misbehaviour::ResetInBody => {}
        Misbehaviour::OneBytePerSecond => {
            let response = b"HTTP/1.1 200 OK\r\nContent-Length: 15\r\n\r\n{\"status\":\"Ok\"}";
            for byte in response {
                if stop.load(Ordering::Relaxed) || stream.write_all(&[*byte]).is_err() {
                    return;
                }
                std::thread::park_timeout(Duration::from_secs(1));
            }
        }
        Misbehaviour::Garbage => {
            let _ = stream.write_all(&[0x00, 0xff, 0x13, 0x37, b'\n', 0xfe, 0x80, b'\r', b'\n']);
            let _ = stream.shutdown(Shutdown::Both);
        }
        Misbehaviour::NotHttp => {
            let _ = stream.write_all(b"SSH-2.0-OpenSSH_9.6\r\n");
            let _ = stream.shutdown(Shutdown::Both);
        }
        Misbehaviour::HugeBody => {
            let head = b"HTTP/1.1 200 OK\r\nContent-Length: 100000000000\r\n\r\n";
            flood(&mut stream, head, &[b'x'; 64 << 10], stop);
        }
        Misbehaviour::EndlessHeaders => {
            let line = [b"X-Padding: ".as_slice(), &[b'x'; 1000], b"\r\n"].concat();
            flood(&mut stream, b"HTTP/1.1 200 OK\r\n", &line, stop);
        }
        Misbehaviour::NeverAnswers => {}
    }
}

/// Writes `head`, then `chunk` again and again until the client goes away or the server stops.
fn flood(stream: &mut TcpStream, head: &[u8], chunk: &[u8], stop: &AtomicBool) {
    if stream.write_all(head).is_err() {
        return;
    }
    while !stop.load(Ordering::Relaxed) && stream.write_all(chunk).is_ok() {}
}

/// What the failing endpoint is.
enum Fault {
    /// Every request answered with this status and these headers.
    Status(u16, Vec<(&'static str, String)>),
    Raw(Misbehaviour),
    Refused,
    /// A host under `.invalid`, which never resolves.
    Unresolvable,
}

impl Fault {
    /// Starts what the fault needs and returns its origin, and what must live as long as it.
    fn start(self) -> (String, Option<Receiver>, Option<RawServer>) {
        match self {
            Fault::Status(status, headers) => {
                let receiver = Receiver::start(move |_, _| Reply {
                    headers: headers.clone(),
                    ..Reply::status(status)
                });
                (receiver.origin.clone(), Some(receiver), None)
            }
            Fault::Raw(how) => {
                let server = RawServer::start(how);
                (server.origin.clone(), None, Some(server))
            }
            Fault::Refused => (refused_origin(), None, None),
            Fault::Unresolvable => ("https://telemetry.invalid".to_owned(), None, None),
        }
    }
}

/// What the scenario's events must have come to after the failing run.
#[derive(Debug, PartialEq)]
enum Fate {
    /// Refused for good by the server: dropped, counted as rejected.
    Rejected,
    /// Kept for a later process: spooled, none dropped.
    Spooled,
    /// Accepted by the server: its `200` came before the failure.
    Delivered,
    /// Each batch either delivered or spooled; none dropped.
    DeliveredOrSpooled,
}

fn scenario(name: &str, fault: Fault, fate: Fate) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    // The failing run.
    let stats = {
        let (origin, _receiver, _server) = fault.start();
        let guard = builder(Some(&origin), dir.path(), &[])
            .connect_timeout(Duration::from_millis(500))
            .request_timeout(Duration::from_millis(700))
            .flush_deadline(DEADLINE)
            .max_attempts(3)
            .batch_size(10)
            // Batches go out as they fill, while the events are still being captured.
            .flush_interval(Duration::from_millis(20))
            .start();
        let telemetry = guard.handle();
        for n in 0..EVENTS {
            let start = Instant::now();
            telemetry.capture(&job(n));
            assert!(
                start.elapsed() < PROMPT,
                "{name}: capture took {:?}",
                start.elapsed()
            );
        }
        let start = Instant::now();
        let stats = guard.shutdown(DEADLINE);
        assert!(
            start.elapsed() < DEADLINE + MARGIN,
            "{name}: shutdown took {:?}",
            start.elapsed()
        );
        stats
    };
    assert_accounted(&stats);
    assert_memory_bounded(name);
    assert_eq!(stats.captured, u64::from(EVENTS), "{name}: {stats:?}");
    match fate {
        Fate::Rejected => {
            assert_eq!(
                stats.dropped.rejected,
                u64::from(EVENTS),
                "{name}: {stats:?}"
            );
            assert_eq!(stats.spooled, 0, "{name}: {stats:?}");
        }
        Fate::Spooled => {
            assert_eq!(stats.dropped.total(), 0, "{name}: {stats:?}");
            assert_eq!(stats.spooled, u64::from(EVENTS), "{name}: {stats:?}");
        }
        Fate::Delivered => {
            assert_eq!(stats.delivered, u64::from(EVENTS), "{name}: {stats:?}");
        }
        Fate::DeliveredOrSpooled => {
            assert_eq!(stats.dropped.total(), 0, "{name}: {stats:?}");
        }
    }

    // The next run, against a healthy receiver, delivers what was spooled, each event once.
    let healthy = Receiver::healthy();
    let guard = builder(Some(&healthy.origin), dir.path(), &[]).start();
    let next = guard.shutdown(Duration::from_secs(30));
    assert_accounted(&next);
    assert_eq!(next.restored, stats.spooled, "{name}: {next:?}");
    assert_eq!(next.delivered, next.restored, "{name}: {next:?}");
    let uuids: Vec<String> = healthy
        .received()
        .iter()
        .flat_map(support::Request::app_uuids)
        .collect();
    let distinct: HashSet<&String> = uuids.iter().collect();
    assert_eq!(
        distinct.len(),
        uuids.len(),
        "{name}: an event arrived twice"
    );
    assert_eq!(uuids.len() as u64, stats.spooled, "{name}");
    assert_memory_bounded(name);
}

#[test]
fn server_errors_keep_the_events_for_the_next_run() {
    for status in [500, 502, 503] {
        scenario(
            &format!("{status}"),
            Fault::Status(status, Vec::new()),
            Fate::Spooled,
        );
    }
}

#[test]
fn rate_limiting_keeps_the_events_for_the_next_run() {
    scenario("429", Fault::Status(429, Vec::new()), Fate::Spooled);
    scenario(
        "429 with Retry-After",
        Fault::Status(429, vec![("Retry-After", "1".to_owned())]),
        Fate::Spooled,
    );
    // A Retry-After longer than the process has left: the events wait in the spool.
    scenario(
        "429 with a long Retry-After",
        Fault::Status(429, vec![("Retry-After", "3600".to_owned())]),
        Fate::Spooled,
    );
}

#[test]
fn refusals_for_good_drop_and_count_the_events() {
    for status in [400, 401, 413] {
        scenario(
            &format!("{status}"),
            Fault::Status(status, Vec::new()),
            Fate::Rejected,
        );
    }
}

#[test]
fn a_connection_reset_before_the_status_keeps_the_events() {
    scenario(
        "reset in the status line",
        Fault::Raw(Misbehaviour::ResetInStatus),
        Fate::Spooled,
    );
}

/// A batch whose `200` was read counts as delivered: sending it again would duplicate it. But
/// the reset can reach the client before it reads the `200` (the kernel then discards what
/// was unread), and that batch is kept: so each batch is one or the other, and none is lost.
#[test]
fn a_connection_reset_in_the_body_loses_nothing() {
    scenario(
        "reset in the body",
        Fault::Raw(Misbehaviour::ResetInBody),
        Fate::DeliveredOrSpooled,
    );
}

#[test]
fn a_server_that_never_answers_costs_only_the_deadline() {
    scenario(
        "never",
        Fault::Raw(Misbehaviour::NeverAnswers),
        Fate::Spooled,
    );
}

#[test]
fn a_server_answering_one_byte_per_second_costs_only_the_deadline() {
    scenario(
        "slow",
        Fault::Raw(Misbehaviour::OneBytePerSecond),
        Fate::Spooled,
    );
}

#[test]
fn garbage_and_other_protocols_are_failures() {
    scenario("garbage", Fault::Raw(Misbehaviour::Garbage), Fate::Spooled);
    scenario("not http", Fault::Raw(Misbehaviour::NotHttp), Fate::Spooled);
}

#[test]
fn a_refused_connection_keeps_the_events() {
    scenario("refused", Fault::Refused, Fate::Spooled);
}

/// No name server is asked: the library knows `.invalid` cannot resolve (RFC 6761).
#[test]
fn an_unresolvable_host_keeps_the_events() {
    scenario("unresolvable", Fault::Unresolvable, Fate::Spooled);
}

/// The `200` came first, so the batch counts as delivered; the body is read no further than a
/// small limit, whatever length the server claims.
#[test]
fn a_huge_response_body_is_not_read_into_memory() {
    scenario(
        "huge body",
        Fault::Raw(Misbehaviour::HugeBody),
        Fate::Delivered,
    );
}

#[test]
fn endless_response_headers_are_a_failure_not_an_allocation() {
    scenario(
        "endless headers",
        Fault::Raw(Misbehaviour::EndlessHeaders),
        Fate::Spooled,
    );
}

/// A redirect could take events to a host the user never configured: it is never followed,
/// and the batch is refused for good, since sending it again would meet the same redirect.
#[test]
fn redirects_are_not_followed() {
    for status in [301, 302, 303, 307, 308] {
        let elsewhere = Receiver::healthy();
        scenario(
            &format!("redirect {status}"),
            Fault::Status(
                status,
                vec![("Location", format!("{}/batch/", elsewhere.origin))],
            ),
            Fate::Rejected,
        );
        assert!(
            elsewhere.received().is_empty(),
            "{status}: the redirect was followed"
        );
    }
}

/// Runs the probe program as an application would: `events` captured through the global
/// `capture`, the default flush deadline, and the guard dropped at the end of `main`. Returns
/// its final accounting and how long it ran.
fn probe(
    events: u32,
    state: &std::path::Path,
    vars: &[(&str, &str)],
) -> (serde_json::Value, Duration) {
    let mut command = support::probe(&[&events.to_string()], state, vars);
    let started = Instant::now();
    let output = command.output().expect("run the probe");
    let took = started.elapsed();
    (support::probe_stats(&output), took)
}

/// Every fault, against a whole process: it exits within its flush deadline plus a margin,
/// and accounts for every event.
#[test]
fn under_every_fault_the_process_exits_within_its_deadline() {
    /// The probe's flush deadline: the library's default.
    const DEFAULT_DEADLINE: Duration = Duration::from_millis(300);
    /// Starting a process and writing the spool, on a loaded machine.
    const PROCESS_MARGIN: Duration = Duration::from_millis(700);
    let faults = [
        ("500", Fault::Status(500, Vec::new())),
        ("502", Fault::Status(502, Vec::new())),
        ("503", Fault::Status(503, Vec::new())),
        ("429", Fault::Status(429, Vec::new())),
        (
            "429 with Retry-After",
            Fault::Status(429, vec![("Retry-After", "3600".to_owned())]),
        ),
        ("413", Fault::Status(413, Vec::new())),
        ("400", Fault::Status(400, Vec::new())),
        ("401", Fault::Status(401, Vec::new())),
        (
            "redirect",
            Fault::Status(307, vec![("Location", refused_origin())]),
        ),
        (
            "reset in the status",
            Fault::Raw(Misbehaviour::ResetInStatus),
        ),
        ("reset in the body", Fault::Raw(Misbehaviour::ResetInBody)),
        ("never answers", Fault::Raw(Misbehaviour::NeverAnswers)),
        ("not http", Fault::Raw(Misbehaviour::NotHttp)),
        (
            "one byte per second",
            Fault::Raw(Misbehaviour::OneBytePerSecond),
        ),
        ("garbage", Fault::Raw(Misbehaviour::Garbage)),
        ("huge body", Fault::Raw(Misbehaviour::HugeBody)),
        ("endless headers", Fault::Raw(Misbehaviour::EndlessHeaders)),
        ("refused", Fault::Refused),
        ("unresolvable", Fault::Unresolvable),
    ];
    for (name, fault) in faults {
        let state = tempfile::tempdir().expect("a temporary directory");
        let (_, baseline) = probe(5, state.path(), &[("PROBE_TELEMETRY", "off")]);
        let (origin, _receiver, _server) = fault.start();
        let (stats, took) = probe(5, state.path(), &[("PROBE_TELEMETRY_ENDPOINT", &origin)]);
        assert!(
            took < baseline + DEFAULT_DEADLINE + PROCESS_MARGIN,
            "{name}: took {took:?}; without telemetry {baseline:?}"
        );
        let count = |key: &str| stats[key].as_u64().expect("a count");
        assert_eq!(count("captured"), 5, "{name}: {stats}");
        assert_eq!(
            count("captured") + count("restored"),
            count("delivered") + count("dropped") + count("spooled"),
            "{name}: {stats}"
        );
    }
}
