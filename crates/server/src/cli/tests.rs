//! Tests of `cli`.

use super::*;
use clap::Parser;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    cmd: Sub,
}
#[derive(clap::Subcommand)]
enum Sub {
    Serve(ServeArgs),
    #[command(subcommand)]
    Device(DeviceCommand),
}

fn run(args: &[&str]) -> anyhow::Result<String> {
    let cli = Cli::try_parse_from(std::iter::once("tek").chain(args.iter().copied()))
        .map_err(|e| anyhow::anyhow!("{}", e.to_string().lines().next().unwrap_or("")))?;
    let mut out = Vec::new();
    match cli.cmd {
        Sub::Device(d) => device_to(d, &mut out)?,
        Sub::Serve(s) => {
            s.resolve()?;
        }
    }
    Ok(String::from_utf8(out).unwrap())
}

#[test]
fn device_add_list_config_command() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = data.to_str().unwrap();
    let fleet = dir.path().join("fleet.toml");
    let f = fleet.to_str().unwrap();
    let one = dir.path().join("one.toml");
    run(&[
        "device",
        "add",
        "--data",
        d,
        "--id",
        "7",
        "--name",
        "pool-a",
        "--out",
        one.to_str().unwrap(),
    ])
    .unwrap();
    run(&["device", "add", "--data", d, "--count", "3", "--out", f]).unwrap();
    let fl = Fleet::load(&fleet).unwrap();
    assert_eq!(
        fl.device.iter().map(|x| x.id).collect::<Vec<_>>(),
        [8, 9, 10]
    );
    let listed = run(&["device", "list", "--data", d]).unwrap();
    assert!(listed.contains("pool-a"));
    for dev in &fl.device {
        assert!(!listed.contains(&dev.key), "list shows a key");
    }
    let saved = run(&[
        "device",
        "config",
        "--data",
        d,
        "--id",
        "8",
        "--set",
        "log_interval=30",
        "--set",
        "setpoint=26",
    ])
    .unwrap();
    assert!(saved.contains("version 1"), "{saved}");
    let shown = run(&["device", "config", "--data", d, "--id", "8"]).unwrap();
    assert!(shown.contains("log_interval_s: 30"), "{shown}");
    run(&[
        "device", "command", "--data", d, "--id", "8", "--relay", "1", "--mode", "on",
    ])
    .unwrap();
    run(&["device", "command", "--data", d, "--id", "8", "--reboot"]).unwrap();
}

/// One device gets its key the way a fleet does: in the --out file (mode 0600), which is
/// what a firmware team flashes from (README); without --out nothing is created, since a
/// key nobody was given could never be used (issue 14).
#[test]
fn one_device_key_is_written_to_out_and_out_is_required() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = data.to_str().unwrap();
    let file = dir.path().join("pool-1.toml");
    let said = run(&[
        "device",
        "add",
        "--data",
        d,
        "--id",
        "1",
        "--name",
        "Main pool",
        "--out",
        file.to_str().unwrap(),
    ])
    .unwrap();
    assert!(said.contains("pool-1.toml"), "{said}");
    let fleet = Fleet::load(&file).unwrap();
    assert_eq!(fleet.device.len(), 1);
    assert_eq!(
        (fleet.device[0].id, fleet.device[0].name.as_str()),
        (1, "Main pool")
    );
    let db = Sqlite::open_existing_dir(&data).unwrap();
    let stored = crate::storage::DeviceStore::load_device(&db, 1)
        .unwrap()
        .unwrap();
    assert_eq!(Some(stored.key), fleet.device[0].key());
    assert!(!said.contains(&fleet.device[0].key), "the key was printed");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let e = run(&["device", "add", "--data", d, "--id", "2"]).unwrap_err();
    assert!(e.to_string().contains("required"), "{e}");
    // The same when the arguments are built without clap (as tests and tools do).
    let e = device_to(
        DeviceCommand::Add(AddArgs {
            data: data.clone(),
            db: None,
            master_key: None,
            id: Some(2),
            name: None,
            count: None,
            first_id: None,
            out: None,
        }),
        &mut Vec::new(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("--out"), "{e}");
    assert!(crate::storage::DeviceStore::load_device(&db, 2)
        .unwrap()
        .is_none());
}

/// A stolen key is replaced (docs/SECURITY.md 6): the new key is in the --out file and in
/// the database, the old one is gone, the counter starts again; bad input changes nothing.
#[test]
fn rekey_replaces_a_device_key() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = data.to_str().unwrap();
    let first = dir.path().join("pool-1.toml");
    run(&[
        "device",
        "add",
        "--data",
        d,
        "--id",
        "1",
        "--name",
        "Main pool",
        "--out",
        first.to_str().unwrap(),
    ])
    .unwrap();
    let old = Fleet::load(&first).unwrap().device[0].key().unwrap();
    {
        let db = Sqlite::open_existing_dir(&data).unwrap();
        assert!(crate::storage::DeviceStore::accept_hello(&db, 1, 500, 1).unwrap());
    }
    let second = dir.path().join("pool-1-new.toml");
    let s = second.to_str().unwrap();
    let said = run(&["device", "rekey", "--data", d, "--id", "1", "--out", s]).unwrap();
    assert!(said.contains("restart the servers"), "{said}");
    let fleet = Fleet::load(&second).unwrap();
    let new = fleet.device[0].key().unwrap();
    assert_ne!(new, old);
    assert_eq!(
        (fleet.device[0].id, fleet.device[0].name.as_str()),
        (1, "Main pool")
    );
    assert!(!said.contains(&fleet.device[0].key), "the key was printed");
    let db = Sqlite::open_existing_dir(&data).unwrap();
    let stored = crate::storage::DeviceStore::load_device(&db, 1)
        .unwrap()
        .unwrap();
    assert_eq!((stored.key, stored.hello_counter), (new.clone(), None));
    // The file is never overwritten, an unknown device is a clear error and writes no file.
    let e = run(&["device", "rekey", "--data", d, "--id", "1", "--out", s]).unwrap_err();
    assert!(e.to_string().contains("exists already"), "{e}");
    let third = dir.path().join("pool-9.toml");
    let e = run(&[
        "device",
        "rekey",
        "--data",
        d,
        "--id",
        "9",
        "--out",
        third.to_str().unwrap(),
    ])
    .unwrap_err();
    assert!(e.to_string().contains("no device 9"), "{e}");
    assert!(!third.exists());
    let e = run(&["device", "rekey", "--data", d, "--id", "1"]).unwrap_err();
    assert!(e.to_string().contains("required"), "{e}");
    let stored = crate::storage::DeviceStore::load_device(&db, 1)
        .unwrap()
        .unwrap();
    assert_eq!(stored.key, new);
}

#[test]
fn bad_arguments_are_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let fleet = dir.path().join("f.toml");
    std::fs::write(&fleet, "").unwrap();
    let bad_cfg = dir.path().join("bad.toml");
    std::fs::write(&bad_cfg, "udp = 5").unwrap();
    let one = dir.path().join("one.toml");
    let fresh = dir.path().join("fresh.toml");
    let (one, fresh) = (one.to_str().unwrap(), fresh.to_str().unwrap());
    run(&["device", "add", "--data", d, "--id", "1", "--out", one]).unwrap();
    let cases: Vec<Vec<&str>> = vec![
        vec!["device", "add", "--data", d, "--id", "0", "--out", fresh],
        vec!["device", "add", "--data", d, "--id", "1", "--out", fresh],
        vec!["device", "add", "--data", d, "--id", "2"],
        vec!["device", "add", "--data", d, "--id", "x", "--out", fresh],
        vec!["device", "add", "--data", d],
        vec!["device", "add", "--data", d, "--count", "2"],
        vec![
            "device",
            "add",
            "--data",
            d,
            "--count",
            "2",
            "--out",
            fleet.to_str().unwrap(),
        ],
        vec!["device", "add", "--data", d, "--id", "5", "--count", "2"],
        vec!["device", "list", "--data", "/nonexistent/tek"],
        vec![
            "device",
            "config",
            "--data",
            d,
            "--id",
            "1",
            "--set",
            "log_interval=1",
        ],
        vec![
            "device", "config", "--data", d, "--id", "1", "--set", "bogus",
        ],
        vec!["device", "config", "--data", d, "--id", "99"],
        vec!["device", "command", "--data", d, "--id", "1"],
        vec![
            "device", "command", "--data", d, "--id", "1", "--relay", "9", "--mode", "on",
        ],
        vec![
            "device", "command", "--data", d, "--id", "1", "--relay", "1", "--mode", "up",
        ],
        vec!["serve", "--udp", "nonsense"],
        vec!["serve", "--config", bad_cfg.to_str().unwrap()],
        vec!["serve", "--config", "/nonexistent.toml"],
        vec!["serve", "--data", d, "--db", "postgres://127.0.0.1:1/tek"],
        vec![
            "device",
            "list",
            "--data",
            d,
            "--db",
            "postgres://127.0.0.1:1/tek",
        ],
        vec![
            "device",
            "list",
            "--db",
            "postgres://tek:pw@127.0.0.1:1/tek",
        ],
        vec![
            "device",
            "add",
            "--db",
            "not a url",
            "--id",
            "3",
            "--out",
            fresh,
        ],
    ];
    for args in cases {
        let e = run(&args).expect_err(&format!("{args:?} should fail"));
        let shown = format!("{e:#}");
        assert!(!shown.trim().contains('\n'), "{args:?}: {shown}");
    }
}

#[test]
fn flags_override_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tek.toml");
    std::fs::write(&file, "udp = \"127.0.0.1:1\"\nhttp = \"127.0.0.1:2\"\n").unwrap();
    let args = ServeArgs {
        config: Some(file),
        udp: Some("127.0.0.1:3".parse().unwrap()),
        http: None,
        data: Some(dir.path().into()),
        db: None,
        master_key: None,
    };
    let c = args.resolve().unwrap();
    assert_eq!(c.udp.port(), 3);
    assert_eq!(c.http.port(), 2);
    assert_eq!(c.data, dir.path());
}

#[tokio::test]
async fn serve_until_binds_and_stops() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config::for_tests(dir.path());
    serve_until(cfg, async {}).await.unwrap();
    assert!(dir.path().join("tek.db").exists());
    // A port that is taken is a clean error.
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut cfg = Config::for_tests(dir.path());
    cfg.udp = taken.local_addr().unwrap();
    let e = serve_until(cfg, async {}).await.unwrap_err().to_string();
    assert!(e.contains("cannot bind UDP"), "{e}");
}

#[test]
fn device_add_and_rotate_master_key_on_postgres() {
    let Some(db) = crate::storage::postgres::testing::database() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let fleet = dir.path().join("fleet.toml");
    let (url, key) = (db.url.as_str(), db.master_key.to_str().unwrap());
    let f = fleet.to_str().unwrap();
    // Keys need the master key file: without it, a clear error.
    assert!(run(&["device", "add", "--db", url, "--id", "9", "--out", f]).is_err());
    assert!(!fleet.exists());
    run(&[
        "device",
        "add",
        "--db",
        url,
        "--master-key",
        key,
        "--count",
        "2",
        "--out",
        f,
    ])
    .unwrap();
    // A configuration with a GSM password, sealed with the master key; read back with it,
    // and also after the rotation below.
    run(&[
        "device",
        "config",
        "--db",
        url,
        "--master-key",
        key,
        "--id",
        "1",
        "--set",
        "gsm_password=Sealed-Gsm-1",
    ])
    .unwrap();
    let before = std::fs::read(&db.master_key).unwrap();
    let said = run(&[
        "device",
        "rotate-master-key",
        "--db",
        url,
        "--master-key",
        key,
    ])
    .unwrap();
    assert!(said.contains("re-sealed 2 device key(s)"), "{said}");
    assert_ne!(std::fs::read(&db.master_key).unwrap(), before);
    let old = format!("{key}.old");
    assert_eq!(std::fs::read(&old).unwrap(), before);
    let pg = crate::storage::postgres::Postgres::connect_sealed(url, &db.master_key).unwrap();
    let c = crate::storage::ConfigStore::latest_config(&pg, 1)
        .unwrap()
        .unwrap();
    assert_eq!(c.config.gsm.password, "Sealed-Gsm-1");
    // Without the master key the sealed configuration cannot be read: a clear error.
    let err = run(&["device", "config", "--db", url, "--id", "1"]).unwrap_err();
    assert!(err.to_string().contains("master key"), "{err}");
    for dev in Fleet::load(&fleet).unwrap().device {
        let stored = crate::storage::DeviceStore::load_device(&pg, dev.id).unwrap();
        assert_eq!(stored.unwrap().key, dev.key().unwrap());
    }
    let err = run(&[
        "device",
        "rotate-master-key",
        "--db",
        url,
        "--master-key",
        key,
    ]);
    assert!(err.unwrap_err().to_string().contains(".old"));
}

#[test]
fn device_rotate_master_key() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = data.to_str().unwrap();
    let fleet = dir.path().join("fleet.toml");
    run(&[
        "device",
        "add",
        "--data",
        d,
        "--count",
        "2",
        "--out",
        fleet.to_str().unwrap(),
    ])
    .unwrap();
    let before = std::fs::read(data.join("master.key")).unwrap();
    let said = run(&["device", "rotate-master-key", "--data", d]).unwrap();
    assert!(said.contains("re-sealed 2 device key(s)"), "{said}");
    assert_ne!(std::fs::read(data.join("master.key")).unwrap(), before);
    assert_eq!(std::fs::read(data.join("master.key.old")).unwrap(), before);
    // The keys open under the new master key.
    let db = Sqlite::open_existing_dir(&data).unwrap();
    for dev in Fleet::load(&fleet).unwrap().device {
        let stored = crate::storage::DeviceStore::load_device(&db, dev.id).unwrap();
        assert_eq!(stored.unwrap().key, dev.key().unwrap());
    }
    drop(db);
    // A second rotation refuses while the old key has not been destroyed.
    let err = run(&["device", "rotate-master-key", "--data", d]).unwrap_err();
    assert!(err.to_string().contains("master.key.old"), "{err}");
}
