//! The web UI: server-rendered pages (maud, escaped by construction), one small script and one
//! stylesheet embedded in the binary, live updates over Server-Sent Events. A face over
//! [`crate::service`], as the JSON API ([`crate::api`]) is; both are routed in [`crate::router`].
//!
//! Layers, outermost first: security headers on every answer ([`crate::http::headers`]), a body
//! size limit, then per route an authentication extractor ([`auth`] for pages,
//! [`crate::http::auth`] underneath) and an authorization check ([`crate::http::access`]) before
//! any data is read. A user who is not an admin sees only the devices of
//! their sites; any other device answers 404 exactly like a device that does not exist.
//!
//! Pages, by file: [`login`] (`/`, `/login`, `/logout`), [`dashboard`], [`device`] (readings,
//! charts, setpoint, commands, data use, CSV export), [`configure`] (Configure → System),
//! [`events`] (SSE), [`audit_page`], [`admin`], [`account`] (password, API tokens),
//! [`alarms_page`] (alarms, rules, notification log; destinations and lists for admins),
//! [`schedules`] (Configure → Schedules), [`site`] (energy and cost, time zone, tariff),
//! [`templates`] (channel templates and their channels) and [`template_editor`] (creating,
//! editing and deleting them).

pub mod account;
pub mod admin;
pub mod alarms_admin;
pub mod alarms_page;
pub mod assets;
pub mod audit_page;
pub mod auth;
pub mod bulk;
pub mod charts;
pub mod configure;
pub mod dashboard;
pub mod device;
pub mod error;
pub mod events;
pub mod export;
pub mod fields;
pub mod layout;
pub mod login;
pub mod rollback;
pub mod schedules;
pub mod site;
pub mod template_editor;
pub mod templates;
pub mod units;
pub mod zoned;
