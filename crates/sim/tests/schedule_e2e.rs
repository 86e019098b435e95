//! A schedule saved on the server reaches simulated controllers over UDP, and the controllers
//! and their pools follow it: with a schedule that keeps the pump off, the controller switches
//! relay 0 off (and the heater with it), the plant's pump stops and the metered power falls to
//! standby; with one that runs the pump all day, it starts again. (The switching times, DST and
//! holidays are covered by `tek-controller`'s own tests; this is the path from the server.)

use std::time::{Duration, Instant};
use tek_proto::message::config::{Config, Schedule, SwitchPoint};
use tek_proto::message::telemetry::channel;
use tek_server::storage::TelemetryQuery;
use tek_server::ServerHandle;
use tek_sim::{fleet::Device, Fleet, Options};

async fn wait_for(what: &str, mut ok: impl AsyncFnMut() -> bool) {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(60) {
        if ok().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

/// The newest stored record of `id` after `since` (Unix s): (relays, power W).
async fn latest_after(server: &ServerHandle, id: u32, since: i64) -> Option<(i32, i32)> {
    let rows = server
        .api()
        .telemetry(TelemetryQuery {
            device_id: id,
            from: since,
            to: i64::MAX,
            limit: 10_000,
        })
        .await
        .unwrap();
    let r = rows.last()?;
    Some((r.get(channel::RELAYS)?, r.get(channel::POWER_W)?))
}

fn config(pump_all_day: bool) -> Config {
    let mut s = Schedule {
        unoccupied_cc: 2400,
        points: Default::default(),
    };
    if pump_all_day {
        for day in 0..=7 {
            s.points
                .push(SwitchPoint::new(day, 0, true, true).unwrap())
                .unwrap();
        }
    }
    let mut c = Config {
        log_interval_s: 10,
        batch_s: 10,
        schedule: Some(s),
        ..Config::default()
    };
    // Never freezing in the simulated climate: the schedule alone decides.
    c.freeze.limit_cc = -1000;
    c.validate().unwrap();
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pumps_follow_the_schedule_from_the_server() {
    let dir = std::env::temp_dir().join(format!("tek-sim-schedule-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = tek_server::Config {
        udp: "127.0.0.1:0".parse().unwrap(),
        http: "127.0.0.1:0".parse().unwrap(),
        data: dir.clone(),
        ..tek_server::Config::default()
    };
    let server = tek_server::Server::start(cfg).await.unwrap();
    let mut devices = Vec::new();
    for id in [1u32, 2] {
        server
            .api()
            .add_device(id, &format!("pool {id}"))
            .await
            .unwrap();
        let d = server
            .api()
            .storage_handle()
            .load_device(id)
            .unwrap()
            .unwrap();
        devices.push(Device {
            id,
            key: d.key.0,
            name: None,
        });
    }
    let mut opts = Options::new(devices, vec![server.udp_addr().to_string()]);
    opts.speed = 10.0;
    let fleet = Fleet::start(opts).await.unwrap();
    wait_for("both controllers online", async || {
        fleet.snapshot().connected == 2
    })
    .await;

    for (pump, version) in [(false, 1), (true, 2)] {
        let since = tek_server::clock::unix_now();
        for id in [1, 2] {
            let v = server.api().save_config(id, config(pump)).await.unwrap();
            assert_eq!(v, version);
        }
        for id in [1, 2] {
            wait_for(&format!("v{version} confirmed by {id}"), async || {
                server
                    .api()
                    .device_state(id)
                    .await
                    .unwrap()
                    .device
                    .config_applied
                    == version
            })
            .await;
            // Records logged after the change: relay 0 as scheduled, the heater never without
            // it, and the plant's power with (1.1 kW +) or without (40 W standby) the pump.
            wait_for(
                &format!("device {id} following v{version}"),
                async || match latest_after(&server, id, since + 2).await {
                    Some((relays, power)) if pump => relays & 1 == 1 && power >= 1100,
                    Some((relays, power)) => relays & 3 == 0 && power == 40,
                    None => false,
                },
            )
            .await;
        }
    }
    fleet.stop().await;
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
