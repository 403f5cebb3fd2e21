//! The orchestrator beside the aggregate processor in a world of their own (the processor tests'
//! [`World`]: the orders domain's topics and contracts under a unique context), and readers of what the
//! sagas and aggregates end with.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use causeway_contracts::records::{SagaRecord, StateRecord};
use causeway_orders::fulfilment::OrderFulfilment;
use causeway_orders::inventory::Inventory;
use causeway_orders::payment::Account;
use causeway_testcontainers::process::ServiceProcess;
use serde::de::DeserializeOwned;

pub use crate::common::World;

pub const BIN: &str = env!("CARGO_BIN_EXE_saga-orchestrator");
pub const SAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/saga-orchestrator.toml");

/// The orchestrator's consumer group in `world`.
pub fn group(world: &World) -> String {
    format!("{}-sagas", world.context)
}

/// The environment that points the orchestrator's sample config at `world`, `instance` in its
/// transactional id.
pub fn env(world: &World, instance: &str) -> Vec<(&'static str, String)> {
    let s = &world.stack;
    let group = group(world);
    vec![
        (
            "CAUSEWAY__KAFKA__BOOTSTRAP_SERVERS",
            s.kafka_bootstrap.clone(),
        ),
        ("CAUSEWAY__PROCESSOR__DOMAIN", world.domain.to_string()),
        ("CAUSEWAY__PROCESSOR__CONTEXT", world.context.clone()),
        ("CAUSEWAY__PROCESSOR__GROUP_ID", group.clone()),
        (
            "CAUSEWAY__PROCESSOR__RESULTS_TOPIC",
            world.results_topic.clone(),
        ),
        ("CAUSEWAY__PROCESSOR__REGISTRY_URL", s.registry_url.clone()),
        (
            "CAUSEWAY__PROCESSOR__TRANSACTIONAL_ID",
            format!("{group}-{instance}"),
        ),
        (
            "CAUSEWAY__PROCESSOR__TRANSACTION_TIMEOUT_MS",
            "10000".into(),
        ),
        (
            "CAUSEWAY__KAFKA__PROPERTIES__session.timeout.ms",
            "6000".into(),
        ),
    ]
}

/// The orchestrator as a process for `world`, ready, with `extra` environment.
pub fn start_orchestrator(
    world: &World,
    instance: &str,
    extra: &[(&'static str, &str)],
) -> ServiceProcess {
    let mut env = env(world, instance);
    env.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut p = ServiceProcess::start(Path::new(BIN), Path::new(SAMPLE), &env)
        .unwrap_or_else(|e| panic!("{e}"));
    p.wait_ready(Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e}"));
    p
}

/// The latest record per key of `topic` (a changelog), as `T`.
pub async fn latest<T: DeserializeOwned>(world: &World, topic: &str) -> BTreeMap<String, T> {
    let mut out = BTreeMap::new();
    for r in world.read_all(topic).await {
        let Some(key) = r.key else { continue };
        match r.record {
            Some((_, value)) => {
                let v: T = apache_avro::from_value(&value)
                    .unwrap_or_else(|e| panic!("{topic} {key}: {e}"));
                out.insert(key, v);
            }
            None => {
                out.remove(&key);
            }
        }
    }
    out
}

/// The saga instances of `world`, by saga id.
pub async fn sagas(world: &World) -> BTreeMap<String, SagaRecord<OrderFulfilment>> {
    latest(world, &world.topic("order-fulfilment", "changelog")).await
}

/// The stock of every SKU.
pub async fn stock(world: &World) -> BTreeMap<String, StateRecord<Inventory>> {
    latest(world, &world.topic("inventory", "changelog")).await
}

/// Every account.
pub async fn accounts(world: &World) -> BTreeMap<String, StateRecord<Account>> {
    latest(world, &world.topic("payment", "changelog")).await
}

/// Wait until the sagas `ids` are all done (a terminal status with nothing awaited), or fail saying
/// where each one is.
pub async fn wait_done(
    world: &World,
    ids: &[&str],
    timeout: Duration,
) -> BTreeMap<String, SagaRecord<OrderFulfilment>> {
    let deadline = Instant::now() + timeout;
    loop {
        let all = sagas(world).await;
        let done = ids.iter().all(|id| {
            all.get(*id).is_some_and(|s| {
                matches!(s.status.as_str(), "completed" | "compensated" | "failed")
                    && s.pending.is_empty()
            })
        });
        if done {
            return all;
        }
        if Instant::now() >= deadline {
            let shown: Vec<String> = ids
                .iter()
                .map(|id| match all.get(*id) {
                    Some(s) => format!(
                        "{id}: {} at {} awaiting {:?}; history {:?}",
                        s.status,
                        s.step,
                        s.pending.iter().map(|p| &p.key).collect::<Vec<_>>(),
                        s.history
                            .iter()
                            .map(|h| format!("{} -> {}", h.what, h.step))
                            .collect::<Vec<_>>()
                    ),
                    None => format!("{id}: never started"),
                })
                .collect();
            panic!("sagas not done after {timeout:?}:\n{}", shown.join("\n"));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// `causeway saga <args>` against `world`: exit code and stdout (stderr on failure).
pub fn cli(world: &World, args: &[&str]) -> (i32, String) {
    let bin = crate::common::workspace_binary("causeway");
    let out = std::process::Command::new(bin)
        .arg("saga")
        .args(args)
        .args([
            "--context",
            &world.context,
            "--registry",
            &world.stack.registry_url,
            "--bootstrap-servers",
            &world.stack.kafka_bootstrap,
        ])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let code = out.status.code().unwrap_or(-1);
    let text = if code == 0 {
        String::from_utf8_lossy(&out.stdout).into_owned()
    } else {
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    (code, text)
}
