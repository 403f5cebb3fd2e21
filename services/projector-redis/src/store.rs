//! The Redis connection. One multiplexed connection per process, managed (it reconnects by itself);
//! every call pipelines over it, so there is no pool to size.

use causeway_kafka::projector::Decided;
use causeway_kafka::runner::Failure;
use causeway_redis::RedisConfig;
use redis::aio::ConnectionManager;

use crate::error::Error;

/// Connect to the configured Redis (see [`causeway_redis::connect`]).
pub async fn connect(config: &RedisConfig) -> Result<ConnectionManager, Error> {
    Ok(causeway_redis::connect(config).await?)
}

/// Succeeds when Redis answers PING.
pub async fn ping(config: &RedisConfig) -> Result<(), Error> {
    Ok(causeway_redis::ping(config).await?)
}

/// The script that applies one projected event (`apply.lua`).
pub fn apply_script() -> redis::Script {
    redis::Script::new(include_str!("apply.lua"))
}

/// Where a projection's documents, indexes and offsets live: `<prefix>:<projection>:g<generation>:`
/// then `doc:<id>`, `index:<index>:<key>` and `offsets`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    base: String,
}

impl Keys {
    /// The keys of `projection`'s `generation` under `prefix`.
    pub fn new(prefix: &str, projection: &str, generation: u32) -> Self {
        Self {
            base: format!("{prefix}:{projection}:g{generation}:"),
        }
    }

    /// The document of aggregate `id`.
    pub fn doc(&self, id: &str) -> String {
        format!("{}doc:{id}", self.base)
    }

    /// The sorted set of index `index` under `key`.
    pub fn index(&self, index: &str, key: &str) -> String {
        format!("{}index:{index}:{key}", self.base)
    }

    /// The hash of the last offset applied per `<topic>:<partition>`.
    pub fn offsets(&self) -> String {
        format!("{}offsets", self.base)
    }
}

/// The generations of one projection: which one readers see and projectors write
/// (`<prefix>:<projection>:live`), and whether a rebuild is switching to a new one
/// (`<prefix>:<projection>:paused`, with an expiry: projectors do not write meanwhile).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generations {
    prefix: String,
    projection: String,
    /// The generation when none is recorded yet (`projector.generation`).
    pub default: u32,
}

impl Generations {
    /// The generations of `projection` under `prefix`.
    pub fn new(prefix: &str, projection: &str, default: u32) -> Self {
        Self {
            prefix: prefix.to_string(),
            projection: projection.to_string(),
            default,
        }
    }

    /// The key naming the generation readers see and projectors write.
    pub fn live_key(&self) -> String {
        format!("{}:{}:live", self.prefix, self.projection)
    }

    /// The key a rebuild sets while it switches generations.
    pub fn paused_key(&self) -> String {
        format!("{}:{}:paused", self.prefix, self.projection)
    }

    /// The key a rebuild holds while it runs (one rebuild of a projection at a time).
    pub fn building_key(&self) -> String {
        format!("{}:{}:building", self.prefix, self.projection)
    }

    /// The key of the last generation number a rebuild took.
    pub fn next_key(&self) -> String {
        format!("{}:{}:next", self.prefix, self.projection)
    }

    /// The pattern of every key of every generation (for SCAN): `<prefix>:<projection>:g*`.
    pub fn pattern_all(&self) -> String {
        format!("{}:{}:g*", self.prefix, self.projection)
    }

    /// The keys of generation `n`.
    pub fn keys(&self, n: u32) -> Keys {
        Keys::new(&self.prefix, &self.projection, n)
    }

    /// The pattern of every key of generation `n` (for SCAN).
    pub fn pattern(&self, n: u32) -> String {
        format!("{}:{}:g{n}:*", self.prefix, self.projection)
    }
}

/// Record the default generation as live, unless one is recorded already.
pub async fn init_generations(
    connection: &mut ConnectionManager,
    g: &Generations,
) -> Result<(), Error> {
    let _: Option<String> = redis::cmd("SET")
        .arg(g.live_key())
        .arg(g.default)
        .arg("NX")
        .query_async(connection)
        .await?;
    Ok(())
}

/// The generation readers see.
pub async fn live(
    connection: &mut ConnectionManager,
    g: &Generations,
) -> Result<u32, redis::RedisError> {
    let live: Option<String> = redis::cmd("GET")
        .arg(g.live_key())
        .query_async(connection)
        .await?;
    Ok(live.and_then(|v| v.parse().ok()).unwrap_or(g.default))
}

/// For each of `generations` (one round trip): the generation to write, or `None` while a rebuild
/// switches generations.
pub async fn targets(
    connection: &mut ConnectionManager,
    generations: &[Generations],
) -> Result<Vec<Option<u32>>, redis::RedisError> {
    let mut cmd = redis::cmd("MGET");
    for g in generations {
        cmd.arg(g.live_key()).arg(g.paused_key());
    }
    let values: Vec<Option<String>> = cmd.query_async(connection).await?;
    Ok(generations
        .iter()
        .zip(values.chunks(2))
        .map(|(g, pair)| match pair {
            [_, Some(_)] => None,
            [live, None] => Some(
                live.as_deref()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(g.default),
            ),
            _ => Some(g.default),
        })
        .collect())
}

/// Apply `items` (decided events) with `script`, to every generation `keys(i)` lists for projection
/// `i`: one pipeline of script calls. The error policy of the consumer runner: a failed pipeline is
/// transient (or fatal), a call refused for one event is that item's poison, a script the server lost
/// is loaded again.
pub async fn apply_batch<'k>(
    connection: &mut ConnectionManager,
    script: &redis::Script,
    items: &[Decided],
    keys: impl Fn(usize) -> &'k [Keys],
) -> Result<(), Failure> {
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    // For each script call, the item it belongs to.
    let mut owner = Vec::new();
    for (n, item) in items.iter().enumerate() {
        for (i, projected) in &item.writes {
            for keys in keys(*i) {
                let change = &projected.change;
                let call = pipe
                    .cmd("EVALSHA")
                    .arg(script.get_hash())
                    .arg(2 + change.index.len())
                    .arg(keys.doc(&projected.aggregate_id))
                    .arg(keys.offsets());
                for entry in &change.index {
                    call.arg(keys.index(entry.index, &entry.key));
                }
                call.arg(projected.version)
                    .arg(projected.occurred_at_ms)
                    .arg(&item.position)
                    .arg(item.offset)
                    .arg(change.set.len());
                for (name, value) in &change.set {
                    call.arg(*name).arg(value.to_string());
                }
                call.arg(change.add.len());
                for (name, delta) in &change.add {
                    call.arg(*name).arg(*delta);
                }
                call.arg(&projected.aggregate_id);
                for entry in &change.index {
                    call.arg(entry.score);
                }
                owner.push(n);
            }
        }
    }
    if owner.is_empty() {
        return Ok(());
    }
    let answers: Vec<redis::RedisResult<i64>> =
        pipe.query_async(connection)
            .await
            .map_err(|e| match failure(&e) {
                // The whole pipeline failing says nothing about one event.
                Failure::Fatal(why) => Failure::Fatal(why),
                _ => Failure::Transient(format!("redis: {e}")),
            })?;
    for (n, answer) in answers.into_iter().enumerate() {
        if let Err(e) = answer {
            if matches!(
                e.kind(),
                redis::ErrorKind::Server(redis::ServerErrorKind::NoScript)
            ) {
                // The script cache was emptied (Redis restarted): load it, write again.
                let loaded = script.load_async(connection).await;
                return Err(Failure::Transient(match loaded {
                    Ok(_) => format!("redis: {e} (script loaded again)"),
                    Err(l) => format!("redis: {e}; loading the script: {l}"),
                }));
            }
            return Err(match failure(&e) {
                Failure::Poison(why) => {
                    Failure::PoisonItem(owner.get(n).copied().unwrap_or(0), why)
                }
                other => other,
            });
        }
    }
    Ok(())
}

pub use causeway_redis::failure;
