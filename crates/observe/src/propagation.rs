//! W3C trace context (`traceparent`, `tracestate`) carried in Kafka record headers, so that one trace
//! follows a command through every hop. The carrier is a plain list of header names and byte values, so
//! this crate needs no Kafka client; crates/kafka converts to and from rdkafka's header types.

pub use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::SpanKind;
use opentelemetry_sdk::propagation::TraceContextPropagator;

/// The header names the W3C propagator reads and writes.
pub const TRACE_HEADERS: [&str; 2] = ["traceparent", "tracestate"];

/// Headers to add to an outgoing record so that its consumer continues the trace of `cx`.
/// Empty when `cx` has no valid span.
pub fn inject(cx: &Context) -> Vec<(&'static str, String)> {
    let mut out = Outgoing(Vec::with_capacity(2));
    TraceContextPropagator::new().inject_context(cx, &mut out);
    out.0
}

/// The trace context carried by a record's headers (`get` returns a header's value by name). Headers
/// that are missing, not UTF-8 or malformed give an empty context: a bad header never fails a record.
pub fn extract<'a>(get: impl Fn(&str) -> Option<&'a [u8]>) -> Context {
    let incoming = Incoming(
        TRACE_HEADERS
            .iter()
            .filter_map(|name| {
                let value = get(name)?;
                std::str::from_utf8(value).ok().map(|v| (*name, v))
            })
            .collect(),
    );
    TraceContextPropagator::new().extract(&incoming)
}

/// Whether spans are exported (OTLP on): set once by `Telemetry::init`. When they are not, a hop
/// opens no span of its own: it passes its input's context on as it came (what the no-op tracer
/// would do, without building the span's name and attributes for nothing).
static EXPORTING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Spans are exported from now on.
pub(crate) fn set_exporting() {
    EXPORTING.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Whether spans are exported.
pub fn exporting() -> bool {
    EXPORTING.load(std::sync::atomic::Ordering::Relaxed)
}

/// Whether `cx` carries a valid span (a trace to continue).
pub fn is_traced(cx: &Context) -> bool {
    use opentelemetry::trace::TraceContextExt;
    cx.span().span_context().is_valid()
}

/// Where a consumed record came from, for its span's attributes (OpenTelemetry's messaging
/// conventions): which topic, partition and offset, and its key.
#[derive(Debug, Clone, Copy)]
pub struct Consumed<'a> {
    /// The record's topic.
    pub topic: &'a str,
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// Its key, when it has one.
    pub key: Option<&'a [u8]>,
}

/// The longest record key a span attribute carries, in bytes (a longer key is cut).
const MAX_KEY_ATTRIBUTE: usize = 256;

/// A context for processing the record `from` (span `name`, a child of the record's `parent` trace),
/// with the record's topic, partition, offset and key as attributes. Empty when `parent` is: a record
/// that came without a trace adds none.
pub fn consumed(parent: &Context, name: &'static str, from: Consumed<'_>) -> Context {
    use opentelemetry::KeyValue;
    use opentelemetry::trace::TraceContextExt;
    if !parent.span().span_context().is_valid() {
        return Context::new();
    }
    if !exporting() {
        return parent.clone();
    }
    let mut attributes = vec![
        KeyValue::new("messaging.system", "kafka"),
        KeyValue::new("messaging.operation.type", "process"),
        KeyValue::new("messaging.destination.name", from.topic.to_string()),
        KeyValue::new(
            "messaging.destination.partition.id",
            from.partition.to_string(),
        ),
        KeyValue::new("messaging.kafka.offset", from.offset),
    ];
    if let Some(key) = from.key {
        let key = &key[..key.len().min(MAX_KEY_ATTRIBUTE)];
        attributes.push(KeyValue::new(
            "messaging.kafka.message.key",
            String::from_utf8_lossy(key).into_owned(),
        ));
    }
    hop(parent, name, SpanKind::Consumer, attributes)
}

/// A context for a request that begins here (span `name`): a child of the caller's trace `parent` when
/// it carries one, else the root of a new trace (sampled by the tracer's sampler; with no exporter it
/// stays empty, and records carry no trace).
pub fn begin(parent: &Context, name: &'static str) -> Context {
    use opentelemetry::trace::{TraceContextExt, Tracer};
    if parent.span().span_context().is_valid() {
        return hop(parent, name, SpanKind::Server, Vec::new());
    }
    if !exporting() {
        return Context::new();
    }
    let tracer = opentelemetry::global::tracer("causeway");
    let span = tracer
        .span_builder(name)
        .with_kind(SpanKind::Server)
        .start_with_context(&tracer, &Context::new());
    Context::new().with_span(span)
}

/// Mark the span of `cx` failed with `why` (it ends when its last context is dropped).
pub fn failed(cx: &Context, why: &'static str) {
    use opentelemetry::trace::{Status, TraceContextExt};
    cx.span().set_status(Status::error(why));
}

fn hop(
    parent: &Context,
    name: &'static str,
    kind: SpanKind,
    attributes: Vec<opentelemetry::KeyValue>,
) -> Context {
    use opentelemetry::trace::{TraceContextExt, Tracer};
    if !parent.span().span_context().is_valid() {
        return Context::new();
    }
    if !exporting() {
        return parent.clone();
    }
    let tracer = opentelemetry::global::tracer("causeway");
    let span = tracer
        .span_builder(name)
        .with_kind(kind)
        .with_attributes(attributes)
        .start_with_context(&tracer, parent);
    parent.with_span(span)
}

struct Outgoing(Vec<(&'static str, String)>);

impl Injector for Outgoing {
    fn set(&mut self, key: &str, value: String) {
        // An empty `tracestate` carries nothing; leave the header out rather than send it empty.
        if value.is_empty() {
            return;
        }
        if let Some(name) = TRACE_HEADERS.iter().find(|n| **n == key) {
            self.0.push((name, value));
        }
    }
}

struct Incoming<'a>(Vec<(&'static str, &'a str)>);

impl Extractor for Incoming<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(k, _)| *k).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{
        SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState,
    };

    fn sampled_context() -> Context {
        let span = SpanContext::new(
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap_or(TraceId::INVALID),
            SpanId::from_hex("00f067aa0ba902b7").unwrap_or(SpanId::INVALID),
            TraceFlags::SAMPLED,
            true,
            TraceState::default(),
        );
        Context::new().with_remote_span_context(span)
    }

    #[test]
    fn inject_then_extract_keeps_trace_and_span() {
        let headers = inject(&sampled_context());
        assert_eq!(
            headers,
            vec![(
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_string()
            )]
        );
        let cx = extract(|name| {
            headers
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.as_bytes())
        });
        let span = cx.span();
        let got = span.span_context();
        assert_eq!(
            got.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(got.span_id().to_string(), "00f067aa0ba902b7");
        assert!(got.is_remote());
    }

    #[test]
    fn a_consumed_record_keeps_its_trace_and_no_trace_gives_none() {
        let from = Consumed {
            topic: "t",
            partition: 0,
            offset: 7,
            key: Some(b"k"),
        };
        let parent = sampled_context();
        let cx = consumed(&parent, "hop", from);
        let headers = inject(&cx);
        assert!(
            headers[0]
                .1
                .starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
            "{headers:?}"
        );
        assert!(inject(&consumed(&Context::new(), "hop", from)).is_empty());
    }

    #[test]
    fn empty_context_injects_nothing() {
        assert!(inject(&Context::new()).is_empty());
    }

    #[test]
    fn malformed_or_binary_headers_give_an_empty_context() {
        let bad: &[u8] = b"\xff\xfe not utf8";
        let cx = extract(|_| Some(bad));
        assert!(!cx.span().span_context().is_valid());
        let cx = extract(|name| (name == "traceparent").then_some(&b"00-zz-zz-01"[..]));
        assert!(!cx.span().span_context().is_valid());
    }
}
