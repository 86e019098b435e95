//! `tek bench push`: how long from saving a configuration through the HTTP API to the device's
//! confirmation being stored, with N devices online.
//!
//! The server runs in this process with the web UI's router (`tek serve` does not mount the
//! JSON API yet), on a fresh SQLite database; a user and an API token are created with the
//! `tek user` commands. N bench devices hold live sessions with keepalives and answer every
//! Config with a ConfigAck, as a controller does. Then, `--samples` times (`--concurrency` at
//! once, over distinct devices): `PUT /api/devices/{id}/config` with a new setpoint, and poll
//! the stored configuration until its state is *applied*; the time from just before the PUT to
//! the first poll that sees it is the sample (polled every 2 ms, so at most 2 ms late).

use super::loadgen::{self, Counters, Mode, Plan};
use super::progress;
use super::server::{self, http_request};
use super::stats::Samples;
use anyhow::{bail, Context};
use serde_json::json;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tek_server::storage::ConfigState;
use tokio::time::Instant;

/// Arguments of `tek bench push`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Devices online.
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u32).range(1..=50_000))]
    pub devices: u32,
    /// Configurations saved (each one a sample).
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub samples: u64,
    /// Saves in progress at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub concurrency: u64,
}

const EMAIL: &str = "bench@example.com";

/// Creates an admin user and an API token with the `tek user` commands; returns the token.
pub(crate) fn api_token(data: &std::path::Path) -> anyhow::Result<String> {
    api_token_in(&["--data".as_ref(), data.as_os_str()])
}

/// [`api_token`] in the database `target` names: `--data DIR` or `--db URL`.
pub(crate) fn api_token_in(target: &[&std::ffi::OsStr]) -> anyhow::Result<String> {
    let exe = std::env::current_exe()?;
    let mut add = Command::new(&exe)
        .args(["user", "add", "--admin", "--email", EMAIL])
        .args(target)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .context("cannot run tek user add")?;
    if let Some(mut stdin) = add.stdin.take() {
        stdin.write_all(b"bench-password-not-secret-1\n")?;
    }
    if !add.wait()?.success() {
        bail!("tek user add failed");
    }
    let out = Command::new(&exe)
        .args(["user", "token", "--email", EMAIL])
        .args(target)
        .env("RUST_LOG", "warn")
        .output()
        .context("cannot run tek user token")?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .find(|w| w.len() == 64 && w.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(str::to_owned)
        .context("tek user token printed no token")
}

/// Runs the benchmark and returns its summary line.
pub fn run(args: Args) -> anyhow::Result<String> {
    let n = args.devices as usize;
    let dir = tempfile::Builder::new()
        .prefix("tek-bench-push")
        .tempdir()?;
    progress!("provisioning {n} devices");
    let ids = server::provision(dir.path(), args.devices)?;
    let token = api_token(dir.path())?;
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let cfg = tek_server::Config {
            udp: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            http: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            data: dir.path().to_owned(),
            ..tek_server::Config::default()
        };
        let handle = tek_server::Server::start_with(cfg, None, |api| {
            tek_server::router::router(api, tek_server::http::WebOptions::default())
        })
        .await?;
        let (udp, http) = (handle.udp_addr(), handle.http_addr());
        let storage = handle.api().storage_handle();
        let t = token.clone();
        let (code, _) = tokio::task::spawn_blocking(move || {
            http_request(http, "GET", "/api/me", Some(&t), None)
        })
        .await??;
        if code != 200 {
            bail!("GET /api/me with the API token answered {code}");
        }

        let groups = loadgen::groups(&ids, n.div_ceil(super::fleet::DEVICES_PER_SOCKET)).await?;
        let counters = Arc::new(Counters::default());
        let start = Instant::now();
        let far = start + Duration::from_secs(3600);
        let plan = Plan {
            mode: Mode::Sealed,
            telemetry: None,
            keepalive: Some(Duration::from_secs(60)),
            handshake_timeout: Duration::from_secs(5),
            handshake_window: 4,
            until_established: false,
            measure_from: far,
            measure_to: far,
            end: start + Duration::from_secs(600),
        };
        let c = counters.clone();
        let devices = tokio::spawn(loadgen::run_all(groups, udp, plan, c, "devices"));
        while counters.established.load(Ordering::Relaxed) < n as u64 {
            if start.elapsed() > Duration::from_secs(120) {
                bail!(
                    "only {} of {n} devices got a session in 120 s",
                    counters.established.load(Ordering::Relaxed)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        progress!(
            "{n} devices online after {:.1} s",
            start.elapsed().as_secs_f64()
        );

        let mut workers = tokio::task::JoinSet::new();
        let per = args.samples.div_ceil(args.concurrency);
        for w in 0..args.concurrency {
            let token = token.clone();
            let storage = storage.clone();
            let ids: Vec<u32> = ids.iter().map(|d| d.id).collect();
            workers.spawn_blocking(move || {
                let mut samples = Samples::new();
                let mut failures = 0u64;
                for k in 0..per {
                    let i = (w * per + k) as usize;
                    if i as u64 >= args.samples {
                        break;
                    }
                    // Distinct devices across concurrent workers.
                    let id = ids[(i * 7919) % ids.len()];
                    let setpoint = 20.0 + (i % 100) as f64 / 10.0;
                    let body = format!("{{\"setpoint_c\":{setpoint}}}");
                    let t0 = std::time::Instant::now();
                    let path = format!("/api/devices/{id}/config");
                    match http_request(http, "PUT", &path, Some(&token), Some(&body)) {
                        Ok((200, _)) => {}
                        Ok((code, b)) => {
                            progress!("PUT {path} answered {code}: {b}");
                            failures += 1;
                            continue;
                        }
                        Err(e) => {
                            progress!("PUT {path}: {e}");
                            failures += 1;
                            continue;
                        }
                    }
                    let confirmed = loop {
                        let done = storage
                            .latest_config(id)
                            .ok()
                            .flatten()
                            .is_some_and(|r| r.state == ConfigState::Applied);
                        if done {
                            break true;
                        }
                        if t0.elapsed() > Duration::from_secs(10) {
                            break false;
                        }
                        std::thread::sleep(Duration::from_millis(2));
                    };
                    if confirmed {
                        samples.push(t0.elapsed());
                    } else {
                        failures += 1;
                    }
                }
                (samples, failures)
            });
        }
        let mut samples = Samples::new();
        let mut failures = 0;
        while let Some(r) = workers.join_next().await {
            let (s, f) = r?;
            samples.extend(s);
            failures += f;
        }
        let acks = counters.config_acks.load(Ordering::Relaxed);
        devices.abort();
        handle.shutdown().await;
        let p50 = samples.percentile_ms(50.0);
        let p99 = samples.percentile_ms(99.0);
        let max = samples.percentile_ms(100.0);
        progress!(
            "{} samples, {failures} failures: p50 {p50:?} ms, p99 {p99:?} ms, max {max:?} ms",
            samples.len()
        );
        Ok(json!({
            "bench": "push",
            "devices": n,
            "samples": samples.len(),
            "failures": failures,
            "p50_ms": p50,
            "p99_ms": p99,
            "max_ms": max,
            "config_acks": acks,
            "via": "PUT /api/devices/{id}/config (bearer token)",
            "loadavg": super::procfs::loadavg(),
        })
        .to_string())
    })
}
