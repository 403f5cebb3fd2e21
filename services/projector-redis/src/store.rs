//! The Redis connection. One multiplexed connection per process, managed (it reconnects by itself);
//! every call pipelines over it, so there is no pool to size.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::config::RedisConfig;
use crate::error::Error;

/// How long connecting may take before it counts as a (transient) failure.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a call may wait for its answer before it counts as a (transient) failure: a Redis that
/// stops answering (frozen, partitioned away) must not stall the projector for ever.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);

/// Connect to the configured Redis. The manager reconnects with backoff after the first connection;
/// the first connection itself fails fast, so the caller's retry loop (and its logging) stays in charge.
pub async fn connect(config: &RedisConfig) -> Result<ConnectionManager, Error> {
    let client = redis::Client::open(config.url.as_str())?;
    let manager = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
        .set_number_of_retries(1);
    Ok(ConnectionManager::new_with_config(client, manager).await?)
}

/// Succeeds when Redis answers PING.
pub async fn ping(config: &RedisConfig) -> Result<(), Error> {
    let client = redis::Client::open(config.url.as_str())?;
    let connection =
        redis::AsyncConnectionConfig::new().set_connection_timeout(Some(CONNECT_TIMEOUT));
    let mut conn = client
        .get_multiplexed_async_connection_with_config(&connection)
        .await?;
    let _: String = redis::cmd("PING").query_async(&mut conn).await?;
    Ok(())
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
