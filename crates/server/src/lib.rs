//! The TEK server (issue 3 fills this in).
pub mod cli;
