//! The TEK controller's logic, without hardware: events in, actions out (issue 4 fills this in).
#![no_std]
#![forbid(unsafe_code)]
