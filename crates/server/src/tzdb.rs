//! IANA time-zone names to POSIX TZ rules, from the system's tzdata.
//!
//! A controller follows the POSIX TZ rule its configuration carries (docs/PROTOCOL.md section
//! 7.6.1). The server derives it from the zone's TZif file (`/usr/share/zoneinfo/<zone>`, the
//! Debian `tzdata` package; `TZDIR` overrides the directory): since TZif version 2 the file ends
//! with a footer line that is exactly that rule (RFC 8536 section 3.3), e.g.
//! `CET-1CEST,M3.5.0,M10.5.0/3` for `Europe/Paris`. The rule describes the zone from the last
//! transition in the file on — today's and future rules, which is what a device needs.

use std::path::{Path, PathBuf};
use tek_proto::message::config::MAX_TZ;

/// Why a zone has no usable rule.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TzdbError {
    /// Not a plausible zone name (letters, digits, `_`, `-`, `+`, `/`; no `..`).
    #[error("{0:?} is not a time zone name like Europe/Paris")]
    BadName(String),
    /// The tzdata directory is missing.
    #[error("no time-zone database at {0} (install the tzdata package, or set TZDIR)")]
    NoDatabase(String),
    /// No such zone in the database.
    #[error("unknown time zone {0:?}")]
    Unknown(String),
    /// The file is not TZif version 2 or later with a footer.
    #[error("time zone {0:?}: the tzdata file has no POSIX rule (TZif version 1 or damaged)")]
    NoRule(String),
    /// The footer is not a rule the controller can follow.
    #[error("time zone {zone:?}: its rule {rule:?} cannot be sent to a controller")]
    Unusable {
        /// The zone.
        zone: String,
        /// Its footer.
        rule: String,
    },
}

/// The tzdata directory: `TZDIR`, else `/usr/share/zoneinfo`.
pub fn default_dir() -> PathBuf {
    std::env::var_os("TZDIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/share/zoneinfo"))
}

/// Whether `zone` looks like an IANA zone name (so it is safe to join to a directory).
pub fn name_ok(zone: &str) -> bool {
    !zone.is_empty()
        && zone.len() <= 64
        && !zone.starts_with('/')
        && !zone.ends_with('/')
        && zone.split('/').all(|part| {
            !part.is_empty()
                && part != "."
                && part != ".."
                && part
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_-+".contains(&b))
        })
}

/// The footer rule of a TZif file's bytes.
fn footer(bytes: &[u8]) -> Option<&str> {
    if bytes.len() < 44 || &bytes[0..4] != b"TZif" || !matches!(bytes[4], b'2'..=b'9') {
        return None;
    }
    let body = bytes.strip_suffix(b"\n")?;
    let start = body.iter().rposition(|&b| b == b'\n')? + 1;
    std::str::from_utf8(&body[start..]).ok()
}

/// The POSIX TZ rule of IANA zone `zone`, from the tzdata in `dir`.
pub fn posix_rule_in(dir: &Path, zone: &str) -> Result<String, TzdbError> {
    if !name_ok(zone) {
        return Err(TzdbError::BadName(zone.to_owned()));
    }
    if !dir.is_dir() {
        return Err(TzdbError::NoDatabase(dir.display().to_string()));
    }
    let path = dir.join(zone);
    if !path.is_file() {
        return Err(TzdbError::Unknown(zone.to_owned()));
    }
    let bytes = std::fs::read(&path).map_err(|_| TzdbError::Unknown(zone.to_owned()))?;
    let rule = footer(&bytes).ok_or_else(|| TzdbError::NoRule(zone.to_owned()))?;
    // An empty footer: the zone has no rule past its table (never the case for current zones).
    if rule.is_empty() || rule.len() > MAX_TZ || tek_proto::tz::Rule::parse(rule).is_err() {
        return Err(TzdbError::Unusable {
            zone: zone.to_owned(),
            rule: rule.to_owned(),
        });
    }
    Ok(rule.to_owned())
}

/// The POSIX TZ rule of IANA zone `zone`, from the system's tzdata ([`default_dir`]).
pub fn posix_rule(zone: &str) -> Result<String, TzdbError> {
    posix_rule_in(&default_dir(), zone)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn have_tzdata() -> bool {
        let ok = Path::new("/usr/share/zoneinfo/Europe/Paris").is_file();
        if !ok {
            eprintln!("skipped: no tzdata installed");
        }
        ok
    }

    #[test]
    fn known_zones() {
        if !have_tzdata() {
            return;
        }
        let dir = Path::new("/usr/share/zoneinfo");
        assert_eq!(
            posix_rule_in(dir, "Europe/Paris").unwrap(),
            "CET-1CEST,M3.5.0,M10.5.0/3"
        );
        assert_eq!(
            posix_rule_in(dir, "America/New_York").unwrap(),
            "EST5EDT,M3.2.0,M11.1.0"
        );
        assert_eq!(posix_rule_in(dir, "UTC").unwrap(), "UTC0");
        assert_eq!(posix_rule_in(dir, "Asia/Kolkata").unwrap(), "IST-5:30");
    }

    /// Every zone of the database has a rule the controller accepts.
    #[test]
    fn every_zone_of_zone1970_is_usable() {
        if !have_tzdata() {
            return;
        }
        let dir = Path::new("/usr/share/zoneinfo");
        let Ok(tab) = std::fs::read_to_string(dir.join("zone1970.tab")) else {
            return;
        };
        let mut n = 0;
        for line in tab.lines().filter(|l| !l.starts_with('#')) {
            let zone = line.split('\t').nth(2).unwrap();
            posix_rule_in(dir, zone).unwrap_or_else(|e| panic!("{zone}: {e}"));
            n += 1;
        }
        assert!(n > 300, "{n} zones");
    }

    #[test]
    fn clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            posix_rule_in(dir.path(), "../etc/passwd"),
            Err(TzdbError::BadName(_))
        ));
        for bad in ["", "/etc", "Europe/", "Europe//Paris", "a b", "Europe/.."] {
            assert!(!name_ok(bad), "{bad:?}");
        }
        assert!(name_ok("America/Argentina/Buenos_Aires"));
        assert!(name_ok("Etc/GMT+5"));
        assert_eq!(
            posix_rule_in(&dir.path().join("missing"), "Europe/Paris"),
            Err(TzdbError::NoDatabase(
                dir.path().join("missing").display().to_string()
            ))
        );
        assert_eq!(
            posix_rule_in(dir.path(), "Mars/Olympus"),
            Err(TzdbError::Unknown("Mars/Olympus".into()))
        );
        // A version-1 file, and a file whose footer is not a rule.
        let mut v1 = b"TZif\0".to_vec();
        v1.resize(60, 0);
        std::fs::write(dir.path().join("Old"), &v1).unwrap();
        assert_eq!(
            posix_rule_in(dir.path(), "Old"),
            Err(TzdbError::NoRule("Old".into()))
        );
        let mut v2 = b"TZif2".to_vec();
        v2.resize(60, 0);
        v2.extend_from_slice(b"\n:Europe/Paris\n");
        std::fs::write(dir.path().join("Odd"), &v2).unwrap();
        assert!(matches!(
            posix_rule_in(dir.path(), "Odd"),
            Err(TzdbError::Unusable { .. })
        ));
        let mut ok = b"TZif2".to_vec();
        ok.resize(60, 0);
        ok.extend_from_slice(b"\nCET-1CEST,M3.5.0,M10.5.0/3\n");
        std::fs::write(dir.path().join("Good"), &ok).unwrap();
        assert_eq!(
            posix_rule_in(dir.path(), "Good").unwrap(),
            "CET-1CEST,M3.5.0,M10.5.0/3"
        );
    }
}
