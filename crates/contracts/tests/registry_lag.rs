//! A schema registered a moment ago through another registry instance is found: a reader asking an
//! instance that has not caught up yet gets 40403 (unknown schema id) for a moment. The codec asks again
//! briefly instead of declaring the record poison, and never caches the miss. The lagging instance is
//! the real registry behind a proxy that answers 40403 until it "catches up".

use std::net::SocketAddr;
use std::time::Duration;

use causeway_contracts::upcast::Upcasters;
use causeway_contracts::wire::{Codec, WireError};
use causeway_testcontainers::faulty::{FaultyProxy, Mode};
use causeway_testcontainers::{stack, unique};
use serde_json::json;

#[derive(serde::Serialize)]
struct Ping {
    n: i64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_id_unknown_for_a_moment_is_found_and_one_unknown_for_good_is_poison() {
    let s = stack();
    let topic = unique("lag");
    let subject = format!("{topic}-test.lag.Ping");
    let schema = r#"{"type":"record","name":"Ping","namespace":"test.lag","fields":[{"name":"n","type":"long"}]}"#;
    let http = reqwest::Client::new();
    let registered: serde_json::Value = http
        .post(format!("{}/subjects/{subject}/versions", s.registry_url))
        .header("Content-Type", "application/vnd.schemaregistry.v1+json")
        .body(json!({ "schema": schema }).to_string())
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .unwrap_or_else(|e| panic!("{e}"))
        .json()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(registered["id"].is_i64(), "{registered}");
    let bytes = Codec::new(&s.registry_url)
        .encode(&topic, "test.lag.Ping", &Ping { n: 7 })
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let registry: SocketAddr = s
        .registry_url
        .trim_start_matches("http://")
        .parse()
        .unwrap_or_else(|e| panic!("{e}"));
    let proxy = FaultyProxy::start(registry).unwrap_or_else(|e| panic!("{e}"));
    let not_yet = Mode::Answer {
        status: 404,
        body: r#"{"error_code":40403,"message":"Schema not found"}"#.into(),
    };
    proxy.set(not_yet.clone());
    let lagging = Codec::new(&proxy.url());
    let catch_up = {
        let proxy_url = proxy.url();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(150)).await;
            proxy_url
        })
    };
    let none = Upcasters::default();
    let decoding = lagging.decode_value(&bytes, &none);
    tokio::pin!(decoding);
    // The instance catches up while the codec is asking again.
    let decoded = tokio::select! {
        d = &mut decoding => d,
        _ = catch_up => {
            proxy.set(Mode::Pass);
            decoding.await
        }
    };
    let decoded = decoded.unwrap_or_else(|e| panic!("a schema a moment old was declared {e}"));
    assert_eq!(decoded.full_name, "test.lag.Ping");

    // An id that stays unknown is poison (not transient, not a hang), and the miss is not cached
    // against a later answer: a fresh codec behind the same proxy finds the id once it passes.
    proxy.set(not_yet);
    let fresh = Codec::new(&proxy.url());
    match fresh.decode_value(&bytes, &Upcasters::default()).await {
        Err(WireError::Undecodable(why)) => {
            assert!(why.contains("40403") || why.contains("not known"), "{why}")
        }
        other => panic!("expected poison, got {other:?}"),
    }
    proxy.set(Mode::Pass);
    let found = Codec::new(&proxy.url())
        .decode_value(&bytes, &Upcasters::default())
        .await;
    assert!(found.is_ok(), "{found:?}");
}
