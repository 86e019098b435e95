//! The latest status of each device and its IP traffic per transport per calendar month.

use super::{Error, Result};
use tek_proto::message::status::{Traffic, LEN};
use tek_proto::message::Status;

/// A device's latest status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusRecord {
    /// Device.
    pub device_id: u32,
    /// When it arrived.
    pub received_at: i64,
    /// The report.
    pub status: Status,
}

/// IP bytes of one device in one calendar month (UTC).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TrafficMonth {
    /// `YYYY-MM`.
    pub month: String,
    /// Ethernet bytes sent by the device.
    pub eth_tx: u64,
    /// Ethernet bytes received by the device.
    pub eth_rx: u64,
    /// GSM bytes sent.
    pub gsm_tx: u64,
    /// GSM bytes received.
    pub gsm_rx: u64,
}

/// Status operations.
pub trait StatusStore {
    /// Stores `status` as the device's latest and adds the traffic since the previous status to
    /// the month of `now`.
    fn store_status(&self, device_id: u32, status: &Status, now: i64) -> Result<()>;
    /// The latest status.
    fn latest_status(&self, device_id: u32) -> Result<Option<StatusRecord>>;
    /// The latest status of each of `device_ids`, in their order: a page of devices in one call.
    /// By default one read per device (SQLite: in process, no round trip to save); PostgreSQL
    /// answers it in one statement.
    fn latest_status_of(&self, device_ids: &[u32]) -> Result<Vec<Option<StatusRecord>>> {
        device_ids.iter().map(|&d| self.latest_status(d)).collect()
    }
    /// Traffic per month, newest first.
    fn traffic(&self, device_id: u32) -> Result<Vec<TrafficMonth>>;
}

/// Bytes to add to the month for a new status, given the previous one of the same device.
/// Counters reset at reboot (a smaller uptime): then the new counters are all new traffic.
/// Otherwise the difference, with wrapping for the u32 counters.
pub fn traffic_delta(prev: Option<(u32, Traffic)>, uptime_s: u32, now: Traffic) -> [u64; 4] {
    let cur = [now.eth_tx, now.eth_rx, now.gsm_tx, now.gsm_rx];
    match prev {
        Some((prev_uptime, p)) if uptime_s >= prev_uptime => {
            let old = [p.eth_tx, p.eth_rx, p.gsm_tx, p.gsm_rx];
            let mut d = [0u64; 4];
            for i in 0..4 {
                d[i] = u64::from(cur[i].wrapping_sub(old[i]));
            }
            d
        }
        _ => cur.map(u64::from),
    }
}

/// A status in its wire encoding, as both backends store it.
pub fn encode(status: &Status) -> Result<[u8; LEN]> {
    let mut body = [0u8; LEN];
    status
        .emit(&mut body)
        .ok_or_else(|| Error::Backend("status encoding failed".into()))?;
    Ok(body)
}

/// A stored status; a body that does not parse is a damaged row.
pub fn decode(device_id: u32, body: &[u8]) -> Result<Status> {
    Status::parse(body).map_err(|e| Error::Corrupt(format!("status of device {device_id}: {e}")))
}

/// The [`traffic_delta`] of `status` after the stored body of the device's previous status, as
/// SQL integers. A damaged previous status only loses one delta; it must not block new ones.
pub fn traffic_since(prev_body: Option<&[u8]>, status: &Status) -> [i64; 4] {
    let prev = prev_body
        .and_then(|b| Status::parse(b).ok())
        .map(|s| (s.uptime_s, s.traffic));
    traffic_delta(prev, status.uptime_s, status.traffic)
        .map(|x| i64::try_from(x).unwrap_or(i64::MAX))
}

/// `YYYY-MM` of a Unix time (UTC), by the civil-from-days algorithm (H. Hinnant).
pub fn month_of(unix_s: i64) -> String {
    let days = unix_s.div_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(a: u32, b: u32, c: u32, d: u32) -> Traffic {
        Traffic {
            eth_tx: a,
            eth_rx: b,
            gsm_tx: c,
            gsm_rx: d,
        }
    }

    #[test]
    fn deltas() {
        assert_eq!(traffic_delta(None, 10, t(1, 2, 3, 4)), [1, 2, 3, 4]);
        assert_eq!(
            traffic_delta(Some((10, t(1, 2, 3, 4))), 20, t(11, 2, 5, 4)),
            [10, 0, 2, 0]
        );
        // Reboot: uptime went down, counters started again.
        assert_eq!(
            traffic_delta(Some((1000, t(500, 500, 0, 0))), 5, t(7, 8, 0, 0)),
            [7, 8, 0, 0]
        );
        // Wrap of a u32 counter.
        assert_eq!(
            traffic_delta(Some((10, t(u32::MAX - 1, 0, 0, 0))), 20, t(3, 0, 0, 0)),
            [5, 0, 0, 0]
        );
    }

    #[test]
    fn months() {
        assert_eq!(month_of(0), "1970-01");
        assert_eq!(month_of(951_782_400), "2000-02"); // 2000-02-29
        assert_eq!(month_of(951_868_799), "2000-02");
        assert_eq!(month_of(951_868_800), "2000-03");
        assert_eq!(month_of(1_767_225_599), "2025-12");
        assert_eq!(month_of(1_767_225_600), "2026-01");
    }

    #[test]
    fn stored_bodies_round_trip_and_a_damaged_one_loses_only_its_delta() {
        let status = Status {
            uptime_s: 20,
            traffic: t(11, 2, 5, 4),
            ..crate::storage::suite::sample_status()
        };
        let body = encode(&status).unwrap();
        assert_eq!(decode(9, &body).unwrap(), status);
        assert!(matches!(decode(9, &body[1..]), Err(Error::Corrupt(m)) if m.contains("device 9")));
        let earlier = encode(&Status {
            uptime_s: 10,
            traffic: t(1, 2, 3, 4),
            ..status
        })
        .unwrap();
        assert_eq!(traffic_since(Some(&earlier), &status), [10, 0, 2, 0]);
        // A previous body that does not parse counts as no previous status.
        assert_eq!(traffic_since(Some(b"junk"), &status), [11, 2, 5, 4]);
        assert_eq!(traffic_since(None, &status), [11, 2, 5, 4]);
    }
}
