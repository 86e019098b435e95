//! `tek serve` + `tek sim` end to end on loopback: a fleet provisioned with the server's
//! `device add --count`, a server list whose first entry is down, and every controller failing
//! over to the real server (tek-server, SQLite), which then holds a live session, the status
//! report and stored telemetry of every device.

use std::net::UdpSocket;
use std::time::{Duration, Instant};
use tek_proto::message::status::Transport;
use tek_server::cli::{AddArgs, DeviceCommand};
use tek_sim::{Fleet, Options};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_server_down_all_fail_over_to_tek_serve() {
    const N: u32 = 50;
    let (dir, fleet_file, server) = provision_and_serve("tek-sim-e2e", N).await;
    let devices = tek_sim::fleet::load(&fleet_file).unwrap();
    assert_eq!(devices.len(), N as usize);
    // The first listed server: bound, silent.
    let dead = UdpSocket::bind("127.0.0.1:0").unwrap();
    let servers = vec![
        dead.local_addr().unwrap().to_string(),
        server.udp_addr().to_string(),
    ];
    let mut opts = Options::new(devices, servers);
    opts.speed = 20.0;
    let fleet = Fleet::start(opts).await.unwrap();

    let t = Instant::now();
    let mut ok = false;
    // 60 s: on a loaded machine (CI beside other builds) a lost status waits for its next period.
    while t.elapsed() < Duration::from_secs(60) {
        let s = fleet.snapshot();
        // The fleet's counters are totals: also wait until the server holds a status from every
        // controller (a busy machine may commit one device's status after another's records).
        if s.connected == u64::from(N)
            && s.records_acked >= u64::from(N)
            && server
                .api()
                .devices()
                .await
                .unwrap()
                .iter()
                .all(|st| st.status.is_some())
        {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let snap = fleet.snapshot();
    assert!(ok, "{snap:?}");
    // Every controller tried the dead server first (3 Hellos), then the live one.
    assert!(snap.hellos >= 4 * u64::from(N), "{snap:?}");

    let states = server.api().devices().await.unwrap();
    assert_eq!(states.len(), N as usize);
    for st in &states {
        assert!(st.online, "device {} offline", st.device.id);
        let status = st.status.as_ref().expect("status stored");
        assert_eq!(status.status.transport, Transport::Ethernet);
        assert_eq!(
            status.status.server_index, 1,
            "the second server of the list"
        );
        assert!(st.endpoint.unwrap().ip().to_string().starts_with("127.10."));
    }
    let s = fleet.stop().await;
    assert_eq!(s.ever_connected, u64::from(N));
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Controllers with a channel part (`tek sim --channels`) sample the plant through their
/// factory channel map and state Capabilities; to tek serve, which sends no split
/// configuration, they are version 1 devices: Telemetry 0x01, every record stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controllers_with_a_channel_part_are_version_1_devices_to_tek_serve() {
    const N: u32 = 5;
    let (dir, fleet_file, server) = provision_and_serve("tek-sim-e2e-ch", N).await;
    let devices = tek_sim::fleet::load(&fleet_file).unwrap();
    let mut opts = Options::new(devices, vec![server.udp_addr().to_string()]);
    opts.speed = 60.0;
    opts.channels = true;
    let fleet = Fleet::start(opts).await.unwrap();
    let t = Instant::now();
    let mut ok = false;
    while t.elapsed() < Duration::from_secs(60) {
        let s = fleet.snapshot();
        if s.records_acked >= 3 * u64::from(N)
            && server.api().metrics().channel_capabilities_total() >= u64::from(N)
        {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let snap = fleet.snapshot();
    assert!(
        ok,
        "{snap:?} capabilities {}",
        server.api().metrics().channel_capabilities_total()
    );
    // The records are the plant's, read through the board inputs: real temperatures, never 0.
    for d in fleet_ids(&fleet_file) {
        assert_eq!(
            server.api().capabilities(d),
            Some(tek_sim::channels::CAPS),
            "device {d}"
        );
        let rows = server
            .api()
            .telemetry(tek_server::storage::telemetry::TelemetryQuery {
                device_id: d,
                from: 0,
                to: i64::MAX,
                limit: 100,
            })
            .await
            .unwrap();
        assert!(!rows.is_empty(), "device {d}: no record");
        for r in rows {
            let water = r.values[tek_proto::message::telemetry::channel::WATER_TEMP_CC as usize];
            assert!((500..4000).contains(&water), "water {water} (0.01 degC)");
        }
    }
    fleet.stop().await;
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

fn fleet_ids(fleet_file: &std::path::Path) -> Vec<u32> {
    tek_sim::fleet::load(fleet_file)
        .unwrap()
        .iter()
        .map(|d| d.id)
        .collect()
}

/// `tek device add --data DIR --count N --out FLEET.toml` in a fresh directory named after
/// `name`, and `tek serve` on that data on loopback: (directory, fleet file, server).
async fn provision_and_serve(
    name: &str,
    n: u32,
) -> (
    std::path::PathBuf,
    std::path::PathBuf,
    tek_server::ServerHandle,
) {
    let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let data = dir.join("data");
    let fleet_file = dir.join("fleet.toml");
    tek_server::cli::device_to(
        DeviceCommand::Add(AddArgs {
            data: data.clone(),
            db: None,
            master_key: None,
            id: None,
            name: None,
            count: Some(n),
            first_id: None,
            out: Some(fleet_file.clone()),
        }),
        &mut Vec::new(),
    )
    .unwrap();
    let cfg = tek_server::Config {
        udp: "127.0.0.1:0".parse().unwrap(),
        http: "127.0.0.1:0".parse().unwrap(),
        data,
        ..tek_server::Config::default()
    };
    let server = tek_server::Server::start(cfg).await.unwrap();
    (dir, fleet_file, server)
}
