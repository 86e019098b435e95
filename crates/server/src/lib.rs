//! # tek-server — the TEK server
//!
//! Every controller talks to a server over encrypted UDP; every user works through its web UI.
//! This crate is the server's core, organised by data flow:
//!
//! * [`udp`] — the socket loop: cheap checks, handshakes (one database compare-and-set per
//!   session), the in-memory session table, message dispatch, config/command delivery.
//! * `writer` — batches every durable write of the ingest path into few transactions;
//!   telemetry is acknowledged only after its commit.
//! * [`storage`] — the [`storage::Storage`] interface (one trait per entity) and its SQLite
//!   backend; the PostgreSQL backend (issue 6) is one more module behind the same traits.
//! * [`api`] — the HTTP listener: `/healthz`, `/metrics` (the web UI joins it, issue 5).
//! * [`server`] — [`Server::start`] / [`Server::run`] and the in-process [`Api`] the web UI,
//!   the CLI and tests call.
//! * [`config`] — one serde tree (TOML file + flags), [`cli`] — `tek serve` and `tek device`.
//! * [`alarms`] — alarm rules, the evaluation engine (fed by the writer after each commit),
//!   escalation and notification delivery (SMTP, signed webhooks).
//! * [`energy`] — kWh per local day/month, peak 15-minute demand and tariff cost (pure).
//! * [`fleet`] — the fleet file format `tek device add --count` writes and `tek sim` reads.
//! * [`service`] — the operations behind the faces (`web` pages, `api` JSON, `cli`), one
//!   module per domain, with their validation, access checks and audit entries.
//! * [`clock`], [`runtime`] — the bottom: Unix time, the shutdown signal, blocking work off
//!   the async threads; they import nothing of the server, everything else may import them.
//! * [`tzdb`] — IANA zone names to the POSIX TZ rules schedules send to controllers.
//!
//! ## Guarantees
//! * A bad datagram is dropped silently and counted (`tek_datagrams_dropped_total{reason}`);
//!   nothing is ever sent in reply to one, and no state changes.
//! * An acknowledged telemetry record is committed (SQLite WAL, `synchronous=FULL`); a record
//!   retransmitted any number of times is stored once.
//! * Device keys are generated from the OS random source and never logged, printed by `Debug`,
//!   or returned by [`Api`].
#![warn(missing_docs)]

pub mod alarms;
pub mod api;
pub mod cli;
pub mod clock;
pub mod config;
pub mod device_config;
pub mod energy;
pub mod expr;
pub mod fleet;
pub mod http;
pub mod http_limit;
pub mod inproc;
pub mod keys;
pub mod metrics;
pub mod mqtt;
pub mod provision;
pub mod router;
pub mod runtime;
pub mod server;
pub mod service;
pub mod storage;
pub mod timefmt;
pub mod tzdb;
pub mod udp;
pub mod vault;
pub mod web;
mod write_job;
mod writer;

pub use config::Config;
pub use server::{Api, ApiError, DeviceState, Server, ServerHandle, StartError};
