//! The time zone each time on a page is shown in: a device's times in its site's zone, a site's
//! in its own, anything without a site in UTC. Pages about one device or site say the zone once
//! ("Times in Europe/Berlin"); pages mixing sites (alarms, audit log) give each time its zone's
//! abbreviation and the zone's name as a tooltip.

use crate::energy::zone;
use crate::http::error::WebError;
use crate::http::Web;
use jiff::tz::TimeZone;
use std::collections::HashMap;

/// A zone and its IANA name.
#[derive(Debug, Clone)]
pub struct Zone {
    /// The zone.
    pub tz: TimeZone,
    /// Its name, e.g. `Europe/Berlin`.
    pub name: String,
}

impl Zone {
    /// UTC.
    pub fn utc() -> Zone {
        Zone {
            tz: TimeZone::UTC,
            name: zone::DEFAULT.into(),
        }
    }

    /// The zone of a stored site zone name.
    pub fn named(name: &str) -> Zone {
        Zone {
            tz: zone::load(name),
            name: name.to_owned(),
        }
    }
}

/// Zones of devices and sites, looked up once per page.
#[derive(Debug, Default)]
pub struct Zones {
    devices: HashMap<u32, Zone>,
    sites: HashMap<i64, Zone>,
}

impl Zones {
    /// The zone of a row about `device` and/or `site` (the device's site first).
    pub fn of(&self, device: Option<u32>, site: Option<i64>) -> Zone {
        device
            .and_then(|d| self.devices.get(&d))
            .or_else(|| site.and_then(|s| self.sites.get(&s)))
            .cloned()
            .unwrap_or_else(Zone::utc)
    }
}

impl Web {
    /// The zone of `device`'s times: its site's, or UTC.
    pub async fn device_zone(&self, device: u32) -> Result<Zone, WebError> {
        Ok(self.zones(vec![device]).await?.of(Some(device), None))
    }

    /// The zones of `devices` and of every site.
    pub async fn zones(&self, mut devices: Vec<u32>) -> Result<Zones, WebError> {
        devices.sort_unstable();
        devices.dedup();
        self.db_call(move |db| {
            let sites: HashMap<i64, Zone> = db
                .list_sites()?
                .into_iter()
                .map(|s| (s.id, Zone::named(&s.time_zone)))
                .collect();
            let mut by_device = HashMap::new();
            for d in devices {
                if let Some(z) = db.device_site(d)?.and_then(|s| sites.get(&s)) {
                    by_device.insert(d, z.clone());
                }
            }
            Ok(Zones {
                devices: by_device,
                sites,
            })
        })
        .await
    }
}
