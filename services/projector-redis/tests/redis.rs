//! The chosen Redis crate against the real Redis of the test stack: plain round trip, and the kind of
//! version-checked Lua script the projections rely on for exactly-once effect.

use causeway_redis::RedisConfig;
use causeway_testcontainers::{stack, unique};
use projector_redis::store;

fn config() -> RedisConfig {
    RedisConfig {
        url: stack().redis_url.clone(),
    }
}

#[tokio::test]
async fn set_get_and_hash_round_trip() {
    let mut conn = store::connect(&config())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let key = unique("rt");
    let binary: Vec<u8> = vec![0, 1, 2, 255, 254];
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg(&binary)
        .query_async(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let back: Vec<u8> = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(back, binary);

    let hash = unique("order");
    let _: () = redis::cmd("HSET")
        .arg(&hash)
        .arg("status")
        .arg("placed")
        .arg("version")
        .arg(1)
        .query_async(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (status, version): (String, u64) = redis::cmd("HMGET")
        .arg(&hash)
        .arg("status")
        .arg("version")
        .query_async(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((status.as_str(), version), ("placed", 1));
    store::ping(&config())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test]
async fn versioned_script_applies_each_version_once() {
    let mut conn = store::connect(&config())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // Apply a value only when its version is newer than the stored one: the projection's idempotence.
    let script = redis::Script::new(
        r"local v = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
          if tonumber(ARGV[1]) <= v then return 0 end
          redis.call('HSET', KEYS[1], 'version', ARGV[1], 'status', ARGV[2])
          return 1",
    );
    let key = unique("view");
    let mut applied = Vec::new();
    for (version, status) in [
        (1, "placed"),
        (2, "confirmed"),
        (2, "confirmed"),
        (1, "placed"),
        (3, "shipped"),
    ] {
        let n: i32 = script
            .key(&key)
            .arg(version)
            .arg(status)
            .invoke_async(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        applied.push(n);
    }
    assert_eq!(applied, vec![1, 1, 0, 0, 1]);
    let status: String = redis::cmd("HGET")
        .arg(&key)
        .arg("status")
        .query_async(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status, "shipped");
}

#[tokio::test]
async fn a_closed_port_is_a_transient_error() {
    use causeway_core::{Classify, ErrorClass};
    let closed = RedisConfig {
        url: format!(
            "redis://127.0.0.1:{}",
            causeway_testcontainers::process::free_port()
        ),
    };
    let err = store::ping(&closed)
        .await
        .err()
        .unwrap_or_else(|| panic!("ping to a closed port succeeded"));
    assert_eq!(err.class(), ErrorClass::Transient, "{err}");
}
