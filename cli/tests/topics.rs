//! `causeway topics` as a user runs it, against the real Kafka of the test stack.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use causeway_testcontainers::process::{free_port, run_to_exit};
use causeway_testcontainers::{stack, unique};

const BIN: &str = env!("CARGO_BIN_EXE_causeway");

fn topology_file(body: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("{}.toml", unique("topology")));
    std::fs::write(&path, body).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    path
}

fn causeway(args: &[&str], file: &Path, servers: &str) -> (Option<i32>, String, String) {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .arg("--file")
        .arg(file)
        .arg("--bootstrap-servers")
        .arg(servers)
        .arg("--timeout")
        .arg("10");
    let (status, out, err) =
        run_to_exit(&mut command, Duration::from_secs(60)).unwrap_or_else(|e| panic!("{e}"));
    (status.code(), out, err)
}

#[test]
fn apply_creates_then_is_a_no_op_then_reports_drift() {
    let servers = stack().kafka_bootstrap.as_str();
    let (events, changelog) = (unique("cli.events"), unique("cli.changelog"));
    let declared = topology_file(&format!(
        "[defaults]\npartitions = 2\nreplication_factor = 1\n\
         [[topic]]\nname = \"{events}\"\nretention_ms = -1\n\
         [[topic]]\nname = \"{changelog}\"\ncleanup_policy = \"compact\"\n"
    ));

    let (code, out, err) = causeway(&["topics", "plan"], &declared, servers);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains(&format!("would create {events}")), "{out}");

    let (code, out, err) = causeway(&["topics", "apply"], &declared, servers);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains(&format!("created      {events} (2 partitions")),
        "{out}"
    );
    assert!(out.contains("2 created, 0 in sync, 0 drifted"), "{out}");

    let (code, out, err) = causeway(&["topics", "apply"], &declared, servers);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("0 created, 2 in sync, 0 drifted"), "{out}");

    let drifted = topology_file(&format!(
        "[defaults]\npartitions = 2\nreplication_factor = 1\n\
         [[topic]]\nname = \"{events}\"\npartitions = 4\nretention_ms = -1\n\
         [[topic]]\nname = \"{changelog}\"\ncleanup_policy = \"compact\"\n"
    ));
    let (code, out, err) = causeway(&["topics", "apply"], &drifted, servers);
    assert_eq!(code, Some(3), "{out}{err}");
    assert!(
        out.contains(&format!(
            "DRIFT        {events}: partitions is 2 in the cluster but 4 is declared"
        )),
        "{out}"
    );
    assert!(out.contains("0 created, 1 in sync, 1 drifted"), "{out}");
}

#[test]
fn bad_input_gets_a_clear_error_and_exit_code() {
    let servers = stack().kafka_bootstrap.as_str();
    let bad = topology_file("[[topic]]\nname = \"has space\"\n");
    let (code, _, err) = causeway(&["topics", "apply"], &bad, servers);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("not a legal Kafka topic name"), "{err}");

    let missing = Path::new("/nonexistent/topology.toml");
    let (code, _, err) = causeway(&["topics", "apply"], missing, servers);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("/nonexistent/topology.toml: cannot read"),
        "{err}"
    );

    let fine = topology_file("[[topic]]\nname = \"x\"\n");
    let mut command = Command::new(BIN);
    command
        .args(["topics", "apply", "-X", "acks=0", "--file"])
        .arg(&fine);
    let (status, _, err) =
        run_to_exit(&mut command, Duration::from_secs(20)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("-X acks"), "{err}");

    let closed = format!("127.0.0.1:{}", free_port());
    let mut command = Command::new(BIN);
    command
        .args([
            "topics",
            "apply",
            "--timeout",
            "2",
            "--bootstrap-servers",
            &closed,
            "--file",
        ])
        .arg(&fine);
    let (status, _, err) =
        run_to_exit(&mut command, Duration::from_secs(30)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("no Kafka broker at {closed}")),
        "{err}"
    );
}

#[test]
fn help_describes_the_commands() {
    let (status, out, _) = run_to_exit(
        Command::new(BIN).args(["topics", "--help"]),
        Duration::from_secs(20),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(status.success());
    assert!(out.contains("apply") && out.contains("plan"), "{out}");
}
