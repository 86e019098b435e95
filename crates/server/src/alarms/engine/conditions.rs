//! A rule's condition on one telemetry record (with hysteresis), and when an open alarm
//! escalates: the engine's arithmetic, apart from its state machine.

use super::RuleState;
use crate::alarms::rules::{Condition, HEATER_BIT, PUMP_BIT};
use crate::storage::{TelemetryRow, WideRow};
use tek_proto::message::telemetry::channel;

/// When the open alarm escalates next, if it does.
pub(super) fn escalation_at(st: &RuleState) -> Option<i64> {
    let spec = &st.rule.spec;
    let open = st.open?;
    if open.acked || spec.escalate_after_s == 0 || open.level as usize + 1 >= spec.lists.len() {
        return None;
    }
    Some(open.raised_at + i64::from(spec.escalate_after_s) * (i64::from(open.level) + 1))
}

/// Evaluates a telemetry condition on one record.
pub(super) fn eval_row(st: &mut RuleState, row: &TelemetryRow) -> Option<bool> {
    let relays = || row.get(channel::RELAYS);
    match st.rule.spec.condition {
        Condition::Above {
            channel,
            limit,
            restore,
        } => {
            let v = row.get(channel.number())?;
            st.last_seen = channel.show(v);
            hysteresis(v > limit, v <= restore)
        }
        Condition::Below {
            channel,
            limit,
            restore,
        } => {
            let v = row.get(channel.number())?;
            st.last_seen = channel.show(v);
            hysteresis(v < limit, v >= restore)
        }
        Condition::Outside {
            channel,
            min,
            max,
            deadband,
        } => {
            let v = row.get(channel.number())?;
            st.last_seen = channel.show(v);
            hysteresis(
                v < min || v > max,
                v >= min.saturating_add(deadband) && v <= max.saturating_sub(deadband),
            )
        }
        Condition::HeaterNoRise {
            window_s,
            min_rise_cc,
        } => {
            let (r, temp) = (relays()?, row.get(channel::WATER_TEMP_CC)?);
            if r & HEATER_BIT == 0 {
                st.memo.window = None;
                return Some(false);
            }
            match st.memo.window {
                None => {
                    st.memo.window = Some((row.time, temp));
                    None
                }
                Some((t0, temp0)) if row.time - t0 >= i64::from(window_s) => {
                    let rise = temp.saturating_sub(temp0);
                    st.last_seen = format!(
                        "rose {} in {} min",
                        crate::alarms::rules::show_cc(rise),
                        (row.time - t0) / 60
                    );
                    st.memo.window = Some((row.time, temp));
                    Some(rise < min_rise_cc)
                }
                Some(_) => None,
            }
        }
        Condition::PumpPower {
            min_on_w,
            max_off_w,
        } => {
            let (r, p) = (relays()?, row.get(channel::POWER_W)?);
            let on = r & PUMP_BIT != 0;
            st.last_seen = format!("pump {}, {p} W", if on { "on" } else { "off" });
            Some(if on { p < min_on_w } else { p > max_off_w })
        }
        Condition::FreezeRisk {
            air_below_cc,
            deadband_cc,
        } => {
            let (r, air) = (relays()?, row.get(channel::AIR_TEMP_CC)?);
            st.last_seen = format!("air {}", crate::alarms::rules::show_cc(air));
            if r & PUMP_BIT != 0 {
                return Some(false);
            }
            hysteresis(
                air < air_below_cc,
                air >= air_below_cc.saturating_add(deadband_cc),
            )
        }
        _ => None,
    }
}

/// Evaluates a condition on a device's own channels on one wide record.
pub(super) fn eval_wide(st: &mut RuleState, row: &WideRow) -> Option<bool> {
    match st.rule.spec.condition {
        Condition::ChannelAbove {
            index,
            limit,
            restore,
        } => {
            let v = row.values.get(usize::from(index))?;
            st.last_seen = format!("channel #{index} at {v}");
            hysteresis(v > limit, v <= restore)
        }
        Condition::ChannelBelow {
            index,
            limit,
            restore,
        } => {
            let v = row.values.get(usize::from(index))?;
            st.last_seen = format!("channel #{index} at {v}");
            hysteresis(v < limit, v >= restore)
        }
        _ => None,
    }
}

fn hysteresis(raise: bool, restore: bool) -> Option<bool> {
    if raise {
        Some(true)
    } else if restore {
        Some(false)
    } else {
        None
    }
}
