//! crates/kafka against the real Apache Kafka of the test stack: round trips with headers,
//! transactions seen through `read_committed`, and topic provisioning.

use std::time::{Duration, Instant};

use causeway_kafka::KafkaConfig;
use causeway_kafka::client::{self, check_broker};
use causeway_kafka::config::OffsetMode;
use causeway_kafka::group::GroupConsumer;
use causeway_kafka::headers::{last_value, trace_context, with_trace_context};
use causeway_kafka::processor::Rebalances;
use causeway_kafka::topology::{self, Topology};
use causeway_observe::propagation::Context;
use causeway_testcontainers::{stack, unique};
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

const TIMEOUT: Duration = Duration::from_secs(30);

fn kafka() -> KafkaConfig {
    let mut config = KafkaConfig::for_servers(stack().kafka_bootstrap.clone());
    config.client_id = "causeway-test".into();
    config
}

fn one_topic(name: &str, partitions: i32, extra: &str) -> Topology {
    let text = format!(
        "[defaults]\npartitions = {partitions}\nreplication_factor = 1\n[[topic]]\nname = \"{name}\"\n{extra}"
    );
    match Topology::parse(&text, "test") {
        Ok(t) => t,
        Err(e) => panic!("bad test topology: {e}"),
    }
}

async fn create_topic(name: &str, partitions: i32) {
    let report = topology::apply(&kafka(), &one_topic(name, partitions, ""), false, TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("creating {name}: {e}"));
    assert_eq!(report.created, vec![name.to_string()]);
}

/// A consumer assigned to every partition of `topic` from the beginning (no group rebalance to wait for).
fn consumer_from_start(topic: &str, partitions: i32) -> StreamConsumer {
    let consumer = client::consumer(
        &kafka(),
        "test",
        &unique("group"),
        OffsetMode::StoreAfterEffect,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        if let Err(e) = tpl.add_partition_offset(topic, p, Offset::Beginning) {
            panic!("{e}");
        }
    }
    if let Err(e) = consumer.assign(&tpl) {
        panic!("assign: {e}");
    }
    consumer
}

async fn receive<T>(
    consumer: &StreamConsumer,
    n: usize,
    f: impl Fn(&BorrowedMessage<'_>) -> T,
) -> Vec<T> {
    let deadline = Instant::now() + TIMEOUT;
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, consumer.recv()).await {
            Ok(Ok(m)) => out.push(f(&m)),
            Ok(Err(e)) => panic!("consume: {e}"),
            Err(_) => panic!(
                "only {} of {n} records arrived within {TIMEOUT:?}",
                out.len()
            ),
        }
    }
    out
}

fn payload(m: &BorrowedMessage<'_>) -> String {
    String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn broker_check_answers_and_fails_on_a_closed_port() {
    check_broker(&kafka(), Duration::from_secs(10))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let closed = KafkaConfig::for_servers(format!(
        "127.0.0.1:{}",
        causeway_testcontainers::process::free_port()
    ));
    let err = check_broker(&closed, Duration::from_millis(500)).await;
    assert!(
        matches!(err, Err(causeway_kafka::Error::Unreachable { .. })),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn round_trip_keeps_key_payload_and_headers() {
    let topic = unique("roundtrip");
    create_topic(&topic, 1).await;
    let producer: FutureProducer =
        client::producer(&kafka(), "test").unwrap_or_else(|e| panic!("{e}"));

    let span = SpanContext::new(
        TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap_or(TraceId::INVALID),
        SpanId::from_hex("00f067aa0ba902b7").unwrap_or(SpanId::INVALID),
        TraceFlags::SAMPLED,
        true,
        TraceState::default(),
    );
    let cx = Context::new().with_remote_span_context(span);
    let binary: &[u8] = &[0, 159, 146, 150, 255];
    let headers = with_trace_context(
        OwnedHeaders::new()
            .insert(Header {
                key: "content-type",
                value: Some("avro/binary"),
            })
            .insert(Header {
                key: "blob",
                value: Some(binary),
            })
            .insert(Header::<&[u8]> {
                key: "nothing",
                value: None,
            }),
        &cx,
    );
    let delivery = producer
        .send(
            FutureRecord::to(&topic)
                .key("order-1")
                .payload("hello")
                .headers(headers),
            TIMEOUT,
        )
        .await
        .unwrap_or_else(|(e, _)| panic!("produce: {e}"));
    assert_eq!(delivery.offset, 0);

    let consumer = consumer_from_start(&topic, 1);
    let got = receive(&consumer, 1, |m| {
        let headers = m.headers().map(|h| h.detach()).unwrap_or_default();
        (m.key().map(<[u8]>::to_vec), payload(m), headers)
    })
    .await;
    let (key, body, headers) = &got[0];
    assert_eq!(key.as_deref(), Some(&b"order-1"[..]));
    assert_eq!(body, "hello");
    assert_eq!(
        last_value(headers, "content-type"),
        Some(&b"avro/binary"[..])
    );
    assert_eq!(last_value(headers, "blob"), Some(binary));
    assert_eq!(last_value(headers, "nothing"), None);
    assert_eq!(
        headers.count(),
        4,
        "content-type, blob, nothing, traceparent"
    );
    let carried = trace_context(headers);
    assert_eq!(
        carried.span().span_context().trace_id().to_string(),
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn read_committed_sees_committed_transactions_only() {
    let topic = unique("txn");
    create_topic(&topic, 1).await;
    let txn_id = unique("txn-id");
    let config = kafka();
    let producer = tokio::task::spawn_blocking(move || {
        client::transactional_producer(&config, "test", &txn_id, TIMEOUT)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"))
    .unwrap_or_else(|e| panic!("{e}"));

    for (records, commit) in [
        (&["c1", "c2"][..], true),
        (&["a1", "a2"][..], false),
        (&["c3"][..], true),
    ] {
        producer
            .begin_transaction()
            .unwrap_or_else(|e| panic!("begin: {e}"));
        for r in records {
            producer
                .send(FutureRecord::to(&topic).key(*r).payload(*r), TIMEOUT)
                .await
                .unwrap_or_else(|(e, _)| panic!("produce {r}: {e}"));
        }
        let producer = producer.clone();
        tokio::task::spawn_blocking(move || {
            if commit {
                producer.commit_transaction(TIMEOUT)
            } else {
                producer.abort_transaction(TIMEOUT)
            }
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("end transaction: {e}"));
    }

    let consumer = consumer_from_start(&topic, 1);
    let seen = receive(&consumer, 3, payload).await;
    assert_eq!(seen, vec!["c1", "c2", "c3"]);

    // A read_uncommitted reader sees the aborted records too: proof that the filter above was the broker's.
    let mut uncommitted = kafka();
    uncommitted
        .properties
        .insert("isolation.level".into(), "read_uncommitted".into());
    let raw: StreamConsumer = uncommitted
        .consumer_config("test", &unique("group"), OffsetMode::StoreAfterEffect)
        .create()
        .unwrap_or_else(|e| panic!("{e}"));
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&topic, 0, Offset::Beginning)
        .unwrap_or_else(|e| panic!("{e}"));
    raw.assign(&tpl).unwrap_or_else(|e| panic!("{e}"));
    let all = receive(&raw, 5, payload).await;
    assert_eq!(all, vec!["c1", "c2", "a1", "a2", "c3"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn topics_apply_is_idempotent_and_reports_drift() {
    let name = unique("apply");
    let declared = one_topic(
        &name,
        3,
        "cleanup_policy = \"compact\"\nretention_ms = -1\n",
    );
    let first = topology::apply(&kafka(), &declared, false, TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(first.created, vec![name.clone()]);
    assert!(first.in_sync());

    let second = topology::apply(&kafka(), &declared, false, TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(second.created.is_empty(), "{second:?}");
    assert_eq!(second.unchanged, vec![name.clone()]);
    assert!(second.in_sync(), "{second:?}");

    let drifted = one_topic(&name, 4, "cleanup_policy = \"delete\"\nretention_ms = -1\n");
    let third = topology::apply(&kafka(), &drifted, false, TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(third.created.is_empty());
    let mut what: Vec<&str> = third.drift.iter().map(|d| d.what.as_str()).collect();
    what.sort_unstable();
    assert_eq!(what, vec!["cleanup.policy", "partitions"], "{third:?}");
    let partitions = third.drift.iter().find(|d| d.what == "partitions");
    assert_eq!(
        partitions.map(|d| (d.declared.as_str(), d.actual.as_str())),
        Some(("4", "3"))
    );

    // Nothing was "fixed": the cluster still has the original shape.
    let again = topology::apply(&kafka(), &declared, false, TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(again.in_sync(), "{again:?}");
}

/// Create a group consumer, subscribe, wait `after`, then drop it on a thread
/// of its own (closing it mid-join, or with an assignment on its way) and report whether the close
/// finished within `TIMEOUT`.
fn close_after(topic: &str, after: Duration) -> bool {
    let group = unique("close");
    let mut config = kafka().consumer_config("causeway-test", &group, OffsetMode::Transactional);
    // As the processor: static membership.
    config.set("group.instance.id", format!("{group}-instance"));
    let consumer = GroupConsumer::new(
        config
            .create_with_context::<_, BaseConsumer<Rebalances>>(Rebalances::new(&config, None))
            .unwrap_or_else(|e| panic!("consumer: {e}")),
    );
    consumer
        .subscribe(&[topic])
        .unwrap_or_else(|e| panic!("subscribe: {e}"));
    // Not polled meanwhile: an assignment that arrives waits in the queue for the close to find it.
    std::thread::sleep(after);
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        drop(consumer);
        let _ = done_tx.send(());
    });
    done_rx.recv_timeout(TIMEOUT).is_ok()
}

/// A group consumer closed while its first assignment is on its way: librdkafka can hand that
/// assignment to the closing consumer after its group terminated, and asking the group anything then
/// waits forever. A service stopped right after it started must still stop. The close is tried at
/// many moments of the join.
#[tokio::test(flavor = "multi_thread")]
async fn a_group_consumer_closes_at_any_moment_of_its_join() {
    let topic = unique("close");
    create_topic(&topic, 3).await;
    // All at once: closes racing each other's joins on a busy machine are where the hang showed.
    let closes: Vec<_> = (0..40u64)
        .map(|round| {
            let t = topic.clone();
            tokio::task::spawn_blocking(move || {
                (round, close_after(&t, Duration::from_millis(round * 3)))
            })
        })
        .collect();
    for close in closes {
        let (round, closed) = close.await.unwrap_or_else(|e| panic!("{e}"));
        assert!(
            closed,
            "closing {} ms after subscribing: the consumer did not close within {TIMEOUT:?}",
            round * 3
        );
    }
}
