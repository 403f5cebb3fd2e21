//! `native/stack.sh` itself, on a stack of its own (own folder, own free ports), so the shared stack
//! the other tests use is left alone: `up` starts all four components and is a no-op the second time,
//! `status` tells, `down` leaves no process behind.

use std::path::Path;

use causeway_testcontainers::native::TempStack;

fn pid_alive(pid_file: &Path) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(pid_file)
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Path::new(&format!("/proc/{pid}")).exists().then_some(pid)
}

#[test]
fn up_is_idempotent_and_down_leaves_nothing_behind() {
    let own = TempStack::new();
    let (code, out) = own.run("up", true);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("started kafka redis clickhouse registry"),
        "{out}"
    );
    let pid_files = [
        "kafka/kafka.pid",
        "redis/redis.pid",
        "clickhouse/clickhouse.pid",
        "registry/registry.pid",
    ]
    .map(|p| own.dir.join(p));
    let pids: Vec<u32> = pid_files
        .iter()
        .map(|f| pid_alive(f).unwrap_or_else(|| panic!("{} names no live process", f.display())))
        .collect();

    let env = std::fs::read_to_string(own.dir.join("stack.env")).unwrap_or_default();
    let kafka_port = own.port("CAUSEWAY_STACK_KAFKA_PORT");
    let registry_port = own.port("CAUSEWAY_STACK_REGISTRY_PORT");
    assert!(
        env.contains(&format!("KAFKA_BOOTSTRAP=127.0.0.1:{kafka_port}")),
        "{env}"
    );
    assert!(
        env.contains(&format!("REGISTRY_URL=http://127.0.0.1:{registry_port}")),
        "{env}"
    );

    // A second `up` (without the ports) acts on the stack that runs.
    let (code, out) = own.run("up", false);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("already running"), "{out}");
    let again: Vec<Option<u32>> = pid_files.iter().map(|f| pid_alive(f)).collect();
    assert_eq!(again, pids.iter().copied().map(Some).collect::<Vec<_>>());

    let (code, out) = own.run("status", false);
    assert_eq!(code, Some(0), "{out}");

    let (code, out) = own.run("down", false);
    assert_eq!(code, Some(0), "{out}");
    for pid in &pids {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "process {pid} survived `down`:\n{out}"
        );
    }
    let (code, out) = own.run("status", false);
    assert_eq!(
        code,
        Some(1),
        "status after down must say the stack is down:\n{out}"
    );
    assert!(out.contains("kafka down"), "{out}");

    let dir = own.dir.clone();
    drop(own);
    assert!(!dir.exists(), "dropping the stack deletes its folder");
}
