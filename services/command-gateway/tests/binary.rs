//! The `command-gateway` binary as a process against the test stack: it starts with its sample config
//! (its API on a port of its own), reports ready, stops on SIGTERM with exit 0, and refuses bad config
//! naming the key.

use causeway_testcontainers::Stack;
use causeway_testcontainers::process::free_port;

causeway_testcontainers::service_binary_tests!(
    "command-gateway",
    "CAUSEWAY__HTTP__LISTEN" => |_: &Stack| format!("127.0.0.1:{}", free_port()),
    "CAUSEWAY__GATEWAY__REGISTRY_URL" => |s: &Stack| s.registry_url.clone(),
);
