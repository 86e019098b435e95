//! Device status (message type 0x02, device -> server, 55-byte body).
//!
//! ```text
//! 0   transport       u8   0 = Ethernet, 1 = GSM
//! 1   flags           u8   bit 0 DHCP in use, bit 1 HALT held at power-up,
//!                          bit 2 a network change was rolled back since boot,
//!                          bit 3 clock synchronised; other bits 0
//! 2   ip              4    address in use (0.0.0.0 while unknown)
//! 6   netmask         4
//! 10  gateway         4
//! 14  dns             4
//! 18  uptime          u32  seconds since power-up
//! 22  firmware        3    major, minor, patch
//! 25  config version  u32  the configuration the device runs
//! 29  log drops       u32  records dropped because the log buffer was full, since boot
//! 33  log backlog     u16  records waiting to be acknowledged
//! 35  eth tx bytes    u32  IP bytes sent over Ethernet since boot (wrapping)
//! 39  eth rx bytes    u32
//! 43  gsm tx bytes    u32
//! 47  gsm rx bytes    u32
//! 51  gsm signal      u8   0..=31 (27.007 CSQ), 99 unknown
//! 52  radio           u8   0 off, 1 searching, 2 registered, 3 data connection, 4 no SIM
//! 53  relays          u8   relay bitmap (bit 0 pump, bit 1 heater)
//! 54  server index    u8   position in the server list of the server in use (0..=7)
//! ```

use super::MessageError;

/// Length of the status body.
pub const LEN: usize = 55;

/// Flag bits.
pub mod flag {
    /// The Ethernet settings in use came from DHCP.
    pub const DHCP: u8 = 1;
    /// The HALT jumper was held at power-up (fixed IP ignored).
    pub const HALT: u8 = 2;
    /// A network change was rolled back since boot.
    pub const ROLLED_BACK: u8 = 4;
    /// The device clock has been set from a server.
    pub const TIME_SYNCED: u8 = 8;
    /// All defined bits.
    pub const ALL: u8 = 0x0F;
}

/// Which path the device uses to reach the servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// The wired port.
    Ethernet,
    /// The GSM/3G modem.
    Gsm,
}

/// The modem's state, as the Radio LED shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Radio {
    /// Modem off or absent.
    Off,
    /// Searching for a network.
    Searching,
    /// Registered, no data connection.
    Registered,
    /// Data connection up.
    Data,
    /// No SIM card.
    NoSim,
}

impl Radio {
    fn from_u8(v: u8) -> Option<Radio> {
        Some(match v {
            0 => Radio::Off,
            1 => Radio::Searching,
            2 => Radio::Registered,
            3 => Radio::Data,
            4 => Radio::NoSim,
            _ => return None,
        })
    }
}

/// Bytes sent and received on each transport since boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Traffic {
    /// Ethernet bytes sent.
    pub eth_tx: u32,
    /// Ethernet bytes received.
    pub eth_rx: u32,
    /// GSM bytes sent.
    pub gsm_tx: u32,
    /// GSM bytes received.
    pub gsm_rx: u32,
}

/// A device's status report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    /// Transport in use.
    pub transport: Transport,
    /// [`flag`] bits.
    pub flags: u8,
    /// Address in use.
    pub ip: [u8; 4],
    /// Netmask in use.
    pub netmask: [u8; 4],
    /// Gateway in use.
    pub gateway: [u8; 4],
    /// DNS server in use.
    pub dns: [u8; 4],
    /// Seconds since power-up.
    pub uptime_s: u32,
    /// Firmware version.
    pub firmware: [u8; 3],
    /// Configuration version running.
    pub config_version: u32,
    /// Records dropped from a full log buffer since boot.
    pub log_drops: u32,
    /// Records waiting for acknowledgement.
    pub log_backlog: u16,
    /// Traffic counters.
    pub traffic: Traffic,
    /// GSM signal quality (0..=31, 99 unknown).
    pub gsm_signal: u8,
    /// Modem state.
    pub radio: Radio,
    /// Relay bitmap.
    pub relays: u8,
    /// Index of the server in use in the server list.
    pub server_index: u8,
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn ip_at(b: &[u8], at: usize) -> [u8; 4] {
    [b[at], b[at + 1], b[at + 2], b[at + 3]]
}

impl Status {
    /// Decodes a status body.
    pub fn parse(b: &[u8]) -> Result<Status, MessageError> {
        match b.len() {
            n if n < LEN => return Err(MessageError::Truncated),
            n if n > LEN => return Err(MessageError::Trailing),
            _ => {}
        }
        let transport = match b[0] {
            0 => Transport::Ethernet,
            1 => Transport::Gsm,
            _ => return Err(MessageError::Range),
        };
        if b[1] & !flag::ALL != 0 {
            return Err(MessageError::Range);
        }
        let gsm_signal = b[51];
        if gsm_signal > 31 && gsm_signal != 99 {
            return Err(MessageError::Range);
        }
        let radio = Radio::from_u8(b[52]).ok_or(MessageError::Range)?;
        if usize::from(b[54]) >= super::config::MAX_SERVERS {
            return Err(MessageError::Range);
        }
        Ok(Status {
            transport,
            flags: b[1],
            ip: ip_at(b, 2),
            netmask: ip_at(b, 6),
            gateway: ip_at(b, 10),
            dns: ip_at(b, 14),
            uptime_s: u32_at(b, 18),
            firmware: [b[22], b[23], b[24]],
            config_version: u32_at(b, 25),
            log_drops: u32_at(b, 29),
            log_backlog: u16::from_be_bytes([b[33], b[34]]),
            traffic: Traffic {
                eth_tx: u32_at(b, 35),
                eth_rx: u32_at(b, 39),
                gsm_tx: u32_at(b, 43),
                gsm_rx: u32_at(b, 47),
            },
            gsm_signal,
            radio,
            relays: b[53],
            server_index: b[54],
        })
    }

    /// Writes the body into `b[..55]`; `None` if `b` is shorter.
    pub fn emit(&self, b: &mut [u8]) -> Option<usize> {
        let b = b.get_mut(..LEN)?;
        b[0] = match self.transport {
            Transport::Ethernet => 0,
            Transport::Gsm => 1,
        };
        b[1] = self.flags;
        b[2..6].copy_from_slice(&self.ip);
        b[6..10].copy_from_slice(&self.netmask);
        b[10..14].copy_from_slice(&self.gateway);
        b[14..18].copy_from_slice(&self.dns);
        b[18..22].copy_from_slice(&self.uptime_s.to_be_bytes());
        b[22..25].copy_from_slice(&self.firmware);
        b[25..29].copy_from_slice(&self.config_version.to_be_bytes());
        b[29..33].copy_from_slice(&self.log_drops.to_be_bytes());
        b[33..35].copy_from_slice(&self.log_backlog.to_be_bytes());
        b[35..39].copy_from_slice(&self.traffic.eth_tx.to_be_bytes());
        b[39..43].copy_from_slice(&self.traffic.eth_rx.to_be_bytes());
        b[43..47].copy_from_slice(&self.traffic.gsm_tx.to_be_bytes());
        b[47..51].copy_from_slice(&self.traffic.gsm_rx.to_be_bytes());
        b[51] = self.gsm_signal;
        b[52] = match self.radio {
            Radio::Off => 0,
            Radio::Searching => 1,
            Radio::Registered => 2,
            Radio::Data => 3,
            Radio::NoSim => 4,
        };
        b[53] = self.relays;
        b[54] = self.server_index;
        Some(LEN)
    }
}
