//! A channel map in words, for people (the template pages): where each channel's value comes
//! from (PROTOCOL.md 17.2) — "Modbus: bus 0 (9600 8N2, 500 ms), slave 1, input register 52, f32
//! high word first, × 1000" — and what kinds of channels a template has ("3 power, 3 energy").
//!
//! Numbers are the wire's (bus and channel indices and register addresses are 0-based as the
//! map stores them), so what the page says matches the map, the API and PROTOCOL.md. A code this
//! version does not know is shown as its number, never refused: a stored map was validated, and
//! a text is no place to fail.

use crate::storage::channels::ChannelKind;
use tek_proto::channel::map::{
    Baud, Bus, Channel, ChannelMap, Conversion, DataType, Function, ModbusRead, Parity, Source,
    WordOrder,
};

/// A serial bus's settings: speed, frame (8 data bits, parity, stop bits) and answer timeout,
/// e.g. "9600 8N2, 500 ms".
pub fn describe_bus(bus: &Bus) -> String {
    let speed = match bus.baud {
        Baud::Unknown(n) => format!("baud code {n}"),
        b => b.bits_per_s().unwrap_or_default().to_string(),
    };
    // Modbus RTU: 2 stop bits without parity, 1 with (PROTOCOL.md 17.2).
    let frame = match bus.parity {
        Parity::None => "8N2".to_owned(),
        Parity::Even => "8E1".to_owned(),
        Parity::Odd => "8O1".to_owned(),
        Parity::Unknown(n) => format!("parity code {n}"),
    };
    format!("{speed} {frame}, {} ms", bus.timeout_ms)
}

fn function_words(f: Function) -> String {
    match f {
        Function::Holding => "holding register".to_owned(),
        Function::Input => "input register".to_owned(),
        Function::Unknown(n) => format!("function {n} register"),
    }
}

fn data_type_words(t: DataType, order: WordOrder) -> String {
    let name = match t {
        DataType::U16 => "u16".to_owned(),
        DataType::I16 => "i16".to_owned(),
        DataType::U32 => "u32".to_owned(),
        DataType::I32 => "i32".to_owned(),
        DataType::F32 => "f32".to_owned(),
        DataType::Unknown(n) => format!("type code {n}"),
    };
    // The word order only means something for the two-register types.
    if t.registers() != 2 {
        return name;
    }
    match order {
        WordOrder::HighFirst => format!("{name} high word first"),
        WordOrder::LowFirst => format!("{name} low word first"),
        WordOrder::Unknown(n) => format!("{name} word order {n}"),
    }
}

fn modbus_words(map: &ChannelMap<'_>, m: &ModbusRead) -> String {
    let bus = match map.bus(usize::from(m.bus)) {
        Some(b) => format!("bus {} ({})", m.bus, describe_bus(&b)),
        None => format!("bus {} (not in the map)", m.bus),
    };
    format!(
        "Modbus: {bus}, slave {}, {} {}, {}",
        m.slave,
        function_words(m.function),
        m.register,
        data_type_words(m.data_type, m.word_order)
    )
}

/// The conversion's parts that are not the identity, e.g. "× 10 / 3 + 5" (empty for the
/// identity).
fn conversion_words(c: &Conversion) -> String {
    let mut s = String::new();
    if c.mul != 1 {
        s.push_str(&format!(" × {}", c.mul));
    }
    if c.div != 1 {
        s.push_str(&format!(" / {}", c.div));
    }
    match c.offset {
        0 => {}
        o if o < 0 => s.push_str(&format!(" − {}", o.unsigned_abs())),
        o => s.push_str(&format!(" + {o}")),
    }
    s.trim_start().to_owned()
}

/// A computed channel's program as the text it compiles from ([`crate::expr::decompile`],
/// channels as `#n`); bytes that do not decode (only an unvalidated map has them) by their size.
fn program_words(code: &[u8]) -> String {
    match crate::expr::decompile(code, &|_| None) {
        Ok(text) => format!("computed: {text}"),
        Err(_) => format!("computed ({} bytes that are no program)", code.len()),
    }
}

/// Where channel `ch` of `map` gets its value, then its conversion when that is not the
/// identity, after a comma: "Modbus: bus 0 (9600 8N2, 500 ms), slave 1, input register 52, f32 high word
/// first, × 1000", "board input 3", "computed: #0 + #1".
pub fn describe_source(map: &ChannelMap<'_>, ch: &Channel<'_>) -> String {
    let source = match ch.source {
        Source::Modbus(m) => modbus_words(map, &m),
        Source::Board(i) => format!("board input {i}"),
        Source::Computed(code) => program_words(code),
        Source::Unknown(k) => format!("source kind {k}"),
    };
    match conversion_words(&ch.conversion) {
        c if c.is_empty() => source,
        c => format!("{source}, {c}"),
    }
}

/// How many channels of each kind, in [`ChannelKind::ALL`]'s order, kinds without channels
/// left out: "3 power, 3 energy"; "no channels" for none.
pub fn kinds_text(kinds: &[ChannelKind]) -> String {
    let parts: Vec<String> = ChannelKind::ALL
        .iter()
        .filter_map(|k| {
            let n = kinds.iter().filter(|x| *x == k).count();
            (n > 0).then(|| format!("{n} {}", k.as_str()))
        })
        .collect();
    if parts.is_empty() {
        "no channels".to_owned()
    } else {
        parts.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::channels::builtin;
    use tek_proto::channel::map::{emit, Resolution, Unit};

    fn words(map: &[u8]) -> Vec<String> {
        let m = ChannelMap::new_checked(map).unwrap();
        m.channels().map(|c| describe_source(&m, &c)).collect()
    }

    #[test]
    fn meters_read_modbus_registers() {
        let w = words(&builtin::sdm630().map());
        assert_eq!(
            w[9],
            "Modbus: bus 0 (9600 8N2, 500 ms), slave 1, input register 52, f32 high word first"
        );
        assert_eq!(
            w[11],
            "Modbus: bus 0 (9600 8N2, 500 ms), slave 1, input register 72, f32 high word \
             first, × 1000"
        );
        let t = words(&builtin::tb260().map());
        assert_eq!(
            t[0],
            "Modbus: bus 0 (9600 8N2, 500 ms), slave 1, holding register 0, i16, × 10"
        );
        assert_eq!(
            t[1],
            "Modbus: bus 0 (9600 8N2, 500 ms), slave 1, holding register 4, u16"
        );
    }

    #[test]
    fn the_pool_board_reads_its_inputs() {
        let w = words(&builtin::pool().map());
        assert_eq!(
            w,
            [0, 1, 2, 3, 4].map(|i| format!("board input {i}")).to_vec()
        );
    }

    #[test]
    fn buses_conversions_and_programs_in_words() {
        let bus = Bus {
            baud: Baud::B19200,
            parity: Parity::Even,
            timeout_ms: 200,
        };
        assert_eq!(describe_bus(&bus), "19200 8E1, 200 ms");
        assert_eq!(
            describe_bus(&Bus {
                baud: Baud::Unknown(9),
                parity: Parity::Unknown(7),
                timeout_ms: 50
            }),
            "baud code 9 parity code 7, 50 ms"
        );
        let read = ModbusRead {
            bus: 0,
            slave: 7,
            function: Function::Holding,
            register: 100,
            data_type: DataType::I32,
            word_order: WordOrder::LowFirst,
        };
        let res = Resolution {
            unit: Unit::Watt,
            exponent: 0,
        };
        let channels = [
            Channel {
                source: Source::Modbus(read),
                conversion: Conversion {
                    mul: -2,
                    div: 3,
                    offset: -40,
                },
                resolution: res,
            },
            Channel {
                source: Source::Board(3),
                conversion: Conversion {
                    mul: 1,
                    div: 1,
                    offset: 5,
                },
                resolution: res,
            },
            // Framing is all `new_checked` looks at; the program is shown as its text.
            Channel {
                source: Source::Computed(&[0x01, 0x00, 0x01, 0x01, 0x10]),
                conversion: Conversion::IDENTITY,
                resolution: res,
            },
        ];
        let mut buf = vec![0; tek_proto::channel::map::buffer_len(&[bus], &channels)];
        emit(&[bus], &channels, &mut buf).unwrap();
        let m = ChannelMap::new_checked(&buf).unwrap();
        let w: Vec<String> = m.channels().map(|c| describe_source(&m, &c)).collect();
        assert_eq!(
            w,
            [
                "Modbus: bus 0 (19200 8E1, 200 ms), slave 7, holding register 100, i32 low \
                 word first, × -2 / 3 − 40",
                "board input 3, + 5",
                "computed: 0 + 1",
            ]
        );
        // A read naming a bus the map lacks (only an unvalidated map has one).
        let mut stray = read;
        stray.bus = 2;
        assert_eq!(
            modbus_words(&m, &stray),
            "Modbus: bus 2 (not in the map), slave 7, holding register 100, i32 low word first"
        );
    }

    #[test]
    fn kinds_are_counted_in_one_order() {
        use ChannelKind::*;
        assert_eq!(
            kinds_text(&[Energy, Power, Power, Energy, Power, Energy]),
            "3 power, 3 energy"
        );
        assert_eq!(kinds_text(&[State, Temperature]), "1 temperature, 1 state");
        assert_eq!(kinds_text(&[]), "no channels");
    }
}
