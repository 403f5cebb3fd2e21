//! Which generation of each projection's documents table is live, whether a rebuild holds the
//! projection and whether it is switching (docs/adr/0011-projections.md): the `<prefix>_generations`
//! table, one row per projection once merged (`ReplacingMergeTree(seq)`, read with `FINAL`; on equal
//! `seq` the row inserted last wins). Times are on the server's clock (`... > now()`), so the clocks
//! of the projectors and of the rebuild never need to agree. The projectors read the table once per
//! batch and write it only for a projection with no row; a rebuild writes it by `INSERT ... SELECT`
//! from the current row with a condition (the row still its own, the pause long enough), which the
//! server evaluates when the statement runs, however late that is.

use std::collections::HashMap;

use clickhouse::Client;
use serde_json::Value;

use crate::error::Error;
use crate::tables::{self, ident, json_i64, literal};

/// One projection's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generation {
    /// The generation readers see and projectors write.
    pub live: u32,
    /// The generation the last claim took to build (above every one taken before).
    pub next: u32,
    /// Whether a rebuild is switching (projectors do not write meanwhile).
    pub paused: bool,
    /// Seconds the pause still has (0 when not paused).
    pub pause_left_s: i64,
    /// The rebuild that holds the projection, or held it last (empty: none ever did).
    pub owner: String,
    /// Whether `owner`'s claim still holds.
    pub claimed: bool,
    /// Its sequence number.
    pub seq: u64,
}

/// Create the table if it is missing.
pub async fn create(client: &Client, table: &str) -> Result<(), Error> {
    let sql = format!(
        "CREATE TABLE IF NOT EXISTS {} (projection String, live UInt32, next UInt32, \
         paused_until DateTime, owner String, claimed_until DateTime, seq UInt64) \
         ENGINE = ReplacingMergeTree(seq) ORDER BY projection",
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
        "SELECT projection, live, next, paused_until > now() AS paused, \
         toInt64(paused_until) - toInt64(now()) AS pause_left, owner, \
         claimed_until > now() AS claimed, seq \
         FROM {} FINAL WHERE projection IN ({})",
        ident(table),
        list.join(", ")
    );
    let rows = tables::fetch_json_rows(client, &sql).await?;
    let mut out = HashMap::new();
    for row in rows {
        let number = |k: &str| {
            json_i64(&row, k)
                .ok_or_else(|| Error::Unexpected(format!("{table}: {k} is not a number: {row:?}")))
        };
        let (Some(projection), Some(owner)) = (
            row.get("projection").and_then(Value::as_str),
            row.get("owner").and_then(Value::as_str),
        ) else {
            return Err(Error::Unexpected(format!(
                "{table}: a row without projection or owner: {row:?}"
            )));
        };
        let paused = number("paused")? == 1;
        let live = u32::try_from(number("live")?)
            .map_err(|e| Error::Unexpected(format!("{table}: live: {e}: {row:?}")))?;
        let next = u32::try_from(number("next")?)
            .map_err(|e| Error::Unexpected(format!("{table}: next: {e}: {row:?}")))?;
        let seq = u64::try_from(number("seq")?)
            .map_err(|e| Error::Unexpected(format!("{table}: seq: {e}: {row:?}")))?;
        out.insert(
            projection.to_string(),
            Generation {
                live,
                next,
                paused,
                pause_left_s: if paused {
                    number("pause_left")?.max(0)
                } else {
                    0
                },
                owner: owner.to_string(),
                claimed: number("claimed")? == 1,
                seq,
            },
        );
    }
    Ok(out)
}

/// Record `default` as `projection`'s live generation, unless a row exists; the row as it stands.
/// Two instances starting together both write a row of `seq` 0, and the one inserted last wins.
pub async fn init(
    client: &Client,
    table: &str,
    projection: &str,
    default: u32,
) -> Result<Generation, Error> {
    if let Some(g) = read(client, table, &[projection]).await?.remove(projection) {
        return Ok(g);
    }
    let sql = format!(
        "INSERT INTO {} SELECT {}, {default}, {default}, toDateTime(0), '', toDateTime(0), 0",
        ident(table),
        literal(projection)
    );
    client.query_raw(&sql).execute().await?;
    read(client, table, &[projection])
        .await?
        .remove(projection)
        .ok_or_else(|| Error::Unexpected(format!("{table}: the row of {projection} went away")))
}

/// How long a step may run on the server, in seconds.
pub const STEP_SECONDS: u32 = 1;

/// What a rebuild writes into a projection's row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Claim it, with a generation number to build above every one taken before (only if no other
    /// rebuild's claim holds and no pause is on).
    Claim,
    /// Renew the claim (only if still the caller's).
    Renew,
    /// Pause the projectors for `seconds` (only if the claim is the caller's and `generation` is the
    /// one it took).
    Pause {
        /// The generation the pause is for.
        generation: u32,
        /// How long.
        seconds: u32,
    },
    /// Make `generation` live and lift the pause (only if the claim is the caller's and the pause has
    /// at least `margin_s` seconds left).
    Switch {
        /// The new live generation.
        generation: u32,
        /// Seconds the pause must still have.
        margin_s: u32,
    },
    /// Release the claim (only if still the caller's).
    Release,
}

/// Write `step` into `projection`'s row for rebuild `owner` (claimed for `claim_s` seconds), in one
/// `INSERT ... SELECT` whose condition the server checks when it runs. Whether it took effect is
/// for the caller to read back.
pub async fn step(
    client: &Client,
    table: &str,
    projection: &str,
    owner: &str,
    claim_s: u32,
    step: Step,
) -> Result<(), Error> {
    let me = literal(owner);
    let claim = format!("now() + {claim_s}");
    let keep = || {
        (
            "live".to_string(),
            "next".to_string(),
            "paused_until".to_string(),
        )
    };
    let (columns, claimed_until, condition) = match step {
        Step::Claim => (
            (
                "live".to_string(),
                "greatest(live, next) + 1".to_string(),
                "paused_until".to_string(),
            ),
            claim,
            format!("(owner = {me} OR claimed_until <= now()) AND paused_until <= now()"),
        ),
        Step::Renew => (
            keep(),
            claim,
            format!("owner = {me} AND claimed_until > now()"),
        ),
        Step::Pause {
            generation,
            seconds,
        } => (
            (
                "live".to_string(),
                "next".to_string(),
                format!("now() + {seconds}"),
            ),
            claim,
            format!("owner = {me} AND claimed_until > now() AND next = {generation}"),
        ),
        Step::Switch {
            generation,
            margin_s,
        } => (
            (
                generation.to_string(),
                "next".to_string(),
                "toDateTime(0)".to_string(),
            ),
            claim,
            format!("owner = {me} AND next = {generation} AND paused_until >= now() + {margin_s}"),
        ),
        Step::Release => (keep(), "toDateTime(0)".to_string(), format!("owner = {me}")),
    };
    let (live, next, paused_until) = columns;
    // Bounded on the server, well under the switch's margin and the claim's settling time: a step
    // that lands, lands within this of when its condition was evaluated.
    let sql = format!(
        "INSERT INTO {t} SELECT projection, {live}, {next}, {paused_until}, {me}, {claimed_until}, \
         seq + 1 FROM {t} FINAL WHERE projection = {p} AND {condition} \
         SETTINGS max_execution_time = {STEP_SECONDS}",
        t = ident(table),
        p = literal(projection),
    );
    client.query_raw(&sql).execute().await?;
    Ok(())
}
