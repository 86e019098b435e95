//! NAT for real (docs/SECURITY.md, issue 11 item 8): a real controller (`tek-controller` over a
//! UDP socket) in a network namespace behind **two** layers of Linux netfilter masquerade, each
//! with a 20 s UDP conntrack timeout, talks to `tek serve` in a fourth namespace.
//!
//! ```text
//!  dev 10.200.1.2 -- 10.200.1.1 nat1 10.200.2.2 -- 10.200.2.1 nat2 172.31.3.2 -- 172.31.3.1 srv
//!                      (masquerade, fully-random)     (masquerade, fully-random)    tek serve
//! ```
//!
//! Shown, in one run of about 45 s:
//! 1. the session survives on keepalives alone (keepalive 15 s, pushed by the server as the
//!    device's configuration, below the 20 s NAT timeouts): after 25 s of nothing but keepalives
//!    the device still has its first session and never sent another Hello;
//! 2. a configuration saved on the server then arrives at the device within 1 s (the server
//!    initiates: only an open NAT mapping lets it in);
//! 3. after both NATs' mappings are flushed (`conntrack -F`, rebinding: the outer NAT then picks
//!    a new random external port), a configuration saved at once reaches the device within one
//!    keepalive interval, in the same session.
//!
//! Everything stays inside namespaces this test creates (private test addresses, no route to the
//! outside). It needs root, `ip`, `nft` and `conntrack` (scripts/setup.sh installs them); without
//! root it says so and does nothing. The device runs as a child process of this same test binary
//! (`nat_device_child`, activated by an environment variable) started with `ip netns exec`.

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use tek_controller::{Action, Controller, Endpoint, Iface, IpInfo, Reading, Setup, XorShift};

const CHILD_ENV: &str = "TEK_NAT_DEVICE";
const DEV_IP: Ipv4Addr = Ipv4Addr::new(10, 200, 1, 2);
const SRV_IP: Ipv4Addr = Ipv4Addr::new(172, 31, 3, 1);
const KEEPALIVE_S: u64 = 15;
const NAT_TIMEOUT_S: u64 = 20;

/// The device side, run inside the device namespace. Prints `EVENT ...` lines for the parent.
#[test]
fn nat_device_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return; // only meaningful as the child of `double_nat_keepalive_push_and_rebinding`
    };
    let mut parts = spec.split(',');
    let id: u32 = parts.next().unwrap().parse().unwrap();
    let key_hex = parts.next().unwrap();
    let server = parts.next().unwrap().to_owned();
    let limit_s: u64 = parts.next().unwrap().parse().unwrap();
    let mut key = [0u8; 16];
    for (i, b) in key.iter_mut().enumerate() {
        *b = u8::from_str_radix(&key_hex[2 * i..2 * i + 2], 16).unwrap();
    }
    run_device(id, key, &server, Duration::from_secs(limit_s));
}

enum Todo {
    Send(u16, Endpoint, Vec<u8>),
    Configure,
    Dns(u16),
}

fn run_device(id: u32, key: [u8; 16], server: &str, limit: Duration) {
    let servers = [server];
    let mut ctl = Controller::<tek_controller::log::Log<512>>::new(
        Setup {
            device_id: id,
            key,
            factory_servers: &servers,
            firmware: [0, 1, 0],
            halt: false,
            has_gsm: false,
            stored: None,
        },
        0,
    );
    let start = Instant::now();
    let mut rng = XorShift::new(u64::from(std::process::id()) << 16 | 0x5eed);
    let mut sock: Option<(u16, UdpSocket)> = None;
    let (mut sessions, mut hellos, mut version) = (0, 0, 0);
    let mut next_reading = 0u64;
    let mut buf = [0u8; 2048];
    while start.elapsed() < limit {
        let now = start.elapsed().as_millis() as u64;
        if now >= next_reading {
            ctl.sensor(
                now,
                Reading {
                    power_w: 1200,
                    energy_wh: (now / 1000) as u32,
                    water_cc: Some(2600),
                    air_cc: Some(1900),
                },
            );
            next_reading = now + 10_000;
        }
        loop {
            let todo = match ctl.poll(now, &mut rng) {
                None => break,
                Some(Action::Send {
                    from_port,
                    to,
                    bytes,
                    ..
                }) => Todo::Send(from_port, to, bytes.to_vec()),
                Some(Action::ConfigureEthernet(_)) => Todo::Configure,
                Some(Action::Resolve { token, .. }) => Todo::Dns(token),
                Some(_) => continue,
            };
            match todo {
                Todo::Send(port, to, bytes) => {
                    if sock.as_ref().is_none_or(|(p, _)| *p != port) {
                        let s = UdpSocket::bind(SocketAddrV4::new(DEV_IP, port)).unwrap();
                        sock = Some((port, s));
                    }
                    let to = SocketAddrV4::new(Ipv4Addr::from(to.addr), to.port);
                    // A send error (no route yet) is a lost datagram: the protocol retries.
                    let _ = sock.as_ref().unwrap().1.send_to(&bytes, to);
                }
                Todo::Configure => ctl.ip_configured(
                    now,
                    Iface::Ethernet,
                    IpInfo {
                        ip: DEV_IP.octets(),
                        netmask: [255, 255, 255, 0],
                        gateway: [10, 200, 1, 1],
                        dns: [10, 200, 1, 1],
                        dhcp: true,
                    },
                ),
                Todo::Dns(token) => ctl.dns_answer(now, token, None),
            }
        }
        let st = *ctl.stats();
        if st.hellos != hellos {
            hellos = st.hellos;
            println!("EVENT hellos {hellos}");
        }
        if st.sessions != sessions {
            sessions = st.sessions;
            println!("EVENT sessions {sessions}");
        }
        if ctl.config().0 != version {
            version = ctl.config().0;
            println!("EVENT config {version}");
        }
        let wait = ctl
            .poll_at()
            .min(next_reading)
            .saturating_sub(now)
            .clamp(1, 100);
        let Some((port, s)) = sock.as_ref() else {
            std::thread::sleep(Duration::from_millis(wait));
            continue;
        };
        s.set_read_timeout(Some(Duration::from_millis(wait)))
            .unwrap();
        if let Ok((n, std::net::SocketAddr::V4(from))) = s.recv_from(&mut buf) {
            let now = start.elapsed().as_millis() as u64;
            let from = Endpoint {
                addr: from.ip().octets(),
                port: from.port(),
            };
            let port = *port;
            ctl.receive(now, Iface::Ethernet, from, port, &mut buf[..n]);
        }
    }
}

/// Runs a command, panicking with its output if it fails.
fn run(args: &[&str]) -> String {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The four namespaces; deleted (and everything in them killed) on drop.
struct Lab {
    prefix: String,
    children: Vec<Child>,
}

impl Lab {
    fn ns(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    fn exec(&self, name: &str, args: &[&str]) -> String {
        let ns = self.ns(name);
        let mut all = vec!["ip", "netns", "exec", &ns];
        all.extend_from_slice(args);
        run(&all)
    }

    fn build() -> Lab {
        let lab = Lab {
            prefix: format!("tek{}", std::process::id()),
            children: Vec::new(),
        };
        for n in ["dev", "nat1", "nat2", "srv"] {
            run(&["ip", "netns", "add", &lab.ns(n)]);
            lab.exec(n, &["ip", "link", "set", "lo", "up"]);
        }
        // veth pairs created inside the namespaces, so no name can clash with the host's.
        let link = |a: &str, a_if: &str, a_ip: &str, b: &str, b_if: &str, b_ip: &str| {
            let (na, nb) = (lab.ns(a), lab.ns(b));
            run(&[
                "ip", "-n", &na, "link", "add", a_if, "type", "veth", "peer", "name", b_if,
                "netns", &nb,
            ]);
            run(&["ip", "-n", &na, "addr", "add", a_ip, "dev", a_if]);
            run(&["ip", "-n", &nb, "addr", "add", b_ip, "dev", b_if]);
            run(&["ip", "-n", &na, "link", "set", a_if, "up"]);
            run(&["ip", "-n", &nb, "link", "set", b_if, "up"]);
        };
        link(
            "dev",
            "eth0",
            "10.200.1.2/24",
            "nat1",
            "lan",
            "10.200.1.1/24",
        );
        link(
            "nat1",
            "wan",
            "10.200.2.2/24",
            "nat2",
            "lan",
            "10.200.2.1/24",
        );
        link(
            "nat2",
            "wan",
            "172.31.3.2/24",
            "srv",
            "eth0",
            "172.31.3.1/24",
        );
        // Default routes point inwards-out only; the server's namespace knows no private inside.
        lab.exec(
            "dev",
            &["ip", "route", "add", "default", "via", "10.200.1.1"],
        );
        lab.exec(
            "nat1",
            &["ip", "route", "add", "default", "via", "10.200.2.1"],
        );
        lab.exec(
            "nat2",
            &["ip", "route", "add", "default", "via", "172.31.3.1"],
        );
        let timeout = NAT_TIMEOUT_S.to_string();
        for nat in ["nat1", "nat2"] {
            lab.exec(nat, &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
            for t in ["udp_timeout", "udp_timeout_stream"] {
                let kv = format!("net.netfilter.nf_conntrack_{t}={timeout}");
                lab.exec(nat, &["sysctl", "-qw", &kv]);
            }
            lab.exec(nat, &["nft", "add", "table", "ip", "nat"]);
            lab.exec(
                nat,
                &[
                    "nft",
                    "add chain ip nat post { type nat hook postrouting priority 100 ; }",
                ],
            );
            lab.exec(
                nat,
                &[
                    "nft",
                    "add rule ip nat post oifname \"wan\" masquerade fully-random",
                ],
            );
        }
        lab
    }

    /// The UDP mappings the outer NAT holds (`conntrack -L`).
    fn outer_mappings(&self) -> String {
        self.exec("nat2", &["conntrack", "-L", "-p", "udp"])
            .lines()
            .map(str::trim)
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for n in ["dev", "nat1", "nat2", "srv"] {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.ns(n)])
                .status();
        }
    }
}

fn tek(args: &[&str]) -> String {
    let mut all = vec![env!("CARGO_BIN_EXE_tek")];
    all.extend_from_slice(args);
    run(&all)
}

fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Waits for the device's next `EVENT what value` line; returns the value and when it came.
fn wait_event(
    rx: &mpsc::Receiver<(Instant, String)>,
    what: &str,
    value: u32,
    limit: Duration,
) -> Instant {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((at, line)) => {
                if line == format!("EVENT {what} {value}") {
                    return at;
                }
                if what == "config" || line.starts_with("EVENT sessions") {
                    // Any other event is recorded by the caller's assertions below.
                    eprintln!("device: {line}");
                }
            }
            Err(_) => panic!("no `{what} {value}` from the device within {limit:?}"),
        }
    }
}

#[test]
fn double_nat_keepalive_push_and_rebinding() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    // Root check without libc: /proc/self/status carries the effective uid.
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let root = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .is_some_and(|l| l.split_whitespace().nth(2) == Some("0"));
    if !root {
        eprintln!("SKIPPED double_nat_keepalive_push_and_rebinding: needs root (CI runs as root)");
        return;
    }
    for cmd in ["ip", "nft", "conntrack", "sysctl"] {
        assert!(have(cmd), "{cmd} is missing: run scripts/setup.sh");
    }

    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let data_s = data.to_str().unwrap();
    let fleet = tmp.path().join("fleet.toml");
    tek(&[
        "device",
        "add",
        "--data",
        data_s,
        "--id",
        "1",
        "--out",
        fleet.to_str().unwrap(),
    ]);
    // The device's keepalive below the NATs' timeout, through the server's configuration.
    tek(&[
        "device",
        "config",
        "--data",
        data_s,
        "--id",
        "1",
        "--set",
        &format!("keepalive={KEEPALIVE_S}"),
    ]);
    let device = tek_sim::fleet::load(&fleet).unwrap().remove(0);
    let key_hex: String = device.key.iter().map(|b| format!("{b:02x}")).collect();
    let cfg = tmp.path().join("serve.toml");
    std::fs::write(
        &cfg,
        format!(
            "udp = \"{SRV_IP}:8844\"\nhttp = \"127.0.0.1:0\"\ndata = \"{data_s}\"\n\
             [push]\npoll_interval_ms = 100\ntick_ms = 20\n"
        ),
    )
    .unwrap();

    let mut lab = Lab::build();
    let server = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.ns("srv"),
            env!("CARGO_BIN_EXE_tek"),
            "serve",
            "--config",
        ])
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    lab.children.push(server);
    let spec = format!("1,{key_hex},{SRV_IP}:8844,120");
    let mut child = Command::new("ip")
        .args(["netns", "exec", &lab.ns("dev")])
        .arg(std::env::current_exe().unwrap())
        .args([
            "nat_device_child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, spec)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    lab.children.push(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if line.starts_with("EVENT ") && tx.send((Instant::now(), line)).is_err() {
                return;
            }
        }
    });

    // The session opens and the server pushes version 1 (keepalive 15 s).
    wait_event(&rx, "sessions", 1, Duration::from_secs(20));
    wait_event(&rx, "config", 1, Duration::from_secs(5));
    let mapping_before = lab.outer_mappings();
    eprintln!("outer NAT before: {mapping_before}");
    assert!(mapping_before.contains("dport=8844"), "{mapping_before}");

    // 1. Longer than the NAT timeout with nothing but keepalives (and a batch at most).
    let quiet = Duration::from_secs(NAT_TIMEOUT_S + 5);
    let t = Instant::now();
    while t.elapsed() < quiet {
        if let Ok((_, line)) = rx.recv_timeout(quiet.saturating_sub(t.elapsed())) {
            panic!("the device had to do something during the quiet period: {line}");
        }
    }

    // 2. The server pushes a change: it must pass both NATs within 1 s.
    tek(&[
        "device",
        "config",
        "--data",
        data_s,
        "--id",
        "1",
        "--set",
        "setpoint=28",
    ]);
    let saved = Instant::now();
    let arrived = wait_event(&rx, "config", 2, Duration::from_secs(3));
    let push_ms = arrived.duration_since(saved).as_millis();
    eprintln!("push through the double NAT after {quiet:?} quiet: {push_ms} ms");
    assert!(push_ms <= 1000, "configuration took {push_ms} ms");

    // 3. Rebinding: both NATs forget every mapping; a change saved now must reach the device
    //    within one keepalive interval, without a new handshake.
    lab.exec("nat1", &["conntrack", "-F"]);
    lab.exec("nat2", &["conntrack", "-F"]);
    let flushed = Instant::now();
    tek(&[
        "device",
        "config",
        "--data",
        data_s,
        "--id",
        "1",
        "--set",
        "setpoint=29",
    ]);
    let arrived = wait_event(&rx, "config", 3, Duration::from_secs(KEEPALIVE_S + 5));
    let rebind_ms = arrived.duration_since(flushed).as_millis();
    let mapping_after = lab.outer_mappings();
    eprintln!("outer NAT after: {mapping_after}");
    eprintln!("configuration after the NAT flush arrived in {rebind_ms} ms");
    assert!(
        rebind_ms <= u128::from(KEEPALIVE_S) * 1000 + 1000,
        "took {rebind_ms} ms, more than one keepalive interval"
    );
    // Still the first session: no Hello was needed (a new session would print `sessions 2`).
    std::thread::sleep(Duration::from_millis(300));
    while let Ok((_, line)) = rx.try_recv() {
        assert!(!line.starts_with("EVENT sessions"), "{line}");
        assert!(!line.starts_with("EVENT hellos"), "{line}");
    }
    drop(lab);
    assert!(!Path::new(&format!("/run/netns/tek{}dev", std::process::id())).exists());
}
