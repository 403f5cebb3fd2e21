//! The `projector-redis` binary as a process against the test stack: it starts with its sample config
//! (hosting every projection of the orders domain), reports ready, stops on SIGTERM with exit 0, and
//! refuses bad config naming the key.

use causeway_testcontainers::Stack;

causeway_testcontainers::service_binary_tests!(
    "projector-redis",
    "CAUSEWAY__REDIS__URL" => |s: &Stack| s.redis_url.clone(),
    "CAUSEWAY__HTTP__LISTEN" => |_: &Stack| format!("127.0.0.1:{}", causeway_testcontainers::process::free_port()),
    "CAUSEWAY__PROJECTOR__REGISTRY_URL" => |s: &Stack| s.registry_url.clone(),
    "CAUSEWAY__PROJECTOR__GROUP_ID" => |_: &Stack| causeway_testcontainers::unique("projector-redis"),
);
