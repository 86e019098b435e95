//! The `[web]` section of the configuration, and who the client is.
//!
//! ```toml
//! [web]
//! # public_url = "https://ems.example.com"  # where users reach the UI; https: cookies
//! #                           # `__Host-` + `Secure`, and HSTS is sent
//! trusted_proxies = []        # addresses/prefixes of reverse proxies whose X-Forwarded-For is
//! #                           # believed (e.g. ["127.0.0.1", "10.0.0.0/8"])
//! login_hashes = 0            # password checks running at once (0: half the cores, at least 1);
//! #                           # one more login is answered 503 at once
//! streams_per_user = 8        # live event streams one user may hold at once
//! # metrics_token = "..."     # when set, /metrics needs `Authorization: Bearer <it>`
//! ```
//!
//! [`client_addr`] picks the address the login limits count: the TCP peer, or — only when the
//! peer is a trusted proxy — the right-most address of `X-Forwarded-For` that is not itself a
//! trusted proxy (the left part of that header is whatever the client wrote and proves nothing).

use axum::http::HeaderMap;
use serde::Deserialize;
use std::net::IpAddr;

/// An address prefix such as `10.0.0.0/8`, `::1` or `fd00::/8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    bits: u8,
}

impl Cidr {
    /// Whether `ip` is inside the prefix (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        match (self.addr, ip) {
            (IpAddr::V4(a), IpAddr::V4(b)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.bits)).unwrap_or(0);
                u32::from(a) & mask == u32::from(b) & mask
            }
            (IpAddr::V6(a), IpAddr::V6(b)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.bits))
                    .unwrap_or(0);
                u128::from(a) & mask == u128::from(b) & mask
            }
            _ => false,
        }
    }
}

impl std::str::FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Cidr, String> {
        let (a, bits) = match s.split_once('/') {
            Some((a, b)) => (a, Some(b)),
            None => (s, None),
        };
        let addr: IpAddr = a
            .trim()
            .parse()
            .map_err(|_| format!("{s:?} is not an address or prefix"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let bits = match bits {
            None => max,
            Some(b) => b
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|b| *b <= max)
                .ok_or_else(|| format!("{s:?}: the prefix length must be 0..={max}"))?,
        };
        Ok(Cidr {
            addr: canonical(addr),
            bits,
        })
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Cidr, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The `[web]` configuration section.
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct WebConfig {
    /// The URL users reach the UI at (`https://...` behind a TLS proxy). When it is https, the
    /// session cookie is `__Host-` and `Secure` and `Strict-Transport-Security` is sent; when it
    /// is http, cookies are not `Secure`. Unset: `Secure` unless the listener is on loopback.
    pub public_url: Option<String>,
    /// Reverse proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<Cidr>,
    /// Password checks (argon2id, 19 MiB each) running at once; 0: half the cores, at least 1.
    pub login_hashes: usize,
    /// Live event streams one user may hold at once (0: the default, 8).
    pub streams_per_user: usize,
    /// When set, `/metrics` answers only requests with `Authorization: Bearer <this>`.
    pub metrics_token: Option<String>,
}

impl WebConfig {
    /// Checks values that parse but cannot work.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(u) = &self.public_url {
            let rest = u
                .strip_prefix("https://")
                .or_else(|| u.strip_prefix("http://"))
                .ok_or_else(|| {
                    format!("web.public_url {u:?} must start with https:// or http://")
                })?;
            if rest.is_empty() || rest.starts_with('/') {
                return Err(format!("web.public_url {u:?} has no host"));
            }
        }
        if self.metrics_token.as_deref().is_some_and(|t| t.len() < 16) {
            return Err("web.metrics_token must have at least 16 characters".into());
        }
        Ok(())
    }

    /// Whether users reach the server over HTTPS (`Some(false)`: plain HTTP; `None`: unknown).
    pub fn https(&self) -> Option<bool> {
        self.public_url
            .as_deref()
            .map(|u| u.starts_with("https://"))
    }

    /// Password checks at once, `login_hashes` resolved.
    pub fn hashes_at_once(&self) -> usize {
        if self.login_hashes > 0 {
            return self.login_hashes;
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        (cores / 2).max(1)
    }
}

/// The client address the login limits count: the TCP peer, or, when the peer is a trusted
/// proxy, the right-most `X-Forwarded-For` entry that is not a trusted proxy. `None` when the
/// peer is unknown (a server embedded without connect info).
pub fn client_addr(peer: Option<IpAddr>, headers: &HeaderMap, trusted: &[Cidr]) -> Option<IpAddr> {
    let peer = canonical(peer?);
    if !trusted.iter().any(|c| c.contains(peer)) {
        return Some(peer);
    }
    // Every X-Forwarded-For header, in order, as one list; walk it from the right.
    let mut hops: Vec<&str> = Vec::new();
    for v in headers.get_all("x-forwarded-for") {
        let Ok(v) = v.to_str() else {
            return Some(peer);
        };
        hops.extend(v.split(',').map(str::trim));
    }
    for hop in hops.iter().rev() {
        let Ok(ip) = hop.parse::<IpAddr>() else {
            // Garbage the proxy passed on: the last good hop is the best we know.
            return Some(peer);
        };
        let ip = canonical(ip);
        if !trusted.iter().any(|c| c.contains(ip)) {
            return Some(ip);
        }
    }
    Some(peer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        let c: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(c.contains("10.1.2.3".parse().unwrap()));
        assert!(!c.contains("11.0.0.1".parse().unwrap()));
        assert!(c.contains("::ffff:10.0.0.1".parse().unwrap()));
        let one: Cidr = "127.0.0.1".parse().unwrap();
        assert!(one.contains("127.0.0.1".parse().unwrap()));
        assert!(!one.contains("127.0.0.2".parse().unwrap()));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("1.2.3.4".parse().unwrap()));
        let v6: Cidr = "fd00::/8".parse().unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()));
        assert!(!v6.contains("fe80::1".parse().unwrap()));
        for bad in ["", "10.0.0.0/33", "x/8", "::/129", "1.2.3.4/"] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn forwarded_for_only_from_trusted_proxies() {
        let trusted: Vec<Cidr> = vec!["127.0.0.1".parse().unwrap()];
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "6.6.6.6, 203.0.113.9".parse().unwrap());
        let proxy: IpAddr = "127.0.0.1".parse().unwrap();
        let other: IpAddr = "198.51.100.1".parse().unwrap();
        // From the proxy: the right-most hop it added; the client-written left part is ignored.
        assert_eq!(
            client_addr(Some(proxy), &h, &trusted),
            Some("203.0.113.9".parse().unwrap())
        );
        // From anyone else the header is the client's own claim: ignored.
        assert_eq!(client_addr(Some(other), &h, &trusted), Some(other));
        // No header, or garbage: the peer.
        assert_eq!(
            client_addr(Some(proxy), &HeaderMap::new(), &trusted),
            Some(proxy)
        );
        h.insert("x-forwarded-for", "not an address".parse().unwrap());
        assert_eq!(client_addr(Some(proxy), &h, &trusted), Some(proxy));
        assert_eq!(client_addr(None, &h, &trusted), None);
    }

    #[test]
    fn public_url_rules() {
        let mut c = WebConfig::default();
        assert_eq!(c.https(), None);
        c.public_url = Some("https://ems.example.com".into());
        assert!(c.validate().is_ok());
        assert_eq!(c.https(), Some(true));
        c.public_url = Some("ftp://x".into());
        assert!(c.validate().is_err());
        c.public_url = Some("https://".into());
        assert!(c.validate().is_err());
        assert!(c.hashes_at_once() >= 1);
    }
}
