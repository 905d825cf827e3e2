//! A PostHog-like receiver on 127.0.0.1 that records every request, and the events the tests
//! send.

#![allow(dead_code, reason = "each test file uses a different part")]

use std::collections::HashMap;
use std::io::Read as _;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;
use telemetry_runtime::{Builder, Telemetry, TelemetryEvent, TelemetryValue};

/// How long a test waits for something that should happen at once before failing. Generous,
/// because CI machines are slow; a passing test never waits this long.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// One request as the receiver saw it, body decompressed.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// Path and query.
    pub url: String,
    /// Header names lower-cased.
    pub headers: HashMap<String, String>,
    /// The body as it arrived on the wire.
    pub raw: Vec<u8>,
    /// The body decompressed (if gzip).
    pub body: Vec<u8>,
    /// The body decompressed and parsed.
    pub json: Value,
    pub at: Instant,
}

impl Request {
    pub fn events(&self) -> &[Value] {
        self.json["batch"].as_array().expect("a batch array")
    }

    pub fn uuids(&self) -> Vec<String> {
        self.events()
            .iter()
            .map(|event| event["uuid"].as_str().expect("a uuid").to_owned())
            .collect()
    }

    /// The uuids of the application's events, without the pipeline's own drop reports.
    pub fn app_uuids(&self) -> Vec<String> {
        self.events()
            .iter()
            .filter(|event| event["event"] != "telemetry_dropped")
            .map(|event| event["uuid"].as_str().expect("a uuid").to_owned())
            .collect()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

impl Request {
    /// Reads an incoming request whole, gunzipping its body if it is compressed.
    pub fn read(incoming: &mut tiny_http::Request) -> Request {
        let mut raw = Vec::new();
        incoming
            .as_reader()
            .read_to_end(&mut raw)
            .expect("read the body");
        let headers: HashMap<String, String> = incoming
            .headers()
            .iter()
            .map(|h| {
                (
                    h.field.as_str().as_str().to_ascii_lowercase(),
                    h.value.as_str().to_owned(),
                )
            })
            .collect();
        let text = if raw.starts_with(&[0x1f, 0x8b]) {
            let mut text = Vec::new();
            flate2::read::GzDecoder::new(&raw[..])
                .read_to_end(&mut text)
                .expect("valid gzip");
            text
        } else {
            raw.clone()
        };
        Request {
            method: incoming.method().as_str().to_owned(),
            url: incoming.url().to_owned(),
            headers,
            raw,
            json: serde_json::from_slice(&text).unwrap_or(Value::Null),
            body: text,
            at: Instant::now(),
        }
    }
}

/// What the receiver answers.
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    /// Never answer: the request is kept open until the receiver is dropped, as if the
    /// network stalled.
    pub hold: bool,
}

impl Reply {
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            hold: false,
        }
    }

    /// No answer at all; see [`Reply::hold`].
    pub fn never() -> Reply {
        Reply {
            hold: true,
            ..Reply::ok()
        }
    }

    pub fn ok() -> Reply {
        Reply::status(200)
    }
}

/// An HTTP server on 127.0.0.1 with a port of its own.
pub struct Receiver {
    pub origin: String,
    requests: mpsc::Receiver<Request>,
    server: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
}

impl Receiver {
    /// Answers every request with `respond(request, index)`, which may block to hold up the
    /// requests after it, or hold just this one with [`Reply::never`].
    pub fn start(mut respond: impl FnMut(&Request, usize) -> Reply + Send + 'static) -> Receiver {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("bind 127.0.0.1"));
        let port = server.server_addr().to_ip().expect("an IP address").port();
        let (tx, requests) = mpsc::channel();
        let serving = Arc::clone(&server);
        let thread = std::thread::spawn(move || {
            let mut index = 0;
            let mut held = Vec::new();
            while let Ok(mut incoming) = serving.recv() {
                let request = Request::read(&mut incoming);
                let _ = tx.send(request.clone());
                let reply = respond(&request, index);
                index += 1;
                if reply.hold {
                    held.push(incoming);
                    continue;
                }
                let mut response = tiny_http::Response::from_string("{\"status\":\"Ok\"}")
                    .with_status_code(reply.status);
                for (name, value) in reply.headers {
                    response.add_header(
                        tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes())
                            .expect("a valid header"),
                    );
                }
                let _ = incoming.respond(response);
            }
        });
        Receiver {
            origin: format!("http://127.0.0.1:{port}"),
            requests,
            server,
            thread: Some(thread),
        }
    }

    /// A receiver that accepts everything.
    pub fn healthy() -> Receiver {
        Receiver::start(|_, _| Reply::ok())
    }

    /// The next request; fails the test if none arrives in time.
    pub fn next(&self) -> Request {
        self.requests
            .recv_timeout(PATIENCE)
            .expect("the receiver got no request in time")
    }

    /// Every request received so far, without waiting.
    pub fn received(&self) -> Vec<Request> {
        self.requests.try_iter().collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A job's engine.
#[derive(TelemetryValue, Debug, Clone, Copy)]
pub enum Engine {
    Docker,
    Wasm,
}

/// A job was submitted.
#[derive(TelemetryEvent)]
pub struct JobSubmitted<'a> {
    /// The namespace, hashed.
    #[hash]
    pub namespace: &'a str,
    /// How many labels the job has.
    #[count]
    pub labels: &'a [&'a str],
    pub engine: Engine,
    pub tasks: u32,
}

/// A job event numbered `n`.
pub fn job(n: u32) -> JobSubmitted<'static> {
    JobSubmitted {
        namespace: "payroll-team",
        labels: &["a", "b"],
        engine: Engine::Docker,
        tasks: n,
    }
}

/// A builder isolated from the machine: its own state directory, an environment holding only
/// `vars`, and timings short enough for tests. Lifecycle events are off, so that the events
/// sent are exactly those a test captures; tests of those events turn them on.
pub fn builder(endpoint: Option<&str>, dir: &Path, vars: &[(&str, &str)]) -> Builder {
    let mut env: Vec<(String, String)> = vec![("HOME".into(), dir.display().to_string())];
    env.extend(vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    Telemetry::builder("jobs", "1.2.3")
        .api_key("phc_test_key")
        .endpoint(endpoint)
        .state_dir(dir.join("state"))
        .environment(env)
        .backoff(Duration::from_millis(1), Duration::from_millis(5))
        .flush_interval(Duration::from_secs(3600))
        .flush_deadline(Duration::from_secs(10))
        // Most tests are about sending, not about the first run's notice and hold.
        .first_run(telemetry_runtime::FirstRun::Silent)
        .lifecycle_events(false)
}

/// Asserts the accounting rule of a pipeline that has shut down.
pub fn assert_accounted(stats: &telemetry_runtime::Stats) {
    assert_eq!(
        stats.captured + stats.restored,
        stats.delivered + stats.dropped.total() + stats.spooled,
        "captured + restored != delivered + dropped + spooled: {stats:?}"
    );
    assert_eq!(stats.pending(), 0, "{stats:?}");
}

/// Every event in `requests`, in order.
pub fn events(requests: &[Request]) -> Vec<Value> {
    requests.iter().flat_map(|r| r.events().to_vec()).collect()
}

/// The uuids in the spool files under `state`.
pub fn spooled_uuids(state: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(state.join("spool")) else {
        return Vec::new();
    };
    let mut uuids = Vec::new();
    for entry in entries.flatten() {
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        for line in text.lines() {
            let event: Value = serde_json::from_str(line).expect("spool lines are JSON");
            uuids.push(event["uuid"].as_str().expect("a uuid").to_owned());
        }
    }
    uuids.sort();
    uuids
}

/// An origin on 127.0.0.1 where nothing listens: connecting is refused.
pub fn refused_origin() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
    format!("http://{}", listener.local_addr().expect("an address"))
}

/// `program` with `args` and only the given environment, its home in `home`: nothing of this
/// machine's environment (`CI`, proxies, the user's home) reaches it.
pub fn hermetic(program: &str, args: &[&str], home: &Path, vars: &[(&str, &str)]) -> Command {
    let mut command = Command::new(program);
    command
        .args(args)
        .env_clear()
        .env("HOME", home)
        .envs(vars.iter().copied());
    command
}

/// The probe program (`probe.rs`) with `args`, in a hermetic environment whose home and state
/// directory are `state`.
pub fn probe(args: &[&str], state: &Path, vars: &[(&str, &str)]) -> Command {
    let mut command = hermetic(env!("CARGO_BIN_EXE_telemetry-probe"), args, state, &[]);
    command
        .env("PROBE_TELEMETRY_DIR", state)
        .envs(vars.iter().copied());
    command
}

/// The final accounting a probe printed; fails the test if the probe did not succeed.
pub fn probe_stats(output: &Output) -> Value {
    assert!(
        output.status.success(),
        "the probe failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("the probe prints its stats as JSON")
}
