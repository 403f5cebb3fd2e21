//! Avro contracts as Rust types, the Confluent wire format and subject naming. The `.avsc` files under
//! `avro/` are the source of truth; the registry issue fills this crate with the types and the codec.
//!
//! # Layout
//! - [`catalog`]: the contracts under `avro/`: topic, subject and references of each.
//! - [`lock`]: the published versions of every contract (`avro/contracts.lock.json`) and the check of
//!   the current files against them.
//! - [`records`]: the suite's own records (event metadata, command results, changelog state) as Rust
//!   types.
//! - [`aggregate`]: [`aggregate::AggregateContract`], how an aggregate's Rust types meet their contracts.
//! - [`hosting`]: an aggregate type hosted by a processor: what a command does to the held states, all
//!   or nothing, with size limits and caught panics.
//! - [`saga`]: a saga type hosted by the orchestrator ([`saga::SagaContract`], [`saga::SagaHost`]) and
//!   the routers that bring its inputs to its inbox keyed by saga id.
//! - [`projecting`]: a projection hosted by a projector: an event record in, the change to its
//!   document out, with poison (unreadable events, refusals, panics) said apart.
//! - [`domain`]: [`domain::Domain`], the one value a domain crate exports for the services to host.
//! - [`subject`]: schema registry subject names (TopicRecordNameStrategy).
//! - [`json`]: JSON as a person writes it to an Avro value of a schema, with errors by field.
//! - [`wire`]: Confluent's wire format through the registry, with caching.
//! - [`upcast`]: upcasters from replaced contracts to their successors, applied on decode.
//! - [`registry`]: a registry client that registers a catalog of contracts, idempotently.
//! - [`schema`]: Avro schema text: parsing with references, canonical text.
//! - [`compat`]: compatibility levels and the reader/writer checker the registry and `causeway schema
//!   check` share.
#![forbid(unsafe_code)]

pub mod aggregate;
pub mod catalog;
pub mod compat;
pub mod domain;
pub mod hosting;
pub mod json;
pub mod lock;
pub mod projecting;
pub mod records;
pub mod registry;
pub mod saga;
pub mod schema;
pub mod subject;
pub mod upcast;
pub mod wire;
