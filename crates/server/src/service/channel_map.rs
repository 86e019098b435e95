//! Channel maps as structured JSON (issue 18 point 3): buses and channels with named fields and
//! expressions as text ([`build`]), and the same shape read back from map bytes ([`describe`]).
//!
//! [`build`] checks every field itself so that an error names the channel (index and name) and
//! the field as the user wrote it, compiles each expression with [`crate::expr::compile`] in its
//! place in the map, encodes with the protocol crate's [`map::emit`] and runs the protocol's
//! validator over the result as the last word. Nothing here touches storage.

use crate::expr;
use crate::http::error::WebError;
use serde::{Deserialize, Serialize};
use tek_proto::channel::expr::Scope;
use tek_proto::channel::map::{
    self, Bus, Channel, ChannelMap, Conversion, Resolution, Source, Unit,
};
use tek_proto::channel::map::{Baud, DataType, Function, ModbusRead, Parity, WordOrder};

/// Unit symbols by code (PROTOCOL.md 17.2).
const SYMBOLS: [&str; 15] = [
    "", "W", "Wh", "°C", "%", "V", "A", "Hz", "m³", "l", "l/min", "Pa", "VA", "var", "s",
];
/// ASCII spellings accepted for the symbols that have none.
const ALIASES: [(&str, u8); 3] = [("degC", 3), ("m3", 8), ("none", 0)];

/// The symbol of a unit code (PROTOCOL.md 17.2); `None` for a code the table does not have.
pub fn unit_symbol(code: u8) -> Option<&'static str> {
    SYMBOLS.get(usize::from(code)).copied()
}

/// The code of a unit symbol (or its ASCII alias).
pub fn unit_code(symbol: &str) -> Option<u8> {
    SYMBOLS
        .iter()
        .position(|s| *s == symbol)
        .map(|i| i as u8)
        .or_else(|| ALIASES.iter().find(|(a, _)| *a == symbol).map(|(_, c)| *c))
}

const BAUDS: [(u32, Baud); 3] = [
    (9600, Baud::B9600),
    (19200, Baud::B19200),
    (38400, Baud::B38400),
];
const PARITIES: [(&str, Parity); 3] = [
    ("none", Parity::None),
    ("even", Parity::Even),
    ("odd", Parity::Odd),
];
const TYPES: [(&str, DataType); 5] = [
    ("u16", DataType::U16),
    ("i16", DataType::I16),
    ("u32", DataType::U32),
    ("i32", DataType::I32),
    ("f32", DataType::F32),
];
const ORDERS: [(&str, WordOrder); 2] = [
    ("high_first", WordOrder::HighFirst),
    ("low_first", WordOrder::LowFirst),
];

/// A serial bus.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BusSpec {
    /// 9600, 19200 or 38400 bit/s.
    pub baud: i64,
    /// `none`, `even` or `odd`.
    pub parity: String,
    /// How long to wait for a slave's answer, 50..=2000 ms.
    pub timeout_ms: i64,
}

/// A Modbus register read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModbusSpec {
    /// Index of the bus.
    pub bus: i64,
    /// Slave address, 1..=247.
    pub slave: i64,
    /// 3 (holding registers) or 4 (input registers).
    pub function: i64,
    /// First register, 0-based as sent.
    pub register: i64,
    /// `u16`, `i16`, `u32`, `i32` or `f32`.
    #[serde(rename = "type")]
    pub data_type: String,
    /// `high_first` (default) or `low_first`.
    #[serde(default = "high_first")]
    pub word_order: String,
}

fn high_first() -> String {
    "high_first".into()
}

/// Where a channel's value comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum SourceSpec {
    /// A Modbus register read.
    Modbus(ModbusSpec),
    /// A board input, 0..=31.
    Input(i64),
    /// An expression (the syntax of [`crate::expr`]).
    Expression(String),
}

/// A channel reference of the roles: its index or its name.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum ChannelRef {
    /// Index in the map.
    Index(i64),
    /// Channel name.
    Name(String),
}

/// One channel's map fields as a face received them (absent: the default).
#[derive(Debug, Clone, Copy)]
pub struct ChannelSpec<'a> {
    /// Its name (expressions and roles refer to it).
    pub name: &'a str,
    /// Unit symbol; default none.
    pub unit: Option<&'a str>,
    /// Decimal exponent of the logged integer, -9..=9; default 0.
    pub exponent: Option<i64>,
    /// Source (required).
    pub source: Option<&'a SourceSpec>,
    /// Multiplier, not 0; default 1.
    pub mul: Option<i64>,
    /// Divisor, 1..=65535; default 1.
    pub div: Option<i64>,
    /// Offset; default 0.
    pub offset: Option<i64>,
}

/// One channel's map fields read back from map bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChannelSource {
    /// Source; the expression as decompiled text.
    pub source: SourceSpec,
    /// Multiplier.
    pub mul: i32,
    /// Divisor.
    pub div: u16,
    /// Offset.
    pub offset: i32,
}

fn invalid<T>(s: String) -> Result<T, WebError> {
    Err(WebError::Invalid(s))
}

/// The index of a channel `r` names among `names`; `what` says where it was named.
pub fn resolve(r: &ChannelRef, names: &[&str], what: &str) -> Result<u8, WebError> {
    match r {
        ChannelRef::Index(i) => match u8::try_from(*i) {
            Ok(c) if usize::from(c) < names.len() => Ok(c),
            _ => invalid(format!(
                "{what}: channel {i} does not exist (there are {} channels)",
                names.len()
            )),
        },
        ChannelRef::Name(n) => match names.iter().position(|x| *x == n.trim()) {
            Some(c) => Ok(c as u8),
            None => invalid(format!("{what}: no channel is named {n:?}")),
        },
    }
}

fn range<T: TryFrom<i64>>(
    v: i64,
    ok: impl Fn(&T) -> bool,
    at: &dyn Fn(&str) -> String,
    field: &str,
    want: &str,
) -> Result<T, WebError> {
    match T::try_from(v) {
        Ok(t) if ok(&t) => Ok(t),
        _ => invalid(format!("{}: {v} outside {want}", at(field))),
    }
}

fn pick<T: Copy>(table: &[(&str, T)], v: &str, at: String) -> Result<T, WebError> {
    table
        .iter()
        .find(|(n, _)| *n == v)
        .map(|(_, t)| *t)
        .ok_or_else(|| {
            let known: Vec<&str> = table.iter().map(|(n, _)| *n).collect();
            WebError::Invalid(format!("{at}: {v:?} is none of {}", known.join(", ")))
        })
}

fn bus(i: usize, b: &BusSpec) -> Result<Bus, WebError> {
    let at = |f: &str| format!("bus {i}: {f}");
    let baud = BAUDS
        .iter()
        .find(|(n, _)| i64::from(*n) == b.baud)
        .map(|(_, c)| *c)
        .ok_or_else(|| {
            WebError::Invalid(format!(
                "{}: {} is none of 9600, 19200, 38400",
                at("baud"),
                b.baud
            ))
        })?;
    Ok(Bus {
        baud,
        parity: pick(&PARITIES, &b.parity, at("parity"))?,
        timeout_ms: range(
            b.timeout_ms,
            |t: &u16| (50..=2000).contains(t),
            &at,
            "timeout_ms",
            "50..=2000",
        )?,
    })
}

/// The channel map bytes of `buses` and `channels` (PROTOCOL.md 17.2), or the first error,
/// naming the bus or the channel (index and name) and the field.
pub fn build(buses: &[BusSpec], channels: &[ChannelSpec<'_>]) -> Result<Vec<u8>, WebError> {
    if buses.len() > map::MAX_BUSES {
        return invalid(format!(
            "buses: {} buses, at most {}",
            buses.len(),
            map::MAX_BUSES
        ));
    }
    if channels.len() > map::MAX_CHANNELS {
        return invalid(format!(
            "channels: {} channels, at most {}",
            channels.len(),
            map::MAX_CHANNELS
        ));
    }
    let buses = buses
        .iter()
        .enumerate()
        .map(|(i, b)| bus(i, b))
        .collect::<Result<Vec<_>, _>>()?;
    let names: Vec<&str> = channels.iter().map(|c| c.name.trim()).collect();
    let computed: Vec<bool> = channels
        .iter()
        .map(|c| matches!(c.source, Some(SourceSpec::Expression(_))))
        .collect();
    // Programs first: `Source::Computed` borrows them.
    let mut programs: Vec<Vec<u8>> = Vec::with_capacity(channels.len());
    for (i, c) in channels.iter().enumerate() {
        let code = match c.source {
            Some(SourceSpec::Expression(text)) => {
                let scope = Scope {
                    index: i as u8,
                    count: channels.len(),
                    is_computed: |c: u8| computed.get(usize::from(c)).copied().unwrap_or(false),
                };
                expr::compile(text, &scope, &|n: &str| {
                    names.iter().position(|x| *x == n).map(|p| p as u8)
                })
                .map_err(|e| {
                    WebError::Invalid(format!(
                        "channel {i} ({:?}): source.expression: {e}",
                        c.name
                    ))
                })?
            }
            _ => Vec::new(),
        };
        programs.push(code);
    }
    let mut out = Vec::with_capacity(channels.len());
    for (i, (c, code)) in channels.iter().zip(&programs).enumerate() {
        let at = |f: &str| format!("channel {i} ({:?}): {f}", c.name);
        let source = match c.source {
            None => return invalid(format!("{}: required", at("source"))),
            Some(SourceSpec::Input(n)) => {
                Source::Board(range(*n, |n: &u8| *n <= 31, &at, "source.input", "0..=31")?)
            }
            Some(SourceSpec::Expression(_)) => Source::Computed(code),
            Some(SourceSpec::Modbus(m)) => {
                let data_type = pick(&TYPES, &m.data_type, at("source.modbus.type"))?;
                let word_order = pick(&ORDERS, &m.word_order, at("source.modbus.word_order"))?;
                if data_type.registers() == 1 && word_order != WordOrder::HighFirst {
                    return invalid(format!(
                        "{}: a 16-bit type has no word order but high_first",
                        at("source.modbus.word_order")
                    ));
                }
                let register: u16 = range(
                    m.register,
                    |_| true,
                    &at,
                    "source.modbus.register",
                    "0..=65535",
                )?;
                if u32::from(register) + u32::from(data_type.registers()) > 65536 {
                    return invalid(format!(
                        "{}: {register} and the next register of {} pass 65535",
                        at("source.modbus.register"),
                        m.data_type
                    ));
                }
                let bus_count = buses.len();
                Source::Modbus(ModbusRead {
                    bus: range(
                        m.bus,
                        |b: &u8| usize::from(*b) < bus_count,
                        &at,
                        "source.modbus.bus",
                        &format!("the {bus_count} buses"),
                    )?,
                    slave: range(
                        m.slave,
                        |s: &u8| (1..=247).contains(s),
                        &at,
                        "source.modbus.slave",
                        "1..=247",
                    )?,
                    function: Function::from_code(range(
                        m.function,
                        |f: &u8| *f == 3 || *f == 4,
                        &at,
                        "source.modbus.function",
                        "3 (holding) or 4 (input registers)",
                    )?),
                    register,
                    data_type,
                    word_order,
                })
            }
        };
        let unit = match c.unit {
            None => Unit::None,
            Some(s) => Unit::from_code(unit_code(s.trim()).ok_or_else(|| {
                let known: Vec<&str> = SYMBOLS.iter().filter(|s| !s.is_empty()).copied().collect();
                WebError::Invalid(format!(
                    "{}: {s:?} is none of \"\" (none), {}",
                    at("unit"),
                    known.join(", ")
                ))
            })?),
        };
        out.push(Channel {
            source,
            conversion: Conversion {
                mul: range(
                    c.mul.unwrap_or(1),
                    |m: &i32| *m != 0,
                    &at,
                    "mul",
                    "i32 but 0",
                )?,
                div: range(
                    c.div.unwrap_or(1),
                    |d: &u16| *d != 0,
                    &at,
                    "div",
                    "1..=65535",
                )?,
                offset: range(c.offset.unwrap_or(0), |_| true, &at, "offset", "i32")?,
            },
            resolution: Resolution {
                unit,
                exponent: range(
                    c.exponent.unwrap_or(0),
                    |e: &i8| (-9..=9).contains(e),
                    &at,
                    "exponent",
                    "-9..=9",
                )?,
            },
        });
    }
    let mut bytes = vec![0; map::buffer_len(&buses, &out)];
    map::emit(&buses, &out, &mut bytes).map_err(|e| WebError::Invalid(e.to_string()))?;
    // The fields were checked above; the protocol's validator has the last word all the same.
    ChannelMap::new_checked(&bytes)
        .and_then(|m| m.validate())
        .map_err(|e| WebError::Invalid(e.to_string()))?;
    Ok(bytes)
}

fn name_of<T: Copy + PartialEq>(table: &[(&'static str, T)], v: T) -> String {
    table
        .iter()
        .find(|(_, t)| *t == v)
        .map_or_else(|| "unknown".to_owned(), |(n, _)| (*n).to_owned())
}

/// The buses and each channel's source of a valid map, with expressions decompiled (channels
/// shown by the names in `names`); `None` for bytes that are not a valid map.
pub fn describe(bytes: &[u8], names: &[String]) -> Option<(Vec<BusSpec>, Vec<ChannelSource>)> {
    let m = ChannelMap::new_checked(bytes).ok()?;
    m.validate().ok()?;
    let buses = (0..m.bus_count())
        .filter_map(|i| m.bus(i))
        .map(|b| BusSpec {
            baud: b.baud.bits_per_s().map_or(0, i64::from),
            parity: name_of(&PARITIES, b.parity),
            timeout_ms: i64::from(b.timeout_ms),
        })
        .collect();
    let label = |c: u8| names.get(usize::from(c)).cloned();
    let channels = m
        .channels()
        .map(|ch| {
            let source = match ch.source {
                Source::Modbus(r) => SourceSpec::Modbus(ModbusSpec {
                    bus: i64::from(r.bus),
                    slave: i64::from(r.slave),
                    function: i64::from(r.function.code()),
                    register: i64::from(r.register),
                    data_type: name_of(&TYPES, r.data_type),
                    word_order: name_of(&ORDERS, r.word_order),
                }),
                Source::Board(n) => SourceSpec::Input(i64::from(n)),
                Source::Computed(code) => {
                    SourceSpec::Expression(expr::decompile(code, &label).ok()?)
                }
                // A validated map has none; the caller shows no sources rather than a guess.
                Source::Unknown(_) => return None,
            };
            Some(ChannelSource {
                source,
                mul: ch.conversion.mul,
                div: ch.conversion.div,
                offset: ch.conversion.offset,
            })
        })
        .collect::<Option<Vec<_>>>()?;
    Some((buses, channels))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn modbus(slave: i64, register: i64, ty: &str) -> SourceSpec {
        SourceSpec::Modbus(ModbusSpec {
            bus: 0,
            slave,
            function: 4,
            register,
            data_type: ty.into(),
            word_order: "high_first".into(),
        })
    }

    fn spec<'a>(name: &'a str, source: &'a SourceSpec) -> ChannelSpec<'a> {
        ChannelSpec {
            name,
            unit: Some("W"),
            exponent: None,
            source: Some(source),
            mul: None,
            div: None,
            offset: None,
        }
    }

    fn bus9600() -> Vec<BusSpec> {
        vec![BusSpec {
            baud: 9600,
            parity: "none".into(),
            timeout_ms: 500,
        }]
    }

    fn err(r: Result<Vec<u8>, WebError>) -> String {
        match r {
            Err(WebError::Invalid(m)) => m,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn builds_and_describes_a_map() {
        let (l1, l2) = (modbus(1, 12, "f32"), modbus(1, 14, "f32"));
        let sum = SourceSpec::Expression("\"Power L1\" + #1".into());
        let water = SourceSpec::Input(2);
        let mut chans = vec![
            spec("Power L1", &l1),
            spec("Power L2", &l2),
            spec("Sum", &sum),
        ];
        chans.push(ChannelSpec {
            unit: Some("degC"),
            exponent: Some(-2),
            div: Some(10),
            ..spec("Water", &water)
        });
        let bytes = build(&bus9600(), &chans).unwrap();
        let m = ChannelMap::new_checked(&bytes).unwrap();
        assert_eq!(m.channel_count(), 4);
        assert_eq!(
            m.channel(2).unwrap().source,
            Source::Computed(&[3, 0, 3, 1, 0x10])
        );
        assert_eq!(m.channel(3).unwrap().resolution.unit, Unit::Celsius);
        let names: Vec<String> = chans.iter().map(|c| c.name.to_owned()).collect();
        let (buses, sources) = describe(&bytes, &names).unwrap();
        assert_eq!(buses, bus9600());
        assert_eq!(sources[0].source, l1);
        assert_eq!(
            sources[2].source,
            SourceSpec::Expression("\"Power L1\" + \"Power L2\"".into())
        );
        assert_eq!((sources[3].source.clone(), sources[3].div), (water, 10));
    }

    #[test]
    fn every_builtin_template_describes_to_specs_that_build_it_again() {
        assert_eq!(describe(&[], &[]), None);
        for b in crate::storage::channels::builtin::all() {
            let bytes = b.map();
            let labels = b.labels();
            let names: Vec<String> = labels.iter().map(|l| l.name.clone()).collect();
            let (buses, sources) = describe(&bytes, &names).unwrap();
            let map = ChannelMap::new_checked(&bytes).unwrap();
            let units: Vec<String> = map
                .channels()
                .map(|c| unit_symbol(c.resolution.unit.code()).unwrap().to_owned())
                .collect();
            let specs: Vec<ChannelSpec<'_>> = map
                .channels()
                .zip(&sources)
                .enumerate()
                .map(|(i, (c, s))| ChannelSpec {
                    name: &names[i],
                    unit: Some(&units[i]),
                    exponent: Some(i64::from(c.resolution.exponent)),
                    source: Some(&s.source),
                    mul: Some(i64::from(s.mul)),
                    div: Some(i64::from(s.div)),
                    offset: Some(i64::from(s.offset)),
                })
                .collect();
            assert_eq!(build(&buses, &specs).unwrap(), bytes, "{}", b.name);
        }
    }

    #[test]
    fn errors_name_the_channel_and_the_field() {
        let ok = modbus(1, 0, "u16");
        let one = |s: &SourceSpec| err(build(&bus9600(), &[spec("P", &ok), spec("X", s)]));
        assert_eq!(
            one(&modbus(0, 0, "u16")),
            "channel 1 (\"X\"): source.modbus.slave: 0 outside 1..=247"
        );
        assert_eq!(
            one(&modbus(1, 65535, "f32")),
            "channel 1 (\"X\"): source.modbus.register: 65535 and the next register of f32 \
             pass 65535"
        );
        assert_eq!(
            one(&modbus(1, 70000, "u16")),
            "channel 1 (\"X\"): source.modbus.register: 70000 outside 0..=65535"
        );
        assert_eq!(
            one(&modbus(1, 0, "f64")),
            "channel 1 (\"X\"): source.modbus.type: \"f64\" is none of u16, i16, u32, i32, f32"
        );
        assert_eq!(
            one(&SourceSpec::Expression("#0 + (1".into())),
            "channel 1 (\"X\"): source.expression: expected ')', found the end at 7"
        );
        assert_eq!(
            one(&SourceSpec::Expression("\"X\" * 2".into())),
            "channel 1 (\"X\"): source.expression: \"X\" (channel 1) is this channel itself at 0"
        );
        assert_eq!(
            one(&SourceSpec::Input(32)),
            "channel 1 (\"X\"): source.input: 32 outside 0..=31"
        );
        let div0 = ChannelSpec {
            div: Some(0),
            ..spec("P", &ok)
        };
        assert_eq!(
            err(build(&bus9600(), &[div0])),
            "channel 0 (\"P\"): div: 0 outside 1..=65535"
        );
        let bad_bus = BusSpec {
            baud: 4800,
            ..bus9600()[0].clone()
        };
        assert_eq!(
            err(build(&[bad_bus], &[spec("P", &ok)])),
            "bus 0: baud: 4800 is none of 9600, 19200, 38400"
        );
        assert_eq!(
            err(build(&[], &[spec("P", &ok)])),
            "channel 0 (\"P\"): source.modbus.bus: 0 outside the 0 buses"
        );
        let names = ["a", "b"];
        assert_eq!(
            resolve(&ChannelRef::Name("b".into()), &names, "roles: power").unwrap(),
            1
        );
        assert!(resolve(&ChannelRef::Index(2), &names, "roles: power").is_err());
    }
}
