//! The channel editor (issue 18 points 2, 3 and 6): `GET /templates/new` and
//! `GET /templates/{id}/edit` show a template as a form (its name, owner, serial bus, roles and a
//! row per channel: name, kind, unit, decimals and a source — a meter quantity from the built-in
//! meter templates, a raw Modbus register, a board input or an expression over other channels);
//! posting it back either changes the rows (add, remove, move up or down: the form is shown
//! again, nothing saved, so it all works without JavaScript) or saves it through
//! [`channels::create_template`] / [`channels::update_template`]. `POST /templates/check` runs the
//! same translation and [`channels::check_template`] and answers the errors by field as JSON,
//! for `static/template-editor.js` to show next to a field as the user types.
//! `GET`/`POST /templates/{id}/delete` asks first, then deletes.
//!
//! Every refusal — a field that is not a number here, or the service's message naming the
//! channel and the field — is shown next to its field, with everything the user typed kept;
//! nothing is saved and nothing is sent to a controller.

use super::auth::{CsrfForm, PageUser, Posted};
use super::error::HtmlError;
use super::fields::FieldErrors;
use super::layout::{self, Nav};
use crate::http::auth::Principal;
use crate::http::error::WebError;
use crate::http::Web;
use crate::service::channel_map::{BusSpec, ChannelRef, ModbusSpec, SourceSpec};
use crate::service::channels::{self, ChannelInput, RolesInput, TemplateInput, TemplateView};
use crate::storage::channels::ChannelKind;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Json;
use maud::{html, Markup};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};

/// Path of the editor's script.
pub const JS_PATH: &str = "/static/template-editor.js";

/// The most rows a posted form may have: the protocol's channel limit (the service refuses more
/// with a message; this bounds the work of reading the form).
const MAX_ROWS: usize = tek_proto::channel::map::MAX_CHANNELS + 1;

/// The sources a row can take, by the value of its `source` field.
const SOURCES: [(&str, &str); 4] = [
    ("preset", "meter quantity"),
    ("modbus", "Modbus register"),
    ("input", "board input"),
    ("expression", "expression"),
];
/// The choices of the service's Modbus fields ([`crate::service::channel_map`] checks them).
const DATA_TYPES: [&str; 5] = ["u16", "i16", "u32", "i32", "f32"];
const WORD_ORDERS: [&str; 2] = ["high_first", "low_first"];
const FUNCTIONS: [(&str, &str); 2] = [("4", "4: input registers"), ("3", "3: holding registers")];
const BAUDS: [&str; 3] = ["9600", "19200", "38400"];
const PARITIES: [&str; 3] = ["none", "even", "odd"];
/// The roles' channel fields, in the order of [`RolesInput`].
const ROLES: [(&str, &str); 4] = [
    ("role_water", "Water temperature"),
    ("role_air", "Air temperature"),
    ("role_power", "Power"),
    ("role_energy", "Energy"),
];

/// The fields of a channel row; in the form each is `c{index}_{field}`.
const ROW_FIELDS: [&str; 17] = [
    "name",
    "kind",
    "unit",
    "exponent",
    "decimals",
    "source",
    "input",
    "preset",
    "slave",
    "function",
    "register",
    "data_type",
    "order",
    "expression",
    "mul",
    "div",
    "offset",
];
/// The fields of the template itself.
const TOP_FIELDS: [&str; 11] = [
    "name",
    "site",
    "bus_baud",
    "bus_parity",
    "bus_timeout",
    "roles",
    "role_water",
    "role_air",
    "role_power",
    "role_energy",
    "role_pump",
];
/// The last top field (kept apart so [`TOP_FIELDS`] reads as one line per group).
const ROLE_HEATER: &str = "role_heater";

/// Field values by name, as typed (a missing field reads as empty).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Fields(BTreeMap<&'static str, String>);

impl Fields {
    fn get(&self, f: &str) -> &str {
        self.0.get(f).map_or("", String::as_str)
    }

    fn set(&mut self, f: &'static str, v: impl Into<String>) {
        self.0.insert(f, v.into());
    }
}

/// The editor's state: what the form shows and posts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Editor {
    top: Fields,
    rows: Vec<Fields>,
}

/// The serial bus of the built-in meter templates: a new template starts with it.
fn default_bus() -> BusSpec {
    BusSpec {
        baud: 9600,
        parity: "none".into(),
        timeout_ms: 500,
    }
}

fn new_row() -> Fields {
    let mut r = Fields::default();
    for (f, v) in [
        ("kind", "power"),
        ("unit", ""),
        ("exponent", "0"),
        ("decimals", "0"),
        ("source", "preset"),
        ("slave", "1"),
        ("function", "4"),
        ("data_type", "u16"),
        ("order", "high_first"),
        ("mul", "1"),
        ("div", "1"),
        ("offset", "0"),
    ] {
        r.set(f, v);
    }
    r
}

/// A meter quantity: a Modbus channel of a built-in template with one serial bus (the meter
/// templates), picked in the editor by `value` instead of typing its register.
#[derive(Debug, Clone)]
struct Preset {
    /// `{template name}/{channel name}`.
    value: String,
    model: String,
    quantity: String,
    unit: &'static str,
    exponent: i8,
    modbus: ModbusSpec,
    mul: i32,
    div: u16,
    offset: i32,
}

/// The meter quantities, from the built-in templates the caller sees (all of them are for every
/// site): the registry of meters is the templates, not a second list here.
async fn presets(web: &Web, p: &Principal) -> Result<Vec<Preset>, WebError> {
    let all = channels::list_templates(web, p).await?;
    Ok(all
        .iter()
        .filter(|t| t.builtin && t.buses.len() == 1)
        .flat_map(|t| {
            t.channels.iter().filter_map(move |c| {
                let m = c.map.as_ref()?;
                let SourceSpec::Modbus(modbus) = &m.source else {
                    return None;
                };
                Some(Preset {
                    value: format!("{}/{}", t.name, c.name),
                    model: t.name.clone(),
                    quantity: c.name.clone(),
                    unit: c.unit.unwrap_or(""),
                    exponent: c.exponent,
                    modbus: modbus.clone(),
                    mul: m.mul,
                    div: m.div,
                    offset: m.offset,
                })
            })
        })
        .collect())
}

impl Editor {
    /// A new template: the first owner the caller may give, the meter bus, one row.
    fn blank(owners: &[(Option<i64>, String)]) -> Editor {
        let mut top = Fields::default();
        let site = owners.first().and_then(|(s, _)| *s);
        top.set("site", site.map(|s| s.to_string()).unwrap_or_default());
        Editor::set_bus(&mut top, &default_bus());
        top.set("role_pump", "0");
        top.set(ROLE_HEATER, "1");
        Editor {
            top,
            rows: vec![new_row()],
        }
    }

    fn set_bus(top: &mut Fields, b: &BusSpec) {
        top.set("bus_baud", b.baud.to_string());
        top.set("bus_parity", b.parity.clone());
        top.set("bus_timeout", b.timeout_ms.to_string());
    }

    /// A stored template as the form shows it; a Modbus channel that reads a meter quantity's
    /// register with its scaling shows as that quantity.
    fn of(t: &TemplateView, presets: &[Preset]) -> Editor {
        let mut top = Fields::default();
        top.set("name", t.name.clone());
        top.set("site", t.site_id.map(|s| s.to_string()).unwrap_or_default());
        Editor::set_bus(&mut top, t.buses.first().unwrap_or(&default_bus()));
        let name_of = |c: Option<u8>| {
            c.and_then(|i| t.channels.iter().find(|x| x.index == i))
                .map(|x| x.name.clone())
                .unwrap_or_default()
        };
        match &t.roles {
            Some(r) => {
                top.set("roles", "on");
                for ((f, _), c) in ROLES.iter().zip([r.water, r.air, r.power, r.energy]) {
                    top.set(f, name_of(c));
                }
                top.set("role_pump", r.pump.to_string());
                top.set(ROLE_HEATER, r.heater.to_string());
            }
            None => {
                top.set("role_pump", "0");
                top.set(ROLE_HEATER, "1");
            }
        }
        let rows = t
            .channels
            .iter()
            .map(|c| {
                let mut r = new_row();
                r.set("name", c.name.clone());
                r.set("kind", c.kind.as_str());
                r.set("unit", c.unit.unwrap_or(""));
                r.set("exponent", c.exponent.to_string());
                r.set("decimals", c.decimals.to_string());
                let Some(m) = &c.map else { return r };
                r.set("mul", m.mul.to_string());
                r.set("div", m.div.to_string());
                r.set("offset", m.offset.to_string());
                match &m.source {
                    SourceSpec::Input(n) => {
                        r.set("source", "input");
                        r.set("input", n.to_string());
                    }
                    SourceSpec::Expression(e) => {
                        r.set("source", "expression");
                        r.set("expression", e.clone());
                    }
                    SourceSpec::Modbus(s) => {
                        let preset = presets.iter().find(|p| {
                            let same = ModbusSpec {
                                slave: s.slave,
                                ..p.modbus.clone()
                            };
                            same == *s
                                && (p.mul, p.div, p.offset) == (m.mul, m.div, m.offset)
                                && (Some(p.unit), p.exponent) == (c.unit, c.exponent)
                        });
                        r.set("slave", s.slave.to_string());
                        r.set("function", s.function.to_string());
                        r.set("register", s.register.to_string());
                        r.set("data_type", s.data_type.clone());
                        r.set("order", s.word_order.clone());
                        match preset {
                            Some(p) => {
                                r.set("source", "preset");
                                r.set("preset", p.value.clone());
                            }
                            None => r.set("source", "modbus"),
                        }
                    }
                }
                r
            })
            .collect();
        Editor { top, rows }
    }

    /// The editor a form post describes: `rows` rows of `c{i}_{field}`.
    fn from_form(form: &HashMap<String, String>) -> Editor {
        let mut top = Fields::default();
        for f in TOP_FIELDS.into_iter().chain([ROLE_HEATER]) {
            if let Some(v) = form.get(f) {
                top.set(f, v.clone());
            }
        }
        let count = form
            .get("rows")
            .and_then(|n| n.trim().parse::<usize>().ok())
            .unwrap_or(0)
            .min(MAX_ROWS);
        let rows = (0..count)
            .map(|i| {
                let mut r = Fields::default();
                for f in ROW_FIELDS {
                    if let Some(v) = form.get(&format!("c{i}_{f}")) {
                        r.set(f, v.clone());
                    }
                }
                r
            })
            .collect();
        Editor { top, rows }
    }

    /// Carries out a row action (`add`, `remove-{i}`, `up-{i}`, `down-{i}`); false for any other
    /// action (`save`).
    fn row_action(&mut self, action: &str) -> bool {
        if action == "add" {
            if self.rows.len() < MAX_ROWS {
                self.rows.push(new_row());
            }
            return true;
        }
        let Some((what, i)) = action.split_once('-') else {
            return false;
        };
        let Ok(i) = i.parse::<usize>() else {
            return false;
        };
        if i >= self.rows.len() {
            // A stale form (a row already gone): nothing to do, the form is shown again.
            return matches!(what, "remove" | "up" | "down");
        }
        match what {
            "remove" => {
                let gone = self.rows.remove(i);
                let name = gone.get("name").trim();
                // A reference to the removed channel becomes its name, so the check says there is
                // no such channel instead of the expression silently reading the next row.
                let by_name = if name.is_empty() || name.contains('"') {
                    format!("\"removed channel {i}\"")
                } else {
                    format!("\"{name}\"")
                };
                self.renumber(|n| match n {
                    n if n == i as u64 => by_name.clone(),
                    n if n > i as u64 => format!("#{}", n - 1),
                    n => format!("#{n}"),
                });
            }
            "up" if i > 0 => self.swap(i - 1, i),
            "down" if i + 1 < self.rows.len() => self.swap(i, i + 1),
            "up" | "down" => {}
            _ => return false,
        }
        true
    }

    /// Swaps rows `a` and `b`; expressions keep reading the channels they read.
    fn swap(&mut self, a: usize, b: usize) {
        self.rows.swap(a, b);
        let (a, b) = (a as u64, b as u64);
        self.renumber(|n| match n {
            n if n == a => format!("#{b}"),
            n if n == b => format!("#{a}"),
            n => format!("#{n}"),
        });
    }

    /// Rewrites every row's expression's channel numbers with `replace`
    /// ([`crate::expr::renumber`]); an expression that does not lex is left as typed.
    fn renumber(&mut self, replace: impl Fn(u64) -> String) {
        for r in &mut self.rows {
            if let Some(text) = crate::expr::renumber(r.get("expression"), &replace) {
                if text != r.get("expression") {
                    r.set("expression", text);
                }
            }
        }
    }

    /// The service's input, and the fields that are not even numbers (each named; the input
    /// has the field's default in their place, so the rest can still be checked).
    fn input(&self, presets: &[Preset]) -> (TemplateInput, FieldErrors) {
        let mut errors = FieldErrors::default();
        // An empty field is its default; anything else must be a whole number.
        fn num(errors: &mut FieldErrors, key: String, text: &str, default: i64) -> i64 {
            let t = text.trim();
            if t.is_empty() {
                return default;
            }
            t.parse::<i64>().unwrap_or_else(|_| {
                errors.push(&key, format!("{t:?} is not a whole number"));
                default
            })
        }
        let mut channels = Vec::with_capacity(self.rows.len());
        let mut uses_bus = false;
        for (i, r) in self.rows.iter().enumerate() {
            let key = |f: &str| format!("c{i}_{f}");
            let decimals = num(&mut errors, key("decimals"), r.get("decimals"), 0);
            let mut c = ChannelInput {
                name: r.get("name").to_owned(),
                kind: r.get("kind").to_owned(),
                // Out of u8 is the storage's "decimals: outside" in words; 255 is refused there.
                decimals: u8::try_from(decimals).unwrap_or(u8::MAX),
                unit: Some(r.get("unit").to_owned()),
                exponent: Some(num(&mut errors, key("exponent"), r.get("exponent"), 0)),
                source: None,
                mul: Some(num(&mut errors, key("mul"), r.get("mul"), 1)),
                div: Some(num(&mut errors, key("div"), r.get("div"), 1)),
                offset: Some(num(&mut errors, key("offset"), r.get("offset"), 0)),
            };
            let slave = num(&mut errors, key("slave"), r.get("slave"), 1);
            c.source = match r.get("source") {
                "input" => Some(SourceSpec::Input(num(
                    &mut errors,
                    key("input"),
                    r.get("input"),
                    -1,
                ))),
                "expression" => Some(SourceSpec::Expression(r.get("expression").to_owned())),
                "modbus" => {
                    uses_bus = true;
                    Some(SourceSpec::Modbus(ModbusSpec {
                        bus: 0,
                        slave,
                        function: num(&mut errors, key("function"), r.get("function"), 4),
                        register: num(&mut errors, key("register"), r.get("register"), -1),
                        data_type: r.get("data_type").to_owned(),
                        word_order: r.get("order").to_owned(),
                    }))
                }
                "preset" => {
                    uses_bus = true;
                    match presets.iter().find(|p| p.value == r.get("preset")) {
                        Some(p) => {
                            // The quantity brings its register, unit and scaling (and its
                            // name, when the row has none); only the meter's address is the
                            // user's.
                            if c.name.trim().is_empty() {
                                c.name = p.quantity.clone();
                            }
                            c.unit = Some(p.unit.to_owned());
                            c.exponent = Some(i64::from(p.exponent));
                            c.mul = Some(i64::from(p.mul));
                            c.div = Some(i64::from(p.div));
                            c.offset = Some(i64::from(p.offset));
                            Some(SourceSpec::Modbus(ModbusSpec {
                                slave,
                                ..p.modbus.clone()
                            }))
                        }
                        None => {
                            errors.push(&key("preset"), "pick a meter and a quantity");
                            None
                        }
                    }
                }
                _ => {
                    errors.push(&key("source"), "pick where the value comes from");
                    None
                }
            };
            channels.push(c);
        }
        let site = match self.top.get("site").trim() {
            "" => None,
            s => Some(num(&mut errors, "site".into(), s, 0)),
        };
        let buses = uses_bus.then(|| {
            vec![BusSpec {
                baud: num(
                    &mut errors,
                    "bus_baud".into(),
                    self.top.get("bus_baud"),
                    9600,
                ),
                parity: self.top.get("bus_parity").to_owned(),
                timeout_ms: num(
                    &mut errors,
                    "bus_timeout".into(),
                    self.top.get("bus_timeout"),
                    500,
                ),
            }]
        });
        let roles = (!self.top.get("roles").is_empty()).then(|| {
            let channel = |f: &str| match self.top.get(f).trim() {
                "" => None,
                n => Some(ChannelRef::Name(n.to_owned())),
            };
            let relay =
                |f: &'static str, n: i64| u8::try_from(n).ok().filter(|r| *r <= 7).ok_or((f, n));
            let pump = relay(
                "role_pump",
                num(
                    &mut errors,
                    "role_pump".into(),
                    self.top.get("role_pump"),
                    0,
                ),
            );
            let heater = relay(
                ROLE_HEATER,
                num(
                    &mut errors,
                    ROLE_HEATER.into(),
                    self.top.get(ROLE_HEATER),
                    1,
                ),
            );
            (
                RolesInput {
                    water: channel("role_water"),
                    air: channel("role_air"),
                    power: channel("role_power"),
                    energy: channel("role_energy"),
                    pump: *pump.as_ref().unwrap_or(&0),
                    heater: *heater.as_ref().unwrap_or(&1),
                },
                [pump.err(), heater.err()],
            )
        });
        let roles = roles.map(|(r, bad)| {
            for (f, n) in bad.into_iter().flatten() {
                errors.push(f, format!("{n} outside relays 0..=7"));
            }
            r
        });
        let input = TemplateInput {
            name: self.top.get("name").to_owned(),
            site_id: site,
            map: None,
            buses,
            roles,
            channels,
        };
        (input, errors)
    }

    /// The form field a message of the service is about, and the message without the words
    /// that name the channel (the field is shown next to its row). The service names a channel
    /// `channel {i} ("{name}")` or `channel {i}`, then the field as the JSON API spells it.
    /// `names` are the channel names the service was given.
    fn place(&self, message: &str, names: &[&str]) -> (String, String) {
        let whole = || ("form".to_owned(), message.to_owned());
        if let Some(rest) = message.strip_prefix("template name: ") {
            return ("name".into(), rest.to_owned());
        }
        if message.starts_with("template ") && message.ends_with(" already exists") {
            return ("name".into(), message.to_owned());
        }
        if message.starts_with("site ") {
            return ("site".into(), message.to_owned());
        }
        if let Some(rest) = message.strip_prefix("bus 0: ") {
            let (field, text) = rest.split_once(": ").unwrap_or(("", rest));
            let key = match field {
                "baud" => "bus_baud",
                "parity" => "bus_parity",
                "timeout_ms" => "bus_timeout",
                _ => return whole(),
            };
            return (key.into(), text.to_owned());
        }
        if let Some(rest) = message.strip_prefix("roles: ") {
            let (role, text) = rest.split_once(": ").unwrap_or(("", rest));
            return match ROLES
                .iter()
                .find(|(f, _)| f.strip_prefix("role_") == Some(role))
            {
                Some((f, _)) => ((*f).to_owned(), text.to_owned()),
                None => whole(),
            };
        }
        for (i, (r, name)) in self.rows.iter().zip(names).enumerate() {
            let prefixes = [
                format!("channel {i} ({name:?}): "),
                format!("channel {i} ({:?}): ", name.trim()),
                format!("channel {i}: "),
            ];
            let Some(rest) = prefixes
                .iter()
                .find_map(|p| message.strip_prefix(p.as_str()))
            else {
                continue;
            };
            let (field, text) = rest.split_once(": ").unwrap_or(("", rest));
            let preset = r.get("source") == "preset";
            let f = match field {
                "name" | "kind" | "decimals" | "unit" | "exponent" | "mul" | "div" | "offset"
                    if !preset =>
                {
                    field
                }
                "name" | "kind" | "decimals" => field,
                "source.input" => "input",
                "source.expression" => "expression",
                "source.modbus.slave" => "slave",
                "source.modbus.function" if !preset => "function",
                "source.modbus.register" if !preset => "register",
                "source.modbus.type" if !preset => "data_type",
                "source.modbus.word_order" if !preset => "order",
                _ if preset => "preset",
                _ => "source",
            };
            return (format!("c{i}_{f}"), text.to_owned());
        }
        whole()
    }

    /// Every error of this input, by field; no errors: the input to save. The service stops at
    /// the first problem, so each one found is put next to its field and then replaced in a
    /// probe copy by a harmless value (a board input for a bad source, the default for a bad
    /// number, a placeholder name), and the probe is checked again — every channel's problem is
    /// shown at once, not one per save.
    fn check(&self, presets: &[Preset]) -> (Option<TemplateInput>, FieldErrors) {
        let (input, mut errors) = self.input(presets);
        let mut probe = input.clone();
        // Each round neutralises one field; the bound only guards against a message that
        // names a field neutralising does not change.
        for _ in 0..(4 * probe.channels.len() + 8) {
            let Err(e) = channels::check_template(&probe) else {
                break;
            };
            let Some((field, text)) = self.refusal_of(&e, &probe) else {
                break;
            };
            if errors.get(&field).is_none() {
                errors.push(&field, text);
            }
            if !neutralise(&mut probe, &field) {
                break;
            }
        }
        if errors.is_empty() {
            (Some(input), errors)
        } else {
            (None, errors)
        }
    }

    /// The field and message of a refusal of the service about `input`; `None` for one that is
    /// not about the input (rights, a missing template, the database).
    fn refusal_of(&self, e: &WebError, input: &TemplateInput) -> Option<(String, String)> {
        let message = match e {
            WebError::Invalid(m) | WebError::Conflict(m) => m.as_str(),
            _ => return None,
        };
        let names: Vec<&str> = input.channels.iter().map(|c| c.name.as_str()).collect();
        Some(self.place(message, &names))
    }

    /// [`Editor::refusal_of`] as the page's field errors (empty: not about the input).
    fn refusal(&self, e: &WebError, input: &TemplateInput) -> FieldErrors {
        self.refusal_of(e, input)
            .map(|(f, m)| FieldErrors::one(&f, m))
            .unwrap_or_default()
    }
}

/// Replaces `field` of `probe` by a value the service accepts (see [`Editor::check`]); false
/// for a field it cannot stand in for.
fn neutralise(probe: &mut TemplateInput, field: &str) -> bool {
    match field {
        "name" => probe.name = "template".into(),
        "bus_baud" | "bus_parity" | "bus_timeout" => probe.buses = Some(vec![default_bus()]),
        f if f.starts_with("role_") => probe.roles = None,
        f => {
            let Some((i, f)) = f
                .strip_prefix('c')
                .and_then(|f| f.split_once('_'))
                .and_then(|(i, f)| Some((i.parse::<usize>().ok()?, f)))
            else {
                return false;
            };
            let Some(c) = probe.channels.get_mut(i) else {
                return false;
            };
            match f {
                "name" => c.name = format!("(channel {i})"),
                "kind" => c.kind = "other".into(),
                "decimals" => c.decimals = 0,
                "unit" => c.unit = Some(String::new()),
                "exponent" => c.exponent = Some(0),
                "mul" => c.mul = Some(1),
                "div" => c.div = Some(1),
                "offset" => c.offset = Some(0),
                _ => c.source = Some(SourceSpec::Input(0)),
            }
        }
    }
    true
}

fn text_field(e: &FieldErrors, key: &str, label: &str, value: &str, class: &str) -> Markup {
    html! {
        label class=(class) {
            (label)
            input type="text" name=(key) value=(value) aria-invalid=[e.invalid(key)]
                aria-describedby=[e.described_by(key)];
            (e.note(key))
        }
    }
}

fn select_field(
    e: &FieldErrors,
    key: &str,
    label: &str,
    value: &str,
    options: &[(&str, &str)],
    class: &str,
) -> Markup {
    html! {
        label class=(class) {
            (label)
            select name=(key) aria-invalid=[e.invalid(key)] aria-describedby=[e.described_by(key)] {
                @if !options.iter().any(|(v, _)| *v == value) {
                    option value=(value) selected { (value) }
                }
                @for (v, text) in options {
                    option value=(v) selected[*v == value] { (text) }
                }
            }
            (e.note(key))
        }
    }
}

fn same(values: &[&'static str]) -> Vec<(&'static str, &'static str)> {
    values.iter().map(|v| (*v, *v)).collect()
}

fn row(i: usize, count: usize, r: &Fields, e: &FieldErrors, presets: &[Preset]) -> Markup {
    let k = |f: &str| format!("c{i}_{f}");
    let kinds: Vec<(&str, &str)> = ChannelKind::ALL
        .iter()
        .map(|k| (k.as_str(), k.as_str()))
        .collect();
    let units: Vec<(&str, &str)> = (0..=u8::MAX)
        .map_while(channels::unit_symbol)
        .map(|u| (u, if u.is_empty() { "none" } else { u }))
        .collect();
    let preset_key = k("preset");
    let source = r.get("source");
    let title = match r.get("name").trim() {
        "" => format!("Channel {i}"),
        n => format!("Channel {i}: {n}"),
    };
    let mut models: Vec<&str> = presets.iter().map(|p| p.model.as_str()).collect();
    models.dedup();
    html! {
        fieldset.channel id={ "channel-" (i) } data-row=(i) data-source=(source) {
            legend { (title) }
            div.fields {
                (text_field(e, &k("name"), "Name", r.get("name"), "f-name"))
                (select_field(e, &k("kind"), "Kind", r.get("kind"), &kinds, "f-kind"))
                (text_field(e, &k("decimals"), "Decimals shown", r.get("decimals"), "f-num"))
                (select_field(e, &k("source"), "Source", source, &SOURCES, "f-source"))
                label.f-preset {
                    "Meter quantity"
                    select name=(preset_key) aria-invalid=[e.invalid(&preset_key)]
                        aria-describedby=[e.described_by(&preset_key)] {
                        option value="" selected[r.get("preset").is_empty()] { "pick one" }
                        @for m in &models {
                            optgroup label=(m) {
                                @for p in presets.iter().filter(|p| p.model == *m) {
                                    option value=(p.value) selected[p.value == r.get("preset")] {
                                        // The model too: the closed list shows only this.
                                        (p.quantity) " (" (p.unit) ") · " (p.model)
                                    }
                                }
                            }
                        }
                    }
                    (e.note(&preset_key))
                }
                (text_field(e, &k("slave"), "Meter address", r.get("slave"), "f-slave f-num"))
                (select_field(e, &k("function"), "Function", r.get("function"), &FUNCTIONS, "f-modbus"))
                (text_field(e, &k("register"), "Register", r.get("register"), "f-modbus f-num"))
                (select_field(e, &k("data_type"), "Type", r.get("data_type"), &same(&DATA_TYPES), "f-modbus"))
                (select_field(e, &k("order"), "Word order", r.get("order"), &same(&WORD_ORDERS), "f-modbus"))
                (text_field(e, &k("input"), "Board input", r.get("input"), "f-input f-num"))
                (text_field(e, &k("expression"), "Expression", r.get("expression"), "f-expression"))
                (select_field(e, &k("unit"), "Unit", r.get("unit"), &units, "f-conv"))
                (text_field(e, &k("exponent"), "Exponent (logged × 10^n)", r.get("exponent"), "f-conv f-num"))
                (text_field(e, &k("mul"), "Multiply by", r.get("mul"), "f-conv f-num"))
                (text_field(e, &k("div"), "Divide by", r.get("div"), "f-conv f-num"))
                (text_field(e, &k("offset"), "Add", r.get("offset"), "f-conv f-num"))
            }
            div.row-actions {
                button type="submit" name="action" value={ "up-" (i) } disabled[i == 0]
                    aria-label={ "Move channel " (i) " up" } { "Up" }
                button type="submit" name="action" value={ "down-" (i) } disabled[i + 1 == count]
                    aria-label={ "Move channel " (i) " down" } { "Down" }
                button type="submit" name="action" value={ "remove-" (i) }
                    aria-label={ "Remove channel " (i) } { "Remove" }
            }
        }
    }
}

fn form(
    p: &Principal,
    action: &str,
    ed: &Editor,
    e: &FieldErrors,
    presets: &[Preset],
    owners: &[(Option<i64>, String)],
) -> Markup {
    let top = &ed.top;
    let owner_options: Vec<(String, &str)> = owners
        .iter()
        .map(|(s, n)| (s.map(|s| s.to_string()).unwrap_or_default(), n.as_str()))
        .collect();
    let owner_options: Vec<(&str, &str)> = owner_options
        .iter()
        .map(|(v, n)| (v.as_str(), *n))
        .collect();
    let names: Vec<(&str, &str)> = std::iter::once(("", "none"))
        .chain(
            ed.rows
                .iter()
                .map(|r| r.get("name").trim())
                .filter(|n| !n.is_empty())
                .map(|n| (n, n)),
        )
        .collect();
    html! {
        form.editor #template-editor method="post" action=(action) novalidate data-plain {
            (layout::csrf_field(p))
            input type="hidden" name="rows" value=(ed.rows.len());
            @if !e.is_empty() {
                div.flash.error #editor-errors role="alert" {
                    "Nothing was saved: " (e.messages().count()) " problem(s), each shown next to its field."
                    @if let Some(m) = e.get("form") { " " span.field-error id="form-error" { (m) } }
                }
            }
            fieldset {
                legend { "Template" }
                (text_field(e, "name", "Name", top.get("name"), "f-name"))
                (select_field(e, "site", "For", top.get("site"), &owner_options, ""))
                button type="submit" name="action" value="save" { "Save template" }
            }
            fieldset #bus {
                legend { "Serial bus" }
                p.meta { "Used when a channel reads a meter quantity or a Modbus register." }
                (select_field(e, "bus_baud", "Baud", top.get("bus_baud"), &same(&BAUDS), ""))
                (select_field(e, "bus_parity", "Parity", top.get("bus_parity"), &same(&PARITIES), ""))
                (text_field(e, "bus_timeout", "Answer timeout (ms)", top.get("bus_timeout"), "f-num"))
            }
            h2 { "Channels" }
            p.meta {
                "A meter quantity brings its register, unit and scaling; a Modbus register, a board "
                "input or an expression takes the unit and scaling you give. An expression names "
                "other channels in double quotes or as #index, e.g. "
                code { "\"Power L1\" + \"Power L2\"" } "."
            }
            @for (i, r) in ed.rows.iter().enumerate() { (row(i, ed.rows.len(), r, e, presets)) }
            p { button type="submit" name="action" value="add" { "Add channel" } }
            fieldset #roles-editor {
                legend { "Roles" }
                label.check {
                    input type="checkbox" name="roles" checked[!top.get("roles").is_empty()];
                    " This template says which channels the thermostat and energy figures read"
                }
                p.meta { "Without roles, a controller keeps the pool board's." }
                @for (f, label) in ROLES { (select_field(e, f, label, top.get(f), &names, "")) }
                (text_field(e, "role_pump", "Pump relay", top.get("role_pump"), "f-num"))
                (text_field(e, ROLE_HEATER, "Heater relay", top.get(ROLE_HEATER), "f-num"))
            }
            p { button type="submit" name="action" value="save" { "Save template" } }
        }
        script src=(JS_PATH) defer {}
    }
}

async fn render(
    web: &Web,
    p: &Principal,
    id: Option<i64>,
    ed: &Editor,
    e: &FieldErrors,
) -> Result<Html<String>, WebError> {
    let presets = presets(web, p).await?;
    let owners = channels::template_owners(web, p).await?;
    let (title, action) = match id {
        Some(id) => (
            format!("Edit {}", ed.top.get("name")),
            format!("/templates/{id}/edit"),
        ),
        None => ("New template".to_owned(), "/templates/new".to_owned()),
    };
    let body = html! {
        h1 { (title) }
        p {
            @if let Some(id) = id { a href={ "/templates/" (id) } { "Back to the template" } " · " }
            a href="/templates" { "All templates" }
        }
        (form(p, &action, ed, e, &presets, &owners))
    };
    Ok(layout::page(p, Nav::Templates, &title, body))
}

/// `t` if the editor can show all of it: the form has one serial bus, and a template made
/// through the API with more would lose the others (and its channels on them) when saved.
fn one_bus(t: TemplateView) -> Result<TemplateView, WebError> {
    if t.buses.len() > 1 {
        return Err(WebError::Invalid(format!(
            "{} has {} serial buses and the editor shows one: change it with \
             PUT /api/templates/{}",
            t.name,
            t.buses.len(),
            t.id
        )));
    }
    Ok(t)
}

/// `GET /templates/new`: for a user who may create templates (an administrator or a site
/// member).
pub async fn new_page(
    State(web): State<Web>,
    PageUser(p): PageUser,
) -> Result<Html<String>, HtmlError> {
    let owners = channels::template_owners(&web, &p).await?;
    if owners.is_empty() {
        return Err(WebError::Forbidden("only site members create templates").into());
    }
    Ok(render(
        &web,
        &p,
        None,
        &Editor::blank(&owners),
        &FieldErrors::default(),
    )
    .await?)
}

/// `GET /templates/{id}/edit`: 404 for a template the user does not see, 403 for one they may
/// not change.
pub async fn edit_page(
    State(web): State<Web>,
    PageUser(p): PageUser,
    Path(id): Path<i64>,
) -> Result<Html<String>, HtmlError> {
    let t = one_bus(channels::editable_template(&web, &p, id).await?)?;
    let ed = Editor::of(&t, &presets(&web, &p).await?);
    Ok(render(&web, &p, Some(id), &ed, &FieldErrors::default()).await?)
}

/// The editor's form: the CSRF token, the button pressed and every field.
#[derive(Debug, Deserialize)]
pub struct EditorForm {
    csrf: String,
    #[serde(default)]
    action: String,
    #[serde(flatten)]
    rest: HashMap<String, String>,
}

impl CsrfForm for EditorForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// A row action re-renders the form; `save` checks, then saves through the service (creating
/// when `id` is `None`) and redirects to the template's page — after an edit with its
/// controllers ticked to push to.
async fn post(
    web: &Web,
    p: &Principal,
    id: Option<i64>,
    form: &EditorForm,
) -> Result<Response, WebError> {
    if let Some(id) = id {
        // Rights first: a template the user may not change shows no form at all.
        one_bus(channels::editable_template(web, p, id).await?)?;
    }
    let mut ed = Editor::from_form(&form.rest);
    // Enter in a field submits with the first button, *Save template*; no button at all
    // (a script) is a save too.
    if !matches!(form.action.as_str(), "save" | "") {
        if !ed.row_action(&form.action) {
            return Err(WebError::Invalid(format!(
                "{:?} is no button of this form",
                form.action
            )));
        }
        return Ok(render(web, p, id, &ed, &FieldErrors::default())
            .await?
            .into_response());
    }
    let presets = presets(web, p).await?;
    let (checked, errors) = ed.check(&presets);
    let Some(input) = checked else {
        return refused(web, p, id, &ed, &errors).await;
    };
    let saved = match id {
        None => channels::create_template(web, p, &input).await,
        Some(id) => channels::update_template(web, p, id, &input).await,
    };
    match saved {
        Ok(t) => {
            let (msg, anchor) = if id.is_some() {
                (
                    format!(
                        "Saved {}. Controllers running the earlier map keep it until you apply \
                         the template again: the ones using it are ticked below.",
                        t.name
                    ),
                    "&push=1#apply",
                )
            } else {
                (format!("Created {}.", t.name), "")
            };
            let q = serde_urlencoded::to_string([("ok", msg)]).unwrap_or_default();
            Ok(Redirect::to(&format!("/templates/{}?{q}{anchor}", t.id)).into_response())
        }
        Err(e) => {
            let fields = ed.refusal(&e, &input);
            if fields.is_empty() {
                return Err(e);
            }
            refused(web, p, id, &ed, &fields).await
        }
    }
}

/// The form again with its errors, nothing saved: 422.
async fn refused(
    web: &Web,
    p: &Principal,
    id: Option<i64>,
    ed: &Editor,
    errors: &FieldErrors,
) -> Result<Response, WebError> {
    let page = render(web, p, id, ed, errors).await?;
    Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response())
}

/// `POST /templates/new`.
pub async fn create(
    State(web): State<Web>,
    Posted { user, form }: Posted<EditorForm>,
) -> Result<Response, HtmlError> {
    Ok(post(&web, &user, None, &form).await?)
}

/// `POST /templates/{id}/edit`.
pub async fn update(
    State(web): State<Web>,
    Path(id): Path<i64>,
    Posted { user, form }: Posted<EditorForm>,
) -> Result<Response, HtmlError> {
    Ok(post(&web, &user, Some(id), &form).await?)
}

/// One error of `POST /templates/check`: the form field and its message.
#[derive(Debug, serde::Serialize)]
pub struct CheckError {
    field: String,
    message: String,
}

/// `POST /templates/check`: the editor's form checked as a save would check it, nothing saved;
/// `{"errors": [{"field", "message"}]}`, empty when it would be saved.
pub async fn check(
    State(web): State<Web>,
    Posted { user, form }: Posted<EditorForm>,
) -> Result<Json<serde_json::Value>, HtmlError> {
    let ed = Editor::from_form(&form.rest);
    let (_, errors) = ed.check(&presets(&web, &user).await?);
    let list: Vec<CheckError> = ROW_FIELDS
        .iter()
        .flat_map(|f| (0..ed.rows.len()).map(move |i| format!("c{i}_{f}")))
        .chain(TOP_FIELDS.iter().map(|f| (*f).to_owned()))
        .chain([ROLE_HEATER.to_owned(), "form".to_owned()])
        .filter_map(|f| {
            errors.get(&f).map(|m| CheckError {
                message: m.to_owned(),
                field: f,
            })
        })
        .collect();
    Ok(Json(serde_json::json!({ "errors": list })))
}

/// `GET /templates/{id}/delete`: asks first.
pub async fn delete_page(
    State(web): State<Web>,
    PageUser(p): PageUser,
    Path(id): Path<i64>,
) -> Result<Html<String>, HtmlError> {
    let t = channels::editable_template(&web, &p, id).await?;
    let page = channels::template_page(&web, &p, id).await?;
    let title = format!("Delete {}", t.name);
    let body = html! {
        h1 { (title) }
        p {
            "Delete the template " strong { (t.name) } " with its " (t.channels.len())
            " channel(s)? "
            @if page.devices.is_empty() { "None of your controllers uses it." }
            @else { (page.devices.len()) " of your controllers use it; they keep the map they run." }
        }
        form method="post" action={ "/templates/" (id) "/delete" } {
            (layout::csrf_field(&p))
            button type="submit" { "Delete the template" }
            " " a href={ "/templates/" (id) } { "Keep it" }
        }
    };
    Ok(layout::page(&p, Nav::Templates, &title, body))
}

/// The delete form: the CSRF token only.
#[derive(Debug, Deserialize)]
pub struct DeleteForm {
    csrf: String,
}

impl CsrfForm for DeleteForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// `POST /templates/{id}/delete`: back to the list with what was done.
pub async fn delete(
    State(web): State<Web>,
    Path(id): Path<i64>,
    Posted { user, .. }: Posted<DeleteForm>,
) -> Result<Response, HtmlError> {
    let t = channels::editable_template(&web, &user, id).await?;
    channels::delete_template(&web, &user, id).await?;
    let q =
        serde_urlencoded::to_string([("ok", format!("Deleted {}.", t.name))]).unwrap_or_default();
    Ok(Redirect::to(&format!("/templates?{q}")).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn row_actions_add_remove_and_move() {
        let mut ed = Editor::from_form(&form(&[("rows", "2"), ("c0_name", "a"), ("c1_name", "b")]));
        assert!(ed.row_action("down-0"));
        assert_eq!(ed.rows[0].get("name"), "b");
        assert!(ed.row_action("up-0"));
        assert_eq!(ed.rows[0].get("name"), "b");
        assert!(ed.row_action("add"));
        assert_eq!(ed.rows.len(), 3);
        assert!(ed.row_action("remove-0"));
        assert_eq!(ed.rows[0].get("name"), "a");
        assert!(ed.row_action("remove-9"));
        assert!(!ed.row_action("save"));
        // Expressions follow the channels they read when rows move or go.
        let mut ed = Editor::from_form(&form(&[
            ("rows", "3"),
            ("c0_name", "site"),
            ("c1_name", "pump"),
            ("c2_name", "rest"),
            ("c2_source", "expression"),
            ("c2_expression", "#0 - ch1"),
        ]));
        assert!(ed.row_action("up-2"));
        assert_eq!(ed.rows[1].get("expression"), "#0 - #2");
        assert!(ed.row_action("up-1"));
        assert_eq!(ed.rows[0].get("expression"), "#1 - #2");
        assert!(ed.row_action("remove-2"));
        assert_eq!(ed.rows[0].get("expression"), "#1 - \"pump\"");
        assert!(!ed.row_action("explode-1"));
        assert_eq!(ed.rows.len(), 2);
        // A forged row count reads at most the protocol's limit.
        assert_eq!(
            Editor::from_form(&form(&[("rows", "999999")])).rows.len(),
            MAX_ROWS
        );
    }

    #[test]
    fn service_messages_land_on_their_row_and_field() {
        let ed = Editor::from_form(&form(&[
            ("rows", "2"),
            ("c0_name", "P"),
            ("c0_source", "preset"),
            ("c1_name", "Sum"),
            ("c1_source", "expression"),
        ]));
        let at = |m: &str| ed.place(m, &["P", "Sum"]);
        assert_eq!(
            at("channel 1 (\"Sum\"): source.expression: expected ')', found the end at 7"),
            (
                "c1_expression".into(),
                "expected ')', found the end at 7".into()
            )
        );
        assert_eq!(
            at("channel 0 (\"P\"): source.modbus.register: 70000 outside 0..=65535").0,
            "c0_preset"
        );
        assert_eq!(
            at("channel 0 (\"P\"): source.modbus.slave: 0 outside 1..=247").0,
            "c0_slave"
        );
        assert_eq!(at("channel 1: name: \"P\" is used twice").0, "c1_name");
        assert_eq!(at("roles: air: no channel is named \"x\"").0, "role_air");
        assert_eq!(at("bus 0: parity: \"x\" is none of none").0, "bus_parity");
        assert_eq!(at("template name: 1 to 64 printable characters").0, "name");
        assert_eq!(at("something else").0, "form");
    }
}
