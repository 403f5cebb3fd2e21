//! The tables, created and migrated at start, idempotently, in the SQL that ClickHouse 18.16 and current
//! servers share (no DateTime64, JSON, Map, Bool, TTL, `IF NOT EXISTS` on columns, `CREATE OR REPLACE`):
//! - `<prefix>_events`: every event (type, aggregate, version, time, metadata, payload as JSON),
//!   `ReplacingMergeTree` ordered by (aggregate type, aggregate id, version): an event written twice is
//!   one row once merged, and `FINAL` reads it once at any time.
//! - `<prefix>_generations`: the live generation of each projection ([`crate::generations`]).
//! - `<prefix>_<projection>_g<generation>`: one row per document, `ReplacingMergeTree(version)` ordered
//!   by id; each field a `String` column. Columns a projection gained are added at start.
//! - `<prefix>_<view>`: each analytics view of the domain, over the live generations' tables; made
//!   again (under its name, in one RENAME) when it reads another generation.

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
    views: &[(&str, &str)],
) -> Result<(), Error> {
    let events = format!(
        "CREATE TABLE IF NOT EXISTS {} (\
           event_id String, event_type String, aggregate_type String, aggregate_id String, \
           version Int64, occurred_at_ms Int64, day Date, causation_id String, \
           correlation_id String, topic String, partition UInt32, offset Int64, payload String\
         ) ENGINE = ReplacingMergeTree() PARTITION BY toYYYYMM(day) \
         ORDER BY (aggregate_type, aggregate_id, version)",
        ident(&names.events())
    );
    client.query_raw(&events).execute().await?;
    generations::create(client, &names.generations()).await?;
    let mut live = HashMap::new();
    for (projection, fields) in projections {
        let g = generations::init(client, &names.generations(), projection, default).await?;
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
    Ok(())
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
/// created if missing; otherwise made beside it and swapped in by one RENAME (readers see the old view
/// or the new one), the old one dropped.
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
        let placeholder = format!("{{{projection}}}");
        if sql.contains(&placeholder) {
            let table = names.documents(projection, *generation);
            sql = sql.replace(&placeholder, &ident(&table));
            reads.push(table);
        }
    }
    let view = names.view(name);
    let query = format!(
        "SELECT create_table_query FROM system.tables \
         WHERE database = currentDatabase() AND name = {}",
        literal(&view)
    );
    let existing = fetch_json_rows(client, &query).await?;
    let current = existing
        .first()
        .and_then(|r| r.get("create_table_query"))
        .and_then(|v| v.as_str());
    match current {
        None => {
            let create = format!("CREATE VIEW IF NOT EXISTS {} AS {sql}", ident(&view));
            client.query_raw(&create).execute().await?;
        }
        Some(text) if reads.iter().all(|t| names_table(text, t)) => {}
        Some(_) => {
            let next = format!("{view}__next");
            let old = format!("{view}__old");
            for leftover in [&next, &old] {
                let drop = format!("DROP TABLE IF EXISTS {}", ident(leftover));
                client.query_raw(&drop).execute().await?;
            }
            let create = format!("CREATE VIEW {} AS {sql}", ident(&next));
            client.query_raw(&create).execute().await?;
            let swap = format!(
                "RENAME TABLE {} TO {}, {} TO {}",
                ident(&view),
                ident(&old),
                ident(&next),
                ident(&view)
            );
            client.query_raw(&swap).execute().await?;
            let drop = format!("DROP TABLE IF EXISTS {}", ident(&old));
            client.query_raw(&drop).execute().await?;
            tracing::info!(view, reads = ?reads, "view made again over the live generation");
        }
    }
    Ok(())
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
    let bytes = fetch_json_rows(client, &sql).await?;
    Ok(bytes
        .iter()
        .filter_map(|row| row.get("name").and_then(|v| v.as_str()).map(str::to_string))
        .collect())
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
