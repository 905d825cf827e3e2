//! telemetry-runtime against posthog-rs, in one run, against the same loopback receiver.
//!
//! `cargo bench --manifest-path bench-compare/Cargo.toml` prints one table with ratios. Every
//! measurement of a library runs in a child process of this binary (`--role ...`), so that
//! neither library's threads, queues or memory affect the other's numbers. Options after
//! `--`: `--skip-build` leaves out the clean release builds of the hello-world programs (about
//! five minutes), `--quick` runs each measurement with a tenth of the events.
//!
//! Both libraries run with their defaults, except what a benchmark must set: the endpoint (the
//! receiver on 127.0.0.1), an API key, and for telemetry-runtime a state directory in a
//! temporary directory, an explicit opt-in (the environment of a benchmark may say CI) and no
//! lifecycle events (so both programs send exactly the events counted). posthog-rs uses its
//! blocking client (`default-features = false`).

#[path = "../../telemetry-runtime/benches/support/job.rs"]
mod job;

use std::collections::HashSet;
use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use job::JobSubmitted;
use telemetry_runtime::{Mode, Telemetry};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(at) = args.iter().position(|arg| arg == "--role") {
        child(&args[at + 1..]);
        return;
    }
    if args.iter().any(|arg| arg == "--serve") {
        // For profiling one measurement alone: start the receiver, then run a child by hand
        // (`--role throughput ours URL 200000 DIR`) under a profiler.
        let receiver = Receiver::start();
        println!("{}", receiver.url);
        loop {
            std::thread::sleep(Duration::from_secs(5));
            let (events, distinct) = receiver.take();
            if events > 0 {
                println!("{events} events, {distinct} distinct");
            }
        }
    }
    let quick = args.iter().any(|arg| arg == "--quick");
    let skip_build = args.iter().any(|arg| arg == "--skip-build");
    // `--only 12` runs the first two measurements.
    let only = args
        .iter()
        .position(|arg| arg == "--only")
        .and_then(|at| args.get(at + 1).cloned());
    orchestrate(quick, skip_build, only.as_deref());
}

// ---------------------------------------------------------------------------------------------
// The two libraries, as a program would use them.

/// The library a child process measures.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Lib {
    Ours,
    Posthog,
    /// The same program without telemetry.
    None,
}

impl Lib {
    fn parse(text: &str) -> Lib {
        match text {
            "ours" => Lib::Ours,
            "posthog" => Lib::Posthog,
            "none" => Lib::None,
            other => panic!("unknown library {other}"),
        }
    }
}

/// telemetry-runtime with its defaults, sending to `endpoint`, its state under `dir`.
fn start_ours(endpoint: &str, dir: &Path) -> telemetry_runtime::TelemetryGuard {
    Telemetry::builder("bench", "1.0.0")
        .api_key("phc_bench")
        .endpoint(Some(endpoint))
        .environment([("HOME", dir.display().to_string())])
        .state_dir(dir.join("state"))
        .mode(Mode::On)
        .lifecycle_events(false)
        .start()
}

/// posthog-rs's blocking client with its defaults, sending to `endpoint`.
fn start_posthog(endpoint: &str, disabled: bool) -> posthog_rs::Client {
    let options = posthog_rs::ClientOptionsBuilder::default()
        .api_key("phc_bench".to_owned())
        .host(endpoint)
        .disabled(disabled)
        .build()
        .expect("valid options");
    posthog_rs::client(options)
}

/// The job event as a posthog-rs user builds it: one `insert_prop` per property. It does none
/// of the hashing or scrubbing telemetry-runtime does, so it is the cheaper of the two to
/// build.
fn posthog_event(job: &JobSubmitted) -> posthog_rs::Event {
    let mut event = posthog_rs::Event::new("job_submitted", "0190f1c2-7b7a-7c3e-9a4b-5c6d7e8f9a0b");
    let mut put = |key: &str, value: serde_json::Value| {
        event
            .insert_prop(key, value)
            .expect("JSON values serialize");
    };
    use serde_json::json;
    put("job_id", json!(job.job_id));
    put("namespace", json!(job.namespace));
    put("task_name", json!(job.task_name));
    put("node_id", json!(job.node_id));
    put("docker_image", json!(job.docker_image));
    put("labels_count", json!(job.labels.len()));
    put("meta_count", json!(job.meta.len()));
    put("env_var_count", json!(job.env.len()));
    put("input_count", json!(job.inputs.len()));
    put("job_type", json!(job.job_type));
    put("engine", json!(job.engine));
    put("publisher", json!(job.publisher));
    put("network", json!(job.network));
    put("input_types", json!(job.input_types));
    put("count", json!(job.count));
    put("priority", json!(job.priority));
    put("version", json!(job.version));
    put("revision", json!(job.revision));
    put("max_parallel", json!(job.max_parallel));
    put("constraint_count", json!(job.constraint_count));
    put("result_path_count", json!(job.result_path_count));
    put("retries", json!(job.retries));
    put("dry_run", json!(job.dry_run));
    put("resources", json!(job.resources));
    put(
        "execution_timeout",
        json!(job.execution_timeout.as_millis() as u64),
    );
    put("queue_timeout", json!(job.queue_timeout.as_millis() as u64));
    put(
        "submitted_at",
        json!(
            job.submitted_at
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64)
        ),
    );
    put("warning", json!(job.warning));
    put("warning_truncated", json!(false));
    event
}

// ---------------------------------------------------------------------------------------------
// Child processes: one measurement each, one JSON line on stdout.

fn child(args: &[String]) {
    let role = args[0].as_str();
    let lib = Lib::parse(&args[1]);
    let endpoint = args.get(2).map(String::as_str).unwrap_or("");
    let count: usize = args.get(3).map_or(0, |n| n.parse().expect("a count"));
    let dir = args.get(4).map(PathBuf::from);
    let dir = || dir.clone().expect("a state directory");
    match role {
        "caller" => caller_cost(lib, endpoint, count, &dir()),
        "off" => off_cost(lib, count),
        "throughput" => throughput(lib, endpoint, count, &dir()),
        "cli" => one_event_cli(lib, endpoint, &dir()),
        "burst" => burst(lib, endpoint, count, &dir()),
        other => panic!("unknown role {other}"),
    }
}

fn report(value: serde_json::Value) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{value}").expect("stdout");
    out.flush().expect("stdout");
}

/// Nanoseconds from a typed event to enqueued, per event.
fn caller_cost(lib: Lib, endpoint: &str, count: usize, dir: &Path) {
    let job = JobSubmitted::sample();
    let mut times = Vec::with_capacity(count);
    let mut drops = 0;
    match lib {
        Lib::Ours => {
            let guard = start_ours(endpoint, dir);
            let telemetry = guard.handle();
            // Only enqueued events are timed: one the full queue refused is dropped before it
            // is encoded, and costs next to nothing. The drops are reported.
            let mut dropped = 0;
            for _ in 0..count {
                let start = Instant::now();
                telemetry.capture(&job);
                let took = start.elapsed();
                let now_dropped = telemetry.stats().dropped.queue_full;
                if now_dropped == dropped {
                    times.push(took);
                }
                dropped = now_dropped;
            }
            drop(guard);
            drops = dropped;
        }
        Lib::Posthog => {
            let client = start_posthog(endpoint, false);
            for _ in 0..count {
                let start = Instant::now();
                client.capture(posthog_event(&job));
                times.push(start.elapsed());
            }
            std::mem::forget(client);
        }
        Lib::None => unreachable!(),
    }
    times.sort_unstable();
    let at = |q: f64| times[((times.len() - 1) as f64 * q) as usize].as_nanos() as u64;
    report(serde_json::json!({"median_ns": at(0.5), "p99_ns": at(0.99), "dropped": drops}));
}

/// Nanoseconds per `capture` when telemetry is off: telemetry-runtime after an opt-out, and a
/// disabled posthog-rs client (whose caller still builds the event).
fn off_cost(lib: Lib, count: usize) {
    let job = JobSubmitted::sample();
    let start;
    match lib {
        Lib::Ours => {
            let _guard = Telemetry::builder("bench", "1.0.0")
                .api_key("phc_bench")
                .environment([("DO_NOT_TRACK", "1")])
                .start();
            start = Instant::now();
            for _ in 0..count {
                telemetry_runtime::capture(std::hint::black_box(&job));
            }
        }
        Lib::Posthog => {
            let client = start_posthog("http://127.0.0.1:9", true);
            start = Instant::now();
            for _ in 0..count {
                client.capture(posthog_event(std::hint::black_box(&job)));
            }
        }
        Lib::None => unreachable!(),
    }
    let per = start.elapsed().as_secs_f64() * 1e9 / count as f64;
    report(serde_json::json!({ "ns": per }));
}

/// `count` events as fast as they come, then wait for the library to deliver them.
fn throughput(lib: Lib, endpoint: &str, count: usize, dir: &Path) {
    let job = JobSubmitted::sample();
    match lib {
        Lib::Ours => {
            let guard = start_ours(endpoint, dir);
            let telemetry = guard.handle();
            let start = Instant::now();
            for _ in 0..count {
                telemetry.capture(&job);
            }
            let captured = start.elapsed();
            let all = telemetry.flush(Duration::from_secs(600));
            let elapsed = start.elapsed();
            let stats = telemetry.stats();
            report(serde_json::json!({
                "capture_ms": captured.as_secs_f64() * 1e3,
                "elapsed_ms": elapsed.as_secs_f64() * 1e3,
                "flushed_all": all,
                "counted_drops": stats.dropped.total(),
                "spooled": stats.spooled,
            }));
            drop(guard);
        }
        Lib::Posthog => {
            let client = start_posthog(endpoint, false);
            let start = Instant::now();
            for _ in 0..count {
                client.capture(posthog_event(&job));
            }
            let captured = start.elapsed();
            client.flush();
            let elapsed = start.elapsed();
            report(serde_json::json!({
                "capture_ms": captured.as_secs_f64() * 1e3,
                "elapsed_ms": elapsed.as_secs_f64() * 1e3,
                "flushed_all": serde_json::Value::Null,
                "counted_drops": 0,
                "spooled": 0,
            }));
        }
        Lib::None => unreachable!(),
    }
}

/// A command-line program that sends one event and exits.
fn one_event_cli(lib: Lib, endpoint: &str, dir: &Path) {
    let job = JobSubmitted::sample();
    match lib {
        Lib::Ours => {
            let _guard = start_ours(endpoint, dir);
            telemetry_runtime::capture(&job);
        }
        Lib::Posthog => {
            let client = start_posthog(endpoint, false);
            client.capture(posthog_event(&job));
        }
        Lib::None => {
            std::hint::black_box(&job);
        }
    }
}

/// `count` events with the endpoint refusing connections; reports the peak resident memory.
fn burst(lib: Lib, endpoint: &str, count: usize, dir: &Path) {
    let job = JobSubmitted::sample();
    let before = status_kib("VmRSS:");
    let mut extra = serde_json::json!({});
    match lib {
        Lib::Ours => {
            let guard = start_ours(endpoint, dir);
            let telemetry = guard.handle();
            for _ in 0..count {
                telemetry.capture(&job);
            }
            let stats = telemetry.stats();
            extra = serde_json::json!({
                "counted_drops": stats.dropped.total(),
                "pending": stats.pending(),
            });
            std::mem::forget(guard);
        }
        Lib::Posthog => {
            let client = start_posthog(endpoint, false);
            for _ in 0..count {
                client.capture(posthog_event(&job));
            }
            std::mem::forget(client);
        }
        Lib::None => {
            for _ in 0..count {
                std::hint::black_box(posthog_event(std::hint::black_box(&job)));
            }
        }
    }
    report(serde_json::json!({
        "rss_before_kib": before,
        "peak_kib": status_kib("VmHWM:"),
        "extra": extra,
    }));
    // Leave at once: what the libraries do at exit with a dead endpoint is measured elsewhere.
    std::process::exit(0);
}

/// A field of `/proc/self/status`, in KiB.
fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .expect("the field is there")
}

// ---------------------------------------------------------------------------------------------
// The receiver, a black hole and a refused port, all on 127.0.0.1.

/// A PostHog-compatible receiver that counts the events it is sent.
///
/// It has to be fast: it shares the machine with the programs measured, and a slow one would
/// cap both libraries' throughput at its own. It does not parse the batch into values: it
/// finds each event's `"uuid":"` key (a key, since quotes inside JSON strings are escaped) and
/// keeps the uuid as a number.
struct Receiver {
    url: String,
    events: Arc<AtomicU64>,
    uuids: Arc<Mutex<HashSet<u128, UuidHasher>>>,
}

/// Uuids are random enough to be their own hash.
#[derive(Default, Clone, Copy)]
struct UuidHasher(u64);

impl std::hash::BuildHasher for UuidHasher {
    type Hasher = UuidHasher;
    fn build_hasher(&self) -> UuidHasher {
        UuidHasher(0)
    }
}

impl std::hash::Hasher for UuidHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u128(&mut self, value: u128) {
        // The low bits of a v4 or v7 uuid are random.
        self.0 = value as u64;
    }
}

/// The uuids of the events in a batch body, or `None` if it is not a batch. The library's own
/// report of dropped events is not one of the events measured: it is left out.
fn batch_uuids(body: &[u8]) -> Option<Vec<u128>> {
    const KEY: &[u8] = b"\"uuid\":\"";
    const REPORT: &[u8] = b"{\"event\":\"telemetry_dropped\"";
    if !body.starts_with(b"{") || memchr::memmem::find(body, b"\"batch\":[").is_none() {
        return None;
    }
    let mut uuids = Vec::new();
    // Where the next report starts; its uuid is the first one after that.
    let mut reports = memchr::memmem::find_iter(body, REPORT).peekable();
    for at in memchr::memmem::find_iter(body, KEY) {
        if reports.next_if(|&report| report < at).is_some() {
            continue;
        }
        let text = body.get(at + KEY.len()..at + KEY.len() + 36)?;
        let mut uuid = 0u128;
        for &b in text.iter().filter(|&&b| b != b'-') {
            uuid = uuid << 4 | u128::from(char::from(b).to_digit(16)?);
        }
        uuids.push(uuid);
    }
    Some(uuids)
}

impl Receiver {
    fn start() -> Receiver {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("bind 127.0.0.1"));
        let url = format!("http://{}", server.server_addr());
        let events = Arc::new(AtomicU64::new(0));
        let uuids = Arc::new(Mutex::new(HashSet::default()));
        for _ in 0..2 {
            let (server, events, uuids) = (server.clone(), events.clone(), uuids.clone());
            std::thread::spawn(move || {
                while let Ok(mut request) = server.recv() {
                    let gzip = request
                        .headers()
                        .iter()
                        .any(|h| h.field.equiv("Content-Encoding") && h.value.as_str() == "gzip");
                    let mut body = Vec::new();
                    let read = if gzip {
                        flate2::read::GzDecoder::new(request.as_reader()).read_to_end(&mut body)
                    } else {
                        request.as_reader().read_to_end(&mut body)
                    };
                    let batch = read.ok().and_then(|_| batch_uuids(&body));
                    let status = match batch {
                        Some(batch) => {
                            events.fetch_add(batch.len() as u64, Ordering::SeqCst);
                            uuids.lock().unwrap().extend(batch);
                            200
                        }
                        None => 400,
                    };
                    let response =
                        tiny_http::Response::from_string("{\"status\":1}").with_status_code(status);
                    let _ = request.respond(response);
                }
            });
        }
        Receiver { url, events, uuids }
    }

    /// Events received, and distinct uuids among them, since the last call.
    fn take(&self) -> (u64, usize) {
        let events = self.events.swap(0, Ordering::SeqCst);
        let mut uuids = self.uuids.lock().unwrap();
        let distinct = uuids.len();
        uuids.clear();
        (events, distinct)
    }
}

/// A server that accepts connections and never answers.
fn black_hole() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
    let url = format!("http://{}", listener.local_addr().expect("an address"));
    std::thread::spawn(move || {
        let mut held: Vec<TcpStream> = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    url
}

/// The address of a port nothing listens on.
fn refused() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
    format!("http://{}", listener.local_addr().expect("an address"))
}

// ---------------------------------------------------------------------------------------------
// The orchestrator.

struct Run {
    exe: PathBuf,
    scratch: tempfile::TempDir,
}

impl Run {
    /// Runs a child and returns its report and wall time.
    fn child(&self, args: &[&str]) -> (serde_json::Value, Duration) {
        let start = Instant::now();
        let output = Command::new(&self.exe)
            .arg("--role")
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .expect("run a child");
        let elapsed = start.elapsed();
        assert!(output.status.success(), "{args:?}: {}", output.status);
        let text = String::from_utf8_lossy(&output.stdout);
        let value = text.lines().last().map_or(serde_json::Value::Null, |line| {
            serde_json::from_str(line).unwrap_or(serde_json::Value::Null)
        });
        (value, elapsed)
    }

    /// A fresh state directory.
    fn dir(&self, name: &str) -> String {
        let dir = self.scratch.path().join(name);
        std::fs::create_dir_all(&dir).expect("a state directory");
        dir.display().to_string()
    }
}

/// A table row: what, ours, posthog-rs, and how they compare.
struct Row {
    what: String,
    ours: String,
    theirs: String,
    ratio: String,
}

fn row(what: impl Into<String>, ours: String, theirs: String, ratio: String) -> Row {
    Row {
        what: what.into(),
        ours,
        theirs,
        ratio,
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

/// The median of `key` over child reports.
fn middle(reports: &[serde_json::Value], key: &str) -> f64 {
    let mut values: Vec<f64> = reports
        .iter()
        .map(|report| report[key].as_f64().unwrap_or(f64::NAN))
        .collect();
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// The lowest and highest value of `key` over child reports.
struct Spread {
    best: f64,
    worst: f64,
}

impl Spread {
    /// The best value, and the worst if there was more than one run.
    fn show(&self, unit: impl Fn(f64) -> String) -> String {
        if self.best == self.worst {
            unit(self.best)
        } else {
            format!("{} (slowest run {})", unit(self.best), unit(self.worst))
        }
    }
}

fn spread(reports: &[serde_json::Value], key: &str) -> Spread {
    let values = reports
        .iter()
        .map(|report| report[key].as_f64().unwrap_or(f64::NAN));
    Spread {
        best: values.clone().fold(f64::INFINITY, f64::min),
        worst: values.fold(f64::NEG_INFINITY, f64::max),
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort_unstable();
    v[v.len() / 2]
}

fn orchestrate(quick: bool, skip_build: bool, only: Option<&str>) {
    let wants = |section: u32| only.is_none_or(|only| only.contains(&section.to_string()));
    let scale = if quick { 10 } else { 1 };
    // The caller cost and the burst run `runs` times per library, alternating, and each
    // figure is the library's best run. On this kind of machine a whole process runs either at
    // full speed or about 1.4x slower throughout (the microbenchmarks show it too: the same
    // binary, every step slower by the same factor), whichever library it is; noise only ever
    // adds time, so the best run is the closest to what the code costs. The spread is printed.
    let runs = if quick { 1 } else { 5 };
    let of_runs = if runs == 1 {
        "one run".to_owned()
    } else {
        format!("best of {runs} runs")
    };
    let run = Run {
        exe: std::env::current_exe().expect("this program"),
        scratch: tempfile::tempdir().expect("a temporary directory"),
    };
    let receiver = Receiver::start();
    let hole = black_hole();
    let refused = refused();
    let mut rows = Vec::new();
    let f = |v: &serde_json::Value, key: &str| v[key].as_f64().unwrap_or(f64::NAN);

    // 1. Caller cost.
    if wants(1) {
        let n = (100_000 / scale).to_string();
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            let dir = run.dir("caller-ours");
            ours.push(run.child(&["caller", "ours", &receiver.url, &n, &dir]).0);
            let dir = run.dir("caller-ph");
            theirs.push(run.child(&["caller", "posthog", &receiver.url, &n, &dir]).0);
            receiver.take();
        }
        for (label, key) in [("median", "median_ns"), ("p99", "p99_ns")] {
            let (a, b) = (spread(&ours, key), spread(&theirs, key));
            rows.push(row(
                format!("caller cost per job event, {label} (ns; {n} events, {of_runs})"),
                a.show(|v| format!("{v:.0} ns")),
                b.show(|v| format!("{v:.0} ns")),
                format!("{:.1}x lower", b.best / a.best),
            ));
        }
        rows.push(row(
            "events of those the full queue refused (not timed above)",
            format!("{:.0}", middle(&ours, "dropped")),
            "not reported".to_owned(),
            String::new(),
        ));
        let n_off = (10_000_000 / scale).to_string();
        let (ours, _) = run.child(&["off", "ours", "", &n_off]);
        let (theirs, _) = run.child(&["off", "posthog", "", &n_off]);
        let (a, b) = (f(&ours, "ns"), f(&theirs, "ns"));
        rows.push(row(
            "caller cost with telemetry off (opted out / disabled client)",
            format!("{a:.1} ns"),
            format!("{b:.0} ns"),
            format!("{:.0}x lower", b / a),
        ));
    }
    // 2. Throughput.
    if wants(2) {
        let total = 200_000 / scale;
        let n = total.to_string();
        let burst = |lib: &str| {
            let (report, _) = run.child(&[
                "throughput",
                lib,
                &receiver.url,
                &n,
                &run.dir(&format!("tp-{lib}")),
            ]);
            let (_, distinct) = receiver.take();
            if std::env::var_os("BENCH_VERBOSE").is_some() {
                eprintln!("{lib}: {report} delivered {distinct}");
            }
            Burst {
                rate: distinct as f64 / (f(&report, "elapsed_ms") / 1e3),
                lost: total as u64 - distinct as u64,
                counted: report["counted_drops"].as_u64().unwrap_or(0),
                spooled: report["spooled"].as_u64().unwrap_or(0),
            }
        };
        // Alternating runs, and of each library the run with the highest rate.
        let (mut ours, mut theirs): (Vec<Burst>, Vec<Burst>) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            ours.push(burst("ours"));
            theirs.push(burst("posthog"));
        }
        let best_run = |mut bursts: Vec<Burst>| {
            bursts.sort_by(|x, y| x.rate.total_cmp(&y.rate));
            let worst = bursts[0].rate;
            (bursts.pop().expect("at least one run"), worst)
        };
        let ((a, a_worst), (b, b_worst)) = (best_run(ours), best_run(theirs));
        let rate = |best: f64, worst: f64| {
            if runs == 1 {
                format!("{best:.0}/s")
            } else {
                format!("{best:.0}/s (slowest run {worst:.0}/s)")
            }
        };
        rows.push(row(
            format!("delivered events/s, burst of {total} ({of_runs})"),
            rate(a.rate, a_worst),
            rate(b.rate, b_worst),
            format!("{:.1}x higher", a.rate / b.rate),
        ));
        rows.push(row(
            "events not delivered in the burst",
            format!(
                "{} not delivered: {} counted drops, {} spooled for the next run",
                a.lost, a.counted, a.spooled
            ),
            format!("{} lost, none reported", b.lost),
            String::new(),
        ));
    }
    // 3. Exit time of a one-event program.
    if wants(3) {
        let runs = if quick { 3 } else { 11 };
        let exit_times = |lib: &str, endpoint: &str| {
            let times: Vec<Duration> = (0..runs)
                .map(|i| {
                    run.child(&[
                        "cli",
                        lib,
                        endpoint,
                        "0",
                        &run.dir(&format!("cli-{lib}-{i}")),
                    ])
                    .1
                })
                .collect();
            median(times)
        };
        let none = exit_times("none", &receiver.url);
        let ours = exit_times("ours", &receiver.url);
        let theirs = exit_times("posthog", &receiver.url);
        let (ours_got, _) = receiver.take();
        rows.push(row(
            format!(
                "one-event CLI exit, healthy receiver (median of {runs}; without telemetry {})",
                ms(none)
            ),
            format!("{} (+{})", ms(ours), ms(ours.saturating_sub(none))),
            format!("{} (+{})", ms(theirs), ms(theirs.saturating_sub(none))),
            format!(
                "{:.1}x less added",
                (theirs.saturating_sub(none)).as_secs_f64()
                    / ours.saturating_sub(none).as_secs_f64().max(1e-6)
            ),
        ));
        assert_eq!(
            ours_got,
            2 * runs as u64,
            "every run of both delivered its event"
        );
        let ours = exit_times("ours", &refused);
        let theirs = exit_times("posthog", &refused);
        rows.push(row(
            "one-event CLI exit, refused port",
            ms(ours),
            ms(theirs),
            format!("{:.1}x faster", theirs.as_secs_f64() / ours.as_secs_f64()),
        ));
        // A black hole, then a healthy run with the same state: is the event delivered later?
        let later = |lib: &str| {
            let dir = run.dir(&format!("hole-{lib}"));
            let (_, took) = run.child(&["cli", lib, &hole, "0", &dir]);
            receiver.take();
            run.child(&["cli", lib, &receiver.url, "0", &dir]);
            let (_, distinct) = receiver.take();
            (took, distinct)
        };
        let (ours_took, ours_next) = later("ours");
        let (theirs_took, theirs_next) = later("posthog");
        let fate = |next: usize| {
            if next == 2 {
                "spooled, delivered by the next run"
            } else {
                "lost"
            }
        };
        rows.push(row(
            "one-event CLI exit, receiver that never answers",
            format!("{} ({})", ms(ours_took), fate(ours_next)),
            format!("{} ({})", ms(theirs_took), fate(theirs_next)),
            format!(
                "{:.0}x faster",
                theirs_took.as_secs_f64() / ours_took.as_secs_f64()
            ),
        ));
    }
    // 4. Peak memory in a burst with the endpoint down.
    if wants(4) {
        let n = (1_000_000 / scale).to_string();
        let peak = |lib: &str| {
            run.child(&[
                "burst",
                lib,
                &refused,
                &n,
                &run.dir(&format!("burst-{lib}")),
            ])
            .0
        };
        let base = peak("none");
        let ours = peak("ours");
        let theirs = peak("posthog");
        let mib = |v: &serde_json::Value| f(v, "peak_kib") / 1024.0;
        rows.push(row(
            format!(
                "peak memory, burst of {n} with the endpoint down (program alone {:.1} MiB)",
                mib(&base)
            ),
            format!(
                "{:.1} MiB ({} counted drops)",
                mib(&ours),
                ours["extra"]["counted_drops"]
            ),
            format!("{:.1} MiB", mib(&theirs)),
            format!(
                "{:.1}x less",
                (mib(&theirs) - mib(&base)) / (mib(&ours) - mib(&base)).max(0.1)
            ),
        ));
    }
    // 5. Weight of a hello-world program.
    if wants(5) {
        let hello = Path::new(env!("CARGO_MANIFEST_DIR")).join("hello");
        let ours = weight(&hello.join("telemetry"), skip_build);
        let theirs = weight(&hello.join("posthog"), skip_build);
        rows.push(row(
            "crates in the normal dependency tree of a hello-world program",
            ours.crates.to_string(),
            theirs.crates.to_string(),
            format!("{:.1}x fewer", theirs.crates as f64 / ours.crates as f64),
        ));
        if let (Some(a), Some(b)) = (ours.build, theirs.build) {
            rows.push(row(
                "clean release build of it",
                format!("{:.0} s", a.as_secs_f64()),
                format!("{:.0} s", b.as_secs_f64()),
                format!("{:.1}x faster", b.as_secs_f64() / a.as_secs_f64()),
            ));
        }
        if let (Some(a), Some(b)) = (ours.size, theirs.size) {
            rows.push(row(
                "its stripped binary",
                format!("{:.2} MiB", a as f64 / 1048576.0),
                format!("{:.2} MiB", b as f64 / 1048576.0),
                format!("{:.1}x smaller", b as f64 / a as f64),
            ));
        }
    }
    println!();
    println!("| measurement | telemetry-runtime | posthog-rs 0.30 | ratio |");
    println!("|---|---|---|---|");
    for r in &rows {
        println!("| {} | {} | {} | {} |", r.what, r.ours, r.theirs, r.ratio);
    }
}

/// What became of a burst of events.
struct Burst {
    /// Distinct events delivered per second.
    rate: f64,
    /// Events that never arrived.
    lost: u64,
    /// Drops the library counted.
    counted: u64,
    /// Events left in the spool for the next run.
    spooled: u64,
}

/// What a hello-world program weighs.
struct Weight {
    crates: usize,
    build: Option<Duration>,
    size: Option<u64>,
}

fn weight(dir: &Path, skip_build: bool) -> Weight {
    let tree = Command::new("cargo")
        .args(["tree", "-e", "normal", "--prefix", "none", "--no-dedupe"])
        .current_dir(dir)
        .output()
        .expect("cargo tree");
    assert!(tree.status.success(), "cargo tree in {}", dir.display());
    let crates: HashSet<String> = String::from_utf8_lossy(&tree.stdout)
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            Some(format!("{} {}", words.next()?, words.next()?))
        })
        .collect();
    let crates = crates.len() - 1; // the program itself
    if skip_build {
        return Weight {
            crates,
            build: None,
            size: None,
        };
    }
    let target = tempfile::tempdir().expect("a target directory");
    let start = Instant::now();
    let status = Command::new("cargo")
        .args(["build", "--release", "--quiet", "--target-dir"])
        .arg(target.path())
        .current_dir(dir)
        .status()
        .expect("cargo build");
    let build = start.elapsed();
    assert!(status.success(), "cargo build in {}", dir.display());
    let name = dir.file_name().unwrap().to_string_lossy().into_owned();
    let binary = target.path().join("release").join(format!("hello-{name}"));
    let size = std::fs::metadata(&binary).expect("the binary").len();
    Weight {
        crates,
        build: Some(build),
        size: Some(size),
    }
}
