//! A PostHog-compatible receiver: it accepts what PostHog's capture API accepts on `/batch/`,
//! `/capture/`, `/e/` and `/i/v0/e/`, answers as PostHog does, and keeps every request it got,
//! those it refused too. It listens on 127.0.0.1 only.

use std::io::Read as _;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use serde_json::Value;

/// One request as it arrived, its body decompressed, and how it was answered.
#[derive(Debug, Clone)]
pub struct Received {
    /// The status it was answered with: 200, or 400 or 404 for what PostHog would refuse.
    pub status: u16,
    /// The path, such as `/batch/`.
    pub path: String,
    /// The URL as requested: the path and any query.
    pub url: String,
    /// Every header, as `(name, value)`.
    pub headers: Vec<(String, String)>,
    /// The body's bytes as they arrived, gzipped when they were.
    pub raw: Vec<u8>,
    /// The body, decompressed when it was gzipped; empty when it was not valid gzip or UTF-8.
    pub body: String,
    /// The events it carried: the `batch` array, or the one event of a single capture; none
    /// when it was refused.
    pub events: Vec<Value>,
}

/// A receiver on 127.0.0.1, on a port of its own, until it is dropped.
pub struct Receiver {
    origin: String,
    received: Arc<Mutex<Vec<Received>>>,
    server: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
}

impl Receiver {
    /// Starts a receiver on a free port of 127.0.0.1.
    ///
    /// # Errors
    ///
    /// When no port can be bound.
    pub fn start() -> std::io::Result<Receiver> {
        let server = tiny_http::Server::http("127.0.0.1:0").map_err(std::io::Error::other)?;
        let server = Arc::new(server);
        let port = server
            .server_addr()
            .to_ip()
            .map(|address| address.port())
            .ok_or_else(|| std::io::Error::other("the receiver has no IP address"))?;
        let received = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let server = Arc::clone(&server);
            let received = Arc::clone(&received);
            std::thread::spawn(move || serve(&server, &received))
        };
        Ok(Receiver {
            origin: format!("http://127.0.0.1:{port}"),
            received,
            server,
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:<port>`: what `PREFIX_TELEMETRY_ENDPOINT` is set to.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Every request received so far, in order, those refused too.
    pub fn requests(&self) -> Vec<Received> {
        lock(&self.received).clone()
    }

    /// Every event received so far, in order.
    pub fn events(&self) -> Vec<Value> {
        lock(&self.received)
            .iter()
            .flat_map(|request| request.events.iter().cloned())
            .collect()
    }

    /// Forgets what was received so far.
    pub fn clear(&self) {
        lock(&self.received).clear();
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

fn lock(received: &Mutex<Vec<Received>>) -> MutexGuard<'_, Vec<Received>> {
    received.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Answers requests until the server is unblocked. A request is kept before it is answered,
/// so a sender that has its answer finds its events here.
fn serve(server: &tiny_http::Server, received: &Mutex<Vec<Received>>) {
    while let Ok(mut request) = server.recv() {
        let url = request.url().to_owned();
        let path = url.split('?').next().unwrap_or_default().to_owned();
        let headers = request
            .headers()
            .iter()
            .map(|header| (header.field.to_string(), header.value.to_string()))
            .collect();
        let accepted = request.method() == &tiny_http::Method::Post
            && ["/batch/", "/capture/", "/e/", "/i/v0/e/"].contains(&path.as_str());
        let mut raw = Vec::new();
        let read = request.as_reader().read_to_end(&mut raw).is_ok();
        let body = read.then(|| decode(&raw)).flatten();
        let (status, answer, events) = match (&body, accepted) {
            (_, false) => (404, r#"{"type":"not_found"}"#, Vec::new()),
            (None, true) => (
                400,
                r#"{"type":"validation_error","code":"invalid_body"}"#,
                Vec::new(),
            ),
            (Some(body), true) => match events_of(body) {
                Some(events) => (200, r#"{"status":"Ok"}"#, events),
                None => (
                    400,
                    r#"{"type":"validation_error","code":"invalid_payload"}"#,
                    Vec::new(),
                ),
            },
        };
        lock(received).push(Received {
            status,
            path,
            url,
            headers,
            raw,
            body: body.unwrap_or_default(),
            events,
        });
        let response = tiny_http::Response::from_string(answer)
            .with_status_code(status)
            .with_header(
                tiny_http::Header::from_bytes(&b"Content-Type"[..], &b"application/json"[..])
                    .expect("a valid header"),
            );
        let _ = request.respond(response);
    }
}

/// A body's bytes as text, gunzipped when they are gzip.
fn decode(raw: &[u8]) -> Option<String> {
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut text = String::new();
        flate2::read::GzDecoder::new(raw)
            .read_to_string(&mut text)
            .ok()?;
        Some(text)
    } else {
        String::from_utf8(raw.to_vec()).ok()
    }
}

/// The events of a `/batch/` body (`{"api_key", "batch": [...]}`) or of a single event's.
fn events_of(body: &str) -> Option<Vec<Value>> {
    let value: Value = serde_json::from_str(body).ok()?;
    value.get("api_key")?.as_str()?;
    match value.get("batch") {
        Some(Value::Array(events)) => Some(events.clone()),
        Some(_) => None,
        None => value.get("event").is_some().then(|| vec![value]),
    }
}
