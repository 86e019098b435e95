//! The templates shipped with tek, as data: the pool controller (exactly the factory map of
//! PROTOCOL.md 17.2) and one per meter that `tek meter` emulates, read from the same registers
//! as its tables in `crates/meter/src/device.rs` (the test `tests/templates_meters.rs` checks
//! that every Modbus channel reads a register the emulated model serves, with its encoding).
//!
//! Migration 11 ([`crate::storage::schema`]) seeds these rows in SQL (the map bytes as hex); a
//! unit test there checks that the SQL and these definitions agree, so this file is the one
//! place to read them.

use super::{ChannelKind, ChannelLabel};
use tek_proto::channel::map::{
    self, Baud, Bus, Channel, Conversion, DataType, Function, ModbusRead, Parity, Resolution,
    Source, Unit, WordOrder,
};
use tek_proto::channel::roles::Roles;

/// One channel of a built-in template.
#[derive(Debug, Clone, Copy)]
pub struct BuiltinChannel {
    /// Name.
    pub name: &'static str,
    /// Kind.
    pub kind: ChannelKind,
    /// Decimals shown.
    pub decimals: u8,
    /// The map's channel.
    pub channel: Channel<'static>,
}

/// A built-in template.
#[derive(Debug, Clone)]
pub struct Builtin {
    /// Name (unique).
    pub name: &'static str,
    /// Roles (configuration item 16).
    pub roles: Option<Roles>,
    /// Serial buses of the map.
    pub buses: Vec<Bus>,
    /// Channels, in index order.
    pub channels: Vec<BuiltinChannel>,
}

impl Builtin {
    /// The channel map bytes.
    pub fn map(&self) -> Vec<u8> {
        let channels: Vec<Channel<'_>> = self.channels.iter().map(|c| c.channel).collect();
        let mut out = vec![0; map::buffer_len(&self.buses, &channels)];
        // A fixed, tested definition: the buffer has exactly the length emit needs.
        let n = map::emit(&self.buses, &channels, &mut out).expect("built-in map encodes");
        out.truncate(n);
        out
    }

    /// The roles item value, if any.
    pub fn roles_value(&self) -> Option<Vec<u8>> {
        self.roles.map(|r| r.emit()[2..].to_vec())
    }

    /// The channels' labels.
    pub fn labels(&self) -> Vec<ChannelLabel> {
        self.channels
            .iter()
            .map(|c| ChannelLabel {
                name: c.name.to_owned(),
                kind: c.kind,
                decimals: c.decimals,
            })
            .collect()
    }
}

fn res(unit: Unit, exponent: i8) -> Resolution {
    Resolution { unit, exponent }
}

fn conv(mul: i32) -> Conversion {
    Conversion {
        mul,
        div: 1,
        offset: 0,
    }
}

fn board(
    name: &'static str,
    kind: ChannelKind,
    decimals: u8,
    input: u8,
    r: Resolution,
) -> BuiltinChannel {
    BuiltinChannel {
        name,
        kind,
        decimals,
        channel: Channel {
            source: Source::Board(input),
            conversion: Conversion::IDENTITY,
            resolution: r,
        },
    }
}

/// The pool board: PROTOCOL.md 17.2's factory map, inputs 0..=4 with identity conversions.
pub fn pool() -> Builtin {
    use ChannelKind::*;
    Builtin {
        name: super::POOL_TEMPLATE,
        roles: Some(Roles::POOL),
        buses: Vec::new(),
        channels: vec![
            board("Power", Power, 0, 0, res(Unit::Watt, 0)),
            board("Energy", Energy, 0, 1, res(Unit::WattHour, 0)),
            board(
                "Water temperature",
                Temperature,
                2,
                2,
                res(Unit::Celsius, -2),
            ),
            board("Air temperature", Temperature, 2, 3, res(Unit::Celsius, -2)),
            board("Relays", State, 0, 4, res(Unit::None, 0)),
        ],
    }
}

/// The bus of the meter templates: `tek meter`'s defaults (9600 bit/s, no parity).
const METER_BUS: Bus = Bus {
    baud: Baud::B9600,
    parity: Parity::None,
    timeout_ms: 500,
};

/// The slave address of the meter templates (the user changes it per installation).
const SLAVE: u8 = 1;

/// An Eastron input register holding an IEEE 754 float, high word first, logged as
/// `round(value × mul)` of `10^exponent` units.
fn eastron(
    name: &'static str,
    kind: ChannelKind,
    decimals: u8,
    register: u16,
    mul: i32,
    r: Resolution,
) -> BuiltinChannel {
    BuiltinChannel {
        name,
        kind,
        decimals,
        channel: Channel {
            source: Source::Modbus(ModbusRead {
                bus: 0,
                slave: SLAVE,
                function: Function::Input,
                register,
                data_type: DataType::F32,
                word_order: WordOrder::HighFirst,
            }),
            conversion: conv(mul),
            resolution: r,
        },
    }
}

fn volts(name: &'static str, register: u16) -> BuiltinChannel {
    eastron(
        name,
        ChannelKind::Other,
        1,
        register,
        10,
        res(Unit::Volt, -1),
    )
}

fn amps(name: &'static str, register: u16) -> BuiltinChannel {
    eastron(
        name,
        ChannelKind::Other,
        2,
        register,
        1000,
        res(Unit::Ampere, -3),
    )
}

fn watts(name: &'static str, register: u16) -> BuiltinChannel {
    eastron(name, ChannelKind::Power, 0, register, 1, res(Unit::Watt, 0))
}

fn hertz(register: u16) -> BuiltinChannel {
    eastron(
        "Frequency",
        ChannelKind::Other,
        2,
        register,
        100,
        res(Unit::Hertz, -2),
    )
}

/// kWh on the meter, Wh in the log (the unit of every energy figure of the server).
fn kwh(name: &'static str, register: u16) -> BuiltinChannel {
    eastron(
        name,
        ChannelKind::Energy,
        0,
        register,
        1000,
        res(Unit::WattHour, 0),
    )
}

/// Roles of a meter: its power and energy channels; no temperatures; the relays as on the
/// pool board.
fn meter_roles(power: u8, energy: u8) -> Roles {
    Roles {
        water: None,
        air: None,
        power: Some(power),
        energy: Some(energy),
        pump: 0,
        heater: 1,
    }
}

/// Eastron SDM630, three-phase: every quantity register `tek meter` serves.
pub fn sdm630() -> Builtin {
    Builtin {
        name: "three-phase energy meter (SDM630)",
        roles: Some(meter_roles(9, 11)),
        buses: vec![METER_BUS],
        channels: vec![
            volts("Voltage L1", 0x0000),
            volts("Voltage L2", 0x0002),
            volts("Voltage L3", 0x0004),
            amps("Current L1", 0x0006),
            amps("Current L2", 0x0008),
            amps("Current L3", 0x000A),
            watts("Power L1", 0x000C),
            watts("Power L2", 0x000E),
            watts("Power L3", 0x0010),
            watts("Power", 0x0034),
            hertz(0x0046),
            kwh("Import energy", 0x0048),
            kwh("Export energy", 0x004A),
            kwh("Total energy", 0x0156),
        ],
    }
}

/// Eastron SDM120, single-phase: every register `tek meter` serves.
pub fn sdm120() -> Builtin {
    Builtin {
        name: "single-phase meter",
        roles: Some(meter_roles(2, 4)),
        buses: vec![METER_BUS],
        channels: vec![
            volts("Voltage", 0x0000),
            amps("Current", 0x0006),
            watts("Power", 0x000C),
            hertz(0x0046),
            kwh("Import energy", 0x0048),
            kwh("Export energy", 0x004A),
            kwh("Total energy", 0x0156),
        ],
    }
}

/// A holding register of the TB260 (one register, big-endian).
fn tb260_register(
    name: &'static str,
    kind: ChannelKind,
    decimals: u8,
    register: u16,
    data_type: DataType,
    mul: i32,
    r: Resolution,
) -> BuiltinChannel {
    BuiltinChannel {
        name,
        kind,
        decimals,
        channel: Channel {
            source: Source::Modbus(ModbusRead {
                bus: 0,
                slave: SLAVE,
                function: Function::Holding,
                register,
                data_type,
                word_order: WordOrder::HighFirst,
            }),
            conversion: conv(mul),
            resolution: r,
        },
    }
}

/// ControlBox TB260 PT100 transmitter in its Int16 × 10 setting: the temperature in 0.1 °C
/// logged in 0.01 °C (the resolution the thermostat's roles expect), and its state register.
/// No roles of its own: which temperature it measures is the installation's choice.
pub fn tb260() -> Builtin {
    Builtin {
        name: "temperature transmitter",
        roles: Some(Roles {
            water: None,
            air: None,
            power: None,
            energy: None,
            pump: 0,
            heater: 1,
        }),
        buses: vec![METER_BUS],
        channels: vec![
            tb260_register(
                "Temperature",
                ChannelKind::Temperature,
                1,
                0x0000,
                DataType::I16,
                10,
                res(Unit::Celsius, -2),
            ),
            tb260_register(
                "Sensor state",
                ChannelKind::State,
                0,
                0x0004,
                DataType::U16,
                1,
                res(Unit::None, 0),
            ),
        ],
    }
}

/// Every built-in template, in the order migration 11 creates them (ids 1..=4 on a new
/// database).
pub fn all() -> Vec<Builtin> {
    vec![pool(), sdm630(), sdm120(), tb260()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use tek_proto::channel::map::ChannelMap;

    #[test]
    fn every_builtin_is_valid() {
        for b in all() {
            let set = super::super::ChannelSet {
                map: b.map(),
                roles: b.roles_value(),
                channels: b.labels(),
            };
            super::super::validate(&set).unwrap_or_else(|e| panic!("{}: {e}", b.name));
            ChannelMap::new_checked(&set.map)
                .unwrap()
                .validate()
                .unwrap();
        }
    }

    #[test]
    fn the_pool_template_is_the_factory_map() {
        // PROTOCOL.md 17.2: five board channels, inputs 0..=4, identity conversions, units W,
        // Wh, degC (-2), degC (-2), none; no bus; the pool roles. Byte for byte the
        // controller's factory map.
        let map = pool().map();
        #[rustfmt::skip]
        let factory: [u8; 78] = [
            1, 0, 5,
            2, 1, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 1, 0,
            2, 1, 1, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 2, 0,
            2, 1, 2, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 3, 0xFE,
            2, 1, 3, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 3, 0xFE,
            2, 1, 4, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0,
        ];
        assert_eq!(map, factory);
        assert_eq!(pool().roles, Some(Roles::POOL));
    }
}
