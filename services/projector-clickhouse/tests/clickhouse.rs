//! The chosen ClickHouse crate against the real ClickHouse of the test stack (18.16 here): DDL in the
//! subset every server version shares, batched inserts, and the version column that makes a replayed
//! projection idempotent (ReplacingMergeTree read with FINAL).

use causeway_testcontainers::{stack, unique};
use clickhouse::Row;
use projector_clickhouse::config::ClickHouseConfig;
use projector_clickhouse::sink;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
struct OrderRow {
    order_id: String,
    status: String,
    total_cents: i64,
    version: u64,
}

fn client() -> clickhouse::Client {
    sink::client(&ClickHouseConfig {
        url: stack().clickhouse_url.clone(),
        ..ClickHouseConfig::default()
    })
}

#[tokio::test]
async fn insert_and_read_back_with_version_deduplication() {
    let client = client();
    sink::ping(&client).await.unwrap_or_else(|e| panic!("{e}"));
    let table = unique("orders").replace('-', "_");
    client
        .query(&format!(
            "CREATE TABLE {table} (order_id String, status String, total_cents Int64, version UInt64) \
             ENGINE = ReplacingMergeTree(version) ORDER BY order_id"
        ))
        .execute()
        .await
        .unwrap_or_else(|e| panic!("create: {e}"));

    let rows = [
        ("o-1", "placed", 1200, 1),
        ("o-2", "placed", 500, 1),
        ("o-1", "confirmed", 1200, 2),
        // A redelivered batch: same versions again.
        ("o-1", "confirmed", 1200, 2),
        ("o-2", "placed", 500, 1),
        ("o-2", "cancelled", 500, 2),
    ];
    for chunk in rows.chunks(3) {
        let mut insert = client
            .insert::<OrderRow>(&table)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        for (id, status, total, version) in chunk {
            insert
                .write(&OrderRow {
                    order_id: (*id).into(),
                    status: (*status).into(),
                    total_cents: *total,
                    version: *version,
                })
                .await
                .unwrap_or_else(|e| panic!("write: {e}"));
        }
        insert.end().await.unwrap_or_else(|e| panic!("insert: {e}"));
    }

    let raw: u64 = client
        .query(&format!("SELECT count() FROM {table}"))
        .fetch_one()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(raw, 6, "every insert landed");

    let latest: Vec<OrderRow> = client
        .query(&format!(
            "SELECT order_id, status, total_cents, version FROM {table} FINAL ORDER BY order_id"
        ))
        .fetch_all()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        latest,
        vec![
            OrderRow {
                order_id: "o-1".into(),
                status: "confirmed".into(),
                total_cents: 1200,
                version: 2
            },
            OrderRow {
                order_id: "o-2".into(),
                status: "cancelled".into(),
                total_cents: 500,
                version: 2
            },
        ]
    );

    let by_argmax: Vec<(String, String)> = client
        .query(&format!(
            "SELECT order_id, argMax(status, version) FROM {table} GROUP BY order_id ORDER BY order_id"
        ))
        .fetch_all()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        by_argmax,
        vec![
            ("o-1".into(), "confirmed".into()),
            ("o-2".into(), "cancelled".into())
        ]
    );
    client
        .query(&format!("DROP TABLE {table}"))
        .execute()
        .await
        .unwrap_or_else(|e| panic!("drop: {e}"));
}

#[tokio::test]
async fn a_bad_query_is_fatal_and_a_closed_port_transient() {
    use causeway_core::{Classify, ErrorClass};
    use projector_clickhouse::error::Error;
    let err = client()
        .query("SELECT no_such_column FROM system.one")
        .fetch_all::<u8>()
        .await
        .err()
        .unwrap_or_else(|| panic!("a bad query succeeded"));
    assert_eq!(Error::from(err).class(), ErrorClass::Fatal);

    let closed = sink::client(&ClickHouseConfig {
        url: format!(
            "http://127.0.0.1:{}",
            causeway_testcontainers::process::free_port()
        ),
        ..ClickHouseConfig::default()
    });
    let err = sink::ping(&closed)
        .await
        .err()
        .unwrap_or_else(|| panic!("ping to a closed port succeeded"));
    assert_eq!(err.class(), ErrorClass::Transient, "{err}");
}
