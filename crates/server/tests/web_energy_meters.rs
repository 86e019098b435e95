//! Energy from channels (issue 18 point 4) over HTTP: a site with a pool controller (narrow
//! records) and a controller on a channel map (wide records: a site meter, a pump's sub-meter
//! in tens of Wh, another load's power in hundreds of W), then a third controller whose map
//! has no energy role. The site's figures, its breakdown by meter in the JSON API, the CSV
//! and the site page, and the device page's energy, checked against values computed by hand.

mod web_common;

use hyper::{Method, StatusCode};
use serde_json::Value;
use tek_proto::channel::map::{
    Channel, Conversion, DataType, Function, ModbusRead, Resolution, Source, Unit, WordOrder,
};
use tek_proto::channel::roles::Roles;
use tek_proto::message::{Config, ConfigResult};
use tek_server::storage::channels::builtin::{self, Builtin, BuiltinChannel};
use tek_server::storage::{ChannelKind, ChannelSet, Storage, TelemetryRow, WideRow, WideValues};
use web_common::*;

/// 2026-06-01T00:00:00Z (the sites' zone is UTC).
const S: i64 = 1_780_272_000;

/// The time of reading `k`: 60 s into the `k`-th 15-minute interval of the day; readings
/// `-1..=7` give steps ending in the day's first eight intervals (two hours).
fn at(k: i64) -> i64 {
    S + k * 900 + 60
}

fn modbus_channel(
    name: &'static str,
    kind: ChannelKind,
    slave: u8,
    unit: Unit,
    exponent: i8,
) -> BuiltinChannel {
    BuiltinChannel {
        name,
        kind,
        decimals: 0,
        channel: Channel {
            source: Source::Modbus(ModbusRead {
                bus: 0,
                slave,
                function: Function::Input,
                register: 0,
                data_type: DataType::F32,
                word_order: WordOrder::HighFirst,
            }),
            conversion: Conversion::IDENTITY,
            resolution: Resolution { unit, exponent },
        },
    }
}

fn roles(power: Option<u8>, energy: Option<u8>) -> Roles {
    Roles {
        water: None,
        air: None,
        power,
        energy,
        pump: 0,
        heater: 1,
    }
}

/// Device `id` runs `b` from configuration version 1 (confirmed).
fn run_map(db: &dyn Storage, id: u32, b: &Builtin) {
    let version = db.save_config(id, &Config::default(), S - 7200).unwrap();
    let set = ChannelSet {
        map: b.map(),
        roles: b.roles_value(),
        channels: b.labels(),
    };
    db.save_device_channels(id, version, None, &set, S - 7200)
        .unwrap();
    db.config_acked(id, version, ConfigResult::Applied, S - 7100)
        .unwrap();
}

fn wide(id: u32, k: i64, values: &[Option<i32>]) -> WideRow {
    WideRow {
        device_id: id,
        boot: 1,
        seq: (k + 1) as u32,
        time: at(k),
        config_version: Some(1),
        values: WideValues::from_options(values),
    }
}

/// Device 1, a pool controller: 1 kW, 250 Wh per interval: 2 kWh.
/// Device 2, the plant room: site power 8 kW and its counter 2000 Wh per interval (16 kWh,
/// the device's total); the pump's counter in tens of Wh, 50 per interval (4 kWh); another
/// load's power in hundreds of W, 40 (4 kW: 1 kWh per interval, 8 kWh); a temperature.
fn seed(db: &dyn Storage) {
    use ChannelKind::*;
    let plant = Builtin {
        name: "plant room",
        roles: Some(roles(Some(0), Some(1))),
        buses: builtin::sdm120().buses,
        channels: vec![
            modbus_channel("Site power", Power, 1, Unit::Watt, 0),
            modbus_channel("Site energy", Energy, 1, Unit::WattHour, 0),
            modbus_channel("Pump power", Power, 2, Unit::Watt, 0),
            modbus_channel("Pump energy", Energy, 2, Unit::WattHour, 1),
            modbus_channel("Room temperature", Temperature, 3, Unit::Celsius, -2),
            modbus_channel("Other loads", Power, 9, Unit::Watt, 2),
        ],
    };
    run_map(db, 2, &plant);
    let mut narrow = Vec::new();
    let mut rows = Vec::new();
    for k in -1..=7i64 {
        let n = (k + 1) as i32;
        narrow.push(TelemetryRow {
            device_id: 1,
            boot: 1,
            seq: n as u32,
            time: at(k),
            channels: 0b11,
            values: [1000, 5_000 + 250 * n, 0, 0, 0, 0, 0, 0],
        });
        rows.push(wide(
            2,
            k,
            &[
                Some(8000),
                Some(100_000 + 2000 * n),
                Some(2000),
                Some(700 + 50 * n),
                Some(2150),
                Some(40),
            ],
        ));
    }
    // A day earlier, records the device logged under its factory configuration (version 0),
    // before the plant room's map (version 1), whose channel 1 counted up from 900,000,000 by
    // 5000 a step: not this map's energy.
    for k in 0..8i64 {
        rows.push(WideRow {
            device_id: 2,
            boot: 0,
            seq: k as u32,
            time: at(k) - 86_400,
            config_version: Some(0),
            values: WideValues::from_options(&[None, Some(900_000_000 + 5000 * k as i32)]),
        });
    }
    db.insert_telemetry(&narrow).unwrap();
    db.insert_wide(&rows).unwrap();
}

fn close(v: &Value, expected: f64) -> bool {
    v.as_f64().is_some_and(|x| (x - expected).abs() < 1e-6)
}

const DAY: &str = "by=day&from=2026-06-01&to=2026-06-02";

#[tokio::test]
async fn channels_feed_the_site_and_its_breakdown_by_meter() {
    let w = start().await;
    let db = w.server.api().storage_handle();
    seed(&*db);
    let admin = w.login("admin@example.com").await;
    let alice = w.login("alice@example.com").await;
    let site = w.site_a;
    let r = w
        .api(
            Method::PUT,
            &format!("/api/sites/{site}/tariff"),
            &admin,
            r#"{"currency":"EUR","energy_price":0.25}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);

    // The site: 2 + 16 = 18 kWh; peak 1 kW + 8 kW (the plant room's power role); 4.50 EUR.
    let r = w
        .api(
            Method::GET,
            &format!("/api/sites/{site}/energy?{DAY}"),
            &alice,
            "",
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let v: Value = serde_json::from_str(&r.body).unwrap();
    let d = &v["periods"][0];
    assert!(close(&d["kwh"], 18.0), "{d}");
    assert!(close(&d["peak_kw"], 9.0), "{d}");
    assert_eq!(d["peak_at"], S);
    assert!(close(&d["cost"]["total"], 4.5), "{d}");
    // Each device's total: the pool controller as before, the plant room its site meter.
    assert_eq!(v["devices"][0]["id"], 1);
    assert!(close(&v["devices"][0]["total"]["kwh"], 2.0), "{v}");
    assert_eq!(v["devices"][1]["id"], 2);
    assert!(close(&v["devices"][1]["total"]["kwh"], 16.0), "{v}");
    assert!(close(&v["devices"][1]["total"]["peak_kw"], 8.0), "{v}");
    assert!(close(&v["devices"][1]["total"]["cost"], 4.0), "{v}");

    // The day before: the records of the earlier configuration are not read with the map (read,
    // they would count 35 kWh; the step from the last of them to the map's first reading is a
    // decrease: 0). That day has one reading of each meter (at 23:46) and no counter step: its
    // energy is estimated from its power over the interval, exactly as for the pool controller
    // (1 kW: 0.25 kWh; the plant room's 8 kW: 2 kWh).
    let r = w
        .api(
            Method::GET,
            &format!("/api/sites/{site}/energy?by=day&from=2026-05-31&to=2026-06-01"),
            &alice,
            "",
        )
        .await;
    let before: Value = serde_json::from_str(&r.body).unwrap();
    assert!(
        close(&before["devices"][0]["total"]["kwh"], 0.25),
        "{before}"
    );
    assert!(
        close(&before["devices"][1]["total"]["kwh"], 2.0),
        "{before}"
    );

    // The breakdown: the pool controller's meter (2), the plant room's sub-meters (the pump's
    // 4 in tens of Wh, the other load's 8 from its power), untracked 18 - 14 = 4.
    let b = &v["breakdown"];
    assert_eq!(b["start"], S);
    assert_eq!(b["end"], S + 86_400);
    assert!(close(&b["total_kwh"], 18.0), "{b}");
    let meters = b["meters"].as_array().unwrap();
    // device, name, channel, in the total, kWh, share, cost
    type Row<'a> = (u64, &'a str, Option<u64>, bool, f64, f64, f64);
    let got: Vec<Row> = meters
        .iter()
        .map(|m| {
            (
                m["device"].as_u64().unwrap(),
                m["name"].as_str().unwrap(),
                m["channel"].as_u64(),
                m["in_total"].as_bool().unwrap(),
                m["kwh"].as_f64().unwrap(),
                m["share"].as_f64().unwrap(),
                m["cost"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (1, "Energy", None, true, 2.0, 0.1111, 0.5),
            (2, "Pump energy", Some(3), true, 4.0, 0.2222, 1.0),
            (2, "Other loads", Some(5), true, 8.0, 0.4444, 2.0),
        ]
    );
    assert_eq!(meters[1]["device_name"], "Pool 2");
    assert!(close(&b["untracked"]["kwh"], 4.0), "{b}");
    assert!(close(&b["untracked"]["share"], 0.2222), "{b}");
    assert!(close(&b["untracked"]["cost"], 1.0), "{b}");
    assert!(close(&b["exceeded_kwh"], 0.0), "{b}");
    assert_eq!(b["notes"], serde_json::json!([]));

    // The CSV: unchanged without `breakdown` (the site's line, then each device's) ...
    let csv = w
        .get(&format!("/sites/{site}/energy.csv?{DAY}"), Some(&alice))
        .await;
    assert_eq!(csv.status, StatusCode::OK);
    let lines: Vec<&str> = csv.body.lines().collect();
    assert_eq!(lines.len(), 1 + 3, "{}", csv.body);
    assert!(lines[0].starts_with("period,start,end,device,kwh,"));
    assert!(lines[3].contains(",2,16.000,8.000,"), "{}", csv.body);
    // ... and the breakdown by meter with it.
    let csv = w
        .get(
            &format!("/sites/{site}/energy.csv?{DAY}&breakdown=meter"),
            Some(&alice),
        )
        .await;
    assert_eq!(csv.status, StatusCode::OK, "{}", csv.body);
    assert!(csv
        .header("content-disposition")
        .contains("site-1-meters-2026-06-01-2026-06-01.csv"));
    let day = "2026-06-01,2026-06-01T00:00:00+00:00,2026-06-02T00:00:00+00:00";
    assert_eq!(
        csv.body.lines().collect::<Vec<_>>(),
        [
            "period,start,end,device,device_name,channel,meter,in_total,kwh,share,energy_cost,currency",
            &format!("{day},1,Pool 1,,Energy,yes,2.000,0.1111,0.5000,EUR"),
            &format!("{day},2,Pool 2,3,Pump energy,yes,4.000,0.2222,1.0000,EUR"),
            &format!("{day},2,Pool 2,5,Other loads,yes,8.000,0.4444,2.0000,EUR"),
            &format!("{day},,,,untracked,,4.000,0.2222,1.0000,EUR"),
        ]
    );
    let api_csv = w
        .api(
            Method::GET,
            &format!("/api/sites/{site}/energy.csv?{DAY}&breakdown=meter"),
            &alice,
            "",
        )
        .await;
    assert_eq!(api_csv.body, csv.body);
    let bad = w
        .get(
            &format!("/sites/{site}/energy.csv?{DAY}&breakdown=device"),
            Some(&alice),
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.body.contains("breakdown must be meter"), "{}", bad.body);

    // The device page: the plant room's energy per day is its total's, then its meters'.
    let page = w.get("/devices/2", Some(&alice)).await;
    assert_eq!(page.status, StatusCode::OK);
    for s in [
        "Energy per day (total: Site energy)",
        "Energy per day: Pump energy",
        "Energy per day: Other loads",
    ] {
        assert!(page.body.contains(s), "{s}");
    }
    let page = w.get("/devices/1", Some(&alice)).await;
    assert!(page.body.contains("Energy per day") && !page.body.contains("device-energy"));

    // A third controller whose map has no energy or power role: a heater's power in kW,
    // 20 kW for two hours (40 kWh) and a flow meter counting litres, marked energy.
    use ChannelKind::*;
    let heater = Builtin {
        name: "heater",
        roles: Some(roles(None, None)),
        buses: builtin::sdm120().buses,
        channels: vec![
            modbus_channel("Heater", Power, 7, Unit::Watt, 3),
            modbus_channel("Water", Energy, 8, Unit::Litre, 0),
        ],
    };
    run_map(&*db, 4, &heater);
    db.assign_devices(&[4], Some(site)).unwrap();
    let rows: Vec<WideRow> = (-1..=7)
        .map(|k| wide(4, k, &[Some(20), Some(10 * k as i32 + 10)]))
        .collect();
    db.insert_wide(&rows).unwrap();
    let r = w
        .api(
            Method::GET,
            &format!("/api/sites/{site}/energy?{DAY}"),
            &alice,
            "",
        )
        .await;
    let v: Value = serde_json::from_str(&r.body).unwrap();
    // Nothing added to the site's total; the heater is listed outside it, so the meters
    // exceed the total by 14 + 40 - 18 = 36 kWh and nothing is untracked.
    assert!(close(&v["periods"][0]["kwh"], 18.0), "{v}");
    assert!(close(&v["devices"][2]["total"]["kwh"], 0.0), "{v}");
    let b = &v["breakdown"];
    let heater_row = &b["meters"][3];
    assert_eq!(heater_row["name"], "Heater");
    assert_eq!(heater_row["in_total"], false);
    assert!(close(&heater_row["kwh"], 40.0), "{b}");
    assert!(close(&b["untracked"]["kwh"], 0.0), "{b}");
    assert!(close(&b["untracked"]["cost"], 0.0), "{b}");
    assert!(close(&b["exceeded_kwh"], 36.0), "{b}");
    let notes: Vec<&str> = b["notes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["note"].as_str().unwrap())
        .collect();
    assert_eq!(
        notes,
        [
            "channel \"Water\" (energy) is not counted: its unit \"l\" is not Wh (or a multiple of it)",
            tek_server::service::energy::NO_TOTAL_NOTE,
        ]
    );
    let csv = w
        .api(
            Method::GET,
            &format!("/api/sites/{site}/energy.csv?{DAY}&breakdown=meter"),
            &alice,
            "",
        )
        .await
        .body;
    assert!(
        csv.contains("+00:00,4,Pool 4,0,Heater,no,40.000,2.2222,10.0000,EUR"),
        "{csv}"
    );
    assert!(
        csv.contains(",,,,untracked,,0.000,0.0000,0.0000,EUR"),
        "{csv}"
    );
    assert!(csv.contains(",,,,exceeded,,36.000,2.0000,,"), "{csv}");

    // The site page: the breakdown of this month (no data this month: shares cannot be
    // computed), the notes and the CSV choice.
    let page = w.get(&format!("/sites/{site}"), Some(&alice)).await;
    assert_eq!(page.status, StatusCode::OK);
    for s in [
        "Breakdown by meter, <span id=\"breakdown-period\">this month</span>",
        "id=\"energy-breakdown\"",
        "Pump energy",
        "Other loads",
        "(not in the total)",
        "id=\"untracked\"",
        "but add nothing to the site",
        "value=\"meter\"",
    ] {
        assert!(page.body.contains(s), "{s}");
    }
    // The dashboard's energy today (none of the records are today's): the plant room's total
    // is 0 kWh, the controller without a total has no value rather than 0.
    let dash = w.get("/dashboard", Some(&admin)).await;
    assert_eq!(dash.status, StatusCode::OK);
    let today = |device: u32| {
        let row = &dash.body[dash.body.find(&format!("data-device=\"{device}\""))?..];
        let cell = &row[row.find("data-field=\"today\">")? + 19..];
        Some(cell[..cell.find('<')?].to_owned())
    };
    assert_eq!(today(2).as_deref(), Some("0.00 kWh"));
    assert_eq!(today(4).as_deref(), Some("–"));
}

/// A controller whose channel map changed keeps the energy it measured under the earlier map:
/// each map's total is read from the records logged under it, so a channel number that means
/// another thing in the new map never reads the old map's records. Map A (version 1) counts
/// 16 kWh on its channel 1 the day before; map B (version 2) has its counter on channel 0 and
/// its power on channel 1, and counts 8 kWh on the day.
#[tokio::test]
async fn a_map_change_keeps_the_energy_of_the_earlier_map() {
    use tek_server::service::energy::device_energy;
    use ChannelKind::*;
    let w = start().await;
    let db = w.server.api().storage_handle();
    let map = |channels| Builtin {
        name: "plant room",
        roles: None,
        buses: builtin::sdm120().buses,
        channels,
    };
    let a = Builtin {
        roles: Some(roles(Some(0), Some(1))),
        ..map(vec![
            modbus_channel("Site power", Power, 1, Unit::Watt, 0),
            modbus_channel("Site energy", Energy, 1, Unit::WattHour, 0),
        ])
    };
    let b = Builtin {
        roles: Some(roles(Some(1), Some(0))),
        ..map(vec![
            modbus_channel("Site energy", Energy, 1, Unit::WattHour, 0),
            modbus_channel("Site power", Power, 1, Unit::Watt, 0),
        ])
    };
    let mut rows = Vec::new();
    let mut version = 0;
    for (day, m, values) in [
        (-1i64, &a, [8000, 100_000, 2000]),
        (0, &b, [500_000, 4000, 1000]),
    ] {
        version = db
            .save_config(2, &Config::default(), S + day * 86_400 - 7200)
            .unwrap();
        let set = ChannelSet {
            map: m.map(),
            roles: m.roles_value(),
            channels: m.labels(),
        };
        db.save_device_channels(2, version, None, &set, S + day * 86_400 - 7200)
            .unwrap();
        db.config_acked(2, version, ConfigResult::Applied, S + day * 86_400 - 7100)
            .unwrap();
        for k in -1..=7i64 {
            let n = (k + 1) as i32;
            let [first, second, step] = values;
            // Map A: power, counter; map B: counter, power.
            let pair = if day < 0 {
                [Some(first), Some(second + step * n)]
            } else {
                [Some(first + step * n), Some(second)]
            };
            rows.push(WideRow {
                time: at(k) + day * 86_400,
                seq: (version * 100) + n as u32,
                config_version: Some(version),
                ..wide(2, k, &pair)
            });
        }
    }
    db.insert_wide(&rows).unwrap();
    let kwh = |e: &tek_server::energy::Intervals| e.values().map(|i| i.wh).sum::<f64>() / 1000.0;
    let both = device_energy(&*db, 2, version, S - 86_400, S + 86_400).unwrap();
    assert!(
        (kwh(&both.total) - 24.0).abs() < 1e-6,
        "{}",
        kwh(&both.total)
    );
    // The meters are the map in effect's: its one instrument, 8 kWh.
    assert_eq!(both.meters.len(), 1);
    assert_eq!(both.meters[0].channel, Some(0));
    assert!((kwh(&both.meters[0].intervals) - 8.0).abs() < 1e-6);
    // The day before alone: map A's 16 kWh, and 1 kWh of map B, whose first reading (23:46)
    // has no counter step that day and is estimated from its power, 4 kW over 15 minutes, as a
    // pool controller's would be.
    let day_before = device_energy(&*db, 2, version, S - 86_400, S).unwrap();
    assert!(
        (kwh(&day_before.total) - 17.0).abs() < 1e-6,
        "{}",
        kwh(&day_before.total)
    );
}
