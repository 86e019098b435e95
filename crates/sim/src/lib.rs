//! A fleet of simulated controllers (issue 4 fills this in).
pub mod cli;
