//! Alarm rules as users write them: a condition on a telemetry channel or on the device's state,
//! its restore condition (hysteresis), hold-off times for raising and for clearing, a severity,
//! and the destination lists to notify (in escalation order). The JSON form here is the API's
//! and the database's (one `condition` column holds it), so both backends store the same thing.

use serde::{Deserialize, Serialize};
use tek_proto::message::telemetry::channel;

/// Most rules one device may have.
pub const MAX_RULES_PER_DEVICE: usize = 200;
/// Longest hold-off, escalation delay or state duration a rule may name: 7 days.
pub const MAX_DELAY_S: u32 = 7 * 86_400;
/// Most destination lists in one rule's escalation chain.
pub const MAX_LISTS: usize = 8;

/// How bad an alarm is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Worth a look.
    Info,
    /// Needs attention soon.
    Warning,
    /// Needs attention now.
    Critical,
}

impl Severity {
    /// The name used in the API, the database and notifications.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }

    /// Parses [`Severity::as_str`].
    pub fn parse(s: &str) -> Option<Severity> {
        match s {
            "info" => Some(Severity::Info),
            "warning" => Some(Severity::Warning),
            "critical" => Some(Severity::Critical),
            _ => None,
        }
    }
}

/// A telemetry channel, by name (`tek_proto::message::telemetry::channel`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// Electric power, W.
    PowerW,
    /// Energy meter, Wh.
    EnergyWh,
    /// Water temperature, 1/100 °C.
    WaterTempCc,
    /// Air temperature, 1/100 °C.
    AirTempCc,
    /// Relay bits (bit 0 pump, bit 1 heater).
    Relays,
}

impl Channel {
    /// The channel number on the wire.
    pub fn number(self) -> u8 {
        match self {
            Channel::PowerW => channel::POWER_W,
            Channel::EnergyWh => channel::ENERGY_WH,
            Channel::WaterTempCc => channel::WATER_TEMP_CC,
            Channel::AirTempCc => channel::AIR_TEMP_CC,
            Channel::Relays => channel::RELAYS,
        }
    }

    /// A value of this channel for people (°C with two decimals, W, Wh).
    pub fn show(self, v: i32) -> String {
        match self {
            Channel::PowerW => format!("{v} W"),
            Channel::EnergyWh => format!("{v} Wh"),
            Channel::WaterTempCc | Channel::AirTempCc => show_cc(v),
            Channel::Relays => format!("relays {v:#04b}"),
        }
    }

    /// The name people read.
    pub fn label(self) -> &'static str {
        match self {
            Channel::PowerW => "power",
            Channel::EnergyWh => "energy meter",
            Channel::WaterTempCc => "water temperature",
            Channel::AirTempCc => "air temperature",
            Channel::Relays => "relays",
        }
    }
}

/// Hundredths of a degree as `12.34 °C`.
pub fn show_cc(v: i32) -> String {
    let sign = if v < 0 { "-" } else { "" };
    let a = v.unsigned_abs();
    format!("{sign}{}.{:02} °C", a / 100, a % 100)
}

/// Relay bit of the pump in the `relays` channel.
pub const PUMP_BIT: i32 = 1;
/// Relay bit of the heater in the `relays` channel.
pub const HEATER_BIT: i32 = 2;

/// What makes a rule's alarm active, and what restores it. Values between the raise and the
/// restore threshold change nothing (hysteresis), so a value hovering at a limit does not
/// raise and clear over and over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Condition {
    /// Active while `channel > limit`; restored once `channel <= restore` (`restore <= limit`).
    Above {
        /// Channel.
        channel: Channel,
        /// Raise above this.
        limit: i32,
        /// Restore at or below this.
        restore: i32,
    },
    /// Active while `channel < limit`; restored once `channel >= restore` (`restore >= limit`).
    Below {
        /// Channel.
        channel: Channel,
        /// Raise below this.
        limit: i32,
        /// Restore at or above this.
        restore: i32,
    },
    /// Active while the value is outside `[min, max]`; restored once it is back inside by
    /// `deadband` (template: water temperature outside min/max).
    Outside {
        /// Channel.
        channel: Channel,
        /// Lowest good value.
        min: i32,
        /// Highest good value.
        max: i32,
        /// Margin inside the range needed to restore.
        deadband: i32,
    },
    /// No authenticated datagram from the device for `after_s` seconds; restored at contact.
    Offline {
        /// Seconds without contact.
        after_s: u32,
    },
    /// A saved configuration not confirmed by the device for `after_s` seconds; restored when
    /// the device confirms it.
    ConfigPending {
        /// Seconds pending.
        after_s: u32,
    },
    /// The device's log dropped records (its `log_drops` counter grew) since its previous
    /// status report; restored by a report without new drops.
    LogDrops,
    /// The device reports running over GSM; restored when it reports Ethernet again.
    OnGsm,
    /// Template: heater on and the water temperature rose less than `min_rise_cc` over
    /// `window_s` seconds of heating; restored by a window with enough rise or the heater off.
    HeaterNoRise {
        /// Length of a heating window, seconds.
        window_s: u32,
        /// Least rise expected over a window, 1/100 °C.
        min_rise_cc: i32,
    },
    /// Template: pump on with power below `min_on_w`, or pump off with power above
    /// `max_off_w`; restored when power and pump agree again.
    PumpPower {
        /// Least power of a running pump, W.
        min_on_w: i32,
        /// Most power with the pump off, W.
        max_off_w: i32,
    },
    /// Active while channel `index` of the device's own channel map (its wide telemetry, issue
    /// 18) logs above `limit`; restored once it logs at or below `restore` (`restore <= limit`).
    /// Values are the logged integers (the value × 10^-exponent of the channel's unit, as the
    /// pool conditions use 1/100 °C). A record without a value for the channel changes nothing.
    ChannelAbove {
        /// Channel index in the device's map, 0..=127.
        index: u8,
        /// Raise above this.
        limit: i32,
        /// Restore at or below this.
        restore: i32,
    },
    /// Active while channel `index` logs below `limit`; restored once it logs at or above
    /// `restore` (`restore >= limit`). As [`Condition::ChannelAbove`].
    ChannelBelow {
        /// Channel index in the device's map, 0..=127.
        index: u8,
        /// Raise below this.
        limit: i32,
        /// Restore at or above this.
        restore: i32,
    },
    /// Sensor fault: channel `index`'s failed-sample counter in the device's ChannelFaults
    /// reports (PROTOCOL.md 17.8) grew since the previous report (a smaller counter — a restart
    /// or a new map — counts whole); restored by a report in which it did not grow.
    SensorFault {
        /// Channel index in the device's map, 0..=127.
        index: u8,
    },
    /// Template: air temperature below `air_below_cc` while the pump is off (pipes may freeze);
    /// restored when the pump runs or the air is `deadband_cc` above the limit.
    FreezeRisk {
        /// Air temperature limit, 1/100 °C.
        air_below_cc: i32,
        /// Margin above the limit needed to restore, 1/100 °C.
        deadband_cc: i32,
    },
}

impl Condition {
    /// Whether the condition is evaluated on telemetry records.
    pub fn on_telemetry(&self) -> bool {
        matches!(
            self,
            Condition::Above { .. }
                | Condition::Below { .. }
                | Condition::Outside { .. }
                | Condition::HeaterNoRise { .. }
                | Condition::PumpPower { .. }
                | Condition::FreezeRisk { .. }
        )
    }

    /// Whether the condition is evaluated on wide telemetry records (a device's own channels).
    pub fn on_wide(&self) -> bool {
        matches!(
            self,
            Condition::ChannelAbove { .. } | Condition::ChannelBelow { .. }
        )
    }

    /// A short description for lists and notifications.
    pub fn describe(&self) -> String {
        match self {
            Condition::Above {
                channel,
                limit,
                restore,
            } => format!(
                "{} above {} (restore at {})",
                channel.label(),
                channel.show(*limit),
                channel.show(*restore)
            ),
            Condition::Below {
                channel,
                limit,
                restore,
            } => format!(
                "{} below {} (restore at {})",
                channel.label(),
                channel.show(*limit),
                channel.show(*restore)
            ),
            Condition::Outside {
                channel, min, max, ..
            } => format!(
                "{} outside {} .. {}",
                channel.label(),
                channel.show(*min),
                channel.show(*max)
            ),
            Condition::ChannelAbove {
                index,
                limit,
                restore,
            } => format!("channel #{index} above {limit} (restore at {restore})"),
            Condition::ChannelBelow {
                index,
                limit,
                restore,
            } => format!("channel #{index} below {limit} (restore at {restore})"),
            Condition::SensorFault { index } => format!("sensor fault on channel #{index}"),
            Condition::Offline { after_s } => format!("offline for more than {after_s} s"),
            Condition::ConfigPending { after_s } => {
                format!("configuration pending for more than {after_s} s")
            }
            Condition::LogDrops => "log dropped records".into(),
            Condition::OnGsm => "running on GSM".into(),
            Condition::HeaterNoRise {
                window_s,
                min_rise_cc,
            } => format!(
                "heater on, water rose less than {} in {} min",
                show_cc(*min_rise_cc),
                window_s / 60
            ),
            Condition::PumpPower {
                min_on_w,
                max_off_w,
            } => format!("pump on below {min_on_w} W, or off above {max_off_w} W"),
            Condition::FreezeRisk { air_below_cc, .. } => {
                format!(
                    "freeze risk: air below {} with the pump off",
                    show_cc(*air_below_cc)
                )
            }
        }
    }

    fn validate(&self) -> Result<(), String> {
        let delay = |s: u32, what: &str| {
            if s == 0 || s > MAX_DELAY_S {
                Err(format!("{what}: 1 to {MAX_DELAY_S} seconds"))
            } else {
                Ok(())
            }
        };
        let channel = |index: u8| {
            if usize::from(index) >= tek_proto::channel::wide::MAX_CHANNELS {
                Err(format!(
                    "index: a channel number 0 to {}",
                    tek_proto::channel::wide::MAX_CHANNELS - 1
                ))
            } else {
                Ok(())
            }
        };
        match *self {
            Condition::ChannelAbove {
                index,
                limit,
                restore,
            } => {
                channel(index)?;
                if restore > limit {
                    return Err("channel_above: restore must be at or below the limit".into());
                }
                Ok(())
            }
            Condition::ChannelBelow {
                index,
                limit,
                restore,
            } => {
                channel(index)?;
                if restore < limit {
                    return Err("channel_below: restore must be at or above the limit".into());
                }
                Ok(())
            }
            Condition::SensorFault { index } => channel(index),
            Condition::Above { limit, restore, .. } if restore > limit => {
                Err("above: restore must be at or below the limit".into())
            }
            Condition::Below { limit, restore, .. } if restore < limit => {
                Err("below: restore must be at or above the limit".into())
            }
            Condition::Outside {
                min, max, deadband, ..
            } => {
                if min >= max {
                    Err("outside: min must be below max".into())
                } else if deadband < 0 || i64::from(deadband) * 2 > i64::from(max) - i64::from(min)
                {
                    Err("outside: deadband must be 0 to half the range".into())
                } else {
                    Ok(())
                }
            }
            Condition::Offline { after_s } => delay(after_s, "offline after_s"),
            Condition::ConfigPending { after_s } => delay(after_s, "config_pending after_s"),
            Condition::HeaterNoRise {
                window_s,
                min_rise_cc,
            } => {
                delay(window_s, "heater_no_rise window_s")?;
                if min_rise_cc <= 0 {
                    return Err("heater_no_rise: min_rise_cc must be positive".into());
                }
                Ok(())
            }
            Condition::PumpPower {
                min_on_w,
                max_off_w,
            } if min_on_w < 0 || max_off_w < 0 => {
                Err("pump_power: powers must not be negative".into())
            }
            Condition::FreezeRisk { deadband_cc, .. } if deadband_cc < 0 => {
                Err("freeze_risk: deadband_cc must not be negative".into())
            }
            _ => Ok(()),
        }
    }
}

/// A rule as users write it (API body, and what is stored).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// A name for people (1..=100 characters).
    pub name: String,
    /// Severity of its alarms.
    pub severity: Severity,
    /// Condition and restore condition.
    pub condition: Condition,
    /// The condition must hold this long before the alarm is raised (0: at once).
    #[serde(default)]
    pub raise_after_s: u32,
    /// The restore condition must hold this long before the alarm clears (0: at once).
    #[serde(default)]
    pub clear_after_s: u32,
    /// Destination lists in escalation order: the first when raised, the next after each
    /// `escalate_after_s` without an acknowledgement.
    #[serde(default)]
    pub lists: Vec<i64>,
    /// Delay of each escalation step, seconds (0: never escalate).
    #[serde(default)]
    pub escalate_after_s: u32,
    /// A disabled rule raises nothing.
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn yes() -> bool {
    true
}

impl RuleSpec {
    /// Checks everything a user can get wrong; the message says what to fix.
    pub fn validate(&self) -> Result<(), String> {
        let n = self.name.trim().chars().count();
        if n == 0 || n > 100 || self.name.chars().any(char::is_control) {
            return Err("name: 1 to 100 printable characters".into());
        }
        for (v, what) in [
            (self.raise_after_s, "raise_after_s"),
            (self.clear_after_s, "clear_after_s"),
            (self.escalate_after_s, "escalate_after_s"),
        ] {
            if v > MAX_DELAY_S {
                return Err(format!("{what}: at most {MAX_DELAY_S} seconds"));
            }
        }
        if self.lists.len() > MAX_LISTS {
            return Err(format!("lists: at most {MAX_LISTS}"));
        }
        let mut seen = self.lists.clone();
        seen.sort_unstable();
        seen.dedup();
        if seen.len() != self.lists.len() {
            return Err("lists: each list at most once".into());
        }
        self.condition.validate()
    }
}

/// A stored rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Id.
    pub id: i64,
    /// Device.
    pub device_id: u32,
    /// What the user wrote.
    pub spec: RuleSpec,
    /// Shelved (no alarms, no notifications) until this Unix time.
    pub shelved_until: Option<i64>,
    /// Created, Unix seconds.
    pub created_at: i64,
}

impl Rule {
    /// Whether the rule is shelved at `now`.
    pub fn shelved(&self, now: i64) -> bool {
        self.shelved_until.is_some_and(|u| u > now)
    }
}

/// Ready-made pool rules: `(template name, what it checks, a rule with sensible defaults)`.
pub fn templates() -> Vec<(&'static str, &'static str, RuleSpec)> {
    let spec = |name: &str, severity, condition, raise_after_s, clear_after_s| RuleSpec {
        name: name.to_owned(),
        severity,
        condition,
        raise_after_s,
        clear_after_s,
        lists: Vec::new(),
        escalate_after_s: 0,
        enabled: true,
    };
    vec![
        (
            "heater_no_rise",
            "Heater on with no water-temperature rise in 30 minutes",
            spec(
                "Heater on, water not warming",
                Severity::Warning,
                Condition::HeaterNoRise {
                    window_s: 1800,
                    min_rise_cc: 10,
                },
                0,
                0,
            ),
        ),
        (
            "pump_power",
            "Pump on with no power draw, or power with the pump off",
            spec(
                "Pump and power disagree",
                Severity::Critical,
                Condition::PumpPower {
                    min_on_w: 100,
                    max_off_w: 300,
                },
                120,
                60,
            ),
        ),
        (
            "water_range",
            "Water temperature outside 24 .. 32 °C",
            spec(
                "Water temperature out of range",
                Severity::Warning,
                Condition::Outside {
                    channel: Channel::WaterTempCc,
                    min: 2400,
                    max: 3200,
                    deadband: 50,
                },
                300,
                300,
            ),
        ),
        (
            "freeze_risk",
            "Air below 3 °C while the pump is off",
            spec(
                "Freeze risk",
                Severity::Critical,
                Condition::FreezeRisk {
                    air_below_cc: 300,
                    deadband_cc: 100,
                },
                60,
                300,
            ),
        ),
        (
            "offline",
            "No contact for 10 minutes",
            spec(
                "Controller offline",
                Severity::Critical,
                Condition::Offline { after_s: 600 },
                0,
                0,
            ),
        ),
        (
            "config_pending",
            "Configuration not confirmed within 30 minutes",
            spec(
                "Configuration not applied",
                Severity::Warning,
                Condition::ConfigPending { after_s: 1800 },
                0,
                0,
            ),
        ),
        (
            "log_drops",
            "The controller's log dropped records",
            spec(
                "Log dropped records",
                Severity::Warning,
                Condition::LogDrops,
                0,
                3600,
            ),
        ),
        (
            "on_gsm",
            "Running on the GSM backup link",
            spec("On GSM backup", Severity::Info, Condition::OnGsm, 300, 0),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip_and_names() {
        let r = &templates()[2].2;
        let j = serde_json::to_string(r).unwrap();
        assert!(
            j.contains(r#""kind":"outside""#) && j.contains("water_temp_cc"),
            "{j}"
        );
        let back: RuleSpec = serde_json::from_str(&j).unwrap();
        assert_eq!(&back, r);
        let min: RuleSpec =
            serde_json::from_str(r#"{"name":"x","severity":"info","condition":{"kind":"on_gsm"}}"#)
                .unwrap();
        assert!(min.enabled && min.lists.is_empty() && min.raise_after_s == 0);
        assert!(serde_json::from_str::<RuleSpec>(
            r#"{"name":"x","severity":"info","condition":{"kind":"nope"}}"#
        )
        .is_err());
    }

    #[test]
    fn every_template_is_valid() {
        for (_, _, t) in templates() {
            t.validate().unwrap();
        }
    }

    #[test]
    fn validation_catches_mistakes() {
        let mut r = templates()[2].2.clone();
        r.condition = Condition::Above {
            channel: Channel::PowerW,
            limit: 10,
            restore: 20,
        };
        assert!(r.validate().unwrap_err().contains("restore"));
        r.condition = Condition::Offline { after_s: 0 };
        assert!(r.validate().is_err());
        r.condition = Condition::OnGsm;
        r.lists = vec![1, 1];
        assert!(r.validate().is_err());
        r.lists = vec![1];
        r.name = " ".into();
        assert!(r.validate().is_err());
        r.name = "ok".into();
        r.raise_after_s = MAX_DELAY_S + 1;
        assert!(r.validate().is_err());
    }

    #[test]
    fn degrees() {
        assert_eq!(show_cc(2750), "27.50 °C");
        assert_eq!(show_cc(-5), "-0.05 °C");
    }
}
