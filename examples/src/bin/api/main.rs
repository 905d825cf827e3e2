//! `api`: a small annotation-data HTTP API server that reproduces the telemetry the Argilla
//! server publishes (its `telemetry.py`: the `ServerErrorFound`, `LogRecordsRequested` and
//! `UserInfoRequested` events), field by field, with stronger privacy.
//!
//! The server listens on 127.0.0.1 only and keeps its datasets in memory:
//!
//! - `GET /api/me`: the server's one user. A request without an `X-Api-Key` header is served
//!   as that user; one with a wrong key gets 401.
//! - `POST /api/datasets/{name}/{task}:bulk` with `{"records": [{...}, ...]}`: stores the
//!   records in the dataset, created on first use, for the task `text_classification`,
//!   `token_classification` or `text2text`. Bodies over 1 MiB get 413: at most 1 MiB of a body
//!   is kept in memory.
//! - `GET /api/datasets/{name}`: the dataset's task and record count.
//!
//! Errors are answered as Argilla answers them, `{"detail": {"code": ..., "params": {"type":
//! <entity>, ...}}}`: an unknown route is 404 `not_found` (entity `route`), a wrong method 405
//! `method_not_allowed` (`route`), an unknown task 422 `validation_error` (`task`), an invalid
//! dataset name 422 `validation_error` (`dataset`), a body that is not `{"records": [objects]}`
//! 400 `bad_request` (`records`), a body over 1 MiB 413 `payload_too_large` (`records`), an
//! unknown dataset 404 `not_found` (`dataset`), a bulk log to a dataset of another task 409
//! `wrong_task` (`dataset`), a wrong API key 401 `unauthorized` (`user`).
//!
//! # What is sent, and what Argilla sends
//!
//! | Argilla | Here |
//! | --- | --- |
//! | `LogRecordsRequested`: `task`, `records` | `log_records_requested`: `task`, `records`, plus `annotated` and `with_metadata` (counts of records with an annotation or metadata), `new_dataset`, `succeeded`; never the dataset's name nor anything of a record |
//! | `ServerErrorFound`: `code`, `type` | `server_error_found`: `code`, `entity`, plus `status`, `method` and `route`, the route's template (`/api/datasets/{name}/{task}:bulk`), never the path requested |
//! | `UserInfoRequested`: `is_default_user` | `user_info_requested`: `is_default_user`, plus `authenticated` (whether the request carried the API key) |
//! | `UserInfoRequested`: `user_hash`, a UUID v5 of the user name under the server id, which is sent with it, so a list of names reverses it | `user`: an HMAC-SHA-256 of the name under the installation's secret key, which never leaves the machine |
//! | `user-agent` header, as is, on `ServerErrorFound` and `UserInfoRequested` | `user_agent`, a known client family (`python-requests`, `curl`, `argilla-python`, `firefox`, ... else `other`), and `user_agent_major`, its major version, on every request-level event; the header's text is never sent |
//! | `accept-language` header, as is, on the same events | `accept_language`: up to three ISO 639-1 codes (`en-GB;q=0.9, x-alice-secret` gives `["en"]`); regions and other tags are dropped |
//! | the server id, `uuid.getnode()`: derived from a MAC address | `installation_id` and `distinct_id`: a random UUID, sent with every event by the library |
//! | `system`, `machine`, `platform`, `sys_version` | `os_name`, `os_version`, `os_id`, `kernel_name`, `kernel_release`, `arch`, sent with every event by the library |
//! | `python_version`, `version` | `rustc_version`, `$app_version`, sent with every event by the library |
//! | server start (the client is created when the server starts) | `app_started`; `command` for `serve` when it stops (with `port`: `default`, `any` or `custom`, never the number, and `workers`); `app_stopped` on SIGINT or SIGTERM; `app_fatal` for a panic |
//!
//! `api telemetry schema` prints all of it, generated from the code; `examples/api.TELEMETRY.md`
//! is its output.
//!
//! # Opting out
//!
//! - `API_ENABLE_TELEMETRY=0`, Argilla's variable: `0`, `false`, `no` or `off` (any case,
//!   spaces ignored) turn telemetry off; `1`, `true`, `yes`, `on` opt in and `local` keeps
//!   events on this machine; empty says nothing; any other value counts as off.
//! - And the library's: `DO_NOT_TRACK=1`, `API_TELEMETRY=off`, `api telemetry disable`, and
//!   CI. Any opt-out wins over any opt-in. Off means nothing is written and nothing is sent.
//!
//! # Running it
//!
//! ```text
//! cargo run -p examples --bin api -- serve --port 6900
//! curl -H 'X-Api-Key: argilla.apikey' http://127.0.0.1:6900/api/me
//! curl -X POST -d '{"records": [{"text": "hello"}]}' \
//!     http://127.0.0.1:6900/api/datasets/my-data/text_classification:bulk
//! cargo run -p examples --bin api -- telemetry schema
//! ```
//!
//! `--port 0` picks a free port. The server prints `listening on http://127.0.0.1:PORT` when
//! it accepts requests and stops on Ctrl-C or SIGTERM, sending `app_stopped`: it waits at
//! most 2 s for the requests in progress, then exits without them. No endpoint is compiled
//! in, so events go to the local log in `$XDG_CONFIG_HOME/api/telemetry/` unless
//! `API_TELEMETRY_ENDPOINT` names a PostHog endpoint.
//!
//! # Known limit: slow clients
//!
//! `tiny_http` 0.12 sets no timeout on the connections it accepts and gives no access to a
//! request's socket, so a body cannot be read against a deadline: a client that announces a
//! body and stops sending holds a worker until it closes the connection, and `--workers`
//! such clients stall the server. Stopping is not affected, as above. The server listens on
//! 127.0.0.1 only; in front of other clients it would need a proxy that enforces timeouts.

mod events;
mod headers;
mod routes;

use std::fmt;
use std::io::{Read as _, Write as _};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

use clap::Parser as _;
use telemetry_runtime::{
    Builder, Polarity, Telemetry, TelemetryCommand, TelemetryValue, instrument_command,
};

use crate::events::Method;
use crate::routes::{Api, Body, MAX_BODY, Request, Response, User};

/// The port Argilla serves on.
const DEFAULT_PORT: u16 = 6900;

/// How long a stop waits for the workers to finish the requests they are on.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// An annotation-data API server on 127.0.0.1.
#[derive(clap::Parser)]
#[command(name = "api", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Serve the API on 127.0.0.1 until SIGINT or SIGTERM.
    Serve {
        /// The port; 0 picks a free one.
        #[arg(long, default_value_t = DEFAULT_PORT)]
        port: u16,
        /// Threads answering requests.
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
        workers: u16,
        /// The user's name.
        #[arg(long, env = "API_USERNAME", default_value = routes::DEFAULT_USER)]
        username: String,
        /// The user's API key, expected in `X-Api-Key`.
        #[arg(
            long,
            env = "API_KEY",
            default_value = "argilla.apikey",
            hide_env_values = true
        )]
        api_key: String,
    },
    /// Show or change what telemetry does.
    #[command(subcommand)]
    Telemetry(TelemetryCommand),
}

/// How the port was chosen: the port number itself is not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, TelemetryValue)]
enum PortChoice {
    /// Argilla's port, 6900.
    Default,
    /// Any free port (`--port 0`).
    Any,
    /// Another port.
    Custom,
}

impl PortChoice {
    fn of(port: u16) -> PortChoice {
        match port {
            DEFAULT_PORT => PortChoice::Default,
            0 => PortChoice::Any,
            _ => PortChoice::Custom,
        }
    }
}

/// Why the server could not run.
#[derive(Debug)]
enum ServeError {
    Bind(String),
    Signals(ctrlc::Error),
}

impl fmt::Display for ServeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServeError::Bind(error) => write!(f, "cannot listen on 127.0.0.1: {error}"),
            ServeError::Signals(error) => write!(f, "cannot handle SIGINT and SIGTERM: {error}"),
        }
    }
}

impl std::error::Error for ServeError {}

fn telemetry() -> Builder {
    Telemetry::builder("api", env!("CARGO_PKG_VERSION"))
        .api_key("phc_example")
        .endpoint(option_env!("API_TELEMETRY_ENDPOINT"))
        .opt_out_var("API_ENABLE_TELEMETRY", Polarity::Enables)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let builder = telemetry();
    let (port, workers, user) = match cli.command {
        Command::Telemetry(command) => return command.run_and_report(&builder),
        Command::Serve {
            port,
            workers,
            username,
            api_key,
        } => (port, workers, User { username, api_key }),
    };
    let _telemetry = builder.start();
    telemetry_runtime::install_panic_hook();
    match serve(PortChoice::of(port), workers, port, user) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("api: {error}");
            ExitCode::FAILURE
        }
    }
    // Returning drops the guard: a clean stop, which sends `app_stopped`.
}

/// Serves the API on `127.0.0.1:port_number` with `workers` threads until SIGINT or SIGTERM.
#[instrument_command(name = "serve", message, args(port, workers))]
fn serve(port: PortChoice, workers: u16, port_number: u16, user: User) -> Result<(), ServeError> {
    let server = tiny_http::Server::http(("127.0.0.1", port_number))
        .map_err(|error| ServeError::Bind(error.to_string()))?;
    let server = Arc::new(server);
    let address = server
        .server_addr()
        .to_ip()
        .ok_or_else(|| ServeError::Bind("not an IP address".to_owned()))?;
    // The handler runs on a thread of its own; it only wakes this one, which then stops the
    // workers.
    let (stop, stop_requested) = mpsc::channel();
    ctrlc::set_handler(move || {
        let _ = stop.send(());
    })
    .map_err(ServeError::Signals)?;

    let api = Arc::new(Api::new(user));
    let stopping = Arc::new(AtomicBool::new(false));
    // Each worker holds a sender until it returns or unwinds, so the receiver disconnects
    // once every worker is done; nothing is ever sent on it.
    let (exiting, all_exited) = mpsc::channel::<()>();
    let threads: Vec<_> = (0..workers)
        .map(|index| {
            let (server, api, stopping, exiting) = (
                Arc::clone(&server),
                Arc::clone(&api),
                Arc::clone(&stopping),
                exiting.clone(),
            );
            std::thread::Builder::new()
                .name(format!("api-worker-{index}"))
                .spawn(move || {
                    let _exiting = exiting;
                    work(&server, &api, &stopping);
                })
        })
        .collect::<Result<_, _>>()
        .map_err(|error| ServeError::Bind(format!("cannot start a worker: {error}")))?;
    drop(exiting);
    println!("listening on http://{address}");
    let _ = std::io::stdout().flush();

    let _ = stop_requested.recv();
    stopping.store(true, Ordering::SeqCst);
    // Each unblock wakes one worker waiting for a request, or the next to wait.
    for _ in &threads {
        server.unblock();
    }
    // A worker blocked reading a client that sends nothing would never return: wait for the
    // workers only so long, then stop without them; they end with the process.
    if let Err(RecvTimeoutError::Disconnected) = all_exited.recv_timeout(SHUTDOWN_GRACE) {
        for thread in threads {
            let _ = thread.join();
        }
    } else {
        eprintln!(
            "api: stopping without waiting further for a request still being read or answered"
        );
    }
    println!("stopped by a signal");
    let _ = std::io::stdout().flush();
    Ok(())
}

/// A worker: answers requests until the server stops.
fn work(server: &tiny_http::Server, api: &Api, stopping: &AtomicBool) {
    loop {
        match server.recv() {
            Ok(request) => answer(api, request),
            Err(_) if stopping.load(Ordering::SeqCst) => return,
            Err(_) => {}
        }
    }
}

/// Reads `request` within the body limit, has the API answer it, and sends the answer.
fn answer(api: &Api, mut request: tiny_http::Request) {
    let header = |name: &'static str| {
        request
            .headers()
            .iter()
            .find(|header| header.field.equiv(name))
            .map(|header| header.value.as_str().to_owned())
    };
    let (api_key, user_agent, accept_language) = (
        header("X-Api-Key"),
        header("User-Agent"),
        header("Accept-Language"),
    );
    let method = match request.method() {
        tiny_http::Method::Get => Method::Get,
        tiny_http::Method::Post => Method::Post,
        tiny_http::Method::Put => Method::Put,
        tiny_http::Method::Patch => Method::Patch,
        tiny_http::Method::Delete => Method::Delete,
        tiny_http::Method::Head => Method::Head,
        tiny_http::Method::Options => Method::Options,
        _ => Method::Other,
    };
    let url = request.url().to_owned();
    let path = url.split('?').next().unwrap_or_default();
    let body = read_body(&mut request);
    let Response { status, body } = api.handle(Request {
        method,
        path,
        api_key: api_key.as_deref(),
        user_agent: user_agent.as_deref(),
        accept_language: accept_language.as_deref(),
        body,
    });
    let response = tiny_http::Response::from_string(body.to_string())
        .with_status_code(status)
        .with_header(
            tiny_http::Header::from_bytes(&b"Content-Type"[..], &b"application/json"[..])
                .expect("a valid header"),
        );
    let _ = request.respond(response);
}

/// The body, kept up to [`MAX_BODY`] bytes. The rest of a larger body is read and discarded
/// through a small buffer before answering: left unread, `tiny_http` would discard it itself
/// with a buffer the size of what remains.
fn read_body(request: &mut tiny_http::Request) -> Body {
    let body = if request
        .body_length()
        .is_some_and(|length| length > MAX_BODY)
    {
        Body::TooLarge
    } else {
        let mut bytes = Vec::new();
        match request
            .as_reader()
            .take(MAX_BODY as u64 + 1)
            .read_to_end(&mut bytes)
        {
            Ok(_) if bytes.len() > MAX_BODY => Body::TooLarge,
            Ok(_) => Body::Read(bytes),
            Err(_) => Body::Unreadable,
        }
    };
    if matches!(body, Body::TooLarge) {
        let _ = std::io::copy(request.as_reader(), &mut std::io::sink());
    }
    body
}
