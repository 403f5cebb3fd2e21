//! `schema-registry` as a library (the binary is `main.rs`): a Confluent-compatible schema registry whose
//! state lives in the compacted `_schemas` topic, in Confluent's own record format.
//!
//! # Layout
//! - [`model`]: the `_schemas` records and the API's enums.
//! - [`store`]: the state folded from the log (pure, no I/O).
//! - [`error`]: the API's errors (Confluent codes) and the service's.
//! - [`log`]: the `_schemas` topic: the reader that folds it, the single transactional writer.
//! - [`api`]: the REST API.
//! - [`config`]: the service's config file (`schema-registry.toml` beside Cargo.toml is the sample).
//! - [`registry`]: the service's job: load the log, serve the API.
#![forbid(unsafe_code)]

pub mod api;
pub mod config;
pub mod error;
pub mod log;
pub mod model;
pub mod registry;
pub mod store;
