//! The server under test: a `tek serve` child process on 127.0.0.1 with a temporary data
//! directory, so its CPU time and memory can be read from `/proc/<pid>` apart from the load
//! generators'. Devices are provisioned into the directory before the server starts.

use super::progress;
use anyhow::{bail, Context};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tek_server::storage::sqlite::Sqlite;

/// A provisioned device: id and key.
#[derive(Clone)]
pub struct DeviceIdentity {
    /// Device id.
    pub id: u32,
    /// The 128-bit key.
    pub key: [u8; 16],
}

/// Creates devices `1..=count` with fresh keys in the SQLite database of `dir`.
pub fn provision(dir: &Path, count: u32) -> anyhow::Result<Vec<DeviceIdentity>> {
    let db = Sqlite::open_dir(dir).context("cannot create the benchmark database")?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let fleet = tek_server::provision::provision(&db, Some(1), count, "bench", now)?;
    fleet
        .device
        .iter()
        .map(|d| {
            let key = d.key().context("provisioned key is not hex")?;
            Ok(DeviceIdentity {
                id: d.id,
                key: key.0,
            })
        })
        .collect()
}

/// A free port on 127.0.0.1 (TCP and UDP), chosen by the kernel. Another process could take it
/// before the child binds it; the child then fails to start and says so.
fn free_port() -> anyhow::Result<u16> {
    for _ in 0..20 {
        let udp = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
        let port = udp.local_addr()?.port();
        if std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no free port on 127.0.0.1")
}

/// A running `tek serve` child. Dropping it stops the server (SIGTERM, then SIGKILL).
pub struct ServerProcess {
    child: Child,
    /// UDP address of the server.
    pub udp: SocketAddr,
    /// HTTP address of the server.
    pub http: SocketAddr,
    /// Its data directory.
    pub data: PathBuf,
}

impl ServerProcess {
    /// Starts `tek serve` on `data` (already provisioned) with an optional TOML configuration
    /// file and waits until `/healthz` answers.
    pub fn start(data: &Path, config: Option<&str>) -> anyhow::Result<ServerProcess> {
        let udp = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()?));
        let http = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()?));
        let exe = std::env::current_exe().context("cannot find the tek binary")?;
        let log = std::fs::File::create(data.join("server.log"))?;
        let mut cmd = Command::new(exe);
        cmd.arg("serve")
            .arg("--udp")
            .arg(udp.to_string())
            .arg("--http")
            .arg(http.to_string())
            .arg("--data")
            .arg(data);
        if let Some(text) = config {
            let path = data.join("bench-server.toml");
            std::fs::write(&path, text)?;
            cmd.arg("--config").arg(path);
        }
        let child = cmd
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("cannot start tek serve")?;
        let mut server = ServerProcess {
            child,
            udp,
            http,
            data: data.to_owned(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = server.child.try_wait() {
                bail!(
                    "tek serve exited at start ({status}); its log: {}",
                    server.log_tail()
                );
            }
            if http_request(http, "GET", "/healthz", None, None).is_ok_and(|(code, _)| code == 200)
            {
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "tek serve did not become healthy in 60 s; its log: {}",
                    server.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        progress!("server pid {} on udp {udp}, http {http}", server.pid());
        Ok(server)
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last lines of the server's log (for error messages).
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.data.join("server.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(5)..].join(" | ")
    }

    /// Stops the server gracefully (SIGTERM: it commits and acknowledges what is queued) and
    /// waits up to 30 s for it to exit.
    pub fn stop(mut self) -> anyhow::Result<()> {
        self.terminate()
    }

    fn terminate(&mut self) -> anyhow::Result<()> {
        if self.child.try_wait()?.is_some() {
            return Ok(());
        }
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child.kill()?;
        self.child.wait()?;
        bail!("tek serve did not stop within 30 s of SIGTERM")
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.terminate();
    }
}

/// One HTTP/1.1 request with `Connection: close`; returns the status code and the body.
/// Enough for the few calls the benchmarks make (health, the JSON API).
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    json: Option<&str>,
) -> anyhow::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(t) = bearer {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    let body = json.unwrap_or("");
    if json.is_some() {
        req.push_str("Content-Type: application/json\r\n");
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    s.write_all(req.as_bytes())?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    let code = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("malformed HTTP response")?;
    let body = resp
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    Ok((code, body))
}

/// One sample of the server's `/metrics` page (e.g. `tek_sessions`).
pub fn metric(http: SocketAddr, name: &str) -> anyhow::Result<f64> {
    let (code, body) = http_request(http, "GET", "/metrics", None, None)?;
    if code != 200 {
        bail!("/metrics answered {code}");
    }
    body.lines()
        .find_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            (k == name).then(|| v.trim().parse().ok()).flatten()
        })
        .with_context(|| format!("/metrics has no {name}"))
}

/// Every sample of a labelled counter family of `/metrics` (e.g. `tek_datagrams_dropped_total`),
/// as a JSON object from the label set to the value.
pub fn metric_family(
    http: SocketAddr,
    name: &str,
) -> anyhow::Result<serde_json::Map<String, serde_json::Value>> {
    let (code, body) = http_request(http, "GET", "/metrics", None, None)?;
    if code != 200 {
        bail!("/metrics answered {code}");
    }
    let prefix = format!("{name}{{");
    Ok(body
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(&prefix)?;
            let (labels, v) = rest.rsplit_once("} ")?;
            let v: f64 = v.trim().parse().ok()?;
            let key = labels
                .split_once('=')
                .map_or(labels, |(_, v)| v)
                .trim_matches('"');
            Some((key.to_owned(), serde_json::json!(v)))
        })
        .collect())
}
