//! CSV export of a device's records over any range: one line per record, oldest first, in the
//! units people use (W, Wh, °C), each time in ISO 8601 with the offset of the device's site's
//! zone (`2026-10-25T02:30:00+01:00`) next to its Unix seconds.
//!
//! A device whose own channel map is in effect ([`crate::service::device_channels::in_effect`])
//! exports its wide records instead: a column per channel of the map, headed by its name and
//! unit ("Voltage (V)"), each value in the unit with the channel's decimals, an empty cell where
//! a record has no value. A pool controller's export is the five pool columns as always.
//!
//! The device CSV is streamed: [`csv_response`] reads the records in pages of [`PAGE_ROWS`] by
//! keyset pagination (`TelemetryStore::telemetry_page`), each page on the blocking pool, and
//! sends each page's lines as one chunk of the body while the next page is read. The first page
//! is read before the answer starts, so a storage error there is the usual error answer; an
//! error after the first byte is logged and ends the body unfinished (the client sees a broken
//! download, never a short file that looks whole). A slow client holds the reader back through
//! a one-page queue, so memory stays at a few pages whatever the range.

use crate::http::error::WebError;
use crate::http::Web;
use crate::service::device_channels;
use crate::service::zones::Zone;
use crate::storage::{self, DeviceChannels, Storage, TelemetryKey, TelemetryQuery, TelemetryRow};
use crate::timefmt;
use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use jiff::tz::TimeZone;
use serde::Deserialize;
use std::fmt::Write as _;
use tek_proto::message::telemetry::channel;

/// Records per page of the streamed device CSV. The first page is read and written before the
/// first byte, so its size sets the time to the first byte (about 1.5 µs a record: ~15 ms); every
/// further page costs one index seek and a trip through the blocking pool and the queue: 53 pages
/// for a device-year, and pages of 50,000 (11) saved only 2–7 % of the total while they made the
/// first byte five times later (BENCHMARKS.md). A page's text is about 650 KB, and at
/// most three are in memory per export (one being sent, one queued, one being read).
pub const PAGE_ROWS: usize = 10_000;

/// The CSV's first line.
const HEADER: &str = "time,unix_s,power_w,energy_wh,water_c,air_c,relays\r\n";

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
    out.push_str(HEADER);
    write_lines(&mut out, rows, tz);
    out
}

/// Appends the CSV lines of `rows` (no header).
fn write_lines(out: &mut String, rows: &[TelemetryRow], tz: &TimeZone) {
    for r in rows {
        let _ = write!(out, "{},{}", timefmt::iso(tz, r.time), r.time);
        cell(out, r.get(channel::POWER_W), 1.0);
        cell(out, r.get(channel::ENERGY_WH), 1.0);
        cell(out, r.get(channel::WATER_TEMP_CC), 100.0);
        cell(out, r.get(channel::AIR_TEMP_CC), 100.0);
        cell(out, r.get(channel::RELAYS), 1.0);
        out.push_str("\r\n");
    }
}

/// A header cell: quoted (RFC 4180) when it holds a comma, a quote or a line break.
fn header_cell(out: &mut String, text: &str) {
    out.push(',');
    if text.contains([',', '"', '\r', '\n']) {
        let _ = write!(out, "\"{}\"", text.replace('"', "\"\""));
    } else {
        out.push_str(text);
    }
}

/// A cell: quoted (RFC 4180) when it holds a comma, a quote or a line break.
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

/// The columns of a device's CSV.
#[derive(Clone)]
enum Columns {
    /// The five pool channels of Telemetry 0x01.
    Pool,
    /// The channels of the device's own map, from its wide records.
    Channels(std::sync::Arc<ChannelColumns>),
}

/// A channel map's columns: its channels and the scale of each.
struct ChannelColumns {
    entry: DeviceChannels,
    scales: Vec<f64>,
}

impl ChannelColumns {
    fn of(entry: DeviceChannels) -> Self {
        ChannelColumns {
            scales: device_channels::scales(&entry),
            entry,
        }
    }

    /// The first line: time, Unix seconds, "name (unit)" per channel.
    fn header(&self) -> String {
        let mut out = String::from("time,unix_s");
        for c in &self.entry.channels {
            let unit = device_channels::unit_of(c);
            if unit.is_empty() {
                header_cell(&mut out, &c.name);
            } else {
                header_cell(&mut out, &format!("{} ({unit})", c.name));
            }
        }
        out.push_str("\r\n");
        out
    }

    /// Appends the lines of the records of `rows` logged under the map.
    fn write_lines(&self, out: &mut String, rows: &[storage::WideRow], tz: &TimeZone) {
        for r in rows
            .iter()
            .filter(|r| device_channels::under(&self.entry, r))
        {
            let _ = write!(out, "{},{}", timefmt::iso(tz, r.time), r.time);
            for c in &self.entry.channels {
                out.push(',');
                if let Some(v) = device_channels::scaled(r, c.index, &self.scales) {
                    out.push_str(&device_channels::format_value(v, c.decimals, ""));
                }
            }
            out.push_str("\r\n");
        }
    }
}

/// Builds the streamed CSV response for a device the caller may see.
pub async fn csv_response(web: &Web, id: u32, from: i64, to: i64) -> Result<Response, WebError> {
    let z = web.device_zone(id).await?;
    let entry = web
        .db_call(move |db| device_channels::in_effect_now(db, id))
        .await?;
    let name = format!(
        "device-{id}-{}-{}.csv",
        &timefmt::local(&z.tz, from)[..10],
        &timefmt::local(&z.tz, to)[..10]
    );
    let pages = CsvPages {
        db: web.db.clone(),
        query: TelemetryQuery {
            device_id: id,
            from,
            to,
            limit: PAGE_ROWS,
        },
        tz: z.tz,
        columns: entry.map_or(Columns::Pool, |e| {
            Columns::Channels(std::sync::Arc::new(ChannelColumns::of(e)))
        }),
    };
    Ok(csv_download(pages.body().await?, &name))
}

/// The pages of one device CSV.
#[derive(Clone)]
struct CsvPages {
    db: std::sync::Arc<dyn Storage>,
    /// The device and range; `limit` is the page size.
    query: TelemetryQuery,
    tz: TimeZone,
    columns: Columns,
}

/// One page as CSV lines, and where the next one starts (`None`: this was the last).
struct CsvPage {
    text: String,
    next: Option<TelemetryKey>,
}

impl CsvPages {
    /// Reads and writes the page after `after` on the blocking pool; the first page (`None`)
    /// starts with the header line.
    async fn page(&self, after: Option<TelemetryKey>) -> Result<CsvPage, WebError> {
        let pages = self.clone();
        crate::runtime::blocking(move || -> storage::Result<CsvPage> {
            let (text, read, last) = match &pages.columns {
                Columns::Pool => {
                    let rows = pages.db.telemetry_page(&pages.query, after)?;
                    let mut text = String::with_capacity(HEADER.len() + rows.len() * 64);
                    if after.is_none() {
                        text.push_str(HEADER);
                    }
                    write_lines(&mut text, &rows, &pages.tz);
                    (text, rows.len(), rows.last().map(TelemetryKey::of))
                }
                Columns::Channels(c) => {
                    let rows = pages.db.wide_page(&pages.query, after)?;
                    let mut text =
                        String::with_capacity(64 + rows.len() * (32 + 10 * c.entry.channels.len()));
                    if after.is_none() {
                        text.push_str(&c.header());
                    }
                    c.write_lines(&mut text, &rows, &pages.tz);
                    (text, rows.len(), rows.last().map(storage::WideRow::key))
                }
            };
            // A short page is the last; a full one may be followed by an empty one.
            let next = last.filter(|_| read >= pages.query.limit);
            Ok(CsvPage { text, next })
        })
        .await
        .map_err(WebError::from)
    }

    /// The body: the first page is read here (its error is the caller's answer), the rest by a
    /// task that reads each next page while the previous one is being sent.
    async fn body(self) -> Result<Body, WebError> {
        let first = self.page(None).await?;
        // One page queued: the task reads ahead by one page and then waits for the client.
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, WebError>>(1);
        tokio::spawn(async move {
            let mut next = first.next;
            if tx.send(Ok(first.text.into())).await.is_err() {
                return;
            }
            while let Some(after) = next {
                let page = match self.page(Some(after)).await {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::warn!(
                            device = self.query.device_id,
                            %e,
                            "CSV export ended early"
                        );
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                };
                next = page.next;
                // Nothing to send after a full last page; a closed queue: the client went away.
                if !page.text.is_empty() && tx.send(Ok(page.text.into())).await.is_err() {
                    return;
                }
            }
        });
        Ok(Body::from_stream(futures_util::stream::unfold(
            rx,
            |mut rx| async move { rx.recv().await.map(|chunk| (chunk, rx)) },
        )))
    }
}

/// `body` as a CSV file download named `file_name`.
fn csv_download(body: impl IntoResponse, file_name: &str) -> Response {
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
    for (i, f) in l.all_device_figures(by, periods).iter().enumerate() {
        lines(Some(l.devices[i].0), f);
    }
    out
}

/// The breakdown by meter of a site as CSV (`energy.csv?breakdown=meter`): per local day or
/// month, one line per meter (`device`, its name, the meter's `channel` index, empty for a
/// pool controller's meter, and name), then `untracked` (the total minus the meters, never
/// negative) and, when the meters measured more than the total, `exceeded` with the excess.
/// `share` is of the site's total (empty when it is 0); `in_total` says whether the meter's
/// device adds into the total. Costs: energy at the site's prices.
pub fn breakdown_csv(
    l: &crate::service::energy::Loaded,
    periods: &[crate::energy::zone::Period],
) -> String {
    use crate::energy::meters::share;
    let mut out = String::from(
        "period,start,end,device,device_name,channel,meter,in_total,kwh,share,energy_cost,currency\r\n",
    );
    let currency = l.tariff.as_ref().map_or("", |t| t.currency.as_str());
    for p in periods {
        let b = l.breakdown(p);
        let head = format!(
            "{},{},{}",
            p.label,
            timefmt::iso(&l.tz, p.start),
            timefmt::iso(&l.tz, p.end)
        );
        let mut line = |device: String,
                        name: &str,
                        channel: String,
                        meter: &str,
                        in_total: &str,
                        kwh: f64,
                        cost: Option<f64>| {
            let _ = write!(
                out,
                "{head},{device},{},{channel},{},{in_total},{kwh:.3},{},{},{}\r\n",
                csv_field(name),
                csv_field(meter),
                share(kwh, b.total.kwh).map_or(String::new(), |s| format!("{s:.4}")),
                cost.map_or(String::new(), |c| format!("{c:.4}")),
                if cost.is_some() { currency } else { "" },
            );
        };
        for (m, f) in l.meters.iter().zip(&b.parts) {
            line(
                m.device.to_string(),
                &m.device_name,
                m.channel.map_or(String::new(), |c| c.to_string()),
                &m.name,
                if m.in_total { "yes" } else { "no" },
                f.kwh,
                f.cost.map(|c| c.energy),
            );
        }
        line(
            String::new(),
            "",
            String::new(),
            "untracked",
            "",
            b.untracked_kwh,
            b.untracked_cost,
        );
        if b.exceeded_kwh > 0.0 {
            line(
                String::new(),
                "",
                String::new(),
                "exceeded",
                "",
                b.exceeded_kwh,
                None,
            );
        }
    }
    out
}

/// [`energy_csv`] (or [`breakdown_csv`] with `breakdown`) as a download.
pub fn energy_csv_response(
    l: &crate::service::energy::Loaded,
    by: crate::energy::zone::By,
    periods: &[crate::energy::zone::Period],
    breakdown: bool,
) -> Response {
    let name = format!(
        "site-{}-{}-{}-{}.csv",
        l.site.id,
        if breakdown { "meters" } else { "energy" },
        periods.first().map_or("", |p| p.label.as_str()),
        periods.last().map_or("", |p| p.label.as_str()),
    );
    let body = if breakdown {
        breakdown_csv(l, periods)
    } else {
        energy_csv(l, by, periods)
    };
    csv_download(body, &name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{DeviceStore, NewDevice, TelemetryStore};
    use http_body_util::BodyExt;
    use std::sync::Arc;

    /// The streamed body's chunks, in order.
    async fn chunks(pages: CsvPages) -> Vec<Bytes> {
        let mut body = pages.body().await.unwrap();
        let mut out = Vec::new();
        while let Some(frame) = body.frame().await {
            out.push(frame.unwrap().into_data().unwrap());
        }
        out
    }

    /// A database with 25 records of device 1 from 1_780_000_000 on, in two boots.
    fn history() -> (tempfile::TempDir, crate::storage::sqlite::Sqlite) {
        let (dir, db) = crate::storage::sqlite::tests::prepare();
        db.add_devices(
            &[NewDevice {
                id: 1,
                name: "d1".into(),
                key: tek_proto::crypto::Key([1; 16]),
            }],
            0,
        )
        .unwrap();
        let mut rows = Vec::new();
        for seq in 0..25u32 {
            rows.push(TelemetryRow {
                device_id: 1,
                // A reboot half way, its clock set back: boots interleave in time.
                boot: 1 + seq / 13,
                seq,
                time: 1_780_000_000 + i64::from(seq % 13) * 30 + i64::from(seq % 2),
                channels: if seq % 3 == 0 { 0b10111 } else { 0b01101 },
                values: [1500 + seq as i32, 7, 2755 - seq as i32, -120, 3, 0, 0, 0],
            });
        }
        assert_eq!(db.insert_telemetry(&rows).unwrap(), 25);
        (dir, db)
    }

    fn query(limit: usize) -> TelemetryQuery {
        TelemetryQuery {
            device_id: 1,
            from: 1_780_000_000,
            to: 1_780_000_400,
            limit,
        }
    }

    /// The streamed export is today's `to_csv` of the whole range byte for byte, whatever the
    /// page size, one chunk per page; an empty range is the header line alone.
    #[tokio::test]
    async fn streamed_pages_are_to_csv_byte_for_byte() {
        let (_dir, db) = history();
        let db: Arc<dyn Storage> = Arc::new(db);
        let tz = crate::energy::zone::load("Europe/Berlin");
        let all = db.telemetry(&query(100)).unwrap();
        assert_eq!(all.len(), 25);
        let whole = to_csv(&all, &tz);
        for (page, chunk_count) in [(1, 25), (4, 7), (7, 4), (25, 1), (26, 1), (PAGE_ROWS, 1)] {
            let got = chunks(CsvPages {
                db: db.clone(),
                query: query(page),
                tz: tz.clone(),
                columns: Columns::Pool,
            })
            .await;
            assert_eq!(got.len(), chunk_count, "pages of {page}");
            assert_eq!(got.concat(), whole.as_bytes(), "pages of {page}");
        }
        let empty = chunks(CsvPages {
            db,
            query: TelemetryQuery {
                from: 1_790_000_000,
                to: 1_790_086_400,
                ..query(4)
            },
            tz,
            columns: Columns::Pool,
        })
        .await;
        assert_eq!(empty.concat(), HEADER.as_bytes());
        assert_eq!(to_csv(&[], &TimeZone::UTC), HEADER);
    }

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

    /// A storage error after the first chunk ends the body with an error (hyper then closes the
    /// connection without the last chunk): the chunks sent before it are whole pages, never a
    /// short file that ends cleanly.
    #[tokio::test]
    async fn an_error_after_the_first_byte_ends_the_body_unfinished() {
        let (dir, db) = history();
        let db: Arc<dyn Storage> = Arc::new(db);
        let mut body = CsvPages {
            db,
            query: query(4),
            tz: TimeZone::UTC,
            columns: Columns::Pool,
        }
        .body()
        .await
        .unwrap();
        // The first page is read; the task reads at most one more before the client reads.
        let raw =
            rusqlite::Connection::open(dir.path().join(crate::storage::sqlite::FILE_NAME)).unwrap();
        raw.execute_batch("DROP TABLE telemetry").unwrap();
        let mut pages = Vec::new();
        let mut failed = false;
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(f) => pages.push(f.into_data().unwrap()),
                Err(_) => {
                    failed = true;
                    break;
                }
            }
        }
        assert!(failed, "the body must end with an error");
        assert!((1..=2).contains(&pages.len()), "{} pages", pages.len());
        assert!(pages[0].starts_with(HEADER.as_bytes()));
        assert_eq!(
            pages.concat().split(|b| *b == b'\n').count() - 2,
            pages.len() * 4
        );
    }

    /// A device with its own map exports a column per channel, headed by name and unit, values
    /// with the channel's decimals, empty cells for no value; records of an earlier map are
    /// left out, and a name with a comma is quoted.
    #[tokio::test]
    async fn channel_columns_with_empty_cells_for_no_value() {
        use crate::storage::channels::builtin;
        use crate::storage::{ChannelSet, ChannelStore, WideRow, WideStore, WideValues};
        let (_dir, db) = history();
        let t = builtin::sdm120();
        let mut labels = t.labels();
        labels[0].name = "Voltage, L1".into();
        let set = ChannelSet {
            map: t.map(),
            roles: t.roles_value(),
            channels: labels,
        };
        db.save_device_channels(1, 2, None, &set, 0).unwrap();
        let entry = db.device_channels(1, Some(2)).unwrap().unwrap();
        let n = entry.channels.len();
        let row = |seq: u32, version: u32, values: Vec<Option<i32>>| WideRow {
            device_id: 1,
            boot: 1,
            seq,
            time: 1_780_000_000 + i64::from(seq) * 60,
            config_version: Some(version),
            values: WideValues::from_options(&values),
        };
        let mut gap = vec![Some(23_012); n];
        gap[1] = None;
        db.insert_wide(&[
            row(0, 1, vec![Some(9); n]),
            row(1, 2, vec![Some(23_012); n]),
            row(2, 2, gap),
        ])
        .unwrap();
        let columns = ChannelColumns::of(entry.clone());
        let db: Arc<dyn Storage> = Arc::new(db);
        let text = String::from_utf8(
            chunks(CsvPages {
                db,
                query: query(2),
                tz: TimeZone::UTC,
                columns: Columns::Channels(Arc::new(columns)),
            })
            .await
            .concat(),
        )
        .unwrap();
        let lines: Vec<&str> = text.split("\r\n").collect();
        assert!(
            lines[0].starts_with("time,unix_s,\"Voltage, L1 (V)\",Current (A),Power (W)"),
            "{}",
            lines[0]
        );
        // The header, two records of version 2, and the empty rest after the last line end.
        assert_eq!(lines.len(), 4, "{text}");
        let scales = device_channels::scales(&entry);
        let volts =
            device_channels::format_value(23_012.0 * scales[0], entry.channels[0].decimals, "");
        assert!(
            lines[1].starts_with(&format!("2026-05-28T20:27:40+00:00,1780000060,{volts},")),
            "{}",
            lines[1]
        );
        assert!(lines[2].starts_with(&format!("2026-05-28T20:28:40+00:00,1780000120,{volts},,")));
        assert_eq!(lines[2].split(',').count(), 2 + n);
    }
}
