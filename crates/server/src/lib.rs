//! The TEK server.
pub mod config;
pub mod fleet;
pub mod keys;
pub mod metrics;
pub mod storage;
pub mod cli;
