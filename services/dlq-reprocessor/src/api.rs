//! The operator API and the web UI. Every route needs a token from `[access]` (compared in constant
//! time): `Authorization: Bearer <token>`, or the UI's session cookie (set by `POST /v1/session` with a
//! token; with it, only requests carrying `X-Causeway-UI` may act). Without one: 401 (the UI's page
//! answers its sign-in form). Errors are `{"error": "..."}`.
//!
//! - `GET /`: the web UI (dead letters with filters and counts by class, detail, replay and discard
//!   with confirmation, the event history of an aggregate).
//!
//! - `GET /v1/dead-letters?group&class&topic&key&state&since&until&limit&cursor`: dead letters, newest
//!   first (`limit` 1..=500, default 50); `next` is the cursor of the next page.
//! - `GET /v1/dead-letters/counts`: parked dead letters by error class and by group (depth, oldest).
//! - `GET /v1/dead-letters/{id}`: one, with its record: headers (secrets redacted), key, and its value
//!   decoded through the registry, or its bytes (hex) with the reason it cannot be decoded.
//! - `POST /v1/dead-letters/{id}/replay[?dry_run=true]`, `POST /v1/dead-letters/{id}/discard[?dry_run=true]`:
//!   act on one (409 when it cannot be: already done, loop guard, no source).
//! - `POST /v1/dead-letters/replay`, `POST /v1/dead-letters/discard`, body
//!   `{"filter": {...}, "dry_run": false}`: act on every parked one matching the filter (at most
//!   `dlq.max_batch`).
//! - `GET /v1/history/{aggregate}/{id}`: the aggregate's events in order, decoded, each with its
//!   command, result and trace id; its commands (results, with the command decoded); its dead letters.
//! - `GET /v1/correlations/{id}`: the commands (with results) and dead letters of one flow, in time
//!   order.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use causeway_contracts::upcast::Upcasters;
use causeway_contracts::wire::Codec;
use rdkafka::Message;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use crate::actions::{Act, ActError, Desk};
use crate::audit::Kind;
use crate::config::{MAX_TOKEN_BYTES, Token};
use crate::history::{self, History};
use crate::index::{Filter, Letter, ListError, Position, State as LetterState};
use crate::records;

/// Longest value shown as hex.
const MAX_HEX_BYTES: usize = 64 * 1024;

/// What the handlers share.
#[derive(Debug)]
pub struct Api {
    /// Where actions are done (and the index).
    pub desk: Desk,
    /// To decode values.
    pub codec: Codec,
    /// Accepted tokens.
    pub tokens: Vec<Token>,
    /// Header names holding these (lowercase) are redacted.
    pub secret_headers: Vec<String>,
    /// The most letters one action by filter takes.
    pub max_batch: usize,
    /// The history index.
    pub history: History,
    /// The first segment of the event topics.
    pub context: String,
    /// The most events one history shows.
    pub max_events: usize,
    /// Histories read at once, at most (each reads a partition of an events topic).
    pub history_reads: tokio::sync::Semaphore,
}

/// Histories read at once, at most; more get 429.
pub const HISTORY_READS: usize = 2;

type Shared = State<Arc<Api>>;

/// Who is calling: the name of their token.
#[derive(Debug, Clone)]
pub struct Operator(pub String);

/// The API's routes, and the web UI's.
pub fn router(api: Arc<Api>) -> Router {
    let guarded = Router::new()
        .route("/", get(ui))
        .route("/v1/whoami", get(whoami))
        .route("/v1/session/logout", post(logout))
        .route("/v1/dead-letters", get(list))
        .route("/v1/dead-letters/counts", get(counts))
        .route("/v1/dead-letters/replay", post(replay_matching))
        .route("/v1/dead-letters/discard", post(discard_matching))
        .route("/v1/dead-letters/{id}", get(show))
        .route("/v1/dead-letters/{id}/replay", post(replay_one))
        .route("/v1/dead-letters/{id}/discard", post(discard_one))
        .route("/v1/history/{aggregate}/{id}", get(aggregate_history))
        .route("/v1/correlations/{id}", get(correlation))
        .layer(middleware::from_fn_with_state(api.clone(), authenticate));
    Router::new()
        .route("/v1/session", post(login))
        .route("/ui/app.js", get(|| asset("text/javascript", APP_JS)))
        .route("/ui/login.js", get(|| asset("text/javascript", LOGIN_JS)))
        .merge(guarded)
        .layer(middleware::from_fn(secure_headers))
        .with_state(api)
}

/// The web UI: plain HTML and JavaScript, served as they are (no build step).
const INDEX_HTML: &str = include_str!("ui/index.html");
const APP_JS: &str = include_str!("ui/app.js");
const LOGIN_HTML: &str = include_str!("ui/login.html");
const LOGIN_JS: &str = include_str!("ui/login.js");

/// The session cookie of the UI: the token (hex), HttpOnly, SameSite=Strict.
const COOKIE: &str = "causeway_dlq";

/// The header the UI sends with every call: with the session cookie, a request without it is refused
/// (a cross-site form or image cannot set it).
const UI_HEADER: &str = "x-causeway-ui";

async fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

/// Headers every answer carries: no framing, no sniffing, scripts only from here.
async fn secure_headers(request: Request, next: Next) -> Response {
    let mut r = next.run(request).await;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

async fn ui() -> Response {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        INDEX_HTML,
    )
        .into_response()
}

async fn whoami(axum::Extension(operator): axum::Extension<Operator>) -> Response {
    axum::Json(json!({ "operator": operator.0 })).into_response()
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The UI's session cookie's token, if the request has one.
fn cookie_token(request: &Request) -> Option<Vec<u8>> {
    request
        .headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .and_then(|(_, value)| hex_decode(value.trim()))
}

#[derive(Debug, serde::Deserialize)]
struct Login {
    token: String,
}

/// The UI's sign-in: a token from the configuration gets the session cookie.
async fn login(State(api): Shared, body: axum::body::Bytes) -> Response {
    let Ok(l) = serde_json::from_slice::<Login>(&body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "the body must be {\"token\": \"...\"}",
        );
    };
    if holder(&api.tokens, l.token.as_bytes()).is_none() {
        return error(StatusCode::UNAUTHORIZED, "the token is not accepted");
    }
    let value = hex(l.token.as_bytes());
    let cookie = format!("{COOKIE}={value}; HttpOnly; SameSite=Strict; Path=/");
    match HeaderValue::from_str(&cookie) {
        Ok(v) => (StatusCode::NO_CONTENT, [(header::SET_COOKIE, v)]).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn logout() -> Response {
    (
        StatusCode::NO_CONTENT,
        [(
            header::SET_COOKIE,
            HeaderValue::from_static("causeway_dlq=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"),
        )],
    )
        .into_response()
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

fn redis_down(e: &redis::RedisError) -> Response {
    let mut r = error(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("redis did not answer: {e}"),
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

/// The token's holder, if `presented` is one of `tokens`. Every token is compared, each over the same
/// [`MAX_TOKEN_BYTES`] whatever the lengths, in constant time: the answer takes as long whichever matched,
/// and says nothing about a token's length.
pub fn holder(tokens: &[Token], presented: &[u8]) -> Option<String> {
    let padded = |t: &[u8]| {
        let mut buf = [0u8; MAX_TOKEN_BYTES];
        let n = t.len().min(MAX_TOKEN_BYTES);
        buf[..n].copy_from_slice(&t[..n]);
        buf
    };
    let theirs = padded(presented);
    let fits = presented.len() <= MAX_TOKEN_BYTES;
    let mut found = None;
    for t in tokens {
        let same_bytes = theirs.ct_eq(&padded(t.token.as_bytes()));
        let same_length = (presented.len() as u64).ct_eq(&(t.token.len() as u64));
        if bool::from(same_bytes & same_length) && fits {
            found = Some(t.name.clone());
        }
    }
    found
}

async fn authenticate(State(api): Shared, mut request: Request, next: Next) -> Response {
    let bearer = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(|t| t.trim().as_bytes().to_vec());
    let from_cookie = bearer.is_none();
    let presented = bearer.or_else(|| cookie_token(&request));
    let name = presented.as_deref().and_then(|p| holder(&api.tokens, p));
    match name {
        Some(name) => {
            // With the cookie, only the UI acts: a request from another site cannot set this header.
            if from_cookie
                && request.method() != axum::http::Method::GET
                && !request.headers().contains_key(UI_HEADER)
            {
                return error(
                    StatusCode::FORBIDDEN,
                    "a request with the session cookie must come from the UI (X-Causeway-UI)",
                );
            }
            request.extensions_mut().insert(Operator(name));
            next.run(request).await
        }
        None if request.uri().path() == "/" => (
            StatusCode::UNAUTHORIZED,
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::WWW_AUTHENTICATE, "Bearer realm=\"causeway-dlq\""),
            ],
            LOGIN_HTML,
        )
            .into_response(),
        None => {
            let mut r = error(
                StatusCode::UNAUTHORIZED,
                if presented.is_some() {
                    "the token is not accepted"
                } else {
                    "a token is required: Authorization: Bearer <token>"
                },
            );
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"causeway-dlq\""),
            );
            r
        }
    }
}

/// The filter a query names, or the 400 that says what is wrong.
fn filter_of(q: &HashMap<String, String>) -> Result<Filter, Refusal> {
    let text = |k: &str| q.get(k).filter(|v| !v.is_empty()).cloned();
    let time = |k: &str| -> Result<Option<i64>, Refusal> {
        match q.get(k).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| {
                refuse(
                    StatusCode::BAD_REQUEST,
                    format!("{k} must be a time in ms since the epoch, not {v:?}"),
                )
            }),
        }
    };
    let f = Filter {
        group: text("group"),
        class: text("class"),
        topic: text("topic"),
        key: text("key"),
        state: text("state"),
        since: time("since")?,
        until: time("until")?,
    };
    f.check().map_err(|e| refuse(StatusCode::BAD_REQUEST, e))?;
    Ok(f)
}

async fn list(State(api): Shared, Query(q): Query<HashMap<String, String>>) -> Response {
    for k in q.keys() {
        if !matches!(
            k.as_str(),
            "group" | "class" | "topic" | "key" | "state" | "since" | "until" | "limit" | "cursor"
        ) {
            return error(StatusCode::BAD_REQUEST, format!("unknown parameter {k:?}"));
        }
    }
    let filter = match filter_of(&q) {
        Ok(f) => f,
        Err(r) => return r.into_response(),
    };
    let limit = match q.get("limit").map(|l| l.parse::<usize>()) {
        None => 50,
        Some(Ok(n)) if (1..=500).contains(&n) => n,
        Some(_) => return error(StatusCode::BAD_REQUEST, "limit must be 1..=500"),
    };
    match api
        .desk
        .index
        .list(&filter, q.get("cursor").map(String::as_str), limit)
        .await
    {
        Ok(page) => axum::Json(page).into_response(),
        Err(ListError::Cursor) => error(StatusCode::BAD_REQUEST, ListError::Cursor.to_string()),
        Err(ListError::Redis(e)) => redis_down(&e),
    }
}

async fn counts(State(api): Shared) -> Response {
    let by_class = match api.desk.index.parked_by_class().await {
        Ok(c) => c,
        Err(e) => return redis_down(&e),
    };
    let depth = match api.desk.index.depth().await {
        Ok(d) => d,
        Err(e) => return redis_down(&e),
    };
    let groups: Vec<Value> = depth
        .into_iter()
        .filter(|(_, n, _)| *n > 0)
        .map(|(g, n, oldest)| json!({ "group": g, "parked": n, "oldest_at": oldest }))
        .collect();
    axum::Json(json!({ "by_class": by_class, "by_group": groups })).into_response()
}

async fn letter(api: &Api, id: &str) -> Result<Letter, Response> {
    match api.desk.index.get(id).await {
        Ok(Some(l)) => Ok(l),
        Ok(None) => Err(error(
            StatusCode::NOT_FOUND,
            format!("no dead letter {id:?}"),
        )),
        Err(e) => Err(redis_down(&e)),
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len().min(MAX_HEX_BYTES) * 2);
    for b in bytes.iter().take(MAX_HEX_BYTES) {
        let _ = write!(s, "{b:02x}");
    }
    s
}

async fn show(State(api): Shared, Path(id): Path<String>) -> Response {
    let l = match letter(&api, &id).await {
        Ok(l) => l,
        Err(r) => return r,
    };
    let mut positions = vec![l.dlq.clone()];
    if l.value_omitted
        && let Some(s) = &l.source
    {
        positions.push(s.clone());
    }
    let kafka = api.desk.kafka.clone();
    let fetched =
        match tokio::task::spawn_blocking(move || records::fetch(&kafka, &positions)).await {
            Ok(f) => f,
            Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        };
    let at = |p: &Position| fetched.get(&(p.topic.clone(), p.partition, p.offset));
    let record = match at(&l.dlq) {
        Some(Ok(m)) => {
            let headers: Vec<Value> = m
                .headers()
                .map(|hs| match causeway_kafka::headers::readable(hs) {
                    None => vec![json!({ "name": "(unreadable)", "value": "a header name is not UTF-8: the headers cannot be shown" })],
                    Some(hs) => hs.into_iter()
                        .map(|h| {
                            let lower = h.key.to_ascii_lowercase();
                            let secret = api.secret_headers.iter().any(|s| lower.contains(s));
                            let value = if secret {
                                "<redacted>".to_string()
                            } else {
                                String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned()
                            };
                            json!({ "name": h.key, "value": value })
                        })
                        .collect()
                })
                .unwrap_or_default();
            let value_bytes: Option<Vec<u8>> = if l.value_omitted {
                l.source
                    .as_ref()
                    .and_then(at)
                    .and_then(|r| r.as_ref().ok())
                    .and_then(|m| m.payload().map(<[u8]>::to_vec))
            } else {
                m.payload().map(<[u8]>::to_vec)
            };
            let value = match value_bytes {
                None => {
                    json!({ "bytes": 0, "error": if l.value_omitted { "the value was left out of the dead letter and is no longer at its source" } else { "the record has no value" } })
                }
                Some(bytes) => match api.codec.decode_value(&bytes, &Upcasters::default()).await {
                    Ok(d) => match Value::try_from(d.value) {
                        Ok(v) => {
                            json!({ "bytes": bytes.len(), "schema": d.full_name, "decoded": v })
                        }
                        Err(e) => {
                            json!({ "bytes": bytes.len(), "schema": d.full_name, "error": format!("decoded, but not shown as JSON: {e}"), "hex": hex(&bytes) })
                        }
                    },
                    Err(e) => {
                        json!({ "bytes": bytes.len(), "error": e.to_string(), "hex": hex(&bytes) })
                    }
                },
            };
            json!({
                "key": m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                "headers": headers,
                "value": value,
            })
        }
        Some(Err(e)) => json!({ "error": e.to_string() }),
        None => json!({ "error": "not read" }),
    };
    axum::Json(json!({ "letter": l, "record": record })).into_response()
}

fn dry_run(q: &HashMap<String, String>) -> Result<bool, Refusal> {
    match q.get("dry_run").map(String::as_str) {
        None | Some("false") => Ok(false),
        Some("true" | "") => Ok(true),
        Some(v) => Err(refuse(
            StatusCode::BAD_REQUEST,
            format!("dry_run must be true or false, not {v:?}"),
        )),
    }
}

fn act_failed(e: &ActError) -> Response {
    match e {
        ActError::Redis(e) => redis_down(e),
        ActError::Audit(_) | ActError::NotRecordable(_) => {
            error(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
        }
    }
}

async fn one(
    api: Arc<Api>,
    act: Act,
    id: String,
    q: HashMap<String, String>,
    body: &[u8],
    operator: Operator,
) -> Response {
    // Acting on a letter is not something a misspelt dry run should do.
    if let Some(k) = q.keys().find(|k| k.as_str() != "dry_run") {
        return error(
            StatusCode::BAD_REQUEST,
            format!("unknown parameter {k:?} (only dry_run=true|false)"),
        );
    }
    if !body.iter().all(u8::is_ascii_whitespace) {
        return error(
            StatusCode::BAD_REQUEST,
            "acting on one dead letter takes no body (a dry run is ?dry_run=true)",
        );
    }
    let dry = match dry_run(&q) {
        Ok(d) => d,
        Err(r) => return r.into_response(),
    };
    let l = match letter(&api, &id).await {
        Ok(l) => l,
        Err(r) => return r,
    };
    let kind = match act {
        Act::Replay => Kind::Replay,
        Act::Discard => Kind::Discard,
    };
    match api
        .desk
        .act(act, vec![l], &operator.0, None, dry, kind)
        .await
    {
        Ok(report) => {
            let refused = report.letters.iter().any(|d| d.outcome == "refused");
            let status = if refused {
                StatusCode::CONFLICT
            } else {
                StatusCode::OK
            };
            (status, axum::Json(report)).into_response()
        }
        Err(e) => act_failed(&e),
    }
}

async fn replay_one(
    State(api): Shared,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    axum::Extension(operator): axum::Extension<Operator>,
    body: axum::body::Bytes,
) -> Response {
    one(api, Act::Replay, id, q, &body, operator).await
}

async fn discard_one(
    State(api): Shared,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    axum::Extension(operator): axum::Extension<Operator>,
    body: axum::body::Bytes,
) -> Response {
    one(api, Act::Discard, id, q, &body, operator).await
}

/// The body of an action by filter.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Matching {
    filter: Filter,
    #[serde(default)]
    dry_run: bool,
}

async fn matching(api: Arc<Api>, act: Act, body: &[u8], operator: Operator) -> Response {
    let m: Matching = match serde_json::from_slice(body) {
        Ok(m) => m,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!(
                    "the body must be {{\"filter\": {{group, class, topic, key, since, until}}, \"dry_run\": bool}}: {e}"
                ),
            );
        }
    };
    let mut filter = m.filter;
    if let Err(e) = filter.check() {
        return error(StatusCode::BAD_REQUEST, e);
    }
    match filter.state.as_deref() {
        None => filter.state = Some(LetterState::Parked.as_str().into()),
        Some("parked") => {}
        Some(s) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("only parked dead letters can be acted on, not {s}"),
            );
        }
    }
    if filter
        == (Filter {
            state: filter.state.clone(),
            ..Filter::default()
        })
    {
        return error(
            StatusCode::BAD_REQUEST,
            "name at least one of group, class, topic, key, since, until (every dead letter at once is not an action to take by accident)",
        );
    }
    let mut letters = Vec::new();
    let mut cursor: Option<String> = None;
    let mut truncated = false;
    loop {
        let page = match api.desk.index.list(&filter, cursor.as_deref(), 500).await {
            Ok(p) => p,
            Err(ListError::Redis(e)) => return redis_down(&e),
            Err(ListError::Cursor) => {
                return error(StatusCode::INTERNAL_SERVER_ERROR, "lost the cursor");
            }
        };
        letters.extend(page.letters);
        if letters.len() >= api.max_batch {
            truncated = letters.len() > api.max_batch || page.next.is_some();
            letters.truncate(api.max_batch);
            break;
        }
        match page.next {
            Some(n) => cursor = Some(n),
            None => break,
        }
    }
    let kind = match act {
        Act::Replay => Kind::Replay,
        Act::Discard => Kind::Discard,
    };
    let described = serde_json::to_string(&filter).ok();
    match api
        .desk
        .act(act, letters, &operator.0, described, m.dry_run, kind)
        .await
    {
        Ok(report) => {
            let mut body = serde_json::to_value(&report).unwrap_or_default();
            // More matched than one action takes (dlq.max_batch): the rest wait for the next call.
            body["truncated"] = json!(truncated);
            axum::Json(body).into_response()
        }
        Err(e) => act_failed(&e),
    }
}

async fn replay_matching(
    State(api): Shared,
    axum::Extension(operator): axum::Extension<Operator>,
    body: axum::body::Bytes,
) -> Response {
    matching(api, Act::Replay, &body, operator).await
}

async fn discard_matching(
    State(api): Shared,
    axum::Extension(operator): axum::Extension<Operator>,
    body: axum::body::Bytes,
) -> Response {
    matching(api, Act::Discard, &body, operator).await
}

/// The commands of `results` read back and decoded, each with its result.
async fn commands_of(api: &Api, results: &[HashMap<String, String>]) -> Vec<Value> {
    let positions = history::command_positions(results);
    let kafka = api.desk.kafka.clone();
    let fetched = if positions.is_empty() {
        HashMap::new()
    } else {
        tokio::task::spawn_blocking(move || records::fetch(&kafka, &positions))
            .await
            .unwrap_or_default()
    };
    let mut out = Vec::with_capacity(results.len());
    for r in results {
        out.push(history::command_json(&api.codec, r, &fetched).await);
    }
    out
}

async fn aggregate_history(
    State(api): Shared,
    Path((aggregate, id)): Path<(String, String)>,
) -> Response {
    if api.context.is_empty() {
        return error(
            StatusCode::NOT_FOUND,
            "no event history: history.context is not configured",
        );
    }
    // An aggregate type is a topic name's segment: nothing that could name another topic.
    if aggregate.is_empty()
        || aggregate.len() > 100
        || !aggregate
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    {
        return error(
            StatusCode::BAD_REQUEST,
            format!("{aggregate:?} is not an aggregate type (lowercase letters, digits, - and _)"),
        );
    }
    let Ok(_permit) = api.history_reads.try_acquire() else {
        let mut r = error(
            StatusCode::TOO_MANY_REQUESTS,
            format!("{HISTORY_READS} histories are being read; try again shortly"),
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return r;
    };
    let topic = format!("{}.{aggregate}.events", api.context);
    let kafka = api.desk.kafka.clone();
    let (max, key) = (api.max_events, id.clone());
    let scanned = {
        let topic = topic.clone();
        tokio::task::spawn_blocking(move || history::scan_key(&kafka, &topic, key.as_bytes(), max))
            .await
    };
    let (records, truncated) = match scanned {
        Ok(Ok(r)) => r,
        Ok(Err(e)) if e.starts_with("there is no topic") => {
            return error(
                StatusCode::NOT_FOUND,
                format!("unknown aggregate {aggregate:?}: {e}"),
            );
        }
        Ok(Err(e)) => return error(StatusCode::SERVICE_UNAVAILABLE, e),
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let results = match api
        .history
        .of_aggregate(&aggregate, &id, api.max_events)
        .await
    {
        Ok(r) => r,
        Err(e) => return redis_down(&e),
    };
    let commands = commands_of(&api, &results).await;
    let mut events = Vec::with_capacity(records.len());
    for m in &records {
        let mut e = history::event_json(&api.codec, m).await;
        if let Some(c) = commands
            .iter()
            .find(|c| c["command_id"] == e["command_id"] && c["outcome"] == "accepted")
        {
            e["command"] = c.clone();
        }
        events.push(e);
    }
    // The dead letters of this aggregate: its key, from its own topics (another aggregate type may use
    // the same id).
    let own = format!("{}.{aggregate}.", api.context);
    let letters: Vec<Letter> = match api
        .desk
        .index
        .list(
            &Filter {
                key: Some(id.clone()),
                ..Filter::default()
            },
            None,
            500,
        )
        .await
    {
        Ok(p) => p
            .letters
            .into_iter()
            .filter(|l| l.source.as_ref().is_some_and(|s| s.topic.starts_with(&own)))
            .collect(),
        Err(ListError::Redis(e)) => return redis_down(&e),
        Err(ListError::Cursor) => Vec::new(),
    };
    axum::Json(json!({
        "aggregate": aggregate,
        "id": id,
        "topic": topic,
        "events": events,
        "truncated": truncated,
        "commands": commands,
        "dead_letters": letters,
    }))
    .into_response()
}

async fn correlation(State(api): Shared, Path(id): Path<String>) -> Response {
    let (results, letter_ids) = match api.history.of_correlation(&id, api.max_events).await {
        Ok(r) => r,
        Err(e) => return redis_down(&e),
    };
    let commands = commands_of(&api, &results).await;
    let mut letters = Vec::with_capacity(letter_ids.len());
    for l in letter_ids {
        match api.desk.index.get(&l).await {
            Ok(Some(l)) => letters.push(l),
            Ok(None) => {}
            Err(e) => return redis_down(&e),
        }
    }
    axum::Json(json!({
        "correlation_id": id,
        "commands": commands,
        "dead_letters": letters,
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_configured_token_names_its_holder() {
        let tokens = vec![
            Token {
                name: "alice".into(),
                token: "alice-secret-0123456789".into(),
            },
            Token {
                name: "bob".into(),
                token: "bob-secret-0123456789".into(),
            },
        ];
        assert_eq!(
            holder(&tokens, b"bob-secret-0123456789").as_deref(),
            Some("bob")
        );
        assert_eq!(holder(&tokens, b"bob-secret-012345678"), None);
        assert_eq!(holder(&tokens, b""), None);
    }
}
