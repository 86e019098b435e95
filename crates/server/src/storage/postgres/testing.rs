//! A throwaway PostgreSQL cluster for tests (built with `cfg(test)` or the `pg-testing`
//! feature; never part of a server).
//!
//! One cluster per test process, started at first use: `initdb` into a fresh directory under the
//! system temp dir, `postgres` listening only on 127.0.0.1 on a free port with its unix socket
//! inside that directory, `fsync=off` for speed, trust authentication (nothing else can reach
//! it). PostgreSQL refuses to run as root, so as root (CI) it runs as the `postgres` user that
//! Debian's package creates (`runuser -u postgres --`). A watcher shell started with it stops the
//! server (SIGQUIT) and removes the directory as soon as the test process is gone, however the
//! process ended, so nothing outlives the tests.
//!
//! The binaries are found without any environment: `TEK_PG_BIN` if set, else the newest
//! `/usr/lib/postgresql/*/bin` (Debian's layout), else `initdb` on the `PATH`.
//! `scripts/setup.sh` installs the packages on a fresh machine.
//!
//! When the cluster cannot start, [`database`] panics if the environment variable `CI` is set
//! (`true`/`1`): in CI a missing PostgreSQL is a failure, not a skip. Elsewhere it prints a loud
//! message and returns `None`, and the test returns early.

use super::Postgres;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A running test cluster.
#[derive(Debug)]
pub struct Cluster {
    /// TCP port on 127.0.0.1.
    pub port: u16,
    /// The cluster's directory (data, socket, log).
    pub dir: PathBuf,
}

/// A fresh database on the test cluster, with a connected storage.
#[derive(Debug)]
pub struct TestDb {
    /// The connected storage.
    pub db: Postgres,
    /// Its URL (for more connections, e.g. a second "server").
    pub url: String,
    /// The database name.
    pub name: String,
    /// The master key file its device keys are sealed under (in the cluster's directory, 0600):
    /// give it to every server and `tek device` command that uses this database.
    pub master_key: PathBuf,
}

impl std::ops::Deref for TestDb {
    type Target = Postgres;
    fn deref(&self) -> &Postgres {
        &self.db
    }
}

static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();
static NEXT_DB: AtomicU32 = AtomicU32::new(1);

/// Whether this run is CI (a missing PostgreSQL must fail there).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// The process' test cluster, started at first call.
pub fn cluster() -> Option<&'static Cluster> {
    match CLUSTER.get_or_init(start) {
        Ok(c) => Some(c),
        Err(why) => {
            if in_ci() {
                panic!("PostgreSQL test cluster cannot start (CI=true, so this fails): {why}");
            }
            // Once per process, straight to stderr: the test harness captures `eprintln!` of
            // passing tests, and a skip must be seen.
            static TOLD: std::sync::Once = std::sync::Once::new();
            TOLD.call_once(|| {
                use std::io::Write;
                let _ = writeln!(
                    std::io::stderr(),
                    "\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\
                     !!! SKIPPING PostgreSQL tests: {why}\n\
                     !!! Run scripts/setup.sh to install PostgreSQL. In CI (CI=true) this fails.\n\
                     !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n"
                );
            });
            None
        }
    }
}

impl Cluster {
    /// URL of database `name` as the superuser.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// Runs SQL as the superuser on database `postgres` (from any thread or runtime).
    pub fn admin(&self, sql: &str) -> Result<(), String> {
        admin(&self.url("postgres"), sql)
    }

    /// Creates an empty database and returns its URL.
    pub fn create_database(&self) -> Result<(String, String), String> {
        let name = format!(
            "tek_test_{}_{}",
            std::process::id(),
            NEXT_DB.fetch_add(1, Ordering::Relaxed)
        );
        self.admin(&format!("CREATE DATABASE {name}"))?;
        Ok((self.url(&name), name))
    }
}

/// A fresh, migrated database (see the module doc for what happens when there is no cluster).
pub fn database() -> Option<TestDb> {
    let cluster = cluster()?;
    let (url, name) = cluster
        .create_database()
        .unwrap_or_else(|e| panic!("cannot create a test database: {e}"));
    let master_key = cluster.dir.join(format!("{name}.master.key"));
    let db = Postgres::connect_sealed(&url, &master_key)
        .unwrap_or_else(|e| panic!("cannot open {url}: {e}"));
    Some(TestDb {
        db,
        url,
        name,
        master_key,
    })
}

/// Runs `sql` on the database at `url` (tests that reshape a database, e.g. back to an older
/// schema version).
pub fn execute(url: &str, sql: &str) -> Result<(), String> {
    admin(url, sql)
}

/// One statement batch on a fresh connection, on a thread of its own so it works from sync
/// tests and from inside an async runtime alike.
fn admin(url: &str, sql: &str) -> Result<(), String> {
    let (url, sql) = (url.to_owned(), sql.to_owned());
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        rt.block_on(async move {
            let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .map_err(|e| e.to_string())?;
            let driver = tokio::spawn(conn);
            let r = client.batch_execute(&sql).await.map_err(|e| e.to_string());
            drop(client);
            let _ = driver.await;
            r
        })
    })
    .join()
    .map_err(|_| "admin thread panicked".to_string())?
}

/// Where `initdb` and `postgres` are.
pub fn bin_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("TEK_PG_BIN") {
        return Some(PathBuf::from(dir));
    }
    let mut best: Option<(u32, PathBuf)> = None;
    if let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") {
        for e in entries.flatten() {
            let bin = e.path().join("bin");
            let version = e
                .file_name()
                .to_string_lossy()
                .split('.')
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            if bin.join("initdb").exists() && best.as_ref().is_none_or(|(v, _)| version > *v) {
                best = Some((version, bin));
            }
        }
    }
    if let Some((_, bin)) = best {
        return Some(bin);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .find(|p| p.join("initdb").exists() && p.join("postgres").exists())
    })
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// A command that runs as the cluster's owner: `postgres` when we are root.
fn as_owner(program: &str) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--", program]);
        c
    } else {
        Command::new(program)
    }
}

fn run(cmd: &mut Command, what: &str) -> Result<(), String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {what}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

fn free_port() -> Result<u16, String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.port())
}

fn start() -> Result<Cluster, String> {
    let bin = bin_dir().ok_or("no PostgreSQL binaries (initdb) under /usr/lib/postgresql/*/bin")?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let dir = std::env::temp_dir().join(format!("tek-pg-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    if is_root() {
        run(
            Command::new("chown").args(["postgres:", &dir.to_string_lossy()]),
            "chown (is there a postgres user? scripts/setup.sh installs PostgreSQL)",
        )?;
    }
    let data = dir.join("data");
    let initdb = bin.join("initdb");
    run(
        as_owner(&initdb.to_string_lossy())
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"]),
        "initdb",
    )?;
    let mut last = String::new();
    for _ in 0..3 {
        let port = free_port()?;
        match launch(&bin, &dir, &data, port) {
            Ok(()) => return Ok(Cluster { port, dir }),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Starts `postgres` with its watcher and waits until it accepts connections.
fn launch(bin: &Path, dir: &Path, data: &Path, port: u16) -> Result<(), String> {
    let postgres = bin.join("postgres");
    // The watcher: postgres in the background; when the test process (or postgres) is gone,
    // stop postgres at once and remove the directory.
    let script = r#"
"$PG" -D "$DATA" -p "$PORT" -c listen_addresses=127.0.0.1 -c unix_socket_directories="$DIR" \
  -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300 \
  -c shared_buffers=64MB -c log_min_messages=warning >>"$DIR/log" 2>&1 &
pg=$!
while [ -d "/proc/$OWNER" ] && kill -0 "$pg" 2>/dev/null; do sleep 0.3; done
kill -QUIT "$pg" 2>/dev/null
wait "$pg" 2>/dev/null
[ -d "/proc/$OWNER" ] || rm -rf "$DIR"
"#;
    let mut cmd = as_owner("sh");
    cmd.arg("-c")
        .arg(script)
        .env("PG", &postgres)
        .env("DATA", data)
        .env("DIR", dir)
        .env("PORT", port.to_string())
        .env("OWNER", std::process::id().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // runuser keeps the environment we pass.
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start postgres: {e}"))?;
    let url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if admin(&url, "SELECT 1").is_ok() {
            // Reap the watcher in the background when it ends; never wait for it here.
            std::thread::spawn(move || child.wait());
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(dir.join("log")).unwrap_or_default();
            return Err(format!("postgres exited ({status}): {}", log.trim()));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return Err("postgres did not accept connections within 30 s".into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
