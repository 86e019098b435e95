//! `tek bench`: how fast and how frugal the system is, measured side by side with a baseline in
//! the same run (the machines are shared and noisy, so ratios mean more than absolute figures).
//!
//! Each benchmark is a program, not a timed test: it starts what it needs itself (a `tek serve`
//! child on 127.0.0.1 with a temporary data directory, load generators in this process), prints
//! progress lines to stderr and ends with **one line of JSON on stdout**. All traffic stays on
//! loopback; every load loop is bounded in count and in time.
//!
//! * [`ingest`] — telemetry records stored and acknowledged per second against a plain UDP echo.
//! * [`fleet`] — server memory per device with many live sessions, CPU at idle.
//! * [`push`] — configuration save to stored confirmation, p50/p99.
//! * [`traffic`] — bytes per controller per month at the default configuration.
//! * [`flood`] — 1,000 controllers' ack latency while other sockets flood the server.
//! * [`login_flood`] — memory, a user's login and ack latency while the login form is flooded.
//! * [`history`] — bytes per record and the long-range reads (year chart, CSV, site energy) over
//!   days of simulated 1-minute history.
//!
//! Shared pieces: [`server`] (the child server and its provisioning), [`loadgen`] (bench devices
//! speaking the protocol with `tek-proto`), [`echo`] (the baseline echo server), [`procfs`]
//! (CPU and memory of a process) and [`stats`].

pub mod echo;
pub mod fleet;
pub mod flood;
pub mod history;
mod history_db;
pub mod ingest;
pub mod loadgen;
pub mod login_flood;
pub mod procfs;
pub mod push;
pub mod server;
pub mod stats;
pub mod traffic;
pub mod wide_model;

/// `tek bench ...`
#[derive(clap::Subcommand, Debug)]
pub enum BenchCommand {
    /// Telemetry ingest: records durably stored and acknowledged per second, ack latency,
    /// server CPU, against a plain UDP echo baseline.
    Ingest(ingest::Args),
    /// Fleet size: server memory per device with N live sessions and keepalives, CPU at idle.
    Fleet(fleet::Args),
    /// Push latency: configuration saved through the HTTP API to confirmation stored.
    Push(push::Args),
    /// Traffic of one controller at the default configuration, scaled to a 30-day month.
    Traffic(traffic::Args),
    /// Flood: ack latency of N controllers while attackers send garbage, forged, unknown and
    /// replayed datagrams as fast as they can; nothing may reach the attackers, nothing be lost.
    Flood(flood::Args),
    /// Login flood: server memory, a legitimate user's login and telemetry ack latency while
    /// attackers flood `/login` from 1 and from 256 addresses.
    LoginFlood(login_flood::Args),
    /// History: N devices x D days of simulated 1-minute records written through the ingest
    /// writer's storage call, then bytes per record, the year chart, the device CSV, the site
    /// energy and `/healthz` during it, over HTTP.
    History(history::Args),
    /// The baseline of `bench ingest`: a plain UDP echo server (run as a child process).
    #[command(hide = true)]
    Echo(echo::Args),
}

/// Runs a benchmark; the summary line goes to stdout.
pub fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    let summary = match cmd {
        BenchCommand::Ingest(a) => ingest::run(a)?,
        BenchCommand::Fleet(a) => fleet::run(a)?,
        BenchCommand::Push(a) => push::run(a)?,
        BenchCommand::Traffic(a) => traffic::run(a)?,
        BenchCommand::Flood(a) => flood::run(a)?,
        BenchCommand::LoginFlood(a) => login_flood::run(a)?,
        BenchCommand::History(a) => history::run(a)?,
        BenchCommand::Echo(a) => {
            echo::run(a)?;
            return Ok(());
        }
    };
    println!("{summary}");
    Ok(())
}

/// A progress line on stderr.
macro_rules! progress {
    ($($t:tt)*) => {
        eprintln!("bench: {}", format!($($t)*))
    };
}
pub(crate) use progress;
