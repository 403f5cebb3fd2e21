//! Kafka plumbing shared by every service and the CLI: client configuration with the suite's safe
//! defaults and a pass-through for any librdkafka property, producer/consumer/admin construction, topic
//! provisioning from one declarative topology, trace context in record headers, and error classes.
//!
//! # Layout
//! - [`config`]: [`KafkaConfig`], the `[kafka]` section of every service and the defaults it applies.
//! - [`client`]: producers (idempotent, `acks=all`, murmur2 partitioning), consumers (`read_committed`,
//!   manual offset store), admin clients, and the broker reachability check.
//! - [`topology`]: topics declared in TOML and applied idempotently, with drift reported, not "fixed".
//! - [`headers`]: trace context and other headers on records.
//! - [`partitioner`]: where the Java client (and the suite) puts a key: murmur2.
//! - [`group`]: consumer-group membership that always closes (rebalances without blocking requests).
//! - [`processor`]: the transactional processor: commands in, events, states, results and offsets out
//!   in one transaction per batch.
//! - [`dead_letter`]: dead letters and their headers, for every consumer.
//! - [`lag`]: how far a consumer group is behind, from outside it (records and seconds).
//! - [`projector`]: what every projector shares: its config, events decoded and projected.
//! - [`rebuild`]: a projection rebuilt from offset 0 beside its live generation, then switched to
//!   (every store's side of it: [`rebuild::Generations`]).
//! - [`parking`]: per-key order for the runner: later records of a dead-lettered record's key wait
//!   behind it (`<group>.parked`).
//! - [`runner`]: the consumer runner of every non-transactional consumer (projectors): batches,
//!   offsets stored after the writes, one retry / dead-letter policy.
//! - [`error`]: [`Error`], classified once into Transient / Poison / Fatal.
#![forbid(unsafe_code)]

pub mod client;
pub mod config;
pub mod dead_letter;
pub mod error;
pub mod group;
pub mod headers;
pub mod lag;
pub mod parking;
pub mod partitioner;
pub mod processor;
pub mod projector;
pub mod rebuild;
pub mod runner;
pub mod topology;

pub use config::KafkaConfig;
pub use error::Error;
pub use topology::{ApplyReport, Drift, TopicSpec, Topology};
