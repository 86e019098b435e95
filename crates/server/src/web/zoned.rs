//! How a [`Zone`]'s times look on a page: `<time>` elements with their machine-readable
//! instant, and the "Times in ..." note.

use crate::service::zones::Zone;
use crate::timefmt;
use maud::{html, Markup};

/// A zone's times as HTML.
pub trait ZoneHtml {
    /// `t` local in this zone as a `<time>` element (machine-readable with its offset).
    fn time(&self, t: i64) -> Markup;
    /// `t` with the zone's abbreviation, the zone's name as a tooltip.
    fn time_abbr(&self, t: i64) -> Markup;
    /// "Times in Europe/Berlin."
    fn note(&self) -> Markup;
}

impl ZoneHtml for Zone {
    fn time(&self, t: i64) -> Markup {
        html! { time datetime=(timefmt::iso(&self.tz, t)) { (timefmt::local(&self.tz, t)) } }
    }

    fn time_abbr(&self, t: i64) -> Markup {
        html! { time datetime=(timefmt::iso(&self.tz, t)) title=(self.name) { (timefmt::local_abbr(&self.tz, t)) } }
    }

    fn note(&self) -> Markup {
        html! { span.zone-note { "Times in " strong data-zone=(self.name) { (self.name) } "." } }
    }
}
