//! The tables, created and migrated at start, idempotently, in the SQL that ClickHouse 18.16 and current
//! servers share (no DateTime64, JSON, Map, Bool, TTL, `IF NOT EXISTS` on columns, `CREATE OR REPLACE`):
//! - `<prefix>_events`: every event (type, aggregate, version, time, metadata, payload as JSON),
//!   `ReplacingMergeTree` ordered by (aggregate type, aggregate id, version): an event written twice is
//!   one row once merged, and `FINAL` reads it once at any time.
//! - `<prefix>_generations`: the live generation of each projection ([`crate::generations`]).
//! - `<prefix>_<projection>_g<generation>`: one row per document, `ReplacingMergeTree(version)` ordered
//!   by id; each field a `String` column. Columns a projection gained are added at start.
//! - `<prefix>_<projection>`: a view of each projection's documents, latest state (`FINAL`), whatever
//!   generation is live: the name to query.
//! - `<prefix>_<view>`: each analytics view of the domain, over the live generations' tables.
//!
//! Views are made again (beside, then swapped in) when they read another generation.

use std::collections::HashMap;

use clickhouse::Client;

use crate::error::Error;
use crate::generations;

/// The names of the tables of one projector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    prefix: String,
}

impl Names {
    /// Tables under `prefix` (a word).
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.replace('-', "_"),
        }
    }

    /// The events table.
    pub fn events(&self) -> String {
        format!("{}_events", self.prefix)
    }

    /// The table naming each projection's live generation.
    pub fn generations(&self) -> String {
        format!("{}_generations", self.prefix)
    }

    /// The documents table of `projection`'s `generation`.
    pub fn documents(&self, projection: &str, generation: u32) -> String {
        format!(
            "{}_{}_g{generation}",
            self.prefix,
            projection.replace('-', "_"),
        )
    }

    /// The view `name`.
    pub fn view(&self, name: &str) -> String {
        format!("{}_{}", self.prefix, name.replace('-', "_"))
    }
}

/// Names a view (of a projection or of the domain) may not have: the projector's own tables.
const RESERVED: [&str; 2] = ["events", "generations"];

/// The views to keep over the live tables, (name, select): one per projection in `hosted` (its
/// documents, latest state), then the domain's views that read only projections in `hosted`. An error
/// if a view of the domain has a projection's name.
pub fn views(
    domain: &causeway_contracts::domain::Domain,
    hosted: &[&str],
) -> Result<Vec<(String, String)>, Error> {
    let mut out: Vec<(String, String)> = hosted
        .iter()
        .map(|p| {
            (
                (*p).to_string(),
                format!("SELECT * FROM {} FINAL", placeholder(p)),
            )
        })
        .collect();
    for p in &domain.projections {
        if RESERVED.contains(&p.name) {
            return Err(Error::Unexpected(format!(
                "projection {} has the name of a table of the projector ({RESERVED:?})",
                p.name
            )));
        }
    }
    for v in &domain.views {
        if domain.projections.iter().any(|p| p.name == v.name) || RESERVED.contains(&v.name) {
            return Err(Error::Unexpected(format!(
                "view {} has the name of a projection or of a table of the projector ({RESERVED:?})",
                v.name
            )));
        }
        let reads_hosted_only = domain
            .projections
            .iter()
            .filter(|p| v.select.contains(&placeholder(p.name)))
            .all(|p| hosted.contains(&p.name));
        if reads_hosted_only {
            out.push((v.name.to_string(), v.select.to_string()));
        }
    }
    Ok(out)
}

/// How a view's SQL names the documents table of `projection`: `{projection}`.
pub fn placeholder(projection: &str) -> String {
    format!("{{{projection}}}")
}

/// `name` as a ClickHouse identifier (backquoted).
pub fn ident(name: &str) -> String {
    format!("`{}`", name.replace('\\', "\\\\").replace('`', "\\`"))
}

/// `text` as a ClickHouse string literal.
pub fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// The columns every documents table has; a projection field may not be named so.
pub const DOCUMENT_COLUMNS: [&str; 3] = ["id", "version", "event_time_ms"];

/// Create what is missing: the events table, the generations table and each projection's row in it
/// (`default` the generation of a projection with none), the live generation's documents table of
/// each projection (with a column for each of its fields), and each view (`select` with
/// `{projection}` names replaced by their live tables; made again if it reads another table).
pub async fn migrate(
    client: &Client,
    names: &Names,
    default: u32,
    projections: &[(&str, &[&str])],
    views: &[(String, String)],
) -> Result<(), Error> {
    let events = format!(
        "CREATE TABLE IF NOT EXISTS {} (\
           event_id String, event_type String, aggregate_type String, aggregate_id String, \
           version Int64, occurred_at_ms Int64, day Date, causation_id String, \
           correlation_id String, topic String, `partition` UInt32, `offset` Int64, payload String\
         ) ENGINE = ReplacingMergeTree() PARTITION BY toYYYYMM(day) \
         ORDER BY (aggregate_type, aggregate_id, version)",
        ident(&names.events())
    );
    client.query_raw(&events).execute().await?;
    generations::create(client, &names.generations()).await?;
    let table = names.generations();
    let hosted: Vec<&str> = projections.iter().map(|(p, _)| *p).collect();
    // Again if a rebuild switched meanwhile, so that no view is left over a retired table.
    loop {
        let mut live = HashMap::new();
        for (projection, fields) in projections {
            let g = generations::init(client, &table, projection, default).await?;
            documents_table(
                client,
                &names.documents(projection, g.live),
                projection,
                fields,
            )
            .await?;
            live.insert((*projection).to_string(), g.live);
        }
        for (name, select) in views {
            ensure_view(client, names, name, select, &live).await?;
        }
        let now = generations::read(client, &table, &hosted).await?;
        if now.iter().all(|(p, g)| live.get(p) == Some(&g.live)) {
            return Ok(());
        }
        tracing::info!("a rebuild switched generations while the tables were made; again");
    }
}

/// Create the documents table `table` of `projection` if it is missing, and add the columns of the
/// fields it lacks.
pub async fn documents_table(
    client: &Client,
    table: &str,
    projection: &str,
    fields: &[&str],
) -> Result<(), Error> {
    if let Some(f) = fields.iter().find(|f| DOCUMENT_COLUMNS.contains(f)) {
        return Err(Error::Unexpected(format!(
            "projection {projection} has a field named {f:?}, a column every documents table has"
        )));
    }
    let mut columns = String::from("id String, version Int64, event_time_ms Int64");
    for f in fields {
        columns.push_str(&format!(", {} String", ident(f)));
    }
    let create = format!(
        "CREATE TABLE IF NOT EXISTS {} ({columns}) ENGINE = ReplacingMergeTree(version) ORDER BY id",
        ident(table)
    );
    client.query_raw(&create).execute().await?;
    // Fields the projection gained since the table was made.
    let existing = column_names(client, table).await?;
    for f in fields {
        if !existing.iter().any(|c| c == f) {
            let alter = format!(
                "ALTER TABLE {} ADD COLUMN {} String",
                ident(table),
                ident(f)
            );
            if let Err(e) = client.query_raw(&alter).execute().await {
                // Another instance starting at the same time may have added it.
                if !column_names(client, table).await?.iter().any(|c| c == f) {
                    return Err(e.into());
                }
            }
            tracing::info!(table, column = f, "column added");
        }
    }
    Ok(())
}

/// Make view `name` read the tables `live` names (projection to generation), if it does not already:
/// created if missing; otherwise made beside it under a name of this caller's and swapped in
/// (`EXCHANGE TABLES` where the database is `Atomic`; else one `RENAME` of both, where a reader may
/// find no view for an instant), the old one dropped. Several callers at once: the last one's view
/// stays, each of them reading the live tables.
pub async fn ensure_view(
    client: &Client,
    names: &Names,
    name: &str,
    select: &str,
    live: &HashMap<String, u32>,
) -> Result<(), Error> {
    let mut sql = select.to_string();
    let mut reads = Vec::new();
    for (projection, generation) in live {
        let name = placeholder(projection);
        if sql.contains(&name) {
            let table = names.documents(projection, *generation);
            sql = sql.replace(&name, &ident(&table));
            reads.push(table);
        }
    }
    let view = names.view(name);
    let Some((engine, current)) = view_definition(client, &view).await? else {
        let create = format!("CREATE VIEW IF NOT EXISTS {} AS {sql}", ident(&view));
        client.query_raw(&create).execute().await?;
        return Ok(());
    };
    if engine != "View" {
        return Err(Error::Unexpected(format!(
            "{view} is a {engine} table, not a view: it is not the projector's to replace"
        )));
    }
    if reads.iter().all(|t| names_table(&current, t)) {
        return Ok(());
    }
    let next = format!(
        "{view}__next_{}",
        causeway_kafka::rebuild::token().replace('-', "_")
    );
    let create = format!("CREATE VIEW {} AS {sql}", ident(&next));
    client.query_raw(&create).execute().await?;
    let database = fetch_json_rows(
        client,
        "SELECT engine FROM system.databases WHERE name = currentDatabase()",
    )
    .await?;
    let atomic = database
        .first()
        .and_then(|r| r.get("engine"))
        .and_then(|v| v.as_str())
        == Some("Atomic");
    let old = format!("{next}_old");
    let rename = format!(
        "RENAME TABLE {} TO {}, {} TO {}",
        ident(&view),
        ident(&old),
        ident(&next),
        ident(&view)
    );
    // EXCHANGE where the database can (Atomic, on a file system that supports it); else RENAME.
    let exchanged = if atomic {
        let exchange = format!("EXCHANGE TABLES {} AND {}", ident(&view), ident(&next));
        client.query_raw(&exchange).execute().await.is_ok()
    } else {
        false
    };
    let swapped = if exchanged {
        Ok(())
    } else {
        client.query_raw(&rename).execute().await
    };
    if swapped.is_err() && view_definition(client, &view).await?.is_none() {
        // Half done (the view moved away, the new one not in its place) or swapped away by another
        // caller meanwhile: put a view back under the name, the new one, else the old one.
        for from in [&next, &old] {
            let back = format!("RENAME TABLE {} TO {}", ident(from), ident(&view));
            if client.query_raw(&back).execute().await.is_ok() {
                break;
            }
        }
    }
    // What is left under a name of this caller's: the old view (under `next` after an exchange, `old`
    // after a rename), or the new one if the swap failed.
    for leftover in [&next, &old] {
        let drop = format!("DROP TABLE IF EXISTS {}", ident(leftover));
        client.query_raw(&drop).execute().await?;
    }
    if let Err(e) = swapped {
        // Another caller swapped it meanwhile: fine if the view now reads the live tables.
        let now = view_definition(client, &view).await?;
        if !now.is_some_and(|(_, text)| reads.iter().all(|t| names_table(&text, t))) {
            return Err(e.into());
        }
    }
    tracing::info!(view, reads = ?reads, "view made again over the live generation");
    Ok(())
}

/// The engine and CREATE statement of view (or table) `name`, if it exists.
async fn view_definition(client: &Client, name: &str) -> Result<Option<(String, String)>, Error> {
    let query = format!(
        "SELECT engine, create_table_query FROM system.tables \
         WHERE database = currentDatabase() AND name = {}",
        literal(name)
    );
    let rows = system_rows(client, &query).await?;
    Ok(rows.first().and_then(|r| {
        let text = |k: &str| r.get(k).and_then(|v| v.as_str()).map(str::to_string);
        Some((text("engine")?, text("create_table_query")?))
    }))
}

/// The generations of `projection` that have a documents table, by the table names.
pub async fn documents_generations(
    client: &Client,
    names: &Names,
    projection: &str,
) -> Result<Vec<u32>, Error> {
    let stem = names.documents(projection, 0);
    let stem = stem.trim_end_matches('0');
    let query = format!(
        "SELECT name FROM system.tables WHERE database = currentDatabase() AND name LIKE {}",
        // `_` matches any character too: the names are filtered exactly below.
        literal(&format!("{stem}%"))
    );
    let rows = system_rows(client, &query).await?;
    Ok(rows
        .iter()
        .filter_map(|r| r.get("name")?.as_str()?.strip_prefix(stem)?.parse().ok())
        .collect())
}

/// Whether the CREATE statement `text` names table `table` (not merely a longer name starting so).
fn names_table(text: &str, table: &str) -> bool {
    text.match_indices(table).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + table.len()..].chars().next();
        let edge = |c: Option<char>| c.is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_'));
        edge(before) && edge(after)
    })
}

/// The column names of `table` in the client's database.
async fn column_names(client: &Client, table: &str) -> Result<Vec<String>, Error> {
    let sql = format!(
        "SELECT name FROM system.columns WHERE database = currentDatabase() AND table = {}",
        literal(table)
    );
    let bytes = system_rows(client, &sql).await?;
    Ok(bytes
        .iter()
        .filter_map(|row| row.get("name").and_then(|v| v.as_str()).map(str::to_string))
        .collect())
}

/// Column `k` of `row` as a number: ClickHouse writes 64-bit integers as JSON strings, smaller ones as
/// numbers.
pub fn json_i64(row: &serde_json::Map<String, serde_json::Value>, k: &str) -> Option<i64> {
    row.get(k)
        .and_then(|v| v.as_i64().or_else(|| v.as_str()?.parse().ok()))
}

/// The rows `sql` (a SELECT of `system.tables` or `system.columns`) answers. Such a scan fails with
/// "table doesn't exist" (code 60) when another client drops or renames a table meanwhile (seen on
/// 18.16 while two view swaps run): asked again, a few times.
async fn system_rows(
    client: &Client,
    sql: &str,
) -> Result<Vec<serde_json::Map<String, serde_json::Value>>, Error> {
    let mut tries = 0;
    loop {
        match fetch_json_rows(client, sql).await {
            Err(Error::ClickHouse(clickhouse::error::Error::BadResponse(text)))
                if text.contains("Code: 60") && tries < 5 =>
            {
                tries += 1;
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            other => return other,
        }
    }
}

/// The rows `sql` (a SELECT) answers, as JSON objects.
pub async fn fetch_json_rows(
    client: &Client,
    sql: &str,
) -> Result<Vec<serde_json::Map<String, serde_json::Value>>, Error> {
    let mut cursor = client.query_raw(sql).fetch_bytes("JSONEachRow")?;
    let mut body = Vec::new();
    while let Some(chunk) = cursor.next().await? {
        body.extend_from_slice(&chunk);
    }
    let mut rows = Vec::new();
    for line in body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let row: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(line)
            .map_err(|e| Error::Unexpected(format!("a row ClickHouse sent is not JSON: {e}")))?;
        rows.push(row);
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_quoting() {
        let n = Names::new("cw-test");
        assert_eq!(n.documents("order-by-id", 2), "cw_test_order_by_id_g2");
        assert_eq!(n.events(), "cw_test_events");
        assert_eq!(literal(r"it's a \ test"), r"'it\'s a \\ test'");
        assert_eq!(ident("a`b"), r"`a\`b`");
    }

    #[test]
    fn a_view_names_a_table_only_by_its_whole_name() {
        let q = "CREATE VIEW default.v (c UInt64) AS SELECT count() FROM default.cw_o_g1 FINAL";
        assert!(names_table(q, "cw_o_g1"));
        assert!(!names_table(q, "cw_o_g"));
        assert!(!names_table(q, "o_g1"));
        assert!(!names_table(q, "cw_o_g12"));
    }
}
