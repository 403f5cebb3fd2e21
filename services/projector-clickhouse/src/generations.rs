//! Which generation of each projection's documents table is live, and whether a rebuild is switching
//! (docs/adr/0011-projections.md): the `<prefix>_generations` table, one row per projection once
//! merged (`ReplacingMergeTree(seq)`, read with `FINAL`; on equal `seq` the row inserted last wins).
//! A pause is a time on the server's clock (`paused_until > now()`), so the clocks of the projectors
//! and of the rebuild never need to agree. The projectors read the table once per batch; only a
//! rebuild (or the first start, for a projection with no row) writes it.

use std::collections::HashMap;

use clickhouse::Client;
use serde_json::Value;

use crate::error::Error;
use crate::tables::{self, ident, literal};

/// One projection's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generation {
    /// The generation readers see and projectors write.
    pub live: u32,
    /// Whether a rebuild is switching (projectors do not write meanwhile).
    pub paused: bool,
    /// Seconds the pause still has (0 when not paused), on the server's clock.
    pub pause_left_s: i64,
    /// Who wrote the row last (a rebuild's token; empty from a projector's first start).
    pub owner: String,
    /// Its sequence number.
    pub seq: u64,
}

/// Create the table if it is missing.
pub async fn create(client: &Client, table: &str) -> Result<(), Error> {
    let sql = format!(
        "CREATE TABLE IF NOT EXISTS {} (projection String, live UInt32, paused_until DateTime, \
         owner String, seq UInt64) ENGINE = ReplacingMergeTree(seq) ORDER BY projection",
        ident(table)
    );
    client.query_raw(&sql).execute().await?;
    Ok(())
}

/// The rows of `projections` (those with none are missing from the answer).
pub async fn read(
    client: &Client,
    table: &str,
    projections: &[&str],
) -> Result<HashMap<String, Generation>, Error> {
    let list: Vec<String> = projections.iter().map(|p| literal(p)).collect();
    let sql = format!(
        "SELECT projection, live, paused_until > now() AS paused, \
         toInt64(paused_until) - toInt64(now()) AS pause_left, owner, seq \
         FROM {} FINAL WHERE projection IN ({})",
        ident(table),
        list.join(", ")
    );
    let rows = tables::fetch_json_rows(client, &sql).await?;
    let mut out = HashMap::new();
    for row in rows {
        let number = |k: &str| -> Result<i64, Error> {
            row.get(k)
                .and_then(|v| v.as_i64().or_else(|| v.as_str()?.parse().ok()))
                .ok_or_else(|| Error::Unexpected(format!("{table}: {k} is not a number: {row:?}")))
        };
        let Some(projection) = row.get("projection").and_then(Value::as_str) else {
            return Err(Error::Unexpected(format!(
                "{table}: a row without a projection: {row:?}"
            )));
        };
        let paused = number("paused")? == 1;
        out.insert(
            projection.to_string(),
            Generation {
                live: u32::try_from(number("live")?).unwrap_or(1),
                paused,
                pause_left_s: if paused {
                    number("pause_left")?.max(0)
                } else {
                    0
                },
                owner: row
                    .get("owner")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                seq: u64::try_from(number("seq")?).unwrap_or(0),
            },
        );
    }
    Ok(out)
}

/// Record `default` as `projection`'s live generation, unless a row exists. Two instances starting
/// together both write the same row, which is one row once merged.
pub async fn init(
    client: &Client,
    table: &str,
    projection: &str,
    default: u32,
) -> Result<Generation, Error> {
    if let Some(g) = read(client, table, &[projection]).await?.remove(projection) {
        return Ok(g);
    }
    write(client, table, projection, default, 0, "", 0).await?;
    Ok(Generation {
        live: default,
        paused: false,
        pause_left_s: 0,
        owner: String::new(),
        seq: 0,
    })
}

/// Write `projection`'s row: `live`, paused for `pause_s` seconds from the server's now (0: not
/// paused), by `owner`, as `seq`.
pub async fn write(
    client: &Client,
    table: &str,
    projection: &str,
    live: u32,
    pause_s: u32,
    owner: &str,
    seq: u64,
) -> Result<(), Error> {
    let until = if pause_s == 0 {
        "toDateTime(0)".to_string()
    } else {
        format!("now() + {pause_s}")
    };
    let sql = format!(
        "INSERT INTO {} SELECT {}, {live}, {until}, {}, {seq}",
        ident(table),
        literal(projection),
        literal(owner)
    );
    client.query_raw(&sql).execute().await?;
    Ok(())
}
