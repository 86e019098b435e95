//! `GET /sites/{id}`: a site's controllers and its energy and cost — kWh per local day for the
//! last 30 days and per month for the last 12 (charts), peak 15-minute demand, cost from the
//! tariff, the breakdown by meter of this month (`breakdown_section`), energy CSV export — and,
//! for admins, the forms for the site's time zone and tariff.
//! Posts: `/sites/{id}/time_zone`, `/sites/{id}/tariff`, `/sites/{id}/tariff/delete`.
//! Members of the site and admins see it; anyone else gets 404.

use super::auth::{CsrfForm, PageUser, Posted};
use super::charts;
use super::error::HtmlError;
use super::fields::FieldErrors;
use super::layout::{self, Nav};
use crate::energy::tariff::Tariff;
use crate::energy::zone::{By, Period};
use crate::energy::Figures;
use crate::http::auth::Principal;
use crate::http::error::WebError;
use crate::http::Web;
use crate::service::energy::{self, EnergyQuery};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use jiff::tz::TimeZone;
use maud::{html, Markup};
use serde::Deserialize;

/// Query of the site page.
#[derive(Debug, Deserialize, Default)]
pub struct PageQuery {
    saved: Option<String>,
}

/// `YYYY-MM-DD HH:MM` local in `tz`.
fn local(tz: &TimeZone, t: i64) -> String {
    jiff::Timestamp::from_second(t)
        .map(|ts| {
            ts.to_zoned_datetime(tz.clone())
                .strftime("%Y-%m-%d %H:%M")
                .to_string()
        })
        .unwrap_or_default()
}

fn money(v: Option<f64>, currency: &str) -> String {
    v.map_or_else(|| "–".to_owned(), |v| format!("{v:.2} {currency}"))
}

fn tariff_text(t: &Tariff) -> String {
    let mut s = format!("{:.4} {}/kWh", t.energy_price, t.currency);
    for p in &t.periods {
        s.push_str(&format!(
            "; {} {} {}–{} {:.4}/kWh",
            p.name, p.days, p.start, p.end, p.price
        ));
    }
    if t.demand_price > 0.0 {
        s.push_str(&format!(
            "; demand {:.2}/kW of the month's peak",
            t.demand_price
        ));
    }
    if t.monthly_fixed > 0.0 {
        s.push_str(&format!("; fixed {:.2}/month", t.monthly_fixed));
    }
    s
}

fn months_table(list: &[Figures], tz: &TimeZone, currency: &str) -> Markup {
    html! {
        table.energy #energy-months {
            thead { tr { th { "Month" } th { "Energy" } th { "Peak demand" } th { "at" } th { "Energy cost" } th { "Demand charge" } th { "Fixed" } th { "Total" } } }
            tbody { @for f in list.iter().rev() { tr data-period=(f.period.label) {
                td { (f.period.label) }
                td.num data-field="kwh" { (format!("{:.1} kWh", f.kwh)) }
                td.num data-field="peak" { (format!("{:.2} kW", f.peak_kw)) }
                td { (f.peak_at.map_or("–".to_owned(), |t| local(tz, t))) }
                td.num { (money(f.cost.map(|c| c.energy), currency)) }
                td.num { (money(f.cost.map(|c| c.demand), currency)) }
                td.num { (money(f.cost.map(|c| c.fixed), currency)) }
                td.num data-field="cost" { (money(f.cost.map(|c| c.total), currency)) }
            } } }
        }
    }
}

/// The breakdown by meter over `period` (issue 18 point 4): each meter with its energy, its
/// share of the site's total (a bar and the percentage) and its energy cost, then untracked.
fn breakdown_section(l: &energy::Loaded, period: &Period, currency: &str) -> Markup {
    let b = l.breakdown(period);
    let pct = |kwh: f64| {
        crate::energy::meters::share(kwh, b.total.kwh).map(|s| (s * 100.0).clamp(0.0, 100.0))
    };
    let share_cell = |kwh: f64| {
        html! {
            td.share {
                @if let Some(p) = pct(kwh) {
                    // SVG attributes, not an inline style: the page's CSP allows no inline styles.
                    svg.bar viewBox="0 0 100 8" preserveAspectRatio="none" aria-hidden="true" {
                        rect.track width="100" height="8" {}
                        rect.fill width=(format!("{p:.1}")) height="8" {}
                    }
                    span.pct { (format!("{p:.0} %")) }
                } @else { "–" }
            }
        }
    };
    html! {
        section #breakdown {
            // The energy view's script shows the period chosen there instead (app.js
            // `drawBreakdown`, from the same JSON).
            h2 { "Breakdown by meter, " span #breakdown-period { "this month" } }
            p.meta { "Each meter's share of the site's total ("
                span #breakdown-total { (format!("{:.2} kWh", b.total.kwh)) } "), as Home Assistant's energy dashboard shows individual devices: "
                "untracked is the total minus the meters. A controller whose channel map has an energy role adds that meter to the total and shows its other meters here." }
            @if l.meters.is_empty() {
                p { "No meters." }
            } @else {
                table.energy.breakdown #energy-breakdown {
                    thead { tr { th { "Meter and controller" } th.num { "Energy" } th { "Share" } th.num { "Energy cost" } } }
                    tbody {
                        @for (m, f) in l.meters.iter().zip(&b.parts) {
                            tr data-device=(m.device) data-channel=[m.channel] {
                                td { (m.name) @if !m.in_total { " " small.meta { "(not in the total)" } }
                                    br; small { a href={ "/devices/" (m.device) } { (m.device) " " (m.device_name) } } }
                                td.num data-field="kwh" { (format!("{:.2} kWh", f.kwh)) }
                                (share_cell(f.kwh))
                                td.num { (money(f.cost.map(|c| c.energy), currency)) }
                            }
                        }
                        tr #untracked {
                            td { "Untracked" }
                            td.num data-field="kwh" { (format!("{:.2} kWh", b.untracked_kwh)) }
                            (share_cell(b.untracked_kwh))
                            td.num { (money(b.untracked_cost, currency)) }
                        }
                    }
                }
            }
            p.flash.error #breakdown-exceeded hidden[b.exceeded_kwh <= 0.0] {
                "The meters measured " span #breakdown-excess { (format!("{:.2} kWh", b.exceeded_kwh)) }
                " more than the site's total: some of them are not inside the total (a controller without an energy role, or meters counted twice)." }
            @if !l.notes.is_empty() {
                ul #breakdown-notes { @for (d, name, note) in &l.notes {
                    li { a href={ "/devices/" (d) } { (d) " " (name) } ": " (note) "." }
                } }
            }
        }
    }
}

/// `GET /sites/{id}`.
pub async fn page(
    State(web): State<Web>,
    PageUser(p): PageUser,
    Path(id): Path<i64>,
    Query(q): Query<PageQuery>,
) -> Result<Html<String>, HtmlError> {
    Ok(render(
        &web,
        &p,
        id,
        q.saved.map(|s| (true, format!("Saved: {s}."))),
        &Kept::default(),
    )
    .await?)
}

/// What the user typed into a refused form, and what was wrong with it.
#[derive(Default)]
struct Kept<'a> {
    time_zone: Option<&'a str>,
    tariff: Option<&'a TariffForm>,
    errors: FieldErrors,
}

async fn render(
    web: &Web,
    p: &Principal,
    id: i64,
    message: Option<(bool, String)>,
    kept: &Kept<'_>,
) -> Result<Html<String>, WebError> {
    let site = web.site_for(&p.user, id).await?;
    let tz = crate::energy::zone::load(&site.time_zone);
    let now = crate::clock::unix_now();
    let by = |b: &str| EnergyQuery {
        by: Some(b.into()),
        ..EnergyQuery::default()
    };
    let (_, days) = energy::periods(&by("day"), &tz, now)?;
    let (_, months) = energy::periods(&by("month"), &tz, now)?;
    let (from, to) = (
        months[0].start.min(days[0].start),
        months[months.len() - 1].end.max(days[days.len() - 1].end),
    );
    let site_id = site.id;
    let (loaded, names) = web
        .db_call(move |db| {
            let l = energy::load(db, site, from, to)?;
            let names = l
                .devices
                .iter()
                .map(|(d, _)| Ok(db.device(*d)?.name))
                .collect::<crate::storage::Result<Vec<_>>>()?;
            Ok((l, names))
        })
        .await?;
    let day_figs = loaded.site_figures(By::Day, &days);
    let month_figs = loaded.site_figures(By::Month, &months);
    let this_month = &months[months.len() - 1];
    let today = std::slice::from_ref(&days[days.len() - 1]);
    let currency = loaded.tariff.as_ref().map_or("", |t| t.currency.as_str());
    let bars = |list: &[Figures], f: &dyn Fn(&Figures) -> f64, short: bool| -> Vec<(String, f64)> {
        list.iter()
            .map(|x| {
                let l = &x.period.label;
                (if short { l[5..].to_owned() } else { l.clone() }, f(x))
            })
            .collect()
    };
    let csrf = layout::csrf_field(p);
    let t = loaded.tariff.clone();
    let site = &loaded.site;
    let errs = &kept.errors;
    // The tariff form shows what was typed when it was refused, else the stored tariff.
    let typed = kept
        .tariff
        .cloned()
        .unwrap_or_else(|| TariffForm::shown(t.as_ref()));
    let tz_typed = kept.time_zone.unwrap_or(&site.time_zone);
    let body = html! {
        h1 { (site.name) " " small { "site #" (site.id) } }
        p.meta { "Time zone " strong #time-zone { (site.time_zone) } " · " (loaded.devices.len()) " controller(s) · "
            "tariff: " span #tariff { (t.as_ref().map_or("none set".to_owned(), tariff_text)) } }
        @if let Some((ok, m)) = &message { (layout::flash(*ok, m)) }
        section {
            h2 { "Controllers" }
            @if loaded.devices.is_empty() {
                p { "No controllers are assigned to this site." }
            } @else {
                table.devices #site-devices {
                    thead { tr { th { "Controller" } th { "Today" } th { "This month" } th { "Peak this month" } th { "Cost this month" } } }
                    tbody { @for (i, (d, _)) in loaded.devices.iter().enumerate() {
                        @let m = loaded.device_figures(i, By::Month, std::slice::from_ref(this_month));
                        @let td_ = loaded.device_figures(i, By::Day, today);
                        tr data-device=(d) {
                            td { a href={ "/devices/" (d) } { (d) " " (names[i]) } }
                            td.num { (format!("{:.2} kWh", td_[0].kwh)) }
                            td.num { (format!("{:.2} kWh", m[0].kwh)) }
                            td.num { (format!("{:.2} kW", m[0].peak_kw)) }
                            td.num { (money(m[0].cost.map(|c| c.total), currency)) }
                        }
                    } }
                    // The site's figures: its peak is at one time for all controllers together,
                    // and its cost includes the demand and fixed charges (not split per device).
                    @let sm = loaded.site_figures(By::Month, std::slice::from_ref(this_month));
                    @let sd = loaded.site_figures(By::Day, today);
                    tfoot { tr #site-total {
                        th scope="row" { "Site total" }
                        td.num { (format!("{:.2} kWh", sd[0].kwh)) }
                        td.num { (format!("{:.2} kWh", sm[0].kwh)) }
                        td.num { (format!("{:.2} kW", sm[0].peak_kw)) }
                        td.num data-field="site-cost" { (money(sm[0].cost.map(|c| c.total), currency)) }
                    } }
                }
            }
        }
        (breakdown_section(&loaded, this_month, currency))
        section.charts {
            h2 { "Energy" }
            p.meta { "Days and months in " (site.time_zone) " local time. Peak demand: the highest mean power over a clock-aligned 15 minutes." }
            // Week / month / year bars with the previous period and cost (app.js `energyView`,
            // from /api/sites/{id}/energy); shown once the script has drawn it.
            div #energy-view hidden data-site=(site_id) data-today=(days[days.len() - 1].label) {
                div.toolbar {
                    div.periods role="group" aria-label="Period" {
                        button.period type="button" data-mode="week" aria-pressed="false" { "Week" }
                        button.period type="button" data-mode="month" aria-pressed="true" { "Month" }
                        button.period type="button" data-mode="year" aria-pressed="false" { "Year" }
                    }
                    button #ev-prev type="button" aria-label="Previous period" { "‹" }
                    strong #ev-label {}
                    button #ev-next type="button" aria-label="Next period" { "›" }
                }
                p #ev-summary role="status" {}
                div #ev-chart {}
            }
            (charts::bar_chart("Energy per day, last 30 days", "kWh", &bars(&day_figs, &|f| f.kwh, true)))
            (charts::bar_chart("Peak 15-minute demand per day", "kW", &bars(&day_figs, &|f| f.peak_kw, true)))
            (charts::bar_chart("Energy per month, last 12 months", "kWh", &bars(&month_figs, &|f| f.kwh, false)))
            h2 { "Months" }
            (months_table(&month_figs, &loaded.tz, currency))
        }
        section.export {
            h2 { "Export" }
            form.inline method="get" action={ "/sites/" (site_id) "/energy.csv" } {
                label { "From" input type="date" name="from" value=(days[0].label); }
                label { "To (exclusive)" input type="date" name="to"; }
                select name="by" aria-label="Per day or per month" { option value="day" { "per day" } option value="month" { "per month" } }
                select name="breakdown" aria-label="Lines" { option value="" { "site and controllers" } option value="meter" { "breakdown by meter" } }
                button #energy-export type="submit" { "Download energy CSV" }
            }
        }
        @if p.user.is_admin {
            section.admin {
                h2 { "Time zone" }
                form.inline method="post" data-plain action={ "/sites/" (site_id) "/time_zone" } {
                    (csrf)
                    label { "IANA name" input #time_zone name="time_zone" required maxlength="64" value=(tz_typed) placeholder="Europe/Berlin"
                        aria-invalid=[errs.invalid("time_zone")] aria-describedby=[errs.described_by("time_zone")];
                        (errs.note("time_zone")) }
                    button type="submit" { "Save time zone" }
                }
                h2 { "Tariff" }
                form #tariff-form method="post" data-plain action={ "/sites/" (site_id) "/tariff" } {
                    (csrf)
                    (errs.note("tariff"))
                    label { "Currency" input #currency name="currency" required maxlength="3" value=(typed.currency)
                        aria-invalid=[errs.invalid("currency")] aria-describedby=[errs.described_by("currency")];
                        (errs.note("currency")) }
                    label { "Price per kWh (flat, outside the periods)" input #energy_price name="energy_price" inputmode="decimal" required value=(typed.energy_price)
                        aria-invalid=[errs.invalid("energy_price")] aria-describedby=[errs.described_by("energy_price")];
                        (errs.note("energy_price")) }
                    label { "Time-of-use periods, one a line: name days HH:MM-HH:MM price"
                        textarea #periods name="periods" rows="4" placeholder="peak mon-fri 08:00-20:00 0.32\nnight all 22:00-06:00 0.18"
                            aria-invalid=[errs.invalid("periods")] aria-describedby=[errs.described_by("periods")] { (typed.periods) }
                        (errs.note("periods")) }
                    label { "Demand charge per kW of the month's peak" input #demand_price name="demand_price" inputmode="decimal" value=(typed.demand_price)
                        aria-invalid=[errs.invalid("demand_price")] aria-describedby=[errs.described_by("demand_price")];
                        (errs.note("demand_price")) }
                    label { "Fixed charge per month" input #monthly_fixed name="monthly_fixed" inputmode="decimal" value=(typed.monthly_fixed)
                        aria-invalid=[errs.invalid("monthly_fixed")] aria-describedby=[errs.described_by("monthly_fixed")];
                        (errs.note("monthly_fixed")) }
                    button type="submit" { "Save tariff" }
                }
                @if t.is_some() {
                    form.inline method="post" data-confirm="Remove the tariff of this site? Costs are no longer shown." action={ "/sites/" (site_id) "/tariff/delete" } {
                        (csrf) button type="submit" { "Remove tariff" }
                    }
                }
            }
        }
    };
    Ok(layout::page(p, Nav::None, &loaded.site.name, body))
}

async fn after(
    web: &Web,
    p: &Principal,
    id: i64,
    r: Result<String, WebError>,
) -> Result<Response, HtmlError> {
    match r {
        Ok(what) => Ok(Redirect::to(&format!("/sites/{id}?saved={what}")).into_response()),
        Err(e @ WebError::Invalid(_)) => refused(web, p, id, e.to_string(), &Kept::default()).await,
        Err(e) => Err(e.into()),
    }
}

/// The page again, 422, with the refused form's input and its errors.
async fn refused(
    web: &Web,
    p: &Principal,
    id: i64,
    message: String,
    kept: &Kept<'_>,
) -> Result<Response, HtmlError> {
    let page = render(web, p, id, Some((false, message)), kept).await?;
    Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response())
}

/// The time zone form.
#[derive(Debug, Deserialize)]
pub struct TimeZoneForm {
    csrf: String,
    time_zone: String,
}

impl CsrfForm for TimeZoneForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// `POST /sites/{id}/time_zone` (admins).
pub async fn time_zone(
    State(web): State<Web>,
    Path(id): Path<i64>,
    Posted { user, form }: Posted<TimeZoneForm>,
) -> Result<Response, HtmlError> {
    Web::require_admin(&user.user)?;
    match energy::set_time_zone(&web, &user, id, &form.time_zone).await {
        Ok(_) => Ok(Redirect::to(&format!("/sites/{id}?saved=time+zone")).into_response()),
        Err(WebError::Invalid(m)) => {
            let kept = Kept {
                time_zone: Some(&form.time_zone),
                errors: FieldErrors::one("time_zone", m.clone()),
                ..Kept::default()
            };
            refused(
                &web,
                &user,
                id,
                format!("The time zone was not saved: {m}"),
                &kept,
            )
            .await
        }
        Err(e) => Err(e.into()),
    }
}

/// The tariff form.
#[derive(Debug, Clone, Deserialize)]
pub struct TariffForm {
    csrf: String,
    currency: String,
    energy_price: String,
    #[serde(default)]
    periods: String,
    #[serde(default)]
    demand_price: String,
    #[serde(default)]
    monthly_fixed: String,
}

impl CsrfForm for TariffForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// A price field: a number (`.` as the decimal point); blank is 0 unless `required`.
fn number(s: &str, what: &str, required: bool) -> Result<f64, String> {
    match s.trim() {
        "" if required => Err(format!("{what} is required (0 for free)")),
        "" => Ok(0.0),
        t => t
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .ok_or_else(|| format!("{what}: {t:?} is not a number like 0.25")),
    }
}

impl TariffForm {
    /// The form as shown for `t` (the stored tariff), or empty with EUR.
    fn shown(t: Option<&Tariff>) -> TariffForm {
        TariffForm {
            csrf: String::new(),
            currency: t.map_or("EUR".into(), |t| t.currency.clone()),
            energy_price: t.map_or(String::new(), |t| t.energy_price.to_string()),
            periods: t.map_or(String::new(), Tariff::periods_text),
            demand_price: t.map_or("0".into(), |t| t.demand_price.to_string()),
            monthly_fixed: t.map_or("0".into(), |t| t.monthly_fixed.to_string()),
        }
    }

    /// The tariff, or every field's error.
    fn tariff(&self) -> Result<Tariff, FieldErrors> {
        let mut errs = FieldErrors::default();
        let mut field = |name: &str, r: Result<f64, String>| {
            r.unwrap_or_else(|m| {
                errs.push(name, m);
                0.0
            })
        };
        let energy_price = field(
            "energy_price",
            number(&self.energy_price, "Price per kWh", true),
        );
        let demand_price = field(
            "demand_price",
            number(&self.demand_price, "Demand charge", false),
        );
        let monthly_fixed = field(
            "monthly_fixed",
            number(&self.monthly_fixed, "Fixed charge", false),
        );
        let periods = Tariff::parse_periods(&self.periods).unwrap_or_else(|m| {
            errs.push("periods", m);
            Vec::new()
        });
        let t = Tariff {
            currency: self.currency.trim().to_ascii_uppercase(),
            energy_price,
            periods,
            demand_price,
            monthly_fixed,
        };
        if errs.is_empty() {
            // The remaining rules (currency code, price ranges), said next to the form.
            if let Err(m) = t.validate() {
                let f = if m.contains("currency") {
                    "currency"
                } else {
                    "tariff"
                };
                errs.push(f, m);
            }
        }
        if errs.is_empty() {
            Ok(t)
        } else {
            Err(errs)
        }
    }
}

/// `POST /sites/{id}/tariff` (admins).
pub async fn tariff(
    State(web): State<Web>,
    Path(id): Path<i64>,
    Posted { user, form }: Posted<TariffForm>,
) -> Result<Response, HtmlError> {
    Web::require_admin(&user.user)?;
    let errors = match form.tariff() {
        Ok(t) => match energy::set_tariff(&web, &user, id, Some(t)).await {
            Ok(()) => return Ok(Redirect::to(&format!("/sites/{id}?saved=tariff")).into_response()),
            Err(WebError::Invalid(m)) => FieldErrors::one("tariff", m),
            Err(e) => return Err(e.into()),
        },
        Err(errors) => errors,
    };
    let message = format!(
        "The tariff was not saved: {}",
        errors.messages().collect::<Vec<_>>().join("; ")
    );
    let kept = Kept {
        tariff: Some(&form),
        errors,
        ..Kept::default()
    };
    refused(&web, &user, id, message, &kept).await
}

/// `POST /sites/{id}/tariff/delete` (admins).
pub async fn delete_tariff(
    State(web): State<Web>,
    Path(id): Path<i64>,
    Posted { user, .. }: Posted<super::login::CsrfOnly>,
) -> Result<Response, HtmlError> {
    Web::require_admin(&user.user)?;
    let r = energy::set_tariff(&web, &user, id, None)
        .await
        .map(|_| "tariff+removed".to_owned());
    after(&web, &user, id, r).await
}

/// `GET /sites/{id}/energy.csv?from=&to=&by=`.
pub async fn energy_csv(
    State(web): State<Web>,
    PageUser(p): PageUser,
    Path(id): Path<i64>,
    Query(q): Query<EnergyQuery>,
) -> Result<Response, HtmlError> {
    let breakdown = q.breakdown()?;
    let (l, by, periods) = web.site_energy(&p.user, id, &q).await?;
    Ok(crate::service::export::energy_csv_response(
        &l, by, &periods, breakdown,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tariff_form_is_parsed_with_messages() {
        let f = |price: &str, periods: &str| TariffForm {
            csrf: String::new(),
            currency: " eur ".into(),
            energy_price: price.into(),
            periods: periods.into(),
            demand_price: String::new(),
            monthly_fixed: "9.5".into(),
        };
        let t = f("0.3", "peak mon-fri 08:00-20:00 0.4\n\n")
            .tariff()
            .unwrap();
        assert_eq!(
            (t.currency.as_str(), t.periods.len(), t.monthly_fixed),
            ("EUR", 1, 9.5)
        );
        let e = f("x", "").tariff().unwrap_err();
        assert!(e.get("energy_price").unwrap().contains("not a number"));
        let e = f("", "").tariff().unwrap_err();
        assert!(e.get("energy_price").unwrap().contains("required"));
        assert!(f(" ", "").tariff().is_err());
        assert!(f("NaN", "").tariff().is_err());
        assert!(f("0", "").tariff().is_ok(), "0 is a price");
        assert!(f("0.3", "peak mon-fri")
            .tariff()
            .unwrap_err()
            .get("periods")
            .is_some());
        assert_eq!(
            local(&crate::energy::zone::load("Europe/Berlin"), 1_774_738_800),
            "2026-03-29 00:00"
        );
    }
}
