//! Running the suite's binaries as processes in tests: start with a config, wait for `/readyz`, query
//! the admin server, stop with SIGTERM and check the exit status. Output goes to a log file that
//! failures quote.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A free TCP port on 127.0.0.1 (bound, then released; good enough on a test machine).
pub fn free_port() -> u16 {
    match TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()) {
        Ok(addr) => addr.port(),
        Err(e) => panic!("no free port on 127.0.0.1: {e}"),
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
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
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
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("write to {addr}: {e}"))?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| format!("read from {addr}: {e}"))?;
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("not an HTTP response: {response:?}"))?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default();
    Ok((status, body))
}
