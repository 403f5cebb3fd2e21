//! Running the suite's binaries as processes in tests: start with a config, wait for `/readyz`, query
//! the admin server, stop with SIGTERM and check the exit status. Output goes to a log file that
//! failures quote.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A free TCP port on 127.0.0.1 for a server a test starts. It is picked outside the kernel's
/// ephemeral range (net.ipv4.ip_local_port_range), where the outgoing connections of everything
/// running on the machine take their local ports: a port handed out from inside that range can be taken
/// by some client's connection before the server binds it. Never the same port twice in one process.
pub fn free_port() -> u16 {
    use std::sync::Mutex;
    static HANDED_OUT: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let (low, high) = outside_ephemeral_range();
    let span = u32::from(high - low) + 1;
    let mut handed = HANDED_OUT.lock().unwrap_or_else(|p| p.into_inner());
    // Start somewhere different in each process (tests of several binaries may run at once).
    let seed = std::process::id().wrapping_mul(2_654_435_761)
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
    for i in 0..span {
        let port = u16::try_from(u32::from(low) + (seed.wrapping_add(i.wrapping_mul(7919))) % span)
            .unwrap_or(low);
        if handed.contains(&port) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            handed.push(port);
            return port;
        }
    }
    panic!("no free port on 127.0.0.1 in {low}..={high}")
}

/// The ports a test server may take: above the ephemeral range when at least 1000 ports are there,
/// else below it.
fn outside_ephemeral_range() -> (u16, u16) {
    let range =
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap_or_default();
    let mut bounds = range
        .split_whitespace()
        .filter_map(|n| n.parse::<u16>().ok());
    let (first, last) = match (bounds.next(), bounds.next()) {
        (Some(a), Some(b)) => (a, b),
        _ => (32768, 60999),
    };
    if last <= 64_535 {
        (last + 1, 65_535)
    } else {
        (
            first.saturating_sub(10_000).max(1024),
            first.saturating_sub(1).max(1025),
        )
    }
}

/// A service binary running as a child process, with its admin server on a port of its own.
#[derive(Debug)]
pub struct ServiceProcess {
    child: Option<Child>,
    admin: SocketAddr,
    log: PathBuf,
    name: String,
}

impl ServiceProcess {
    /// Start `bin --config <config>` with `env` added and `CAUSEWAY__ADMIN__LISTEN` set to a free port.
    pub fn start(bin: &Path, config: &Path, env: &[(&str, &str)]) -> Result<Self, String> {
        let name = bin
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "service".into());
        let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let log = std::env::temp_dir().join(format!("{}.log", crate::unique(&name)));
        let out = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        let child = Command::new(bin)
            .arg("--config")
            .arg(config)
            .envs(env.iter().copied())
            .env("CAUSEWAY__ADMIN__LISTEN", admin.to_string())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        Ok(Self {
            child: Some(child),
            admin,
            log,
            name,
        })
    }

    /// Its exit status if it has exited on its own (reaped), `None` while it runs.
    pub fn try_exit(&mut self) -> Result<Option<ExitStatus>, String> {
        match self.child.as_mut() {
            None => Err("already stopped".into()),
            Some(child) => child.try_wait().map_err(|e| e.to_string()),
        }
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The admin server's address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
    }

    /// Everything the process has written so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Wait until `/readyz` answers 200. Fails early, with the log, if the process exits.
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(format!(
                    "{} exited ({status}) before it was ready; its log:\n{}",
                    self.name,
                    self.log()
                ));
            }
            if let Ok((200, _)) = self.get("/readyz") {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{} not ready within {timeout:?}; its log:\n{}",
                    self.name,
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `GET path` on the admin server: status code and body.
    pub fn get(&self, path: &str) -> Result<(u16, String), String> {
        http_get(self.admin, path)
    }

    /// Send SIGTERM and wait up to `timeout` for the process to exit; SIGKILL after that.
    pub fn terminate(mut self, timeout: Duration) -> Result<ExitStatus, String> {
        let Some(mut child) = self.child.take() else {
            return Err("already stopped".into());
        };
        signal(child.id(), "TERM")?;
        let deadline = Instant::now() + timeout;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return Ok(status),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                Ok(None) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!(
                        "{} still running {timeout:?} after SIGTERM; killed. Its log:\n{}",
                        self.name,
                        self.log()
                    ));
                }
                Err(e) => return Err(e.to_string()),
            }
        }
    }
}

impl ServiceProcess {
    /// Kill the process with SIGKILL (no chance to clean up, as in a crash) and reap it.
    pub fn kill(mut self) -> Result<ExitStatus, String> {
        let Some(mut child) = self.child.take() else {
            return Err("already stopped".into());
        };
        signal(child.id(), "KILL")?;
        child.wait().map_err(|e| e.to_string())
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn signal(pid: u32, name: &str) -> Result<(), String> {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .map_err(|e| format!("cannot run kill: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("kill -{name} {pid} failed: {status}"))
    }
}

/// Run a command to completion (at most `timeout`): exit status, stdout, stderr.
pub fn run_to_exit(
    command: &mut Command,
    timeout: Duration,
) -> Result<(ExitStatus, String, String), String> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {command:?}: {e}"))?;
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{command:?} did not exit within {timeout:?}"));
            }
            Err(e) => return Err(e.to_string()),
        }
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    if let Some(mut out) = child.stdout.take() {
        let _ = out.read_to_string(&mut stdout);
    }
    if let Some(mut err) = child.stderr.take() {
        let _ = err.read_to_string(&mut stderr);
    }
    Ok((status, stdout, stderr))
}

/// A minimal HTTP/1.1 GET, enough for admin endpoints: status code and body.
pub fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
    http_request(addr, "GET", path, None).map(|r| (r.status, r.body))
}

/// An HTTP response as tests look at it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// The `Content-Type` header, if any.
    pub content_type: Option<String>,
    /// The body, as text.
    pub body: String,
    /// Every header, names in lower case.
    pub headers: Vec<(String, String)>,
}

impl HttpResponse {
    /// The first header named `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A minimal HTTP/1.1 request (one per connection) with an optional JSON body: enough to drive an API
/// in tests without an HTTP client library. Bodies are read to the end of the connection.
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Result<HttpResponse, String> {
    http_request_with(addr, method, path, &[], body)
}

/// [`http_request`] with extra request headers.
pub fn http_request_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Result<HttpResponse, String> {
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    let body = body.unwrap_or("");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/vnd.schemaregistry.v1+json\r\n{extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .map_err(|e| format!("write to {addr}: {e}"))?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| format!("read from {addr}: {e}"))?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("not an HTTP response: {response:?}"))?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("not an HTTP response: {response:?}"))?;
    let content_type = head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("content-type")
            .then(|| value.trim().to_string())
    });
    let headers = head
        .lines()
        .skip(1)
        .filter_map(|line| {
            let (name, value) = line.split_once(':')?;
            Some((name.trim().to_ascii_lowercase(), value.trim().to_string()))
        })
        .collect();
    Ok(HttpResponse {
        status,
        content_type,
        body: body.to_string(),
        headers,
    })
}

/// The checks every service binary passes (one test per service calls this): started with its sample
/// config (`env` points it at the test stack), it reports ready, answers `/healthz` and `/metrics`
/// (naming itself in `causeway_service_info`), and exits 0 within a few seconds of SIGTERM.
pub fn assert_service_lifecycle(bin: &Path, sample_config: &Path, env: &[(&str, &str)]) {
    let name = bin
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut service =
        ServiceProcess::start(bin, sample_config, env).unwrap_or_else(|e| panic!("{e}"));
    service
        .wait_ready(Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e}"));
    let (status, body) = service.get("/healthz").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    let (status, metrics) = service.get("/metrics").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status, 200);
    assert!(
        metrics.contains(&format!("causeway_service_info{{service=\"{name}\"")),
        "{metrics}"
    );
    assert!(
        metrics.lines().any(|l| l == "causeway_service_ready 1"),
        "{metrics}"
    );
    let (status, _) = service.get("/nope").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status, 404);

    let log_before = service.log();
    // terminate() fails the test if the process is still running 10 s after SIGTERM.
    let exit = service
        .terminate(Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        exit.success(),
        "{name} exited with {exit} after SIGTERM; log:\n{log_before}"
    );
}

/// The config errors every service binary refuses at start, exiting 2 with a message that names the
/// key and where it came from: an unknown key in the file, an unknown key in the environment, a value
/// of the wrong form, and a value that fails validation.
pub fn assert_refuses_bad_config(bin: &Path, sample_config: &Path) {
    let sample = std::fs::read_to_string(sample_config)
        .unwrap_or_else(|e| panic!("{}: {e}", sample_config.display()));
    let bad_file = std::env::temp_dir().join(format!("{}.toml", crate::unique("bad-config")));
    std::fs::write(&bad_file, format!("colour = \"blue\"\n{sample}"))
        .unwrap_or_else(|e| panic!("{}: {e}", bad_file.display()));

    let cases: [(&Path, (&str, &str), &[&str]); 4] = [
        (
            &bad_file,
            ("CAUSEWAY_UNRELATED", "x"),
            &["`colour`", "unknown field", "file "],
        ),
        (
            sample_config,
            ("CAUSEWAY__KAFKA__BOOTSTRAP", "x:1"),
            &["`kafka.bootstrap`", "CAUSEWAY__KAFKA__BOOTSTRAP"],
        ),
        (
            sample_config,
            ("CAUSEWAY__ADMIN__LISTEN", "not-an-address"),
            &["`admin.listen`", "CAUSEWAY__ADMIN__LISTEN"],
        ),
        (
            sample_config,
            ("CAUSEWAY__KAFKA__BOOTSTRAP_SERVERS", "no-port"),
            &["key `kafka.bootstrap_servers`", "not host:port"],
        ),
    ];
    for (file, (var, value), expected) in cases {
        let mut command = Command::new(bin);
        command.arg("--config").arg(file).env(var, value);
        let (status, _, stderr) =
            run_to_exit(&mut command, Duration::from_secs(20)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            status.code(),
            Some(2),
            "{var}={value}: {status}; stderr:\n{stderr}"
        );
        for needle in expected {
            assert!(
                stderr.contains(needle),
                "{var}={value}: stderr lacks {needle:?}:\n{stderr}"
            );
        }
    }
    let _ = std::fs::remove_file(bad_file);
}

/// The two tests every service binary has, for its `tests/binary.rs`:
///
/// ```text
/// causeway_testcontainers::service_binary_tests!("projector-redis",
///     "CAUSEWAY__REDIS__URL" => |s| s.redis_url.clone());
/// ```
///
/// The name is the binary (and package) name; each `VAR => |stack| value` sets one more config key for
/// the run (Kafka's bootstrap servers are always set to the test stack's).
#[macro_export]
macro_rules! service_binary_tests {
    ($bin:literal $(, $var:literal => $value:expr)* $(,)?) => {
        $crate::service_binary_tests!(@tests $bin,
            starts_with_its_sample_config_reports_ready_and_stops_on_sigterm,
            assert_service_lifecycle $(, $var => $value)*);
    };
    (@tests $bin:literal, $lifecycle_test:ident, $lifecycle:ident $(, $var:literal => $value:expr)*) => {
        #[test]
        fn $lifecycle_test() {
            let s: &$crate::Stack = $crate::stack();
            let values: ::std::vec::Vec<(&str, ::std::string::String)> = vec![
                ("CAUSEWAY__KAFKA__BOOTSTRAP_SERVERS", s.kafka_bootstrap.clone()),
                $(($var, ($value)(s)),)*
            ];
            let env: ::std::vec::Vec<(&str, &str)> =
                values.iter().map(|(k, v)| (*k, v.as_str())).collect();
            $crate::process::$lifecycle(
                ::std::path::Path::new(env!(concat!("CARGO_BIN_EXE_", $bin))),
                ::std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/", $bin, ".toml")),
                &env,
            );
        }

        #[test]
        fn refuses_bad_config_naming_the_key() {
            $crate::process::assert_refuses_bad_config(
                ::std::path::Path::new(env!(concat!("CARGO_BIN_EXE_", $bin))),
                ::std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/", $bin, ".toml")),
            );
        }
    };
}
