//! Simulated controllers with meters on their bus (`tek sim --meters`) against a real server, on
//! both backends: they state one Modbus bus, so the server sends them the meter templates
//! applied to them (ConfigChunks); they read their in-process slaves through the templates'
//! maps, and the server stores their wide records with the values the meters show — plausible
//! volts, watts and degrees, power = the sum of the phases, counters that only grow, and no
//! value (never 0) while a slave is silent.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tek_proto::message::Config;
use tek_server::storage::channels::{builtin, ChannelSet};
use tek_server::storage::{ConfigState, Storage, TelemetryQuery, WideRow};
use tek_server::ServerHandle;
use tek_sim::meters::{MeterPlan, Silence};
use tek_sim::{Fleet, Options};

const THREE_PHASE: u32 = 301;
const TRANSMITTER: u32 = 302;

/// The transmitter is silent from 200 s to 300 s of simulated time.
const SILENT: &str = "1@200+100";

async fn sqlite() -> (tempfile::TempDir, ServerHandle) {
    let dir = tempfile::tempdir().unwrap();
    let server = tek_server::Server::start(tek_server::Config::for_tests(dir.path()))
        .await
        .unwrap();
    (dir, server)
}

async fn postgres() -> Option<(tempfile::TempDir, ServerHandle)> {
    let db = tek_server::storage::postgres::testing::database()?;
    let dir = tempfile::tempdir().unwrap();
    let cfg = tek_server::Config::for_tests(dir.path());
    let storage: Arc<dyn Storage> = db.db.into_arc();
    let server = tek_server::Server::start_with(cfg, Some(storage), |api| {
        tek_server::router::router(api, tek_server::http::WebOptions::default())
    })
    .await
    .unwrap();
    Some((dir, server))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meters_on_sqlite() {
    let (_dir, server) = sqlite().await;
    meters_reach_the_server(server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meters_on_postgres() {
    if let Some((_dir, server)) = postgres().await {
        meters_reach_the_server(server).await;
    }
}

/// Applies `template` to device `id` as the service does: the registry entry of the next
/// version, then the version itself (10 s logging and batching) through the API's save.
async fn apply(server: &ServerHandle, id: u32, template: &builtin::Builtin) -> u32 {
    let db = server.api().storage_handle();
    let next = db.latest_config(id).unwrap().map_or(1, |r| r.version + 1);
    let set = ChannelSet {
        map: template.map(),
        roles: template.roles_value(),
        channels: template.labels(),
    };
    db.save_device_channels(id, next, None, &set, 1).unwrap();
    let config = Config {
        log_interval_s: 10,
        batch_s: 10,
        ..Config::default()
    };
    let v = server.api().save_config(id, config).await.unwrap();
    assert_eq!(v, next);
    v
}

/// Device `id`'s wide records in the order it logged them (their stored times are arrival
/// minus age, and ages are simulated seconds: at 30x the times are not in that order).
fn wide(db: &dyn Storage, id: u32) -> Vec<WideRow> {
    let mut rows = db
        .wide_records(&TelemetryQuery {
            device_id: id,
            from: 0,
            to: i64::MAX,
            limit: 1000,
        })
        .unwrap();
    rows.sort_by_key(|r| (r.boot, r.seq));
    rows
}

async fn meters_reach_the_server(server: ServerHandle) {
    let db = server.api().storage_handle();
    let fleet = tek_server::provision::provision(&*db, Some(THREE_PHASE), 2, "m", 0).unwrap();
    let devices: Vec<tek_sim::fleet::Device> = fleet
        .device
        .iter()
        .map(|d| tek_sim::fleet::Device {
            id: d.id,
            key: d.key().unwrap().0,
            name: None,
        })
        .collect();
    let v3 = apply(&server, THREE_PHASE, &builtin::sdm630()).await;
    let vt = apply(&server, TRANSMITTER, &builtin::tb260()).await;

    let mut opts = Options::new(devices, vec![server.udp_addr().to_string()]);
    // 10 s records every third of a second.
    opts.speed = 30.0;
    let mut transmitter = MeterPlan::parse("tb260@1").unwrap();
    transmitter.silences.push(Silence::parse(SILENT).unwrap());
    opts.meters = BTreeMap::from([
        (THREE_PHASE, MeterPlan::parse("sdm630@1").unwrap()),
        (TRANSMITTER, transmitter),
    ]);
    let fleet = Fleet::start(opts).await.unwrap();

    // Until both run their template and the transmitter's records go past its silence: at
    // least 40 s of simulated time after it (about 15 s in all at 30x).
    let t = Instant::now();
    let done = |rows: &[WideRow], version: u32, n: usize| {
        rows.iter()
            .filter(|r| r.config_version == Some(version))
            .count()
            >= n
    };
    loop {
        let (a, b) = (wide(&*db, THREE_PHASE), wide(&*db, TRANSMITTER));
        let past_silence = fleet.sim_elapsed() > Duration::from_secs(340);
        if done(&a, v3, 10) && done(&b, vt, 20) && past_silence {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(90),
            "{} + {} wide records, {:?}",
            a.len(),
            b.len(),
            fleet.snapshot()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let sim_s = fleet.sim_elapsed().as_secs();
    fleet.stop().await;

    // They stated one Modbus bus, and confirmed their templates.
    for (id, v) in [(THREE_PHASE, v3), (TRANSMITTER, vt)] {
        assert_eq!(
            server.api().capabilities(id),
            Some(tek_sim::channels::CAPS_METERS)
        );
        let state = db.config_version(id, v).unwrap().unwrap().state;
        assert_eq!(state, ConfigState::Applied, "device {id} v{v}");
    }

    // The three-phase meter: every channel of its 14 in every record, in range.
    let rows: Vec<WideRow> = wide(&*db, THREE_PHASE)
        .into_iter()
        .filter(|r| r.config_version == Some(v3))
        .collect();
    let (mut last_import, mut consistent) = (0, 0);
    for r in &rows {
        let v = |ch| {
            r.values
                .get(ch)
                .unwrap_or_else(|| panic!("channel {ch}: {r:?}"))
        };
        for ch in 0..3 {
            assert!((2270..=2330).contains(&v(ch)), "voltage {} (0.1 V)", v(ch));
        }
        // Total power (channel 9) = L1 + L2 + L3, each rounded to a watt; currents follow
        // power / voltage (mA = W / V * 1000). The registers are read one after the other, a
        // few ms apart — seconds of simulated time when a busy machine delays the simulator —
        // so the heater (2 kW on L1) may switch between two reads of one sample: then they
        // differ by about one step.
        let phases = v(6) + v(7) + v(8);
        let amps = f64::from(v(6)) / (f64::from(v(0)) / 10.0);
        let amps_off = (f64::from(v(3)) / 1000.0 - amps).abs();
        if (v(9) - phases).abs() <= 2 && amps_off < 0.01 {
            consistent += 1;
        }
        assert!((v(9) - phases).abs() <= 2100, "{} vs {phases}: {r:?}", v(9));
        assert!(amps_off < 9.5, "{r:?}");
        assert!((100..20_000).contains(&v(9)), "power {} W", v(9));
        assert!((4990..=5010).contains(&v(10)), "frequency {}", v(10));
        // Import (Wh) only grows; total = import + export.
        assert!(
            (1_000_000..=10_100_000).contains(&v(11)),
            "import {} Wh",
            v(11)
        );
        assert!(v(11) >= last_import, "{} after {last_import}", v(11));
        last_import = v(11);
        assert!((v(13) - v(11) - v(12)).abs() <= 1, "{r:?}");
    }
    assert!(
        consistent * 5 >= rows.len() * 4,
        "{consistent} of {} records consistent",
        rows.len()
    );
    // The counter moved with the power: ~10 s of a few kW per record is some Wh each.
    let first = rows.first().unwrap().values.get(11).unwrap();
    assert!(last_import > first, "import {first} -> {last_import} Wh");

    // The transmitter: a plant room's temperature in 0.01 °C and state 0 — or, while it was
    // silent, no value at all in both channels.
    let rows: Vec<WideRow> = wide(&*db, TRANSMITTER)
        .into_iter()
        .filter(|r| r.config_version == Some(vt))
        .collect();
    let (mut silent, mut read) = (0, 0);
    for r in &rows {
        match (r.values.get(0), r.values.get(1)) {
            (Some(t), Some(state)) => {
                assert!((1000..=3000).contains(&t), "temperature {t}");
                assert_eq!(state, 0);
                read += 1;
            }
            (None, None) => silent += 1,
            other => panic!("half a record {other:?}: {r:?}"),
        }
    }
    // 100 s of silence are 10 records at 10 s (one more or less at the edges, and fewer if a
    // busy machine made the simulation skip a sample).
    assert!(
        (5..=11).contains(&silent),
        "{silent} silent of {}",
        rows.len()
    );
    assert!(read >= 10, "{read} read, {sim_s} s simulated");
    server.shutdown().await;
}
