//! The `[kafka]` section of a service config and the client properties the suite sets.
//!
//! Defaults that carry a guarantee (idempotent producer, `acks=all`, `read_committed`, offsets stored
//! only by the code once an effect is durable) cannot be overridden through `properties`: a config that
//! tries is refused at start-up. Everything else librdkafka knows (SASL, TLS, timeouts, batching) passes
//! through unchanged and wins over the defaults.

use std::collections::BTreeMap;
use std::fmt;

use causeway_runtime::Invalid;
use rdkafka::ClientConfig;
use serde::{Deserialize, Serialize};

/// librdkafka properties the suite owns; setting them in `properties` is a config error.
pub const GUARDED_PROPERTIES: &[&str] = &[
    "bootstrap.servers",
    "enable.idempotence",
    "acks",
    "request.required.acks",
    "enable.auto.offset.store",
    "isolation.level",
    "transactional.id",
    "group.id",
    "partitioner",
    // A group without offsets reads from the start: `latest` would skip what came before it.
    "auto.offset.reset",
];

/// Connection to a Kafka cluster.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Comma-separated `host:port` list of brokers to bootstrap from.
    pub bootstrap_servers: String,
    /// Prefix of the `client.id` each client reports to the brokers (it appears in broker logs and quotas).
    pub client_id: String,
    /// Any other librdkafka property, applied after the suite's defaults (e.g. `security.protocol`,
    /// `sasl.mechanism`, `ssl.ca.location`, `linger.ms`). Values whose name suggests a secret are never
    /// printed.
    pub properties: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            bootstrap_servers: "127.0.0.1:9092".to_string(),
            client_id: "causeway".to_string(),
            properties: BTreeMap::new(),
        }
    }
}

impl fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let properties: BTreeMap<&str, &str> = self
            .properties
            .iter()
            .map(|(k, v)| {
                let shown = if is_secret(k) {
                    "<redacted>"
                } else {
                    v.as_str()
                };
                (k.as_str(), shown)
            })
            .collect();
        f.debug_struct("KafkaConfig")
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("client_id", &self.client_id)
            .field("properties", &properties)
            .finish()
    }
}

/// Whether a property's value must never be logged.
pub fn is_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    [
        "password",
        "secret",
        "jaas",
        "key.pem",
        "token",
        "credentials",
    ]
    .iter()
    .any(|word| key.contains(word))
}

/// How a consumer commits its position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetMode {
    /// At-least-once: the code stores an offset once the record's effect is durable, and librdkafka
    /// commits stored offsets periodically.
    StoreAfterEffect,
    /// Exactly-once: offsets are sent inside the producer's transaction; the consumer never commits.
    Transactional,
}

impl KafkaConfig {
    /// A config for `bootstrap_servers` with every other field at its default.
    pub fn for_servers(bootstrap_servers: impl Into<String>) -> Self {
        Self {
            bootstrap_servers: bootstrap_servers.into(),
            ..Self::default()
        }
    }

    /// Start-up checks for the section at `section` (e.g. `kafka`).
    pub fn check(&self, section: &str) -> Vec<Invalid> {
        let mut out = Vec::new();
        if self.bootstrap_servers.trim().is_empty() {
            out.push(Invalid::new(
                format!("{section}.bootstrap_servers"),
                "must name at least one broker (host:port)",
            ));
        }
        for server in self
            .bootstrap_servers
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            let port_ok = server
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
            if !port_ok {
                out.push(Invalid::new(
                    format!("{section}.bootstrap_servers"),
                    format!("{server:?} is not host:port"),
                ));
            }
        }
        if self.client_id.trim().is_empty() {
            out.push(Invalid::new(
                format!("{section}.client_id"),
                "must not be empty",
            ));
        }
        for key in self.properties.keys() {
            if GUARDED_PROPERTIES.contains(&key.as_str()) {
                out.push(Invalid::new(
                    format!("{section}.properties.{key}"),
                    "is set by Causeway to keep its delivery guarantees and cannot be overridden",
                ));
            }
        }
        out
    }

    fn base(&self, client_id_suffix: &str) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap_servers);
        c.set(
            "client.id",
            format!("{}-{client_id_suffix}", self.client_id),
        );
        c
    }

    fn with_overrides(&self, mut c: ClientConfig) -> ClientConfig {
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        c
    }

    /// Whether `properties` set the producer's linger (`linger.ms` or its alias).
    fn sets_linger(&self) -> bool {
        self.properties.contains_key("linger.ms")
            || self.properties.contains_key("queue.buffering.max.ms")
    }

    /// Properties of an idempotent producer: `acks=all`, murmur2 partitioning (the Java client's, so
    /// a key lands where any Java producer would put it), small linger for batching, lz4.
    pub fn producer_config(&self, purpose: &str) -> ClientConfig {
        let mut c = self.base(purpose);
        c.set("enable.idempotence", "true")
            .set("acks", "all")
            .set("partitioner", "murmur2_random")
            .set("compression.type", "lz4");
        // Not beside a user's alias of it (which of the two librdkafka took would be arbitrary).
        if !self.sets_linger() {
            c.set("linger.ms", "5");
        }
        self.with_overrides(c)
    }

    /// Properties of a transactional producer with `transactional_id` (EOS v2: one per process).
    pub fn transactional_producer_config(
        &self,
        purpose: &str,
        transactional_id: &str,
    ) -> ClientConfig {
        let mut c = self.producer_config(purpose);
        c.set("transactional.id", transactional_id);
        // A transaction begun while the broker still writes the previous one's markers is told
        // CONCURRENT_TRANSACTIONS and retried after `retry.backoff.ms`; librdkafka's 100 ms would
        // stall every back-to-back transaction.
        if !self.properties.contains_key("retry.backoff.ms") {
            c.set("retry.backoff.ms", "10");
        }
        // The processor closes its batches itself and waits for every record of a transaction before
        // committing it: a linger would only delay that wait (measured: 28,000 -> 34,600 commands/s
        // with 0). Under load, records still go out batched behind the requests in flight.
        if !self.sets_linger() {
            c.set("linger.ms", "0");
        }
        c
    }

    /// Properties of a consumer in `group_id`: `read_committed`, earliest when no offset is committed,
    /// offsets handled per `mode`.
    pub fn consumer_config(&self, purpose: &str, group_id: &str, mode: OffsetMode) -> ClientConfig {
        let mut c = self.base(purpose);
        c.set("group.id", group_id)
            .set("isolation.level", "read_committed")
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false")
            // A read_committed fetch that finds only uncommitted data waits this long on the broker
            // even when the commit lands meanwhile: librdkafka's 500 ms default put that under the
            // tail latency of every hop (processor results to the gateway: p99 1.7 s, 142 ms at 20).
            .set("fetch.wait.max.ms", "20")
            // Once a partition's prefetched records pass `queued.min.messages` (100,000) or the queue
            // passes `queued.max.messages.kbytes`, librdkafka waits this long before fetching it again,
            // even when the application has drained them meanwhile: its 1 s default idled a restore of
            // 1,000,000 changelog records most of the time, and stalls any consumer with a backlog.
            .set("fetch.queue.backoff.ms", "10");
        match mode {
            OffsetMode::StoreAfterEffect => c.set("enable.auto.commit", "true"),
            OffsetMode::Transactional => c.set("enable.auto.commit", "false"),
        };
        self.with_overrides(c)
    }

    /// Properties of an admin client.
    pub fn admin_config(&self) -> ClientConfig {
        self.with_overrides(self.base("admin"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn producer_defaults_carry_the_guarantees() {
        let c = KafkaConfig::for_servers("k:9092").producer_config("gateway");
        assert_eq!(c.get("enable.idempotence"), Some("true"));
        assert_eq!(c.get("acks"), Some("all"));
        assert_eq!(c.get("partitioner"), Some("murmur2_random"));
        assert_eq!(c.get("client.id"), Some("causeway-gateway"));
    }

    #[test]
    fn transactional_producers_retry_concurrent_transactions_quickly_unless_told_otherwise() {
        let k = KafkaConfig::for_servers("k:9092");
        let c = k.transactional_producer_config("p", "t");
        assert_eq!(c.get("transactional.id"), Some("t"));
        assert_eq!(c.get("retry.backoff.ms"), Some("10"));
        let mut k = KafkaConfig::for_servers("k:9092");
        k.properties.insert("retry.backoff.ms".into(), "50".into());
        assert_eq!(
            k.transactional_producer_config("p", "t")
                .get("retry.backoff.ms"),
            Some("50")
        );
    }

    #[test]
    fn consumer_defaults_read_committed_and_store_manually() {
        let k = KafkaConfig::for_servers("k:9092");
        let c = k.consumer_config("p", "g", OffsetMode::StoreAfterEffect);
        assert_eq!(c.get("isolation.level"), Some("read_committed"));
        assert_eq!(c.get("enable.auto.offset.store"), Some("false"));
        assert_eq!(c.get("enable.auto.commit"), Some("true"));
        let t = k.consumer_config("p", "g", OffsetMode::Transactional);
        assert_eq!(t.get("enable.auto.commit"), Some("false"));
    }

    #[test]
    fn pass_through_properties_win_over_defaults() {
        let mut k = KafkaConfig::for_servers("k:9092");
        k.properties.insert("linger.ms".into(), "50".into());
        k.properties
            .insert("security.protocol".into(), "SASL_SSL".into());
        let c = k.producer_config("x");
        assert_eq!(c.get("linger.ms"), Some("50"));
        assert_eq!(c.get("security.protocol"), Some("SASL_SSL"));
    }

    #[test]
    fn guarded_properties_and_bad_servers_are_refused_by_name() {
        let mut k = KafkaConfig::for_servers("k:9092,nope");
        k.properties.insert("acks".into(), "1".into());
        let keys: Vec<String> = k.check("kafka").into_iter().map(|i| i.key).collect();
        assert_eq!(
            keys,
            vec!["kafka.bootstrap_servers", "kafka.properties.acks"]
        );
        assert!(
            KafkaConfig::for_servers("a:1, b:2")
                .check("kafka")
                .is_empty()
        );
    }

    #[test]
    fn secrets_are_redacted_in_debug_output() {
        let mut k = KafkaConfig::for_servers("k:9092");
        k.properties
            .insert("sasl.password".into(), "hunter2".into());
        k.properties.insert("sasl.username".into(), "svc".into());
        let shown = format!("{k:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("svc"), "{shown}");
    }
}
