//! The Modbus side of a channel map: a serial bus's settings and one register read of a
//! channel's source, with how the registers become a raw value.

/// Serial speed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Baud {
    /// 9600 bit/s (code 0).
    B9600,
    /// 19200 bit/s (code 1).
    B19200,
    /// 38400 bit/s (code 2).
    B38400,
    /// Another code.
    Unknown(u8),
}

impl Baud {
    /// From the wire code.
    pub fn from_code(c: u8) -> Baud {
        match c {
            0 => Baud::B9600,
            1 => Baud::B19200,
            2 => Baud::B38400,
            n => Baud::Unknown(n),
        }
    }
    /// The wire code.
    pub fn code(self) -> u8 {
        match self {
            Baud::B9600 => 0,
            Baud::B19200 => 1,
            Baud::B38400 => 2,
            Baud::Unknown(n) => n,
        }
    }
    /// Bits per second (`None` for an unknown code).
    pub fn bits_per_s(self) -> Option<u32> {
        match self {
            Baud::B9600 => Some(9600),
            Baud::B19200 => Some(19200),
            Baud::B38400 => Some(38400),
            Baud::Unknown(_) => None,
        }
    }
}

/// Serial parity (8 data bits; 1 stop bit with parity, 2 without, as Modbus RTU requires).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parity {
    /// No parity (code 0).
    None,
    /// Even parity (code 1).
    Even,
    /// Odd parity (code 2).
    Odd,
    /// Another code.
    Unknown(u8),
}

impl Parity {
    /// From the wire code.
    pub fn from_code(c: u8) -> Parity {
        match c {
            0 => Parity::None,
            1 => Parity::Even,
            2 => Parity::Odd,
            n => Parity::Unknown(n),
        }
    }
    /// The wire code.
    pub fn code(self) -> u8 {
        match self {
            Parity::None => 0,
            Parity::Even => 1,
            Parity::Odd => 2,
            Parity::Unknown(n) => n,
        }
    }
}

/// A serial bus the Modbus sources poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bus {
    /// Speed.
    pub baud: Baud,
    /// Parity.
    pub parity: Parity,
    /// How long to wait for a slave's answer, ms (50..=2000).
    pub timeout_ms: u16,
}

/// Modbus read function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    /// 3, read holding registers.
    Holding,
    /// 4, read input registers.
    Input,
    /// Another code.
    Unknown(u8),
}

impl Function {
    /// From the wire code (the Modbus function code).
    pub fn from_code(c: u8) -> Function {
        match c {
            3 => Function::Holding,
            4 => Function::Input,
            n => Function::Unknown(n),
        }
    }
    /// The wire code.
    pub fn code(self) -> u8 {
        match self {
            Function::Holding => 3,
            Function::Input => 4,
            Function::Unknown(n) => n,
        }
    }
}

/// How the register(s) are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataType {
    /// One register, unsigned (code 0).
    U16,
    /// One register, two's complement (code 1).
    I16,
    /// Two registers, unsigned (code 2).
    U32,
    /// Two registers, two's complement (code 3).
    I32,
    /// Two registers, IEEE 754 single (code 4).
    F32,
    /// Another code.
    Unknown(u8),
}

impl DataType {
    /// From the wire code.
    pub fn from_code(c: u8) -> DataType {
        match c {
            0 => DataType::U16,
            1 => DataType::I16,
            2 => DataType::U32,
            3 => DataType::I32,
            4 => DataType::F32,
            n => DataType::Unknown(n),
        }
    }
    /// The wire code.
    pub fn code(self) -> u8 {
        match self {
            DataType::U16 => 0,
            DataType::I16 => 1,
            DataType::U32 => 2,
            DataType::I32 => 3,
            DataType::F32 => 4,
            DataType::Unknown(n) => n,
        }
    }
    /// Registers read (0 for an unknown type).
    pub fn registers(self) -> u16 {
        match self {
            DataType::U16 | DataType::I16 => 1,
            DataType::U32 | DataType::I32 | DataType::F32 => 2,
            DataType::Unknown(_) => 0,
        }
    }
}

/// Order of the two registers of a 32-bit value (bytes within a register are always big-endian).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WordOrder {
    /// The first register holds the high 16 bits (code 0; the only one for 16-bit types).
    HighFirst,
    /// The first register holds the low 16 bits (code 1).
    LowFirst,
    /// Another code.
    Unknown(u8),
}

impl WordOrder {
    /// From the wire code.
    pub fn from_code(c: u8) -> WordOrder {
        match c {
            0 => WordOrder::HighFirst,
            1 => WordOrder::LowFirst,
            n => WordOrder::Unknown(n),
        }
    }
    /// The wire code.
    pub fn code(self) -> u8 {
        match self {
            WordOrder::HighFirst => 0,
            WordOrder::LowFirst => 1,
            WordOrder::Unknown(n) => n,
        }
    }
}

/// A raw reading before conversion.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Raw {
    /// An integer.
    Int(i64),
    /// A float (Modbus f32).
    Float(f32),
}

/// A Modbus RTU register read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModbusRead {
    /// Index of the bus in the map.
    pub bus: u8,
    /// Slave address, 1..=247.
    pub slave: u8,
    /// Read function.
    pub function: Function,
    /// First register address (as sent in the request, 0-based).
    pub register: u16,
    /// Data type.
    pub data_type: DataType,
    /// Word order of 32-bit types.
    pub word_order: WordOrder,
}

impl ModbusRead {
    /// Interprets the registers a slave returned (`None` if too few, or a non-finite float).
    pub fn decode(&self, regs: &[u16]) -> Option<Raw> {
        let (a, b) = match (regs.first(), regs.get(1)) {
            (Some(&a), b) => (a, b.copied()),
            _ => return None,
        };
        let pair = || {
            let b = b?;
            Some(match self.word_order {
                WordOrder::HighFirst => u32::from(a) << 16 | u32::from(b),
                WordOrder::LowFirst => u32::from(b) << 16 | u32::from(a),
                WordOrder::Unknown(_) => return None,
            })
        };
        Some(match self.data_type {
            DataType::U16 => Raw::Int(i64::from(a)),
            DataType::I16 => Raw::Int(i64::from(a as i16)),
            DataType::U32 => Raw::Int(i64::from(pair()?)),
            DataType::I32 => Raw::Int(i64::from(pair()? as i32)),
            DataType::F32 => {
                let f = f32::from_bits(pair()?);
                if !f.is_finite() {
                    return None;
                }
                Raw::Float(f)
            }
            DataType::Unknown(_) => return None,
        })
    }
}
