//! `native/stack.sh` itself, on a second stack of its own (own folder, own free ports), so the shared
//! stack the other tests use is left alone: `up` starts all four components and is a no-op the second
//! time, `status` tells, `down` leaves no process behind.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use causeway_testcontainers::native::script;
use causeway_testcontainers::process::{free_port, run_to_exit};
use causeway_testcontainers::unique;

fn stack(dir: &Path, ports: &[(&str, u16)], verb: &str) -> (Option<i32>, String) {
    let mut command = Command::new("bash");
    command
        .arg(script())
        .arg(verb)
        .env("CAUSEWAY_STACK_DIR", dir);
    for (var, port) in ports {
        command.env(var, port.to_string());
    }
    let (status, out, err) =
        run_to_exit(&mut command, Duration::from_secs(300)).unwrap_or_else(|e| panic!("{e}"));
    (status.code(), format!("{out}{err}"))
}

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
    let dir = std::env::temp_dir().join(unique("stack"));
    let ports = [
        ("CAUSEWAY_STACK_KAFKA_PORT", free_port()),
        ("CAUSEWAY_STACK_KAFKA_CONTROLLER_PORT", free_port()),
        ("CAUSEWAY_STACK_REDIS_PORT", free_port()),
        ("CAUSEWAY_STACK_CLICKHOUSE_HTTP_PORT", free_port()),
        ("CAUSEWAY_STACK_CLICKHOUSE_TCP_PORT", free_port()),
        ("CAUSEWAY_STACK_REGISTRY_PORT", free_port()),
        ("CAUSEWAY_STACK_REGISTRY_ADMIN_PORT", free_port()),
    ];

    let (code, out) = stack(&dir, &ports, "up");
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("started kafka redis clickhouse"), "{out}");
    let pid_files = [
        "kafka/kafka.pid",
        "redis/redis.pid",
        "clickhouse/clickhouse.pid",
    ]
    .map(|p| dir.join(p));
    let pids: Vec<u32> = pid_files
        .iter()
        .map(|f| pid_alive(f).unwrap_or_else(|| panic!("{} names no live process", f.display())))
        .collect();

    let env = std::fs::read_to_string(dir.join("stack.env")).unwrap_or_default();
    assert!(
        env.contains(&format!("KAFKA_BOOTSTRAP=127.0.0.1:{}", ports[0].1)),
        "{env}"
    );

    // A second `up` (even with other ports asked for) acts on the stack that runs.
    let (code, out) = stack(&dir, &[], "up");
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("already running"), "{out}");
    let again: Vec<Option<u32>> = pid_files.iter().map(|f| pid_alive(f)).collect();
    assert_eq!(again, pids.iter().copied().map(Some).collect::<Vec<_>>());

    let (code, out) = stack(&dir, &[], "status");
    assert_eq!(code, Some(0), "{out}");

    let (code, out) = stack(&dir, &[], "down");
    assert_eq!(code, Some(0), "{out}");
    for pid in &pids {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "process {pid} survived `down`:\n{out}"
        );
    }
    let (code, out) = stack(&dir, &[], "status");
    assert_eq!(
        code,
        Some(1),
        "status after down must say the stack is down:\n{out}"
    );
    assert!(out.contains("kafka down"), "{out}");

    let (code, out) = stack(&dir, &[], "wipe");
    assert_eq!(code, Some(0), "{out}");
    assert!(!dir.exists());
}
