//! # tek-sim — a fleet of simulated TEK controllers over real UDP
//!
//! Runs the real controller logic (`tek-controller`) for every device of a fleet file against
//! one or more servers, each controller with its own loopback address and UDP sockets, its own
//! flash (kept across simulated power cycles) and its own pool equipment model. Used by
//! `tek sim`, and as a library by `tek demo` / `tek bench` (start a [`Fleet`] in-process and read
//! its live [`Counters`]).
//!
//! * [`fleet`] — the fleet file.
//! * [`plant`] — pump, heater, water and air, energy meter.
//! * [`channels`] — the channel part and the simulated board (`--channels`, `--meters`).
//! * [`meters`] — Modbus meters and a temperature transmitter on a controller's bus.
//! * [`runner`] — the controllers' host loops, fault injection, counters.
//! * [`reference`] — a minimal responder for tests and load measurements without a database.
//! * [`cli`] — `tek sim`.

pub mod channels;
pub mod cli;
pub mod fleet;
pub mod meters;
pub mod plant;
pub mod reference;
pub mod runner;

pub use runner::{AckLedger, AckedBoot, Counters, Fleet, Options, Snapshot};

/// Log capacity of each simulated controller (records). Smaller than the firmware's so 10,000
/// controllers fit comfortably; still 8.5 hours at one record a minute.
pub const SIM_LOG: usize = 512;
