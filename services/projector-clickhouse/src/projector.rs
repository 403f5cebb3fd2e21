//! The job of `projector-clickhouse`: wait for Kafka and ClickHouse, create or migrate the tables, then
//! run the consumer runner (crates/kafka) over every event topic of the configured domain. Each batch:
//! its events inserted into the events table (one INSERT), and for each projection the documents the
//! batch touches read back (`FINAL`), the changes applied by the reference semantics (newer versions
//! only) and the changed documents inserted with their version (one INSERT per projection). A batch
//! delivered again changes nothing: its events collapse by (aggregate, version), its changes are older
//! than the documents.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use causeway_core::ErrorClass;
use causeway_core::projection::{Document, EventInfo};
use causeway_kafka::projector::{Decided, EventReader, Freshness};
use causeway_kafka::runner::{Failure, Handler, Runner};
use causeway_runtime::ServiceContext;
use clickhouse::Client;
use rdkafka::message::BorrowedMessage;
use serde_json::{Map, Value, json};

use crate::config::Config;
use crate::error::{Error, classify_clickhouse};
use crate::generations::{self, Generation};
use crate::sink;
use crate::tables::{self, Names, ident, literal};

/// Run until shutdown.
pub async fn run(config: Config, ctx: ServiceContext) -> Result<(), Error> {
    if !causeway_kafka::client::wait_for_broker(&ctx, &config.kafka).await? {
        return Ok(());
    }
    let client = sink::client(&config.clickhouse);
    if !ctx.wait_for("clickhouse", || sink::ping(&client)).await? {
        return Ok(());
    }
    let domains = causeway_domains::domains();
    let domain = domains.get(&config.projector.domain).ok_or_else(|| {
        Error::Unexpected(format!("unknown domain {:?}", config.projector.domain))
    })?;
    let hosted = config.projector.hosted(domain);
    let names = Names::new(&config.projector.prefix);
    let shapes: Vec<(&str, &[&str])> = hosted.iter().map(|p| (p.name(), p.fields())).collect();
    // A view needs every projection it reads.
    let hosted_names: Vec<&str> = shapes.iter().map(|(n, _)| *n).collect();
    let views = tables::views(domain, &hosted_names)?;
    // The tables, again while ClickHouse fails in a way that may pass (it may be starting).
    let migrated = ctx
        .wait_for("clickhouse tables", || {
            tables::migrate(
                &client,
                &names,
                config.projector.generation,
                &shapes,
                &views,
            )
        })
        .await?;
    if !migrated {
        return Ok(());
    }
    tracing::info!(
        events = names.events(),
        projections = shapes.len(),
        views = views.len(),
        "tables ready"
    );
    let aggregates = domain.aggregate_names();
    let projections: Vec<&'static str> = hosted.iter().map(|p| p.name()).collect();
    let reader = EventReader::new(
        hosted,
        config.projector.context(),
        &aggregates,
        &config.projector.registry_url,
        tokio::runtime::Handle::current(),
    );
    let topics = reader.topics();
    let freshness = Freshness::new(ctx.metrics.registry(), &reader.hosted)
        .map_err(|e| Error::Unexpected(format!("metrics: {e}")))?;
    let handler = Sink {
        reader,
        freshness,
        projections,
        views,
        seen: HashMap::new(),
        moved: HashMap::new(),
        names,
        client,
        runtime: tokio::runtime::Handle::current(),
    };
    let runner = Runner::new(
        config.kafka.clone(),
        config.consumer.clone(),
        &config.projector.group_id,
        topics,
    );
    causeway_kafka::projector::serve(runner, handler, &ctx).await?;
    Ok(())
}

/// The runner's handler: events and documents into ClickHouse.
struct Sink {
    reader: EventReader,
    freshness: Freshness,
    /// The hosted projections' names.
    projections: Vec<&'static str>,
    /// The views over them (name, select).
    views: Vec<(String, String)>,
    /// The live generation of each hosted projection when this projector last looked.
    seen: HashMap<String, u32>,
    /// Projections whose live generation changed, since when (their views to follow).
    moved: HashMap<String, Instant>,
    names: Names,
    client: Client,
    runtime: tokio::runtime::Handle,
}

/// An event decided, and its payload as JSON text.
type Item = (Decided, String);

impl Handler for Sink {
    type Item = Item;

    fn prepare(&mut self, record: &BorrowedMessage<'_>) -> Result<Option<Item>, Failure> {
        let Some(decided) = self.reader.read(record)? else {
            return Ok(None);
        };
        // The payload must be writable as JSON; if not, the event is poison here, not the batch.
        let payload = Value::try_from(decided.value.clone())
            .map_err(|e| {
                Failure::Poison(format!(
                    "{}: not expressible as JSON: {e}",
                    decided.full_name
                ))
            })?
            .to_string();
        Ok(Some((decided, payload)))
    }

    fn write(&mut self, batch: &[Item]) -> Result<(), Failure> {
        if batch.is_empty() {
            return Ok(());
        }
        // The generation each projection writes, read at every write; a batch waits (partitions
        // paused, like any transient failure) while a rebuild switches the generation of a projection
        // it touches, and is written to the new generation once it is live.
        let live = self.live()?;
        self.follow(&live);
        match self.write_to(batch, &live) {
            Err(Failure::Fatal(why)) => {
                // A table that went away because a rebuild retired its generation meanwhile (this
                // batch read the generations before the switch): the batch is written again, to the
                // new one.
                let now = self.live()?;
                let moved = self
                    .projections
                    .iter()
                    .any(|p| now.get(*p).map(|g| g.live) != live.get(*p).map(|g| g.live));
                Err(if moved {
                    Failure::Transient(format!("{why} (a rebuild switched generations)"))
                } else {
                    Failure::Fatal(why)
                })
            }
            other => other,
        }
    }
}

impl Sink {
    /// When a projection's live generation changed (a rebuild switched) and the views reading it
    /// still read the old table [`FOLLOW_AFTER`] later, make them read the new one: a rebuild that
    /// stopped after its switch leaves no view on a table nobody writes any more. The rebuild remakes
    /// them itself right after its switch; waiting keeps the two from swapping the same view at once.
    /// A view that cannot be made now is tried again at a later batch; the events go on meanwhile.
    fn follow(&mut self, live: &HashMap<String, Generation>) {
        let now: HashMap<String, u32> = live.iter().map(|(p, g)| (p.clone(), g.live)).collect();
        for (p, g) in &now {
            if self.seen.get(p).is_some_and(|s| s != g) {
                self.moved.entry(p.clone()).or_insert_with(Instant::now);
            }
        }
        self.seen.clone_from(&now);
        let due: Vec<String> = self
            .moved
            .iter()
            .filter(|(_, since)| since.elapsed() >= FOLLOW_AFTER)
            .map(|(p, _)| p.clone())
            .collect();
        for p in due {
            let reads = tables::placeholder(&p);
            let mut done = true;
            for (name, select) in self.views.iter().filter(|(_, s)| s.contains(&reads)) {
                let made = self.runtime.block_on(bounded(tables::ensure_view(
                    &self.client,
                    &self.names,
                    name,
                    select,
                    &now,
                )));
                if let Err(e) = made {
                    tracing::warn!(view = name, error = %e, "view not made over the live generation yet; again later");
                    done = false;
                }
            }
            if done {
                self.moved.remove(&p);
            }
        }
    }

    /// Write `batch`: its events, and the documents it changes in the generations `live` names.
    fn write_to(&self, batch: &[Item], live: &HashMap<String, Generation>) -> Result<(), Failure> {
        let items: Vec<&Decided> = batch.iter().map(|(d, _)| d).collect();
        let mut statements = vec![insert(&self.names.events(), &event_rows(batch))];
        for (i, projection) in self.projections.iter().enumerate() {
            let touched: Vec<&Decided> = items
                .iter()
                .copied()
                .filter(|d| d.writes.iter().any(|(p, _)| *p == i))
                .collect();
            if touched.is_empty() {
                continue;
            }
            let generation = match live.get(*projection) {
                Some(g) if g.paused => {
                    return Err(Failure::Transient(format!(
                        "a rebuild of {projection} is switching generations"
                    )));
                }
                Some(g) => g.live,
                None => {
                    return Err(Failure::Fatal(format!(
                        "{}: no row for {projection} (deleted while the projector ran?)",
                        self.names.generations()
                    )));
                }
            };
            let table = self.names.documents(projection, generation);
            let fields = self.reader.hosted[i].fields();
            let rows = self.runtime.block_on(changed_documents(
                &self.client,
                &table,
                fields,
                i,
                &touched,
            ))?;
            if !rows.is_empty() {
                statements.push(insert(&table, &rows));
            }
        }
        for sql in statements {
            self.runtime.block_on(execute(&self.client, &sql))?;
        }
        self.freshness.applied(items);
        Ok(())
    }

    /// The generations of the hosted projections, as the server has them now.
    fn live(&self) -> Result<HashMap<String, Generation>, Failure> {
        self.runtime
            .block_on(bounded(generations::read(
                &self.client,
                &self.names.generations(),
                &self.projections,
            )))
            .map_err(|e| failure(&e))
    }
}

/// Run `sql` (a statement without an answer), bounded, its failure classified.
pub(crate) async fn execute(client: &Client, sql: &str) -> Result<(), Failure> {
    bounded(async { client.query_raw(sql).execute().await.map_err(Error::from) })
        .await
        .map_err(|e| failure(&e))
}

/// The rows of documents table `table` (of projection `i`, with `fields`) that `touched` changes: read
/// back, changed by the reference semantics, versioned.
pub(crate) async fn changed_documents(
    client: &Client,
    table: &str,
    fields: &[&'static str],
    i: usize,
    touched: &[&Decided],
) -> Result<Vec<String>, Failure> {
    let mut ids: Vec<&str> = touched
        .iter()
        .flat_map(|d| d.writes.iter().filter(|(p, _)| *p == i))
        .map(|(_, w)| w.aggregate_id.as_str())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    // The ids in queries of at most SELECT_BYTES each (a server refuses queries over its
    // max_query_size, 256 KiB by default).
    let mut stored = Vec::new();
    let mut list = String::new();
    let mut ids = ids.into_iter().peekable();
    while let Some(id) = ids.next() {
        if !list.is_empty() {
            list.push_str(", ");
        }
        list.push_str(&literal(id));
        if list.len() >= SELECT_BYTES || ids.peek().is_none() {
            let sql = format!("SELECT * FROM {} FINAL WHERE id IN ({list})", ident(table));
            let rows = bounded(tables::fetch_json_rows(client, &sql))
                .await
                .map_err(|e| failure(&e))?;
            stored.extend(rows);
            list.clear();
        }
    }
    let mut docs: BTreeMap<String, (Document, bool)> = BTreeMap::new();
    for row in stored {
        let Some(id) = row.get("id").and_then(Value::as_str) else {
            continue;
        };
        let number = |k: &str| {
            tables::json_i64(&row, k).ok_or_else(|| {
                // Read as 0 it would apply every change again: stop instead.
                Failure::Fatal(format!(
                    "{table}: the {k} of document {id:?} does not read as a number: {row:?}"
                ))
            })
        };
        let mut doc = Document {
            version: number("version")?,
            event_time_ms: number("event_time_ms")?,
            ..Document::default()
        };
        for f in fields {
            if let Some(v) = row
                .get(*f)
                .and_then(Value::as_str)
                .filter(|v| !v.is_empty())
            {
                doc.fields.insert(f, v.to_string());
            }
        }
        docs.insert(id.to_string(), (doc, false));
    }
    for d in touched {
        for (_, w) in d.writes.iter().filter(|(p, _)| *p == i) {
            let entry = docs
                .entry(w.aggregate_id.clone())
                .or_insert_with(|| (Document::default(), false));
            let info = EventInfo {
                aggregate_id: &w.aggregate_id,
                version: w.version,
                occurred_at_ms: w.occurred_at_ms,
            };
            if entry.0.apply(&info, &w.change) {
                entry.1 = true;
            }
        }
    }
    Ok(docs
        .into_iter()
        .filter(|(_, (_, changed))| *changed)
        .map(|(id, (doc, _))| {
            let mut row = Map::new();
            row.insert("id".into(), json!(id));
            row.insert("version".into(), json!(doc.version));
            row.insert("event_time_ms".into(), json!(doc.event_time_ms));
            for f in fields {
                row.insert(
                    (*f).to_string(),
                    json!(doc.fields.get(f).cloned().unwrap_or_default()),
                );
            }
            Value::Object(row).to_string()
        })
        .collect())
}

/// The events table's rows of `items`.
fn event_rows(items: &[Item]) -> Vec<String> {
    items
        .iter()
        .map(|(d, payload)| {
            let m = &d.metadata;
            let (topic, _) = d.position.rsplit_once(':').unwrap_or((&d.position, ""));
            json!({
                "event_id": m.event_id,
                "event_type": d.full_name,
                "aggregate_type": d.aggregate,
                "aggregate_id": m.aggregate_id,
                "version": m.aggregate_version,
                "occurred_at_ms": m.occurred_at,
                "day": day(m.occurred_at),
                "causation_id": m.causation_id,
                "correlation_id": m.correlation_id,
                "topic": topic,
                "partition": d.partition,
                "offset": d.offset,
                "payload": payload,
            })
            .to_string()
        })
        .collect()
}

/// How long after seeing a generation switch the projector checks the views itself.
const FOLLOW_AFTER: Duration = Duration::from_secs(30);

/// Longest id list of one SELECT, in bytes.
const SELECT_BYTES: usize = 64 * 1024;

/// How long one ClickHouse call may take before it counts as a (transient) failure: a server that
/// stops answering must not hold the runner (and its Kafka membership) for ever.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// `call`, bounded by [`CALL_TIMEOUT`].
pub(crate) async fn bounded<T>(call: impl Future<Output = Result<T, Error>>) -> Result<T, Error> {
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(result) => result,
        Err(_) => Err(Error::ClickHouse(clickhouse::error::Error::TimedOut)),
    }
}

/// An INSERT of `rows` (JSON objects, one per line) into `table`.
pub(crate) fn insert(table: &str, rows: &[String]) -> String {
    let mut sql = format!("INSERT INTO {} FORMAT JSONEachRow\n", ident(table));
    for r in rows {
        sql.push_str(r);
        sql.push('\n');
    }
    sql
}

/// The UTC day of `ms` since the epoch, as `YYYY-MM-DD` (days-from-civil inverted).
fn day(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    // ClickHouse's Date holds 1970..2105; outside, the nearest end.
    let (y, m, d) = if y < 1970 {
        (1970, 1, 1)
    } else if y > 2105 {
        (2105, 12, 31)
    } else {
        (y, m, d)
    };
    format!("{y:04}-{m:02}-{d:02}")
}

/// What an error means for the batch: never one event's fault (every value is written as a string or
/// a number it was checked to be). A ClickHouse error is transient when the server may recover, else
/// fatal; an answer that does not parse (cut short by an error in the middle of a stream) may pass.
fn failure(e: &Error) -> Failure {
    match e {
        Error::ClickHouse(e) if classify_clickhouse(e) != ErrorClass::Transient => {
            Failure::Fatal(format!("clickhouse: {e}"))
        }
        other => Failure::Transient(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_are_utc_calendar_days() {
        assert_eq!(day(0), "1970-01-01");
        assert_eq!(day(1_700_000_000_000), "2023-11-14");
        assert_eq!(day(951_782_400_000), "2000-02-29");
        assert_eq!(day(-5), "1970-01-01");
        assert_eq!(day(i64::MAX), "2105-12-31");
    }

    #[test]
    fn inserts_are_one_json_object_per_line() {
        let sql = insert("t", &[r#"{"a":"?"}"#.into(), r#"{"a":"x"}"#.into()]);
        assert_eq!(
            sql,
            "INSERT INTO `t` FORMAT JSONEachRow\n{\"a\":\"?\"}\n{\"a\":\"x\"}\n"
        );
    }
}
