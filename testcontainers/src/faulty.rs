//! A fault-injecting TCP proxy on loopback, put between a service and a real component (the schema
//! registry, say) to make that component fail the way it fails in production, for as long as a test
//! wants, while every other test keeps using the real one directly.
//!
//! Modes ([`Mode`]): pass everything through; refuse (accept and close at once, as a process going
//! down does: the client sees its connection closed); or answer every HTTP request with a fixed status
//! and body (a registry answering 500, or 401 after a credential rotation). Changing the mode cuts the
//! connections already open, so a client's pooled keep-alive connection cannot slip past a fault.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// What the proxy does with a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Pass bytes both ways to the target.
    Pass,
    /// Accept and close at once.
    Refuse,
    /// Answer each HTTP request with this status and JSON body, then close.
    Answer {
        /// HTTP status, e.g. 500.
        status: u16,
        /// The body, e.g. `{"error_code":50001,"message":"..."}`.
        body: String,
    },
}

#[derive(Debug)]
struct Shared {
    mode: Mutex<Mode>,
    open: Mutex<Vec<TcpStream>>,
    stop: AtomicBool,
}

/// A running proxy; stops when dropped.
#[derive(Debug)]
pub struct FaultyProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl FaultyProxy {
    /// A proxy on 127.0.0.1 (a free port) in front of `target`, passing through.
    pub fn start(target: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            mode: Mutex::new(Mode::Pass),
            open: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        });
        let accept = {
            let shared = Arc::clone(&shared);
            std::thread::spawn(move || accept_loop(&listener, target, &shared))
        };
        Ok(Self {
            addr,
            shared,
            accept: Some(accept),
        })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Switch to `mode`, cutting every open connection.
    pub fn set(&self, mode: Mode) {
        *lock(&self.shared.mode) = mode;
        for stream in lock(&self.shared.open).drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for FaultyProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        self.set(Mode::Refuse);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

fn accept_loop(listener: &TcpListener, target: SocketAddr, shared: &Arc<Shared>) {
    while !shared.stop.load(Ordering::Acquire) {
        let client = match listener.accept() {
            Ok((client, _)) => client,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
            Err(_) => continue,
        };
        let _ = client.set_nonblocking(false);
        let mode = lock(&shared.mode).clone();
        match mode {
            Mode::Refuse => drop(client),
            Mode::Answer { status, body } => {
                std::thread::spawn(move || answer(client, status, &body));
            }
            Mode::Pass => {
                let Ok(upstream) = TcpStream::connect_timeout(&target, Duration::from_secs(5))
                else {
                    continue;
                };
                {
                    let mut open = lock(&shared.open);
                    for s in [&client, &upstream] {
                        if let Ok(c) = s.try_clone() {
                            open.push(c);
                        }
                    }
                }
                pipe(&client, &upstream);
                pipe(&upstream, &client);
            }
        }
    }
}

/// Copy `from` to `to` on a thread until either closes.
fn pipe(from: &TcpStream, to: &TcpStream) {
    let (Ok(mut from), Ok(mut to)) = (from.try_clone(), to.try_clone()) else {
        return;
    };
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from, &mut to);
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
    });
}

fn reason(status: u16) -> &'static str {
    match status {
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Injected",
    }
}

/// Read one request head (and its declared body), answer it, close.
fn answer(mut client: TcpStream, status: u16, body: &str) {
    let _ = client.set_read_timeout(Some(Duration::from_secs(5)));
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !seen.windows(4).any(|w| w == b"\r\n\r\n") && seen.len() < 1 << 20 {
        match client.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
    let response = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: application/vnd.schemaregistry.v1+json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        reason(status),
        body.len()
    );
    let _ = client.write_all(response.as_bytes());
    let _ = client.shutdown(Shutdown::Both);
}
