//! CSV export of a device's records over any range: one line per record, oldest first, in the
//! units people use (W, Wh, °C), each time in ISO 8601 with the offset of the device's site's
//! zone (`2026-10-25T02:30:00+01:00`) next to its Unix seconds. At most [`MAX_ROWS`] lines per export (about two years at one
//! record a minute); a longer range is refused with a message rather than cut silently.

use crate::http::error::WebError;
use crate::http::Web;
use crate::service::zones::Zone;
use crate::storage::{TelemetryQuery, TelemetryRow};
use crate::timefmt;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use jiff::tz::TimeZone;
use serde::Deserialize;
use std::fmt::Write as _;
use tek_proto::message::telemetry::channel;

/// Most records in one export.
pub const MAX_ROWS: usize = 1_000_000;

/// The range of an export.
#[derive(Debug, Deserialize)]
pub struct RangeQuery {
    /// Start, inclusive: Unix seconds, `YYYY-MM-DD` or `YYYY-MM-DDTHH:MM` (UTC).
    pub from: Option<String>,
    /// End, exclusive; default now.
    pub to: Option<String>,
}

/// Parses a range (default: the last 24 hours); `to` must be after `from`. Times are UTC.
pub fn parse_range(q: &RangeQuery, now: i64) -> Result<(i64, i64), WebError> {
    parse_range_in(q, now, &Zone::utc())
}

/// [`parse_range`] with dates and times local in `z` (the page's form, labelled with the zone).
pub fn parse_range_in(q: &RangeQuery, now: i64, z: &Zone) -> Result<(i64, i64), WebError> {
    let t = |v: &Option<String>, name: &str, default: i64| match v.as_deref().map(str::trim) {
        None | Some("") => Ok(default),
        Some(s) => timefmt::parse_local(&z.tz, s).ok_or_else(|| {
            WebError::Invalid(format!(
                "{name} {s:?} is not a time (Unix seconds, YYYY-MM-DD or YYYY-MM-DDTHH:MM, {})",
                z.name
            ))
        }),
    };
    let to = t(&q.to, "to", now + 1)?;
    let from = t(&q.from, "from", to - 86_400)?;
    if to <= from {
        return Err(WebError::Invalid("to must be after from".into()));
    }
    Ok((from, to))
}

fn cell(out: &mut String, v: Option<i32>, scale: f64) {
    out.push(',');
    if let Some(v) = v {
        if scale == 1.0 {
            let _ = write!(out, "{v}");
        } else {
            let _ = write!(out, "{:.2}", f64::from(v) / scale);
        }
    }
}

/// The CSV text of `rows`, times in `tz`.
pub fn to_csv(rows: &[TelemetryRow], tz: &TimeZone) -> String {
    let mut out = String::with_capacity(64 + rows.len() * 64);
    out.push_str("time,unix_s,power_w,energy_wh,water_c,air_c,relays\r\n");
    for r in rows {
        let _ = write!(out, "{},{}", timefmt::iso(tz, r.time), r.time);
        cell(&mut out, r.get(channel::POWER_W), 1.0);
        cell(&mut out, r.get(channel::ENERGY_WH), 1.0);
        cell(&mut out, r.get(channel::WATER_TEMP_CC), 100.0);
        cell(&mut out, r.get(channel::AIR_TEMP_CC), 100.0);
        cell(&mut out, r.get(channel::RELAYS), 1.0);
        out.push_str("\r\n");
    }
    out
}

/// Builds the CSV response for a device the caller may see.
pub async fn csv_response(web: &Web, id: u32, from: i64, to: i64) -> Result<Response, WebError> {
    let z = web.device_zone(id).await?;
    let rows = web
        .db_call(move |db| {
            db.telemetry(&TelemetryQuery {
                device_id: id,
                from,
                to,
                limit: MAX_ROWS + 1,
            })
        })
        .await?;
    if rows.len() > MAX_ROWS {
        return Err(WebError::Invalid(format!(
            "the range holds more than {MAX_ROWS} records; export a shorter range"
        )));
    }
    let name = format!(
        "device-{id}-{}-{}.csv",
        &timefmt::local(&z.tz, from)[..10],
        &timefmt::local(&z.tz, to)[..10]
    );
    Ok(csv_download(to_csv(&rows, &z.tz), &name))
}

/// `body` as a CSV file download named `file_name`.
fn csv_download(body: String, file_name: &str) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{file_name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    r
}

/// The energy and cost CSV of a site (`/sites/{id}/energy.csv`, `/api/sites/{id}/energy.csv`):
/// one line per local day or month for the site (`device` empty) and then for each device.
/// Peak demand in kW with the start of its 15-minute interval; costs in the tariff's currency
/// (empty without a tariff).
pub fn energy_csv(
    l: &crate::service::energy::Loaded,
    by: crate::energy::zone::By,
    periods: &[crate::energy::zone::Period],
) -> String {
    let mut out = String::from(
        "period,start,end,device,kwh,peak_kw,peak_at,energy_cost,demand_cost,fixed_cost,total_cost,currency\r\n",
    );
    let currency = l.tariff.as_ref().map_or("", |t| t.currency.as_str());
    let mut lines = |device: Option<u32>, list: &[crate::energy::Figures]| {
        for f in list {
            let _ = write!(
                out,
                "{},{},{},{},{:.3},{:.3},{}",
                f.period.label,
                timefmt::iso(&l.tz, f.period.start),
                timefmt::iso(&l.tz, f.period.end),
                device.map_or(String::new(), |d| d.to_string()),
                f.kwh,
                f.peak_kw,
                f.peak_at.map_or(String::new(), |t| timefmt::iso(&l.tz, t)),
            );
            match f.cost {
                Some(c) => {
                    let _ = write!(
                        out,
                        ",{:.4},{:.4},{:.4},{:.4},{currency}",
                        c.energy, c.demand, c.fixed, c.total
                    );
                }
                None => out.push_str(",,,,,"),
            }
            out.push_str("\r\n");
        }
    };
    lines(None, &l.site_figures(by, periods));
    for i in 0..l.devices.len() {
        lines(Some(l.devices[i].0), &l.device_figures(i, by, periods));
    }
    out
}

/// [`energy_csv`] as a download.
pub fn energy_csv_response(
    l: &crate::service::energy::Loaded,
    by: crate::energy::zone::By,
    periods: &[crate::energy::zone::Period],
) -> Response {
    let name = format!(
        "site-{}-energy-{}-{}.csv",
        l.site.id,
        periods.first().map_or("", |p| p.label.as_str()),
        periods.last().map_or("", |p| p.label.as_str()),
    );
    csv_download(energy_csv(l, by, periods), &name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_lines() {
        let r = TelemetryRow {
            device_id: 1,
            boot: 1,
            seq: 1,
            time: 86_400,
            channels: 0b10111,
            values: [1500, 0, 2755, 0, 3, 0, 0, 0],
        };
        assert_eq!(
            to_csv(&[r], &TimeZone::UTC),
            "time,unix_s,power_w,energy_wh,water_c,air_c,relays\r\n1970-01-02T00:00:00+00:00,86400,1500,0,27.55,,3\r\n"
        );
        let tokyo = crate::energy::zone::load("Asia/Tokyo");
        assert!(to_csv(&[r], &tokyo)
            .ends_with("\r\n1970-01-02T09:00:00+09:00,86400,1500,0,27.55,,3\r\n"));
        // The page's form is local: midnight in Tokyo is 15:00 UTC the day before.
        let z = Zone::named("Asia/Tokyo");
        let local = RangeQuery {
            from: Some("1970-01-02".into()),
            to: Some("1970-01-03".into()),
        };
        assert_eq!(
            parse_range_in(&local, 0, &z).unwrap(),
            (86_400 - 9 * 3600, 172_800 - 9 * 3600)
        );
        let q = |f: &str, t: &str| RangeQuery {
            from: Some(f.into()),
            to: Some(t.into()),
        };
        assert_eq!(
            parse_range(&q("1970-01-02", "1970-01-03"), 0).unwrap(),
            (86_400, 172_800)
        );
        assert!(parse_range(&q("1970-01-03", "1970-01-02"), 0).is_err());
        assert!(parse_range(&q("yesterday", ""), 0).is_err());
    }
}
