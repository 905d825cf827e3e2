//! Everything decided once at start: the environment, the endpoint, the proxy and the limits.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Where configuration variables are read from.
#[derive(Clone, Debug, Default)]
pub(crate) enum Env {
    /// The process environment.
    #[default]
    Process,
    /// A fixed map, for tests and for applications that sandbox their environment.
    Map(HashMap<String, String>),
}

#[cfg(test)]
impl Env {
    /// An environment holding exactly `pairs`.
    pub(crate) fn from_pairs(pairs: &[(&str, &str)]) -> Env {
        Env::Map(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }
}

/// What a variable holds: absent, or present (possibly not valid Unicode, which counts as
/// present but unreadable).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Var {
    Unset,
    Text(String),
    NotUnicode,
}

impl Env {
    pub(crate) fn var(&self, name: &str) -> Var {
        match self {
            Env::Process => match std::env::var_os(name) {
                None => Var::Unset,
                Some(value) => match OsString::into_string(value) {
                    Ok(text) => Var::Text(text),
                    Err(_) => Var::NotUnicode,
                },
            },
            Env::Map(map) => map.get(name).map_or(Var::Unset, |v| Var::Text(v.clone())),
        }
    }

    /// The variable's text when it is set, valid Unicode and not blank.
    pub(crate) fn text(&self, name: &str) -> Option<String> {
        match self.var(name) {
            Var::Text(text) if !text.trim().is_empty() => Some(text.trim().to_owned()),
            _ => None,
        }
    }

    /// The first of `names` that holds text.
    fn first_text(&self, names: &[&str]) -> Option<String> {
        names.iter().find_map(|name| self.text(name))
    }
}

/// The tunable limits of the pipeline. Each default is documented on the builder method that
/// changes it.
#[derive(Clone, Debug)]
pub(crate) struct Limits {
    pub batch_size: usize,
    pub flush_interval: Duration,
    pub queue_capacity: usize,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub flush_deadline: Duration,
    pub max_attempts: u32,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    pub gzip_threshold: usize,
    pub mask_ip: bool,
    pub spool_max_bytes: u64,
    pub spool_max_age: Duration,
    pub local_log_max_bytes: u64,
    pub max_event_bytes: usize,
    pub max_batch_bytes: usize,
    pub max_buffer_bytes: usize,
}

/// The largest duration any setting accepts; larger values are read as this, so that no
/// deadline arithmetic can overflow.
pub(crate) const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);

/// The largest event PostHog accepts is about 1 MB, and one larger event fails its whole batch.
pub(crate) const MAX_EVENT_BYTES: usize = 900_000;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            batch_size: 500,
            flush_interval: Duration::from_secs(3),
            queue_capacity: 10_000,
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(5),
            flush_deadline: Duration::from_millis(300),
            max_attempts: 5,
            backoff_base: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            gzip_threshold: 1024,
            mask_ip: true,
            spool_max_bytes: 4 << 20,
            spool_max_age: Duration::from_secs(7 * 24 * 3600),
            local_log_max_bytes: 1 << 20,
            max_event_bytes: 32 << 10,
            max_batch_bytes: 4 << 20,
            max_buffer_bytes: 16 << 20,
        }
    }
}

/// A validated PostHog endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Endpoint {
    /// The URL of the `/batch/` route.
    pub batch_url: String,
    /// The host, without brackets or port, for proxy decisions.
    pub host: String,
    pub https: bool,
}

/// Why an endpoint was not used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum EndpointError {
    Malformed(String),
    Scheme(String),
    PlainHttp(String),
}

impl fmt::Display for EndpointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EndpointError::Malformed(url) => write!(f, "`{url}` is not an absolute URL"),
            EndpointError::Scheme(url) => write!(f, "`{url}` is neither https:// nor http://"),
            EndpointError::PlainHttp(url) => write!(
                f,
                "`{url}` uses http:// to a host that is not a loopback address; use https://"
            ),
        }
    }
}

impl Endpoint {
    /// Parses an endpoint: the origin of a PostHog instance (`https://eu.i.posthog.com`),
    /// optionally with a path prefix, or the full `/batch/` URL. `http://` is accepted only for
    /// loopback hosts, so events never cross a network in clear.
    pub(crate) fn parse(text: &str) -> Result<Endpoint, EndpointError> {
        let text = text.trim();
        let uri: ureq::http::Uri = text
            .parse()
            .map_err(|_| EndpointError::Malformed(text.to_owned()))?;
        let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
            return Err(EndpointError::Malformed(text.to_owned()));
        };
        if authority.as_str().contains('@') {
            // Credentials in the URL would be logged by any proxy on the way.
            return Err(EndpointError::Malformed(text.to_owned()));
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        let https = match scheme.to_ascii_lowercase().as_str() {
            "https" => true,
            "http" if is_loopback(&host) => false,
            "http" => return Err(EndpointError::PlainHttp(text.to_owned())),
            _ => return Err(EndpointError::Scheme(text.to_owned())),
        };
        let path = uri.path().trim_end_matches('/');
        let path = path.strip_suffix("/batch").unwrap_or(path);
        let batch_url = format!(
            "{}://{}{path}/batch/",
            scheme.to_ascii_lowercase(),
            authority
        );
        Ok(Endpoint {
            batch_url,
            host,
            https,
        })
    }
}

/// `localhost` or an address in 127.0.0.0/8 or `::1`. Names under `.localhost` are not:
/// a resolver that does not know them may ask DNS, which could answer any address.
fn is_loopback(host: &str) -> bool {
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The proxy to reach `endpoint` through, from `HTTPS_PROXY` or `ALL_PROXY` (either case),
/// unless `NO_PROXY` names the host. Loopback endpoints are never proxied.
pub(crate) fn proxy_for(endpoint: &Endpoint, env: &Env) -> Option<String> {
    if !endpoint.https || is_loopback(&endpoint.host) {
        return None;
    }
    let proxy = env.first_text(&["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"])?;
    let no_proxy = env
        .first_text(&["NO_PROXY", "no_proxy"])
        .unwrap_or_default();
    if no_proxy_matches(&no_proxy, &endpoint.host) {
        None
    } else {
        Some(proxy)
    }
}

/// Whether a `NO_PROXY` list names `host`, as curl reads it: entries separated by commas or
/// spaces; `*` matches everything; `example.com`, `.example.com` and `*.example.com` match the
/// domain and its subdomains; an address matches itself. A `:port` suffix is ignored.
pub(crate) fn no_proxy_matches(list: &str, host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    list.split([',', ' '])
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .any(|entry| {
            if entry == "*" {
                return true;
            }
            let entry = strip_port(entry).to_ascii_lowercase();
            let domain = entry
                .trim_start_matches("*.")
                .trim_start_matches('.')
                .trim_end_matches('.');
            !domain.is_empty()
                && (host == domain
                    || host
                        .strip_suffix(domain)
                        .is_some_and(|rest| rest.ends_with('.')))
        })
}

fn strip_port(entry: &str) -> &str {
    if let Some(inner) = entry.strip_prefix('[') {
        // `[::1]:8080` or `[::1]`
        return inner.split(']').next().unwrap_or(inner);
    }
    match entry.rsplit_once(':') {
        // One colon: `host:port`. More: a bare IPv6 address.
        Some((host, port)) if !host.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            host
        }
        _ => entry,
    }
}

/// `jobs` → `JOBS`, `my-tool` → `MY_TOOL`.
pub(crate) fn default_prefix(app: &str) -> String {
    app.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// The per-app state directory: `PREFIX_TELEMETRY_DIR`, else `<config dir>/<app>/telemetry`,
/// where the config directory is `$XDG_CONFIG_HOME` when it is set to an absolute path, else
/// the platform's (`~/.config` on Linux, `~/Library/Application Support` on macOS, `%APPDATA%`
/// on Windows).
pub(crate) fn default_state_dir(app: &str, prefix: &str, env: &Env) -> Option<PathBuf> {
    if let Some(dir) = env.text(&format!("{prefix}_TELEMETRY_DIR")) {
        return Some(PathBuf::from(dir));
    }
    let config = env
        .text("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|path| path.is_absolute())
        .or_else(|| match env {
            Env::Process => dirs::config_dir(),
            Env::Map(_) => env
                .text("HOME")
                .map(|home| PathBuf::from(home).join(".config")),
        })?;
    let app_dir: String = app
        .chars()
        .map(|c| if std::path::is_separator(c) { '_' } else { c })
        .collect();
    Some(config.join(app_dir).join("telemetry"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_normalised_to_the_batch_route() {
        for (given, expected) in [
            (
                "https://eu.i.posthog.com",
                "https://eu.i.posthog.com/batch/",
            ),
            (
                "https://eu.i.posthog.com/",
                "https://eu.i.posthog.com/batch/",
            ),
            (
                "https://ph.example.com/ingest",
                "https://ph.example.com/ingest/batch/",
            ),
            (
                "https://ph.example.com/batch/",
                "https://ph.example.com/batch/",
            ),
            ("HTTP://127.0.0.1:8080", "http://127.0.0.1:8080/batch/"),
            ("http://[::1]:9/x/", "http://[::1]:9/x/batch/"),
            ("http://localhost:1", "http://localhost:1/batch/"),
        ] {
            assert_eq!(
                Endpoint::parse(given).unwrap().batch_url,
                expected,
                "{given}"
            );
        }
    }

    #[test]
    fn plain_http_is_refused_off_loopback() {
        for url in [
            "http://example.com",
            "http://10.0.0.1:8000",
            "http://127.example.com",
            "http://[::2]",
            "http://app.localhost:8000",
        ] {
            assert!(
                matches!(Endpoint::parse(url), Err(EndpointError::PlainHttp(_))),
                "{url}"
            );
        }
        assert!(matches!(
            Endpoint::parse("ftp://example.com"),
            Err(EndpointError::Scheme(_))
        ));
        assert!(matches!(
            Endpoint::parse("eu.i.posthog.com"),
            Err(EndpointError::Malformed(_))
        ));
        assert!(matches!(
            Endpoint::parse("https://user:pw@example.com"),
            Err(EndpointError::Malformed(_))
        ));
    }

    #[test]
    fn no_proxy_follows_curl() {
        let host = "us.i.posthog.com";
        assert!(no_proxy_matches("*", host));
        assert!(no_proxy_matches("posthog.com", host));
        assert!(no_proxy_matches(".posthog.com", host));
        assert!(no_proxy_matches("*.posthog.com", host));
        assert!(no_proxy_matches("localhost, US.I.POSTHOG.COM:443", host));
        assert!(!no_proxy_matches("hog.com", host));
        assert!(!no_proxy_matches("", host));
        assert!(!no_proxy_matches(".", host));
        assert!(no_proxy_matches("10.0.0.1", "10.0.0.1"));
        assert!(no_proxy_matches("[::1]:80", "::1"));
    }

    #[test]
    fn proxies_come_from_the_environment_unless_excluded() {
        let endpoint = Endpoint::parse("https://eu.i.posthog.com").unwrap();
        let env = Env::from_pairs;
        assert_eq!(proxy_for(&endpoint, &env(&[])), None);
        assert_eq!(
            proxy_for(&endpoint, &env(&[("ALL_PROXY", "http://p:1")])).as_deref(),
            Some("http://p:1")
        );
        assert_eq!(
            proxy_for(
                &endpoint,
                &env(&[("https_proxy", "http://a:1"), ("ALL_PROXY", "http://b:1")])
            )
            .as_deref(),
            Some("http://a:1")
        );
        assert_eq!(
            proxy_for(
                &endpoint,
                &env(&[("HTTPS_PROXY", "http://a:1"), ("no_proxy", "posthog.com")])
            ),
            None
        );
        let local = Endpoint::parse("http://127.0.0.1:9").unwrap();
        assert_eq!(
            proxy_for(&local, &env(&[("ALL_PROXY", "http://p:1")])),
            None
        );
    }

    #[test]
    fn prefixes_are_upper_snake_case() {
        assert_eq!(default_prefix("jobs"), "JOBS");
        assert_eq!(default_prefix("cua-bench"), "CUA_BENCH");
    }
}
