//! The `dlq-reprocessor` binary as a process against the test stack: it starts with its sample config, says it
//! is not built yet and never reports ready, stops on SIGTERM with exit 0, and refuses bad config naming the key.

causeway_testcontainers::service_binary_tests!(planned "dlq-reprocessor");
