//! The REST API, as Confluent Schema Registry serves it, so that unmodified Confluent clients work:
//! the same paths, bodies, error codes and content type. Known client habits are accepted: booleans in
//! any case (`normalize=False`), percent-encoded subjects (`a%2Fb`), bodies without `schemaType`
//! (AVRO), unknown body fields (`metadata`, `ruleSet`), any JSON-ish content type.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::error::{ApiError, CONTENT_TYPE};
use crate::log::Log;
use crate::model::{
    ConfigValue, Key, Level, Mode, ModeValue, OTHER_KEY_MAGIC, Reference, SCHEMA_KEY_MAGIC,
    SchemaValue,
};
use crate::store::{Found, Store, Stored, VersionSpec};
use causeway_contracts::compat::{self, Previous};
use causeway_contracts::schema;

/// What the handlers share.
#[derive(Debug)]
pub struct App {
    /// The log and the state folded from it.
    pub log: Log,
    /// Level of subjects without one while no global level is set.
    pub default_level: Level,
    /// Client for forwarding writes to the writer instance.
    pub http: reqwest::Client,
    /// Largest request body accepted (and forwarded).
    pub max_body: usize,
    /// This instance's own advertised URL (never forwarded to).
    pub own_url: String,
    /// How long a write may wait for a writer during a hand-over.
    pub write_timeout: std::time::Duration,
}

type Shared = State<Arc<App>>;
type Params = Query<HashMap<String, String>>;
type ApiResult = Result<Response, ApiError>;

/// The API's routes.
pub fn router(app: Arc<App>) -> Router {
    let max_body = app.max_body;
    Router::new()
        .route("/", get(|| async { reply(json!({})) }))
        .route("/subjects", get(list_subjects))
        .route("/subjects/{subject}", post(lookup).delete(delete_subject))
        .route(
            "/subjects/{subject}/versions",
            get(list_versions).post(register),
        )
        .route(
            "/subjects/{subject}/versions/{version}",
            get(get_version).delete(delete_version),
        )
        .route(
            "/subjects/{subject}/versions/{version}/schema",
            get(get_version_schema),
        )
        .route(
            "/subjects/{subject}/versions/{version}/referencedby",
            get(referenced_by),
        )
        .route("/schemas/types", get(|| async { reply(json!(["AVRO"])) }))
        .route("/schemas/ids/{id}", get(schema_by_id))
        .route("/schemas/ids/{id}/schema", get(raw_schema_by_id))
        .route("/schemas/ids/{id}/subjects", get(subjects_by_id))
        .route("/schemas/ids/{id}/versions", get(versions_by_id))
        .route(
            "/compatibility/subjects/{subject}/versions",
            post(check_latest),
        )
        .route(
            "/compatibility/subjects/{subject}/versions/{version}",
            post(check_version),
        )
        .route(
            "/config",
            get(get_global_config)
                .put(put_global_config)
                .delete(delete_global_config),
        )
        .route(
            "/config/{subject}",
            get(get_subject_config)
                .put(put_subject_config)
                .delete(delete_subject_config),
        )
        .route("/mode", get(get_global_mode).put(put_global_mode))
        .route(
            "/mode/{subject}",
            get(get_subject_mode)
                .put(put_subject_mode)
                .delete(delete_subject_mode),
        )
        .fallback(|| async {
            ApiError {
                error_code: 404,
                message: "HTTP 404 Not Found".into(),
            }
        })
        .layer(middleware::from_fn_with_state(
            Arc::clone(&app),
            forward_writes,
        ))
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(app)
}

/// Whether a request changes state (and so must reach the writer). Lookups and compatibility checks
/// are POSTs that only read.
fn is_write(method: &Method, path: &str) -> bool {
    match *method {
        Method::PUT | Method::DELETE => true,
        Method::POST => path.starts_with("/subjects/") && path.ends_with("/versions"),
        _ => false,
    }
}

/// Writes reaching an instance that is not the writer are forwarded to the announced writer, and its
/// answer returned as it is. During a hand-over (the announced writer is gone, no new one yet) the
/// request waits, up to the write timeout, and goes wherever the role lands, this instance included.
async fn forward_writes(State(app): Shared, request: Request, next: Next) -> Response {
    if !is_write(request.method(), request.uri().path()) || app.log.is_leader() {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(body, app.max_body).await {
        Ok(b) => b,
        Err(e) => {
            return ApiError::bad_request(&format!("cannot read the request body: {e}"))
                .into_response();
        }
    };
    let deadline = tokio::time::Instant::now() + app.write_timeout;
    let mut last_error = crate::log::not_leader();
    loop {
        if app.log.is_leader() {
            return next.run(Request::from_parts(parts, body.into())).await;
        }
        if let Some(leader) = app.log.leader_url().filter(|url| *url != app.own_url) {
            match forward(&app, &leader, &parts, body.clone()).await {
                Ok(response) => return response,
                Err(e) => last_error = e,
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return last_error.into_response();
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

async fn forward(
    app: &App,
    leader: &str,
    parts: &axum::http::request::Parts,
    body: Bytes,
) -> Result<Response, ApiError> {
    let target = format!(
        "{}{}",
        leader.trim_end_matches('/'),
        parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
    );
    let answer = app
        .http
        .request(parts.method.clone(), &target)
        .header(header::CONTENT_TYPE, CONTENT_TYPE)
        .body(body)
        .send()
        .await
        .map_err(|e| ApiError::forward(&format!("{leader}: {e}")))?;
    let status = answer.status();
    let bytes = answer
        .bytes()
        .await
        .map_err(|e| ApiError::forward(&format!("{leader}: {e}")))?;
    let mut response = (status, bytes).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    Ok(response)
}

fn reply(body: impl Serialize) -> Response {
    raw(serde_json::to_vec(&body).unwrap_or_default())
}

fn raw(body: impl Into<axum::body::Body>) -> Response {
    let mut response = (StatusCode::OK, body.into()).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    response
}

/// A query flag, read the way clients send it (`true`, `True`, `TRUE`).
fn flag(params: &HashMap<String, String>, name: &str) -> bool {
    params
        .get(name)
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

fn body<T: for<'de> Deserialize<'de>>(bytes: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| ApiError {
        error_code: 422,
        message: format!("Unrecognized or malformed request body: {e}"),
    })
}

/// The schema with the id in `raw`, or 40403.
fn stored_by_id(store: &Store, raw: &str) -> Result<Arc<Stored>, ApiError> {
    let id = raw
        .parse::<i32>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| ApiError::schema_not_found(&format!("'{raw}' is not a schema id")))?;
    store
        .schema(id)
        .ok_or_else(|| ApiError::schema_not_found(&format!("schema {id} not found")))
}

/// A version as the API shows it.
fn version_body(found: &Found) -> serde_json::Value {
    let mut body = json!({
        "subject": found.subject,
        "version": found.version,
        "id": found.stored.id,
        "schema": found.stored.schema,
    });
    decorate(
        &mut body,
        found.stored.schema_type.as_deref(),
        &found.stored.references,
    );
    if found.deleted {
        body["deleted"] = json!(true);
    }
    body
}

fn decorate(body: &mut serde_json::Value, schema_type: Option<&str>, references: &[Reference]) {
    if let Some(t) = schema_type {
        body["schemaType"] = json!(t);
    }
    if !references.is_empty() {
        body["references"] = json!(references);
    }
}

// --- schema input ------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SchemaRequest {
    schema: String,
    #[serde(default)]
    schema_type: Option<String>,
    #[serde(default)]
    references: Vec<Reference>,
    /// IMPORT mode: the id to register under.
    #[serde(default)]
    id: Option<i32>,
    /// IMPORT mode: the version to register as.
    #[serde(default)]
    version: Option<i32>,
}

/// A request's schema, validated: canonical text, references, parsed Avro.
struct Candidate {
    canonical: String,
    references: Vec<Reference>,
    parsed: apache_avro::Schema,
}

fn candidate(store: &Store, request: &SchemaRequest) -> Result<Candidate, ApiError> {
    if let Some(t) = &request.schema_type
        && !t.eq_ignore_ascii_case("AVRO")
    {
        return Err(ApiError::invalid_schema(&format!(
            "schema type {t} is not supported; this registry serves AVRO"
        )));
    }
    let canonical = schema::canonical(&request.schema).map_err(|e| ApiError::invalid_schema(&e))?;
    let referenced = resolve(store, &request.references, 0)?;
    let parsed =
        schema::parse(&canonical, &referenced).map_err(|e| ApiError::invalid_schema(&e))?;
    Ok(Candidate {
        canonical,
        references: request.references.clone(),
        parsed,
    })
}

/// Most bytes of referenced schema text one schema may pull in, all references together.
const MAX_REFERENCED_BYTES: usize = 4 << 20;

/// The texts of `references` and of what they reference, dependencies first, each (subject, version)
/// once however often it is referenced (a diamond of references does not multiply), within
/// [`MAX_REFERENCED_BYTES`].
fn resolve(store: &Store, references: &[Reference], depth: usize) -> Result<Vec<String>, ApiError> {
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut bytes = 0usize;
    resolve_into(store, references, depth, &mut seen, &mut bytes, &mut out)?;
    Ok(out)
}

fn resolve_into(
    store: &Store,
    references: &[Reference],
    depth: usize,
    seen: &mut std::collections::HashSet<(String, i32)>,
    bytes: &mut usize,
    out: &mut Vec<String>,
) -> Result<(), ApiError> {
    if depth > 32 {
        return Err(ApiError::invalid_schema(
            "references nest deeper than 32 levels",
        ));
    }
    for r in references {
        if !seen.insert((r.subject.clone(), r.version)) {
            continue;
        }
        let found = store
            .version(&r.subject, VersionSpec::Number(r.version), false)
            .map_err(|_| {
                ApiError::invalid_schema(&format!(
                    "reference {} names subject '{}' version {}, which does not exist",
                    r.name, r.subject, r.version
                ))
            })?;
        resolve_into(store, &found.stored.references, depth + 1, seen, bytes, out)?;
        *bytes += found.stored.schema.len();
        if *bytes > MAX_REFERENCED_BYTES {
            return Err(ApiError::invalid_schema(&format!(
                "the referenced schemas exceed {MAX_REFERENCED_BYTES} bytes together"
            )));
        }
        out.push(found.stored.schema.clone());
    }
    Ok(())
}

fn parse_found(store: &Store, found: &Found) -> Result<apache_avro::Schema, ApiError> {
    let referenced = resolve(store, &found.stored.references, 0)?;
    schema::parse(&found.stored.schema, &referenced).map_err(|e| {
        ApiError::store(&format!(
            "stored schema {} of {} v{} does not parse: {e}",
            found.stored.id, found.subject, found.version
        ))
    })
}

/// A compatibility check to run: the level and the versions to check against, parsed, owned, so that
/// the check runs after the store's lock is released.
struct Check {
    level: Level,
    previous: Vec<(i32, apache_avro::Schema)>,
}

/// The subject's live versions under the subject's level (read under the store's lock).
fn against_subject(app: &App, store: &Store, subject: &str) -> Result<Check, ApiError> {
    let found = store.all_versions(subject, false);
    let previous = found
        .iter()
        .map(|f| parse_found(store, f).map(|schema| (f.version, schema)))
        .collect::<Result<_, _>>()?;
    Ok(Check {
        level: level_of(app, store, subject),
        previous,
    })
}

impl Check {
    /// Every incompatibility of `candidate`, computed on a blocking thread with no lock held (a check
    /// is bounded in steps, see `compat::MAX_STEPS`, but may still take a while): 422 when the schema
    /// is too complex to check.
    async fn run(self, candidate: apache_avro::Schema) -> Result<Vec<String>, ApiError> {
        tokio::task::spawn_blocking(move || {
            let previous: Vec<Previous<'_>> = self
                .previous
                .iter()
                .map(|(version, schema)| Previous {
                    version: *version,
                    schema,
                })
                .collect();
            compat::check(self.level, &candidate, &previous)
        })
        .await
        .map_err(|e| ApiError::store(&format!("the compatibility check failed: {e}")))?
        .map_err(|e| ApiError::invalid_schema(&e.to_string()))
    }
}

fn level_of(app: &App, store: &Store, subject: &str) -> Level {
    store
        .subject_level(subject)
        .or(store.global_level())
        .unwrap_or(app.default_level)
}

fn mode_of(store: &Store, subject: &str) -> Mode {
    store
        .subject_mode(subject)
        .or(store.global_mode())
        .unwrap_or(Mode::Readwrite)
}

fn writable(store: &Store, subject: &str) -> Result<(), ApiError> {
    match mode_of(store, subject) {
        Mode::Readonly => Err(ApiError::not_permitted(&format!(
            "subject '{subject}' is in READONLY mode"
        ))),
        _ => Ok(()),
    }
}

// --- subjects ----------------------------------------------------------------------------------

async fn list_subjects(State(app): Shared, Query(q): Params) -> ApiResult {
    let store = app.log.store();
    let prefix = q
        .get("subjectPrefix")
        .map(String::as_str)
        .filter(|p| *p != ":*:");
    Ok(reply(store.subjects(flag(&q, "deleted"), prefix)))
}

async fn list_versions(
    State(app): Shared,
    Path(subject): Path<String>,
    Query(q): Params,
) -> ApiResult {
    Ok(reply(
        app.log.store().versions(&subject, flag(&q, "deleted"))?,
    ))
}

async fn get_version(
    State(app): Shared,
    Path((subject, version)): Path<(String, String)>,
    Query(q): Params,
) -> ApiResult {
    let spec = VersionSpec::parse(&version)?;
    let found = app
        .log
        .store()
        .version(&subject, spec, flag(&q, "deleted"))?;
    Ok(reply(version_body(&found)))
}

async fn get_version_schema(
    State(app): Shared,
    Path((subject, version)): Path<(String, String)>,
    Query(q): Params,
) -> ApiResult {
    let spec = VersionSpec::parse(&version)?;
    let found = app
        .log
        .store()
        .version(&subject, spec, flag(&q, "deleted"))?;
    Ok(raw(found.stored.schema.clone()))
}

async fn referenced_by(
    State(app): Shared,
    Path((subject, version)): Path<(String, String)>,
) -> ApiResult {
    let store = app.log.store();
    let found = store.version(&subject, VersionSpec::parse(&version)?, false)?;
    let ids = store.referenced_by(&found.subject, found.version);
    Ok(reply(ids))
}

async fn register(State(app): Shared, Path(subject): Path<String>, bytes: Bytes) -> ApiResult {
    let request: SchemaRequest = body(&bytes)?;
    let mut guard = app.log.writer().await;
    let writer = guard.as_mut().ok_or_else(crate::log::not_leader)?;
    // Read what the check needs under the store's lock, check without it (only this writer, whose
    // lock is held, changes the store meanwhile), then take the lock again to assign id and version.
    let (mode, c, check) = {
        let store = app.log.store();
        let mode = mode_of(&store, &subject);
        if mode == Mode::Readonly {
            return Err(ApiError::not_permitted(&format!(
                "subject '{subject}' is in READONLY mode"
            )));
        }
        let c = candidate(&store, &request)?;
        if let Some((_, id)) =
            store.find_in_subject(&subject, &c.canonical, None, &c.references, false)
        {
            return Ok(reply(json!({ "id": id })));
        }
        let check = (mode != Mode::Import)
            .then(|| against_subject(&app, &store, &subject))
            .transpose()?;
        (mode, c, check)
    };
    if let Some(check) = check {
        let messages = check.run(c.parsed.clone()).await?;
        if !messages.is_empty() {
            return Err(ApiError::incompatible(&messages));
        }
    }
    let record = {
        let store = app.log.store();
        let existing_id = store.id_of(&c.canonical, None, &c.references);
        let (id, version) = match mode {
            Mode::Import => {
                let id = request.id.ok_or_else(|| {
                    ApiError::not_permitted("IMPORT mode registrations must give the schema's id")
                })?;
                if let Some(taken) = store.schema(id).filter(|s| s.schema != c.canonical) {
                    return Err(ApiError::not_permitted(&format!(
                        "id {} is already used by another schema",
                        taken.id
                    )));
                }
                (
                    id,
                    request
                        .version
                        .unwrap_or_else(|| store.next_version(&subject)),
                )
            }
            _ => (
                existing_id.unwrap_or_else(|| store.next_id()),
                store.next_version(&subject),
            ),
        };
        SchemaValue {
            subject: subject.clone(),
            version,
            id,
            schema: c.canonical,
            schema_type: None,
            references: c.references,
            deleted: false,
        }
    };
    let id = record.id;
    let key = Key::Schema {
        subject: subject.clone(),
        version: record.version,
        magic: SCHEMA_KEY_MAGIC,
    };
    let value = serde_json::to_vec(&record).map_err(|e| ApiError::store(&e.to_string()))?;
    writer.write(vec![(key, Some(value))]).await?;
    tracing::info!(%subject, version = record.version, id, "schema registered");
    Ok(reply(json!({ "id": id })))
}

async fn lookup(
    State(app): Shared,
    Path(subject): Path<String>,
    Query(q): Params,
    bytes: Bytes,
) -> ApiResult {
    let request: SchemaRequest = body(&bytes)?;
    let store = app.log.store();
    let deleted = flag(&q, "deleted");
    if !store.subject_exists(&subject) {
        return Err(ApiError::subject_not_found(&subject));
    }
    let c = candidate(&store, &request)?;
    let (version, _) = store
        .find_in_subject(&subject, &c.canonical, None, &c.references, deleted)
        .ok_or_else(|| {
            ApiError::schema_not_found(&format!("the schema is not registered under '{subject}'"))
        })?;
    let found = store.version(&subject, VersionSpec::Number(version), deleted)?;
    Ok(reply(version_body(&found)))
}

/// The SCHEMA record value that marks `found` soft-deleted.
fn soft_deleted(found: &Found) -> Result<Vec<u8>, ApiError> {
    let value = SchemaValue {
        subject: found.subject.clone(),
        version: found.version,
        id: found.stored.id,
        schema: found.stored.schema.clone(),
        schema_type: found.stored.schema_type.clone(),
        references: found.stored.references.clone(),
        deleted: true,
    };
    serde_json::to_vec(&value).map_err(|e| ApiError::store(&e.to_string()))
}

async fn delete_subject(
    State(app): Shared,
    Path(subject): Path<String>,
    Query(q): Params,
) -> ApiResult {
    let permanent = flag(&q, "permanent");
    let mut guard = app.log.writer().await;
    let writer = guard.as_mut().ok_or_else(crate::log::not_leader)?;
    let (records, versions) = {
        let store = app.log.store();
        writable(&store, &subject)?;
        let all = store.all_versions(&subject, true);
        if all.is_empty() {
            return Err(ApiError::subject_not_found(&subject));
        }
        let live: Vec<&Found> = all.iter().filter(|f| !f.deleted).collect();
        if let Some(f) = all
            .iter()
            .find(|f| store.is_referenced(&subject, f.version))
        {
            return Err(ApiError::referenced(&subject, f.version));
        }
        let key = |version| Key::Schema {
            subject: subject.clone(),
            version,
            magic: SCHEMA_KEY_MAGIC,
        };
        if permanent {
            if !live.is_empty() {
                return Err(ApiError::subject_not_soft_deleted(&subject));
            }
            let records = all
                .iter()
                .map(|f| (key(f.version), None))
                .collect::<Vec<_>>();
            (records, all.iter().map(|f| f.version).collect::<Vec<_>>())
        } else {
            if live.is_empty() {
                return Err(ApiError::subject_soft_deleted(&subject));
            }
            let mut records = Vec::with_capacity(live.len());
            for f in &live {
                records.push((key(f.version), Some(soft_deleted(f)?)));
            }
            (records, live.iter().map(|f| f.version).collect())
        }
    };
    writer.write(records).await?;
    tracing::info!(%subject, permanent, ?versions, "subject deleted");
    Ok(reply(versions))
}

async fn delete_version(
    State(app): Shared,
    Path((subject, version)): Path<(String, String)>,
    Query(q): Params,
) -> ApiResult {
    let permanent = flag(&q, "permanent");
    let spec = VersionSpec::parse(&version)?;
    let mut guard = app.log.writer().await;
    let writer = guard.as_mut().ok_or_else(crate::log::not_leader)?;
    let (key, value, number) = {
        let store = app.log.store();
        writable(&store, &subject)?;
        let found = store.version(&subject, spec, true)?;
        if spec == VersionSpec::Latest && found.deleted && !permanent {
            return Err(ApiError::version_soft_deleted(&subject, found.version));
        }
        if store.is_referenced(&subject, found.version) {
            return Err(ApiError::referenced(&subject, found.version));
        }
        let key = Key::Schema {
            subject: subject.clone(),
            version: found.version,
            magic: SCHEMA_KEY_MAGIC,
        };
        if permanent {
            if !found.deleted {
                return Err(ApiError::version_not_soft_deleted(&subject, found.version));
            }
            (key, None, found.version)
        } else {
            if found.deleted {
                return Err(ApiError::version_soft_deleted(&subject, found.version));
            }
            (key, Some(soft_deleted(&found)?), found.version)
        }
    };
    writer.write(vec![(key, value)]).await?;
    tracing::info!(%subject, version = number, permanent, "version deleted");
    Ok(reply(number))
}

// --- schemas by id -----------------------------------------------------------------------------

async fn schema_by_id(State(app): Shared, Path(id): Path<String>) -> ApiResult {
    let stored = stored_by_id(&app.log.store(), &id)?;
    let mut body = json!({ "schema": stored.schema });
    decorate(&mut body, stored.schema_type.as_deref(), &stored.references);
    Ok(reply(body))
}

async fn raw_schema_by_id(State(app): Shared, Path(id): Path<String>) -> ApiResult {
    let stored = stored_by_id(&app.log.store(), &id)?;
    Ok(raw(stored.schema.clone()))
}

async fn subjects_by_id(State(app): Shared, Path(id): Path<String>, Query(q): Params) -> ApiResult {
    let store = app.log.store();
    let id = stored_by_id(&store, &id)?.id;
    let mut subjects: Vec<String> = store
        .uses_of(id, flag(&q, "deleted"))
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    subjects.dedup();
    Ok(reply(subjects))
}

async fn versions_by_id(State(app): Shared, Path(id): Path<String>, Query(q): Params) -> ApiResult {
    let store = app.log.store();
    let id = stored_by_id(&store, &id)?.id;
    let uses: Vec<serde_json::Value> = store
        .uses_of(id, flag(&q, "deleted"))
        .into_iter()
        .map(|(subject, version)| json!({ "subject": subject, "version": version }))
        .collect();
    Ok(reply(uses))
}

// --- compatibility -----------------------------------------------------------------------------

fn compatibility_reply(messages: Vec<String>, verbose: bool) -> Response {
    let mut body = json!({ "is_compatible": messages.is_empty() });
    if verbose {
        body["messages"] = json!(messages);
    }
    reply(body)
}

async fn check_latest(
    State(app): Shared,
    Path(subject): Path<String>,
    Query(q): Params,
    bytes: Bytes,
) -> ApiResult {
    let request: SchemaRequest = body(&bytes)?;
    let (c, check) = {
        let store = app.log.store();
        let c = candidate(&store, &request)?;
        let check = against_subject(&app, &store, &subject)?;
        (c, check)
    };
    let messages = check.run(c.parsed).await?;
    Ok(compatibility_reply(messages, flag(&q, "verbose")))
}

async fn check_version(
    State(app): Shared,
    Path((subject, version)): Path<(String, String)>,
    Query(q): Params,
    bytes: Bytes,
) -> ApiResult {
    let spec = VersionSpec::parse(&version)?;
    let request: SchemaRequest = body(&bytes)?;
    let (c, check) = {
        let store = app.log.store();
        let found = store.version(&subject, spec, false)?;
        let c = candidate(&store, &request)?;
        let against = parse_found(&store, &found)?;
        // Against one named version, transitivity has nothing to add: the direction is what counts.
        let level = match level_of(&app, &store, &subject) {
            Level::BackwardTransitive => Level::Backward,
            Level::ForwardTransitive => Level::Forward,
            Level::FullTransitive => Level::Full,
            other => other,
        };
        let check = Check {
            level,
            previous: vec![(found.version, against)],
        };
        (c, check)
    };
    let messages = check.run(c.parsed).await?;
    Ok(compatibility_reply(messages, flag(&q, "verbose")))
}

// --- config and mode ---------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
struct ConfigRequest {
    compatibility: Option<String>,
    /// Some clients send the GET shape back.
    #[serde(rename = "compatibilityLevel")]
    compatibility_level: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ModeRequest {
    mode: String,
}

fn requested_level(bytes: &Bytes) -> Result<Level, ApiError> {
    let request: ConfigRequest = body(bytes)?;
    let raw = request
        .compatibility
        .or(request.compatibility_level)
        .ok_or_else(|| ApiError::invalid_level(""))?;
    Level::parse(&raw).ok_or_else(|| ApiError::invalid_level(&raw))
}

async fn write_config(
    app: &App,
    subject: Option<String>,
    level: Option<Level>,
) -> Result<(), ApiError> {
    let value = serde_json::to_vec(&ConfigValue {
        compatibility_level: level,
    })
    .map_err(|e| ApiError::store(&e.to_string()))?;
    let key = Key::Config {
        subject,
        magic: OTHER_KEY_MAGIC,
    };
    let mut guard = app.log.writer().await;
    let writer = guard.as_mut().ok_or_else(crate::log::not_leader)?;
    writer.write(vec![(key, Some(value))]).await
}

async fn get_global_config(State(app): Shared) -> ApiResult {
    let level = app.log.store().global_level().unwrap_or(app.default_level);
    Ok(reply(json!({ "compatibilityLevel": level.as_str() })))
}

async fn put_global_config(State(app): Shared, bytes: Bytes) -> ApiResult {
    let level = requested_level(&bytes)?;
    write_config(&app, None, Some(level)).await?;
    Ok(reply(json!({ "compatibility": level.as_str() })))
}

async fn delete_global_config(State(app): Shared) -> ApiResult {
    let previous = app.log.store().global_level().unwrap_or(app.default_level);
    write_config(&app, None, None).await?;
    Ok(reply(json!({ "compatibilityLevel": previous.as_str() })))
}

async fn get_subject_config(
    State(app): Shared,
    Path(subject): Path<String>,
    Query(q): Params,
) -> ApiResult {
    let store = app.log.store();
    let level = match store.subject_level(&subject) {
        Some(level) => level,
        None if flag(&q, "defaultToGlobal") => store.global_level().unwrap_or(app.default_level),
        None => return Err(ApiError::subject_level_not_configured(&subject)),
    };
    Ok(reply(json!({ "compatibilityLevel": level.as_str() })))
}

async fn put_subject_config(
    State(app): Shared,
    Path(subject): Path<String>,
    bytes: Bytes,
) -> ApiResult {
    let level = requested_level(&bytes)?;
    write_config(&app, Some(subject), Some(level)).await?;
    Ok(reply(json!({ "compatibility": level.as_str() })))
}

async fn delete_subject_config(State(app): Shared, Path(subject): Path<String>) -> ApiResult {
    let previous = app
        .log
        .store()
        .subject_level(&subject)
        .ok_or_else(|| ApiError::subject_level_not_configured(&subject))?;
    write_config(&app, Some(subject), None).await?;
    Ok(reply(json!({ "compatibilityLevel": previous.as_str() })))
}

fn requested_mode(bytes: &Bytes) -> Result<Mode, ApiError> {
    let request: ModeRequest = body(bytes)?;
    Mode::parse(&request.mode).ok_or_else(|| ApiError::invalid_mode(&request.mode))
}

async fn write_mode(
    app: &App,
    subject: Option<String>,
    mode: Option<Mode>,
) -> Result<(), ApiError> {
    let value =
        serde_json::to_vec(&ModeValue { mode }).map_err(|e| ApiError::store(&e.to_string()))?;
    let key = Key::Mode {
        subject,
        magic: OTHER_KEY_MAGIC,
    };
    let mut guard = app.log.writer().await;
    let writer = guard.as_mut().ok_or_else(crate::log::not_leader)?;
    writer.write(vec![(key, Some(value))]).await
}

async fn get_global_mode(State(app): Shared) -> ApiResult {
    let mode = app.log.store().global_mode().unwrap_or(Mode::Readwrite);
    Ok(reply(json!({ "mode": mode })))
}

async fn put_global_mode(State(app): Shared, bytes: Bytes) -> ApiResult {
    let mode = requested_mode(&bytes)?;
    write_mode(&app, None, Some(mode)).await?;
    Ok(reply(json!({ "mode": mode })))
}

async fn get_subject_mode(
    State(app): Shared,
    Path(subject): Path<String>,
    Query(q): Params,
) -> ApiResult {
    let store = app.log.store();
    let mode = match store.subject_mode(&subject) {
        Some(mode) => mode,
        None if flag(&q, "defaultToGlobal") => store.global_mode().unwrap_or(Mode::Readwrite),
        None => return Err(ApiError::subject_mode_not_configured(&subject)),
    };
    Ok(reply(json!({ "mode": mode })))
}

async fn put_subject_mode(
    State(app): Shared,
    Path(subject): Path<String>,
    bytes: Bytes,
) -> ApiResult {
    let mode = requested_mode(&bytes)?;
    write_mode(&app, Some(subject), Some(mode)).await?;
    Ok(reply(json!({ "mode": mode })))
}

async fn delete_subject_mode(State(app): Shared, Path(subject): Path<String>) -> ApiResult {
    let previous = app
        .log
        .store()
        .subject_mode(&subject)
        .ok_or_else(|| ApiError::subject_mode_not_configured(&subject))?;
    write_mode(&app, Some(subject), None).await?;
    Ok(reply(json!({ "mode": previous })))
}
