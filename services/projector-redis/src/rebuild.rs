//! Rebuilding a projection while traffic flows (`causeway projections rebuild <name>`): a new generation
//! is built from offset 0 beside the live one, reads and writes switch to it atomically once it has
//! caught up, and the old one is deleted.
//!
//! 1. The events are replayed into generation `N = live + 1` from offset 0, in order, until the replay
//!    reaches the end of every partition. Meanwhile the projectors keep writing the live generation.
//! 2. The switch: a pause key (expiring after [`PAUSE`]) stops the projectors' writes (a batch then waits
//!    like any transient failure, its offsets not stored); the end of every partition is taken after
//!    that, and the replay catches up to it. Every event a projector wrote before the pause is below
//!    that end, so `N` now holds every event the live generation holds, each applied in order.
//! 3. One script makes `N` live and lifts the pause, only if the pause is still this rebuild's (had it
//!    expired, the projectors may have written on: back to step 2). Readers switch at once, never to a
//!    half-built generation; the projectors resume from their committed offsets into `N`, where the
//!    events the replay already applied are older and change nothing, and the later ones follow in
//!    order. The old generation's keys are deleted.
//!
//! Counters (`add`) stay exact because one generation is only ever written by one ordered stream at a
//! time. One rebuild of a projection at a time: a rebuild refuses to start while another one's pause is
//! set.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use causeway_contracts::projecting::Projecting;
use causeway_kafka::KafkaConfig;
use causeway_kafka::config::OffsetMode;
use causeway_kafka::projector::{Decided, EventReader};
use causeway_kafka::runner::Failure;
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use redis::aio::ConnectionManager;

use crate::config::RedisConfig;
use crate::error::Error;
use crate::store::{self, Generations, Keys};

/// How long the projectors' writes may stay paused for a switch (a rebuild that dies meanwhile leaves
/// them paused this long at most).
pub const PAUSE: Duration = Duration::from_secs(60);

/// Makes the new generation live and lifts the pause, if the pause is still the caller's.
const SWITCH: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
    redis.call('SET', KEYS[2], ARGV[1]) redis.call('DEL', KEYS[1]) return 1 end return 0";

/// What to rebuild, from where, into what.
#[derive(Debug)]
pub struct Plan<'a> {
    /// The Kafka cluster.
    pub kafka: &'a KafkaConfig,
    /// The Redis of the read models.
    pub redis: &'a RedisConfig,
    /// The registry the events were written with.
    pub registry_url: &'a str,
    /// The first segment of the event topics.
    pub context: &'a str,
    /// The projectors' key prefix.
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
    /// Keys of the old generation deleted.
    pub deleted: u64,
    /// How long it took.
    pub elapsed: Duration,
}

/// Rebuild `projection` as [`Plan`] says, telling `progress` about once a second. Blocks: call from a
/// thread of its own, with a Tokio runtime `runtime` for the Redis and registry calls.
pub fn rebuild(
    plan: &Plan<'_>,
    projection: Box<dyn Projecting>,
    runtime: &tokio::runtime::Handle,
    progress: impl FnMut(Progress),
) -> Result<Outcome, Error> {
    let started = Instant::now();
    let name = projection.name();
    let aggregate = projection.aggregate_type();
    let g = Generations::new(plan.prefix, name, 1);
    let mut redis = runtime.block_on(store::connect(plan.redis))?;
    let script = store::apply_script();
    runtime.block_on(script.load_async(&mut redis))?;
    runtime.block_on(store::init_generations(&mut redis, &g))?;
    let paused: Option<String> = runtime.block_on(
        redis::cmd("GET")
            .arg(g.paused_key())
            .query_async(&mut redis),
    )?;
    if let Some(other) = paused {
        return Err(Error::Config(format!(
            "another rebuild of {name} is switching to generation {other} (or stopped less than {} s ago)",
            PAUSE.as_secs()
        )));
    }
    let old = runtime.block_on(store::live(&mut redis, &g))?;
    let new = old + 1;
    // What an interrupted rebuild left of this generation.
    runtime.block_on(delete_keys(&mut redis, &g.pattern(new)))?;
    let topic = format!("{}.{aggregate}.events", plan.context);
    let consumer: BaseConsumer = plan
        .kafka
        .consumer_config(
            "rebuild",
            &format!("{}-rebuild-{name}-g{new}", plan.prefix),
            OffsetMode::Transactional,
        )
        .create()
        .map_err(|source| causeway_kafka::Error::Client {
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
            .map_err(|source| causeway_kafka::Error::Operation {
                operation: "assign for the rebuild",
                source,
            })?;
    }
    consumer
        .assign(&list)
        .map_err(|source| causeway_kafka::Error::Operation {
            operation: "assign for the rebuild",
            source,
        })?;
    let mut replay = Replay {
        reader: EventReader::new(
            vec![projection],
            plan.context,
            &[aggregate],
            plan.registry_url,
            runtime.clone(),
        ),
        consumer,
        topic,
        keys: [g.keys(new)],
        redis,
        script,
        runtime: runtime.clone(),
        events: 0,
        poison: 0,
        progress,
        started,
        told: Instant::now(),
        generation: new,
        total,
    };
    // 1. From offset 0 to the end as it was at the start.
    replay.to(&first)?;
    // 2. and 3. The switch, again if the pause ran out first.
    let mut attempts = 0;
    loop {
        attempts += 1;
        let set: Option<String> = runtime.block_on(
            redis::cmd("SET")
                .arg(g.paused_key())
                .arg(new)
                .arg("PX")
                .arg(u64::try_from(PAUSE.as_millis()).unwrap_or(60_000))
                .arg("NX")
                .query_async(&mut replay.redis),
        )?;
        if set.is_none() {
            return Err(Error::Config(format!(
                "another rebuild of {name} started switching meanwhile"
            )));
        }
        let now = ends(&replay.consumer, &replay.topic)?;
        replay.to(&now)?;
        let switched: i64 = runtime.block_on(
            redis::Script::new(SWITCH)
                .key(g.paused_key())
                .key(g.live_key())
                .arg(new)
                .invoke_async(&mut replay.redis),
        )?;
        if switched == 1 {
            break;
        }
        if attempts >= 3 {
            return Err(Error::Config(format!(
                "the switch to generation {new} took longer than the pause ({} s) three times",
                PAUSE.as_secs()
            )));
        }
        tracing::warn!(
            generation = new,
            "the pause ran out before the switch; switching again"
        );
    }
    let deleted = runtime.block_on(delete_keys(&mut replay.redis, &g.pattern(old)))?;
    Ok(Outcome {
        old,
        new,
        events: replay.events,
        poison: replay.poison,
        deleted,
        elapsed: started.elapsed(),
    })
}

/// The replay into the new generation.
struct Replay<P: FnMut(Progress)> {
    reader: EventReader,
    consumer: BaseConsumer,
    topic: String,
    keys: [Keys; 1],
    redis: ConnectionManager,
    script: redis::Script,
    runtime: tokio::runtime::Handle,
    events: u64,
    poison: u64,
    progress: P,
    started: Instant,
    told: Instant,
    generation: u32,
    total: u64,
}

impl<P: FnMut(Progress)> Replay<P> {
    /// Read and apply, in order, until every partition's position reaches `ends` (records past it
    /// are applied too: in order, they change nothing the projectors will not write the same way).
    fn to(&mut self, ends: &HashMap<i32, (i64, i64)>) -> Result<(), Error> {
        let mut remaining: HashMap<i32, i64> = ends
            .iter()
            .filter(|(_, (low, end))| end > low)
            .map(|(p, (_, end))| (*p, *end))
            .collect();
        // Already there (a previous call read that far).
        self.drop_reached(&mut remaining);
        while !remaining.is_empty() {
            let mut batch: Vec<Decided> = Vec::new();
            let deadline = Instant::now() + Duration::from_millis(50);
            while batch.len() < 2000 && Instant::now() < deadline {
                let Some(polled) = self.consumer.poll(Duration::from_millis(20)) else {
                    continue;
                };
                let m = polled.map_err(|source| causeway_kafka::Error::Operation {
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
            self.write(&mut batch)?;
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

    fn write(&mut self, batch: &mut Vec<Decided>) -> Result<(), Error> {
        let keys = &self.keys;
        loop {
            match self.runtime.block_on(store::apply_batch(
                &mut self.redis,
                &self.script,
                batch,
                |_| keys,
            )) {
                Ok(()) => return Ok(()),
                Err(Failure::Transient(why)) => {
                    tracing::warn!(error = why, "transient failure; retrying");
                    std::thread::sleep(Duration::from_millis(500));
                }
                Err(Failure::PoisonItem(n, why)) if n < batch.len() => {
                    tracing::warn!(error = why, "poison event skipped");
                    batch.remove(n);
                    self.poison += 1;
                }
                Err(other) => return Err(Error::Config(format!("rebuild stopped: {other:?}"))),
            }
        }
    }
}

/// Per partition of `topic`: (low watermark, last stable offset).
fn ends(consumer: &BaseConsumer, topic: &str) -> Result<HashMap<i32, (i64, i64)>, Error> {
    Ok(
        causeway_kafka::lag::partition_ends(consumer, topic, Duration::from_secs(10))?
            .into_iter()
            .map(|(p, low, end)| (p, (low, end)))
            .collect(),
    )
}

/// Delete every key matching `pattern` (SCAN, then UNLINK in pages).
async fn delete_keys(redis: &mut ConnectionManager, pattern: &str) -> Result<u64, Error> {
    let mut cursor = 0u64;
    let mut deleted = 0u64;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(redis)
            .await?;
        if !keys.is_empty() {
            let n: u64 = redis::cmd("UNLINK").arg(&keys).query_async(redis).await?;
            deleted += n;
        }
        if next == 0 {
            return Ok(deleted);
        }
        cursor = next;
    }
}
