//! Redis's side of a rebuild (`causeway projections rebuild <name>`; the protocol:
//! [`causeway_kafka::rebuild`]). The claim is a key with an expiry (`<prefix>:<projection>:building`,
//! set only if absent, renewed by the driver: one rebuild of a projection at a time); each claim takes
//! a generation number of its own from `<prefix>:<projection>:next` (above the live one and every one
//! taken before); the pause is another key with an expiry (`<prefix>:<projection>:paused`); one
//! script makes the new generation live and deletes the pause, only if the claim and the pause are
//! still this rebuild's. Other generations' keys are deleted by SCAN and UNLINK.

use causeway_kafka::projector::Decided;
use causeway_kafka::rebuild::{Generations as Side, LEASE, PAUSE};
use causeway_kafka::runner::Failure;
use redis::aio::ConnectionManager;

use crate::error::Error;
use crate::store::{self, Generations};
use causeway_redis::RedisConfig;

/// Makes the new generation live and lifts the pause, if the claim (`KEYS[3]` = `ARGV[2]`) and the
/// pause (`KEYS[1]` = `ARGV[1]`) are still the caller's.
const SWITCH: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] and redis.call('GET', KEYS[3]) == ARGV[2] then \
    redis.call('SET', KEYS[2], ARGV[1]) redis.call('DEL', KEYS[1]) return 1 end return 0";

/// Sets the pause (`KEYS[2]`, value `ARGV[2]`, for `ARGV[3]` ms, if absent) if the claim (`KEYS[1]`)
/// is `ARGV[1]`: 1 set, 0 another pause is set, -1 the claim is not the caller's.
const PAUSE_IF_CLAIMED: &str = "if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end \
    if redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3], 'NX') then return 1 end return 0";

/// Renews the claim (`KEYS[1]`) for `ARGV[2]` ms, or (`ARGV[2]` = 0) releases it, if it is `ARGV[1]`.
const RENEW: &str = "if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end \
    if ARGV[2] == '0' then redis.call('DEL', KEYS[1]) else redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 1";

/// The live generation (`KEYS[1]`, `ARGV[1]` if unset) and a new generation number above it and above
/// every one taken before (`KEYS[2]`), taken.
const TAKE: &str = "local live = tonumber(redis.call('GET', KEYS[1]) or ARGV[1]) \
    local taken = tonumber(redis.call('GET', KEYS[2]) or '0') \
    local n = math.max(live, taken) + 1 redis.call('SET', KEYS[2], n) return {live, n}";

/// One projection's generations in Redis, as a rebuild sees them.
pub struct Store {
    generations: Generations,
    name: String,
    redis: ConnectionManager,
    script: redis::Script,
    runtime: tokio::runtime::Handle,
    token: String,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
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
            token: causeway_kafka::rebuild::token(),
        })
    }

    /// Renew the claim for `for_ms` (0: release it); whether it was still this rebuild's.
    fn claim_for(&mut self, for_ms: u64) -> Result<bool, redis::RedisError> {
        let renewed: i64 = self.runtime.block_on(
            redis::Script::new(RENEW)
                .key(self.generations.building_key())
                .arg(&self.token)
                .arg(for_ms)
                .invoke_async(&mut self.redis),
        )?;
        Ok(renewed == 1)
    }

    /// The error of a claim that is no longer this rebuild's.
    fn lost(&self) -> Error {
        Error::Config(format!(
            "the claim on {} ran out and another rebuild may have taken it",
            self.name
        ))
    }

    /// Delete the keys of every generation of the projection but `keep`; how many went.
    fn delete_generations_except(&mut self, keep: &[u32]) -> Result<u64, Error> {
        let pattern = self.generations.pattern_all();
        let stem = pattern.trim_end_matches('*').to_string();
        let keep: Vec<String> = keep.iter().map(|g| format!("{stem}{g}:")).collect();
        self.runtime
            .block_on(delete_keys(&mut self.redis, &pattern, |key| {
                key.starts_with(&stem) && !keep.iter().any(|k| key.starts_with(k.as_str()))
            }))
    }
}

/// [`LEASE`] in milliseconds.
fn lease_ms() -> u64 {
    u64::try_from(LEASE.as_millis()).unwrap_or(90_000)
}

impl Side for Store {
    type Error = Error;

    fn begin(&mut self) -> Result<(u32, u32), Error> {
        let g = self.generations.clone();
        self.runtime
            .block_on(self.script.load_async(&mut self.redis))?;
        let live: Option<String> = self.runtime.block_on(
            redis::cmd("GET")
                .arg(g.live_key())
                .query_async(&mut self.redis),
        )?;
        if live.is_none() {
            return Err(Error::Config(format!(
                "no projector-redis has hosted {} under this prefix yet (no key {}): check --prefix and --redis",
                self.name,
                g.live_key()
            )));
        }
        let paused: Option<String> = self.runtime.block_on(
            redis::cmd("GET")
                .arg(g.paused_key())
                .query_async(&mut self.redis),
        )?;
        if let Some(other) = paused {
            return Err(Error::Config(format!(
                "a rebuild of {} is switching to generation {other} (or stopped less than {} s ago)",
                self.name,
                PAUSE.as_secs()
            )));
        }
        let claimed: Option<String> = self.runtime.block_on(
            redis::cmd("SET")
                .arg(g.building_key())
                .arg(&self.token)
                .arg("PX")
                .arg(lease_ms())
                .arg("NX")
                .query_async(&mut self.redis),
        )?;
        if claimed.is_none() {
            return Err(Error::Config(format!(
                "another rebuild of {} is running (or stopped less than {} s ago)",
                self.name,
                LEASE.as_secs()
            )));
        }
        let (live, new): (u32, u32) = self.runtime.block_on(
            redis::Script::new(TAKE)
                .key(g.live_key())
                .key(g.next_key())
                .arg(g.default)
                .invoke_async(&mut self.redis),
        )?;
        // What interrupted rebuilds left: generations half built, or retired but not yet deleted.
        self.delete_generations_except(&[live])?;
        Ok((live, new))
    }

    fn renew(&mut self) -> Result<(), Error> {
        if self.claim_for(lease_ms())? {
            Ok(())
        } else {
            Err(self.lost())
        }
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
        let set: i64 = self.runtime.block_on(
            redis::Script::new(PAUSE_IF_CLAIMED)
                .key(self.generations.building_key())
                .key(self.generations.paused_key())
                .arg(&self.token)
                .arg(generation)
                .arg(u64::try_from(PAUSE.as_millis()).unwrap_or(60_000))
                .invoke_async(&mut self.redis),
        )?;
        match set {
            1 => Ok(()),
            0 => Err(Error::Config(format!(
                "another rebuild of {} started switching meanwhile",
                self.name
            ))),
            _ => Err(self.lost()),
        }
    }

    fn switch(&mut self, generation: u32) -> Result<bool, Error> {
        let switched: i64 = self.runtime.block_on(
            redis::Script::new(SWITCH)
                .key(self.generations.paused_key())
                .key(self.generations.live_key())
                .key(self.generations.building_key())
                .arg(generation)
                .arg(&self.token)
                .invoke_async(&mut self.redis),
        )?;
        Ok(switched == 1)
    }

    fn retire(&mut self, old: u32) -> Result<u64, Error> {
        let pattern = self.generations.pattern(old);
        let deleted = self
            .runtime
            .block_on(delete_keys(&mut self.redis, &pattern, |_| true))?;
        self.claim_for(0)?;
        Ok(deleted)
    }
}

/// Delete every key matching `pattern` that `wanted` picks (SCAN, then UNLINK in pages).
async fn delete_keys(
    redis: &mut ConnectionManager,
    pattern: &str,
    wanted: impl Fn(&str) -> bool,
) -> Result<u64, Error> {
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
        let keys: Vec<&String> = keys.iter().filter(|k| wanted(k)).collect();
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
