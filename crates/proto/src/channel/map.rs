//! The channel map (PROTOCOL.md 17.2): up to [`MAX_CHANNELS`] channels, each a source, a
//! conversion and a resolution/unit code, and the serial buses the Modbus sources poll.
//!
//! ```text
//! format    u8   1
//! buses     u8   0..=4
//! channels  u8   0..=128
//! bus       × buses:    baud u8, parity u8, response timeout u16 ms
//! channel   × channels: source kind u8, source length u8, source[length],
//!                       mul i32, div u16, offset i32, unit u8, exponent i8
//! ```
//!
//! [`ChannelMap::new_checked`] checks the framing (every length adds up), so iterating the
//! channels of a checked map cannot fail; [`ChannelMap::validate`] checks every value and
//! verifies every program, naming the channel and field at fault. Unknown codes decode to
//! `Unknown(n)` and are refused by `validate`, except unit codes, which the device does not
//! interpret. Parsing never panics; [`emit`] into a buffer of [`buffer_len`] bytes never panics.

use super::expr::{self, ExprError, Scope};

mod modbus;
pub use modbus::{Baud, Bus, DataType, Function, ModbusRead, Parity, Raw, WordOrder};

/// Most channels of a map.
pub const MAX_CHANNELS: usize = 128;
/// Most serial buses of a map.
pub const MAX_BUSES: usize = 4;
/// The map format this version writes and reads.
pub const FORMAT: u8 = 1;

const HEADER_LEN: usize = 3;
const BUS_LEN: usize = 4;
/// Bytes of a channel record after its source.
const TAIL_LEN: usize = 12;

/// Source kind codes.
pub mod kind {
    /// Modbus RTU register read.
    pub const MODBUS: u8 = 1;
    /// Board input.
    pub const BOARD: u8 = 2;
    /// Computed by an expression program.
    pub const COMPUTED: u8 = 3;
}

/// Where a channel's raw value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source<'a> {
    /// A Modbus register read.
    Modbus(ModbusRead),
    /// A board input, 0..=31 (the pool board: 0 power W, 1 energy Wh, 2 water and 3 air
    /// temperature 0.01 degC, 4 relay bitmap).
    Board(u8),
    /// An expression program (verified by [`ChannelMap::validate`]).
    Computed(&'a [u8]),
    /// A source kind this version does not know (its code).
    Unknown(u8),
}

impl Source<'_> {
    fn kind(&self) -> u8 {
        match self {
            Source::Modbus(_) => kind::MODBUS,
            Source::Board(_) => kind::BOARD,
            Source::Computed(_) => kind::COMPUTED,
            Source::Unknown(n) => *n,
        }
    }

    fn body_len(&self) -> usize {
        match self {
            Source::Modbus(_) => 7,
            Source::Board(_) => 1,
            Source::Computed(code) => code.len(),
            Source::Unknown(_) => 0,
        }
    }
}

/// `value = round_half_away_from_zero(raw * mul / div) + offset`; a result outside `i32` is no
/// value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conversion {
    /// Multiplier.
    pub mul: i32,
    /// Divisor, 1..=65535.
    pub div: u16,
    /// Added after scaling.
    pub offset: i32,
}

impl Conversion {
    /// The identity.
    pub const IDENTITY: Conversion = Conversion {
        mul: 1,
        div: 1,
        offset: 0,
    };

    /// Applies the conversion. Exact integer arithmetic for integers; for floats, `f64`.
    pub fn apply(&self, raw: Raw) -> Option<i32> {
        if self.div == 0 {
            return None;
        }
        let scaled = match raw {
            Raw::Int(r) => {
                let n = i128::from(r) * i128::from(self.mul);
                let d = i128::from(self.div);
                let q = (n.abs() * 2 + d) / (2 * d);
                i64::try_from(if n < 0 { -q } else { q }).ok()?
            }
            Raw::Float(f) => {
                let x = f64::from(f) * f64::from(self.mul) / f64::from(self.div);
                if !x.is_finite() || x.abs() >= 4.0e9 {
                    return None;
                }
                // Round half away from zero (`f64::round` is not in `core`).
                let t = x as i64;
                let frac = x - t as f64;
                if frac >= 0.5 {
                    t + 1
                } else if frac <= -0.5 {
                    t - 1
                } else {
                    t
                }
            }
        };
        i32::try_from(scaled.checked_add(i64::from(self.offset))?).ok()
    }
}

/// Unit codes. The device does not interpret them; a server shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// 0: a number without unit (a count, a state, a bitmap).
    None,
    /// 1: watt.
    Watt,
    /// 2: watt-hour.
    WattHour,
    /// 3: degree Celsius.
    Celsius,
    /// 4: percent.
    Percent,
    /// 5: volt.
    Volt,
    /// 6: ampere.
    Ampere,
    /// 7: hertz.
    Hertz,
    /// 8: cubic metre.
    CubicMetre,
    /// 9: litre.
    Litre,
    /// 10: litre per minute.
    LitrePerMinute,
    /// 11: pascal.
    Pascal,
    /// 12: volt-ampere.
    VoltAmpere,
    /// 13: volt-ampere reactive.
    Var,
    /// 14: second.
    Second,
    /// Another code.
    Unknown(u8),
}

impl Unit {
    const TABLE: [Unit; 15] = [
        Unit::None,
        Unit::Watt,
        Unit::WattHour,
        Unit::Celsius,
        Unit::Percent,
        Unit::Volt,
        Unit::Ampere,
        Unit::Hertz,
        Unit::CubicMetre,
        Unit::Litre,
        Unit::LitrePerMinute,
        Unit::Pascal,
        Unit::VoltAmpere,
        Unit::Var,
        Unit::Second,
    ];

    /// From the wire code.
    pub fn from_code(c: u8) -> Unit {
        Self::TABLE
            .get(usize::from(c))
            .copied()
            .unwrap_or(Unit::Unknown(c))
    }

    /// The wire code.
    pub fn code(self) -> u8 {
        match self {
            Unit::Unknown(n) => n,
            u => Self::TABLE.iter().position(|&t| t == u).unwrap_or(0) as u8,
        }
    }
}

/// What one logged integer means: `value × 10^exponent` of `unit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resolution {
    /// Unit.
    pub unit: Unit,
    /// Decimal exponent, -9..=9 (e.g. -2: hundredths).
    pub exponent: i8,
}

/// One channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Channel<'a> {
    /// Source.
    pub source: Source<'a>,
    /// Conversion of the raw value.
    pub conversion: Conversion,
    /// Resolution and unit of the logged value.
    pub resolution: Resolution,
}

impl Channel<'_> {
    /// Bytes this channel's record takes.
    pub fn buffer_len(&self) -> usize {
        2 + self.source.body_len() + TAIL_LEN
    }
}

/// Where a [`MapError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// The map header or its framing.
    Map,
    /// Bus `n`.
    Bus(u8),
    /// Channel `n`.
    Channel(u8),
}

/// Which field is wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// The map ends early.
    Truncated,
    /// Bytes after the last channel.
    Trailing,
    /// Unknown format byte.
    Format(u8),
    /// More than [`MAX_BUSES`] buses.
    BusCount(u8),
    /// More than [`MAX_CHANNELS`] channels.
    ChannelCount(u8),
    /// Unknown baud code.
    Baud(u8),
    /// Unknown parity code.
    Parity(u8),
    /// Timeout outside 50..=2000 ms.
    Timeout(u16),
    /// Unknown source kind.
    SourceKind(u8),
    /// Source body of the wrong length for its kind.
    SourceLength(u8),
    /// A bus the map does not have.
    BusIndex(u8),
    /// Slave outside 1..=247.
    Slave(u8),
    /// Function other than 3 or 4.
    Function(u8),
    /// Unknown data type.
    DataType(u8),
    /// Unknown word order, or a word order other than 0 for a 16-bit type.
    WordOrder(u8),
    /// Register range past 65535.
    Register(u16),
    /// Board input outside 0..=31.
    BoardInput(u8),
    /// The program does not verify.
    Program(ExprError),
    /// Divisor 0.
    Divisor,
    /// Multiplier 0.
    Multiplier,
    /// Exponent outside -9..=9.
    Exponent(i8),
}

/// A channel map that cannot be used, and where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapError {
    /// Where.
    pub place: Place,
    /// What.
    pub field: Field,
}

impl core::fmt::Display for MapError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.place {
            Place::Map => f.write_str("channel map: ")?,
            Place::Bus(n) => write!(f, "bus {n}: ")?,
            Place::Channel(n) => write!(f, "channel {n}: ")?,
        }
        match self.field {
            Field::Truncated => f.write_str("truncated"),
            Field::Trailing => f.write_str("bytes after the last channel"),
            Field::Format(n) => write!(f, "unknown format {n}"),
            Field::BusCount(n) => write!(f, "{n} buses, at most {MAX_BUSES}"),
            Field::ChannelCount(n) => write!(f, "{n} channels, at most {MAX_CHANNELS}"),
            Field::Baud(n) => write!(f, "unknown baud code {n}"),
            Field::Parity(n) => write!(f, "unknown parity code {n}"),
            Field::Timeout(n) => write!(f, "timeout {n} ms outside 50..=2000"),
            Field::SourceKind(n) => write!(f, "unknown source kind {n}"),
            Field::SourceLength(n) => write!(f, "source of {n} bytes has the wrong length"),
            Field::BusIndex(n) => write!(f, "bus {n} does not exist"),
            Field::Slave(n) => write!(f, "slave {n} outside 1..=247"),
            Field::Function(n) => write!(f, "function {n} is neither 3 nor 4"),
            Field::DataType(n) => write!(f, "unknown data type {n}"),
            Field::WordOrder(n) => write!(f, "word order {n} not allowed"),
            Field::Register(n) => write!(f, "register {n} range past 65535"),
            Field::BoardInput(n) => write!(f, "board input {n} outside 0..=31"),
            Field::Program(e) => write!(f, "program {e}"),
            Field::Divisor => f.write_str("divisor 0"),
            Field::Multiplier => f.write_str("multiplier 0"),
            Field::Exponent(n) => write!(f, "exponent {n} outside -9..=9"),
        }
    }
}

fn err(place: Place, field: Field) -> MapError {
    MapError { place, field }
}

/// A channel map whose framing was checked, borrowed from the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelMap<'a> {
    bytes: &'a [u8],
}

impl<'a> ChannelMap<'a> {
    /// Checks the header and that every channel record lies within `bytes`, exactly.
    pub fn new_checked(bytes: &'a [u8]) -> Result<Self, MapError> {
        let map = Place::Map;
        let header = bytes.get(..HEADER_LEN).ok_or(err(map, Field::Truncated))?;
        if header[0] != FORMAT {
            return Err(err(map, Field::Format(header[0])));
        }
        if usize::from(header[1]) > MAX_BUSES {
            return Err(err(map, Field::BusCount(header[1])));
        }
        if usize::from(header[2]) > MAX_CHANNELS {
            return Err(err(map, Field::ChannelCount(header[2])));
        }
        let mut at = HEADER_LEN + usize::from(header[1]) * BUS_LEN;
        for i in 0..header[2] {
            let len = *bytes
                .get(at + 1)
                .ok_or(err(Place::Channel(i), Field::Truncated))?;
            at += 2 + usize::from(len) + TAIL_LEN;
        }
        match at.cmp(&bytes.len()) {
            core::cmp::Ordering::Greater => Err(err(map, Field::Truncated)),
            core::cmp::Ordering::Less => Err(err(map, Field::Trailing)),
            core::cmp::Ordering::Equal => Ok(ChannelMap { bytes }),
        }
    }

    /// Number of buses.
    pub fn bus_count(&self) -> usize {
        usize::from(self.bytes[1])
    }

    /// Number of channels.
    pub fn channel_count(&self) -> usize {
        usize::from(self.bytes[2])
    }

    /// Bus `i`.
    pub fn bus(&self, i: usize) -> Option<Bus> {
        if i >= self.bus_count() {
            return None;
        }
        let b = self
            .bytes
            .get(HEADER_LEN + i * BUS_LEN..HEADER_LEN + (i + 1) * BUS_LEN)?;
        Some(Bus {
            baud: Baud::from_code(b[0]),
            parity: Parity::from_code(b[1]),
            timeout_ms: u16::from_be_bytes([b[2], b[3]]),
        })
    }

    /// The channels, in index order.
    pub fn channels(&self) -> Channels<'a> {
        Channels {
            bytes: self.bytes,
            at: HEADER_LEN + self.bus_count() * BUS_LEN,
            left: self.channel_count(),
        }
    }

    /// Channel `i` (a linear walk).
    pub fn channel(&self, i: usize) -> Option<Channel<'a>> {
        self.channels().nth(i)
    }

    /// The encoded map.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Checks every value of the map and verifies every program.
    pub fn validate(&self) -> Result<(), MapError> {
        for i in 0..self.bus_count() {
            let place = Place::Bus(i as u8);
            let bus = self.bus(i).ok_or(err(place, Field::Truncated))?;
            if let Baud::Unknown(n) = bus.baud {
                return Err(err(place, Field::Baud(n)));
            }
            if let Parity::Unknown(n) = bus.parity {
                return Err(err(place, Field::Parity(n)));
            }
            if !(50..=2000).contains(&bus.timeout_ms) {
                return Err(err(place, Field::Timeout(bus.timeout_ms)));
            }
        }
        let count = self.channel_count();
        let is_computed = |c: u8| {
            matches!(
                self.channel(usize::from(c)).map(|ch| ch.source),
                Some(Source::Computed(_))
            )
        };
        for (i, ch) in self.channels().enumerate() {
            let place = Place::Channel(i as u8);
            let e = |field| err(place, field);
            match ch.source {
                Source::Unknown(n) => return Err(e(Field::SourceKind(n))),
                Source::Board(n) if n > 31 => return Err(e(Field::BoardInput(n))),
                Source::Board(_) => {}
                Source::Modbus(m) => {
                    if usize::from(m.bus) >= self.bus_count() {
                        return Err(e(Field::BusIndex(m.bus)));
                    }
                    if !(1..=247).contains(&m.slave) {
                        return Err(e(Field::Slave(m.slave)));
                    }
                    if let Function::Unknown(n) = m.function {
                        return Err(e(Field::Function(n)));
                    }
                    if let DataType::Unknown(n) = m.data_type {
                        return Err(e(Field::DataType(n)));
                    }
                    match (m.word_order, m.data_type.registers()) {
                        (WordOrder::Unknown(n), _) => return Err(e(Field::WordOrder(n))),
                        (WordOrder::LowFirst, 1) => return Err(e(Field::WordOrder(1))),
                        _ => {}
                    }
                    if u32::from(m.register) + u32::from(m.data_type.registers()) > 0x1_0000 {
                        return Err(e(Field::Register(m.register)));
                    }
                }
                Source::Computed(code) => {
                    let scope = Scope {
                        index: i as u8,
                        count,
                        is_computed,
                    };
                    expr::verify(code, &scope).map_err(|x| e(Field::Program(x)))?;
                }
            }
            if ch.conversion.div == 0 {
                return Err(e(Field::Divisor));
            }
            if ch.conversion.mul == 0 {
                return Err(e(Field::Multiplier));
            }
            if !(-9..=9).contains(&ch.resolution.exponent) {
                return Err(e(Field::Exponent(ch.resolution.exponent)));
            }
        }
        Ok(())
    }
}

/// Iterator over the channels of a checked map.
#[derive(Debug, Clone)]
pub struct Channels<'a> {
    bytes: &'a [u8],
    at: usize,
    left: usize,
}

impl<'a> Iterator for Channels<'a> {
    type Item = Channel<'a>;

    fn next(&mut self) -> Option<Channel<'a>> {
        if self.left == 0 {
            return None;
        }
        let kind = *self.bytes.get(self.at)?;
        let len = usize::from(*self.bytes.get(self.at + 1)?);
        let body = self.bytes.get(self.at + 2..self.at + 2 + len)?;
        let t = self
            .bytes
            .get(self.at + 2 + len..self.at + 2 + len + TAIL_LEN)?;
        let source = match (kind, len) {
            (kind::MODBUS, 7) => Source::Modbus(ModbusRead {
                bus: body[0],
                slave: body[1],
                function: Function::from_code(body[2]),
                register: u16::from_be_bytes([body[3], body[4]]),
                data_type: DataType::from_code(body[5]),
                word_order: WordOrder::from_code(body[6]),
            }),
            (kind::BOARD, 1) => Source::Board(body[0]),
            (kind::COMPUTED, _) => Source::Computed(body),
            // A known kind with the wrong length is as unusable as an unknown one; `validate`
            // reports its kind.
            (k, _) => Source::Unknown(k),
        };
        self.at += 2 + len + TAIL_LEN;
        self.left -= 1;
        Some(Channel {
            source,
            conversion: Conversion {
                mul: i32::from_be_bytes([t[0], t[1], t[2], t[3]]),
                div: u16::from_be_bytes([t[4], t[5]]),
                offset: i32::from_be_bytes([t[6], t[7], t[8], t[9]]),
            },
            resolution: Resolution {
                unit: Unit::from_code(t[10]),
                exponent: t[11] as i8,
            },
        })
    }
}

/// Bytes [`emit`] writes for these buses and channels.
pub fn buffer_len(buses: &[Bus], channels: &[Channel<'_>]) -> usize {
    HEADER_LEN + buses.len() * BUS_LEN + channels.iter().map(Channel::buffer_len).sum::<usize>()
}

/// Encodes a map into `buf`; returns its length. Refuses (without panicking) too many buses or
/// channels, a program longer than 255 bytes, an unknown source, or a short buffer
/// ([`Field::Truncated`]). It does not validate values: call [`ChannelMap::validate`] on the
/// result before sending it.
pub fn emit(buses: &[Bus], channels: &[Channel<'_>], buf: &mut [u8]) -> Result<usize, MapError> {
    let map = Place::Map;
    if buses.len() > MAX_BUSES {
        return Err(err(map, Field::BusCount(buses.len().min(255) as u8)));
    }
    if channels.len() > MAX_CHANNELS {
        return Err(err(map, Field::ChannelCount(channels.len().min(255) as u8)));
    }
    let len = buffer_len(buses, channels);
    let out = buf.get_mut(..len).ok_or(err(map, Field::Truncated))?;
    out[0] = FORMAT;
    out[1] = buses.len() as u8;
    out[2] = channels.len() as u8;
    let mut at = HEADER_LEN;
    for b in buses {
        out[at] = b.baud.code();
        out[at + 1] = b.parity.code();
        out[at + 2..at + 4].copy_from_slice(&b.timeout_ms.to_be_bytes());
        at += BUS_LEN;
    }
    for (i, ch) in channels.iter().enumerate() {
        let place = Place::Channel(i as u8);
        let body_len = ch.source.body_len();
        if body_len > 255 {
            return Err(err(place, Field::SourceLength(255)));
        }
        out[at] = ch.source.kind();
        out[at + 1] = body_len as u8;
        let body = &mut out[at + 2..at + 2 + body_len];
        match ch.source {
            Source::Modbus(m) => {
                body[0] = m.bus;
                body[1] = m.slave;
                body[2] = m.function.code();
                body[3..5].copy_from_slice(&m.register.to_be_bytes());
                body[5] = m.data_type.code();
                body[6] = m.word_order.code();
            }
            Source::Board(n) => body[0] = n,
            Source::Computed(code) => body.copy_from_slice(code),
            Source::Unknown(n) => return Err(err(place, Field::SourceKind(n))),
        }
        at += 2 + body_len;
        let t = &mut out[at..at + TAIL_LEN];
        t[0..4].copy_from_slice(&ch.conversion.mul.to_be_bytes());
        t[4..6].copy_from_slice(&ch.conversion.div.to_be_bytes());
        t[6..10].copy_from_slice(&ch.conversion.offset.to_be_bytes());
        t[10] = ch.resolution.unit.code();
        t[11] = ch.resolution.exponent as u8;
        at += TAIL_LEN;
    }
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::expr::{op, ExprErrorKind};
    use proptest::prelude::*;

    fn res(unit: Unit, exponent: i8) -> Resolution {
        Resolution { unit, exponent }
    }

    const MEAN_POWER: [u8; 2] = [op::MEAN, 0];

    fn sample<'a>() -> ([Bus; 1], [Channel<'a>; 3]) {
        (
            [Bus {
                baud: Baud::B19200,
                parity: Parity::Even,
                timeout_ms: 200,
            }],
            [
                Channel {
                    source: Source::Modbus(ModbusRead {
                        bus: 0,
                        slave: 1,
                        function: Function::Input,
                        register: 0x000C,
                        data_type: DataType::F32,
                        word_order: WordOrder::HighFirst,
                    }),
                    conversion: Conversion::IDENTITY,
                    resolution: res(Unit::Watt, 0),
                },
                Channel {
                    source: Source::Board(2),
                    conversion: Conversion::IDENTITY,
                    resolution: res(Unit::Celsius, -2),
                },
                Channel {
                    source: Source::Computed(&MEAN_POWER),
                    conversion: Conversion {
                        mul: 1,
                        div: 1000,
                        offset: 0,
                    },
                    resolution: res(Unit::Watt, 3),
                },
            ],
        )
    }

    #[test]
    fn fixture_round_trip() {
        let (buses, channels) = sample();
        let mut buf = [0u8; 128];
        let n = emit(&buses, &channels, &mut buf).unwrap();
        assert_eq!(n, buffer_len(&buses, &channels));
        let expected: &[u8] = &[
            1, 1, 3, // header
            1, 1, 0, 200, // bus 0
            1, 7, 0, 1, 4, 0, 0x0C, 4, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 1, 0, // channel 0
            2, 1, 2, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 3, 0xFE, // channel 1
            3, 2, 0x42, 0, 0, 0, 0, 1, 0x03, 0xE8, 0, 0, 0, 0, 1, 3, // channel 2
        ];
        assert_eq!(&buf[..n], expected);
        let map = ChannelMap::new_checked(expected).unwrap();
        map.validate().unwrap();
        assert_eq!(map.bus(0), Some(buses[0]));
        assert_eq!(map.bus(1), None);
        let got: std::vec::Vec<_> = map.channels().collect();
        assert_eq!(got, channels);
    }

    #[test]
    fn framing_errors() {
        let e = |b: &[u8]| ChannelMap::new_checked(b).unwrap_err();
        assert_eq!(e(&[1, 0]), err(Place::Map, Field::Truncated));
        assert_eq!(e(&[2, 0, 0]), err(Place::Map, Field::Format(2)));
        assert_eq!(e(&[1, 5, 0]), err(Place::Map, Field::BusCount(5)));
        assert_eq!(e(&[1, 0, 129]), err(Place::Map, Field::ChannelCount(129)));
        assert_eq!(e(&[1, 0, 1, 2]), err(Place::Channel(0), Field::Truncated));
        assert_eq!(e(&[1, 0, 1, 2, 1, 0]), err(Place::Map, Field::Truncated));
        assert_eq!(e(&[1, 0, 0, 0]), err(Place::Map, Field::Trailing));
        assert!(ChannelMap::new_checked(&[1, 0, 0]).is_ok());
    }

    #[test]
    fn validation_names_channel_and_field() {
        let (buses, channels) = sample();
        let check = |f: &dyn Fn(&mut [Bus; 1], &mut [Channel; 3]), want: MapError| {
            let (mut b, mut c) = (buses, channels);
            f(&mut b, &mut c);
            let mut buf = [0u8; 128];
            let n = emit(&b, &c, &mut buf).unwrap();
            let map = ChannelMap::new_checked(&buf[..n]).unwrap();
            assert_eq!(map.validate(), Err(want));
        };
        let modbus = |c: &mut [Channel; 3], f: &dyn Fn(&mut ModbusRead)| {
            if let Source::Modbus(m) = &mut c[0].source {
                f(m)
            }
        };
        check(
            &|b, _| b[0].baud = Baud::Unknown(3),
            err(Place::Bus(0), Field::Baud(3)),
        );
        check(
            &|b, _| b[0].parity = Parity::Unknown(7),
            err(Place::Bus(0), Field::Parity(7)),
        );
        check(
            &|b, _| b[0].timeout_ms = 10,
            err(Place::Bus(0), Field::Timeout(10)),
        );
        let ch0 = |f| err(Place::Channel(0), f);
        check(&|_, c| modbus(c, &|m| m.slave = 0), ch0(Field::Slave(0)));
        check(
            &|_, c| modbus(c, &|m| m.slave = 248),
            ch0(Field::Slave(248)),
        );
        check(&|_, c| modbus(c, &|m| m.bus = 1), ch0(Field::BusIndex(1)));
        check(
            &|_, c| modbus(c, &|m| m.function = Function::Unknown(6)),
            ch0(Field::Function(6)),
        );
        check(
            &|_, c| modbus(c, &|m| m.data_type = DataType::Unknown(9)),
            ch0(Field::DataType(9)),
        );
        check(
            &|_, c| modbus(c, &|m| m.word_order = WordOrder::Unknown(2)),
            ch0(Field::WordOrder(2)),
        );
        check(
            &|_, c| {
                modbus(c, &|m| {
                    m.data_type = DataType::U16;
                    m.word_order = WordOrder::LowFirst
                })
            },
            ch0(Field::WordOrder(1)),
        );
        check(
            &|_, c| modbus(c, &|m| m.register = 0xFFFF),
            ch0(Field::Register(0xFFFF)),
        );
        check(&|_, c| c[0].conversion.div = 0, ch0(Field::Divisor));
        check(&|_, c| c[0].conversion.mul = 0, ch0(Field::Multiplier));
        check(
            &|_, c| c[1].resolution.exponent = 10,
            err(Place::Channel(1), Field::Exponent(10)),
        );
        check(
            &|_, c| c[1].source = Source::Board(32),
            err(Place::Channel(1), Field::BoardInput(32)),
        );
        // A program reading a channel that does not exist.
        const BAD: [u8; 2] = [op::CHAN, 3];
        check(
            &|_, c| c[2].source = Source::Computed(&BAD),
            err(
                Place::Channel(2),
                Field::Program(ExprError {
                    at: 0,
                    kind: ExprErrorKind::UnknownChannel(3),
                }),
            ),
        );
        // Channel 0 computed from channel 2, also computed: a forward reference.
        const FWD: [u8; 2] = [op::CHAN, 2];
        check(
            &|_, c| c[0].source = Source::Computed(&FWD),
            ch0(Field::Program(ExprError {
                at: 0,
                kind: ExprErrorKind::ForwardReference(2),
            })),
        );
        // Unknown unit codes are fine (the device does not interpret units).
        let (b, mut c) = (buses, channels);
        c[1].resolution.unit = Unit::Unknown(200);
        let mut buf = [0u8; 128];
        let n = emit(&b, &c, &mut buf).unwrap();
        assert!(ChannelMap::new_checked(&buf[..n])
            .unwrap()
            .validate()
            .is_ok());
        // An unknown source kind decodes as Unknown and is refused by validate.
        let raw = [1, 0, 1, 9, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0];
        let map = ChannelMap::new_checked(&raw).unwrap();
        assert_eq!(map.channel(0).unwrap().source, Source::Unknown(9));
        assert_eq!(map.validate(), Err(ch0(Field::SourceKind(9))));
    }

    #[test]
    fn register_decoding_and_conversion() {
        let mut m = ModbusRead {
            bus: 0,
            slave: 1,
            function: Function::Holding,
            register: 0,
            data_type: DataType::I16,
            word_order: WordOrder::HighFirst,
        };
        assert_eq!(m.decode(&[0xFFFE]), Some(Raw::Int(-2)));
        assert_eq!(m.decode(&[]), None);
        m.data_type = DataType::U32;
        assert_eq!(m.decode(&[0x0001, 0x0002]), Some(Raw::Int(0x1_0002)));
        assert_eq!(m.decode(&[0x0001]), None);
        m.word_order = WordOrder::LowFirst;
        assert_eq!(m.decode(&[0x0001, 0x0002]), Some(Raw::Int(0x2_0001)));
        m.data_type = DataType::I32;
        assert_eq!(m.decode(&[0xFFFF, 0xFFFF]), Some(Raw::Int(-1)));
        m.data_type = DataType::F32;
        m.word_order = WordOrder::HighFirst;
        assert_eq!(
            m.decode(&[0x4049, 0x0FDB]),
            Some(Raw::Float(core::f32::consts::PI))
        );
        assert_eq!(m.decode(&[0x7FC0, 0x0000]), None, "NaN is no value");
        assert_eq!(m.decode(&[0x7F80, 0x0000]), None, "infinity is no value");

        let c = Conversion {
            mul: 10,
            div: 4,
            offset: -1,
        };
        assert_eq!(c.apply(Raw::Int(1)), Some(2)); // 2.5 -> 3, -1
        assert_eq!(c.apply(Raw::Int(-1)), Some(-4)); // -2.5 -> -3, -1
        assert_eq!(c.apply(Raw::Float(1.0)), Some(2));
        assert_eq!(c.apply(Raw::Float(-1.0)), Some(-4));
        assert_eq!(c.apply(Raw::Float(0.2)), Some(0)); // 0.2f32 is a bit above 0.2: 0.50000001 -> 1, -1
        assert_eq!(c.apply(Raw::Float(0.19)), Some(-1));
        assert_eq!(
            Conversion::IDENTITY.apply(Raw::Int(i64::from(u32::MAX))),
            None
        );
        assert_eq!(Conversion::IDENTITY.apply(Raw::Float(3.0e9)), None);
        let zero = Conversion { div: 0, ..c };
        assert_eq!(zero.apply(Raw::Int(1)), None);
    }

    proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            if let Ok(map) = ChannelMap::new_checked(&bytes) {
                prop_assert_eq!(map.channels().count(), map.channel_count());
                let _ = map.validate();
                // What was checked re-encodes to the same bytes (when every source is known).
                let chans: std::vec::Vec<_> = map.channels().collect();
                let buses: std::vec::Vec<_> = (0..map.bus_count()).filter_map(|i| map.bus(i)).collect();
                let mut out = [0u8; 512];
                if let Ok(n) = emit(&buses, &chans, &mut out) {
                    prop_assert_eq!(&out[..n], &bytes[..]);
                }
            }
        }

        #[test]
        fn conversion_never_panics(r in any::<i64>(), f in any::<f32>(), mul in any::<i32>(), div in any::<u16>(), offset in any::<i32>()) {
            let c = Conversion { mul, div, offset };
            let _ = c.apply(Raw::Int(r));
            let _ = c.apply(Raw::Float(f));
        }
    }
}
