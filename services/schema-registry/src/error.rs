//! Errors of the registry: the REST API's errors in Confluent's shape (`{"error_code", "message"}` with
//! Confluent's codes and HTTP statuses, which clients key on), and the service's own failures.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use causeway_core::{Classify, ErrorClass};
use serde::Serialize;

/// Confluent's content type for every API response.
pub const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// An error answered to an API client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{error_code}: {message}")]
pub struct ApiError {
    /// Confluent's error code (its first three digits are the HTTP status).
    pub error_code: u32,
    /// What went wrong, for a person.
    pub message: String,
}

impl ApiError {
    fn new(error_code: u32, message: impl Into<String>) -> Self {
        Self {
            error_code,
            message: message.into(),
        }
    }

    /// 40401.
    pub fn subject_not_found(subject: &str) -> Self {
        Self::new(40401, format!("Subject '{subject}' not found."))
    }
    /// 40402.
    pub fn version_not_found(subject: &str, version: &str) -> Self {
        Self::new(
            40402,
            format!("Version {version} not found for subject '{subject}'."),
        )
    }
    /// 40403.
    pub fn schema_not_found(detail: &str) -> Self {
        Self::new(40403, format!("Schema not found: {detail}"))
    }
    /// 40404.
    pub fn subject_soft_deleted(subject: &str) -> Self {
        Self::new(
            40404,
            format!(
                "Subject '{subject}' was soft deleted. Set permanent=true to delete permanently"
            ),
        )
    }
    /// 40405.
    pub fn subject_not_soft_deleted(subject: &str) -> Self {
        Self::new(
            40405,
            format!("Subject '{subject}' was not deleted first before being permanently deleted"),
        )
    }
    /// 40406.
    pub fn version_soft_deleted(subject: &str, version: i32) -> Self {
        Self::new(
            40406,
            format!(
                "Subject '{subject}' Version {version} was soft deleted. Set permanent=true to delete permanently"
            ),
        )
    }
    /// 40407.
    pub fn version_not_soft_deleted(subject: &str, version: i32) -> Self {
        Self::new(
            40407,
            format!(
                "Subject '{subject}' Version {version} was not deleted first before being permanently deleted"
            ),
        )
    }
    /// 40408.
    pub fn subject_level_not_configured(subject: &str) -> Self {
        Self::new(
            40408,
            format!("Subject '{subject}' does not have subject-level compatibility configured"),
        )
    }
    /// 40409.
    pub fn subject_mode_not_configured(subject: &str) -> Self {
        Self::new(
            40409,
            format!("Subject '{subject}' does not have subject-level mode configured"),
        )
    }
    /// 409: the schema breaks the subject's compatibility level.
    pub fn incompatible(messages: &[String]) -> Self {
        Self::new(
            409,
            format!(
                "Schema being registered is incompatible with an earlier schema for subject: {}",
                messages.join("; ")
            ),
        )
    }
    /// 42201.
    pub fn invalid_schema(why: &str) -> Self {
        Self::new(42201, format!("Invalid schema: {why}"))
    }
    /// 42202.
    pub fn invalid_version(raw: &str) -> Self {
        Self::new(
            42202,
            format!(
                "The specified version '{raw}' is not a valid version id. Allowed values are between [1, 2^31-1] and the string \"latest\""
            ),
        )
    }
    /// 42203.
    pub fn invalid_level(raw: &str) -> Self {
        Self::new(
            42203,
            format!(
                "Invalid compatibility level '{raw}'. Valid values are NONE, BACKWARD, BACKWARD_TRANSITIVE, FORWARD, FORWARD_TRANSITIVE, FULL, FULL_TRANSITIVE"
            ),
        )
    }
    /// 42204.
    pub fn invalid_mode(raw: &str) -> Self {
        Self::new(
            42204,
            format!("Invalid mode '{raw}'. Valid values are READWRITE, READONLY, IMPORT"),
        )
    }
    /// 42205.
    pub fn not_permitted(why: &str) -> Self {
        Self::new(42205, format!("Operation not permitted: {why}"))
    }
    /// 42206.
    pub fn referenced(subject: &str, version: i32) -> Self {
        Self::new(
            42206,
            format!(
                "Subject '{subject}' Version {version} is referenced by other schemas and cannot be deleted"
            ),
        )
    }
    /// 400 (Confluent answers 400 for bodies it cannot parse, 415/422 differ by version).
    pub fn bad_request(why: &str) -> Self {
        Self::new(400, why.to_string())
    }
    /// 50001.
    pub fn store(why: &str) -> Self {
        Self::new(50001, format!("Error in the backend data store: {why}"))
    }
    /// 50003: a write could not be forwarded to the writer instance.
    pub fn forward(why: &str) -> Self {
        Self::new(
            50003,
            format!("Error while forwarding the request to the leader: {why}"),
        )
    }
    /// 50002.
    pub fn timeout(why: &str) -> Self {
        Self::new(50002, format!("Operation timed out: {why}"))
    }

    /// The HTTP status the code implies.
    pub fn status(&self) -> StatusCode {
        let status = if self.error_code < 1000 {
            self.error_code
        } else {
            self.error_code / 100
        };
        u16::try_from(status)
            .ok()
            .and_then(|s| StatusCode::from_u16(s).ok())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut response = (self.status(), body).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
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
    #[error("cannot listen on {addr} (registry.listen): {source}")]
    Listen {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The schema topic exists with a shape the registry cannot use (it must be one compacted partition).
    #[error(
        "the schema topic cannot be used: {0}; it must have exactly 1 partition and cleanup.policy=compact"
    )]
    Topic(String),
    /// Metrics could not be registered. Fatal (a bug).
    #[error("cannot register metrics: {0}")]
    Metrics(String),
    /// The `_schemas` reader stopped.
    #[error("the {topic} reader stopped: {why}")]
    Reader {
        /// The topic.
        topic: String,
        /// Why.
        why: String,
    },
}

impl Classify for Error {
    fn class(&self) -> ErrorClass {
        match self {
            Error::Kafka(e) => e.class(),
            Error::Listen { .. } | Error::Topic(_) | Error::Metrics(_) => ErrorClass::Fatal,
            Error::Reader { .. } => ErrorClass::Transient,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_carry_their_http_status() {
        assert_eq!(
            ApiError::subject_not_found("s").status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(ApiError::incompatible(&[]).status(), StatusCode::CONFLICT);
        assert_eq!(
            ApiError::invalid_schema("x").status(),
            StatusCode::UNPROCESSABLE_ENTITY
        );
        assert_eq!(
            ApiError::store("x").status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
}
