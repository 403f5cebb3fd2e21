//! The `projector-redis` binary as a process against the test stack: it starts with its sample config, says it
//! is not built yet and never reports ready, stops on SIGTERM with exit 0, and refuses bad config naming the key.

causeway_testcontainers::service_binary_tests!(planned "projector-redis", "CAUSEWAY__REDIS__URL" => |s: &causeway_testcontainers::Stack| s.redis_url.clone());
