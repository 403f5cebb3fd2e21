//! ClickHouse's side of a rebuild (`causeway projections rebuild <name> --store clickhouse`; the
//! protocol: [`causeway_kafka::rebuild`]). The new generation is a documents table of its own, filled
//! by the projector's own read-back / apply / versioned insert; the pause and the switch are rows of
//! the generations table ([`crate::generations`]), on the server's clock. ClickHouse has no
//! compare-and-set, so the rebuild checks before each step that the row is still its own (its token):
//! a second rebuild started meanwhile makes one of them stop, and a pause that ran out (or is about
//! to) makes the switch start again. After the switch, the views that read the projection are made
//! again over the new table, and the old table is dropped.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use causeway_kafka::projector::Decided;
use causeway_kafka::rebuild::{Generations as Side, PAUSE};
use causeway_kafka::runner::Failure;
use clickhouse::Client;

use crate::config::ClickHouseConfig;
use crate::error::Error;
use crate::generations::{self, Generation};
use crate::projector::{changed_documents, execute, insert};
use crate::sink;
use crate::tables::{self, Names, ident};

/// A switch is only made while the pause has at least this long left, so that the switch lands
/// before any projector could take the pause for over.
const SWITCH_MARGIN_S: i64 = 15;

/// One projection's generations in ClickHouse, as a rebuild sees them.
pub struct Store {
    client: Client,
    names: Names,
    projection: &'static str,
    fields: &'static [&'static str],
    /// The views of the domain (name, select) and every projection they may name.
    views: Vec<(&'static str, &'static str)>,
    projections: Vec<&'static str>,
    token: String,
    runtime: tokio::runtime::Handle,
}

impl Store {
    /// The generations of `projection` (with `fields`) under `prefix` in `clickhouse`; `views` are
    /// the domain's views and `projections` all of its projections. Calls on `runtime`.
    pub fn new(
        clickhouse: &ClickHouseConfig,
        prefix: &str,
        projection: &'static str,
        fields: &'static [&'static str],
        views: Vec<(&'static str, &'static str)>,
        projections: Vec<&'static str>,
        runtime: &tokio::runtime::Handle,
    ) -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        Self {
            client: sink::client(clickhouse),
            names: Names::new(prefix),
            projection,
            fields,
            views,
            projections,
            token: format!("rebuild-{}-{nanos}", std::process::id()),
            runtime: runtime.clone(),
        }
    }

    fn row(&self) -> Result<Generation, Error> {
        let table = self.names.generations();
        self.runtime
            .block_on(generations::read(&self.client, &table, &[self.projection]))?
            .remove(self.projection)
            .ok_or_else(|| {
                Error::Unexpected(format!(
                    "{table} has no row for {} any more",
                    self.projection
                ))
            })
    }

    fn set(&self, live: u32, pause_s: u32, seq: u64) -> Result<(), Error> {
        self.runtime.block_on(generations::write(
            &self.client,
            &self.names.generations(),
            self.projection,
            live,
            pause_s,
            &self.token,
            seq,
        ))
    }

    /// Make every view reading this projection read the live generations' tables.
    fn views(&self) -> Result<(), Error> {
        let table = self.names.generations();
        let rows =
            self.runtime
                .block_on(generations::read(&self.client, &table, &self.projections))?;
        let live: HashMap<String, u32> = rows.into_iter().map(|(p, g)| (p, g.live)).collect();
        let placeholder = format!("{{{}}}", self.projection);
        for (name, select) in &self.views {
            if select.contains(&placeholder) {
                self.runtime.block_on(tables::ensure_view(
                    &self.client,
                    &self.names,
                    name,
                    select,
                    &live,
                ))?;
            }
        }
        Ok(())
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("projection", &self.projection)
            .finish_non_exhaustive()
    }
}

impl Side for Store {
    type Error = Error;

    fn begin(&mut self) -> Result<u32, Error> {
        let table = self.names.generations();
        self.runtime
            .block_on(generations::create(&self.client, &table))?;
        let row =
            self.runtime
                .block_on(generations::init(&self.client, &table, self.projection, 1))?;
        if row.paused {
            return Err(Error::Unexpected(format!(
                "another rebuild of {} is switching generations ({} s of its pause left)",
                self.projection, row.pause_left_s
            )));
        }
        // What an interrupted rebuild left of the next generation, then its table afresh.
        let next = self.names.documents(self.projection, row.live + 1);
        let drop = format!("DROP TABLE IF EXISTS {}", ident(&next));
        self.runtime
            .block_on(self.client.query_raw(&drop).execute())?;
        self.runtime.block_on(tables::documents_table(
            &self.client,
            &next,
            self.projection,
            self.fields,
        ))?;
        Ok(row.live)
    }

    fn write(&mut self, generation: u32, batch: &[Decided]) -> Result<(), Failure> {
        let table = self.names.documents(self.projection, generation);
        let touched: Vec<&Decided> = batch.iter().collect();
        let client = &self.client;
        self.runtime.block_on(async {
            let rows = changed_documents(client, &table, self.fields, 0, &touched).await?;
            if rows.is_empty() {
                return Ok(());
            }
            execute(client, &insert(&table, &rows)).await
        })
    }

    fn pause(&mut self, generation: u32) -> Result<(), Error> {
        let row = self.row()?;
        if row.paused && row.owner != self.token {
            return Err(Error::Unexpected(format!(
                "another rebuild of {} started switching meanwhile",
                self.projection
            )));
        }
        if row.live + 1 != generation {
            return Err(Error::Unexpected(format!(
                "generation {} of {} went live meanwhile (another rebuild)",
                row.live, self.projection
            )));
        }
        let pause = u32::try_from(PAUSE.as_secs()).unwrap_or(60);
        self.set(row.live, pause, row.seq + 1)?;
        // Two rebuilds pausing at once: the row inserted last wins, and the other one stops here.
        let now = self.row()?;
        if now.owner != self.token {
            return Err(Error::Unexpected(format!(
                "another rebuild of {} started switching meanwhile",
                self.projection
            )));
        }
        Ok(())
    }

    fn switch(&mut self, generation: u32) -> Result<bool, Error> {
        let row = self.row()?;
        if row.owner != self.token {
            return Err(Error::Unexpected(format!(
                "another rebuild of {} took over the switch",
                self.projection
            )));
        }
        if !row.paused || row.pause_left_s < SWITCH_MARGIN_S {
            // Ran out, or too close to it: the projectors may write (or be about to) the old
            // generation. Let it run out, then pause again.
            if row.paused {
                std::thread::sleep(std::time::Duration::from_secs(
                    u64::try_from(row.pause_left_s + 1).unwrap_or(1),
                ));
            }
            return Ok(false);
        }
        if let Err(e) = self.set(generation, 0, row.seq + 1) {
            // It may have landed nonetheless.
            if self.row()?.live != generation {
                return Err(e);
            }
        }
        self.views()?;
        Ok(true)
    }

    fn retire(&mut self, old: u32) -> Result<u64, Error> {
        let table = self.names.documents(self.projection, old);
        let count = format!(
            "SELECT count() AS n FROM system.tables \
             WHERE database = currentDatabase() AND name = {}",
            tables::literal(&table)
        );
        let exists = self
            .runtime
            .block_on(tables::fetch_json_rows(&self.client, &count))?
            .first()
            .and_then(|r| r.get("n"))
            .and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok()))
            .unwrap_or(0);
        if exists == 0 {
            return Ok(0);
        }
        let rows_sql = format!("SELECT count() AS n FROM {}", ident(&table));
        let rows = self
            .runtime
            .block_on(tables::fetch_json_rows(&self.client, &rows_sql))?
            .first()
            .and_then(|r| r.get("n"))
            .and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok()))
            .unwrap_or(0);
        let drop = format!("DROP TABLE IF EXISTS {}", ident(&table));
        self.runtime
            .block_on(self.client.query_raw(&drop).execute())?;
        Ok(rows)
    }
}
