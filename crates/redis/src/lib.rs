//! Redis for the services that keep data there (projector-redis, dlq-reprocessor): the `[redis]` config
//! section, one managed connection per process, and Redis errors classified once.
//!
//! # Layout
//! - [`RedisConfig`]: the `[redis]` section; its password never shows in logs.
//! - [`connect`] / [`ping`]: the managed connection (reconnects by itself) and the start-up check.
//! - [`classify`] / [`failure`]: what a Redis error means: for a service, and for a consumer runner's batch.
#![forbid(unsafe_code)]

use std::time::Duration;

use causeway_core::ErrorClass;
use causeway_kafka::runner::Failure;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde::{Deserialize, Serialize};

/// How long connecting may take before it counts as a (transient) failure.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a call may wait for its answer before it counts as a (transient) failure: a Redis that
/// stops answering (frozen, partitioned away) must not stall a service for ever.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the read models live.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port[/db]` (`rediss://` for TLS). The password is never logged.
    pub url: String,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: "redis://127.0.0.1:6379".into(),
        }
    }
}

impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &redact_url(&self.url))
            .finish()
    }
}

/// `url` with any password replaced, for logs.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{user}:<redacted>{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}

impl RedisConfig {
    /// Start-up checks for the section at `section`.
    pub fn check(&self, section: &str) -> Vec<causeway_runtime::Invalid> {
        match redis::Client::open(self.url.as_str()) {
            Ok(_) => Vec::new(),
            Err(e) => vec![causeway_runtime::Invalid::new(
                format!("{section}.url"),
                format!("not a Redis URL: {e}"),
            )],
        }
    }
}

/// Connect to the configured Redis. The manager reconnects with backoff after the first connection;
/// the first connection itself fails fast, so the caller's retry loop (and its logging) stays in charge.
pub async fn connect(config: &RedisConfig) -> Result<ConnectionManager, redis::RedisError> {
    let client = redis::Client::open(config.url.as_str())?;
    let manager = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
        .set_number_of_retries(1);
    ConnectionManager::new_with_config(client, manager).await
}

/// Succeeds when Redis answers PING.
pub async fn ping(config: &RedisConfig) -> Result<(), redis::RedisError> {
    let client = redis::Client::open(config.url.as_str())?;
    let connection =
        redis::AsyncConnectionConfig::new().set_connection_timeout(Some(CONNECT_TIMEOUT));
    let mut conn = client
        .get_multiplexed_async_connection_with_config(&connection)
        .await?;
    let _: String = redis::cmd("PING").query_async(&mut conn).await?;
    Ok(())
}

/// Redis errors, classified once: authentication and bad URLs are fatal, a refused or dropped
/// connection, a timeout or a busy server are transient; anything else is a bug in a script we sent,
/// which no retry fixes.
pub fn classify(e: &redis::RedisError) -> ErrorClass {
    use redis::{ErrorKind, ServerErrorKind as S};
    if e.is_connection_refusal() || e.is_connection_dropped() || e.is_timeout() || e.is_io_error() {
        return ErrorClass::Transient;
    }
    match e.kind() {
        ErrorKind::Server(
            S::BusyLoading | S::TryAgain | S::ClusterDown | S::MasterDown | S::ReadOnly,
        ) => ErrorClass::Transient,
        _ => ErrorClass::Fatal,
    }
}

/// What a Redis error means for a consumer runner's batch. Only what a script itself refuses for one
/// record is that record's poison: a generic error (`ERR`, raised by the script) or a key of another
/// type (`WRONGTYPE`). Credentials and permissions are fatal (a restart once fixed); everything else
/// (out of memory, a failing persistence, a busy or loading server, a failover, an unknown error code)
/// is transient: retried, and never a reason to drop a record.
pub fn failure(e: &redis::RedisError) -> Failure {
    use redis::{ErrorKind, ServerErrorKind as S};
    if matches!(classify(e), ErrorClass::Transient) {
        return Failure::Transient(format!("redis: {e}"));
    }
    match (e.kind(), e.code()) {
        (ErrorKind::Server(S::ResponseError), _) | (_, Some("WRONGTYPE")) => {
            Failure::Poison(format!("redis refused the write: {e}"))
        }
        (ErrorKind::AuthenticationFailed | ErrorKind::Server(S::NoPerm), _)
        | (_, Some("NOAUTH" | "WRONGPASS")) => Failure::Fatal(format!("redis: {e}")),
        _ => Failure::Transient(format!("redis: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_never_shows() {
        let c = RedisConfig {
            url: "redis://app:s3cret@cache:6379/2".into(),
        };
        let shown = format!("{c:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(
            shown.contains("redis://app:<redacted>@cache:6379/2"),
            "{shown}"
        );
    }

    #[test]
    fn a_bad_url_is_named() {
        let c = RedisConfig {
            url: "http://nope".into(),
        };
        let keys: Vec<String> = c.check("redis").into_iter().map(|i| i.key).collect();
        assert_eq!(keys, vec!["redis.url"]);
    }
}
