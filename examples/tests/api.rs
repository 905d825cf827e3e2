//! The `api` server as a user runs it: started on a free port of 127.0.0.1, sent requests by
//! an HTTP client, stopped by a signal; what reaches the receiver is checked against the
//! documented events, the opt-out, and the secrets the requests carried.

#![cfg(unix)]
#![deny(warnings, unused_qualifications)]

mod support;

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{Value, json};
use support::{
    ApiServer as Server, Sandbox, assert_never_sent, assert_nothing_sent_or_written,
    every_event_properties, files_under, named, only, own_properties,
};

/// The fields every request-level event carries for its client.
const CLIENT: [&str; 3] = ["user_agent", "user_agent_major", "accept_language"];

const USERNAME: &str = "alice-admin";
const API_KEY: &str = "tok_alice_5f2b9c81d0";
const HOSTILE_AGENT: &str = "Mozilla/5.0 (alice@example.com; /home/alice)";
const HOSTILE_LANGUAGE: &str = "en-GB;q=0.9, x-alice-secret";

fn sandbox() -> Sandbox {
    Sandbox::new(env!("CARGO_BIN_EXE_api"), "API")
}

/// `api serve --port 0` as `alice-admin`, opted in, with `env` set as well.
fn serve(sandbox: &Sandbox, env: &[(&str, &str)]) -> Server {
    let mut command = sandbox.opted_in(&["serve", "--port", "0"]);
    command
        .env("API_USERNAME", USERNAME)
        .env("API_KEY", API_KEY);
    for (name, value) in env {
        command.env(name, value);
    }
    Server::start(command)
}

fn headers<'a>(agent: &'a str, language: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![("User-Agent", agent), ("Accept-Language", language)]
}

/// Three records with names, an e-mail address and text in them; the first annotated, two
/// with metadata.
fn payroll_records() -> String {
    json!({"records": [
        {"text": "Alice Smith asked for a quarterly salary review",
         "annotation": "request", "metadata": {"author": "alice.smith@example.org"}},
        {"text": "Confidential bonus for Alice Smith", "annotation": null,
         "metadata": {"team": "payroll"}},
        {"text": "Alice Smith moved to Lisbon", "metadata": {}},
    ]})
    .to_string()
}

/// The expected error answers and events, by request: (method, path, headers, body, status,
/// code, entity, route).
type ErrorCase = (
    &'static str,
    &'static str,
    Vec<(&'static str, &'static str)>,
    Option<String>,
    u16,
    &'static str,
    &'static str,
    Value,
);

fn error_cases() -> Vec<ErrorCase> {
    let bulk = json!("/api/datasets/{name}/{task}:bulk");
    let curl = headers("curl/8.5.0", "de-AT");
    vec![
        (
            "GET",
            "/home/alice/payroll-alice",
            curl.clone(),
            None,
            404,
            "not_found",
            "route",
            Value::Null,
        ),
        (
            "POST",
            "/api/datasets/payroll-alice/sentiment-alice:bulk",
            curl.clone(),
            Some(payroll_records()),
            422,
            "validation_error",
            "task",
            bulk.clone(),
        ),
        (
            "POST",
            "/api/datasets/payroll-alice/text_classification:bulk",
            curl.clone(),
            Some("{\"records\": [{\"text\": \"Alice Smith".to_owned()),
            400,
            "bad_request",
            "records",
            bulk.clone(),
        ),
        (
            "GET",
            "/api/datasets/payroll-bob",
            curl.clone(),
            None,
            404,
            "not_found",
            "dataset",
            json!("/api/datasets/{name}"),
        ),
        (
            "GET",
            "/api/me",
            vec![
                ("User-Agent", "curl/8.5.0"),
                ("X-Api-Key", "tok_wrong_alice"),
            ],
            None,
            401,
            "unauthorized",
            "user",
            json!("/api/me"),
        ),
        (
            "DELETE",
            "/api/datasets/payroll-alice",
            curl.clone(),
            None,
            405,
            "method_not_allowed",
            "route",
            json!("/api/datasets/{name}"),
        ),
        (
            "POST",
            "/api/datasets/payroll-alice/text2text:bulk",
            curl,
            Some(format!(
                "{{\"records\": [{{\"text\": \"{}\"}}]}}",
                "Alice Smith ".repeat(100_000)
            )),
            413,
            "payload_too_large",
            "records",
            bulk,
        ),
    ]
}

/// Makes every kind of request: the current user twice, bulk logs for two tasks, a read-back
/// and each error. Asserts the answers.
fn exercise(server: &Server) {
    let (status, me) = server.request(
        "GET",
        "/api/me",
        &headers(
            "python-requests/2.31.0",
            "fr-CH, fr;q=0.9, en;q=0.8, de;q=0.7",
        ),
        None,
    );
    assert_eq!((status, &me["username"]), (200, &json!(USERNAME)));
    let mut with_key = headers("curl/8.5.0", "");
    with_key.push(("X-Api-Key", API_KEY));
    assert_eq!(server.request("GET", "/api/me", &with_key, None).0, 200);

    let (status, logged) = server.request(
        "POST",
        "/api/datasets/payroll-alice/text_classification:bulk",
        &headers("argilla-python/1.29.0", HOSTILE_LANGUAGE),
        Some(&payroll_records()),
    );
    assert_eq!((status, &logged["processed"]), (200, &json!(3)));
    let notes = json!({"records": [
        {"text": "Alice Smith's home address", "annotation": "redacted"},
        {"text": "call alice at +44 20 7946 0958"},
    ]})
    .to_string();
    let (status, logged) = server.request(
        "POST",
        "/api/datasets/payroll-alice-notes/text2text:bulk",
        &headers(HOSTILE_AGENT, "pt-BR"),
        Some(&notes),
    );
    assert_eq!((status, &logged["processed"]), (200, &json!(2)));
    let (status, dataset) = server.request(
        "GET",
        "/api/datasets/payroll-alice",
        &headers("curl/8.5.0", "en"),
        None,
    );
    assert_eq!(status, 200);
    assert_eq!(dataset["records"], 3);
    assert_eq!(dataset["task"], "text_classification");

    for (method, path, headers, body, status, code, entity, _) in error_cases() {
        let (answered, error) = server.request(method, path, &headers, body.as_deref());
        assert_eq!(answered, status, "{method} {path}: {error}");
        assert_eq!(error["detail"]["code"], code, "{error}");
        assert_eq!(error["detail"]["params"]["type"], entity, "{error}");
    }
}

fn names(expected: &[&str]) -> Vec<String> {
    expected
        .iter()
        .chain(&CLIENT)
        .map(|name| (*name).to_owned())
        .collect()
}

fn is_hash(value: &Value) -> bool {
    value
        .as_str()
        .is_some_and(|text| text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[test]
fn each_request_sends_its_documented_event_and_sigterm_sends_app_stopped() {
    let sandbox = sandbox();
    let every_event = every_event_properties(&sandbox);
    let every_event: Vec<&str> = every_event.iter().map(String::as_str).collect();
    let server = serve(&sandbox, &[]);
    exercise(&server);
    server.stop("TERM");
    let events = sandbox.receiver.events();
    let own = |event: &Value| own_properties(event, &every_event);

    let users = named(&events, "user_info_requested");
    assert_eq!(users.len(), 2, "{events:#?}");
    for user in &users {
        assert_eq!(
            own(user),
            names(&["is_default_user", "user", "authenticated"])
        );
        assert_eq!(user["properties"]["is_default_user"], false);
        assert!(is_hash(&user["properties"]["user"]), "{user}");
    }
    assert_eq!(
        users[0]["properties"]["user"],
        users[1]["properties"]["user"]
    );
    let client = |event: &Value| {
        let properties = &event["properties"];
        (
            properties["user_agent"].clone(),
            properties["user_agent_major"].clone(),
            properties["accept_language"].clone(),
        )
    };
    assert_eq!(users[0]["properties"]["authenticated"], false);
    assert_eq!(
        client(users[0]),
        (
            json!("python-requests"),
            json!(2),
            json!(["fr", "en", "de"])
        )
    );
    assert_eq!(users[1]["properties"]["authenticated"], true);
    assert_eq!(client(users[1]), (json!("curl"), json!(8), json!([])));

    let bulks = named(&events, "log_records_requested");
    assert_eq!(bulks.len(), 2, "{events:#?}");
    let bulk_fields = names(&[
        "task",
        "records",
        "annotated",
        "with_metadata",
        "new_dataset",
        "succeeded",
    ]);
    for (bulk, task, records, annotated, with_metadata) in [
        (bulks[0], "text_classification", 3, 1, 2),
        (bulks[1], "text2text", 2, 1, 0),
    ] {
        assert_eq!(own(bulk), bulk_fields);
        let properties = &bulk["properties"];
        assert_eq!(properties["task"], task);
        assert_eq!(properties["records"], records);
        assert_eq!(properties["annotated"], annotated);
        assert_eq!(properties["with_metadata"], with_metadata);
        assert_eq!(properties["new_dataset"], true);
        assert_eq!(properties["succeeded"], true);
    }
    // The languages of `en-GB;q=0.9, x-alice-secret`: `en` only. A user agent that is no
    // known client keeps nothing but `other`.
    assert_eq!(
        client(bulks[0]),
        (json!("argilla-python"), json!(1), json!(["en"]))
    );
    assert_eq!(
        client(bulks[1]),
        (json!("other"), Value::Null, json!(["pt"]))
    );

    let errors = named(&events, "server_error_found");
    let cases = error_cases();
    assert_eq!(errors.len(), cases.len(), "{errors:#?}");
    let by_kind: HashMap<(String, String), &Value> = errors
        .iter()
        .map(|event| {
            let properties = &event["properties"];
            let kind = (
                properties["code"].as_str().unwrap().to_owned(),
                properties["entity"].as_str().unwrap().to_owned(),
            );
            (kind, &event["properties"])
        })
        .collect();
    for (method, path, _, _, status, code, entity, route) in cases {
        let error = by_kind
            .get(&(code.to_owned(), entity.to_owned()))
            .unwrap_or_else(|| panic!("no {code}/{entity} error for {method} {path}"));
        assert_eq!(error["status"], status, "{code}");
        assert_eq!(error["method"], method.to_lowercase(), "{code}");
        assert_eq!(error["route"], route, "{code}");
        assert_eq!(error["user_agent"], "curl", "{code}");
    }
    for error in &errors {
        assert_eq!(
            own(error),
            names(&["code", "entity", "status", "method", "route"])
        );
    }

    let command = only(&events, "command");
    assert_eq!(
        own(command),
        [
            "command",
            "duration_ms",
            "outcome",
            "error_type",
            "error_message",
            "error_message_truncated",
            "port",
            "workers"
        ]
    );
    assert_eq!(command["properties"]["command"], "serve");
    assert_eq!(command["properties"]["outcome"], "ok");
    assert_eq!(command["properties"]["port"], "any");
    assert_eq!(command["properties"]["workers"], 4);

    only(&events, "app_started");
    let stopped = only(&events, "app_stopped");
    assert_eq!(stopped["properties"]["panics"], 0);
    assert_eq!(
        events.last().map(|event| &event["event"]),
        Some(&json!("app_stopped"))
    );
}

#[test]
fn dataset_names_records_users_keys_and_headers_never_leave() {
    let sandbox = sandbox();
    let server = serve(&sandbox, &[]);
    exercise(&server);
    server.stop("TERM");
    // The run did send: the assertion below looks at real payloads.
    assert!(!named(&sandbox.receiver.events(), "log_records_requested").is_empty());
    assert_never_sent(
        &sandbox.receiver,
        &[
            "payroll",
            "alice",
            "Alice Smith",
            "alice.smith@example.org",
            "example.com",
            "quarterly salary review",
            "bonus",
            "Lisbon",
            API_KEY,
            "tok_wrong",
            "sentiment",
            "Mozilla",
            "en-GB",
            "fr-CH",
            "x-alice-secret",
            "/home/",
            "python-requests/2",
            "curl/8.5",
            sandbox.home.path().to_str().unwrap(),
        ],
    );
}

#[test]
fn sigint_stops_the_server_cleanly() {
    let sandbox = sandbox();
    let server = serve(&sandbox, &[]);
    assert_eq!(
        server
            .request("GET", "/api/me", &headers("curl/8.5.0", "en"), None)
            .0,
        200
    );
    server.stop("INT");
    let events = sandbox.receiver.events();
    only(&events, "user_info_requested");
    assert_eq!(only(&events, "command")["properties"]["outcome"], "ok");
    assert_eq!(only(&events, "app_stopped")["properties"]["panics"], 0);
}

#[test]
fn sigterm_stops_the_server_while_a_client_holds_back_the_body_it_announced() {
    let sandbox = sandbox();
    let server = Server::start(sandbox.opted_in(&["serve", "--port", "0", "--workers", "1"]));
    let address = server.origin.strip_prefix("http://").unwrap();
    assert!(address.starts_with("127.0.0.1:"), "{address}");
    let mut client = TcpStream::connect(address).unwrap();
    // `Expect: 100-continue` makes the server answer `100 Continue` when the worker starts
    // reading the body: once it arrives, the only worker is reading.
    client
        .write_all(
            b"POST /api/datasets/slow/text_classification:bulk HTTP/1.1\r\n\
              Host: 127.0.0.1\r\n\
              Content-Length: 100000\r\n\
              Expect: 100-continue\r\n\r\n",
        )
        .unwrap();
    let mut reader = BufReader::new(client.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(line.starts_with("HTTP/1.1 100"), "{line:?}");
    client.write_all(b"{\"rec").unwrap();

    let Server {
        mut child,
        mut stdout,
        ..
    } = server;
    let pid = child.id().to_string();
    let sent = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("run kill");
    assert!(sent.success());
    let (exited, exit) = mpsc::channel();
    std::thread::spawn(move || {
        let status = child.wait();
        let mut rest = String::new();
        let _ = stdout.read_to_string(&mut rest);
        let _ = exited.send((status, rest));
    });
    let Ok((status, rest)) = exit.recv_timeout(Duration::from_secs(20)) else {
        let _ = Command::new("kill").args(["-KILL", &pid]).status();
        panic!("the server was still running 20 s after SIGTERM");
    };
    assert!(status.unwrap().success());
    assert_eq!(rest, "stopped by a signal\n");
    // The client was still connected, holding back the body, while the server stopped.
    drop(client);

    let events = sandbox.receiver.events();
    assert_eq!(only(&events, "command")["properties"]["outcome"], "ok");
    only(&events, "app_stopped");
}

/// A bulk log and the current user, with `env` set, then SIGTERM.
fn run_flow(sandbox: &Sandbox, env: &[(&str, &str)]) {
    let server = serve(sandbox, env);
    let (status, logged) = server.request(
        "POST",
        "/api/datasets/payroll-alice/token_classification:bulk",
        &headers("python-requests/2.31.0", "en"),
        Some(r#"{"records": [{"tokens": ["Alice", "Smith"]}]}"#),
    );
    assert_eq!((status, &logged["processed"]), (200, &json!(1)));
    assert_eq!(
        server
            .request(
                "GET",
                "/api/not-a-route",
                &headers("curl/8.5.0", "en"),
                None
            )
            .0,
        404
    );
    server.stop("TERM");
}

#[test]
fn the_flow_sends_when_nothing_opts_out() {
    let sandbox = sandbox();
    run_flow(&sandbox, &[]);
    let events = sandbox.receiver.events();
    let logged = only(&events, "log_records_requested");
    assert_eq!(logged["properties"]["task"], "token_classification");
    only(&events, "server_error_found");
    assert!(!files_under(&sandbox.state_dir("api")).is_empty());
}

#[test]
fn api_enable_telemetry_off_sends_nothing_and_writes_nothing_while_the_api_works() {
    for value in ["0", "false", "no", "off", " FALSE "] {
        let sandbox = sandbox();
        // Opted in with API_TELEMETRY=on as well: the opt-out wins.
        run_flow(&sandbox, &[("API_ENABLE_TELEMETRY", value)]);
        assert_nothing_sent_or_written(&sandbox, "api", &format!("API_ENABLE_TELEMETRY={value:?}"));
    }
}

#[test]
fn the_opt_out_is_named_by_telemetry_status() {
    let sandbox = sandbox();
    let mut command = sandbox.opted_in(&["telemetry", "status"]);
    command.env("API_ENABLE_TELEMETRY", "0");
    let output = support::run_ok(&mut command);
    let status = String::from_utf8(output.stdout).unwrap();
    assert!(
        status.contains("off") && status.contains("API_ENABLE_TELEMETRY"),
        "{status}"
    );
    assert!(files_under(&sandbox.state_dir("api")).is_empty());
}

#[test]
fn a_port_in_use_is_an_error_not_a_panic() {
    let sandbox = sandbox();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let output = sandbox
        .command(&["serve", "--port", &port])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains("api: cannot listen on 127.0.0.1"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}
