//! Everything the server sends besides the library's own events: one event per bulk log, per
//! error answered and per request for the current user, modelled on Argilla's
//! `LogRecordsRequested`, `ServerErrorFound` and `UserInfoRequested`.

use telemetry_runtime::{TelemetryEvent, TelemetryValue};

use crate::headers::Client;

/// The kind of annotation task a dataset holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, TelemetryValue)]
pub enum Task {
    /// Labels for whole texts.
    #[telemetry(rename = "text_classification")]
    TextClassification,
    /// Labels for spans of tokens.
    #[telemetry(rename = "token_classification")]
    TokenClassification,
    /// A text produced from a text.
    #[telemetry(rename = "text2text")]
    Text2Text,
}

impl Task {
    /// The task named `name` in a bulk route, if it is one.
    pub fn parse(name: &str) -> Option<Task> {
        match name {
            "text_classification" | "TextClassification" => Some(Task::TextClassification),
            "token_classification" | "TokenClassification" => Some(Task::TokenClassification),
            "text2text" | "Text2Text" => Some(Task::Text2Text),
            _ => None,
        }
    }

    /// The task's name in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Task::TextClassification => "text_classification",
            Task::TokenClassification => "token_classification",
            Task::Text2Text => "text2text",
        }
    }
}

/// The error code of an error answer, as in the answer's `detail.code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, TelemetryValue)]
pub enum ErrorCode {
    /// 404: no such route or entity.
    NotFound,
    /// 422: a value in the route is not valid.
    ValidationError,
    /// 400: the body cannot be read as the route expects.
    BadRequest,
    /// 401: the API key is wrong.
    Unauthorized,
    /// 405: the route exists but not for this method.
    MethodNotAllowed,
    /// 409: the dataset exists with another task.
    WrongTask,
    /// 413: the body is larger than the server accepts.
    PayloadTooLarge,
}

impl ErrorCode {
    /// The code as the API answers it.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::NotFound => "not_found",
            ErrorCode::ValidationError => "validation_error",
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::WrongTask => "wrong_task",
            ErrorCode::PayloadTooLarge => "payload_too_large",
        }
    }
}

/// What an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, TelemetryValue)]
pub enum Entity {
    /// The route itself.
    Route,
    /// The task named in the route.
    Task,
    /// The dataset named in the route.
    Dataset,
    /// The records in the body.
    Records,
    /// The user the API key stands for.
    User,
}

impl Entity {
    /// The entity as the API answers it.
    pub fn as_str(self) -> &'static str {
        match self {
            Entity::Route => "route",
            Entity::Task => "task",
            Entity::Dataset => "dataset",
            Entity::Records => "records",
            Entity::User => "user",
        }
    }
}

/// An HTTP method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, TelemetryValue)]
pub enum Method {
    /// `GET`.
    Get,
    /// `POST`.
    Post,
    /// `PUT`.
    Put,
    /// `PATCH`.
    Patch,
    /// `DELETE`.
    Delete,
    /// `HEAD`.
    Head,
    /// `OPTIONS`.
    Options,
    /// Any other method.
    Other,
}

/// A route of the API, as its template: never the path that was requested.
#[derive(Debug, Clone, Copy, PartialEq, Eq, TelemetryValue)]
pub enum Route {
    /// The current user.
    #[telemetry(rename = "/api/me")]
    Me,
    /// A dataset's record count.
    #[telemetry(rename = "/api/datasets/{name}")]
    Dataset,
    /// Logging records to a dataset in bulk.
    #[telemetry(rename = "/api/datasets/{name}/{task}:bulk")]
    Bulk,
}

/// Records were logged to a dataset in one bulk request (Argilla's `LogRecordsRequested`).
/// Sent for every bulk request whose route and body could be read. Neither the dataset's name
/// nor anything of the records is sent.
#[derive(Debug, TelemetryEvent)]
pub struct LogRecordsRequested {
    /// The dataset's task, from the route.
    pub task: Task,
    /// How many records the request carried.
    pub records: u64,
    /// How many of them carry an annotation (a non-null `annotation`).
    pub annotated: u64,
    /// How many of them carry metadata (a non-empty `metadata` object).
    pub with_metadata: u64,
    /// Whether this request created the dataset.
    pub new_dataset: bool,
    /// Whether the records were stored; false when the dataset holds another task.
    pub succeeded: bool,
    /// The client that sent the request.
    #[telemetry(flatten)]
    pub client: Client,
}

/// The server answered a request with an error (Argilla's `ServerErrorFound`). Only the route's
/// template is sent, never the path requested, the answer's parameters or the body.
#[derive(Debug, TelemetryEvent)]
pub struct ServerErrorFound {
    /// The error's code, as in the answer.
    pub code: ErrorCode,
    /// What the error is about (Argilla's `type`).
    pub entity: Entity,
    /// The HTTP status answered.
    pub status: u16,
    /// The request's method.
    pub method: Method,
    /// The template of the route requested; null when the path matched no route.
    pub route: Option<Route>,
    /// The client that sent the request.
    #[telemetry(flatten)]
    pub client: Client,
}

/// The current user was requested (Argilla's `UserInfoRequested`, sent at login).
#[derive(Debug, TelemetryEvent)]
pub struct UserInfoRequested<'a> {
    /// Whether the user is the default one, `argilla`.
    pub is_default_user: bool,
    /// The user's name as a keyed hash: it tells requests of one user apart from another's on
    /// this installation, and cannot be reversed, even for a common name.
    #[hash]
    pub user: &'a str,
    /// Whether the request carried the user's API key (a request without one is served as
    /// the local user; one with a wrong key is refused).
    pub authenticated: bool,
    /// The client that sent the request.
    #[telemetry(flatten)]
    pub client: Client,
}
