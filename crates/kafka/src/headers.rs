//! Record headers: the W3C trace context that follows a command through every hop, and lookups by name.

use causeway_observe::propagation::{self, Context};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};

/// On a command result: where its command record is (topic, partition, offset), for the event history.
pub mod command {
    /// The command's topic.
    pub const TOPIC: &str = "causeway.command.topic";
    /// Its partition.
    pub const PARTITION: &str = "causeway.command.partition";
    /// Its offset.
    pub const OFFSET: &str = "causeway.command.offset";
}

/// A record's headers, or `None` when one of their names is not UTF-8. rdkafka reads a name with
/// `CStr::to_str().unwrap()` and panics on such a one, and any producer outside the suite can send it:
/// the panic is caught here, once, for every reader of headers.
pub fn readable<H: Headers>(headers: &H) -> Option<Vec<Header<'_, &[u8]>>> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        headers.iter().collect::<Vec<_>>()
    }))
    .ok()
}

/// `headers` as owned headers (`None` when a name is not UTF-8: see [`readable`]).
pub fn owned<H: Headers>(headers: &H) -> Option<OwnedHeaders> {
    let all = readable(headers)?;
    let mut out = OwnedHeaders::new_with_capacity(all.len());
    for h in all {
        out = out.insert(h);
    }
    Some(out)
}

/// The value of the last header called `name` (Kafka allows repeats; the last one wins, as in the Java
/// client's `lastHeader`). A header present with a null value gives `None`, like an absent one; so do
/// headers whose names cannot be read.
pub fn last_value<'a, H: Headers>(headers: &'a H, name: &str) -> Option<&'a [u8]> {
    readable(headers)?
        .into_iter()
        .rev()
        .find(|h| h.key == name)
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

/// Where `m` came from, for the span of its processing.
pub fn consumed<'a, M: Message>(m: &'a M) -> propagation::Consumed<'a> {
    propagation::Consumed {
        topic: m.topic(),
        partition: m.partition(),
        offset: m.offset(),
        key: m.key(),
    }
}

/// The span of processing `m` (named `name`, a child of the trace `m` carries, with where it came
/// from); empty when `m` carries no trace.
pub fn processing<M: Message>(m: &M, name: &'static str) -> Context {
    let Some(h) = m.headers() else {
        return Context::new();
    };
    let parent = trace_context(h);
    if !propagation::is_traced(&parent) {
        return Context::new();
    }
    propagation::consumed(&parent, name, consumed(m))
}
