//! `tek demo` as a user runs it: the binary starts on a fresh data directory, prints the URL and
//! credentials, and within 10 seconds the dashboard's data (`GET /api/devices` with the printed
//! credentials) shows all 25 controllers online with readings; SIGINT stops it cleanly; a second
//! run reuses the data (same account and password, same controllers).

use http_body_util::BodyExt;
use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

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
        d.banner.contains("25 simulated controllers (created)"),
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
        let readings = list.iter().filter(|v| !v["readings"].is_null()).count();
        if list.len() == 25 && online == 25 && readings == 25 {
            live = Some(t0.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let live = live.expect("all 25 controllers online with readings within 10 s");
    eprintln!("demo: 25 online with readings {live:?} after start");
    let first_password = d.password.clone();
    let tail = stop(d);
    assert!(tail.contains("stopped"), "{tail}");

    // Again on the same data: same account, same 25 controllers, nothing added.
    let d = start(&data);
    assert!(
        d.banner.contains("25 simulated controllers (reused)"),
        "{}",
        d.banner
    );
    assert_eq!(d.password, first_password);
    let cookie = login(&client, &d).await;
    let list = devices(&client, &d, &cookie).await;
    assert_eq!(list.len(), 25);
    stop(d);
}
