//! The AT command side of the emulated modem (3GPP TS 27.007 / V.250 subset a GSM module
//! answers): lines in, responses out, and the modem's radio state.
//!
//! Supported: `AT`, `ATE0`/`ATE1`, `ATI`, `ATZ`, `AT+CFUN=...`, `AT+CPIN?`, `AT+CSQ`,
//! `AT+CREG?`, `AT+CGDCONT=<cid>,"IP","<apn>"`, `ATD*99#` (and `ATD*99***<cid>#`), `ATH`.
//! Anything else answers `ERROR`, as a module does.

/// What the line asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `AT`: are you there.
    Attention,
    /// `ATE0` / `ATE1`: command echo off / on.
    Echo(bool),
    /// `ATI`: identification.
    Info,
    /// `ATZ`, `AT+CFUN=1,1`, `AT&F`: reset to defaults (hang-up, echo on).
    Reset,
    /// `AT+CFUN=<n>` other than a reset: accepted.
    Functionality,
    /// `AT+CPIN?`: SIM state.
    PinQuery,
    /// `AT+CSQ`: signal quality.
    SignalQuality,
    /// `AT+CREG?`: registration.
    RegistrationQuery,
    /// `AT+CGDCONT=<cid>,"<type>","<apn>"`.
    DefineContext {
        /// Context identifier.
        cid: u8,
        /// Access point name.
        apn: String,
    },
    /// `ATD*99#` / `ATD*99***<cid>#`: open the packet data call.
    DialData {
        /// Context identifier (1 if not given).
        cid: u8,
    },
    /// `ATH`: hang up.
    Hangup,
    /// Anything else (answered `ERROR`).
    Unknown(String),
}

/// Parses one command line (without its `\r`). Case-insensitive prefix, case kept in quoted
/// strings.
pub fn parse(line: &str) -> Command {
    let line = line.trim();
    let upper = line.to_ascii_uppercase();
    let unknown = || Command::Unknown(line.to_string());
    let Some(rest) = upper.strip_prefix("AT") else {
        return unknown();
    };
    let orig_rest = &line[2..];
    match rest {
        "" => Command::Attention,
        "E0" => Command::Echo(false),
        "E1" | "E" => Command::Echo(true),
        "I" | "I0" => Command::Info,
        "Z" | "Z0" | "&F" | "+CFUN=1,1" => Command::Reset,
        "H" | "H0" => Command::Hangup,
        "+CPIN?" => Command::PinQuery,
        "+CSQ" => Command::SignalQuality,
        "+CREG?" => Command::RegistrationQuery,
        r if r.starts_with("+CFUN=") => Command::Functionality,
        r if r.starts_with("+CGDCONT=") => parse_cgdcont(&orig_rest[9..]).unwrap_or_else(unknown),
        r if r.starts_with('D') => parse_dial(&r[1..]).unwrap_or_else(unknown),
        _ => unknown(),
    }
}

fn parse_cgdcont(args: &str) -> Option<Command> {
    let mut parts = args.splitn(3, ',');
    let cid: u8 = parts.next()?.trim().parse().ok()?;
    let pdp = unquote(parts.next()?)?;
    if !pdp.eq_ignore_ascii_case("IP") {
        return None;
    }
    let apn = unquote(parts.next().unwrap_or("\"\""))?;
    (cid >= 1 && apn.len() <= 100).then(|| Command::DefineContext {
        cid,
        apn: apn.to_string(),
    })
}

fn unquote(s: &str) -> Option<&str> {
    let s = s.trim();
    s.strip_prefix('"')?
        .strip_suffix('"')
        .filter(|i| !i.contains('"'))
}

fn parse_dial(num: &str) -> Option<Command> {
    let num = num.trim_start_matches(['T', 'P']).trim();
    if num == "*99#" {
        return Some(Command::DialData { cid: 1 });
    }
    let cid = num.strip_prefix("*99***")?.strip_suffix('#')?;
    Some(Command::DialData {
        cid: cid.parse().ok()?,
    })
}

/// Assembles command lines from bytes (a line ends at CR; LF and other control bytes are
/// ignored; backspace edits; lines longer than 256 bytes are dropped, as a module's buffer
/// overflows).
#[derive(Debug, Default)]
pub struct LineReader {
    line: Vec<u8>,
    overflow: bool,
}

/// The longest command line kept.
pub const MAX_LINE: usize = 256;

impl LineReader {
    /// Feeds one byte; returns a complete line at CR.
    pub fn push(&mut self, b: u8) -> Option<String> {
        match b {
            b'\r' => {
                let line = std::mem::take(&mut self.line);
                let overflow = std::mem::replace(&mut self.overflow, false);
                if overflow || line.is_empty() {
                    return None;
                }
                Some(String::from_utf8_lossy(&line).into_owned())
            }
            0x08 => {
                self.line.pop();
                None
            }
            0x00..=0x1F | 0x7F..=0xFF => None,
            b => {
                if self.line.len() >= MAX_LINE {
                    self.overflow = true;
                } else {
                    self.line.push(b);
                }
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_commands_a_driver_sends() {
        assert_eq!(parse("AT"), Command::Attention);
        assert_eq!(parse("ate0"), Command::Echo(false));
        assert_eq!(parse("AT+CPIN?"), Command::PinQuery);
        assert_eq!(parse("AT+CSQ"), Command::SignalQuality);
        assert_eq!(parse("AT+CREG?"), Command::RegistrationQuery);
        assert_eq!(parse("AT+CFUN=1,1"), Command::Reset);
        assert_eq!(parse("AT+CFUN=1"), Command::Functionality);
        assert_eq!(
            parse("AT+CGDCONT=1,\"IP\",\"Internet.Example\""),
            Command::DefineContext {
                cid: 1,
                apn: "Internet.Example".into()
            }
        );
        assert_eq!(
            parse("AT+CGDCONT=1,\"IP\",\"\""),
            Command::DefineContext {
                cid: 1,
                apn: String::new()
            }
        );
        assert_eq!(parse("ATD*99#"), Command::DialData { cid: 1 });
        assert_eq!(parse("ATDT*99***2#"), Command::DialData { cid: 2 });
        assert_eq!(parse("ATH"), Command::Hangup);
    }

    #[test]
    fn bad_lines_are_unknown() {
        for l in [
            "",
            "hello",
            "AT+CGDCONT=1,\"PPP\",\"x\"",
            "AT+CGDCONT=x,\"IP\",\"x\"",
            "AT+CGDCONT=1,\"IP\",\"a\"b\"",
            "AT+CGDCONT=1,IP,x",
            "ATD123",
            "ATD*99***x#",
            "AT+FOO",
        ] {
            assert!(matches!(parse(l), Command::Unknown(_)), "{l}");
        }
    }

    #[test]
    fn line_reader_splits_and_bounds() {
        let mut r = LineReader::default();
        let lines: Vec<_> = b"AT\r\nATE0\r\r\nAT+CS\x08SQ\r"
            .iter()
            .filter_map(|&b| r.push(b))
            .collect();
        assert_eq!(lines, vec!["AT", "ATE0", "AT+CSQ"]);
        let long = vec![b'A'; MAX_LINE + 5];
        assert!(long.iter().all(|&b| r.push(b).is_none()));
        assert_eq!(r.push(b'\r'), None);
        assert_eq!(
            b"AT\r"
                .iter()
                .filter_map(|&b| r.push(b))
                .collect::<Vec<_>>(),
            vec!["AT"]
        );
    }
}
