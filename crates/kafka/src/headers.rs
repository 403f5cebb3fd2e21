//! Record headers: the W3C trace context that follows a command through every hop, and lookups by name.

use causeway_observe::propagation::{self, Context};
use rdkafka::message::{Header, Headers, OwnedHeaders};

/// On a command result: where its command record is (topic, partition, offset), for the event history.
pub mod command {
    /// The command's topic.
    pub const TOPIC: &str = "causeway.command.topic";
    /// Its partition.
    pub const PARTITION: &str = "causeway.command.partition";
    /// Its offset.
    pub const OFFSET: &str = "causeway.command.offset";
}

/// The value of the last header called `name` (Kafka allows repeats; the last one wins, as in the Java
/// client's `lastHeader`). A header present with a null value gives `None`, like an absent one.
pub fn last_value<'a, H: Headers>(headers: &'a H, name: &str) -> Option<&'a [u8]> {
    headers
        .iter()
        .filter(|h| h.key == name)
        .last()
        .and_then(|h| h.value)
}

/// `headers` plus `traceparent`/`tracestate` for `cx` (nothing added when `cx` carries no span).
pub fn with_trace_context(mut headers: OwnedHeaders, cx: &Context) -> OwnedHeaders {
    for (key, value) in propagation::inject(cx) {
        headers = headers.insert(Header {
            key,
            value: Some(value.as_bytes()),
        });
    }
    headers
}

/// The trace context a record carries, or an empty one.
pub fn trace_context<H: Headers>(headers: &H) -> Context {
    propagation::extract(|name| last_value(headers, name))
}
