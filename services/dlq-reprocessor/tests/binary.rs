//! The `dlq-reprocessor` binary as a process against the test stack: it starts with its sample config
//! (a token, Redis and a free API port given by the environment), reports ready, stops on SIGTERM with
//! exit 0, and refuses bad config naming the key.

use causeway_testcontainers::Stack;

causeway_testcontainers::service_binary_tests!("dlq-reprocessor",
    "CAUSEWAY__REDIS__URL" => |s: &Stack| s.redis_url.clone(),
    "CAUSEWAY__DLQ__REGISTRY_URL" => |s: &Stack| s.registry_url.clone(),
    "CAUSEWAY__DLQ__PREFIX" => |_: &Stack| causeway_testcontainers::unique("dlq-binary"),
    "CAUSEWAY__DLQ__GROUP_ID" => |_: &Stack| causeway_testcontainers::unique("dlq-binary"),
    "CAUSEWAY__HTTP__LISTEN" => |_: &Stack| format!("127.0.0.1:{}", causeway_testcontainers::process::free_port()),
    "CAUSEWAY__ACCESS__TOKENS" => |_: &Stack| "[{ name = \"test\", token = \"binary-test-token-0123456789\" }]".to_string(),
);

/// A token list that does not parse is refused without the tokens in the message (they are secrets).
#[test]
fn a_malformed_token_list_is_refused_without_showing_it() {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_dlq-reprocessor"));
    command
        .arg("--config")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/dlq-reprocessor.toml"))
        .env(
            "CAUSEWAY__ACCESS__TOKENS",
            "[{ name = \"a\", token = \"do-not-print-this-secret-0123\"",
        );
    let (status, _, stderr) = causeway_testcontainers::process::run_to_exit(
        &mut command,
        std::time::Duration::from_secs(20),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("CAUSEWAY__ACCESS__TOKENS"), "{stderr}");
    assert!(!stderr.contains("do-not-print-this-secret"), "{stderr}");
}
