//! `projector-redis` as a library (the binary is `main.rs`).
//!
//! # Layout
//! - [`config`]: the service's config file (`projector-redis.toml` beside Cargo.toml is the sample).
//! - [`error`]: the service's errors, classified.
//! - [`store`]: the Redis connection, the key layout and the script that applies an event.
//! - [`api`]: the read API (documents by id with read-your-writes, index pages, OpenAPI).
//! - [`projector`]: the service's job.
//! - [`rebuild`]: a projection rebuilt from offset 0 beside the live generation, then switched to.
#![forbid(unsafe_code)]

pub mod api;
pub mod config;
pub mod error;
pub mod projector;
pub mod rebuild;
pub mod store;
