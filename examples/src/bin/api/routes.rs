//! The API: its routes, their handlers, the datasets kept in memory, and the events each
//! request captures. Independent of the HTTP server, so that it can be tested by calling it.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use serde_json::{Value, json};

use crate::events::{
    Entity, ErrorCode, LogRecordsRequested, Method, Route, ServerErrorFound, Task,
    UserInfoRequested,
};
use crate::headers::Client;

/// The largest body the server reads, in bytes.
pub const MAX_BODY: usize = 1 << 20;

/// The default user's name, as in Argilla.
pub const DEFAULT_USER: &str = "argilla";

/// A request's body, as far as the server read it.
#[derive(Debug)]
pub enum Body {
    /// The whole body.
    Read(Vec<u8>),
    /// Larger than [`MAX_BODY`]: not kept.
    TooLarge,
    /// It could not be read.
    Unreadable,
}

/// A request, as the API sees it.
#[derive(Debug)]
pub struct Request<'a> {
    pub method: Method,
    /// The path, without the query.
    pub path: &'a str,
    /// The `X-Api-Key` header.
    pub api_key: Option<&'a str>,
    /// The `User-Agent` header.
    pub user_agent: Option<&'a str>,
    /// The `Accept-Language` header.
    pub accept_language: Option<&'a str>,
    pub body: Body,
}

/// An answer: a status and a JSON body.
#[derive(Debug, PartialEq)]
pub struct Response {
    pub status: u16,
    pub body: Value,
}

/// An error answer, with what the telemetry says of it.
#[derive(Debug)]
struct ApiError {
    status: u16,
    code: ErrorCode,
    entity: Entity,
    route: Option<Route>,
    /// Details for the caller; never sent as telemetry.
    params: Value,
}

impl ApiError {
    fn new(status: u16, code: ErrorCode, entity: Entity, route: Option<Route>) -> ApiError {
        ApiError {
            status,
            code,
            entity,
            route,
            params: json!({}),
        }
    }

    fn with(mut self, name: &str, value: impl Into<Value>) -> ApiError {
        self.params[name] = value.into();
        self
    }

    fn response(&self) -> Response {
        let mut params = self.params.clone();
        params["type"] = self.entity.as_str().into();
        Response {
            status: self.status,
            body: json!({"detail": {"code": self.code.as_str(), "params": params}}),
        }
    }
}

/// A dataset and its records.
#[derive(Debug)]
struct Dataset {
    task: Task,
    records: Vec<Value>,
}

/// The user the server serves.
#[derive(Debug, Clone)]
pub struct User {
    pub username: String,
    pub api_key: String,
}

/// The API's state: its user and its datasets.
#[derive(Debug)]
pub struct Api {
    user: User,
    datasets: Mutex<HashMap<String, Dataset>>,
}

impl Api {
    pub fn new(user: User) -> Api {
        Api {
            user,
            datasets: Mutex::new(HashMap::new()),
        }
    }

    /// Answers `request`, capturing its events.
    pub fn handle(&self, request: Request<'_>) -> Response {
        let client = Client::from_headers(request.user_agent, request.accept_language);
        match self.route(&request, &client) {
            Ok(response) => response,
            Err(error) => {
                telemetry_runtime::capture(&ServerErrorFound {
                    code: error.code,
                    entity: error.entity,
                    status: error.status,
                    method: request.method,
                    route: error.route,
                    client,
                });
                error.response()
            }
        }
    }

    fn route(&self, request: &Request<'_>, client: &Client) -> Result<Response, ApiError> {
        let path = request.path;
        let (route, target) = if path == "/api/me" {
            (Route::Me, Target::Me)
        } else if let Some(rest) = path.strip_prefix("/api/datasets/") {
            match rest.split_once('/') {
                None if !rest.is_empty() => (Route::Dataset, Target::Dataset(rest)),
                Some((name, action)) if !name.is_empty() && !action.contains('/') => {
                    match action.strip_suffix(":bulk") {
                        Some(task) => (Route::Bulk, Target::Bulk(name, task)),
                        None => return Err(not_found_route(path)),
                    }
                }
                _ => return Err(not_found_route(path)),
            }
        } else {
            return Err(not_found_route(path));
        };
        let expected = match route {
            Route::Me | Route::Dataset => Method::Get,
            Route::Bulk => Method::Post,
        };
        if request.method != expected {
            return Err(ApiError::new(
                405,
                ErrorCode::MethodNotAllowed,
                Entity::Route,
                Some(route),
            ));
        }
        let authenticated = match request.api_key {
            None => false,
            Some(key) if key == self.user.api_key => true,
            Some(_) => {
                return Err(ApiError::new(
                    401,
                    ErrorCode::Unauthorized,
                    Entity::User,
                    Some(route),
                ));
            }
        };
        match target {
            Target::Me => Ok(self.me(authenticated, client)),
            Target::Dataset(name) => self.dataset(name),
            Target::Bulk(name, task) => self.bulk(name, task, &request.body, client),
        }
    }

    /// `GET /api/me`.
    fn me(&self, authenticated: bool, client: &Client) -> Response {
        telemetry_runtime::capture(&UserInfoRequested {
            is_default_user: self.user.username == DEFAULT_USER,
            user: &self.user.username,
            authenticated,
            client: client.clone(),
        });
        Response {
            status: 200,
            body: json!({"username": self.user.username, "role": "owner"}),
        }
    }

    /// `GET /api/datasets/{name}`.
    fn dataset(&self, name: &str) -> Result<Response, ApiError> {
        let route = Some(Route::Dataset);
        valid_name(name, route)?;
        let datasets = self.datasets.lock().unwrap_or_else(PoisonError::into_inner);
        let dataset = datasets.get(name).ok_or_else(|| {
            ApiError::new(404, ErrorCode::NotFound, Entity::Dataset, route).with("name", name)
        })?;
        Ok(Response {
            status: 200,
            body: json!({
                "name": name,
                "task": dataset.task.as_str(),
                "records": dataset.records.len(),
            }),
        })
    }

    /// `POST /api/datasets/{name}/{task}:bulk`.
    fn bulk(
        &self,
        name: &str,
        task: &str,
        body: &Body,
        client: &Client,
    ) -> Result<Response, ApiError> {
        let route = Some(Route::Bulk);
        valid_name(name, route)?;
        let task = Task::parse(task).ok_or_else(|| {
            ApiError::new(422, ErrorCode::ValidationError, Entity::Task, route)
                .with("task", task)
                .with(
                    "expected",
                    json!(["text_classification", "token_classification", "text2text"]),
                )
        })?;
        let bytes = match body {
            Body::Read(bytes) => bytes,
            Body::TooLarge => {
                return Err(
                    ApiError::new(413, ErrorCode::PayloadTooLarge, Entity::Records, route)
                        .with("max_bytes", MAX_BODY),
                );
            }
            Body::Unreadable => {
                return Err(ApiError::new(
                    400,
                    ErrorCode::BadRequest,
                    Entity::Records,
                    route,
                ));
            }
        };
        let records = parse_records(bytes).map_err(|message| {
            ApiError::new(400, ErrorCode::BadRequest, Entity::Records, route)
                .with("message", message)
        })?;
        let annotated = records
            .iter()
            .filter(|record| !record.get("annotation").unwrap_or(&Value::Null).is_null())
            .count();
        let with_metadata = records
            .iter()
            .filter(|record| {
                record
                    .get("metadata")
                    .and_then(Value::as_object)
                    .is_some_and(|metadata| !metadata.is_empty())
            })
            .count();
        let count = records.len();
        let mut datasets = self.datasets.lock().unwrap_or_else(PoisonError::into_inner);
        let new_dataset = !datasets.contains_key(name);
        let dataset = datasets.entry(name.to_owned()).or_insert(Dataset {
            task,
            records: Vec::new(),
        });
        let succeeded = dataset.task == task;
        let existing = dataset.task;
        if succeeded {
            dataset.records.extend(records);
        }
        drop(datasets);
        telemetry_runtime::capture(&LogRecordsRequested {
            task,
            records: count as u64,
            annotated: annotated as u64,
            with_metadata: with_metadata as u64,
            new_dataset,
            succeeded,
            client: client.clone(),
        });
        if !succeeded {
            return Err(
                ApiError::new(409, ErrorCode::WrongTask, Entity::Dataset, route)
                    .with("name", name)
                    .with("task", existing.as_str()),
            );
        }
        Ok(Response {
            status: 200,
            body: json!({"dataset": name, "processed": count, "failed": 0}),
        })
    }
}

/// Where a path leads.
enum Target<'a> {
    Me,
    Dataset(&'a str),
    Bulk(&'a str, &'a str),
}

fn not_found_route(path: &str) -> ApiError {
    ApiError::new(404, ErrorCode::NotFound, Entity::Route, None).with("path", path)
}

/// A dataset name as Argilla accepts it: lower-case letters, digits, `-` and `_`, not
/// starting with `-` or `_`, at most 200 characters.
fn valid_name(name: &str, route: Option<Route>) -> Result<(), ApiError> {
    let valid = name.len() <= 200
        && name
            .bytes()
            .next()
            .is_some_and(|first| first.is_ascii_lowercase() || first.is_ascii_digit())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if valid {
        Ok(())
    } else {
        Err(
            ApiError::new(422, ErrorCode::ValidationError, Entity::Dataset, route).with(
                "message",
                "a dataset name has lower-case letters, digits, `-` and `_`, and starts with a letter or digit",
            ),
        )
    }
}

/// The records of a bulk body, `{"records": [{...}, ...]}`.
fn parse_records(bytes: &[u8]) -> Result<Vec<Value>, String> {
    let body: Value =
        serde_json::from_slice(bytes).map_err(|error| format!("the body is not JSON: {error}"))?;
    let Some(Value::Array(records)) = body.get("records") else {
        return Err("the body has no `records` array".to_owned());
    };
    if records.iter().any(|record| !record.is_object()) {
        return Err("every record is a JSON object".to_owned());
    }
    Ok(records.clone())
}

#[cfg(test)]
mod tests {
    use serde_json::Value;
    use telemetry_runtime::testing;

    use super::*;

    fn api() -> Api {
        Api::new(User {
            username: "alice-admin".to_owned(),
            api_key: "secret-key-alice".to_owned(),
        })
    }

    fn request<'a>(method: Method, path: &'a str, body: &str) -> Request<'a> {
        Request {
            method,
            path,
            api_key: None,
            user_agent: Some("python-requests/2.31.0"),
            accept_language: Some("fr-CH, en;q=0.5"),
            body: Body::Read(body.as_bytes().to_vec()),
        }
    }

    const RECORDS: &str = r#"{"records": [
        {"text": "Alice Smith wrote to alice@example.com", "annotation": "positive",
         "metadata": {"author": "Alice Smith"}},
        {"text": "the second one", "annotation": null, "metadata": {}},
        {"text": "the third one", "metadata": {"source": "mail"}}
    ]}"#;

    #[test]
    fn a_bulk_log_sends_its_task_and_counts_but_no_name_or_content() {
        let api = api();
        let path = "/api/datasets/payroll-alice/text_classification:bulk";
        let recorder = testing::Recorder::new();
        let responses = recorder.record(|| {
            [
                api.handle(request(Method::Post, path, RECORDS)),
                api.handle(request(Method::Post, path, r#"{"records": []}"#)),
            ]
        });
        assert_eq!(responses[0].status, 200);
        assert_eq!(responses[0].body["processed"], 3);
        let events = recorder.events();
        assert_eq!(
            events.names(),
            ["log_records_requested", "log_records_requested"]
        );
        let logged = &events[0];
        assert_eq!(
            logged.property_names(),
            [
                "task",
                "records",
                "annotated",
                "with_metadata",
                "new_dataset",
                "succeeded",
                "user_agent",
                "user_agent_major",
                "accept_language",
            ]
        );
        assert_eq!(logged["task"], "text_classification");
        assert_eq!(logged["records"], 3);
        assert_eq!(logged["annotated"], 1);
        assert_eq!(logged["with_metadata"], 2);
        assert_eq!(logged["new_dataset"], true);
        assert_eq!(logged["succeeded"], true);
        assert_eq!(logged["user_agent"], "python-requests");
        assert_eq!(logged["user_agent_major"], 2);
        assert_eq!(logged["accept_language"], json!(["fr", "en"]));
        assert_eq!(events[1]["records"], 0);
        assert_eq!(events[1]["new_dataset"], false);
        for secret in ["payroll", "alice", "Smith", "second one", "mail"] {
            assert!(!events.contains_text(secret), "{secret}");
        }
        let read = api.handle(request(Method::Get, "/api/datasets/payroll-alice", ""));
        assert_eq!(read.body["records"], 3);
    }

    #[test]
    fn a_bulk_log_to_a_dataset_of_another_task_is_refused_and_counted() {
        let api = api();
        let events = testing::record(|| {
            api.handle(request(
                Method::Post,
                "/api/datasets/notes/text2text:bulk",
                r#"{"records": [{"text": "a"}]}"#,
            ));
            let refused = api.handle(request(
                Method::Post,
                "/api/datasets/notes/token_classification:bulk",
                r#"{"records": [{"tokens": ["a"]}, {"tokens": ["b"]}]}"#,
            ));
            assert_eq!(refused.status, 409);
            assert_eq!(refused.body["detail"]["code"], "wrong_task");
        });
        assert_eq!(
            events.names(),
            [
                "log_records_requested",
                "log_records_requested",
                "server_error_found"
            ]
        );
        assert_eq!(events[1]["task"], "token_classification");
        assert_eq!(events[1]["records"], 2);
        assert_eq!(events[1]["succeeded"], false);
        assert_eq!(events[2]["code"], "wrong_task");
        assert_eq!(events[2]["entity"], "dataset");
    }

    #[test]
    fn each_error_is_answered_and_sent_with_its_code_entity_and_route_template() {
        let api = api();
        let bulk = "/api/datasets/payroll-alice/text_classification:bulk";
        let wrong_key = Request {
            api_key: Some("not-the-key"),
            ..request(Method::Get, "/api/me", "")
        };
        let too_large = Request {
            body: Body::TooLarge,
            ..request(Method::Post, bulk, "")
        };
        let cases: Vec<(Request<'_>, u16, &str, &str, Value)> = vec![
            (
                request(Method::Get, "/home/alice/secrets", ""),
                404,
                "not_found",
                "route",
                Value::Null,
            ),
            (
                request(
                    Method::Post,
                    "/api/datasets/payroll-alice/sentiment:bulk",
                    "{}",
                ),
                422,
                "validation_error",
                "task",
                json!("/api/datasets/{name}/{task}:bulk"),
            ),
            (
                request(Method::Post, bulk, "{\"records\": [Alice Smith"),
                400,
                "bad_request",
                "records",
                json!("/api/datasets/{name}/{task}:bulk"),
            ),
            (
                request(Method::Post, bulk, r#"{"records": ["Alice Smith"]}"#),
                400,
                "bad_request",
                "records",
                json!("/api/datasets/{name}/{task}:bulk"),
            ),
            (
                request(Method::Get, "/api/datasets/payroll-alice", ""),
                404,
                "not_found",
                "dataset",
                json!("/api/datasets/{name}"),
            ),
            (
                request(Method::Get, "/api/datasets/Payroll-Alice", ""),
                422,
                "validation_error",
                "dataset",
                json!("/api/datasets/{name}"),
            ),
            (wrong_key, 401, "unauthorized", "user", json!("/api/me")),
            (
                request(Method::Delete, "/api/me", ""),
                405,
                "method_not_allowed",
                "route",
                json!("/api/me"),
            ),
            (
                too_large,
                413,
                "payload_too_large",
                "records",
                json!("/api/datasets/{name}/{task}:bulk"),
            ),
        ];
        for (request, status, code, entity, route) in cases {
            let method = request.method;
            let recorder = testing::Recorder::new();
            let response = recorder.record(|| api.handle(request));
            assert_eq!(response.status, status, "{code}");
            assert_eq!(response.body["detail"]["code"], code);
            assert_eq!(response.body["detail"]["params"]["type"], entity);
            let events = recorder.events();
            let error = events.only("server_error_found");
            assert_eq!(
                error.property_names(),
                [
                    "code",
                    "entity",
                    "status",
                    "method",
                    "route",
                    "user_agent",
                    "user_agent_major",
                    "accept_language",
                ]
            );
            assert_eq!(error["code"], code);
            assert_eq!(error["entity"], entity);
            assert_eq!(error["status"], status);
            assert_eq!(error["route"], route, "{code}");
            assert_eq!(
                error["method"],
                if method == Method::Get {
                    "get"
                } else if method == Method::Post {
                    "post"
                } else {
                    "delete"
                }
            );
            for secret in ["payroll", "alice", "Smith", "sentiment", "not-the-key"] {
                assert!(!events.contains_text(secret), "{code}: {secret}");
            }
        }
    }

    #[test]
    fn the_current_user_is_sent_as_a_keyed_hash() {
        let api = api();
        let events = testing::record(|| {
            let anonymous = api.handle(request(Method::Get, "/api/me", ""));
            assert_eq!(anonymous.body["username"], "alice-admin");
            let with_key = Request {
                api_key: Some("secret-key-alice"),
                user_agent: None,
                accept_language: None,
                ..request(Method::Get, "/api/me", "")
            };
            assert_eq!(api.handle(with_key).status, 200);
        });
        let users: Vec<_> = events.named("user_info_requested").collect();
        assert_eq!(users.len(), 2);
        assert_eq!(
            users[0].property_names(),
            [
                "is_default_user",
                "user",
                "authenticated",
                "user_agent",
                "user_agent_major",
                "accept_language",
            ]
        );
        assert_eq!(users[0]["is_default_user"], false);
        assert_eq!(users[0]["user"], events.hash("alice-admin"));
        assert_eq!(users[1]["user"], events.hash("alice-admin"));
        assert_eq!(users[0]["authenticated"], false);
        assert_eq!(users[1]["authenticated"], true);
        assert_eq!(users[1]["user_agent"], Value::Null);
        assert!(!events.contains_text("alice"));

        let default = Api::new(User {
            username: DEFAULT_USER.to_owned(),
            api_key: "k".to_owned(),
        });
        let events = testing::record(|| {
            default.handle(request(Method::Get, "/api/me", ""));
        });
        assert_eq!(events.only("user_info_requested")["is_default_user"], true);
    }
}
