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
    /// 503: Kafka or the registry did not answer; retry after a few seconds.
    Unavailable(String),
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
            ApiError::Unavailable(message) => {
                (StatusCode::SERVICE_UNAVAILABLE, json!({ "error": message }))
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
            Error::Listen { .. } => ErrorClass::Fatal,
        }
    }
}
