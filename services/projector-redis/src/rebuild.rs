//! Redis's side of a rebuild (`causeway projections rebuild <name>`; the protocol:
//! [`causeway_kafka::rebuild`]). The pause is a key with an expiry (`<prefix>:<projection>:paused`,
//! set only if absent: one rebuild of a projection at a time); one script makes the new generation
//! live and deletes the pause, only if the pause is still this rebuild's. The old generation's keys
//! are deleted by SCAN and UNLINK.

use causeway_kafka::projector::Decided;
use causeway_kafka::rebuild::{Generations as Side, PAUSE};
use causeway_kafka::runner::Failure;
use redis::aio::ConnectionManager;

use crate::config::RedisConfig;
use crate::error::Error;
use crate::store::{self, Generations};

/// Makes the new generation live and lifts the pause, if the pause is still the caller's.
const SWITCH: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
    redis.call('SET', KEYS[2], ARGV[1]) redis.call('DEL', KEYS[1]) return 1 end return 0";

/// One projection's generations in Redis, as a rebuild sees them.
pub struct Store {
    generations: Generations,
    name: String,
    redis: ConnectionManager,
    script: redis::Script,
    runtime: tokio::runtime::Handle,
}

impl Store {
    /// The generations of `projection` under `prefix` in `redis`, its calls on `runtime`.
    pub fn connect(
        redis: &RedisConfig,
        prefix: &str,
        projection: &str,
        runtime: &tokio::runtime::Handle,
    ) -> Result<Self, Error> {
        let connection = runtime.block_on(store::connect(redis))?;
        Ok(Self {
            generations: Generations::new(prefix, projection, 1),
            name: projection.to_string(),
            redis: connection,
            script: store::apply_script(),
            runtime: runtime.clone(),
        })
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Side for Store {
    type Error = Error;

    fn begin(&mut self) -> Result<u32, Error> {
        let g = &self.generations;
        self.runtime
            .block_on(self.script.load_async(&mut self.redis))?;
        self.runtime
            .block_on(store::init_generations(&mut self.redis, g))?;
        let paused: Option<String> = self.runtime.block_on(
            redis::cmd("GET")
                .arg(g.paused_key())
                .query_async(&mut self.redis),
        )?;
        if let Some(other) = paused {
            return Err(Error::Config(format!(
                "another rebuild of {} is switching to generation {other} (or stopped less than {} s ago)",
                self.name,
                PAUSE.as_secs()
            )));
        }
        let live = self.runtime.block_on(store::live(&mut self.redis, g))?;
        // What an interrupted rebuild left of the next generation.
        self.runtime
            .block_on(delete_keys(&mut self.redis, &g.pattern(live + 1)))?;
        Ok(live)
    }

    fn write(&mut self, generation: u32, batch: &[Decided]) -> Result<(), Failure> {
        let keys = [self.generations.keys(generation)];
        self.runtime.block_on(store::apply_batch(
            &mut self.redis,
            &self.script,
            batch,
            |_| &keys,
        ))
    }

    fn pause(&mut self, generation: u32) -> Result<(), Error> {
        let set: Option<String> = self.runtime.block_on(
            redis::cmd("SET")
                .arg(self.generations.paused_key())
                .arg(generation)
                .arg("PX")
                .arg(u64::try_from(PAUSE.as_millis()).unwrap_or(60_000))
                .arg("NX")
                .query_async(&mut self.redis),
        )?;
        if set.is_none() {
            return Err(Error::Config(format!(
                "another rebuild of {} started switching meanwhile",
                self.name
            )));
        }
        Ok(())
    }

    fn switch(&mut self, generation: u32) -> Result<bool, Error> {
        let switched: i64 = self.runtime.block_on(
            redis::Script::new(SWITCH)
                .key(self.generations.paused_key())
                .key(self.generations.live_key())
                .arg(generation)
                .invoke_async(&mut self.redis),
        )?;
        Ok(switched == 1)
    }

    fn retire(&mut self, old: u32) -> Result<u64, Error> {
        let pattern = self.generations.pattern(old);
        self.runtime
            .block_on(delete_keys(&mut self.redis, &pattern))
    }
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
