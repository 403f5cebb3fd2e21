//! Confluent's wire format: magic byte 0, the schema id as 4 big-endian bytes, then the Avro binary
//! datum. Encoding looks up the latest schema of the record's subject (TopicRecordNameStrategy) in the
//! registry, decoding looks the writer's schema up by id; both cache what they fetched (through
//! schema_registry_converter), so the registry is asked once per schema, not once per record.

use std::sync::Arc;

use causeway_core::{Classify, ErrorClass};
use schema_registry_converter::async_impl::avro::{AvroDecoder, AvroEncoder};
use schema_registry_converter::async_impl::schema_registry::SrSettings;
use schema_registry_converter::error::SRCError;
use schema_registry_converter::schema_registry_common::SubjectNameStrategy;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::upcast::Upcasters;

/// Why a record could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The registry could not be reached or answered an error that may pass. Transient.
    #[error("schema registry: {0}")]
    Registry(String),
    /// The bytes are not a record this codec can read (not Confluent's format, an unknown schema id,
    /// data that does not fit its schema). Poison: it will never decode.
    #[error("undecodable record: {0}")]
    Undecodable(String),
    /// The value does not fit the subject's latest schema. A bug of the producer: fatal to it.
    #[error("cannot encode for {subject}: {why}")]
    Unencodable {
        /// The subject.
        subject: String,
        /// Why.
        why: String,
    },
}

impl Classify for WireError {
    fn class(&self) -> ErrorClass {
        match self {
            WireError::Registry(_) => ErrorClass::Transient,
            WireError::Undecodable(_) => ErrorClass::Poison,
            WireError::Unencodable { .. } => ErrorClass::Fatal,
        }
    }
}

/// A decoded record: which record type it was, and its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded<T> {
    /// The writer schema's full name (e.g. `causeway.orders.order.PlaceOrder`).
    pub full_name: String,
    /// The value.
    pub value: T,
}

/// Encoder and decoder for one registry. Cheap to clone; clones share the caches.
#[derive(Clone)]
pub struct Codec {
    encoder: Arc<AvroEncoder>,
    decoder: Arc<AvroDecoder>,
}

impl std::fmt::Debug for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Codec").finish_non_exhaustive()
    }
}

/// Whether the registry failed (so trying again may help), rather than the record or the value:
/// the converter marks network failures and 502/503 answers retriable; other 5xx answers are the
/// registry's trouble too. A 4xx (an unknown schema id, say) is the record's.
fn registry_error(e: &SRCError) -> bool {
    e.retriable || e.error.contains("failed with status 5")
}

fn encode_error(e: &SRCError, topic: &str, full_name: &str) -> WireError {
    if registry_error(e) {
        WireError::Registry(e.to_string())
    } else {
        WireError::Unencodable {
            subject: crate::subject::topic_record_name(topic, full_name),
            why: e.to_string(),
        }
    }
}

impl Codec {
    /// A codec for the registry at `url`.
    pub fn new(url: &str) -> Self {
        Self {
            encoder: Arc::new(AvroEncoder::new(SrSettings::new(url.to_string()))),
            decoder: Arc::new(AvroDecoder::new(SrSettings::new(url.to_string()))),
        }
    }

    /// Encode `value` as record `full_name` on `topic`, with the latest schema of its subject.
    pub async fn encode<T: Serialize>(
        &self,
        topic: &str,
        full_name: &str,
        value: &T,
    ) -> Result<Vec<u8>, WireError> {
        let strategy =
            SubjectNameStrategy::TopicRecordNameStrategy(topic.to_string(), full_name.to_string());
        self.encoder
            .encode_struct(value, &strategy)
            .await
            .map_err(|e| encode_error(&e, topic, full_name))
    }

    /// Encode an Avro value (e.g. from [`crate::json::to_avro`]) as record `full_name` on `topic`.
    pub async fn encode_value(
        &self,
        topic: &str,
        full_name: &str,
        value: apache_avro::types::Value,
    ) -> Result<Vec<u8>, WireError> {
        let strategy =
            SubjectNameStrategy::TopicRecordNameStrategy(topic.to_string(), full_name.to_string());
        self.encoder
            .encode_value(value, &strategy)
            .await
            .map_err(|e| encode_error(&e, topic, full_name))
    }

    /// Decode a record in Confluent's wire format into `T`.
    pub async fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<Decoded<T>, WireError> {
        self.decode_upcast(bytes, &Upcasters::default()).await
    }

    /// Decode a record, passing it through `upcasters` first: a record written with a replaced contract
    /// arrives as its current successor.
    pub async fn decode_upcast<T: DeserializeOwned>(
        &self,
        bytes: &[u8],
        upcasters: &Upcasters,
    ) -> Result<Decoded<T>, WireError> {
        let Decoded { full_name, value } = self.decode_value(bytes, upcasters).await?;
        let value = apache_avro::from_value::<T>(&value).map_err(|e| {
            WireError::Undecodable(format!("{full_name} does not fit the expected type: {e}"))
        })?;
        Ok(Decoded { full_name, value })
    }

    /// Decode a record to an Avro value, through `upcasters`, for a reader that picks the Rust type by
    /// the record's full name (one topic carries several record types).
    pub async fn decode_value(
        &self,
        bytes: &[u8],
        upcasters: &Upcasters,
    ) -> Result<Decoded<apache_avro::types::Value>, WireError> {
        let decoded = self.decoder.decode(Some(bytes)).await.map_err(|e| {
            if registry_error(&e) {
                WireError::Registry(e.to_string())
            } else {
                WireError::Undecodable(e.to_string())
            }
        })?;
        let full_name = decoded.name.map(|n| n.fullname(None)).ok_or_else(|| {
            WireError::Undecodable("the writer schema is not a named record".into())
        })?;
        let (full_name, value) = upcasters
            .apply(&full_name, decoded.value)
            .map_err(WireError::Undecodable)?;
        Ok(Decoded { full_name, value })
    }
}
