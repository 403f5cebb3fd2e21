//! The tables, created and migrated at start, idempotently, in the SQL that ClickHouse 18.16 and current
//! servers share (no DateTime64, JSON, Map, Bool, TTL, `IF NOT EXISTS` on columns):
//! - `<prefix>_events`: every event (type, aggregate, version, time, metadata, payload as JSON),
//!   `ReplacingMergeTree` ordered by (aggregate type, aggregate id, version): an event written twice is
//!   one row once merged, and `FINAL` reads it once at any time.
//! - `<prefix>_<projection>_g<generation>`: one row per document, `ReplacingMergeTree(version)` ordered
//!   by id; each field a `String` column. Columns a projection gained are added at start.
//! - `<prefix>_<view>`: each analytics view of the domain.

use clickhouse::Client;

use crate::error::Error;

/// The names of the tables of one projector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    prefix: String,
    generation: u32,
}

impl Names {
    /// Tables under `prefix` (a word), documents of `generation`.
    pub fn new(prefix: &str, generation: u32) -> Self {
        Self {
            prefix: prefix.replace('-', "_"),
            generation,
        }
    }

    /// The events table.
    pub fn events(&self) -> String {
        format!("{}_events", self.prefix)
    }

    /// The documents table of `projection`.
    pub fn documents(&self, projection: &str) -> String {
        format!(
            "{}_{}_g{}",
            self.prefix,
            projection.replace('-', "_"),
            self.generation
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

/// Create what is missing: the events table, each projection's documents table (with a column for
/// each of its fields), and each view (`select` with `{projection}` names replaced by their tables;
/// made again at each start, so that it follows the generation and its SQL).
pub async fn migrate(
    client: &Client,
    names: &Names,
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
    for (projection, fields) in projections {
        if let Some(f) = fields.iter().find(|f| DOCUMENT_COLUMNS.contains(f)) {
            return Err(Error::Unexpected(format!(
                "projection {projection} has a field named {f:?}, a column every documents table has"
            )));
        }
        let table = names.documents(projection);
        let mut columns = String::from("id String, version Int64, event_time_ms Int64");
        for f in *fields {
            columns.push_str(&format!(", {} String", ident(f)));
        }
        let create = format!(
            "CREATE TABLE IF NOT EXISTS {} ({columns}) ENGINE = ReplacingMergeTree(version) ORDER BY id",
            ident(&table)
        );
        client.query_raw(&create).execute().await?;
        // Fields the projection gained since the table was made.
        let existing = column_names(client, &table).await?;
        for f in *fields {
            if !existing.iter().any(|c| c == f) {
                let alter = format!(
                    "ALTER TABLE {} ADD COLUMN {} String",
                    ident(&table),
                    ident(f)
                );
                if let Err(e) = client.query_raw(&alter).execute().await {
                    // Another instance starting at the same time may have added it.
                    if !column_names(client, &table).await?.iter().any(|c| c == f) {
                        return Err(e.into());
                    }
                }
                tracing::info!(table, column = f, "column added");
            }
        }
    }
    for (name, select) in views {
        let mut sql = (*select).to_string();
        for (projection, _) in projections {
            sql = sql.replace(
                &format!("{{{projection}}}"),
                &ident(&names.documents(projection)),
            );
        }
        let create = format!(
            "CREATE VIEW IF NOT EXISTS {} AS {sql}",
            ident(&names.view(name))
        );
        client.query_raw(&create).execute().await?;
    }
    Ok(())
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
        let n = Names::new("cw-test", 2);
        assert_eq!(n.documents("order-by-id"), "cw_test_order_by_id_g2");
        assert_eq!(n.events(), "cw_test_events");
        assert_eq!(literal(r"it's a \ test"), r"'it\'s a \\ test'");
        assert_eq!(ident("a`b"), r"`a\`b`");
    }
}
