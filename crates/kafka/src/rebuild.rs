//! Rebuilding a projection while traffic flows (`causeway projections rebuild <name>`), the same
//! protocol for every store (docs/adr/0011-projections.md); a store supplies its side as
//! [`Generations`]:
//!
//! 1. The events are replayed into generation `N = live + 1` from offset 0, in order, until the replay
//!    reaches the end of every partition as it was at the start. Meanwhile the projectors keep writing
//!    the live generation.
//! 2. The switch: a pause (which runs out by itself) stops the projectors' writes (a batch then waits
//!    like any transient failure, its offsets not stored); the end of every partition is taken after
//!    that, and the replay catches up to it. Every event a projector wrote before the pause is below
//!    that end, so `N` now holds every event the live generation holds, each applied in order.
//! 3. `N` is made live and the pause lifted, only if the pause is still this rebuild's (had it run
//!    out, the projectors may have written on: back to step 2). Readers switch at once, never to a
//!    half-built generation; the projectors resume from their committed offsets into `N`, where the
//!    events the replay already applied are older and change nothing, and the later ones follow in
//!    order. The old generation is deleted.
//!
//! Counters stay exact because one generation is only ever written by one ordered stream at a time.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use causeway_contracts::projecting::Projecting;
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use crate::KafkaConfig;
use crate::config::OffsetMode;
use crate::projector::{Decided, EventReader};
use crate::runner::Failure;

/// How long the projectors' writes may stay paused for a switch (a rebuild that dies meanwhile leaves
/// them paused this long at most).
pub const PAUSE: Duration = Duration::from_secs(60);

/// How many times the switch is tried before the rebuild gives up (each try ran out of its pause).
const SWITCH_ATTEMPTS: u32 = 3;

/// How long a rebuild's claim on a projection lasts unless renewed (the driver renews it every
/// [`RENEW_EVERY`]; a rebuild that dies releases it this long after). Longer than [`PAUSE`], which a
/// store may wait out in one go.
pub const LEASE: Duration = Duration::from_secs(90);

/// How often the driver renews the claim.
pub const RENEW_EVERY: Duration = Duration::from_secs(10);

/// A token naming one rebuild (its claim's owner).
pub fn token() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("rebuild-{}-{nanos}", std::process::id())
}

/// A store's side of the protocol, for one projection. Every call may block (a store client on a
/// runtime of its own).
pub trait Generations {
    /// The store's errors (a Kafka error becomes one).
    type Error: From<crate::Error> + std::fmt::Display;

    /// Claim the projection for this rebuild for [`LEASE`] (an error if the projection is not hosted
    /// by a projector in this store, or another rebuild holds the claim), with a generation number of
    /// its own, above every one used before (so that a rebuild that lost its claim and still writes
    /// only ever writes a generation nobody will make live); finish what an interrupted rebuild left
    /// (views, generations other than the live one); make the new generation empty and ready to be
    /// written. The live generation and the new one.
    fn begin(&mut self) -> Result<(u32, u32), Self::Error>;

    /// Renew the claim for [`LEASE`]; an error once it is no longer this rebuild's.
    fn renew(&mut self) -> Result<(), Self::Error>;

    /// Apply `batch` to `generation`, by the consumer runner's error policy: transient (retried),
    /// one item's poison (skipped), or fatal (the rebuild stops).
    fn write(&mut self, generation: u32, batch: &[Decided]) -> Result<(), Failure>;

    /// Pause the projectors' writes for [`PAUSE`] on behalf of the switch to `generation`; an error if
    /// another rebuild holds the pause.
    fn pause(&mut self, generation: u32) -> Result<(), Self::Error>;

    /// Make `generation` live and lift the pause, if the pause is still this rebuild's; `false` when it
    /// ran out first (nothing changed).
    fn switch(&mut self, generation: u32) -> Result<bool, Self::Error>;

    /// After the switch: what reads the projection made to follow it, generation `old` deleted and
    /// the claim released; how many keys or rows went.
    fn retire(&mut self, old: u32) -> Result<u64, Self::Error>;
}

/// Where a rebuild reads.
#[derive(Debug)]
pub struct Source<'a> {
    /// The Kafka cluster.
    pub kafka: &'a KafkaConfig,
    /// The registry the events were written with.
    pub registry_url: &'a str,
    /// The first segment of the event topics.
    pub context: &'a str,
    /// The projectors' prefix (the rebuild's consumer group starts with it).
    pub prefix: &'a str,
}

/// How far a rebuild is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    /// The generation being built.
    pub generation: u32,
    /// Events replayed so far.
    pub events: u64,
    /// Events to replay in all (offsets, so transaction markers count too).
    pub total: u64,
    /// Events per second so far.
    pub rate: f64,
}

/// How a rebuild ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The generation readers saw before.
    pub old: u32,
    /// The generation they see now.
    pub new: u32,
    /// Events replayed.
    pub events: u64,
    /// Poison events skipped (each one is in the projector's dead-letter topic already).
    pub poison: u64,
    /// Keys or rows of the old generation deleted; or why that failed (reads switched nonetheless:
    /// the next rebuild deletes what is left).
    pub retired: Result<u64, String>,
    /// How long it took.
    pub elapsed: Duration,
}

/// Rebuild `projection` from `source` into `store`, telling `progress` about once a second. Blocks:
/// call from a thread of its own, with a Tokio runtime `runtime` for the registry calls.
pub fn rebuild<G: Generations>(
    source: &Source<'_>,
    projection: Box<dyn Projecting>,
    store: &mut G,
    runtime: &tokio::runtime::Handle,
    progress: impl FnMut(Progress),
) -> Result<Outcome, G::Error> {
    let started = Instant::now();
    let name = projection.name();
    let aggregate = projection.aggregate_type();
    let (old, new) = store.begin()?;
    let topic = format!("{}.{aggregate}.events", source.context);
    let consumer: BaseConsumer = source
        .kafka
        .consumer_config(
            "rebuild",
            &format!("{}-rebuild-{name}-g{new}", source.prefix),
            OffsetMode::Transactional,
        )
        .create()
        .map_err(|source| crate::Error::Client {
            what: "rebuild consumer",
            source,
        })?;
    let first = ends(&consumer, &topic)?;
    let total: u64 = first
        .values()
        .map(|(low, end)| u64::try_from(end - low).unwrap_or(0))
        .sum();
    let mut list = TopicPartitionList::new();
    for p in first.keys() {
        list.add_partition_offset(&topic, *p, Offset::Beginning)
            .map_err(|source| crate::Error::Operation {
                operation: "assign for the rebuild",
                source,
            })?;
    }
    consumer
        .assign(&list)
        .map_err(|source| crate::Error::Operation {
            operation: "assign for the rebuild",
            source,
        })?;
    let mut replay = Replay {
        reader: EventReader::new(
            vec![projection],
            source.context,
            &[aggregate],
            source.registry_url,
            runtime.clone(),
        ),
        consumer,
        topic,
        events: 0,
        poison: 0,
        progress,
        started,
        told: Instant::now(),
        renewed: Instant::now(),
        generation: new,
        total,
    };
    // 1. From offset 0 to the end as it was at the start.
    replay.to(&first, store)?;
    // 2. and 3. The switch, again if the pause ran out first.
    let mut attempts = 0;
    loop {
        attempts += 1;
        replay.keep(store)?;
        store.pause(new)?;
        let now = ends(&replay.consumer, &replay.topic)?;
        replay.to(&now, store)?;
        if store.switch(new)? {
            break;
        }
        if attempts >= SWITCH_ATTEMPTS {
            return Err(crate::Error::Rebuild(format!(
                "the switch of {name} to generation {new} took longer than the pause ({} s) {SWITCH_ATTEMPTS} times",
                PAUSE.as_secs()
            ))
            .into());
        }
        tracing::warn!(
            generation = new,
            "the pause ran out before the switch; switching again"
        );
    }
    let retired = store.retire(old).map_err(|e| e.to_string());
    Ok(Outcome {
        old,
        new,
        events: replay.events,
        poison: replay.poison,
        retired,
        elapsed: started.elapsed(),
    })
}

/// The replay into the new generation.
struct Replay<P: FnMut(Progress)> {
    reader: EventReader,
    consumer: BaseConsumer,
    topic: String,
    events: u64,
    poison: u64,
    progress: P,
    started: Instant,
    told: Instant,
    /// When the claim was renewed last.
    renewed: Instant,
    generation: u32,
    total: u64,
}

impl<P: FnMut(Progress)> Replay<P> {
    /// Renew the claim if it is time to.
    fn keep<G: Generations>(&mut self, store: &mut G) -> Result<(), G::Error> {
        keep(&mut self.renewed, store)
    }

    /// Read and apply, in order, until every partition's position reaches `ends` (records past it
    /// are applied too: in order, they change nothing the projectors will not write the same way).
    fn to<G: Generations>(
        &mut self,
        ends: &HashMap<i32, (i64, i64)>,
        store: &mut G,
    ) -> Result<(), G::Error> {
        let mut remaining: HashMap<i32, i64> = ends
            .iter()
            .filter(|(_, (low, end))| end > low)
            .map(|(p, (_, end))| (*p, *end))
            .collect();
        // Already there (a previous call read that far).
        self.drop_reached(&mut remaining);
        while !remaining.is_empty() {
            self.keep(store)?;
            let mut batch: Vec<Decided> = Vec::new();
            let deadline = Instant::now() + Duration::from_millis(50);
            while batch.len() < 2000 && Instant::now() < deadline {
                let Some(polled) = self.consumer.poll(Duration::from_millis(20)) else {
                    continue;
                };
                let m = polled.map_err(|source| crate::Error::Operation {
                    operation: "read the events",
                    source,
                })?;
                if remaining
                    .get(&m.partition())
                    .is_some_and(|end| m.offset() + 1 >= *end)
                {
                    remaining.remove(&m.partition());
                }
                self.events += 1;
                loop {
                    match self.reader.read(&m) {
                        Ok(Some(d)) => batch.push(d),
                        Ok(None) => {}
                        Err(Failure::Transient(why)) => {
                            tracing::warn!(error = why, "transient failure; retrying");
                            std::thread::sleep(Duration::from_millis(500));
                            keep(&mut self.renewed, store)?;
                            continue;
                        }
                        Err(why) => {
                            tracing::warn!(error = ?why, offset = m.offset(), "poison event skipped (it is in the projector's dead-letter topic)");
                            self.poison += 1;
                        }
                    }
                    break;
                }
            }
            self.drop_reached(&mut remaining);
            self.write(&mut batch, store)?;
            if self.told.elapsed() >= Duration::from_secs(1) || remaining.is_empty() {
                self.told = Instant::now();
                (self.progress)(Progress {
                    generation: self.generation,
                    events: self.events,
                    total: self.total,
                    rate: self.events as f64 / self.started.elapsed().as_secs_f64().max(0.001),
                });
            }
        }
        Ok(())
    }

    /// Forget the partitions whose position is at their end (librdkafka moves it past transaction
    /// markers without a record).
    fn drop_reached(&self, remaining: &mut HashMap<i32, i64>) {
        if let Ok(positions) = self.consumer.position() {
            for e in positions.elements() {
                if let (Offset::Offset(o), Some(end)) = (e.offset(), remaining.get(&e.partition()))
                    && o >= *end
                {
                    remaining.remove(&e.partition());
                }
            }
        }
    }

    fn write<G: Generations>(
        &mut self,
        batch: &mut Vec<Decided>,
        store: &mut G,
    ) -> Result<(), G::Error> {
        if batch.is_empty() {
            return Ok(());
        }
        loop {
            match store.write(self.generation, batch) {
                Ok(()) => return Ok(()),
                Err(Failure::Transient(why)) => {
                    tracing::warn!(error = why, "transient failure; retrying");
                    std::thread::sleep(Duration::from_millis(500));
                    self.keep(store)?;
                }
                Err(Failure::PoisonItem(n, why)) if n < batch.len() => {
                    tracing::warn!(error = why, "poison event skipped");
                    batch.remove(n);
                    self.poison += 1;
                }
                Err(Failure::Fatal(why) | Failure::Poison(why) | Failure::PoisonItem(_, why)) => {
                    return Err(crate::Error::Rebuild(format!("the rebuild stopped: {why}")).into());
                }
            }
        }
    }
}

/// Renew the claim if [`RENEW_EVERY`] passed since `renewed`.
fn keep<G: Generations>(renewed: &mut Instant, store: &mut G) -> Result<(), G::Error> {
    if renewed.elapsed() >= RENEW_EVERY {
        store.renew()?;
        *renewed = Instant::now();
    }
    Ok(())
}

/// Per partition of `topic`: (low watermark, last stable offset).
fn ends(consumer: &BaseConsumer, topic: &str) -> Result<HashMap<i32, (i64, i64)>, crate::Error> {
    Ok(
        crate::lag::partition_ends(consumer, topic, Duration::from_secs(10))?
            .into_iter()
            .map(|(p, low, end)| (p, (low, end)))
            .collect(),
    )
}
