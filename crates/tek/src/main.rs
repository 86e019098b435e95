//! `tek`: one binary for everything an operator or developer runs.
//!
//! This file only parses the command line, sets up logging and dispatches; each subcommand's
//! arguments and behaviour live in the crate that owns them.

mod bench;
mod demo;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "tek",
    version,
    about = "TEK Pool EMS: servers, controllers and tools"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a server: UDP ingest from controllers, storage, web UI and HTTP API.
    Serve(tek_server::cli::ServeArgs),
    /// Manage the device registry (provisioning keys).
    #[command(subcommand)]
    Device(tek_server::cli::DeviceCommand),
    /// Run a fleet of simulated controllers against one or more servers.
    Sim(tek_sim::cli::SimArgs),
    /// Run the whole system in one process: server, web UI, 25 simulated pool controllers and a
    /// plant-room controller reading two meters and a temperature transmitter.
    Demo(demo::DemoArgs),
    /// Manage web UI users (and their API tokens).
    #[command(subcommand)]
    User(tek_server::cli::accounts::UserCommand),
    /// Manage sites: who may see which controllers.
    #[command(subcommand)]
    Site(tek_server::cli::accounts::SiteCommand),
    /// Benchmarks: ingest, fleet, push, traffic (one JSON summary line on stdout).
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Emulate a GSM/3G modem for the firmware in QEMU: AT commands, PPP, UDP relay to loopback.
    Modem(tek_modem::cli::ModemArgs),
    /// Emulate Modbus RTU meters and a temperature transmitter on one bus for the firmware in QEMU.
    Meter(tek_meter::cli::MeterArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Serve(args) => tek_server::cli::serve(args),
        Command::Device(cmd) => tek_server::cli::device(cmd),
        Command::Sim(args) => tek_sim::cli::run(args),
        Command::Demo(args) => demo::run(args),
        Command::User(cmd) => tek_server::cli::accounts::user(cmd),
        Command::Site(cmd) => tek_server::cli::accounts::site(cmd),
        Command::Bench(cmd) => bench::run(cmd),
        Command::Modem(args) => tek_modem::cli::run(args),
        Command::Meter(args) => tek_meter::cli::run(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("tek: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
