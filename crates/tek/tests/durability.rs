//! Durability under `kill -9` (docs/SECURITY.md, issue 11 item 5): 200 real controllers
//! (`tek-sim`, 20x simulated time, configured for a record and a batch every 10 simulated
//! seconds: together about 400 records and 400 batches a second) send telemetry
//! to a `tek serve` child process on SQLite; in the middle of that ingest the server gets SIGKILL
//! (no flush, no shutdown), is started again on the same address, and the controllers carry on.
//! At the end, every record any controller saw acknowledged — by the killed server or the new
//! one — is in the database exactly once.

use std::collections::HashSet;
use std::net::UdpSocket;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tek_proto::message::Config;
use tek_server::storage::{ConfigStore, TelemetryQuery, TelemetryStore};

const DEVICES: u32 = 200;

/// `tek serve` on `port`. Simulated time runs 20x faster than the server's clock, so the
/// per-device Hello limit (counted in real time) is widened to what 20x faster devices need.
fn serve(data: &Path, port: u16) -> Child {
    let cfg = data.with_file_name("serve.toml");
    std::fs::write(
        &cfg,
        "[limits]\nhello_device_burst = 20\nhello_device_interval_ms = 50\n",
    )
    .unwrap();
    Command::new(env!("CARGO_BIN_EXE_tek"))
        .args([
            "serve",
            "--udp",
            &format!("127.0.0.1:{port}"),
            "--http",
            "127.0.0.1:0",
        ])
        .arg("--data")
        .arg(data)
        .arg("--config")
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_in_the_middle_of_ingest_loses_and_duplicates_nothing_acknowledged() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let fleet = tmp.path().join("fleet.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_tek"))
        .args(["device", "add", "--count", &DEVICES.to_string(), "--out"])
        .arg(&fleet)
        .arg("--data")
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The shortest logging and batching intervals, pushed to every controller at its first
    // session: the most records and batches per simulated second.
    {
        let db = tek_server::storage::sqlite::Sqlite::open_dir(&data).unwrap();
        let fast = Config {
            log_interval_s: 10,
            batch_s: 10,
            ..Config::default()
        };
        for id in 1..=DEVICES {
            db.save_config(id, &fast, 0).unwrap();
        }
    }
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = serve(&data, port);

    let devices = tek_sim::fleet::load(&fleet).unwrap();
    let mut opts = tek_sim::Options::new(devices, vec![format!("127.0.0.1:{port}")]);
    opts.speed = 20.0;
    opts.gsm = false;
    opts.ramp_s = 1.0;
    let sim = tek_sim::Fleet::start(opts).await.unwrap();

    // Heavy ingest, then SIGKILL mid-stream.
    tokio::time::sleep(Duration::from_secs(7)).await;
    let before_kill = sim.snapshot();
    server.kill().unwrap(); // SIGKILL
    server.wait().unwrap();
    assert!(
        before_kill.records_acked > 1000,
        "too little ingest before the kill: {before_kill:?}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut server = serve(&data, port);
    // The controllers find the server again and deliver what was not acknowledged.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let ledgers = sim.ack_ledgers();
    let end = sim.stop().await;
    server.kill().unwrap();
    server.wait().unwrap();
    eprintln!("before kill: {before_kill:?}\nend: {end:?}");
    assert!(
        end.records_acked > before_kill.records_acked + 1000,
        "ingest did not resume after the restart: {end:?}"
    );

    let db = tek_server::storage::sqlite::Sqlite::open_dir(&data).unwrap();
    let (mut acked, mut stored) = (0u64, 0u64);
    for l in &ledgers {
        let rows = db
            .telemetry(&TelemetryQuery {
                device_id: l.device_id,
                from: i64::MIN,
                to: i64::MAX,
                limit: usize::MAX,
            })
            .unwrap();
        let mut seen = HashSet::new();
        for r in &rows {
            assert!(
                seen.insert((r.boot, r.seq)),
                "device {} boot {} seq {} stored twice",
                l.device_id,
                r.boot,
                r.seq
            );
        }
        stored += rows.len() as u64;
        for b in &l.boots {
            assert_eq!(b.dropped, 0, "the log overflowed: the test is too slow");
            for seq in 0..b.first_unacked_seq {
                assert!(
                    seen.contains(&(b.boot, seq)),
                    "device {} boot {} seq {seq} was acknowledged but is not stored",
                    l.device_id,
                    b.boot
                );
                acked += 1;
            }
        }
    }
    eprintln!("acknowledged {acked} records, {stored} stored, none lost, none twice");
    assert!(acked > 2000);
}
