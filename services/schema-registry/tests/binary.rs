//! The `schema-registry` binary as a process against the test stack: it starts with its sample config
//! (on a topic, writer id and API port of its own), reports ready, stops on SIGTERM with exit 0, and
//! refuses bad config naming the key.

use causeway_testcontainers::process::free_port;
use causeway_testcontainers::{Stack, unique};

causeway_testcontainers::service_binary_tests!(
    "schema-registry",
    "CAUSEWAY__REGISTRY__LISTEN" => |_: &Stack| format!("127.0.0.1:{}", free_port()),
    "CAUSEWAY__REGISTRY__TOPIC" => |_: &Stack| unique("_schemas"),
    "CAUSEWAY__REGISTRY__WRITER_TRANSACTIONAL_ID" => |_: &Stack| unique("registry-writer"),
);
