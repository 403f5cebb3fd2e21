//! Avro contracts as Rust types, the Confluent wire format and subject naming. The `.avsc` files under
//! `avro/` are the source of truth; the registry issue fills this crate with the types and the codec.
//!
//! # Layout
//! - [`subject`]: schema registry subject names (TopicRecordNameStrategy).
#![forbid(unsafe_code)]

pub mod subject;
