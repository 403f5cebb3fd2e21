//! `projector-clickhouse` as a library (the binary is `main.rs`).
//!
//! # Layout
//! - [`config`]: the service's config file (`projector-clickhouse.toml` beside Cargo.toml is the sample).
//! - [`error`]: the service's errors, classified.
//! - [`sink`]: the ClickHouse client (TCP_NODELAY, settings that work from 18.16 to current servers).
//! - [`tables`]: the tables and views, created and migrated at start; JSON rows read back.
//! - [`generations`]: which generation of each projection is live, and the pause of a rebuild.
//! - [`projector`]: the service's job.
//! - [`rebuild`]: ClickHouse's side of a rebuild (`causeway projections rebuild --store clickhouse`).
#![forbid(unsafe_code)]

pub mod config;
pub mod error;
pub mod generations;
pub mod projector;
pub mod rebuild;
pub mod sink;
pub mod tables;
