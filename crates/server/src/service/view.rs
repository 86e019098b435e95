//! What pages, the API and the event streams show of a device: one serializable view built from
//! the server's [`DeviceState`], the newest telemetry record and the newest configuration, so the
//! three never disagree. No key, no GSM password.

use crate::http::error::WebError;
use crate::http::Web;
use crate::inproc::DeviceState;
use crate::service::device_channels::{self, ChannelsNow};
use crate::service::states::ConfigStatus;
use crate::storage::{EstimatedBoot, TelemetryRow};
use serde::Serialize;
use tek_proto::message::status::{flag, Radio, Transport};
use tek_proto::message::telemetry::channel;

/// A device as shown.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DeviceView {
    /// Id.
    pub id: u32,
    /// Name.
    pub name: String,
    /// Site id, if assigned.
    pub site_id: Option<i64>,
    /// Heard from recently.
    pub online: bool,
    /// Unix seconds of the last contact.
    pub last_seen: Option<i64>,
    /// `ethernet` or `gsm` (from the latest status).
    pub transport: Option<&'static str>,
    /// Configuration state.
    pub config: ConfigView,
    /// Newest readings.
    pub readings: Option<Readings>,
    /// Facts from the latest status report.
    pub status: Option<StatusView>,
    /// Boots whose records were delivered later with estimated times (PROTOCOL.md 18.3), newest
    /// boot first, at most [`ESTIMATED_BOOTS_SHOWN`].
    pub estimated_boots: Vec<EstimatedBoot>,
    /// The device's own channels, for a device whose channel map is in effect (not the factory
    /// pool map: [`crate::service::device_channels`]); absent from the JSON otherwise, so a pool
    /// controller's view is what it always was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channels: Option<ChannelsNow>,
}

impl DeviceView {
    /// Power now, W: the pool reading, else the device's own power channel (its map's roles).
    pub fn power_w(&self) -> Option<f64> {
        let own = || self.channels.as_ref().and_then(|c| c.power_w);
        self.readings
            .as_ref()
            .and_then(|r| r.power_w)
            .map(f64::from)
            .or_else(own)
    }

    /// Water temperature now, °C, as [`DeviceView::power_w`].
    pub fn water_c(&self) -> Option<f64> {
        let own = || self.channels.as_ref().and_then(|c| c.water_c);
        self.readings.as_ref().and_then(|r| r.water_c).or_else(own)
    }

    /// Air temperature now, °C, as [`DeviceView::power_w`].
    pub fn air_c(&self) -> Option<f64> {
        let own = || self.channels.as_ref().and_then(|c| c.air_c);
        self.readings.as_ref().and_then(|r| r.air_c).or_else(own)
    }
}

/// How many boots with estimated times a view lists.
pub const ESTIMATED_BOOTS_SHOWN: usize = 10;

/// Configuration versions and what the UI shows for them.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ConfigView {
    /// Newest version saved (0: factory configuration).
    pub desired: u32,
    /// Newest version the device confirmed.
    pub applied: u32,
    /// A version the device rolled back, if any.
    pub rolled_back: Option<u32>,
    /// `factory`, `pending` (spinner), `synced` (green), `rolled_back` (error).
    pub state: ConfigStatus,
}

/// The newest telemetry record.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Readings {
    /// When it was logged (Unix seconds).
    pub time: i64,
    /// Electric power, W.
    pub power_w: Option<i32>,
    /// Energy meter, Wh.
    pub energy_wh: Option<i32>,
    /// Water temperature, °C.
    pub water_c: Option<f64>,
    /// Air temperature, °C.
    pub air_c: Option<f64>,
    /// Relay bits (bit 0 pump, bit 1 heater).
    pub relays: Option<i32>,
}

/// Facts from the latest status report.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StatusView {
    /// When it arrived.
    pub received_at: i64,
    /// The device's IPv4 address.
    pub ip: String,
    /// Whether the address came from DHCP.
    pub dhcp: bool,
    /// HALT input held at power-up.
    pub halt: bool,
    /// The device rolled back a network change.
    pub rolled_back: bool,
    /// Seconds since boot.
    pub uptime_s: u32,
    /// Firmware version.
    pub firmware: String,
    /// Configuration version it runs.
    pub config_version: u32,
    /// GSM signal (0..=31, 99 unknown).
    pub gsm_signal: u8,
    /// Modem state.
    pub radio: &'static str,
    /// Log records dropped because the buffer was full.
    pub log_drops: u32,
}

fn ip(a: [u8; 4]) -> String {
    std::net::Ipv4Addr::from(a).to_string()
}

/// The UI state of a device's configuration.
pub fn config_view(s: &DeviceState) -> ConfigView {
    let d = &s.device;
    let state = if d.config_rolled_back.is_some() && d.config_rolled_back == Some(d.config_desired)
    {
        ConfigStatus::RolledBack
    } else if s.config_pending() {
        ConfigStatus::Pending
    } else if d.config_desired == 0 {
        ConfigStatus::Factory
    } else {
        ConfigStatus::Synced
    };
    ConfigView {
        desired: d.config_desired,
        applied: d.config_applied,
        rolled_back: d.config_rolled_back,
        state,
    }
}

/// The readings of a record.
pub fn readings(r: &TelemetryRow) -> Readings {
    Readings {
        time: r.time,
        power_w: r.get(channel::POWER_W),
        energy_wh: r.get(channel::ENERGY_WH),
        water_c: r.get(channel::WATER_TEMP_CC).map(|v| f64::from(v) / 100.0),
        air_c: r.get(channel::AIR_TEMP_CC).map(|v| f64::from(v) / 100.0),
        relays: r.get(channel::RELAYS),
    }
}

/// Builds the view.
pub fn build(
    s: &DeviceState,
    site_id: Option<i64>,
    latest: Option<&TelemetryRow>,
    estimated_boots: Vec<EstimatedBoot>,
    channels: Option<ChannelsNow>,
) -> DeviceView {
    let status = s.status.as_ref().map(|r| {
        let st = &r.status;
        StatusView {
            received_at: r.received_at,
            ip: ip(st.ip),
            dhcp: st.flags & flag::DHCP != 0,
            halt: st.flags & flag::HALT != 0,
            rolled_back: st.flags & flag::ROLLED_BACK != 0,
            uptime_s: st.uptime_s,
            firmware: format!("{}.{}.{}", st.firmware[0], st.firmware[1], st.firmware[2]),
            config_version: st.config_version,
            gsm_signal: st.gsm_signal,
            radio: match st.radio {
                Radio::Off => "off",
                Radio::Searching => "searching",
                Radio::Registered => "registered",
                Radio::Data => "data",
                Radio::NoSim => "no SIM",
            },
            log_drops: st.log_drops,
        }
    });
    DeviceView {
        id: s.device.id,
        name: s.device.name.clone(),
        site_id,
        online: s.online,
        last_seen: s.last_seen,
        transport: s.status.as_ref().map(|r| match r.status.transport {
            Transport::Ethernet => "ethernet",
            Transport::Gsm => "gsm",
        }),
        config: config_view(s),
        readings: latest.map(readings),
        status,
        estimated_boots,
        channels,
    }
}

impl Web {
    /// Views of `states`, with their sites, newest readings, boots with estimated times and
    /// their own channels' values.
    pub async fn views(&self, states: Vec<DeviceState>) -> Result<Vec<DeviceView>, WebError> {
        let ids: Vec<(u32, u32)> = states
            .iter()
            .map(|s| (s.device.id, s.device.config_applied))
            .collect();
        let (latest, sites, boots, channels) = self
            .db_call(move |db| {
                // Every read in one call for the page: on PostgreSQL a per-device read cost a
                // round trip each, and the newest record also the planning of every partition; on
                // SQLite a pooled connection and a statement parsed again each (issue 21).
                let device_ids: Vec<u32> = ids.iter().map(|&(id, _)| id).collect();
                Ok((
                    db.latest_telemetry_of(&device_ids)?,
                    db.device_sites_of(&device_ids)?,
                    db.estimated_boots_of(&device_ids, ESTIMATED_BOOTS_SHOWN)?,
                    device_channels::load_now_of(db, &ids)?,
                ))
            })
            .await?;
        Ok(states
            .iter()
            .zip(latest)
            .zip(sites)
            .zip(boots)
            .zip(channels)
            .map(|((((s, latest), site), boots), channels)| {
                build(s, site, latest.as_ref(), boots, channels)
            })
            .collect())
    }

    /// The view of one device (already authorized).
    pub async fn view(&self, state: DeviceState) -> Result<DeviceView, WebError> {
        Ok(self.views(vec![state]).await?.remove(0))
    }
}
