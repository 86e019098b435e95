//! `local_time` against the system's tzdata: for every zone of `zone1970.tab`, the offset the
//! controller computes from the zone's POSIX rule (the TZif footer, what the server sends) must
//! equal the offset of the zone's own transition table at every transition from 2025 on, just
//! before and at it — an independent oracle for the rule arithmetic (month/week/day dates,
//! change times in the local time before the change, southern hemisphere, negative DST).
//! Skipped when tzdata is not installed.
//!
//! The footer describes the zone after the table's last transition. Zones whose footer has DST
//! are compared at every table transition from mid-2026 on (zic generated those from the same
//! rule); zones whose footer has none (a fixed offset) only past the table: a few of them list
//! irregular future changes no POSIX rule can express (Morocco's Ramadan changes, listed up to
//! 2087) — a documented limit of sending a POSIX rule. The zones whose tables hold such
//! changes while their footer has DST (Palestine's) are named in `IRREGULAR` and compared past
//! their tables only.

use std::path::Path;
use tek_controller::local_time::local;
use tek_proto::tz::Rule;

/// Zones whose future changes follow the Islamic calendar: their tables list changes that their
/// POSIX footer does not describe.
const IRREGULAR: &[&str] = &["Asia/Gaza", "Asia/Hebron"];

struct Table {
    /// (transition time, UTC offset after it)
    transitions: Vec<(i64, i32)>,
    footer: String,
}

fn be32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(b[at..at + 4].try_into().unwrap())
}

/// The version-2 part of a TZif file (RFC 8536): 64-bit transition times and the footer.
fn read_tzif(bytes: &[u8]) -> Option<Table> {
    if bytes.len() < 44 || &bytes[..4] != b"TZif" || bytes[4] < b'2' {
        return None;
    }
    let counts = |h: usize| -> [usize; 6] {
        let c = |i: usize| be32(bytes, h + 20 + 4 * i) as usize;
        [c(0), c(1), c(2), c(3), c(4), c(5)] // isut, isstd, leap, time, type, char
    };
    let [isut, isstd, leap, time, typ, chars] = counts(0);
    let v1_len = 44 + time * 5 + typ * 6 + chars + leap * 8 + isstd + isut;
    let h = v1_len;
    let [isut, isstd, leap, time, typ, chars] = counts(h);
    let mut at = h + 44;
    let times: Vec<i64> = (0..time)
        .map(|i| i64::from_be_bytes(bytes[at + 8 * i..at + 8 * i + 8].try_into().unwrap()))
        .collect();
    at += 8 * time;
    let idx: Vec<usize> = bytes[at..at + time].iter().map(|&b| b as usize).collect();
    at += time;
    let offsets: Vec<i32> = (0..typ).map(|i| be32(bytes, at + 6 * i)).collect();
    at += 6 * typ + chars + 12 * leap + isstd + isut;
    let rest = std::str::from_utf8(&bytes[at..]).ok()?;
    let footer = rest.trim_matches('\n').to_owned();
    Some(Table {
        transitions: times
            .into_iter()
            .zip(idx)
            .map(|(t, i)| (t, offsets[i]))
            .collect(),
        footer,
    })
}

#[test]
fn rules_agree_with_the_transition_tables() {
    let dir = Path::new("/usr/share/zoneinfo");
    let Ok(tab) = std::fs::read_to_string(dir.join("zone1970.tab")) else {
        eprintln!("skipped: no tzdata");
        return;
    };
    let from = 1_780_272_000; // 2026-06-01
    let (mut zones, mut checked) = (0, 0);
    for line in tab.lines().filter(|l| !l.starts_with('#')) {
        let zone = line.split('\t').nth(2).unwrap();
        let bytes = std::fs::read(dir.join(zone)).unwrap();
        let t = read_tzif(&bytes).unwrap_or_else(|| panic!("{zone}: not TZif v2+"));
        let rule = Rule::parse(&t.footer).unwrap_or_else(|e| panic!("{zone} {:?}: {e}", t.footer));
        zones += 1;
        let past_table = t.transitions.last().map_or(from, |&(at, _)| at.max(from));
        if IRREGULAR.contains(&zone) {
            // Past the table the rule is all there is: it must at least be continuous with it.
            let last = t.transitions.last().unwrap();
            assert_eq!(
                local(&rule, last.0).offset_s,
                last.1,
                "{zone} at its last change"
            );
            continue;
        }
        if rule.dst.is_none() {
            for m in 0..36 {
                let at = past_table + 1 + m * 30 * 86_400;
                assert_eq!(
                    local(&rule, at).offset_s,
                    rule.std_offset_s,
                    "{zone} past the table"
                );
            }
            continue;
        }
        for w in t.transitions.windows(2) {
            let ((_, before), (at, after)) = (w[0], w[1]);
            if at < from || before == after {
                continue;
            }
            assert_eq!(local(&rule, at - 1).offset_s, before, "{zone} before {at}");
            assert_eq!(local(&rule, at).offset_s, after, "{zone} at {at}");
            checked += 1;
        }
    }
    assert!(zones > 300, "{zones} zones");
    eprintln!("{zones} zones, {checked} transitions checked");
}
