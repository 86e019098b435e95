//! The simulator end to end over loopback UDP, against in-process reference responders built
//! from tek-proto (see `tek_sim::reference`).

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};
use tek_sim::fleet::{self, Device};
use tek_sim::reference::Responder;
use tek_sim::{Fleet, Options};

fn devices(n: u32) -> Vec<Device> {
    (1..=n)
        .map(|id| {
            let mut key = [0u8; 16];
            key[..4].copy_from_slice(&id.to_be_bytes());
            key[15] = 0x5A;
            Device {
                id,
                key,
                name: None,
            }
        })
        .collect()
}

/// A server address that never answers (bound, so no ICMP either).
fn silent() -> (UdpSocket, SocketAddr) {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    let a = s.local_addr().unwrap();
    (s, a)
}

async fn wait_for(
    fleet: &Fleet,
    limit: Duration,
    cond: impl Fn(&tek_sim::Snapshot) -> bool,
) -> bool {
    let t = Instant::now();
    while t.elapsed() < limit {
        if cond(&fleet.snapshot()) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_server_down_every_controller_uses_the_second() {
    let devs = devices(200);
    let (_dead, dead_addr) = silent();
    let live = Responder::start("127.0.0.1:0".parse().unwrap(), &devs)
        .await
        .unwrap();
    let mut opts = Options::new(devs, vec![dead_addr.to_string(), live.addr.to_string()]);
    opts.speed = 30.0;
    let fleet = Fleet::start(opts).await.unwrap();
    assert!(
        wait_for(&fleet, Duration::from_secs(10), |s| s.connected == 200
            && s.records_acked >= 200)
        .await,
        "{:?}",
        fleet.snapshot()
    );
    let s = fleet.stop().await;
    assert_eq!(s.ever_connected, 200);
    assert!(
        live.counters
            .sessions
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 200
    );
    // Each controller tried the dead server three times first.
    assert!(s.hellos >= 4 * 200, "{s:?}");
    assert_eq!(s.bind_errors, 0);
    live.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ethernet_cut_fails_over_to_gsm_and_back() {
    let devs = devices(30);
    let live = Responder::start("127.0.0.1:0".parse().unwrap(), &devs)
        .await
        .unwrap();
    let mut opts = Options::new(devs, vec![live.addr.to_string()]);
    opts.speed = 250.0;
    opts.eth_fail_after_s = Some(100.0);
    opts.eth_restore_after_s = Some(800.0);
    let fleet = Fleet::start(opts).await.unwrap();
    assert!(
        wait_for(&fleet, Duration::from_secs(8), |s| s.failovers == 30
            && s.on_gsm == 30
            && s.connected == 30)
        .await,
        "{:?}",
        fleet.snapshot()
    );
    assert!(
        wait_for(&fleet, Duration::from_secs(12), |s| s.returns == 30
            && s.on_gsm == 0
            && s.connected == 30)
        .await,
        "{:?}",
        fleet.snapshot()
    );
    let s = fleet.stop().await;
    assert!(s.fault_drops > 0);
    assert!(s.records_acked > 0);
    live.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_and_drops_are_survived() {
    let devs = devices(50);
    let live = Responder::start("127.0.0.1:0".parse().unwrap(), &devs)
        .await
        .unwrap();
    let mut opts = Options::new(devs, vec![live.addr.to_string()]);
    opts.speed = 100.0;
    opts.restart_every_s = Some(200.0);
    opts.drop_percent = 10.0;
    let fleet = Fleet::start(opts).await.unwrap();
    assert!(
        wait_for(&fleet, Duration::from_secs(10), |s| s.restarts >= 50
            && s.connected >= 45
            && s.records_acked >= 100)
        .await,
        "{:?}",
        fleet.snapshot()
    );
    let s = fleet.stop().await;
    assert!(
        s.sessions > 50,
        "every power cycle needs a new session: {s:?}"
    );
    assert!(s.fault_drops > 0);
    live.stop().await;
}

#[test]
fn cli_fails_when_a_controller_never_connects() {
    let dir = std::env::temp_dir().join(format!("tek-sim-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("fleet.toml");
    std::fs::write(&path, fleet::to_toml(&devices(5))).unwrap();
    let (_dead, dead_addr) = silent();
    let args = tek_sim::cli::SimArgs {
        channels: false,
        meters: Vec::new(),
        meter_silent: Vec::new(),
        fleet: path.clone(),
        servers: vec![dead_addr.to_string()],
        devices: Some(3),
        duration: Some(1.0),
        speed: 10.0,
        eth_fail_after: None,
        eth_restore_after: None,
        drop_percent: 0.0,
        restart_every: None,
        no_gsm: false,
        progress: 0.5,
        ramp: None,
    };
    let err = tek_sim::cli::run(args.clone()).unwrap_err();
    assert!(
        format!("{err:#}").contains("3 of 3 controllers never connected"),
        "{err:#}"
    );
    // Bad arguments get clear errors.
    let err = tek_sim::cli::run(tek_sim::cli::SimArgs {
        devices: Some(9),
        ..args.clone()
    })
    .unwrap_err();
    assert!(format!("{err:#}").contains("has 5 devices"), "{err:#}");
    let err = tek_sim::cli::run(tek_sim::cli::SimArgs {
        servers: vec!["bad host".into()],
        ..args.clone()
    })
    .unwrap_err();
    assert!(format!("{err:#}").contains("not host:port"), "{err:#}");
    std::fs::write(&path, "[[device]]\nid = 0\n").unwrap();
    assert!(tek_sim::cli::run(args).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}
