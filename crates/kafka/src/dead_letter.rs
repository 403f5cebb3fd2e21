//! Dead letters, one way for every consumer (the processor inside its transaction, the consumer runner
//! with its own producer): a record that cannot be processed goes to `<group>.dlq` unchanged (key,
//! value, original headers with the trace context), with headers that say why, where it came from and
//! since when, so that it can be inspected and replayed. A value or headers too large for the DLQ topic
//! are left out (the record stays at its topic, partition and offset) and the dead letter says so.

use rdkafka::Message;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::BaseRecord;

/// Header names of a dead letter (the original headers are kept before them).
pub mod dlq_headers {
    /// Why the record could not be processed.
    pub const REASON: &str = "causeway.dlq.reason";
    /// Its error class (`poison`).
    pub const CLASS: &str = "causeway.dlq.class";
    /// The topic it was read from.
    pub const TOPIC: &str = "causeway.dlq.topic";
    /// Its partition there.
    pub const PARTITION: &str = "causeway.dlq.partition";
    /// Its offset there.
    pub const OFFSET: &str = "causeway.dlq.offset";
    /// Its timestamp there, ms since the epoch (absent when it had none).
    pub const TIMESTAMP: &str = "causeway.dlq.timestamp";
    /// The consumer group that gave up on it.
    pub const GROUP: &str = "causeway.dlq.group";
    /// When it was dead-lettered, in ms since the epoch.
    pub const AT: &str = "causeway.dlq.at";
    /// How many times processing it was tried.
    pub const ATTEMPTS: &str = "causeway.dlq.attempts";
    /// When processing it failed first, in ms since the epoch.
    pub const FIRST_FAILURE: &str = "causeway.dlq.first-failure";
    /// Set when the record's value was too large for the DLQ topic and left out (it stays at its
    /// topic, partition and offset): its size in bytes.
    pub const VALUE_OMITTED: &str = "causeway.dlq.value-omitted-bytes";
}

/// Room kept for a dead letter's own headers and the record's framing.
pub const DLQ_OVERHEAD: usize = 2048;

/// Why and since when a record is dead-lettered.
#[derive(Debug, Clone, Copy)]
pub struct Why<'a> {
    /// The reason (already cut to the configured length).
    pub reason: &'a str,
    /// The error class.
    pub class: &'a str,
    /// The consumer group.
    pub group: &'a str,
    /// Now, ms since the epoch.
    pub at: i64,
    /// Tries so far.
    pub attempts: u32,
    /// When it failed first, ms since the epoch.
    pub first_failure: i64,
    /// Per-key order: the offset of the head its key waits behind (class `parked`).
    pub behind: Option<i64>,
    /// Per-key order: its key's later records wait behind it.
    pub parks_key: bool,
}

/// Longest `traceparent` / `tracestate` value kept when the other original headers do not fit (W3C:
/// 55 bytes and at most 512 bytes to propagate); within [`DLQ_OVERHEAD`] with the suite's own headers.
const TRACE_HEADER_BYTES: usize = 512;

/// The dead letter of `m` to `topic`, at most `limit` bytes (the DLQ topic's largest record), its key
/// cut to `max_key_bytes`.
pub fn record<'m, M: Message>(
    m: &'m M,
    topic: &'m str,
    why: &Why<'_>,
    limit: usize,
    max_key_bytes: usize,
) -> BaseRecord<'m, [u8], [u8]> {
    // Headers whose names cannot be read are left out, as headers too large are.
    let original = m.headers().and_then(crate::headers::readable);
    let original_bytes: usize = original
        .as_ref()
        .map(|h| {
            h.iter()
                .map(|h| h.key.len() + h.value.map_or(0, <[u8]>::len))
                .sum()
        })
        .unwrap_or(0);
    let key = m.key().map(|k| &k[..k.len().min(max_key_bytes)]);
    let room = limit.saturating_sub(DLQ_OVERHEAD + why.reason.len() + key.map_or(0, <[u8]>::len));
    // The original headers and value when they fit; the record stays at its source either way.
    let keep_headers = original_bytes <= room;
    // Too big to keep whole, the trace context still goes along (the first `traceparent` and
    // `tracestate`, within the W3C limits), so that a dead letter stays in its trace.
    let mut trace: [Option<Header<'_, &[u8]>>; 2] = [None, None];
    if let Some(original) = original.as_ref().filter(|_| !keep_headers) {
        for header in original {
            let slot = match header.key {
                "traceparent" => 0,
                "tracestate" => 1,
                _ => continue,
            };
            if trace[slot].is_none() && header.value.is_some_and(|v| v.len() <= TRACE_HEADER_BYTES)
            {
                trace[slot] = Some(Header {
                    key: header.key,
                    value: header.value,
                });
            }
        }
    }
    let kept_bytes = if keep_headers {
        original_bytes
    } else {
        trace
            .iter()
            .flatten()
            .map(|h| h.key.len() + h.value.map_or(0, <[u8]>::len))
            .sum()
    };
    let payload = m.payload().filter(|p| p.len() + kept_bytes <= room);
    let mut h = OwnedHeaders::new();
    match original {
        Some(original) if keep_headers => {
            for header in original {
                h = h.insert(header);
            }
        }
        _ => {
            for header in trace.into_iter().flatten() {
                h = h.insert(header);
            }
        }
    }
    let partition = m.partition().to_string();
    let offset = m.offset().to_string();
    let timestamp = m.timestamp().to_millis().map(|t| t.to_string());
    let at = why.at.to_string();
    let attempts = why.attempts.to_string();
    let first = why.first_failure.to_string();
    let behind = why.behind.map(|b| b.to_string());
    let omitted = match (m.payload(), payload) {
        (Some(p), None) => Some(p.len().to_string()),
        _ => None,
    };
    for (key, value) in [
        (dlq_headers::REASON, Some(why.reason)),
        (dlq_headers::CLASS, Some(why.class)),
        (dlq_headers::TOPIC, Some(m.topic())),
        (dlq_headers::PARTITION, Some(partition.as_str())),
        (dlq_headers::OFFSET, Some(offset.as_str())),
        (dlq_headers::TIMESTAMP, timestamp.as_deref()),
        (dlq_headers::GROUP, Some(why.group)),
        (dlq_headers::AT, Some(at.as_str())),
        (dlq_headers::ATTEMPTS, Some(attempts.as_str())),
        (dlq_headers::FIRST_FAILURE, Some(first.as_str())),
        (dlq_headers::VALUE_OMITTED, omitted.as_deref()),
        (crate::parking::headers::BEHIND, behind.as_deref()),
        (
            crate::parking::headers::PARKS_KEY,
            why.parks_key.then_some("true"),
        ),
    ] {
        if let Some(value) = value {
            h = h.insert(Header {
                key,
                value: Some(value.as_bytes()),
            });
        }
    }
    let mut record: BaseRecord<'m, [u8], [u8]> = BaseRecord::to(topic).headers(h);
    if let Some(k) = key {
        record = record.key(k);
    }
    if let Some(p) = payload {
        record = record.payload(p);
    }
    record
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::Timestamp;
    use rdkafka::message::{Headers, OwnedMessage};

    fn why() -> Why<'static> {
        Why {
            reason: "undecodable",
            class: "poison",
            group: "g",
            at: 2,
            attempts: 1,
            first_failure: 1,
            behind: None,
            parks_key: false,
        }
    }

    fn headers_of(r: &BaseRecord<'_, [u8], [u8]>) -> Vec<(String, String)> {
        r.headers
            .as_ref()
            .map(|h| {
                h.iter()
                    .map(|h| {
                        (
                            h.key.to_string(),
                            String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn the_trace_context_stays_when_the_other_headers_do_not_fit() {
        let big = "x".repeat(10_000);
        let original = OwnedHeaders::new()
            .insert(Header {
                key: "traceparent",
                value: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
            })
            .insert(Header {
                key: "big",
                value: Some(big.as_str()),
            })
            .insert(Header {
                key: "traceparent",
                value: Some("a second one, not kept"),
            });
        let m = OwnedMessage::new(
            Some(b"payload".to_vec()),
            Some(b"key".to_vec()),
            "t".into(),
            Timestamp::CreateTime(5),
            2,
            7,
            Some(original),
        );
        let r = record(&m, "g.dlq", &why(), DLQ_OVERHEAD + 4096, 1024);
        let h = headers_of(&r);
        let get = |k: &str| h.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(
            get("traceparent"),
            Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
        );
        assert_eq!(get("big"), None);
        assert_eq!(h.iter().filter(|(n, _)| n == "traceparent").count(), 1);
        assert_eq!(get(dlq_headers::PARTITION), Some("2"));
        assert_eq!(get(dlq_headers::OFFSET), Some("7"));
        assert_eq!(get(dlq_headers::TIMESTAMP), Some("5"));
        // The value fits without the headers that were left out.
        assert_eq!(r.payload, Some(&b"payload"[..]));
    }
}
