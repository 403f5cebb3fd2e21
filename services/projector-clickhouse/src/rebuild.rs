//! ClickHouse's side of a rebuild (`causeway projections rebuild <name> --store clickhouse`; the
//! protocol: [`causeway_kafka::rebuild`]). The new generation is a documents table of its own (made
//! like the live one, plus the fields this build knows), filled by the projector's own read-back /
//! apply / versioned insert. The claim (with a generation number of its own, above every one taken
//! before), the pause and the switch are steps written into the projection's row of the generations
//! table ([`crate::generations`]), each one conditional on the row as the server finds it when the
//! step runs, and bounded on the server ([`generations::STEP_SECONDS`]); ClickHouse has no
//! compare-and-set, so after a claim the rebuild waits [`SETTLE`] (longer than a step may take) and
//! reads the row back: of two rebuilds claiming at once, both then see the same winner. After the switch, the views reading the projection are made again over the
//! new table and the old table is dropped; a rebuild that stopped before that is finished by the next
//! one's start.

use std::collections::HashMap;
use std::time::Duration;

use causeway_kafka::projector::Decided;
use causeway_kafka::rebuild::{Generations as Side, LEASE, PAUSE};
use causeway_kafka::runner::Failure;
use clickhouse::Client;

use crate::config::ClickHouseConfig;
use crate::error::Error;
use crate::generations::{self, Generation, Step};
use crate::projector::{bounded, changed_documents, execute, insert};
use crate::sink;
use crate::tables::{self, Names, ident};

/// A switch is made only while the pause has at least this long left (the server checks), so that
/// no projector can find the pause over before the switch is in.
const SWITCH_MARGIN_S: u32 = 15;

/// How long a rebuild waits after claiming before it reads the claim back: longer than a step may
/// run on the server, so that every claim evaluated with this one has landed.
const SETTLE: Duration = Duration::from_secs(3);

/// One projection's generations in ClickHouse, as a rebuild sees them.
pub struct Store {
    client: Client,
    names: Names,
    projection: &'static str,
    fields: &'static [&'static str],
    /// The views over the domain's projections (name, select: [`tables::views`]) and every
    /// projection of the domain.
    views: Vec<(String, String)>,
    projections: Vec<&'static str>,
    token: String,
    runtime: tokio::runtime::Handle,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("projection", &self.projection)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// The generations of `projection` (with `fields`) under `prefix` in `clickhouse`; `views` are
    /// the views over the domain's projections ([`tables::views`]) and `projections` all of its
    /// projections. Calls on `runtime`.
    pub fn new(
        clickhouse: &ClickHouseConfig,
        prefix: &str,
        projection: &'static str,
        fields: &'static [&'static str],
        views: Vec<(String, String)>,
        projections: Vec<&'static str>,
        runtime: &tokio::runtime::Handle,
    ) -> Self {
        Self {
            client: sink::client(clickhouse),
            names: Names::new(prefix),
            projection,
            fields,
            views,
            projections,
            token: causeway_kafka::rebuild::token(),
            runtime: runtime.clone(),
        }
    }

    /// Run `call` on the runtime, bounded like every ClickHouse call.
    fn run<T>(&self, call: impl Future<Output = Result<T, Error>>) -> Result<T, Error> {
        self.runtime.block_on(bounded(call))
    }

    /// The projection's row.
    fn row(&self) -> Result<Generation, Error> {
        let table = self.names.generations();
        self.run(generations::read(&self.client, &table, &[self.projection]))?
            .remove(self.projection)
            .ok_or_else(|| {
                Error::Rebuild(format!(
                    "{table} has no row for {}: check --prefix, --clickhouse and --clickhouse-database",
                    self.projection
                ))
            })
    }

    /// Write `step` into the projection's row.
    fn step(&mut self, step: Step) -> Result<(), Error> {
        let claim = u32::try_from(LEASE.as_secs()).unwrap_or(90);
        self.run(generations::step(
            &self.client,
            &self.names.generations(),
            self.projection,
            &self.token,
            claim,
            step,
        ))
    }

    /// The row, if the claim is still this rebuild's.
    fn claimed(&self) -> Result<Generation, Error> {
        let row = self.row()?;
        if row.owner == self.token && row.claimed {
            Ok(row)
        } else {
            Err(self.taken())
        }
    }

    /// The error of a claim that is not (or no longer) this rebuild's.
    fn taken(&self) -> Error {
        Error::Rebuild(format!(
            "another rebuild of {} holds it (its claim lasts {} s after it stops)",
            self.projection,
            LEASE.as_secs()
        ))
    }

    /// Make every view reading this projection read the live generations' tables (views that read a
    /// projection nothing hosts here are left alone).
    fn views(&self) -> Result<(), Error> {
        let table = self.names.generations();
        let rows = self.run(generations::read(&self.client, &table, &self.projections))?;
        let live: HashMap<String, u32> = rows.into_iter().map(|(p, g)| (p, g.live)).collect();
        let own = tables::placeholder(self.projection);
        for (name, select) in &self.views {
            let unhosted = self
                .projections
                .iter()
                .any(|p| select.contains(&tables::placeholder(p)) && !live.contains_key(*p));
            if select.contains(&own) && !unhosted {
                self.run(tables::ensure_view(
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

    /// Drop the documents table of `generation`; how many documents it held.
    fn drop_generation(&self, generation: u32) -> Result<u64, Error> {
        let table = self.names.documents(self.projection, generation);
        let count = format!("SELECT count() AS n FROM {} FINAL", ident(&table));
        let rows = self.run(tables::fetch_json_rows(&self.client, &count))?;
        let n = rows
            .first()
            .and_then(|r| tables::json_i64(r, "n"))
            .ok_or_else(|| Error::Unexpected(format!("{table}: no count in {rows:?}")))?;
        let drop = format!("DROP TABLE IF EXISTS {}", ident(&table));
        self.run(async { Ok(self.client.query_raw(&drop).execute().await?) })?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}

impl Side for Store {
    type Error = Error;

    fn begin(&mut self) -> Result<(u32, u32), Error> {
        let row = self.row()?;
        if row.paused {
            return Err(Error::Rebuild(format!(
                "a rebuild of {} is switching generations ({} s of its pause left)",
                self.projection, row.pause_left_s
            )));
        }
        if row.claimed && row.owner != self.token {
            return Err(self.taken());
        }
        self.step(Step::Claim)?;
        std::thread::sleep(SETTLE);
        let row = self.claimed()?;
        // What interrupted rebuilds left: views over a retired table, tables of generations other
        // than the live one (half built, or retired but not dropped; a rebuild that lost its claim
        // and still writes one fails from here on).
        self.views()?;
        for generation in self.run(tables::documents_generations(
            &self.client,
            &self.names,
            self.projection,
        ))? {
            if generation != row.live {
                let rows = self.drop_generation(generation)?;
                tracing::info!(
                    generation,
                    rows,
                    "dropped a generation an interrupted rebuild left"
                );
            }
        }
        // The new table like the live one (columns a newer projector added included), plus the
        // fields this build knows.
        let live = self.names.documents(self.projection, row.live);
        let next = self.names.documents(self.projection, row.next);
        let like = format!(
            "CREATE TABLE IF NOT EXISTS {} AS {}",
            ident(&next),
            ident(&live)
        );
        self.run(async { Ok(self.client.query_raw(&like).execute().await?) })?;
        self.run(tables::documents_table(
            &self.client,
            &next,
            self.projection,
            self.fields,
        ))?;
        Ok((row.live, row.next))
    }

    fn renew(&mut self) -> Result<(), Error> {
        self.step(Step::Renew)?;
        self.claimed().map(|_| ())
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
        let seconds = u32::try_from(PAUSE.as_secs()).unwrap_or(60);
        self.step(Step::Pause {
            generation,
            seconds,
        })?;
        let row = self.claimed()?;
        if !row.paused || row.next != generation {
            return Err(Error::Rebuild(format!(
                "the pause of {} for generation {generation} did not take (live is {})",
                self.projection, row.live
            )));
        }
        Ok(())
    }

    fn switch(&mut self, generation: u32) -> Result<bool, Error> {
        let stepped = self.step(Step::Switch {
            generation,
            margin_s: SWITCH_MARGIN_S,
        });
        let row = match (stepped, self.row()) {
            (_, Ok(row)) if row.live == generation => return Ok(true),
            (Ok(()), Ok(row)) => row,
            // Unclear whether the switch is in: once the pause is over, it can no longer land (the
            // server checks the margin), so the row read then is final.
            (Err(e), _) | (Ok(()), Err(e)) => {
                tracing::warn!(error = %e, "the switch may or may not be in; waiting for the pause to end");
                std::thread::sleep(PAUSE);
                let row = self.row()?;
                if row.live == generation {
                    return Ok(true);
                }
                row
            }
        };
        if row.owner != self.token {
            return Err(self.taken());
        }
        // The pause had too little left: let it run out, then the driver pauses again.
        if row.paused {
            let left = u64::try_from(row.pause_left_s).unwrap_or(0) + 1;
            std::thread::sleep(Duration::from_secs(left));
        }
        Ok(false)
    }

    fn retire(&mut self, old: u32) -> Result<u64, Error> {
        self.views()?;
        let rows = self.drop_generation(old)?;
        self.step(Step::Release)?;
        Ok(rows)
    }
}
