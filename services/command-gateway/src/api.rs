//! The command API.
//!
//! - `POST /v1/commands/{aggregate}/{command}`: the command as JSON (its business fields; `command_id`
//!   optional). Checked against the command's Avro contract (400 with every field problem), produced
//!   onto `<context>.<aggregate>.commands` keyed by the aggregate id (acks=all, idempotent), answered
//!   `202 {"command_id", "status_url"}` once the broker acknowledged. An `Idempotency-Key` header stands
//!   for the command id when the body has none: the id is derived from the key, the aggregate type and
//!   the aggregate id (so the same key for two aggregates is two commands, and a retried request is one).
//!   Ids longer than `max_id_bytes` are refused (400 naming the field). A 503 carries the command id, so
//!   the client retries with it.
//! - `GET /v1/commands/{command_id}[?wait_ms=N]`: `pending`, `accepted` (with the aggregate's version),
//!   `rejected` (with code and reason) or `dead_lettered`, waiting up to `wait_ms` for a result.
//!
//! "Accepted" by this API means the broker has the command; whether it was applied is the status.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use causeway_contracts::json::{FieldError, to_avro};
use causeway_contracts::subject::topic_record_name;
use causeway_contracts::wire::{Codec, WireError};
use rdkafka::message::{Headers, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::{Value, json};

use crate::config::GatewayConfig;
use crate::error::ApiError;
use crate::results::{Results, Shown};

/// What the handlers share.
pub struct App {
    /// What the gateway accepts.
    pub config: GatewayConfig,
    /// The idempotent producer.
    pub producer: FutureProducer,
    /// Wire format through the registry.
    pub codec: Codec,
    /// Parsed command schemas by subject.
    pub schemas: RwLock<HashMap<String, Arc<apache_avro::Schema>>>,
    /// Client for the registry.
    pub http: reqwest::Client,
    /// Results seen on the results topic.
    pub results: Results,
    /// The domain served.
    pub domain: causeway_contracts::domain::Domain,
}

/// The namespace of command ids derived from an `Idempotency-Key` (UUID v5).
const IDEMPOTENCY_NAMESPACE: uuid::Uuid =
    uuid::Uuid::from_u128(0x6361_7573_6577_6179_2d69_646b_6579_0001);

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App").finish_non_exhaustive()
    }
}

type Shared = State<Arc<App>>;

/// The API's routes.
pub fn router(app: Arc<App>, max_body: usize) -> Router {
    Router::new()
        .route("/v1/commands/{aggregate}/{command}", post(submit))
        .route("/v1/commands/{command_id}", get(status))
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(app)
}

fn invalid(message: &str, fields: Vec<FieldError>) -> ApiError {
    ApiError::Invalid {
        message: message.to_string(),
        fields,
    }
}

async fn schema_of(app: &App, subject: &str) -> Result<Arc<apache_avro::Schema>, ApiError> {
    if let Some(s) = app
        .schemas
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .get(subject)
    {
        return Ok(Arc::clone(s));
    }
    let url = format!(
        "{}/subjects/{}/versions/latest",
        app.config.registry_url.trim_end_matches('/'),
        causeway_contracts::registry::encode(subject)
    );
    let response = app.http.get(&url).send().await.map_err(|e| {
        ApiError::unavailable_now(format!("the schema registry did not answer: {e}"))
    })?;
    if response.status() == StatusCode::NOT_FOUND {
        return Err(ApiError::Unknown(format!(
            "no contract is registered for {subject}"
        )));
    }
    if !response.status().is_success() {
        return Err(ApiError::unavailable_now(format!(
            "the schema registry answered {}",
            response.status()
        )));
    }
    let body: Value = response.json().await.map_err(|e| {
        ApiError::unavailable_now(format!("the schema registry answered nonsense: {e}"))
    })?;
    let text = body["schema"].as_str().unwrap_or_default();
    let schema = causeway_contracts::schema::parse(text, &[]).map_err(|e| {
        ApiError::unavailable_now(format!("the contract of {subject} does not parse: {e}"))
    })?;
    let schema = Arc::new(schema);
    app.schemas
        .write()
        .unwrap_or_else(|p| p.into_inner())
        .insert(subject.to_string(), Arc::clone(&schema));
    Ok(schema)
}

async fn submit(
    State(app): Shared,
    Path((aggregate, command)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let aggregate_type = app
        .domain
        .aggregate_type(&aggregate)
        .ok_or_else(|| ApiError::Unknown(format!("no aggregate type {aggregate:?}")))?;
    let id_field = aggregate_type.id_field.to_string();
    let mut json: Value = serde_json::from_slice(&body)
        .map_err(|e| invalid(&format!("the body is not JSON: {e}"), vec![]))?;
    let Some(object) = json.as_object_mut() else {
        return Err(invalid(
            "the body must be a JSON object of the command's fields",
            vec![],
        ));
    };
    let key_header = headers
        .get("idempotency-key")
        .map(|v| v.to_str().map(str::to_string))
        .transpose()
        .map_err(|_| invalid("the Idempotency-Key header is not text", vec![]))?;
    let aggregate_id = object
        .get(&id_field)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    // An Idempotency-Key is scoped to the aggregate: the same key sent for another aggregate is another
    // command. The id derived from it is what a 202 or a 503 names, so a retry may send either.
    let scoped = |key: &str| {
        uuid::Uuid::new_v5(
            &IDEMPOTENCY_NAMESPACE,
            format!("{aggregate}\n{aggregate_id}\n{key}").as_bytes(),
        )
        .to_string()
    };
    let command_id = match (object.get("command_id").and_then(Value::as_str), key_header) {
        (Some(body_id), Some(key)) if body_id == key || body_id == scoped(&key) => scoped(&key),
        (Some(body_id), Some(key)) => {
            return Err(invalid(
                "command_id and the Idempotency-Key header differ",
                vec![FieldError {
                    field: "command_id".into(),
                    message: format!("is {body_id:?}, the header {key:?}"),
                }],
            ));
        }
        (Some(body_id), None) => body_id.to_string(),
        (None, Some(key)) => scoped(&key),
        (None, None) => uuid::Uuid::now_v7().to_string(),
    };
    if command_id.trim().is_empty() {
        return Err(invalid("the command id is empty", vec![]));
    }
    let max = app.config.max_id_bytes;
    let too_long: Vec<FieldError> = [
        ("command_id", Some(command_id.as_str())),
        (id_field.as_str(), Some(aggregate_id.as_str())),
        (
            "correlation_id",
            object.get("correlation_id").and_then(Value::as_str),
        ),
    ]
    .into_iter()
    .filter_map(|(field, value)| {
        let len = value?.len();
        (len > max).then(|| FieldError {
            field: field.to_string(),
            message: format!("is {len} bytes; at most {max} are allowed"),
        })
    })
    .collect();
    if !too_long.is_empty() {
        return Err(invalid(&format!("not a valid {command}"), too_long));
    }
    object.insert("command_id".into(), Value::String(command_id.clone()));

    let topic = format!("{}.{aggregate}.commands", app.config.context());
    let full_name = format!("{}.{command}", aggregate_type.namespace);
    let subject = topic_record_name(&topic, &full_name);
    let schema = schema_of(&app, &subject)
        .await
        .map_err(|e| e.for_command(&command_id))?;
    let value = to_avro(&schema, &json)
        .map_err(|fields| invalid(&format!("not a valid {command}"), fields))?;
    if aggregate_id.is_empty() {
        return Err(invalid(
            &format!("not a valid {command}"),
            vec![FieldError {
                field: id_field,
                message: "must name the aggregate (not empty)".into(),
            }],
        ));
    }
    let bytes = app
        .codec
        .encode_value(&topic, &full_name, value)
        .await
        .map_err(|e| {
            let message = match e {
                WireError::Registry(why) => why,
                other => other.to_string(),
            };
            ApiError::unavailable(message, &command_id)
        })?;
    // The caller's trace (W3C traceparent on the request) continues onto the command record; a
    // request without one begins a trace here.
    let parent =
        causeway_observe::propagation::extract(|name| headers.get(name).map(|v| v.as_bytes()));
    let cx = causeway_observe::propagation::begin(&parent, "command-gateway submit");
    let mut record = FutureRecord::to(&topic).key(&aggregate_id).payload(&bytes);
    let trace = causeway_kafka::headers::with_trace_context(OwnedHeaders::new(), &cx);
    if trace.count() > 0 {
        record = record.headers(trace);
    }
    app.producer
        .send(record, Duration::from_millis(app.config.produce_timeout_ms))
        .await
        .map_err(|(e, _)| {
            ApiError::unavailable(
                format!("Kafka did not acknowledge the command (it may still land: retry with the same command_id): {e}"),
                &command_id,
            )
        })?;
    tracing::debug!(%command_id, %topic, %aggregate_id, "command accepted");
    let body =
        json!({ "command_id": command_id, "status_url": format!("/v1/commands/{command_id}") });
    Ok((StatusCode::ACCEPTED, axum::Json(body)).into_response())
}

async fn status(
    State(app): Shared,
    Path(command_id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let wait_ms = match q.get("wait_ms") {
        None => 0,
        Some(raw) => raw.parse::<u64>().map_err(|_| {
            invalid(
                "wait_ms must be a whole number of milliseconds",
                vec![FieldError {
                    field: "wait_ms".into(),
                    message: format!("is {raw:?}"),
                }],
            )
        })?,
    }
    .min(app.config.max_status_wait_ms);
    let result = app
        .results
        .wait(&command_id, Duration::from_millis(wait_ms))
        .await;
    let body = match result {
        None => json!({ "command_id": command_id, "status": "pending" }),
        Some(r) => r.to_json(),
    };
    Ok((StatusCode::OK, axum::Json(body)).into_response())
}
