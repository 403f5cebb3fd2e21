//! The Kafka Streams baseline that `make bench` measures the processor against runs the same logic:
//! on one fixed input (every command type, every rule accepted and rejected, version conflicts,
//! commands sent again, the dedup window's count, age and byte bounds, reasons cut),
//! `causeway-bench baseline-check` runs the aggregate processor and the baseline
//! (built from Maven Central jars by bench/streams/build.sh) side by side and compares every event and
//! result they write, event ids and clocks aside.

use std::process::Command;

use causeway_testcontainers::native::repo_root;

#[test]
fn kafka_streams_baseline_writes_the_processors_events_and_results() {
    causeway_testcontainers::stack();
    let bin_dir = std::env::var_os("CAUSEWAY_BIN_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/debug"));
    let processor = bin_dir.join("aggregate-processor");
    assert!(
        processor.exists(),
        "{} is missing: build the workspace first (make build)",
        processor.display()
    );
    let out = Command::new(env!("CARGO_BIN_EXE_causeway-bench"))
        .current_dir(repo_root())
        .arg("baseline-check")
        .arg("--processor-bin")
        .arg(&processor)
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap_or_else(|e| panic!("cannot run causeway-bench: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "baseline-check failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(
        stdout.contains("Kafka Streams wrote the same"),
        "unexpected report:\n{stdout}\n{stderr}"
    );
}
