//! What every projector shares: its `[projector]` config, and the first half of its handler: an event
//! record decoded through the registry and projected by each hosted projection of its aggregate, with
//! the error policy of the consumer runner (a registry away is transient; an undecodable record, a
//! projection's refusal or panic, a record whose key is not its aggregate id are poison).

use std::collections::HashMap;

use apache_avro::types::Value;
use causeway_contracts::projecting::{Projected, Projecting, metadata_of};
use causeway_contracts::records::EventMetadata;
use causeway_contracts::upcast::Upcasters;
use causeway_contracts::wire::{Codec, WireError};
use rdkafka::Message;
use rdkafka::message::BorrowedMessage;
use serde::{Deserialize, Serialize};

use crate::runner::Failure;

/// The `[projector]` section of a projector: which projections, from which topics, into what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProjectorConfig {
    /// The domain whose projections are hosted, by the name the build registers it under.
    pub domain: String,
    /// The first segment of the event topics (`<context>.<aggregate>.events`); empty: the domain's name.
    pub context: String,
    /// The projections to host (empty: all of the domain's).
    pub projections: Vec<String>,
    /// The consumer group; dead letters go to `<group_id>.dlq`.
    pub group_id: String,
    /// The schema registry the events were written with.
    pub registry_url: String,
    /// First segment of every key or table name the projector writes.
    pub prefix: String,
    /// The generation written (a rebuild writes a new one beside the live one).
    pub generation: u32,
}

impl Default for ProjectorConfig {
    /// No group: a service's own defaults name its group ([`ProjectorConfig::with_group`]).
    fn default() -> Self {
        Self::with_group("")
    }
}

impl ProjectorConfig {
    /// The defaults of a projector whose group is `group_id`.
    pub fn with_group(group_id: &str) -> Self {
        Self {
            domain: "orders".into(),
            context: String::new(),
            projections: Vec::new(),
            group_id: group_id.into(),
            registry_url: "http://127.0.0.1:18081".into(),
            prefix: "causeway".into(),
            generation: 1,
        }
    }

    /// The projections of `domain` this config hosts (`projections`, or all of them).
    pub fn hosted(&self, domain: &causeway_contracts::domain::Domain) -> Vec<Box<dyn Projecting>> {
        domain
            .projections
            .iter()
            .filter(|p| self.projections.is_empty() || self.projections.iter().any(|n| n == p.name))
            .map(|p| p.host())
            .collect()
    }

    /// The context in force.
    pub fn context(&self) -> &str {
        if self.context.is_empty() {
            &self.domain
        } else {
            &self.context
        }
    }

    /// Start-up checks of the section at `section`, for a domain with these projection names.
    pub fn check(&self, section: &str, known: Option<&[&str]>) -> Vec<causeway_runtime::Invalid> {
        use causeway_runtime::Invalid;
        let mut out = Vec::new();
        if self.group_id.trim().is_empty() {
            out.push(Invalid::new(
                format!("{section}.group_id"),
                "must not be empty",
            ));
        }
        let word = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        };
        if !word(&self.prefix) {
            out.push(Invalid::new(
                format!("{section}.prefix"),
                "must be a non-empty word of letters, digits, '_' and '-'",
            ));
        }
        if self.generation == 0 {
            out.push(Invalid::new(
                format!("{section}.generation"),
                "must be at least 1",
            ));
        }
        match known {
            None => out.push(Invalid::new(
                format!("{section}.domain"),
                format!("unknown domain {:?}", self.domain),
            )),
            Some([]) => out.push(Invalid::new(
                format!("{section}.domain"),
                format!("domain {:?} registers no projection", self.domain),
            )),
            Some(names) => {
                for name in &self.projections {
                    if !names.contains(&name.as_str()) {
                        out.push(Invalid::new(
                            format!("{section}.projections"),
                            format!(
                                "unknown projection {name:?}; domain {:?} has {names:?}",
                                self.domain
                            ),
                        ));
                    }
                }
            }
        }
        out
    }
}

/// An event record, decoded and projected.
#[derive(Debug)]
pub struct Decided {
    /// Its aggregate type.
    pub aggregate: &'static str,
    /// `<topic>:<partition>`.
    pub position: String,
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// The event record's full name.
    pub full_name: String,
    /// Its value.
    pub value: Value,
    /// Its metadata.
    pub metadata: EventMetadata,
    /// Per hosted projection reading its aggregate: the projection's index and what it changes.
    pub writes: Vec<(usize, Projected)>,
}

/// The hosted projections and how to read their events.
pub struct EventReader {
    /// The projections.
    pub hosted: Vec<Box<dyn Projecting>>,
    /// Per event topic, its aggregate type and the indices of the projections that read it (none:
    /// read for itself).
    pub by_topic: HashMap<String, (&'static str, Vec<usize>)>,
    codec: Codec,
    upcasters: Upcasters,
    runtime: tokio::runtime::Handle,
}

impl std::fmt::Debug for EventReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventReader")
            .field("by_topic", &self.by_topic)
            .finish_non_exhaustive()
    }
}

impl EventReader {
    /// A reader of the events of `aggregates` under `context` for `hosted` projections (which read
    /// some of those aggregates), decoding through `registry_url` on `runtime`.
    pub fn new(
        hosted: Vec<Box<dyn Projecting>>,
        context: &str,
        aggregates: &[&'static str],
        registry_url: &str,
        runtime: tokio::runtime::Handle,
    ) -> Self {
        let by_topic = aggregates
            .iter()
            .map(|a| {
                let indices = hosted
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| p.aggregate_type() == *a)
                    .map(|(i, _)| i)
                    .collect();
                (format!("{context}.{a}.events"), (*a, indices))
            })
            .collect();
        Self {
            hosted,
            by_topic,
            codec: Codec::new(registry_url),
            upcasters: Upcasters::default(),
            runtime,
        }
    }

    /// The topics it reads, sorted.
    pub fn topics(&self) -> Vec<String> {
        let mut t: Vec<String> = self.by_topic.keys().cloned().collect();
        t.sort();
        t
    }

    /// `record` decoded and projected; `Ok(None)` for a record of no topic read here, or a tombstone.
    pub fn read(&self, record: &BorrowedMessage<'_>) -> Result<Option<Decided>, Failure> {
        let Some((aggregate, indices)) = self.by_topic.get(record.topic()) else {
            return Ok(None);
        };
        // A tombstone says nothing about a document.
        let Some(bytes) = record.payload() else {
            return Ok(None);
        };
        let decoded = self
            .runtime
            .block_on(self.codec.decode_value(bytes, &self.upcasters))
            .map_err(|e| match e {
                WireError::Registry(why) => Failure::Transient(format!("schema registry: {why}")),
                other => Failure::Poison(other.to_string()),
            })?;
        let metadata = metadata_of(&decoded.value).ok_or_else(|| {
            Failure::Poison(format!(
                "{}: no readable `metadata` field",
                decoded.full_name
            ))
        })?;
        // The record key is the aggregate id (the processor writes it so): another key means the
        // record is not where the aggregate's other events are, and their order is not kept.
        if record.key() != Some(metadata.aggregate_id.as_bytes()) {
            return Err(Failure::Poison(format!(
                "the record key is not the event's aggregate id {:?}",
                metadata.aggregate_id
            )));
        }
        let mut writes = Vec::with_capacity(indices.len());
        for &i in indices.iter() {
            let projected = self.hosted[i]
                .project(&decoded.full_name, &decoded.value)
                .map_err(Failure::Poison)?;
            writes.push((i, projected));
        }
        Ok(Some(Decided {
            aggregate,
            position: format!("{}:{}", record.topic(), record.partition()),
            partition: record.partition(),
            offset: record.offset(),
            full_name: decoded.full_name,
            value: decoded.value,
            metadata,
            writes,
        }))
    }
}

/// How fresh the read models are: from each event's time to its change applied, per projection
/// (`causeway_projection_freshness_seconds`).
#[derive(Debug, Clone)]
pub struct Freshness {
    /// Per hosted projection (by index), its histogram.
    seconds: Vec<prometheus::Histogram>,
}

impl Freshness {
    /// Registered in `registry`, for the projections `hosted` (by their index).
    pub fn new(
        registry: &prometheus::Registry,
        hosted: &[Box<dyn Projecting>],
    ) -> Result<Self, prometheus::Error> {
        let seconds = prometheus::HistogramVec::new(
            prometheus::HistogramOpts::new(
                causeway_observe::metrics::names::PROJECTION_FRESHNESS_SECONDS,
                "From an event's time (occurred_at) to its change applied to the read model, by projection, in seconds.",
            )
            .buckets(prometheus::exponential_buckets(0.005, 2.0, 16)?),
            &["projection"],
        )?;
        registry.register(Box::new(seconds.clone()))?;
        Ok(Self {
            seconds: hosted
                .iter()
                .map(|p| seconds.with_label_values(&[p.name()]))
                .collect(),
        })
    }

    /// `items` were just applied.
    pub fn applied<'a>(&self, items: impl IntoIterator<Item = &'a Decided>) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        for item in items {
            for (i, projected) in &item.writes {
                if let Some(histogram) = self.seconds.get(*i) {
                    histogram.observe((now - projected.occurred_at_ms).max(0) as f64 / 1000.0);
                }
            }
        }
    }
}

/// Run `handler` under `runner` on a thread of its own until shutdown, with the service's metrics, its
/// readiness following the runner's.
pub async fn serve<H>(
    runner: crate::runner::Runner,
    handler: H,
    ctx: &causeway_runtime::ServiceContext,
) -> Result<(), crate::Error>
where
    H: crate::runner::Handler + Send + 'static,
{
    let shutdown = ctx.shutdown.clone();
    let metrics = ctx.metrics.clone();
    let probes = ctx.clone();
    tokio::task::spawn_blocking(move || {
        runner.run(handler, shutdown, metrics.registry(), move |status| {
            probes.set_ready(status == crate::runner::Status::Ready);
        })
    })
    .await
    .map_err(|e| crate::Error::Task(format!("the consumer task failed: {e}")))?
}
