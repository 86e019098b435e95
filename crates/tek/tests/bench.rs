//! Smoke test of `tek bench`: small runs of the benchmarks whose summary line must parse and
//! hold sane figures. Not a timed test — the figures themselves are recorded in BENCHMARKS.md.

use std::process::Command;

/// Runs `tek bench ARGS` and returns its one JSON summary line.
fn bench(args: &[&str]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_tek"))
        .arg("bench")
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run tek bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "tek bench {args:?} failed: {stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "one summary line on stdout, got {stdout:?}");
    assert!(stderr.contains("bench:"), "progress lines on stderr");
    serde_json::from_str(lines[0]).expect("the summary line is JSON")
}

fn num(v: &serde_json::Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} missing in {v}"))
}

#[test]
fn traffic_one_day() {
    let v = bench(&["traffic", "--days", "1"]);
    assert_eq!(v["bench"], "traffic");
    let mb = num(&v, "mb_per_month");
    // PROTOCOL.md 14 computes 3.3 MB; anything far off means a broken loop or counting.
    assert!((2.5..=4.5).contains(&mb), "{mb} MB per month");
    // One record a minute for a day, nearly all acknowledged.
    assert!(num(&v, "records_logged") >= 1430.0, "{v}");
    assert!(num(&v, "records_acked") >= 1400.0, "{v}");
    assert!(num(&v, "sessions") >= 1.0, "{v}");
}

#[test]
fn ingest_small() {
    let v = bench(&[
        "ingest",
        "--seconds",
        "2",
        "--devices",
        "10",
        "--sockets",
        "2",
    ]);
    assert_eq!(v["bench"], "ingest");
    let pps = num(&v, "pps");
    let base = num(&v, "baseline_pps");
    assert!(pps > 0.0 && base > 0.0, "{v}");
    let ratio = num(&v, "ratio");
    assert!((ratio - pps / base).abs() < 1e-6 * ratio.max(1.0), "{v}");
    // Durability: what was acknowledged is in the database.
    assert!(num(&v, "records_stored") >= num(&v, "records_acked"), "{v}");
    assert!(num(&v, "records_acked") > 0.0, "{v}");
    let p50 = num(&v, "ack_p50_ms");
    let p99 = num(&v, "ack_p99_ms");
    assert!(p50 > 0.0 && p99 >= p50, "{v}");
    assert!(num(&v, "server_cpu_cores") > 0.0, "{v}");
    // Every acknowledged batch was committed to the database's log: a few hundred bytes at
    // least, through write calls, per batch.
    assert!(num(&v, "server_write_call_bytes_per_batch") > 100.0, "{v}");
}

#[test]
fn flood_small() {
    let v = bench(&[
        "flood",
        "--seconds",
        "2",
        "--devices",
        "50",
        "--interval-ms",
        "200",
        "--attack-sockets",
        "4",
        // What an unoptimised (test profile) server keeps up with on a loaded machine; the
        // release benchmark floods as fast as one thread can.
        "--attack-pps",
        "3000",
    ]);
    assert_eq!(v["bench"], "flood");
    // Every kind of attack datagram was sent, and nothing came back to an attacking socket.
    for kind in ["garbage", "wrong_tag", "unknown_id", "replay"] {
        assert!(num(&v["attack_by_kind"], kind) > 0.0, "{kind}: {v}");
    }
    assert_eq!(num(&v, "bytes_to_attackers"), 0.0, "{v}");
    // The server dropped them for the reasons they were built to hit.
    for reason in [
        "auth",
        "replay",
        "unknown_device",
        "stale_session",
        "version",
    ] {
        assert!(num(&v["server_drops"], reason) > 0.0, "{reason}: {v}");
    }
    // The controllers kept working, and nothing they saw acknowledged is missing.
    assert!(num(&v, "ack_samples_calm") > 0.0, "{v}");
    assert!(num(&v, "ack_samples_flood") > 0.0, "{v}");
    assert!(num(&v, "ack_p99_ms_flood") > 0.0, "{v}");
    assert!(num(&v, "records_acked") > 0.0, "{v}");
    assert_eq!(num(&v, "records_lost"), 0.0, "{v}");
    assert!(
        num(&v, "rss_before") > 0.0 && num(&v, "rss_after") > 0.0,
        "{v}"
    );
}

#[test]
fn login_flood_small() {
    let v = bench(&[
        "login-flood",
        // Two seconds a phase: with ten devices at one batch a second, a phase of one second
        // on a loaded machine (the whole test suite beside it) could see no Ack at all.
        "--seconds",
        "2",
        "--devices",
        "10",
        "--attackers",
        "2",
        "--attack-rps",
        "60",
    ]);
    assert_eq!(v["bench"], "login-flood");
    assert!(num(&v, "ack_samples_calm") > 0.0, "{v}");
    let floods = v["floods"].as_array().expect("floods");
    assert_eq!(floods.len(), 3, "{v}");
    for f in floods {
        // Bounded memory (the goal is 300 MB; a small run stays far below).
        assert!(num(f, "rss_max_kib") < 300.0 * 1024.0, "{f}");
        assert!(num(f, "ack_samples") > 0.0, "{f}");
    }
    // From one address, the address limit answers before any password check.
    assert_eq!(floods[0]["addresses"], 1);
    assert!(num(&floods[0]["attack_logins"], "429") > 0.0, "{v}");
    assert_eq!(floods[1]["addresses"], 256);
    assert_eq!(floods[1]["networks"], 1);
    assert_eq!(floods[2]["networks"], 256);
}

#[test]
fn bad_arguments_are_clear_errors() {
    let out = Command::new(env!("CARGO_BIN_EXE_tek"))
        .args(["bench", "ingest", "--db", "postgres://x"])
        .output()
        .expect("run tek bench");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("only `sqlite`"));
    let out = Command::new(env!("CARGO_BIN_EXE_tek"))
        .args(["bench", "fleet", "--devices", "0"])
        .output()
        .expect("run tek bench");
    assert!(!out.status.success());
}

#[test]
fn history_small() {
    let v = bench(&[
        "history",
        "--devices",
        "2",
        "--days",
        "2",
        "--batch",
        "1000",
    ]);
    assert_eq!(v["bench"], "history");
    assert_eq!(num(&v, "devices"), 2.0, "{v}");
    assert_eq!(num(&v, "days"), 2.0, "{v}");
    // Every minute of both days of both devices, written through the ingest writer's call.
    assert_eq!(num(&v, "records"), 2.0 * 2.0 * 1440.0, "{v}");
    for key in [
        "bytes_per_record",
        "chart_year_ms",
        "device_csv_ms",
        "site_energy_ms",
        "healthz_during_ms",
        "devices_during_ms",
        "devices_first_ms",
        "write_seconds",
    ] {
        let x = num(&v, key);
        assert!(x > 0.0 && x.is_finite(), "{key} = {x}: {v}");
    }
    // A record of five channels, its indexes and a small database's fixed pages: more than the
    // 20 bytes of its values, far less than a kilobyte, once the telemetry inbox's two journal
    // files (2 MiB each, preallocated, counted in `db_bytes`) are left out.
    let journals = 2.0 * f64::from(2u32 << 20);
    let (db_bytes, records) = (num(&v, "db_bytes"), num(&v, "records"));
    assert!(db_bytes > journals, "{db_bytes} bytes on disk: {v}");
    let b = (db_bytes - journals) / records;
    assert!((20.0..1000.0).contains(&b), "{b} bytes per record: {v}");
    assert!(
        (num(&v, "bytes_per_record") - db_bytes / records).abs() < 0.01,
        "{v}"
    );
    assert!(
        num(&v, "loadavg_start") >= 0.0 && num(&v, "loadavg_end") >= 0.0,
        "{v}"
    );
}
