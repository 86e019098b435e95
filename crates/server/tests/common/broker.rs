//! A mosquitto broker for the MQTT tests: Debian's binary, killed when the test drops it.

use std::path::PathBuf;
use std::process::Child;

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

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
