//! The native backend: `native/stack.sh` (the script `make up` runs) starts Apache Kafka, Redis,
//! ClickHouse and the schema registry as processes on 127.0.0.1 and records their endpoints in `<stack dir>/stack.env`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::Stack;

/// The repository root (this crate lives in `<root>/testcontainers`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".."))
}

/// The folder holding the stack's data, logs and tools (`CAUSEWAY_STACK_DIR`, default `<repo>/.stack`).
pub fn stack_dir() -> PathBuf {
    std::env::var_os("CAUSEWAY_STACK_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".stack"))
}

/// The Python of the stack's venv, with the outside clients of `testcontainers/python/requirements.txt`
/// (Confluent's client, Avro's reference checker). Panics, naming the fix, when it is missing.
pub fn python() -> PathBuf {
    let python = stack_dir().join("venv/bin/python");
    if !python.exists() {
        panic!(
            "{} is missing: the Python test clients are not installed (run `make setup`, or `{} install`)",
            python.display(),
            script().display()
        );
    }
    python
}

/// A script under `testcontainers/python/`.
pub fn python_script(name: &str) -> PathBuf {
    repo_root().join("testcontainers/python").join(name)
}

/// Run `testcontainers/python/<script>` with `args` in the stack's venv (up to a minute); its stdout,
/// trimmed. Panics with its stderr when it fails. Blocks: from async code, call in `spawn_blocking`.
pub fn run_python(script: &str, args: &[String]) -> String {
    let mut command = Command::new(python());
    command.arg(python_script(script)).args(args);
    let (status, out, err) =
        crate::process::run_to_exit(&mut command, std::time::Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("{script}: {e}"));
    assert!(status.success(), "{script} failed:\n{err}");
    out.trim().to_string()
}

/// The stack script.
pub fn script() -> PathBuf {
    repo_root().join("testcontainers/native/stack.sh")
}

/// Start the stack if it is not running (installing what is missing), then read its endpoints.
pub fn up() -> Result<Stack, String> {
    let script = script();
    let output = Command::new("bash")
        .arg(&script)
        .arg("up")
        .output()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    if !output.status.success() {
        return Err(format!(
            "{} up failed ({}):\n{}",
            script.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    endpoints()
}

/// The endpoints of the running stack, from `stack.sh env`.
pub fn endpoints() -> Result<Stack, String> {
    let script = script();
    let output = Command::new("bash")
        .arg(&script)
        .arg("env")
        .output()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).trim().to_string());
    }
    parse_env(&String::from_utf8_lossy(&output.stdout))
}

fn parse_env(text: &str) -> Result<Stack, String> {
    let get = |key: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(key)?.strip_prefix('='))
            .map(str::to_string)
            .ok_or_else(|| format!("the stack's env has no {key}"))
    };
    Ok(Stack {
        kafka_bootstrap: get("KAFKA_BOOTSTRAP")?,
        redis_url: get("REDIS_URL")?,
        clickhouse_url: get("CLICKHOUSE_URL")?,
        registry_url: get("REGISTRY_URL")?,
    })
}

/// Start this repository's schema registry (from `CAUSEWAY_BIN_DIR`, default `target/debug`) against
/// `kafka_bootstrap`, on free ports, and wait until it is ready: for backends that do not run
/// `stack.sh`. Returns the process and the API's URL.
pub fn start_registry(
    kafka_bootstrap: &str,
) -> Result<(crate::process::ServiceProcess, String), String> {
    let bin_dir = std::env::var_os("CAUSEWAY_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/debug"));
    let bin = bin_dir.join("schema-registry");
    let config = repo_root().join("services/schema-registry/schema-registry.toml");
    let api = format!("127.0.0.1:{}", crate::process::free_port());
    let mut process = crate::process::ServiceProcess::start(
        &bin,
        &config,
        &[
            ("CAUSEWAY__KAFKA__BOOTSTRAP_SERVERS", kafka_bootstrap),
            ("CAUSEWAY__REGISTRY__LISTEN", api.as_str()),
        ],
    )?;
    process.wait_ready(std::time::Duration::from_secs(60))?;
    Ok((process, format!("http://{api}")))
}

/// A stack of its own for a test that must break or stop something (kill Kafka, run `down`): its own
/// folder and free ports, so the shared stack is left alone. Dropping it stops it and deletes its folder,
/// also when the test fails.
#[derive(Debug)]
pub struct TempStack {
    /// Its folder (`CAUSEWAY_STACK_DIR`).
    pub dir: PathBuf,
    /// The ports it was asked to use, by variable.
    pub ports: Vec<(&'static str, u16)>,
    /// Kafka as one combined node (`false`) or a controller and a broker process (`true`).
    pub split_kafka: bool,
}

impl TempStack {
    /// A stack not started yet: a folder name and free ports.
    pub fn new() -> Self {
        let ports = [
            "CAUSEWAY_STACK_KAFKA_PORT",
            "CAUSEWAY_STACK_KAFKA_CONTROLLER_PORT",
            "CAUSEWAY_STACK_REDIS_PORT",
            "CAUSEWAY_STACK_CLICKHOUSE_HTTP_PORT",
            "CAUSEWAY_STACK_CLICKHOUSE_TCP_PORT",
            "CAUSEWAY_STACK_REGISTRY_PORT",
            "CAUSEWAY_STACK_REGISTRY_ADMIN_PORT",
        ]
        .into_iter()
        .map(|var| (var, crate::process::free_port()))
        .collect();
        Self {
            dir: std::env::temp_dir().join(crate::unique("stack")),
            ports,
            split_kafka: false,
        }
    }

    /// The same with Kafka as a controller process and a broker process (the production layout), so
    /// that [`TempStack::kill`]`("kafka")` kills the broker alone.
    pub fn with_split_kafka() -> Self {
        let mut stack = Self::new();
        stack.split_kafka = true;
        stack
    }

    /// The port asked for `var`.
    pub fn port(&self, var: &str) -> u16 {
        self.ports
            .iter()
            .find(|(v, _)| *v == var)
            .map(|(_, p)| *p)
            .unwrap_or(0)
    }

    /// Kill `component` (`kafka`, `redis`, `clickhouse`) with SIGKILL, as a crash would; its data stays.
    /// `kafka` is the broker (with the controller, in the combined layout).
    pub fn kill(&self, component: &str) {
        let pidfile = self.dir.join(component).join(format!("{component}.pid"));
        let pid = std::fs::read_to_string(&pidfile)
            .unwrap_or_else(|e| panic!("{}: {e}", pidfile.display()));
        let killed = Command::new("kill")
            .args(["-KILL", pid.trim()])
            .status()
            .unwrap_or_else(|e| panic!("cannot run kill: {e}"));
        assert!(killed.success(), "kill -KILL {} ({component})", pid.trim());
    }

    /// Start again what is not running, on the same data and ports, as an orchestrator would after a
    /// crash. Blocks until every component answers; panics with the script's output if one does not.
    pub fn restart(&self) {
        let (code, output) = self.run("up", true);
        assert_eq!(code, Some(0), "the stack did not start again:\n{output}");
    }

    /// Run `stack.sh <verb>` on it (the ports passed only when `with_ports`): exit code and output.
    pub fn run(&self, verb: &str, with_ports: bool) -> (Option<i32>, String) {
        let mut command = Command::new("bash");
        command
            .arg(script())
            .arg(verb)
            .env("CAUSEWAY_STACK_DIR", &self.dir);
        if with_ports {
            for (var, port) in &self.ports {
                command.env(var, port.to_string());
            }
            let layout = if self.split_kafka {
                "split"
            } else {
                "combined"
            };
            command.env("CAUSEWAY_STACK_KAFKA_LAYOUT", layout);
        }
        match crate::process::run_to_exit(&mut command, std::time::Duration::from_secs(300)) {
            Ok((status, out, err)) => (status.code(), format!("{out}{err}")),
            Err(e) => (None, e),
        }
    }

    /// Start it; panics with the script's output when it cannot.
    pub fn up(&self) -> Stack {
        let (code, out) = self.run("up", true);
        if code != Some(0) {
            panic!("the test's own stack did not start:\n{out}");
        }
        Stack {
            kafka_bootstrap: format!("127.0.0.1:{}", self.port("CAUSEWAY_STACK_KAFKA_PORT")),
            redis_url: format!(
                "redis://127.0.0.1:{}",
                self.port("CAUSEWAY_STACK_REDIS_PORT")
            ),
            clickhouse_url: format!(
                "http://127.0.0.1:{}",
                self.port("CAUSEWAY_STACK_CLICKHOUSE_HTTP_PORT")
            ),
            registry_url: format!(
                "http://127.0.0.1:{}",
                self.port("CAUSEWAY_STACK_REGISTRY_PORT")
            ),
        }
    }
}

impl Default for TempStack {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TempStack {
    /// Stops the stack. Its folder (data and logs) is deleted after a passing test and kept after a
    /// failing one, for its logs and topics to be read.
    fn drop(&mut self) {
        if !self.dir.exists() {
            return;
        }
        if std::thread::panicking() {
            let _ = self.run("down", false);
            eprintln!(
                "the test failed: its stack's data and logs are kept in {}",
                self.dir.display()
            );
        } else {
            let _ = self.run("wipe", false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_env_file() {
        let s = parse_env(
            "KAFKA_BOOTSTRAP=127.0.0.1:1\nREDIS_URL=redis://127.0.0.1:2\nCLICKHOUSE_URL=http://127.0.0.1:3\n\
             REGISTRY_URL=http://127.0.0.1:4\n",
        );
        assert_eq!(
            s,
            Ok(Stack {
                kafka_bootstrap: "127.0.0.1:1".into(),
                redis_url: "redis://127.0.0.1:2".into(),
                clickhouse_url: "http://127.0.0.1:3".into(),
                registry_url: "http://127.0.0.1:4".into(),
            })
        );
        assert!(parse_env("KAFKA_BOOTSTRAP=x\n").is_err());
    }
}

/// A three-broker Kafka cluster of a test's own (`native/kafka-cluster.sh`): replication 3,
/// `min.insync.replicas` 2, for tests that lose a broker. It uses the stack's Kafka jars. Dropping it
/// kills every node and deletes its folder.
#[derive(Debug)]
pub struct KafkaCluster {
    dir: PathBuf,
    /// The bootstrap servers, all three.
    pub bootstrap: String,
}

impl KafkaCluster {
    /// Start it (the shared stack is started first, for its Kafka jars); panics saying why it cannot.
    pub fn start() -> Self {
        let _ = crate::stack();
        let dir = std::env::temp_dir().join(crate::unique("cluster"));
        let ports: Vec<String> = (0..6)
            .map(|_| crate::process::free_port().to_string())
            .collect();
        let mut command = Command::new("bash");
        command
            .arg(repo_root().join("testcontainers/native/kafka-cluster.sh"))
            .arg("up")
            .arg(&dir)
            .args(&ports);
        let (status, out, err) =
            crate::process::run_to_exit(&mut command, std::time::Duration::from_secs(180))
                .unwrap_or_else(|e| panic!("kafka-cluster.sh: {e}"));
        assert!(
            status.success(),
            "the three-broker cluster did not start:\n{err}"
        );
        Self {
            dir,
            bootstrap: out.trim().to_string(),
        }
    }

    /// SIGKILL node `node` (its broker id, 1..3).
    pub fn kill(&self, node: i32) {
        let mut command = Command::new("bash");
        command
            .arg(repo_root().join("testcontainers/native/kafka-cluster.sh"))
            .arg("kill")
            .arg(&self.dir)
            .arg(node.to_string());
        let (status, _, err) =
            crate::process::run_to_exit(&mut command, std::time::Duration::from_secs(30))
                .unwrap_or_else(|e| panic!("kafka-cluster.sh: {e}"));
        assert!(status.success(), "cannot kill node {node}: {err}");
    }
}

impl Drop for KafkaCluster {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(repo_root().join("testcontainers/native/kafka-cluster.sh"))
            .arg("down")
            .arg(&self.dir)
            .status();
    }
}
