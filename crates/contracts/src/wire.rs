//! Confluent's wire format: magic byte 0, the schema id as 4 big-endian bytes, then the Avro binary
//! datum. Encoding looks up the latest schema of the record's subject (TopicRecordNameStrategy) in the
//! registry, decoding looks the writer's schema up by id; both cache what they fetched (through
//! schema_registry_converter), so the registry is asked once per schema, not once per record.
//!
//! Registry failures are classified by HTTP status and Confluent error code, never cached, and every
//! call is bounded by [`crate::registry::CALL_TIMEOUT`]: no answer, a refused connection, 5xx, 401,
//! 403, 408 and 429 are transient (the registry, or its credentials, will come back); an unknown
//! schema id (40403) is the record's fault, poison, after a few quick retries (a schema registered a
//! moment ago through another registry instance may not have reached this one yet).

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
    /// Schema ids the registry said it does not know, and when: a record with one is poison at once
    /// for [`UNKNOWN_SCHEMA_MEMORY`], so that a run of them does not cost the retries each.
    unknown: Arc<std::sync::Mutex<std::collections::HashMap<u32, std::time::Instant>>>,
    settings: SrSettings,
    /// Prepared writers by subject.
    writers: Arc<std::sync::Mutex<std::collections::HashMap<String, Arc<Writer>>>>,
}

/// A record type's schema on a topic as the registry has it (the latest version of its subject when
/// first asked, as [`Codec::encode`] uses), resolved once, so that a value is written straight to the
/// wire format: no [`apache_avro::types::Value`] tree, no validation pass, no registry round trip.
pub struct Writer {
    id: u32,
    subject: String,
    /// Kept for the life of the process (writers are cached by subject, one per record type and
    /// topic used), so that the names it resolves can borrow from it.
    schema: &'static apache_avro::Schema,
    resolved: apache_avro::schema::ResolvedSchema<'static>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("id", &self.id)
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

impl Writer {
    /// The writer of `schema` (Avro JSON) registered under `id` for `subject`.
    pub fn new(id: u32, subject: &str, schema: &str) -> Result<Self, WireError> {
        let unencodable = |why: String| WireError::Unencodable {
            subject: subject.to_string(),
            why,
        };
        let parsed =
            apache_avro::Schema::parse_str(schema).map_err(|e| unencodable(e.to_string()))?;
        // Resolved once before it is kept, so that a schema that does not resolve is not leaked.
        apache_avro::schema::ResolvedSchema::try_from(&parsed)
            .map_err(|e| unencodable(e.to_string()))?;
        let schema: &'static apache_avro::Schema = Box::leak(Box::new(parsed));
        let resolved = apache_avro::schema::ResolvedSchema::try_from(schema)
            .map_err(|e| unencodable(e.to_string()))?;
        Ok(Self {
            id,
            subject: subject.to_string(),
            schema,
            resolved,
        })
    }

    /// The schema's registry id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// A record this writer wrote (the wire format), read back as a value of its schema.
    pub fn read(&self, bytes: &[u8]) -> Result<apache_avro::types::Value, WireError> {
        let Some(mut datum) = bytes.get(5..) else {
            return Err(WireError::Undecodable(
                "shorter than the wire format's header".into(),
            ));
        };
        #[allow(deprecated)]
        apache_avro::from_avro_datum(self.schema, &mut datum, None)
            .map_err(|e| WireError::Undecodable(e.to_string()))
    }

    /// `value` (a type shaped like the schema) in the wire format, appended to `out`. On failure `out`
    /// is as it was.
    pub fn write<T: Serialize>(&self, value: &T, out: &mut Vec<u8>) -> Result<(), WireError> {
        let start = out.len();
        self.header(out);
        self.write_part(self.schema, value, out).inspect_err(|_| {
            out.truncate(start);
        })
    }

    /// The wire format's header (magic byte and schema id), appended to `out`: a record written part by
    /// part ([`Writer::write_part`]) starts with it.
    pub fn header(&self, out: &mut Vec<u8>) {
        out.push(0);
        out.extend_from_slice(&self.id.to_be_bytes());
    }

    /// The fields of the record type this writer writes (`None`: not a record).
    pub fn fields(&self) -> Option<&'static [apache_avro::schema::RecordField]> {
        match self.schema {
            apache_avro::Schema::Record(record) => Some(&record.fields),
            _ => None,
        }
    }

    /// `value` written with `schema`, a part of this writer's schema (a field's, an array's items; named
    /// types resolved by the whole schema's names), without a header, appended to `out`. On failure
    /// `out` is as it was.
    pub fn write_part<T: Serialize>(
        &self,
        schema: &apache_avro::Schema,
        value: &T,
        out: &mut Vec<u8>,
    ) -> Result<(), WireError> {
        let start = out.len();
        apache_avro::write_avro_datum_ref(schema, self.resolved.get_names(), value, out)
            .map(|_| ())
            .map_err(|e| {
                out.truncate(start);
                WireError::Unencodable {
                    subject: self.subject.clone(),
                    why: e.to_string(),
                }
            })
    }
}

/// How long an unknown schema id is remembered as unknown.
const UNKNOWN_SCHEMA_MEMORY: std::time::Duration = std::time::Duration::from_secs(30);

/// The schema id of a record in Confluent's wire format.
fn schema_id(bytes: &[u8]) -> Option<u32> {
    match bytes {
        [0, a, b, c, d, ..] => Some(u32::from_be_bytes([*a, *b, *c, *d])),
        _ => None,
    }
}

impl std::fmt::Debug for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Codec").finish_non_exhaustive()
    }
}

/// What a registry failure means for the record at hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// The registry (or the way to it, or our credentials) failed: try again later.
    Transient,
    /// The schema id is not known to the registry (Confluent error code 40403).
    UnknownSchema,
    /// Anything else: the record or the value is at fault.
    Permanent,
}

/// The HTTP status of a converter error ("... failed with status 404 Not Found").
fn status_of(e: &SRCError) -> Option<u16> {
    let (_, rest) = e.error.split_once("failed with status ")?;
    rest.get(..3)?.parse().ok()
}

/// The Confluent error code of a converter error (its cause reads "error_code: 40403, message: ...").
fn error_code_of(e: &SRCError) -> Option<u32> {
    let cause = e.cause.as_deref()?;
    let (_, rest) = cause.split_once("error_code: ")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The one place a registry failure is classified.
fn failure(e: &SRCError) -> Failure {
    // The converter marks transport failures (refused, reset, timed out) and 502/503 retriable.
    if e.retriable {
        return Failure::Transient;
    }
    match (status_of(e), error_code_of(e)) {
        (Some(status), _) if status >= 500 || matches!(status, 401 | 403 | 408 | 429) => {
            Failure::Transient
        }
        (_, Some(40403)) => Failure::UnknownSchema,
        // A 404 that is not the registry's own (no Confluent 404xx code: a proxy or an ingress in
        // front of it) says nothing about the record.
        (Some(404), code) if !code.is_some_and(|c| (40400..40500).contains(&c)) => {
            Failure::Transient
        }
        _ => Failure::Permanent,
    }
}

/// How often, and how far apart, an unknown schema id is asked for again before the record is poison.
const UNKNOWN_SCHEMA_RETRIES: u32 = 3;
const UNKNOWN_SCHEMA_BACKOFF: std::time::Duration = std::time::Duration::from_millis(100);

impl Codec {
    /// A codec for the registry at `url`; each call is bounded by [`crate::registry::CALL_TIMEOUT`].
    pub fn new(url: &str) -> Self {
        let settings = || {
            SrSettings::new_builder(url.to_string())
                .set_timeout(crate::registry::CALL_TIMEOUT)
                .build()
                .unwrap_or_else(|_| SrSettings::new(url.to_string()))
        };
        Self {
            encoder: Arc::new(AvroEncoder::new(settings())),
            decoder: Arc::new(AvroDecoder::new(settings())),
            unknown: Arc::default(),
            settings: settings(),
            writers: Arc::default(),
        }
    }

    /// The prepared [`Writer`] of record `full_name` on `topic` (its subject's latest schema), asked of
    /// the registry once per process.
    pub async fn writer(&self, topic: &str, full_name: &str) -> Result<Arc<Writer>, WireError> {
        let subject = crate::subject::topic_record_name(topic, full_name);
        if let Some(w) = self
            .writers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&subject)
        {
            return Ok(Arc::clone(w));
        }
        let strategy =
            SubjectNameStrategy::TopicRecordNameStrategy(topic.to_string(), full_name.to_string());
        let registered =
            schema_registry_converter::async_impl::schema_registry::get_schema_by_subject(
                &self.settings,
                &strategy,
            )
            .await
            .map_err(|e| self.encode_error(&e, topic, full_name))?;
        let writer = Arc::new(Writer::new(registered.id, &subject, &registered.schema)?);
        self.writers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(subject, Arc::clone(&writer));
        Ok(writer)
    }

    fn encode_error(&self, e: &SRCError, topic: &str, full_name: &str) -> WireError {
        // The converter caches a non-retriable failure for good: a registry answering 401 or 500 for
        // a moment would fail this subject until a restart.
        self.encoder.remove_errors_from_cache();
        match failure(e) {
            Failure::Transient => WireError::Registry(e.to_string()),
            Failure::UnknownSchema | Failure::Permanent => WireError::Unencodable {
                subject: crate::subject::topic_record_name(topic, full_name),
                why: e.to_string(),
            },
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
            .map_err(|e| self.encode_error(&e, topic, full_name))
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
            .map_err(|e| self.encode_error(&e, topic, full_name))
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
        let id = schema_id(bytes);
        if let Some(id) = id {
            let known_unknown = self
                .unknown
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&id)
                .is_some_and(|at| at.elapsed() < UNKNOWN_SCHEMA_MEMORY);
            if known_unknown {
                return Err(WireError::Undecodable(format!(
                    "schema id {id} is not known to the registry"
                )));
            }
        }
        let mut attempts = 0;
        let decoded = loop {
            match self.decoder.decode(Some(bytes)).await {
                Ok(d) => break d,
                Err(e) => {
                    self.decoder.remove_errors_from_cache();
                    match failure(&e) {
                        Failure::Transient => return Err(WireError::Registry(e.to_string())),
                        Failure::UnknownSchema if attempts < UNKNOWN_SCHEMA_RETRIES => {
                            attempts += 1;
                            tokio::time::sleep(UNKNOWN_SCHEMA_BACKOFF * attempts).await;
                        }
                        Failure::UnknownSchema => {
                            if let Some(id) = id {
                                let mut unknown =
                                    self.unknown.lock().unwrap_or_else(|p| p.into_inner());
                                if unknown.len() > 10_000 {
                                    unknown.clear();
                                }
                                unknown.insert(id, std::time::Instant::now());
                            }
                            return Err(WireError::Undecodable(e.to_string()));
                        }
                        Failure::Permanent => return Err(WireError::Undecodable(e.to_string())),
                    }
                }
            }
        };
        let full_name = decoded.name.map(|n| n.fullname(None)).ok_or_else(|| {
            WireError::Undecodable("the writer schema is not a named record".into())
        })?;
        let (full_name, value) = upcasters
            .apply(&full_name, decoded.value)
            .map_err(WireError::Undecodable)?;
        Ok(Decoded { full_name, value })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answered(status: &str, code: u32) -> SRCError {
        SRCError::non_retryable_with_cause(
            std::io::Error::other(format!("error_code: {code}, message: m")),
            &format!("HTTP request to schema registry failed with status {status}"),
        )
    }

    #[test]
    fn registry_failures_are_classified_by_status_and_code() {
        assert_eq!(
            failure(&answered("500 Internal Server Error", 50001)),
            Failure::Transient
        );
        assert_eq!(
            failure(&answered("401 Unauthorized", 40101)),
            Failure::Transient
        );
        assert_eq!(
            failure(&answered("403 Forbidden", 40301)),
            Failure::Transient
        );
        assert_eq!(
            failure(&answered("429 Too Many Requests", 42901)),
            Failure::Transient
        );
        assert_eq!(
            failure(&answered("404 Not Found", 40403)),
            Failure::UnknownSchema
        );
        assert_eq!(
            failure(&answered("404 Not Found", 40401)),
            Failure::Permanent
        );
        assert_eq!(
            failure(&answered("422 Unprocessable Entity", 42201)),
            Failure::Permanent
        );
        let refused = SRCError::retryable_with_cause(
            std::io::Error::other("connection refused"),
            "http call to schema registry failed",
        );
        assert_eq!(failure(&refused), Failure::Transient);
    }
}
