//! # tek-modem — `tek modem`, a GSM/3G modem emulator for the test bench
//!
//! The firmware's modem UART (QEMU's `-serial tcp:...`) connects to it. It answers the AT
//! commands a GSM module answers, runs the network side of PPP, and relays the device's UDP to
//! servers on loopback — a cellular network in one process, because pppd cannot run here
//! (no `/dev/ppp`). A control channel loses the signal, refuses an APN or drops the call.
//!
//! Layers, one module each: [`hdlc`] (framing, FCS-16), [`ppp`] (LCP, PAP, IPCP: the network
//! side), [`at`] (command parser), [`ip`] (IPv4/UDP with checksums), [`modem`] (the state machine
//! that ties them together, no I/O), [`cli`] (sockets: serial, control, relay).

pub mod at;
pub mod cli;
pub mod control;
pub mod hdlc;
pub mod ip;
pub mod modem;
pub mod ppp;
