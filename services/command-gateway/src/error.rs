//! Errors of `command-gateway`: the API's answers, and the service's own failures.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use causeway_contracts::json::FieldError;
use causeway_core::{Classify, ErrorClass};
use serde_json::json;

/// An answer other than 202/200, with a body that says why.
#[derive(Debug)]
pub enum ApiError {
    /// 400: the body is not a command of that type; every field problem is listed.
    Invalid {
        /// What, in a sentence.
        message: String,
        /// Each field's problem.
        fields: Vec<FieldError>,
    },
    /// 404: no such aggregate type or command.
    Unknown(String),
    /// 503: Kafka or the registry did not answer; retry after a few seconds (with the command id,
    /// when there is one, so that the retry is the same command).
    Unavailable {
        /// Why.
        message: String,
        /// The command's id, when the request got that far.
        command_id: Option<String>,
    },
}

impl ApiError {
    /// 503 for command `command_id`.
    pub fn unavailable(message: impl Into<String>, command_id: &str) -> Self {
        ApiError::Unavailable {
            message: message.into(),
            command_id: Some(command_id.to_string()),
        }
    }

    /// This answer, about command `command_id` (a 503 then names it).
    pub fn for_command(self, command_id: &str) -> Self {
        match self {
            ApiError::Unavailable { message, .. } => ApiError::unavailable(message, command_id),
            other => other,
        }
    }

    /// 503 before a command id exists.
    pub fn unavailable_now(message: impl Into<String>) -> Self {
        ApiError::Unavailable {
            message: message.into(),
            command_id: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body) = match self {
            ApiError::Invalid { message, fields } => (
                StatusCode::BAD_REQUEST,
                json!({
                    "error": message,
                    "fields": fields.iter().map(|f| json!({ "field": f.field, "message": f.message })).collect::<Vec<_>>(),
                }),
            ),
            ApiError::Unknown(message) => (StatusCode::NOT_FOUND, json!({ "error": message })),
            ApiError::Unavailable {
                message,
                command_id,
            } => {
                let mut body = json!({ "error": message });
                if let Some(id) = command_id {
                    body["command_id"] = json!(id);
                }
                (StatusCode::SERVICE_UNAVAILABLE, body)
            }
        };
        let retry = status == StatusCode::SERVICE_UNAVAILABLE;
        let mut response = (status, axum::Json(body)).into_response();
        if retry {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        response
    }
}

/// A failure of the service outside a request.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Talking to Kafka failed; the class is Kafka's.
    #[error(transparent)]
    Kafka(#[from] causeway_kafka::Error),
    /// A domain this build does not host. Fatal (config validation catches it first).
    #[error("unknown domain {0:?}")]
    UnknownDomain(String),
    /// The results topic is not in the cluster. Fatal: provision the domain's topics.
    #[error(
        "the results topic {0:?} does not exist (create the domain's topics: `causeway topics apply`)"
    )]
    MissingResultsTopic(String),
    /// Metrics could not be registered. Fatal (a bug).
    #[error("cannot register metrics: {0}")]
    Metrics(String),
    /// The API listener could not be bound.
    #[error("cannot listen on {addr} (http.listen): {source}")]
    Listen {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

impl Classify for Error {
    fn class(&self) -> ErrorClass {
        match self {
            Error::Kafka(e) => e.class(),
            Error::Listen { .. }
            | Error::UnknownDomain(_)
            | Error::MissingResultsTopic(_)
            | Error::Metrics(_) => ErrorClass::Fatal,
        }
    }
}
