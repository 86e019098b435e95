//! The emulated devices: one register table per model, as data.
//!
//! Each table was taken from the vendor's published Modbus register table (named above each
//! one); addresses are the 0-based addresses sent in a request (register 30001 = input
//! address 0). Only the registers listed answer; a read that touches any other register, or
//! that splits a 32-bit value, gets exception 2 (illegal data address), as the real devices
//! answer for reserved registers. A function a model has no register for gets exception 1.

use std::fmt;

/// Which register space a read addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Space {
    /// Function 3.
    Holding,
    /// Function 4.
    Input,
}

impl Space {
    /// The space a read function code addresses.
    pub fn of_function(code: u8) -> Option<Space> {
        match code {
            3 => Some(Space::Holding),
            4 => Some(Space::Input),
            _ => None,
        }
    }
}

/// How a value is put into registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// IEEE 754 single in two registers, high word first (Eastron).
    F32,
    /// Two's complement in one register, in tenths of the unit.
    I16Tenths,
    /// Unsigned in one register.
    U16,
}

impl Encoding {
    /// Registers taken.
    pub fn registers(self) -> u16 {
        match self {
            Encoding::F32 => 2,
            Encoding::I16Tenths | Encoding::U16 => 1,
        }
    }

    /// Whether `value` can be encoded exactly enough (the integer encodings refuse what does
    /// not fit; NaN goes out as a float NaN — "no value" at the reader — but never as an
    /// integer, which would read as a plausible number).
    pub fn check(self, value: f64) -> Result<(), String> {
        let fits = |v: f64, lo: f64, hi: f64| v.is_finite() && (lo..=hi).contains(&v.round());
        match self {
            Encoding::F32 => Ok(()),
            Encoding::I16Tenths if fits(value * 10.0, -32768.0, 32767.0) => Ok(()),
            Encoding::U16 if fits(value, 0.0, 65535.0) => Ok(()),
            Encoding::I16Tenths => Err(format!("{value} does not fit an i16 in tenths")),
            Encoding::U16 => Err(format!("{value} does not fit a u16")),
        }
    }

    /// The registers of `value` (a value that fails [`Encoding::check`] saturates: callers
    /// check first).
    pub fn encode(self, value: f64) -> [u16; 2] {
        match self {
            Encoding::F32 => {
                let bits = (value as f32).to_bits();
                [(bits >> 16) as u16, bits as u16]
            }
            Encoding::I16Tenths => [((value * 10.0).round() as i16) as u16, 0],
            Encoding::U16 => [value.round() as u16, 0],
        }
    }
}

/// Where a register's value comes from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Source {
    /// A measured or computed quantity, by name (see [`crate::values`]).
    Quantity(&'static str),
    /// A fixed setting.
    Constant(f64),
}

/// One row of a register table.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Register {
    /// Register space.
    pub space: Space,
    /// First register (0-based request address).
    pub address: u16,
    /// Encoding.
    pub encoding: Encoding,
    /// Value source.
    pub source: Source,
}

const fn input_f32(address: u16, quantity: &'static str) -> Register {
    Register {
        space: Space::Input,
        address,
        encoding: Encoding::F32,
        source: Source::Quantity(quantity),
    }
}

/// Eastron SDM630 Modbus V2, from "Eastron SDM630 Modbus Protocol" (input registers 3X, function
/// 04, IEEE 754 floats in two registers, high word first; holding registers 4X, function 03).
const SDM630: &[Register] = &[
    input_f32(0x0000, "voltage_l1"), // 30001 phase 1 line to neutral volts
    input_f32(0x0002, "voltage_l2"), // 30003
    input_f32(0x0004, "voltage_l3"), // 30005
    input_f32(0x0006, "current_l1"), // 30007 phase 1 current
    input_f32(0x0008, "current_l2"), // 30009
    input_f32(0x000A, "current_l3"), // 30011
    input_f32(0x000C, "power_l1"),   // 30013 phase 1 power, W
    input_f32(0x000E, "power_l2"),   // 30015
    input_f32(0x0010, "power_l3"),   // 30017
    input_f32(0x0034, "power"),      // 30053 total system power, W
    input_f32(0x0046, "frequency"),  // 30071 frequency of supply voltages, Hz
    input_f32(0x0048, "import_kwh"), // 30073 import active energy, kWh
    input_f32(0x004A, "export_kwh"), // 30075 export active energy, kWh
    input_f32(0x0156, "total_kwh"),  // 30343 total active energy, kWh
    Register {
        // 40003 demand period, minutes (default 60).
        space: Space::Holding,
        address: 0x0002,
        encoding: Encoding::F32,
        source: Source::Constant(60.0),
    },
    Register {
        // 40011 system type: 3 = three phase, four wire.
        space: Space::Holding,
        address: 0x000A,
        encoding: Encoding::F32,
        source: Source::Constant(3.0),
    },
];

/// Eastron SDM120-Modbus, from "Eastron SDM120 Modbus Protocol" (input registers, function 04,
/// IEEE 754 floats high word first). Its settings (holding registers) are not emulated: function
/// 03 gets exception 1.
const SDM120: &[Register] = &[
    input_f32(0x0000, "voltage"),    // 30001 voltage, V
    input_f32(0x0006, "current"),    // 30007 current, A
    input_f32(0x000C, "power"),      // 30013 active power, W
    input_f32(0x0046, "frequency"),  // 30071 frequency, Hz
    input_f32(0x0048, "import_kwh"), // 30073 import active energy, kWh
    input_f32(0x004A, "export_kwh"), // 30075 export active energy, kWh
    input_f32(0x0156, "total_kwh"),  // 30343 total active energy, kWh
];

/// ControlBox TB260 PT100 temperature sensor, from its "Modbus configuration" table (function
/// 03, big-endian registers), in its Int16 × 10 setting: 0.1 °C per count.
const TB260: &[Register] = &[
    Register {
        // Address 0: temperature, -200.0 ... 850.0 °C.
        space: Space::Holding,
        address: 0x0000,
        encoding: Encoding::I16Tenths,
        source: Source::Quantity("temperature"),
    },
    Register {
        // Address 4: state, 0 = normal (1 alert, 2 warning, 3 critical).
        space: Space::Holding,
        address: 0x0004,
        encoding: Encoding::U16,
        source: Source::Constant(0.0),
    },
];

/// A device model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Model {
    /// Eastron SDM630, three-phase energy meter.
    Sdm630,
    /// Eastron SDM120, single-phase energy meter.
    Sdm120,
    /// ControlBox TB260, PT100 temperature transmitter.
    Tb260,
}

/// Why a read gets an exception.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadError {
    /// Exception 1: the model has no register of this function.
    IllegalFunction,
    /// Exception 2: a register outside the table, or half of a 32-bit value.
    IllegalAddress,
}

impl Model {
    /// Every model, for help texts and parsing.
    pub const ALL: [Model; 3] = [Model::Sdm630, Model::Sdm120, Model::Tb260];

    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Model::Sdm630 => "sdm630",
            Model::Sdm120 => "sdm120",
            Model::Tb260 => "tb260",
        }
    }

    /// From the command-line name.
    pub fn parse(name: &str) -> Option<Model> {
        Model::ALL.into_iter().find(|m| m.name() == name)
    }

    /// The register table.
    pub fn registers(self) -> &'static [Register] {
        match self {
            Model::Sdm630 => SDM630,
            Model::Sdm120 => SDM120,
            Model::Tb260 => TB260,
        }
    }

    /// The quantities its registers show.
    pub fn quantities(self) -> impl Iterator<Item = &'static str> {
        self.registers().iter().filter_map(|r| match r.source {
            Source::Quantity(q) => Some(q),
            Source::Constant(_) => None,
        })
    }

    /// The register showing `quantity`.
    pub fn register_of(self, quantity: &str) -> Option<&'static Register> {
        self.registers()
            .iter()
            .find(|r| matches!(r.source, Source::Quantity(q) if q == quantity))
    }

    /// Fills `out` (`count` registers from `address` of `space`) using `value` for quantities.
    pub fn read(
        self,
        space: Space,
        address: u16,
        out: &mut [u16],
        mut value: impl FnMut(&'static str) -> f64,
    ) -> Result<(), ReadError> {
        let table = self.registers();
        if !table.iter().any(|r| r.space == space) {
            return Err(ReadError::IllegalFunction);
        }
        let mut i = 0;
        while i < out.len() {
            let at = u32::from(address) + i as u32;
            let reg = table
                .iter()
                .find(|r| r.space == space && u32::from(r.address) == at)
                .ok_or(ReadError::IllegalAddress)?;
            let n = usize::from(reg.encoding.registers());
            let slot = out.get_mut(i..i + n).ok_or(ReadError::IllegalAddress)?;
            let v = match reg.source {
                Source::Quantity(q) => value(q),
                Source::Constant(c) => c,
            };
            slot.copy_from_slice(&reg.encoding.encode(v)[..n]);
            i += n;
        }
        Ok(())
    }
}

impl fmt::Display for Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(m: Model, space: Space, address: u16, count: usize) -> Result<Vec<u16>, ReadError> {
        let mut out = vec![0u16; count];
        m.read(space, address, &mut out, |q| match q {
            "voltage_l1" => 230.5,
            "power" => -1500.0,
            "total_kwh" => 12345.5,
            "temperature" => -12.3,
            _ => 1.0,
        })?;
        Ok(out)
    }

    #[test]
    fn sdm630_floats_high_word_first() {
        // 230.5 = 0x43668000.
        assert_eq!(
            read(Model::Sdm630, Space::Input, 0, 2),
            Ok(vec![0x4366, 0x8000])
        );
        // -1500.0 = 0xC4BB8000 at 30053.
        assert_eq!(
            read(Model::Sdm630, Space::Input, 0x34, 2),
            Ok(vec![0xC4BB, 0x8000])
        );
        // 12345.5 = 0x4640E600 at 30343.
        assert_eq!(
            read(Model::Sdm630, Space::Input, 0x156, 2),
            Ok(vec![0x4640, 0xE600])
        );
        // A block of consecutive values: voltages L1..L3.
        assert_eq!(
            read(Model::Sdm630, Space::Input, 0, 6),
            Ok(vec![0x4366, 0x8000, 0x3F80, 0, 0x3F80, 0])
        );
        // Holding 40011, system type 3.0 = 0x40400000.
        assert_eq!(
            read(Model::Sdm630, Space::Holding, 0x0A, 2),
            Ok(vec![0x4040, 0])
        );
    }

    #[test]
    fn illegal_addresses_and_functions() {
        // Half a float, a reserved register, a read running into one.
        assert_eq!(
            read(Model::Sdm630, Space::Input, 1, 2),
            Err(ReadError::IllegalAddress)
        );
        assert_eq!(
            read(Model::Sdm630, Space::Input, 0, 1),
            Err(ReadError::IllegalAddress)
        );
        assert_eq!(
            read(Model::Sdm630, Space::Input, 0x12, 2),
            Err(ReadError::IllegalAddress)
        );
        assert_eq!(
            read(Model::Sdm630, Space::Input, 0x0C, 8),
            Err(ReadError::IllegalAddress)
        );
        assert_eq!(
            read(Model::Sdm630, Space::Input, 0xFFFF, 2),
            Err(ReadError::IllegalAddress)
        );
        assert_eq!(
            read(Model::Sdm120, Space::Holding, 0, 2),
            Err(ReadError::IllegalFunction)
        );
        assert_eq!(
            read(Model::Tb260, Space::Input, 0, 1),
            Err(ReadError::IllegalFunction)
        );
    }

    #[test]
    fn sdm120_and_tb260() {
        assert_eq!(
            read(Model::Sdm120, Space::Input, 0x0C, 2),
            Ok(vec![0xC4BB, 0x8000])
        );
        // -12.3 °C = -123 tenths = 0xFF85; state 0.
        assert_eq!(read(Model::Tb260, Space::Holding, 0, 1), Ok(vec![0xFF85]));
        assert_eq!(read(Model::Tb260, Space::Holding, 4, 1), Ok(vec![0]));
        assert_eq!(
            read(Model::Tb260, Space::Holding, 0, 2),
            Err(ReadError::IllegalAddress)
        );
    }

    #[test]
    fn integer_encodings_refuse_what_does_not_fit() {
        assert!(Encoding::I16Tenths.check(3276.7).is_ok());
        assert!(Encoding::I16Tenths.check(3276.8).is_err());
        assert!(Encoding::I16Tenths.check(f64::NAN).is_err());
        assert!(Encoding::U16.check(-1.0).is_err());
        assert!(Encoding::F32.check(f64::NAN).is_ok());
        assert_eq!(Encoding::I16Tenths.encode(21.7), [217, 0]);
    }

    #[test]
    fn names_round_trip() {
        for m in Model::ALL {
            assert_eq!(Model::parse(m.name()), Some(m));
            for q in m.quantities() {
                assert!(m.register_of(q).is_some());
            }
        }
        assert_eq!(Model::parse("sdm72"), None);
    }
}
