//! The operations behind every face of the server, one module per domain, with their
//! validation, access checks and audit entries. The HTML pages (`web`), the JSON API (`api`)
//! and the command line (`cli`) parse their own input, call these, and render the result; a
//! rule lives here once, whichever face asks.

pub mod accounts;
pub mod alarms;
pub mod apply;
pub mod audit;
pub mod channel_map;
pub mod channel_text;
pub mod channels;
pub mod commands;
pub mod config_change;
pub mod device_channels;
pub mod devices;
pub mod energy;
pub mod export;
pub mod schedules;
pub mod states;
pub mod view;
pub mod zones;
