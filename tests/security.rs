//! What a hostile network or receiver cannot make the library do: fall back from TLS to
//! plain text, accept a certificate no authority signed, or write the project's API key to
//! disk. (Plain `http://` off loopback, redirects, huge and slow responses: `pipeline.rs` and
//! `faults.rs`; private state files: `pipeline.rs`.)

mod support;

use std::io::Read as _;
use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use support::{builder, job};

/// How one connection to the TLS server ended.
#[derive(Debug)]
struct Connection {
    /// The first byte the client sent: 0x16 opens a TLS handshake.
    first_byte: Option<u8>,
    /// Whether the client finished the TLS handshake, which it must not with this
    /// certificate.
    handshake_completed: bool,
    /// Whether the server read any part of an HTTP request.
    request_read: bool,
}

/// A TLS server on 127.0.0.1 with a self-signed certificate for `127.0.0.1`, which answers
/// the first `connections` connections and reports how each ended.
fn untrusted_tls_server(connections: usize) -> (String, JoinHandle<Vec<Connection>>) {
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()])
        .expect("a self-signed certificate");
    let chain = vec![CertificateDer::from(certified.cert.der().to_vec())];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .expect("a server configuration");
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
    let origin = format!("https://{}", listener.local_addr().expect("an address"));
    let server = std::thread::spawn(move || {
        let mut seen = Vec::new();
        for stream in listener.incoming().take(connections) {
            let mut stream = stream.expect("a connection");
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .expect("a timeout");
            let mut first = [0u8; 1];
            let first_byte = stream
                .peek(&mut first)
                .ok()
                .filter(|&n| n == 1)
                .map(|_| first[0]);
            let mut tls = rustls::ServerConnection::new(Arc::clone(&config)).expect("a session");
            let mut request = [0u8; 16];
            let request_read = rustls::Stream::new(&mut tls, &mut stream)
                .read(&mut request)
                .is_ok_and(|n| n > 0);
            seen.push(Connection {
                first_byte,
                handshake_completed: !tls.is_handshaking(),
                request_read,
            });
        }
        seen
    });
    (origin, server)
}

/// An endpoint whose certificate no trusted authority signed is a failure to send, never a
/// reason to send anyway or to fall back to plain HTTP: the events wait in the spool.
#[test]
fn an_untrusted_certificate_is_a_failure_not_a_fallback() {
    const ATTEMPTS: usize = 2;
    let (origin, server) = untrusted_tls_server(ATTEMPTS);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let telemetry = builder(Some(&origin), dir.path(), &[])
        .max_attempts(u32::try_from(ATTEMPTS).expect("a small number"))
        .start();
    telemetry.capture(&job(1));
    let stats = telemetry.shutdown(Duration::from_secs(20));
    support::assert_accounted(&stats);
    assert_eq!(
        (stats.delivered, stats.spooled, stats.dropped.total()),
        (0, 1, 0),
        "{stats:?}"
    );
    let connections = server.join().expect("the server ran");
    assert_eq!(connections.len(), ATTEMPTS);
    for connection in connections {
        assert_eq!(connection.first_byte, Some(0x16), "{connection:?}");
        assert!(!connection.handshake_completed, "{connection:?}");
        assert!(!connection.request_read, "{connection:?}");
    }
}

/// Every byte of every file under `dir`.
fn all_bytes(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                files.push((path.display().to_string(), bytes));
            }
        }
    }
    files
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The key goes in each request's body, and nowhere on disk: not in the spool that waits for a
/// later process, not in the local log.
#[test]
fn the_api_key_is_never_written_to_disk() {
    const KEY: &str = "phc_KeyThatMustStayInMemory7731";
    let dir = tempfile::tempdir().expect("a temporary directory");
    // Spooled: the endpoint refuses connections.
    let telemetry = builder(Some(&support::refused_origin()), dir.path(), &[])
        .api_key(KEY)
        .max_attempts(1)
        .start();
    for n in 0..5 {
        telemetry.capture(&job(n));
    }
    let spooled = telemetry.shutdown(Duration::from_secs(20));
    assert_eq!(spooled.spooled, 5, "{spooled:?}");
    // Logged: no endpoint, so `local` mode writes the local log.
    let telemetry = builder(None, dir.path(), &[]).api_key(KEY).start();
    telemetry.capture(&job(9));
    let logged = telemetry.shutdown(Duration::from_secs(20));
    assert!(logged.delivered >= 1, "{logged:?}");

    let files = all_bytes(dir.path());
    assert!(
        files.iter().any(|(name, _)| name.contains("spool")),
        "nothing was spooled: {:?}",
        files.iter().map(|(name, _)| name).collect::<Vec<_>>()
    );
    for (name, bytes) in files {
        assert!(!contains(&bytes, KEY.as_bytes()), "the key is in {name}");
        assert!(!contains(&bytes, b"api_key"), "a key field is in {name}");
    }
}

/// The request carries the key; this is what makes the test above meaningful.
#[test]
fn the_api_key_is_sent_in_the_body() {
    let receiver = support::Receiver::healthy();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let telemetry = builder(Some(&receiver.origin), dir.path(), &[])
        .api_key("phc_sent")
        .start();
    telemetry.capture(&job(1));
    telemetry.shutdown(Duration::from_secs(20));
    assert_eq!(receiver.next().json["api_key"], "phc_sent");
}
