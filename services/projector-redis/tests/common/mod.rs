//! What projector-redis's tests share: the shared world of the projectors' tests (`events.rs`), and
//! the projector-redis process and its documents in Redis.
#![allow(dead_code)]

pub mod events;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

use causeway_core::projection::Document;
use causeway_testcontainers::process::ServiceProcess;
pub use events::*;

impl World {
    pub fn start(&self) -> ServiceProcess {
        self.start_with(&[])
    }

    pub fn start_with(&self, extra: &[(&str, &str)]) -> ServiceProcess {
        self.start_serving(extra).0
    }

    /// The projector with `extra` environment, and the address of its read API.
    pub fn start_serving(&self, extra: &[(&str, &str)]) -> (ServiceProcess, std::net::SocketAddr) {
        let api = std::net::SocketAddr::from((
            [127, 0, 0, 1],
            causeway_testcontainers::process::free_port(),
        ));
        let listen = api.to_string();
        let s = &self.stack;
        let mut env = vec![
            ("CAUSEWAY__HTTP__LISTEN", listen.as_str()),
            ("CAUSEWAY__REDIS__URL", s.redis_url.as_str()),
        ];
        env.extend_from_slice(extra);
        let service = self.start_service(
            Path::new(env!("CARGO_BIN_EXE_projector-redis")),
            Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/projector-redis.toml")),
            &env,
        );
        (service, api)
    }

    pub async fn redis(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.stack.redis_url.as_str())
            .unwrap_or_else(|e| panic!("{e}"))
            .get_multiplexed_async_connection()
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// The key of a document in generation 1 (the first).
    pub fn doc_key(&self, projection: &str, id: &str) -> String {
        format!("{}:{projection}:g1:doc:{id}", self.prefix)
    }

    /// The generation readers of `projection` see.
    pub async fn live(&self, projection: &str) -> u32 {
        let mut redis = self.redis().await;
        let live: Option<String> = redis::cmd("GET")
            .arg(format!("{}:{projection}:live", self.prefix))
            .query_async(&mut redis)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        live.and_then(|l| l.parse().ok()).unwrap_or(1)
    }

    /// Wait until every document of `projection` equals `expected` (fields and version).
    pub async fn wait_documents(&self, projection: &str, expected: &BTreeMap<String, Document>) {
        let mut redis = self.redis().await;
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let generation = self.live(projection).await;
            let mut differ = Vec::new();
            for (id, doc) in expected {
                let stored: HashMap<String, String> = redis::cmd("HGETALL")
                    .arg(format!(
                        "{}:{projection}:g{generation}:doc:{id}",
                        self.prefix
                    ))
                    .query_async(&mut redis)
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
                let mut want: HashMap<String, String> = doc
                    .fields
                    .iter()
                    .map(|(k, v)| ((*k).to_string(), v.clone()))
                    .collect();
                want.insert("_version".into(), doc.version.to_string());
                want.insert("_event_time".into(), doc.event_time_ms.to_string());
                if stored != want {
                    differ.push((id.clone(), stored, want));
                }
            }
            if differ.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {} {projection} documents differ, e.g. {:?}",
                differ.len(),
                expected.len(),
                &differ[..differ.len().min(2)]
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}
