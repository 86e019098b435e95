//! # tek-meter — `tek meter`, a Modbus RTU slave emulator for the test bench
//!
//! The firmware's Modbus UART (QEMU's `-serial tcp:...`) connects to it. Several emulated
//! devices share the bus — Eastron SDM630 and SDM120 energy meters, a ControlBox TB260 PT100
//! temperature transmitter — each with its vendor's register table; their values come from a
//! plant model, a script, or the control socket, which also injects faults (no answer, a bad
//! CRC, an exception code, the bus unplugged).
//!
//! Layers, one module each: [`frame`] (byte stream → request frames: length by function code,
//! CRC-16, the 3.5-character silence, resync), [`device`] (register tables and encodings),
//! [`values`] (plant models, script, overrides), [`bus`] (slaves, faults, answers through
//! rmodbus' slave side, control commands; no I/O), [`cli`] (sockets: serial, control).
//!
//! [`bus::Bus`] has no I/O and no clock, so it also runs in process: `tek sim --meters` gives
//! each simulated controller such a bus (on the seeded [`values::Profile::Day`] plant model)
//! behind its `ChannelBus`, with the same register tables and answers as on the bench.

pub mod bus;
pub mod cli;
pub mod device;
pub mod frame;
pub mod values;
