//! The `User-Agent` and `Accept-Language` request headers, reduced to what describes the
//! client without identifying its user.
//!
//! A user agent is reduced to a known client family and its major version: nothing of the
//! header's text is kept unless it matches a family in [`ClientFamily`], and a version is only
//! ever a number. An `Accept-Language` header is reduced to the primary language of its first
//! three entries that name an ISO 639-1 language (`en`, `fr`): regions, scripts, private-use
//! tags and anything else are dropped.

use serde::Serialize;
use telemetry_runtime::{TelemetryEvent, TelemetryValue};

/// The kind of program that sent a request, from its `User-Agent` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, TelemetryValue)]
pub enum ClientFamily {
    /// Argilla's Python client.
    #[telemetry(rename = "argilla-python")]
    ArgillaPython,
    /// Python's `requests`.
    #[telemetry(rename = "python-requests")]
    PythonRequests,
    /// Python's `httpx`.
    #[telemetry(rename = "python-httpx")]
    PythonHttpx,
    /// Python's standard library.
    #[telemetry(rename = "python-urllib")]
    PythonUrllib,
    /// Go's standard library.
    #[telemetry(rename = "go-http-client")]
    GoHttpClient,
    /// The Rust `ureq` client.
    #[telemetry(rename = "ureq")]
    Ureq,
    /// `curl`.
    #[telemetry(rename = "curl")]
    Curl,
    /// `wget`.
    #[telemetry(rename = "wget")]
    Wget,
    /// HTTPie.
    #[telemetry(rename = "httpie")]
    Httpie,
    /// Postman.
    #[telemetry(rename = "postman")]
    Postman,
    /// Mozilla Firefox.
    #[telemetry(rename = "firefox")]
    Firefox,
    /// Microsoft Edge.
    #[telemetry(rename = "edge")]
    Edge,
    /// Opera.
    #[telemetry(rename = "opera")]
    Opera,
    /// Google Chrome and other Chromium browsers.
    #[telemetry(rename = "chrome")]
    Chrome,
    /// Apple Safari.
    #[telemetry(rename = "safari")]
    Safari,
    /// Anything else: nothing of the header is kept.
    #[telemetry(rename = "other")]
    Other,
}

/// Programs recognised by the name of the first product of their user agent, in lower case.
const PROGRAMS: &[(&str, ClientFamily)] = &[
    ("argilla-python", ClientFamily::ArgillaPython),
    ("argilla", ClientFamily::ArgillaPython),
    ("python-requests", ClientFamily::PythonRequests),
    ("python-httpx", ClientFamily::PythonHttpx),
    ("python-urllib", ClientFamily::PythonUrllib),
    ("go-http-client", ClientFamily::GoHttpClient),
    ("ureq", ClientFamily::Ureq),
    ("curl", ClientFamily::Curl),
    ("wget", ClientFamily::Wget),
    ("httpie", ClientFamily::Httpie),
    ("postmanruntime", ClientFamily::Postman),
];

/// Browsers, recognised by a product anywhere in a `Mozilla/5.0 ...` user agent, in this
/// order (Edge and Opera also name Chrome and Safari, Chrome also names Safari). Safari's
/// version is in its `Version/` product.
const BROWSERS: &[(&str, ClientFamily)] = &[
    ("edg", ClientFamily::Edge),
    ("opr", ClientFamily::Opera),
    ("firefox", ClientFamily::Firefox),
    ("fxios", ClientFamily::Firefox),
    ("chrome", ClientFamily::Chrome),
    ("crios", ClientFamily::Chrome),
    ("version", ClientFamily::Safari),
];

/// A user agent reduced to its family and major version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserAgent {
    /// The family; [`ClientFamily::Other`] when not recognised.
    pub family: ClientFamily,
    /// The major version: at most four digits; never set for [`ClientFamily::Other`].
    pub major: Option<u16>,
}

impl UserAgent {
    /// Reduces a `User-Agent` header.
    pub fn parse(header: &str) -> UserAgent {
        let products = products(header);
        let Some((first, _)) = products.first() else {
            return UserAgent::other();
        };
        let first = first.to_ascii_lowercase();
        if first == "mozilla" {
            for (name, family) in BROWSERS {
                if let Some((_, version)) = products
                    .iter()
                    .find(|(product, _)| product.eq_ignore_ascii_case(name))
                {
                    if *family == ClientFamily::Safari
                        && !products
                            .iter()
                            .any(|(product, _)| product.eq_ignore_ascii_case("safari"))
                    {
                        continue;
                    }
                    return UserAgent {
                        family: *family,
                        major: major(version),
                    };
                }
            }
            return UserAgent::other();
        }
        match PROGRAMS.iter().find(|(name, _)| *name == first) {
            Some((_, family)) => UserAgent {
                family: *family,
                major: major(&products[0].1),
            },
            None => UserAgent::other(),
        }
    }

    fn other() -> UserAgent {
        UserAgent {
            family: ClientFamily::Other,
            major: None,
        }
    }
}

/// The products of a user agent (`name/version`, or `name` alone), outside its parenthesized
/// comments.
fn products(header: &str) -> Vec<(String, String)> {
    let mut outside = String::with_capacity(header.len());
    let mut depth = 0usize;
    for c in header.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            _ if depth == 0 => outside.push(c),
            _ => {}
        }
    }
    outside
        .split_whitespace()
        .map(|product| match product.split_once('/') {
            Some((name, version)) => (name.to_owned(), version.to_owned()),
            None => (product.to_owned(), String::new()),
        })
        .collect()
}

/// The major version of `version`: its leading digits, one to four of them.
fn major(version: &str) -> Option<u16> {
    let digits: &str = version
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap_or_default();
    if (1..=4).contains(&digits.len()) {
        digits.parse().ok()
    } else {
        None
    }
}

/// A primary language that is an ISO 639-1 code, in lower case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Language([u8; 2]);

impl Language {
    /// The language `tag` names, when its primary subtag is an ISO 639-1 code (`en-GB` gives
    /// `en`).
    pub fn of_tag(tag: &str) -> Option<Language> {
        let primary = tag.split(['-', '_']).next()?.trim();
        let code = primary.to_ascii_lowercase();
        let [a, b] = *code.as_bytes() else {
            return None;
        };
        let language = Language([a, b]);
        isolang::Language::from_639_1(language.as_str())?;
        Some(language)
    }

    /// The two-letter code.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("")
    }
}

impl Serialize for Language {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// The languages of an `Accept-Language` header: the primary language of its entries, in the
/// order given, without repeats, those refused (`q=0`) and those that are not ISO 639-1 codes,
/// at most three.
pub fn languages(header: &str) -> Vec<Language> {
    let mut found = Vec::new();
    for entry in header.split(',') {
        let mut parts = entry.split(';');
        let tag = parts.next().unwrap_or_default();
        let refused = parts.any(|parameter| {
            parameter
                .trim()
                .strip_prefix("q=")
                .and_then(|q| q.trim().parse::<f32>().ok())
                .is_some_and(|q| q <= 0.0)
        });
        if refused {
            continue;
        }
        if let Some(language) = Language::of_tag(tag)
            && !found.contains(&language)
        {
            found.push(language);
            if found.len() == 3 {
                break;
            }
        }
    }
    found
}

/// The client that sent a request, as far as its headers tell without identifying anyone.
/// Sent with every request-level event.
#[derive(Debug, Clone, PartialEq, TelemetryEvent)]
#[telemetry(nested)]
pub struct Client {
    /// The client's family from its `User-Agent` header (a known HTTP library, command-line
    /// tool or browser, else `other`); null without the header. The header's text is never
    /// sent.
    pub user_agent: Option<ClientFamily>,
    /// The client's major version (`2` for `python-requests/2.31.0`); null without a known
    /// family or a version of at most four digits.
    pub user_agent_major: Option<u16>,
    /// The primary languages of the `Accept-Language` header: up to three ISO 639-1 codes
    /// (`en`, `fr`), in the header's order. Regions, scripts, weights and any other tag are
    /// dropped; empty without the header.
    #[plain]
    pub accept_language: Vec<Language>,
}

impl Client {
    /// The client described by the two headers, when present.
    pub fn from_headers(user_agent: Option<&str>, accept_language: Option<&str>) -> Client {
        let agent = user_agent.map(UserAgent::parse);
        Client {
            user_agent: agent.map(|agent| agent.family),
            user_agent_major: agent.and_then(|agent| agent.major),
            accept_language: accept_language.map(languages).unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reduced(header: &str) -> (ClientFamily, Option<u16>) {
        let agent = UserAgent::parse(header);
        (agent.family, agent.major)
    }

    #[test]
    fn user_agents_are_reduced_to_family_and_major_version() {
        for (header, family, major) in [
            (
                "python-requests/2.31.0",
                ClientFamily::PythonRequests,
                Some(2),
            ),
            ("curl/8.5.0", ClientFamily::Curl, Some(8)),
            (
                "argilla-python/1.29.0",
                ClientFamily::ArgillaPython,
                Some(1),
            ),
            ("python-httpx/0.27.0", ClientFamily::PythonHttpx, Some(0)),
            ("Go-http-client/1.1", ClientFamily::GoHttpClient, Some(1)),
            ("PostmanRuntime/7.36.3", ClientFamily::Postman, Some(7)),
            (
                "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
                ClientFamily::Firefox,
                Some(128),
            ),
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) \
                 Chrome/126.0.0.0 Safari/537.36",
                ClientFamily::Chrome,
                Some(126),
            ),
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) \
                 Chrome/126.0.0.0 Safari/537.36 Edg/126.0.2592.87",
                ClientFamily::Edge,
                Some(126),
            ),
            (
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like \
                 Gecko) Version/17.5 Safari/605.1.15",
                ClientFamily::Safari,
                Some(17),
            ),
            ("curl", ClientFamily::Curl, None),
            ("curl/123456", ClientFamily::Curl, None),
        ] {
            assert_eq!(reduced(header), (family, major), "{header}");
        }
    }

    #[test]
    fn unknown_and_hostile_user_agents_keep_nothing() {
        for header in [
            "Mozilla/5.0 (alice@example.com; /home/alice)",
            "alice-laptop-script/3.1",
            "Mozilla/5.0 (Version/99 alice) Gecko",
            "",
            "   ",
            "((((",
        ] {
            assert_eq!(reduced(header), (ClientFamily::Other, None), "{header:?}");
        }
        // A browser's comment can name a product: it is not read.
        assert_eq!(
            reduced("Mozilla/5.0 (Firefox/12 alice) Chrome/100.0 Safari/1"),
            (ClientFamily::Chrome, Some(100))
        );
    }

    fn codes(header: &str) -> Vec<String> {
        languages(header)
            .iter()
            .map(|language| language.as_str().to_owned())
            .collect()
    }

    #[test]
    fn accept_language_keeps_up_to_three_primary_iso_codes() {
        assert_eq!(codes("en-GB;q=0.9, x-alice-secret"), ["en"]);
        assert_eq!(
            codes("fr-CH, fr;q=0.9, en;q=0.8, de;q=0.7, *;q=0.5"),
            ["fr", "en", "de"]
        );
        assert_eq!(codes("pt_BR,es;q=0,EN"), ["pt", "en"]);
        assert!(codes("").is_empty());
        assert!(codes("*, zz, alice, i-klingon, qq-QQ, 12").is_empty());
    }

    #[test]
    fn the_client_is_sent_without_any_header_text() {
        let events = telemetry_runtime::testing::record(|| {
            telemetry_runtime::capture(&ClientSeen {
                client: Client::from_headers(
                    Some("Mozilla/5.0 (alice@example.com; /home/alice)"),
                    Some("en-GB;q=0.9, x-alice-secret"),
                ),
            });
            telemetry_runtime::capture(&ClientSeen {
                client: Client::from_headers(None, None),
            });
        });
        let seen: Vec<_> = events.named("client_seen").collect();
        assert_eq!(
            seen[0].property_names(),
            ["user_agent", "user_agent_major", "accept_language"]
        );
        assert_eq!(seen[0]["user_agent"], "other");
        assert_eq!(seen[0]["user_agent_major"], serde_json::Value::Null);
        assert_eq!(seen[0]["accept_language"], serde_json::json!(["en"]));
        assert_eq!(seen[1]["user_agent"], serde_json::Value::Null);
        assert_eq!(seen[1]["accept_language"], serde_json::json!([]));
        for secret in ["alice", "example.com", "home", "GB", "secret", "Mozilla"] {
            assert!(!events.contains_text(secret), "{secret}");
        }
    }

    /// A client was seen (only in these tests).
    #[derive(TelemetryEvent)]
    struct ClientSeen {
        #[telemetry(flatten)]
        client: Client,
    }
}
