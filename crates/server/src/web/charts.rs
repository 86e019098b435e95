//! Charts as inline SVG rendered on the server from the database's time buckets: no chart
//! library, no script, nothing fetched from elsewhere. A gap in the data (more than two buckets
//! without a record) breaks the line instead of bridging it.

use crate::timefmt;
use maud::{html, Markup};

/// The time ranges the device page offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Range {
    /// Last hour, one point a minute.
    Hour,
    /// Last 24 hours, one point per 5 minutes.
    Day,
    /// Last 7 days, one point per 30 minutes.
    Week,
    /// Last 30 days, one point per 2 hours.
    Month,
    /// Last 365 days, one point a day (the interactive chart: about 600 buckets with min/max).
    Year,
    /// Last 3 years, one point per 3 days.
    ThreeYears,
}

impl Range {
    /// Every range, in menu order.
    pub const ALL: [Range; 6] = [
        Range::Hour,
        Range::Day,
        Range::Week,
        Range::Month,
        Range::Year,
        Range::ThreeYears,
    ];

    /// Parses `1h`, `24h`, `7d`, `30d`, `1y`, `3y`.
    pub fn parse(s: &str) -> Option<Range> {
        Some(match s {
            "1h" => Range::Hour,
            "24h" => Range::Day,
            "7d" => Range::Week,
            "30d" => Range::Month,
            "1y" => Range::Year,
            "3y" => Range::ThreeYears,
            _ => return None,
        })
    }

    /// The query value.
    pub fn key(self) -> &'static str {
        match self {
            Range::Hour => "1h",
            Range::Day => "24h",
            Range::Week => "7d",
            Range::Month => "30d",
            Range::Year => "1y",
            Range::ThreeYears => "3y",
        }
    }

    /// Length, seconds.
    pub fn span(self) -> i64 {
        match self {
            Range::Hour => 3600,
            Range::Day => 86_400,
            Range::Week => 7 * 86_400,
            Range::Month => 30 * 86_400,
            Range::Year => 365 * 86_400,
            Range::ThreeYears => 3 * 365 * 86_400,
        }
    }

    /// Bucket length, seconds.
    pub fn step(self) -> i64 {
        match self {
            Range::Hour => 60,
            Range::Day => 300,
            Range::Week => 1800,
            Range::Month => 7200,
            Range::Year => 86_400,
            Range::ThreeYears => 3 * 86_400,
        }
    }
}

const W: f64 = 720.0;
const H: f64 = 200.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 26.0;

/// One line of a chart.
pub struct Series<'a> {
    /// Legend text.
    pub label: &'a str,
    /// CSS class (colour).
    pub class: &'a str,
    /// `(time, value)`, oldest first.
    pub points: Vec<(i64, f64)>,
}

fn nice_bounds(lo: f64, hi: f64) -> (f64, f64) {
    if !lo.is_finite() || !hi.is_finite() {
        return (0.0, 1.0);
    }
    if (hi - lo).abs() < 1e-9 {
        return (lo - 1.0, hi + 1.0);
    }
    let pad = (hi - lo) * 0.08;
    (lo - pad, hi + pad)
}

/// An axis label local in `tz`: `HH:MM` over two days or less, else `MM-DD`.
fn time_label(tz: &jiff::tz::TimeZone, t: i64, span: i64) -> String {
    let s = timefmt::local(tz, t);
    if span <= 2 * 86_400 {
        s[11..16].to_owned()
    } else {
        s[5..10].to_owned()
    }
}

/// A line chart of `series` over `[from, to)`, with buckets of `step` seconds.
pub fn line_chart(
    title: &str,
    unit: &str,
    tz: &jiff::tz::TimeZone,
    from: i64,
    to: i64,
    step: i64,
    series: &[Series<'_>],
) -> Markup {
    let values = series.iter().flat_map(|s| s.points.iter().map(|p| p.1));
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
        (a.min(v), b.max(v))
    });
    let empty = series.iter().all(|s| s.points.is_empty());
    let (lo, hi) = nice_bounds(lo, hi);
    let span = (to - from).max(1);
    let x = |t: i64| LEFT + (t - from) as f64 / span as f64 * (W - LEFT - RIGHT);
    let y = |v: f64| TOP + (hi - v) / (hi - lo) * (H - TOP - BOTTOM);
    let segments = |pts: &[(i64, f64)]| {
        let mut out: Vec<String> = Vec::new();
        let mut cur = String::new();
        let mut prev: Option<i64> = None;
        for &(t, v) in pts {
            if prev.is_some_and(|p| t - p > 2 * step) && !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            cur.push_str(&format!("{:.1},{:.1} ", x(t), y(v)));
            prev = Some(t);
        }
        if !cur.is_empty() {
            out.push(cur);
        }
        out
    };
    html! {
        figure.chart {
            figcaption {
                (title)
                @for s in series { span class={ "legend " (s.class) } { (s.label) } }
            }
            svg viewBox={ "0 0 " (W) " " (H) } role="img" aria-label=(title) {
                @for i in 0..=4 {
                    @let v = lo + (hi - lo) * f64::from(i) / 4.0;
                    line.grid x1=(LEFT) x2=(W - RIGHT) y1=(format!("{:.1}", y(v))) y2=(format!("{:.1}", y(v))) {}
                    text.axis x=(LEFT - 4.0) y=(format!("{:.1}", y(v) + 4.0)) text-anchor="end" { (format!("{v:.1}")) }
                }
                @for i in 0..=4 {
                    @let t = from + span * i / 4;
                    @let anchor = match i { 0 => "start", 4 => "end", _ => "middle" };
                    text.axis x=(format!("{:.1}", x(t))) y=(H - 8.0) text-anchor=(anchor) { (time_label(tz, t, span)) }
                }
                text.axis x="4" y="12" { (unit) }
                @if empty {
                    text.empty x=(W / 2.0) y=(H / 2.0) text-anchor="middle" { "no data in this range" }
                }
                @for s in series {
                    @for seg in segments(&s.points) {
                        polyline class={ "line " (s.class) } points=(seg) {}
                    }
                }
            }
        }
    }
}

/// A bar chart, one bar per `(label, value)`.
pub fn bar_chart(title: &str, unit: &str, bars: &[(String, f64)]) -> Markup {
    let top = bars.iter().map(|b| b.1).fold(0.0f64, f64::max);
    // Small values (a few kWh) keep their decimals.
    let dp = if top < 10.0 { 2 } else { 0 };
    let hi = if top < 10.0 { top.max(0.01) } else { top } * 1.1;
    let n = bars.len().max(1) as f64;
    let slot = (W - LEFT - RIGHT) / n;
    let y = |v: f64| TOP + (hi - v) / hi * (H - TOP - BOTTOM);
    let every = (bars.len() / 10).max(1);
    html! {
        figure.chart {
            figcaption { (title) }
            svg viewBox={ "0 0 " (W) " " (H) } role="img" aria-label=(title) {
                @for i in 0..=4 {
                    @let v = hi * f64::from(i) / 4.0;
                    line.grid x1=(LEFT) x2=(W - RIGHT) y1=(format!("{:.1}", y(v))) y2=(format!("{:.1}", y(v))) {}
                    text.axis x=(LEFT - 4.0) y=(format!("{:.1}", y(v) + 4.0)) text-anchor="end" { (format!("{v:.dp$}")) }
                }
                text.axis x="4" y="12" { (unit) }
                @if bars.is_empty() {
                    text.empty x=(W / 2.0) y=(H / 2.0) text-anchor="middle" { "no data in this range" }
                }
                @for (i, (label, v)) in bars.iter().enumerate() {
                    @let x0 = LEFT + slot * i as f64;
                    rect.bar x=(format!("{:.1}", x0 + slot * 0.15)) y=(format!("{:.1}", y(*v))) width=(format!("{:.1}", slot * 0.7)) height=(format!("{:.1}", (H - BOTTOM - y(*v)).max(0.0))) {
                        title { (label) ": " (format!("{v:.dp$}")) " " (unit) }
                    }
                    @if i % every == 0 {
                        text.axis x=(format!("{:.1}", x0 + slot / 2.0)) y=(H - 8.0) text-anchor="middle" { (label) }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_break_lines_and_text_is_escaped() {
        let s = Series {
            label: "<b>",
            class: "power",
            points: vec![(0, 1.0), (60, 2.0), (600, 3.0), (660, 2.5)],
        };
        let svg = line_chart("P", "W", &jiff::tz::TimeZone::UTC, 0, 3600, 60, &[s]).into_string();
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("&lt;b&gt;") && !svg.contains("<b>"));
        let empty = line_chart("P", "W", &jiff::tz::TimeZone::UTC, 0, 3600, 60, &[]).into_string();
        assert!(empty.contains("no data"));
        let bars =
            bar_chart("E", "Wh", &[("01-01".into(), 5.0), ("01-02".into(), 0.0)]).into_string();
        assert_eq!(bars.matches("<rect").count(), 2);
        assert_eq!(Range::parse("7d"), Some(Range::Week));
        assert_eq!(Range::parse("x"), None);
        for r in Range::ALL {
            assert!(r.span() / r.step() <= 400, "bounded points");
        }
    }
}
