//! The read API over the documents in Redis.
//!
//! - `GET /v1/read/{projection}/{id}[?min_version=N&wait_ms=M]`: the document of aggregate `id`: its
//!   fields, the `version` of the aggregate it reflects and the `event_time` (ms) of the last event
//!   applied. With `min_version` (e.g. the `new_version` a command's result gave), the answer waits up to
//!   `wait_ms` (at most 10 000) for that version to be applied: 200 once it is, else `202` with
//!   `"applied": false` and what is there so far (accepted, not yet applied). 404: an unknown projection,
//!   or no document for that id (without `min_version`).
//! - `GET /v1/read/{projection}/index/{index}/{key}[?offset=0&limit=20]`: the documents filed under `key`
//!   of `index`, highest score first (e.g. a customer's orders, newest first), paged (`limit` 1..=100).
//! - `GET /v1/openapi.json`: this API as an OpenAPI 3.0 document, with the fields of each projection.
//!
//! 400 names a bad parameter. Field values are strings as stored (numbers in decimal, JSON as text).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use redis::aio::ConnectionManager;
use serde_json::{Value, json};

use crate::store::{self, Generations};

/// The longest wait a read may ask for, in ms.
pub const MAX_WAIT_MS: u64 = 10_000;

/// How often a waiting read looks again.
const POLL: Duration = Duration::from_millis(20);

/// A projection as the API serves it.
#[derive(Debug, Clone)]
pub struct Served {
    /// Its name.
    pub name: &'static str,
    /// Its aggregate type.
    pub aggregate: &'static str,
    /// Its fields.
    pub fields: &'static [&'static str],
    /// Its generations (reads go to the live one).
    pub generations: Generations,
}

/// What the handlers share.
#[derive(Debug)]
pub struct ReadApi {
    /// The projections served, by name.
    pub projections: HashMap<&'static str, Served>,
    /// Redis.
    pub connection: ConnectionManager,
}

type Shared = State<Arc<ReadApi>>;

/// The API's routes.
pub fn router(api: Arc<ReadApi>) -> Router {
    Router::new()
        .route("/v1/openapi.json", get(openapi))
        .route("/v1/read/{projection}/{id}", get(document))
        .route("/v1/read/{projection}/index/{index}/{key}", get(index))
        .with_state(api)
}

/// A request the API refuses: its status and why.
#[derive(Debug)]
pub struct Refusal {
    status: StatusCode,
    message: String,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        error(self.status, self.message)
    }
}

fn refuse(status: StatusCode, message: impl Into<String>) -> Refusal {
    Refusal {
        status,
        message: message.into(),
    }
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({ "error": message.into() }))).into_response()
}

/// A key holding what the projector never writes there (another writer in the key space): 500, not
/// worth a retry.
fn malformed(e: &dyn std::fmt::Display) -> Response {
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("a stored value is not what the projector writes: {e}"),
    )
}

fn unavailable(e: &redis::RedisError) -> Response {
    if e.code() == Some("WRONGTYPE") {
        return malformed(e);
    }
    let mut response = error(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("redis did not answer: {e}"),
    );
    response.headers_mut().insert(
        axum::http::header::RETRY_AFTER,
        axum::http::HeaderValue::from_static("1"),
    );
    response
}

/// A query parameter as a number in `range`, or the 400 that names it.
fn number(
    query: &HashMap<String, String>,
    name: &str,
    default: i64,
    range: std::ops::RangeInclusive<i64>,
) -> Result<i64, Refusal> {
    match query.get(name) {
        None => Ok(default),
        Some(text) => match text.parse::<i64>() {
            Ok(n) if range.contains(&n) => Ok(n),
            _ => Err(refuse(
                StatusCode::BAD_REQUEST,
                format!(
                    "{name} must be a whole number from {} to {}, not {text:?}",
                    range.start(),
                    range.end()
                ),
            )),
        },
    }
}

/// The generation readers see now.
async fn live(
    connection: &mut ConnectionManager,
    served: &Served,
) -> Result<u32, redis::RedisError> {
    store::live(connection, &served.generations).await
}

/// Whether `after` (the live generation read after the data, in the same pipeline) still names
/// `generation`: if not, a rebuild switched (and may have deleted the data read) in between.
fn unchanged(served: &Served, generation: u32, after: Option<&str>) -> bool {
    after
        .and_then(|v| v.parse().ok())
        .unwrap_or(served.generations.default)
        == generation
}

/// How many times a read is made again because a rebuild switched generations under it.
const SWITCHED_READS: usize = 3;

fn served<'a>(api: &'a ReadApi, projection: &str) -> Result<&'a Served, Refusal> {
    api.projections.get(projection).ok_or_else(|| {
        let mut known: Vec<&str> = api.projections.keys().copied().collect();
        known.sort_unstable();
        refuse(
            StatusCode::NOT_FOUND,
            format!("no projection {projection:?}; served: {known:?}"),
        )
    })
}

/// A stored hash as the API shows it.
fn shown(id: &str, stored: HashMap<String, String>) -> Value {
    let version = stored
        .get("_version")
        .and_then(|v| v.parse::<i64>().ok())
        .unwrap_or(0);
    let event_time = stored
        .get("_event_time")
        .and_then(|v| v.parse::<i64>().ok())
        .unwrap_or(0);
    let fields: serde_json::Map<String, Value> = stored
        .into_iter()
        .filter(|(k, _)| !k.starts_with('_'))
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    json!({ "id": id, "version": version, "event_time": event_time, "fields": fields })
}

async fn document(
    State(api): Shared,
    Path((projection, id)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let served = match served(&api, &projection) {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let min_version = match query.get("min_version") {
        None => None,
        Some(_) => match number(&query, "min_version", 0, 1..=i64::MAX) {
            Ok(n) => Some(n),
            Err(r) => return r.into_response(),
        },
    };
    let wait = match number(&query, "wait_ms", 0, 0..=MAX_WAIT_MS as i64) {
        Ok(n) => Duration::from_millis(n.unsigned_abs()),
        Err(r) => return r.into_response(),
    };
    let deadline = Instant::now() + wait;
    let mut connection = api.connection.clone();
    let mut switched = 0;
    loop {
        // The live generation, again at each look: a rebuild may switch it meanwhile.
        let generation = match live(&mut connection, served).await {
            Ok(g) => g,
            Err(e) => return unavailable(&e),
        };
        let key = served.generations.keys(generation).doc(&id);
        let (stored, after): (HashMap<String, String>, Option<String>) = match redis::pipe()
            .cmd("HGETALL")
            .arg(&key)
            .cmd("GET")
            .arg(served.generations.live_key())
            .query_async(&mut connection)
            .await
        {
            Ok(s) => s,
            Err(e) => return unavailable(&e),
        };
        if !unchanged(served, generation, after.as_deref()) && switched < SWITCHED_READS {
            switched += 1;
            continue;
        }
        let version = stored
            .get("_version")
            .and_then(|v| v.parse::<i64>().ok())
            .unwrap_or(0);
        let reached = min_version.is_none_or(|n| version >= n) && !stored.is_empty();
        if reached {
            return (StatusCode::OK, axum::Json(shown(&id, stored))).into_response();
        }
        if Instant::now() >= deadline {
            return match min_version {
                None => error(
                    StatusCode::NOT_FOUND,
                    format!("no {projection} document for {id:?}"),
                ),
                Some(n) => {
                    let mut body = if stored.is_empty() {
                        json!({ "id": id, "version": 0, "event_time": Value::Null, "fields": {} })
                    } else {
                        shown(&id, stored)
                    };
                    body["applied"] = json!(false);
                    body["min_version"] = json!(n);
                    (StatusCode::ACCEPTED, axum::Json(body)).into_response()
                }
            };
        }
        tokio::time::sleep(POLL.min(deadline.saturating_duration_since(Instant::now()))).await;
    }
}

async fn index(
    State(api): Shared,
    Path((projection, index, key)): Path<(String, String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let served = match served(&api, &projection) {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let offset = match number(&query, "offset", 0, 0..=1_000_000) {
        Ok(n) => n,
        Err(r) => return r.into_response(),
    };
    let limit = match number(&query, "limit", 20, 1..=100) {
        Ok(n) => n,
        Err(r) => return r.into_response(),
    };
    let mut connection = api.connection.clone();
    let mut switched = 0;
    let (ids, docs) = loop {
        let generation = match live(&mut connection, served).await {
            Ok(g) => g,
            Err(e) => return unavailable(&e),
        };
        let keys = served.generations.keys(generation);
        let ids: Vec<(String, i64)> = match redis::cmd("ZREVRANGE")
            .arg(keys.index(&index, &key))
            .arg(offset)
            .arg(offset + limit - 1)
            .arg("WITHSCORES")
            .query_async(&mut connection)
            .await
        {
            Ok(ids) => ids,
            Err(e) => return unavailable(&e),
        };
        let mut pipe = redis::pipe();
        for (id, _) in &ids {
            pipe.cmd("HGETALL").arg(keys.doc(id));
        }
        pipe.cmd("GET").arg(served.generations.live_key());
        let mut answers: Vec<redis::Value> = match pipe.query_async(&mut connection).await {
            Ok(d) => d,
            Err(e) => return unavailable(&e),
        };
        let after: Option<String> = match answers.pop().map(redis::from_redis_value) {
            Some(Ok(a)) => a,
            Some(Err(e)) => return malformed(&e),
            None => None,
        };
        if !unchanged(served, generation, after.as_deref()) && switched < SWITCHED_READS {
            switched += 1;
            continue;
        }
        let docs: Vec<HashMap<String, String>> =
            match answers.into_iter().map(redis::from_redis_value).collect() {
                Ok(d) => d,
                Err(e) => return malformed(&e),
            };
        break (ids, docs);
    };
    let items: Vec<Value> = ids
        .iter()
        .zip(docs)
        .map(|((id, score), stored)| {
            let mut doc = shown(id, stored);
            doc["score"] = json!(score);
            doc
        })
        .collect();
    (
        StatusCode::OK,
        axum::Json(json!({
            "index": index, "key": key, "offset": offset, "limit": limit, "items": items,
        })),
    )
        .into_response()
}

async fn openapi(State(api): Shared) -> Response {
    let mut names: Vec<&Served> = api.projections.values().collect();
    names.sort_by_key(|s| s.name);
    let schemas: serde_json::Map<String, Value> = names
        .iter()
        .map(|s| {
            let fields: serde_json::Map<String, Value> = s
                .fields
                .iter()
                .map(|f| ((*f).to_string(), json!({ "type": "string" })))
                .collect();
            (
                s.name.to_string(),
                json!({
                    "type": "object",
                    "description": format!("A document of projection {} (one per {} aggregate).", s.name, s.aggregate),
                    "properties": {
                        "id": { "type": "string" },
                        "version": { "type": "integer", "description": "The aggregate version it reflects." },
                        "event_time": { "type": "integer", "description": "Time of the last event applied, ms since the epoch." },
                        "fields": { "type": "object", "properties": fields },
                    },
                }),
            )
        })
        .collect();
    let projection_param = json!({
        "name": "projection", "in": "path", "required": true,
        "schema": { "type": "string", "enum": names.iter().map(|s| s.name).collect::<Vec<_>>() },
    });
    let doc = json!({
        "openapi": "3.0.3",
        "info": { "title": "Causeway read API", "version": env!("CARGO_PKG_VERSION") },
        "paths": {
            "/v1/read/{projection}/{id}": { "get": {
                "summary": "A document by aggregate id; with min_version, wait (bounded) until that version is applied.",
                "parameters": [
                    projection_param,
                    { "name": "id", "in": "path", "required": true, "schema": { "type": "string" } },
                    { "name": "min_version", "in": "query", "schema": { "type": "integer", "minimum": 1 } },
                    { "name": "wait_ms", "in": "query", "schema": { "type": "integer", "minimum": 0, "maximum": MAX_WAIT_MS } },
                ],
                "responses": {
                    "200": { "description": "The document (at least min_version)." },
                    "202": { "description": "min_version is not applied yet: applied=false and what is there." },
                    "400": { "description": "A bad parameter, named." },
                    "404": { "description": "Unknown projection, or no document for the id." },
                    "503": { "description": "Redis did not answer." },
                },
            }},
            "/v1/read/{projection}/index/{index}/{key}": { "get": {
                "summary": "The documents filed under a key of an index, highest score first.",
                "parameters": [
                    projection_param,
                    { "name": "index", "in": "path", "required": true, "schema": { "type": "string" } },
                    { "name": "key", "in": "path", "required": true, "schema": { "type": "string" } },
                    { "name": "offset", "in": "query", "schema": { "type": "integer", "minimum": 0 } },
                    { "name": "limit", "in": "query", "schema": { "type": "integer", "minimum": 1, "maximum": 100 } },
                ],
                "responses": {
                    "200": { "description": "A page of documents, each with its score." },
                    "400": { "description": "A bad parameter, named." },
                    "404": { "description": "Unknown projection." },
                },
            }},
        },
        "components": { "schemas": schemas },
    });
    (StatusCode::OK, axum::Json(doc)).into_response()
}
