//! A mosquitto broker for the MQTT tests: Debian's binary, killed when the test drops it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free TCP port on loopback (for the broker to listen on).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The mosquitto binary (scripts/setup.sh installs it).
pub fn mosquitto() -> PathBuf {
    [
        "/usr/sbin/mosquitto",
        "/usr/bin/mosquitto",
        "/usr/local/sbin/mosquitto",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
    .expect("mosquitto not found: install Debian's mosquitto (scripts/setup.sh does)")
}

/// A running broker, stopped when dropped.
pub struct Broker(pub Child);

impl Broker {
    /// Starts mosquitto with the configuration `conf` (written to `dir`, its log there too) and
    /// waits, at most 10 s, until every port of `ports` takes connections.
    pub fn start(dir: &Path, conf: &str, ports: &[u16]) -> Broker {
        let path = dir.join("mosquitto.conf");
        std::fs::write(&path, conf).unwrap();
        let broker = Broker(
            Command::new(mosquitto())
                .arg("-c")
                .arg(&path)
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(dir.join("mosquitto.log")).unwrap())
                .spawn()
                .unwrap(),
        );
        let t = Instant::now();
        while ports
            .iter()
            .any(|&p| std::net::TcpStream::connect(("127.0.0.1", p)).is_err())
        {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "mosquitto did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        broker
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
