//! One HTTP request to PostHog's `/batch/` route, and what its answer means for the batch.

use std::io::Write as _;
use std::time::{Duration, SystemTime};

use flate2::Compression;
use flate2::write::GzEncoder;

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
}

impl Uploader {
    pub(crate) fn new(
        endpoint: &Endpoint,
        proxy: Option<ureq::Proxy>,
        api_key: &str,
        limits: &Limits,
        debug_label: Option<String>,
    ) -> Uploader {
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
        }
    }

    /// The JSON body of a batch of complete event objects.
    pub(crate) fn body<'a>(&self, lines: impl Iterator<Item = &'a str>) -> Vec<u8> {
        batch_body(&self.api_key, lines)
    }

    /// POSTs `body`, giving up after `timeout`.
    pub(crate) fn post(&self, body: &[u8], timeout: Duration) -> Outcome {
        if let Some(label) = &self.debug_label {
            print_pretty(label, &self.url, body);
        }
        let gzipped = (body.len() >= self.gzip_threshold).then(|| gzip(body));
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
            .send(gzipped.as_deref().unwrap_or(body));
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

/// The JSON body of a batch: `api_key_json` is the key as a JSON string literal, `lines`
/// complete event objects.
pub(crate) fn batch_body<'a>(api_key_json: &str, lines: impl Iterator<Item = &'a str>) -> Vec<u8> {
    let mut body = Vec::with_capacity(4096);
    body.extend_from_slice(b"{\"api_key\":");
    body.extend_from_slice(api_key_json.as_bytes());
    body.extend_from_slice(b",\"batch\":[");
    for (i, line) in lines.enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(line.as_bytes());
    }
    body.extend_from_slice(b"],\"sent_at\":");
    let mut sent_at = crate::json::JsonBuf::new();
    sent_at.timestamp(SystemTime::now());
    body.extend_from_slice(&sent_at.finish().expect("a timestamp always encodes"));
    body.push(b'}');
    body
}

/// `body` gzip-compressed at the fastest level, as it is sent above the gzip threshold.
pub(crate) fn gzip(body: &[u8]) -> Vec<u8> {
    let mut gzip = GzEncoder::new(Vec::with_capacity(body.len() / 4), Compression::fast());
    gzip.write_all(body).expect("writing to a Vec cannot fail");
    gzip.finish().expect("writing to a Vec cannot fail")
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
