//! `tek demo` as a user runs it: the binary starts on a fresh data directory, prints the URL and
//! credentials, and within 10 seconds the dashboard's data (`GET /api/devices` with the printed
//! credentials) shows all 26 controllers online and the 25 pool controllers with readings; the
//! plant-room controller's wide records (two meters and a temperature transmitter read through
//! the "plant room (demo)" template) reach the server's database within 20 seconds; SIGINT stops
//! it cleanly; a second run reuses the data (same account and password, same controllers, the
//! same template, not applied again).

use http_body_util::BodyExt;
use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};
use tek_server::storage::ChannelStore;

type HttpClient = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    http_body_util::Full<bytes::Bytes>,
>;

struct Demo {
    child: Child,
    out: BufReader<ChildStdout>,
    url: String,
    password: String,
    banner: String,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(data: &std::path::Path) -> Demo {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tek"))
        .args([
            "demo",
            "--udp",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--data",
        ])
        .arg(data)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let (mut url, mut password, mut banner) = (String::new(), String::new(), String::new());
    loop {
        let mut line = String::new();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "demo exited early: {banner}"
        );
        banner.push_str(&line);
        if let Some(u) = line.trim().strip_prefix("open ") {
            url = u.trim_end_matches('/').to_owned();
        }
        if let Some(p) = line.trim().strip_prefix("password: ") {
            password = p.to_owned();
        }
        if line.starts_with("press Ctrl-C") {
            break;
        }
    }
    Demo {
        child,
        out,
        url,
        password,
        banner,
    }
}

async fn request(
    c: &HttpClient,
    req: hyper::Request<http_body_util::Full<bytes::Bytes>>,
) -> (u16, String, String) {
    let r = c.request(req).await.unwrap();
    let status = r.status().as_u16();
    let cookie = r
        .headers()
        .get("set-cookie")
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned())
        .unwrap_or_default();
    let body =
        String::from_utf8(r.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    (status, cookie, body)
}

async fn login(c: &HttpClient, d: &Demo) -> String {
    let form = format!("email=demo%40tek.local&password={}", d.password);
    let req = hyper::Request::post(format!("{}/login", d.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form.into())
        .unwrap();
    let (status, cookie, body) = request(c, req).await;
    assert_eq!(status, 303, "login with the printed credentials: {body}");
    cookie
}

async fn devices(c: &HttpClient, d: &Demo, cookie: &str) -> Vec<serde_json::Value> {
    let req = hyper::Request::get(format!("{}/api/devices", d.url))
        .header("cookie", cookie)
        .body(http_body_util::Full::default())
        .unwrap();
    let (status, _, body) = request(c, req).await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str::<serde_json::Value>(&body)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

fn stop(mut d: Demo) -> String {
    let pid = d.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    let t = Instant::now();
    let status = loop {
        if let Some(s) = d.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "demo did not stop on SIGINT"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "exit status {status}");
    let mut rest = String::new();
    while d.out.read_line(&mut rest).unwrap_or(0) > 0 {}
    rest
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_shows_live_data_within_10_s_and_reuses_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo-data");
    let client: HttpClient =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http();

    let t0 = Instant::now();
    let d = start(&data);
    assert!(
        d.banner
            .contains("26 simulated controllers (created) on udp"),
        "{}",
        d.banner
    );
    assert!(d.url.starts_with("http://127.0.0.1:"), "{}", d.banner);
    assert_eq!(d.password.len(), 12, "{}", d.banner);
    let cookie = login(&client, &d).await;
    let mut live = None;
    while t0.elapsed() < Duration::from_secs(10) {
        let list = devices(&client, &d, &cookie).await;
        let online = list.iter().filter(|v| v["online"] == true).count();
        let pool = |v: &&serde_json::Value| v["name"].as_str().unwrap().starts_with("pool-");
        let readings = list
            .iter()
            .filter(pool)
            .filter(|v| !v["readings"].is_null())
            .count();
        if list.len() == 26 && online == 26 && readings == 25 {
            live = Some(t0.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let live = live.expect("all 26 controllers online, the pool's with readings, within 10 s");
    eprintln!("demo: 26 online with readings {live:?} after start");
    let plant_room = devices(&client, &d, &cookie)
        .await
        .iter()
        .find(|v| v["name"].as_str().unwrap().starts_with("plant-room-"))
        .expect("a plant-room controller")["id"]
        .as_u64()
        .unwrap() as u32;
    // Its wide records, read from the demo's database while it runs.
    let db = tek_server::storage::sqlite::Sqlite::open_dir(&data).unwrap();
    let rows = loop {
        let rows = plant_room_records(&db, plant_room);
        if rows.len() >= 3 {
            break rows;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "{} plant-room records within 20 s",
            rows.len()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    eprintln!(
        "demo: {} plant-room records {:?} after start",
        rows.len(),
        t0.elapsed()
    );
    check_plant_room(&rows);
    let first_password = d.password.clone();
    let tail = stop(d);
    assert!(tail.contains("stopped"), "{tail}");
    let templates = db.templates().unwrap();
    let plant = |t: &&tek_server::storage::channels::TemplateRecord| t.name == "plant room (demo)";
    assert_eq!(templates.iter().filter(plant).count(), 1);
    let applied = db.template_devices(templates.iter().find(plant).unwrap().id);
    assert_eq!(applied.unwrap(), [plant_room]);

    // Again on the same data: same account, same 25 controllers, nothing added.
    let d = start(&data);
    assert!(
        d.banner.contains("26 simulated controllers (reused)"),
        "{}",
        d.banner
    );
    assert_eq!(d.password, first_password);
    let cookie = login(&client, &d).await;
    let list = devices(&client, &d, &cookie).await;
    assert_eq!(list.len(), 26);
    stop(d);
    // Still one plant-room template, and the template was not applied again: the second run
    // saved one version (the demo configuration, as for every controller) that keeps its map.
    let templates = db.templates().unwrap();
    assert_eq!(templates.iter().filter(plant).count(), 1);
    let entry = db.device_channels(plant_room, None).unwrap().unwrap();
    assert_eq!(
        entry.version, 2,
        "applied once, on the first run (v1 the demo's, v2 it)"
    );
}

/// The plant-room controller's wide records under its template (channels: site power, site
/// energy, pump power, pump energy, room temperature, other loads), in the order logged.
fn plant_room_records(
    db: &tek_server::storage::sqlite::Sqlite,
    id: u32,
) -> Vec<tek_server::storage::WideRow> {
    use tek_server::storage::WideStore;
    let mut rows = db
        .wide_records(&tek_server::storage::TelemetryQuery {
            device_id: id,
            from: 0,
            to: i64::MAX,
            limit: 1000,
        })
        .unwrap();
    rows.retain(|r| r.config_version.is_some_and(|v| v >= 2));
    rows.sort_by_key(|r| (r.boot, r.seq));
    rows
}

/// Every record has every channel, with a plant room's values.
fn check_plant_room(rows: &[tek_server::storage::WideRow]) {
    let mut last_energy = 0;
    for r in rows {
        let v = |ch| {
            r.values
                .get(ch)
                .unwrap_or_else(|| panic!("channel {ch}: {r:?}"))
        };
        let (site, pump, room, other) = (v(0), v(2), v(4), v(5));
        assert!((100..20_000).contains(&site), "site power {site} W");
        assert!((0..1000).contains(&pump), "pump power {pump} W");
        assert_eq!(other, site - pump, "other loads = site - pump");
        assert!((1000..3000).contains(&room), "room {room} (0.01 degC)");
        assert!(
            v(1) >= last_energy && v(1) >= 1_000_000,
            "site energy {} Wh",
            v(1)
        );
        last_energy = v(1);
        assert!(v(3) >= 1_000_000, "pump energy {} Wh", v(3));
    }
}
