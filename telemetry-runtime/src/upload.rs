//! One HTTP request to PostHog's `/batch/` route, and what its answer means for the batch.

use std::io::Write as _;
use std::time::{Duration, SystemTime};

use flate2::{Compress, Compression, FlushCompress, Status};

use crate::config::{Endpoint, Limits};

/// The longest `Retry-After` honoured; a larger value is read as this.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// What became of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Accepted (2xx).
    Delivered,
    /// Worth sending again: 408, 429, 5xx, a timeout or a connection failure. `after` is the
    /// server's `Retry-After`, if it sent one.
    Retry {
        after: Option<Duration>,
        reason: String,
    },
    /// 413: the body is too large; send halves.
    TooLarge,
    /// Refused for good (400, 401, other 4xx, a redirect): sending it again cannot help.
    Rejected { status: u16 },
}

/// Sends batches to one endpoint.
pub(crate) struct Uploader {
    agent: ureq::Agent,
    url: String,
    /// The API key as a JSON string literal.
    api_key: String,
    gzip_threshold: usize,
    /// Printed before each payload when debugging, or `None`.
    debug_label: Option<String>,
    /// Kept between requests while batches keep coming; see [`Uploader::release`].
    gzip: Option<Gzip>,
    /// Why every request fails without being tried, when the host cannot exist.
    unresolvable: Option<String>,
}

impl Uploader {
    pub(crate) fn new(
        endpoint: &Endpoint,
        proxy: Option<ureq::Proxy>,
        api_key: &str,
        limits: &Limits,
        debug_label: Option<String>,
    ) -> Uploader {
        // RFC 6761: names under `.invalid` never resolve, and resolvers should not be asked.
        // Only a proxy could make sense of one, so without a proxy the request is not made.
        let unresolvable = (proxy.is_none() && is_reserved_invalid(&endpoint.host)).then(|| {
            format!(
                "`{}` cannot resolve: names under .invalid never exist",
                endpoint.host
            )
        });
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .proxy(proxy)
            .timeout_connect(Some(limits.connect_timeout))
            .timeout_global(Some(limits.request_timeout))
            .user_agent(concat!("telemetry-runtime/", env!("CARGO_PKG_VERSION")))
            .build();
        Uploader {
            agent: ureq::Agent::new_with_config(config),
            url: endpoint.batch_url.clone(),
            api_key: serde_json::to_string(api_key).expect("a string serializes"),
            gzip_threshold: limits.gzip_threshold,
            debug_label,
            gzip: None,
            unresolvable,
        }
    }

    /// Writes the start of a batch's JSON body into `body`: the events follow, separated by
    /// commas, then [`end_body`](Self::end_body).
    pub(crate) fn begin_body(&self, body: &mut Vec<u8>) {
        begin_batch(body, &self.api_key);
    }

    /// Ends a batch's body begun by [`begin_body`](Self::begin_body).
    pub(crate) fn end_body(&self, body: &mut Vec<u8>) {
        end_batch(body);
    }

    /// Frees what is kept between requests (the compressor's state, a few hundred KiB), for
    /// when nothing is pending.
    pub(crate) fn release(&mut self) {
        self.gzip = None;
    }

    /// POSTs `body`, giving up after `timeout`.
    pub(crate) fn post(&mut self, body: &[u8], timeout: Duration) -> Outcome {
        if let Some(label) = &self.debug_label {
            print_pretty(label, &self.url, body);
        }
        if let Some(reason) = &self.unresolvable {
            return Outcome::Retry {
                after: None,
                reason: reason.clone(),
            };
        }
        let gzipped = (body.len() >= self.gzip_threshold)
            .then(|| self.gzip.get_or_insert_with(Gzip::new).compress(body));
        let mut request = self
            .agent
            .post(&self.url)
            .header("Content-Type", "application/json");
        if gzipped.is_some() {
            request = request
                .header("Content-Encoding", "gzip")
                .query("compression", "gzip-js");
        }
        let sent = request
            .config()
            .timeout_global(Some(timeout))
            .build()
            .send(gzipped.unwrap_or(body));
        match sent {
            Ok(mut response) => {
                let status = response.status().as_u16();
                let retry_after = response
                    .headers()
                    .get("retry-after")
                    .and_then(|value| value.to_str().ok())
                    .and_then(|value| parse_retry_after(value, SystemTime::now()));
                // Read what little the server says so the connection can be reused.
                let _ = response
                    .body_mut()
                    .with_config()
                    .limit(64 << 10)
                    .read_to_vec();
                classify(status, retry_after)
            }
            Err(error) => Outcome::Retry {
                after: None,
                reason: error.to_string(),
            },
        }
    }
}

/// Whether `host` is `invalid` or a name under it (a trailing dot allowed), which RFC 6761
/// reserves as never existing.
fn is_reserved_invalid(host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    host == "invalid" || host.ends_with(".invalid")
}

/// The JSON body of a batch: `api_key_json` is the key as a JSON string literal, `lines`
/// complete event objects.
pub(crate) fn batch_body<'a>(api_key_json: &str, lines: impl Iterator<Item = &'a str>) -> Vec<u8> {
    let mut body = Vec::with_capacity(4096);
    begin_batch(&mut body, api_key_json);
    for (i, line) in lines.enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(line.as_bytes());
    }
    end_batch(&mut body);
    body
}

fn begin_batch(body: &mut Vec<u8>, api_key_json: &str) {
    body.extend_from_slice(b"{\"api_key\":");
    body.extend_from_slice(api_key_json.as_bytes());
    body.extend_from_slice(b",\"batch\":[");
}

fn end_batch(body: &mut Vec<u8>) {
    body.extend_from_slice(b"],\"sent_at\":");
    let mut sent_at = crate::json::JsonBuf::new();
    sent_at.timestamp(SystemTime::now());
    body.extend_from_slice(&sent_at.finish().expect("a timestamp always encodes"));
    body.push(b'}');
}

/// `body` gzip-compressed at the fastest level, as it is sent above the gzip threshold.
pub(crate) fn gzip(body: &[u8]) -> Vec<u8> {
    Gzip::new().compress(body).to_vec()
}

/// A gzip compressor whose state and output buffer are made once and reused for every
/// batch: allocating them per request costs more than compressing a batch of 100 events.
pub(crate) struct Gzip {
    compress: Compress,
    out: Vec<u8>,
}

impl Gzip {
    pub(crate) fn new() -> Gzip {
        Gzip {
            compress: Compress::new_gzip(Compression::fast(), 15),
            out: Vec::new(),
        }
    }

    /// `body` as one gzip member, valid until the next call.
    pub(crate) fn compress(&mut self, body: &[u8]) -> &[u8] {
        self.compress.reset();
        self.out.clear();
        self.out.reserve(body.len() / 4 + 64);
        let mut input = body;
        loop {
            let before = self.compress.total_in();
            let status = self
                .compress
                .compress_vec(input, &mut self.out, FlushCompress::Finish)
                .expect("compressing into memory cannot fail");
            let consumed = usize::try_from(self.compress.total_in() - before).unwrap_or(0);
            input = &input[consumed.min(input.len())..];
            if status == Status::StreamEnd {
                return &self.out;
            }
            // Out of room: grow and go on.
            self.out.reserve(self.out.capacity().max(4096));
        }
    }
}

fn classify(status: u16, retry_after: Option<Duration>) -> Outcome {
    match status {
        200..=299 => Outcome::Delivered,
        413 => Outcome::TooLarge,
        408 | 429 | 500..=599 => Outcome::Retry {
            after: retry_after,
            reason: format!("HTTP {status}"),
        },
        _ => Outcome::Rejected { status },
    }
}

/// `Retry-After` as delay-seconds or an HTTP date, capped at an hour.
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    let delay = match value.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => crate::time::parse_http_date(value)?
            .duration_since(now)
            .unwrap_or(Duration::ZERO),
    };
    Some(delay.min(MAX_RETRY_AFTER))
}

/// Prints a JSON payload to stderr, indented, in the order it is sent.
pub(crate) fn print_pretty(label: &str, destination: &str, json: &[u8]) {
    let mut out = Vec::with_capacity(json.len() * 2);
    let _ = writeln!(out, "[{label}] {destination}:");
    if serde_json::from_slice::<serde::de::IgnoredAny>(json).is_ok() {
        indent(json, &mut out);
    } else {
        out.extend_from_slice(json);
    }
    out.push(b'\n');
    // One write, so lines from concurrent output do not interleave with it.
    let _ = std::io::stderr().lock().write_all(&out);
}

/// Appends the valid, compact JSON `json` to `out` with one member or element per line,
/// indented by two spaces per level, in the order written.
fn indent(json: &[u8], out: &mut Vec<u8>) {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let newline = |out: &mut Vec<u8>, depth: usize| {
        out.push(b'\n');
        out.resize(out.len() + 2 * depth, b' ');
    };
    for (at, &byte) in json.iter().enumerate() {
        if in_string {
            out.push(byte);
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => {
                in_string = true;
                out.push(byte);
            }
            b'{' | b'[' => {
                out.push(byte);
                // An empty object or array stays on its line.
                if !matches!(json.get(at + 1), Some(b'}' | b']')) {
                    depth += 1;
                    newline(out, depth);
                }
            }
            b'}' | b']' => {
                if !matches!(json.get(at.wrapping_sub(1)), Some(b'{' | b'[')) {
                    depth = depth.saturating_sub(1);
                    newline(out, depth);
                }
                out.push(byte);
            }
            b',' => {
                out.push(byte);
                newline(out, depth);
            }
            b':' => out.extend_from_slice(b": "),
            b' ' | b'\n' | b'\r' | b'\t' => {}
            _ => out.push(byte),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_under_invalid_are_known_not_to_exist() {
        for host in ["invalid", "telemetry.invalid", "a.b.INVALID", "x.invalid."] {
            assert!(is_reserved_invalid(host), "{host}");
        }
        for host in [
            "invalid.example",
            "notinvalid",
            "invalidx",
            "127.0.0.1",
            "ïnvalid",
        ] {
            assert!(!is_reserved_invalid(host), "{host}");
        }
    }

    #[test]
    fn a_reused_compressor_writes_complete_gzip_members() {
        use std::io::Read as _;
        let mut gzip = Gzip::new();
        // Long and poorly compressible enough to need the output buffer to grow.
        let mut state = 1u64;
        let large: Vec<u8> = (0..300_000)
            .map(|_| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
                (state >> 56) as u8
            })
            .collect();
        for body in [
            &b"{\"a\":1}"[..],
            &large,
            b"",
            &b"again and again and again"[..],
        ] {
            let compressed = gzip.compress(body).to_vec();
            let mut back = Vec::new();
            flate2::read::GzDecoder::new(&compressed[..])
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(back, body);
        }
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        assert_eq!(parse_retry_after(" 7 ", now), Some(Duration::from_secs(7)));
        // `now` is Sun, 09 Sep 2001 01:46:40 GMT.
        let later = "Sun, 09 Sep 2001 01:48:10 GMT";
        assert_eq!(parse_retry_after(later, now), Some(Duration::from_secs(90)));
        let earlier = "Sun, 09 Sep 2001 01:45:10 GMT";
        assert_eq!(parse_retry_after(earlier, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("99999999", now), Some(MAX_RETRY_AFTER));
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn json_is_indented_as_serde_json_indents_it_but_in_the_order_written() {
        let compact = r#"{"b":[1,{"x":"a,b:{c}","y":"q\"}"}],"a":{},"c":[],"d":{"e":null}}"#;
        let mut out = Vec::new();
        indent(compact.as_bytes(), &mut out);
        let value: serde_json::Value = serde_json::from_str(compact).unwrap();
        let pretty = String::from_utf8(out).unwrap();
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&pretty).unwrap(),
            value
        );
        // The same layout as serde_json's, whose keys come out sorted: compare with the keys
        // of both in written order.
        let expected = serde_json::to_string_pretty(&value).unwrap();
        let lines = |text: &str| {
            let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
            lines.sort();
            lines
        };
        assert_eq!(lines(&pretty), lines(&expected));
        assert!(pretty.starts_with("{\n  \"b\": [\n    1,"), "{pretty}");
    }

    #[test]
    fn statuses_are_classified_as_posthog_documents_them() {
        assert_eq!(classify(200, None), Outcome::Delivered);
        assert_eq!(classify(413, None), Outcome::TooLarge);
        assert_eq!(classify(400, None), Outcome::Rejected { status: 400 });
        assert_eq!(classify(401, None), Outcome::Rejected { status: 401 });
        assert_eq!(classify(302, None), Outcome::Rejected { status: 302 });
        for status in [408, 429, 500, 502, 503, 504] {
            assert!(
                matches!(classify(status, None), Outcome::Retry { .. }),
                "{status}"
            );
        }
        assert_eq!(
            classify(429, Some(Duration::from_secs(3))),
            Outcome::Retry {
                after: Some(Duration::from_secs(3)),
                reason: "HTTP 429".into()
            }
        );
    }
}
