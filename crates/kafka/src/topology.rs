//! Topics declared once, in TOML, and applied idempotently (docs/adr/0002-topic-layout.md).
//!
//! ```toml
//! [defaults]
//! partitions = 6
//! replication_factor = 3
//!
//! [[topic]]
//! name = "orders.order.events"
//! cleanup_policy = "delete"
//! retention_ms = -1                          # kept forever: the event store
//!
//! [[topic]]
//! name = "orders.order.changelog"
//! cleanup_policy = "compact"
//! config = { "min.compaction.lag.ms" = "0" } # any other topic config
//! ```
//!
//! [`apply`] creates the topics that are missing and compares the rest with the declaration. Differences
//! it cannot or must not fix by itself (partition count: changing it moves keys between partitions;
//! replication; a config that differs) are reported as [`Drift`], and the caller exits non-zero.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;
use serde::{Deserialize, Serialize};

use crate::client;
use crate::config::KafkaConfig;
use crate::error::Error;

/// A whole topology file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Topology {
    /// Values for topics that do not set their own.
    #[serde(default)]
    pub defaults: Defaults,
    /// The topics.
    #[serde(default, rename = "topic")]
    pub topics: Vec<TopicSpec>,
}

/// Topology-wide defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Defaults {
    /// Partition count.
    pub partitions: i32,
    /// Replication factor.
    pub replication_factor: i32,
}

impl Default for Defaults {
    fn default() -> Self {
        Self {
            partitions: 6,
            replication_factor: 3,
        }
    }
}

/// Cleanup policy of a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CleanupPolicy {
    /// Segments are deleted by age or size (`retention_ms`).
    Delete,
    /// The latest record per key is kept (state, changelogs).
    Compact,
    /// Both.
    #[serde(rename = "compact,delete")]
    CompactDelete,
}

impl CleanupPolicy {
    /// The broker's spelling.
    pub fn as_kafka(self) -> &'static str {
        match self {
            CleanupPolicy::Delete => "delete",
            CleanupPolicy::Compact => "compact",
            CleanupPolicy::CompactDelete => "compact,delete",
        }
    }
}

/// One topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicSpec {
    /// Topic name.
    pub name: String,
    /// Partition count (default: `defaults.partitions`).
    #[serde(default)]
    pub partitions: Option<i32>,
    /// Replication factor (default: `defaults.replication_factor`).
    #[serde(default)]
    pub replication_factor: Option<i32>,
    /// Cleanup policy (default: delete).
    #[serde(default)]
    pub cleanup_policy: Option<CleanupPolicy>,
    /// `retention.ms`; -1 keeps records forever. Unset leaves the broker default.
    #[serde(default)]
    pub retention_ms: Option<i64>,
    /// Any other topic config, by its Kafka name.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
}

impl TopicSpec {
    /// The topic configs this spec pins, by Kafka name.
    pub fn configs(&self) -> BTreeMap<String, String> {
        let mut out = self.config.clone();
        out.insert(
            "cleanup.policy".into(),
            self.cleanup_policy
                .unwrap_or(CleanupPolicy::Delete)
                .as_kafka()
                .into(),
        );
        if let Some(ms) = self.retention_ms {
            out.insert("retention.ms".into(), ms.to_string());
        }
        out
    }
}

impl Topology {
    /// The topic configs `spec` gets: its own, and `min.insync.replicas` = replication factor - 1 (at
    /// least 1) unless it sets one, so that a write acknowledged by `acks=all` survives the loss of one
    /// broker while one broker may be down without stopping writes.
    pub fn configs_of(&self, spec: &TopicSpec) -> BTreeMap<String, String> {
        let mut out = spec.configs();
        out.entry("min.insync.replicas".into())
            .or_insert_with(|| (self.replication_of(spec) - 1).max(1).to_string());
        out
    }

    /// Parse a topology from TOML text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, Error> {
        let topology: Topology = toml::from_str(text).map_err(|e| Error::Topology {
            path: origin.to_string(),
            message: e.to_string().trim_end().to_string(),
        })?;
        topology.check(origin)?;
        Ok(topology)
    }

    /// Read and parse a topology file.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Topology {
            path: path.display().to_string(),
            message: format!("cannot read: {e}"),
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    fn check(&self, origin: &str) -> Result<(), Error> {
        let bad = |message: String| Error::Topology {
            path: origin.to_string(),
            message,
        };
        let mut seen = std::collections::HashSet::new();
        for t in &self.topics {
            if t.name.is_empty()
                || t.name.len() > 249
                || !t
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
            {
                return Err(bad(format!(
                    "topic name {:?} is not a legal Kafka topic name ([a-zA-Z0-9._-], 1..249 chars)",
                    t.name
                )));
            }
            if !seen.insert(t.name.as_str()) {
                return Err(bad(format!("topic {:?} is declared twice", t.name)));
            }
            if self.partitions_of(t) < 1 {
                return Err(bad(format!(
                    "topic {:?}: partitions must be at least 1",
                    t.name
                )));
            }
            if self.replication_of(t) < 1 {
                return Err(bad(format!(
                    "topic {:?}: replication_factor must be at least 1",
                    t.name
                )));
            }
        }
        Ok(())
    }

    /// The partition count `topic` should have.
    pub fn partitions_of(&self, topic: &TopicSpec) -> i32 {
        topic.partitions.unwrap_or(self.defaults.partitions)
    }

    /// The replication factor `topic` should have.
    pub fn replication_of(&self, topic: &TopicSpec) -> i32 {
        topic
            .replication_factor
            .unwrap_or(self.defaults.replication_factor)
    }
}

/// A difference between a declared topic and the cluster that `apply` does not fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drift {
    /// The topic.
    pub topic: String,
    /// What differs (`partitions`, `replication_factor`, or a config name).
    pub what: String,
    /// The declared value.
    pub declared: String,
    /// The value in the cluster.
    pub actual: String,
}

impl std::fmt::Display for Drift {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} is {} in the cluster but {} is declared",
            self.topic, self.what, self.actual, self.declared
        )
    }
}

/// What [`apply`] did and found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyReport {
    /// Topics created (or that would be, in a dry run).
    pub created: Vec<String>,
    /// Topics that exist as declared.
    pub unchanged: Vec<String>,
    /// Differences left alone.
    pub drift: Vec<Drift>,
}

impl ApplyReport {
    /// Whether the cluster now matches the declaration.
    pub fn in_sync(&self) -> bool {
        self.drift.is_empty()
    }
}

/// Create the missing topics of `topology` (none when `dry_run`) and report drift on the others.
pub async fn apply(
    config: &KafkaConfig,
    topology: &Topology,
    dry_run: bool,
    timeout: Duration,
) -> Result<ApplyReport, Error> {
    let admin = Arc::new(client::admin(config)?);
    let existing = describe_topics(&admin, timeout).await?;
    let mut report = ApplyReport::default();

    let missing: Vec<&TopicSpec> = topology
        .topics
        .iter()
        .filter(|t| !existing.contains_key(&t.name))
        .collect();
    if !missing.is_empty() && !dry_run {
        let configs: Vec<Vec<(String, String)>> = missing
            .iter()
            .map(|t| topology.configs_of(t).into_iter().collect())
            .collect();
        let new_topics: Vec<NewTopic<'_>> = missing
            .iter()
            .zip(&configs)
            .map(|(t, cfg)| {
                let mut nt = NewTopic::new(
                    &t.name,
                    topology.partitions_of(t),
                    TopicReplication::Fixed(topology.replication_of(t)),
                );
                for (k, v) in cfg {
                    nt = nt.set(k, v);
                }
                nt
            })
            .collect();
        let opts = AdminOptions::new().operation_timeout(Some(timeout));
        let results = admin
            .create_topics(&new_topics, &opts)
            .await
            .map_err(|source| Error::Operation {
                operation: "create_topics",
                source,
            })?;
        for result in results {
            match result {
                Ok(_) => {}
                // Created concurrently by someone else: compared below like any existing topic.
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((name, code)) => {
                    return Err(Error::Topology {
                        path: name,
                        message: format!("the broker refused to create it: {code}"),
                    });
                }
            }
        }
    }
    report.created = missing.iter().map(|t| t.name.clone()).collect();

    let present: Vec<&TopicSpec> = topology
        .topics
        .iter()
        .filter(|t| existing.contains_key(&t.name))
        .collect();
    if present.is_empty() {
        return Ok(report);
    }
    let names: Vec<&str> = present.iter().map(|t| t.name.as_str()).collect();
    let described = describe_configs(&admin, &names, timeout).await?;

    for (spec, entries) in present.iter().zip(described) {
        let shape = &existing[&spec.name];
        let before = report.drift.len();
        let want_partitions = topology.partitions_of(spec);
        if shape.partitions != want_partitions {
            report.drift.push(Drift {
                topic: spec.name.clone(),
                what: "partitions".into(),
                declared: want_partitions.to_string(),
                actual: shape.partitions.to_string(),
            });
        }
        let want_rf = topology.replication_of(spec);
        if shape.replication_factor != want_rf {
            report.drift.push(Drift {
                topic: spec.name.clone(),
                what: "replication_factor".into(),
                declared: want_rf.to_string(),
                actual: shape.replication_factor.to_string(),
            });
        }
        for (key, want) in topology.configs_of(spec) {
            let actual = entries
                .get(key.as_str())
                .cloned()
                .flatten()
                .unwrap_or_else(|| "<unset>".into());
            if actual != want {
                report.drift.push(Drift {
                    topic: spec.name.clone(),
                    what: key,
                    declared: want,
                    actual,
                });
            }
        }
        if report.drift.len() == before {
            report.unchanged.push(spec.name.clone());
        }
    }
    Ok(report)
}

/// The value of topic config `key` on each of `topics` (`None` where the broker has none), as the
/// broker reports it (defaults included).
pub async fn topic_config(
    config: &KafkaConfig,
    topics: &[&str],
    key: &str,
    timeout: Duration,
) -> Result<Vec<Option<String>>, Error> {
    let admin = client::admin(config)?;
    let described = describe_configs(&admin, topics, timeout).await?;
    Ok(described
        .into_iter()
        .map(|mut entries| entries.remove(key).flatten())
        .collect())
}

/// Every config of each of `topics`, by name (`None` where the broker gives no value).
async fn describe_configs(
    admin: &AdminClient<DefaultClientContext>,
    topics: &[&str],
    timeout: Duration,
) -> Result<Vec<HashMap<String, Option<String>>>, Error> {
    let specifiers: Vec<ResourceSpecifier<'_>> =
        topics.iter().map(|t| ResourceSpecifier::Topic(t)).collect();
    let opts = AdminOptions::new().request_timeout(Some(timeout));
    let described = admin
        .describe_configs(&specifiers, &opts)
        .await
        .map_err(|source| Error::Operation {
            operation: "describe_configs",
            source,
        })?;
    described
        .into_iter()
        .map(|resource| {
            let resource = resource.map_err(|code| Error::Operation {
                operation: "describe_configs",
                source: rdkafka::error::KafkaError::AdminOp(code),
            })?;
            Ok(resource
                .entries
                .iter()
                .map(|e| (e.name.clone(), e.value.clone()))
                .collect())
        })
        .collect()
}

#[derive(Debug)]
struct Shape {
    partitions: i32,
    replication_factor: i32,
}

async fn describe_topics(
    admin: &Arc<AdminClient<DefaultClientContext>>,
    timeout: Duration,
) -> Result<HashMap<String, Shape>, Error> {
    // librdkafka's metadata call blocks its thread.
    let blocking = Arc::clone(admin);
    let metadata =
        tokio::task::spawn_blocking(move || blocking.inner().fetch_metadata(None, timeout))
            .await
            .map_err(|join| Error::Task(join.to_string()))?
            .map_err(|source| Error::Operation {
                operation: "fetch_metadata",
                source,
            })?;
    Ok(metadata
        .topics()
        .iter()
        .filter(|t| t.error().is_none())
        .map(|t| {
            let replication_factor = t
                .partitions()
                .first()
                .map(|p| i32::try_from(p.replicas().len()).unwrap_or(i32::MAX))
                .unwrap_or(0);
            (
                t.name().to_string(),
                Shape {
                    partitions: i32::try_from(t.partitions().len()).unwrap_or(i32::MAX),
                    replication_factor,
                },
            )
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_defaults_and_per_topic_values() -> Result<(), Error> {
        let t = Topology::parse(
            r#"
            [defaults]
            partitions = 3
            replication_factor = 1
            [[topic]]
            name = "a.events"
            retention_ms = -1
            [[topic]]
            name = "a.changelog"
            partitions = 6
            cleanup_policy = "compact"
            config = { "min.compaction.lag.ms" = "0" }
            "#,
            "t.toml",
        )?;
        assert_eq!(t.partitions_of(&t.topics[0]), 3);
        assert_eq!(t.partitions_of(&t.topics[1]), 6);
        assert_eq!(
            t.topics[0]
                .configs()
                .get("retention.ms")
                .map(String::as_str),
            Some("-1")
        );
        assert_eq!(
            t.topics[0]
                .configs()
                .get("cleanup.policy")
                .map(String::as_str),
            Some("delete")
        );
        assert_eq!(
            t.topics[1]
                .configs()
                .get("cleanup.policy")
                .map(String::as_str),
            Some("compact")
        );
        assert_eq!(
            t.topics[1]
                .configs()
                .get("min.compaction.lag.ms")
                .map(String::as_str),
            Some("0")
        );
        Ok(())
    }

    #[test]
    fn min_insync_replicas_is_one_below_the_replication_factor() -> Result<(), Error> {
        let t = Topology::parse(
            "[defaults]\npartitions = 1\nreplication_factor = 3\n\
             [[topic]]\nname = \"a\"\n\
             [[topic]]\nname = \"b\"\nreplication_factor = 1\n\
             [[topic]]\nname = \"c\"\nconfig = { \"min.insync.replicas\" = \"3\" }\n",
            "test",
        )?;
        let isr: Vec<String> = t
            .topics
            .iter()
            .map(|s| t.configs_of(s)["min.insync.replicas"].clone())
            .collect();
        assert_eq!(isr, vec!["2", "1", "3"]);
        Ok(())
    }

    #[test]
    fn rejects_bad_names_duplicates_unknown_keys() {
        let err = |text: &str| {
            Topology::parse(text, "t.toml")
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        assert!(err("[[topic]]\nname = \"a b\"\n").contains("not a legal Kafka topic name"));
        assert!(
            err("[[topic]]\nname = \"a\"\n[[topic]]\nname = \"a\"\n").contains("declared twice")
        );
        assert!(err("[[topic]]\nname = \"a\"\npartition = 3\n").contains("unknown field"));
        assert!(err("[[topic]]\nname = \"a\"\npartitions = 0\n").contains("at least 1"));
    }
}
