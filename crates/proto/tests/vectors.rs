//! The test vectors of docs/PROTOCOL.md, checked against this crate.
//!
//! The document is the specification and this crate its reference implementation, so the two
//! must never drift apart. Every ```` ```vectors ```` block of the document is read; the inputs it
//! states (device key, device id, counters, nonces, session id, server time, messages, telemetry
//! records, configuration fields) are fed to the crate, and every output it states (keys, Hello,
//! Welcome, nonces, sealed datagrams, encodings) must come out byte for byte. The given datagrams
//! are also opened and decoded by the receiving side. A vector that is wrong, missing, or unknown
//! to this test fails it.
//!
//! To regenerate the outputs after a deliberate change of the inputs:
//! `cargo test -p tek-proto --test vectors -- --ignored --nocapture print_vectors`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use tek_proto::crypto::{self, DeviceKeys, Key};
use tek_proto::handshake::{self, Initiator};
use tek_proto::message::config::{Config, Freeze, Schedule, StaticIp, SwitchPoint, Thermostat};
use tek_proto::message::status::{self, Radio, Status, Traffic, Transport};
use tek_proto::message::telemetry::channel;
use tek_proto::message::{
    Command, CommandResult, ConfigResult, Message, RelayMode, Telemetry, TelemetryWriter,
};
use tek_proto::session;
use tek_proto::wire::data::{self, DataPacket, Direction};
use tek_proto::wire::{Hello, HelloRepr, Welcome, WelcomeRepr};

/// The document, relative to this crate.
const DOC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/PROTOCOL.md");

/// Every vector name the document must contain, and the only ones it may contain.
const EXPECTED: &[&str] = &[
    // inputs
    "device_key",
    "device_id",
    "boot_counter",
    "attempt",
    "device_nonce",
    "session_id",
    "server_nonce",
    "server_time",
    // key schedule and handshake
    "hello_counter",
    "k_hs",
    "hello",
    "welcome.mac_input",
    "welcome",
    "kdf_context",
    "k_d2s",
    "k_s2d",
    // session datagrams
    "d2s.0.counter",
    "d2s.0.message",
    "d2s.0.nonce",
    "d2s.0.datagram",
    "d2s.1.counter",
    "d2s.1.message",
    "d2s.1.nonce",
    "d2s.1.datagram",
    "s2d.0.counter",
    "s2d.0.message",
    "s2d.0.nonce",
    "s2d.0.datagram",
    "s2d.1.counter",
    "s2d.1.message",
    "s2d.1.nonce",
    "s2d.1.datagram",
    // telemetry
    "telemetry.first_seq",
    "telemetry.channels",
    "telemetry.now",
    "telemetry.record.0",
    "telemetry.record.1",
    "telemetry.record.2",
    "telemetry.record.3",
    "telemetry.record.4",
    "telemetry.body",
    // configuration
    "config.version",
    "config.log_interval_s",
    "config.ethernet",
    "config.gsm_apn",
    "config.gsm_login",
    "config.gsm_password",
    "config.server.0",
    "config.server.1",
    "config.thermostat",
    "config.keepalive_s",
    "config.batch_s",
    "config.gsm_failover_s",
    "config.rollback_s",
    "config.items",
    "config.items_future",
    // schedule items (tags 12..=15)
    "schedule.unoccupied",
    "schedule.point.0",
    "schedule.point.1",
    "schedule.point.2",
    "schedule.point.3",
    "schedule.point.4",
    "schedule.point.5",
    "schedule.holiday.0",
    "schedule.holiday.1",
    "schedule.time_zone",
    "schedule.freeze",
    "schedule.items",
    // other messages
    "message.status",
    "message.config_ack",
    "message.command_set_relay",
    "message.command_ack",
    "message.pong",
    // channels (section 17)
    "caps.message",
    "expr.program",
    "expr.env.0",
    "expr.env.1",
    "expr.env.2",
    "expr.result.0",
    "expr.result.1",
    "expr.result.2",
    "chmap.bytes",
    "split.version",
    "split.k_cfg",
    "split.assembled",
    "split.chunk.0.header",
    "split.chunk.1.header",
    "wide.first_seq",
    "wide.channels",
    "wide.now",
    "wide.record.0",
    "wide.record.1",
    "wide.record.2",
    "wide.body",
    "wide.short.header",
    "faults.message",
];

/// A value in a vector block: hex bytes (spaces allowed between digits) or a quoted ASCII string.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Value {
    Bytes(Vec<u8>),
    Text(String),
}

/// The vectors of one document, by name.
#[derive(Debug, Default, Clone)]
struct Vectors {
    values: BTreeMap<String, Value>,
}

/// Reads every ```` ```vectors ```` block of `text`. Any line that is not blank, a `#` comment or
/// `name: value` is an error, and so is a name given twice: a sloppy block must not pass.
fn parse_vectors(text: &str) -> Result<Vectors, String> {
    let mut out = Vectors::default();
    let mut in_fence = false;
    let mut in_vectors = false;
    let mut blocks = 0;
    for (no, line) in text.lines().enumerate() {
        let no = no + 1;
        let trimmed = line.trim();
        if let Some(info) = trimmed.strip_prefix("```") {
            if in_fence {
                in_fence = false;
                in_vectors = false;
            } else {
                in_fence = true;
                in_vectors = info.trim() == "vectors";
                blocks += usize::from(in_vectors);
            }
            continue;
        }
        if !in_vectors || trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let (name, value) = trimmed
            .split_once(':')
            .ok_or_else(|| format!("line {no}: expected `name: value`"))?;
        let name = name.trim();
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.')
        {
            return Err(format!("line {no}: bad vector name {name:?}"));
        }
        let value = parse_value(value.trim()).map_err(|e| format!("line {no} ({name}): {e}"))?;
        if out.values.insert(name.to_string(), value).is_some() {
            return Err(format!("line {no}: vector {name} given twice"));
        }
    }
    if in_fence {
        return Err("unterminated code block".into());
    }
    if blocks == 0 {
        return Err("no ```vectors block".into());
    }
    Ok(out)
}

fn parse_value(v: &str) -> Result<Value, String> {
    if let Some(rest) = v.strip_prefix('"') {
        let s = rest
            .strip_suffix('"')
            .ok_or("unterminated string".to_string())?;
        if !s.bytes().all(|b| (0x20..=0x7E).contains(&b) && b != b'"') {
            return Err("string must be printable ASCII without quotes".into());
        }
        return Ok(Value::Text(s.to_string()));
    }
    let digits: String = v.split_ascii_whitespace().collect();
    if !digits
        .bytes()
        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    {
        return Err(format!("not lowercase hex: {v:?}"));
    }
    hex::decode(&digits)
        .map(Value::Bytes)
        .map_err(|e| format!("bad hex {v:?}: {e}"))
}

impl Vectors {
    fn bytes(&self, name: &str) -> Result<Vec<u8>, String> {
        match self.values.get(name) {
            Some(Value::Bytes(b)) => Ok(b.clone()),
            Some(Value::Text(_)) => Err(format!("{name}: expected hex, found a string")),
            None => Err(format!("{name}: missing")),
        }
    }

    fn array<const N: usize>(&self, name: &str) -> Result<[u8; N], String> {
        let b = self.bytes(name)?;
        b.as_slice()
            .try_into()
            .map_err(|_| format!("{name}: expected {N} bytes, found {}", b.len()))
    }

    fn u8(&self, name: &str) -> Result<u8, String> {
        Ok(self.array::<1>(name)?[0])
    }

    fn u16(&self, name: &str) -> Result<u16, String> {
        Ok(u16::from_be_bytes(self.array(name)?))
    }

    fn u32(&self, name: &str) -> Result<u32, String> {
        Ok(u32::from_be_bytes(self.array(name)?))
    }

    fn text(&self, name: &str) -> Result<String, String> {
        match self.values.get(name) {
            Some(Value::Text(s)) => Ok(s.clone()),
            Some(Value::Bytes(_)) => Err(format!("{name}: expected a quoted string")),
            None => Err(format!("{name}: missing")),
        }
    }
}

/// What the crate computes from the document's inputs.
struct Outputs {
    bytes: Vec<(String, Vec<u8>)>,
}

impl Outputs {
    fn put(&mut self, name: &str, value: impl Into<Vec<u8>>) {
        self.bytes.push((name.to_string(), value.into()));
    }
}

/// The handshake inputs and the keys derived from them.
struct Handshake {
    keys: DeviceKeys,
    device_id: u32,
    counter: u64,
    device_nonce: [u8; 16],
    session_id: u32,
    server_nonce: [u8; 16],
    server_time: u32,
}

fn handshake_inputs(v: &Vectors) -> Result<Handshake, String> {
    let boot = v.u32("boot_counter")?;
    let attempt = v.u32("attempt")?;
    Ok(Handshake {
        keys: DeviceKeys::new(Key(v.array("device_key")?)),
        device_id: v.u32("device_id")?,
        counter: handshake::hello_counter(boot, attempt),
        device_nonce: v.array("device_nonce")?,
        session_id: v.u32("session_id")?,
        server_nonce: v.array("server_nonce")?,
        server_time: v.u32("server_time")?,
    })
}

/// The telemetry batch of the document, built with the crate's writer from the stated records.
fn telemetry_body(v: &Vectors) -> Result<Vec<u8>, String> {
    let first_seq = v.u32("telemetry.first_seq")?;
    let channels = v.u8("telemetry.channels")?;
    let now = v.u32("telemetry.now")?;
    let mut buf = [0u8; data::MAX_MESSAGE - 1];
    let mut w = TelemetryWriter::new(&mut buf, first_seq, channels, now)
        .ok_or("telemetry: writer refused the header")?;
    for (i, (time, values)) in telemetry_records(v)?.iter().enumerate() {
        if !w.push(*time, values) {
            return Err(format!("telemetry.record.{i}: writer refused the record"));
        }
    }
    let n = w.len();
    Ok(buf[..n].to_vec())
}

/// `telemetry.record.N`: device time u32, then one i32 per channel set in the mask, in channel
/// order.
fn telemetry_records(v: &Vectors) -> Result<Vec<(u32, [i32; channel::COUNT])>, String> {
    let channels = v.u8("telemetry.channels")?;
    let mut out = Vec::new();
    for i in 0.. {
        let name = format!("telemetry.record.{i}");
        if !v.values.contains_key(&name) {
            break;
        }
        let b = v.bytes(&name)?;
        let want = 4 + 4 * channels.count_ones() as usize;
        if b.len() != want {
            return Err(format!("{name}: expected {want} bytes, found {}", b.len()));
        }
        let time = u32::from_be_bytes(b[..4].try_into().unwrap());
        let mut values = [0i32; channel::COUNT];
        let mut at = 4;
        for (ch, value) in values.iter_mut().enumerate() {
            if channels & (1 << ch) != 0 {
                *value = i32::from_be_bytes(b[at..at + 4].try_into().unwrap());
                at += 4;
            }
        }
        out.push((time, values));
    }
    if out.is_empty() {
        return Err("telemetry.record.0: missing".into());
    }
    Ok(out)
}

/// The configuration of the document, from its stated fields.
fn config_input(v: &Vectors) -> Result<Config, String> {
    let eth = v.bytes("config.ethernet")?;
    let ethernet = match eth.len() {
        0 => None,
        16 => Some(StaticIp {
            ip: eth[0..4].try_into().unwrap(),
            netmask: eth[4..8].try_into().unwrap(),
            gateway: eth[8..12].try_into().unwrap(),
            dns: eth[12..16].try_into().unwrap(),
        }),
        n => {
            return Err(format!(
                "config.ethernet: expected 0 or 16 bytes, found {n}"
            ))
        }
    };
    let thermostat: [u8; 4] = v.array("config.thermostat")?;
    let mut cfg = Config {
        log_interval_s: v.u16("config.log_interval_s")?,
        ethernet,
        thermostat: Thermostat {
            setpoint_cc: i16::from_be_bytes([thermostat[0], thermostat[1]]),
            hysteresis_cc: u16::from_be_bytes([thermostat[2], thermostat[3]]),
        },
        keepalive_s: v.u16("config.keepalive_s")?,
        batch_s: v.u16("config.batch_s")?,
        gsm_failover_s: v.u16("config.gsm_failover_s")?,
        rollback_s: v.u16("config.rollback_s")?,
        ..Config::default()
    };
    let text = |name: &str| -> Result<heapless::String<63>, String> {
        heapless::String::try_from(v.text(name)?.as_str()).map_err(|_| format!("{name}: too long"))
    };
    cfg.gsm.apn = text("config.gsm_apn")?;
    cfg.gsm.login = text("config.gsm_login")?;
    cfg.gsm.password = text("config.gsm_password")?;
    for i in 0.. {
        let name = format!("config.server.{i}");
        if !v.values.contains_key(&name) {
            break;
        }
        cfg.servers
            .push(text(&name)?)
            .map_err(|_| format!("{name}: more than 8 servers"))?;
    }
    cfg.validate()
        .map_err(|e| format!("config: the stated fields are invalid: {e}"))?;
    Ok(cfg)
}

/// The schedule configuration of the document (the factory configuration plus the schedule
/// items), from its stated fields.
fn schedule_input(v: &Vectors) -> Result<Config, String> {
    let mut cfg = Config::default();
    let unoccupied: [u8; 2] = v.array("schedule.unoccupied")?;
    let mut schedule = Schedule {
        unoccupied_cc: i16::from_be_bytes(unoccupied),
        points: heapless::Vec::new(),
    };
    for i in 0.. {
        let name = format!("schedule.point.{i}");
        if !v.values.contains_key(&name) {
            break;
        }
        let [day, m0, m1, flags]: [u8; 4] = v.array(&name)?;
        if flags > 3 {
            return Err(format!("{name}: flags {flags}"));
        }
        let p = SwitchPoint::new(
            day,
            u16::from_be_bytes([m0, m1]),
            flags & 1 != 0,
            flags & 2 != 0,
        )
        .ok_or(format!("{name}: out of range"))?;
        schedule
            .points
            .push(p)
            .map_err(|_| format!("{name}: too many"))?;
    }
    cfg.schedule = Some(schedule);
    for i in 0.. {
        let name = format!("schedule.holiday.{i}");
        if !v.values.contains_key(&name) {
            break;
        }
        let text = v.text(&name)?;
        let parts: Vec<&str> = text.split('-').collect();
        let bad = || format!("{name}: not a YYYY-MM-DD date");
        let [y, m, d] = parts.as_slice() else {
            return Err(bad());
        };
        let (y, m, d): (i32, u32, u32) = (
            y.parse().map_err(|_| bad())?,
            m.parse().map_err(|_| bad())?,
            d.parse().map_err(|_| bad())?,
        );
        let day = tek_proto::tz::days_from_civil(y, m, d);
        if tek_proto::tz::civil_from_days(day) != (y, m, d) {
            return Err(bad());
        }
        cfg.holidays
            .push(u16::try_from(day).map_err(|_| bad())?)
            .map_err(|_| format!("{name}: too many"))?;
    }
    cfg.time_zone = heapless::String::try_from(v.text("schedule.time_zone")?.as_str())
        .map_err(|_| "schedule.time_zone: too long".to_string())?;
    let freeze: [u8; 4] = v.array("schedule.freeze")?;
    cfg.freeze = Freeze {
        limit_cc: i16::from_be_bytes([freeze[0], freeze[1]]),
        hysteresis_cc: u16::from_be_bytes([freeze[2], freeze[3]]),
    };
    cfg.validate()
        .map_err(|e| format!("schedule: the stated fields are invalid: {e}"))?;
    Ok(cfg)
}

/// The example messages of the document and the values they encode.
fn example_messages() -> Vec<(&'static str, Message<'static>)> {
    vec![
        (
            "message.status",
            Message::Status(Status {
                transport: Transport::Ethernet,
                flags: status::flag::DHCP | status::flag::TIME_SYNCED,
                ip: [192, 168, 1, 77],
                netmask: [255, 255, 255, 0],
                gateway: [192, 168, 1, 1],
                dns: [192, 168, 1, 1],
                uptime_s: 86_690,
                firmware: [1, 0, 0],
                config_version: 11,
                log_drops: 0,
                log_backlog: 5,
                traffic: Traffic {
                    eth_tx: 290_512,
                    eth_rx: 180_220,
                    gsm_tx: 0,
                    gsm_rx: 0,
                },
                gsm_signal: 99,
                radio: Radio::Off,
                relays: 0b01,
                server_index: 0,
            }),
        ),
        (
            "message.config_ack",
            Message::ConfigAck {
                version: 12,
                result: ConfigResult::Applied,
            },
        ),
        (
            "message.command_set_relay",
            Message::Command {
                id: 42,
                command: Command::SetRelay {
                    relay: 1,
                    mode: RelayMode::On,
                },
            },
        ),
        (
            "message.command_ack",
            Message::CommandAck {
                id: 42,
                result: CommandResult::Done,
            },
        ),
        (
            "message.pong",
            Message::Pong {
                server_time: 1_764_000_350,
            },
        ),
    ]
}

/// Computes every output vector from the document's inputs, and runs the checks that are not a
/// plain byte comparison (verifying, opening, decoding). Returns the outputs and the failures.
fn compute(v: &Vectors) -> Result<(Outputs, Vec<String>), String> {
    let mut out = Outputs { bytes: Vec::new() };
    let mut fail = Vec::new();
    let hs = handshake_inputs(v)?;

    out.put("hello_counter", hs.counter.to_be_bytes());
    out.put("k_hs", hs.keys.handshake().0);

    // Hello: the device builds it; the server reads and verifies the document's bytes.
    let mut hello = [0u8; 46];
    let (init, n) = Initiator::start(
        &hs.keys,
        hs.device_id,
        hs.counter,
        hs.device_nonce,
        &mut hello,
    )
    .ok_or("hello: emit failed")?;
    out.put("hello", &hello[..n]);
    let doc_hello = given(v, "hello", &mut fail);
    match handshake::verify_hello(&hs.keys, &doc_hello) {
        Ok(h) if h == *init.hello() => {}
        other => fail.push(format!("hello: the server does not accept it: {other:?}")),
    }
    let server_hello = HelloRepr {
        device_id: hs.device_id,
        counter: hs.counter,
        nonce: hs.device_nonce,
    };

    // Welcome: the server builds it; the device checks the document's bytes.
    let mut mac_input = [0u8; 54];
    let mut welcome = [0u8; 46];
    let (mut server, wn) = handshake::respond(
        &hs.keys,
        &server_hello,
        hs.session_id,
        hs.server_nonce,
        hs.server_time,
        &mut welcome,
    )
    .ok_or("welcome: emit failed")?;
    mac_input[..30].copy_from_slice(&welcome[..30]);
    mac_input[30..].copy_from_slice(&hello[6..30]);
    out.put("welcome.mac_input", mac_input);
    out.put("welcome", &welcome[..wn]);
    let doc_welcome = given(v, "welcome", &mut fail);
    let mut device = match init.finish(&hs.keys, &doc_welcome) {
        Ok((s, time)) => {
            if time != hs.server_time {
                fail.push(format!("welcome: server time {time}"));
            }
            s
        }
        Err(e) => {
            fail.push(format!("welcome: the device refuses it: {e}"));
            // Go on with the crate's own Welcome so the later vectors are still checked.
            init.finish(&hs.keys, &welcome[..wn])
                .map_err(|e| format!("welcome: {e}"))?
                .0
        }
    };
    if let Ok(w) = Welcome::new_checked(&doc_welcome[..]) {
        let parsed = WelcomeRepr::parse(&w);
        if parsed.session_id != hs.session_id || parsed.nonce != hs.server_nonce {
            fail.push(format!("welcome: fields {parsed:?}"));
        }
    }
    if Hello::new_checked(&doc_hello[..]).map(|h| h.counter()) != Ok(hs.counter) {
        fail.push("hello: counter field".into());
    }

    let ctx = session::key_context(
        hs.device_id,
        hs.session_id,
        hs.counter,
        &hs.device_nonce,
        &hs.server_nonce,
    );
    out.put("kdf_context", ctx);
    out.put(
        "k_d2s",
        crypto::kdf(hs.keys.master(), crypto::LABEL_D2S, &ctx).0,
    );
    out.put(
        "k_s2d",
        crypto::kdf(hs.keys.master(), crypto::LABEL_S2D, &ctx).0,
    );

    // Messages that are built from structured inputs.
    let body = telemetry_body(v)?;
    out.put("telemetry.body", body.clone());
    let mut telemetry_message = vec![0x01];
    telemetry_message.extend_from_slice(&body);
    out.put("d2s.1.message", telemetry_message);
    check_telemetry_decoding(v, &mut fail)?;

    let cfg = config_input(v)?;
    let mut items = [0u8; data::MAX_MESSAGE];
    let n = cfg.emit_items(&mut items).ok_or("config: emit failed")?;
    out.put("config.items", &items[..n]);
    let mut config_message = vec![0x82];
    config_message.extend_from_slice(&v.u32("config.version")?.to_be_bytes());
    config_message.extend_from_slice(&items[..n]);
    out.put("s2d.1.message", config_message);
    for name in ["config.items", "config.items_future"] {
        match Config::parse_items(&given(v, name, &mut fail)) {
            Ok(parsed) if parsed == cfg => {}
            other => fail.push(format!("{name}: decodes to {other:?}")),
        }
    }
    if v.bytes("config.items_future").ok() == v.bytes("config.items").ok() {
        fail.push("config.items_future: must differ from config.items (unknown items)".into());
    }

    let scheduled = schedule_input(v)?;
    let n = scheduled
        .emit_items(&mut items)
        .ok_or("schedule: emit failed")?;
    out.put("schedule.items", &items[..n]);
    match Config::parse_items(&given(v, "schedule.items", &mut fail)) {
        Ok(parsed) if parsed == scheduled => {}
        other => fail.push(format!("schedule.items: decodes to {other:?}")),
    }

    // Session datagrams, in the order each side seals them (counters 0, 1 per direction).
    let messages: [(&str, &str, &str, &str, Direction); 4] = [
        (
            "d2s.0.message",
            "d2s.0.counter",
            "d2s.0.nonce",
            "d2s.0.datagram",
            Direction::DeviceToServer,
        ),
        (
            "d2s.1.message",
            "d2s.1.counter",
            "d2s.1.nonce",
            "d2s.1.datagram",
            Direction::DeviceToServer,
        ),
        (
            "s2d.0.message",
            "s2d.0.counter",
            "s2d.0.nonce",
            "s2d.0.datagram",
            Direction::ServerToDevice,
        ),
        (
            "s2d.1.message",
            "s2d.1.counter",
            "s2d.1.nonce",
            "s2d.1.datagram",
            Direction::ServerToDevice,
        ),
    ];
    let computed_message = |name: &str, out: &Outputs| {
        out.bytes
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, b)| b.clone())
    };
    for (msg_name, counter_name, nonce_name, dgram_name, dir) in messages {
        // d2s.0 and s2d.0 are plain inputs; d2s.1 and s2d.1 were computed above.
        let msg_bytes = match computed_message(msg_name, &out) {
            Some(b) => b,
            None => v.bytes(msg_name)?,
        };
        let msg = Message::parse(&msg_bytes).map_err(|e| format!("{msg_name}: {e}"))?;
        let mut reemitted = vec![0u8; msg.buffer_len()];
        msg.emit(&mut reemitted)
            .map_err(|e| format!("{msg_name}: {e}"))?;
        if reemitted != msg_bytes {
            fail.push(format!("{msg_name}: does not re-encode to the same bytes"));
        }
        let (sender, receiver) = match dir {
            Direction::DeviceToServer => (&mut device, &mut server),
            Direction::ServerToDevice => (&mut server, &mut device),
        };
        let counter = sender.send_counter();
        out.put(counter_name, counter.to_be_bytes().to_vec());
        out.put(
            nonce_name,
            data::nonce(hs.device_id, hs.session_id, dir, counter).to_vec(),
        );
        let mut buf = [0u8; 1024];
        let n = sender
            .seal_message(&msg, &mut buf)
            .map_err(|e| format!("{dgram_name}: seal failed: {e:?}"))?;
        out.put(dgram_name, &buf[..n]);

        // The receiver opens the document's datagram and finds the same message.
        let mut doc_dgram = given(v, dgram_name, &mut fail);
        match DataPacket::new_checked(&doc_dgram[..]) {
            Ok(p) if Ok(p.nonce(dir).to_vec()) == v.bytes(nonce_name) => {}
            Ok(_) => fail.push(format!("{nonce_name}: not the nonce of {dgram_name}")),
            Err(e) => fail.push(format!("{dgram_name}: {e}")),
        }
        match receiver.open(&mut doc_dgram) {
            Ok(plain) if plain == msg_bytes.as_slice() => {}
            Ok(plain) => fail.push(format!(
                "{dgram_name}: opens to {} instead of {msg_name}",
                hex::encode(plain)
            )),
            Err(e) => fail.push(format!("{dgram_name}: the receiver refuses it: {e}")),
        }
    }

    channel_vectors(v, &hs, &mut out, &mut fail)?;

    // The example messages decode to the values they stand for and encode back.
    for (name, msg) in example_messages() {
        let mut buf = vec![0u8; msg.buffer_len()];
        msg.emit(&mut buf).map_err(|e| format!("{name}: {e}"))?;
        out.put(name, buf);
        match Message::parse(&given(v, name, &mut fail)) {
            Ok(m) if m == msg => {}
            other => fail.push(format!("{name}: decodes to {other:?}")),
        }
    }
    Ok((out, fail))
}

/// A datagram or encoding the document gives, to be opened or decoded; a missing one is a failure
/// (reported once more by the byte comparison) and reads as empty, so the other checks still run.
fn given(v: &Vectors, name: &str, fail: &mut Vec<String>) -> Vec<u8> {
    v.bytes(name).unwrap_or_else(|e| {
        fail.push(e);
        Vec::new()
    })
}

/// Decodes the document's telemetry body and checks the records against the stated inputs.
fn check_telemetry_decoding(v: &Vectors, fail: &mut Vec<String>) -> Result<(), String> {
    let body = given(v, "telemetry.body", fail);
    let now = v.u32("telemetry.now")?;
    let first_seq = v.u32("telemetry.first_seq")?;
    let channels = v.u8("telemetry.channels")?;
    let records = telemetry_records(v)?;
    let t = match Telemetry::parse(&body) {
        Ok(t) => t,
        Err(e) => {
            fail.push(format!("telemetry.body: does not decode: {e}"));
            return Ok(());
        }
    };
    let got: Vec<_> = t.records().collect();
    if got.len() != records.len() {
        fail.push(format!("telemetry.body: {} records", got.len()));
        return Ok(());
    }
    for (i, (rec, (time, values))) in got.iter().zip(&records).enumerate() {
        let mut masked = [0; channel::COUNT];
        for ch in 0..channel::COUNT {
            if channels & (1 << ch) != 0 {
                masked[ch] = values[ch];
            }
        }
        if rec.seq != first_seq + i as u32 || rec.age_s != now - time || rec.values != masked {
            fail.push(format!("telemetry.body: record {i} decodes to {rec:?}"));
        }
    }
    Ok(())
}

/// Everything that is wrong with the document's vectors (empty when all is well).
fn check(v: &Vectors) -> Vec<String> {
    let mut fail = Vec::new();
    for name in EXPECTED {
        if !v.values.contains_key(*name) {
            fail.push(format!("{name}: missing from the document"));
        }
    }
    for name in v.values.keys() {
        if !EXPECTED.contains(&name.as_str()) {
            fail.push(format!("{name}: not a vector this test knows (typo?)"));
        }
    }
    let (out, more) = match compute(v) {
        Ok(x) => x,
        Err(e) => {
            fail.push(e);
            return fail;
        }
    };
    fail.extend(more);
    for (name, bytes) in &out.bytes {
        match v.bytes(name) {
            Ok(doc) if doc == *bytes => {}
            Ok(doc) => fail.push(format!(
                "{name}: document has {}, crate computes {}",
                hex::encode(doc),
                hex::encode(bytes)
            )),
            Err(e) => fail.push(e),
        }
    }
    fail
}

fn load() -> (String, Vectors) {
    let text = std::fs::read_to_string(DOC).unwrap_or_else(|e| panic!("reading {DOC}: {e}"));
    let vectors = parse_vectors(&text).unwrap_or_else(|e| panic!("{DOC}: {e}"));
    (text, vectors)
}

#[test]
fn every_vector_in_the_document_matches_the_crate() {
    let (_, v) = load();
    let fail = check(&v);
    assert!(
        fail.is_empty(),
        "{} problem(s) with the vectors of docs/PROTOCOL.md:\n  {}",
        fail.len(),
        fail.join("\n  ")
    );
}

#[test]
fn the_document_keeps_all_its_vectors() {
    let (_, v) = load();
    assert!(EXPECTED.len() >= 60, "the expected list itself shrank");
    assert!(
        v.values.len() >= EXPECTED.len(),
        "docs/PROTOCOL.md has {} vectors, at least {} expected",
        v.values.len(),
        EXPECTED.len()
    );
    let missing: Vec<_> = EXPECTED
        .iter()
        .filter(|n| !v.values.contains_key(**n))
        .collect();
    assert!(missing.is_empty(), "missing vectors: {missing:?}");
}

/// The check is not vacuous: changing any one byte of any hex vector, or deleting any vector,
/// makes it fail, naming the culprit.
#[test]
fn a_corrupted_or_missing_vector_is_caught() {
    let (_, v) = load();
    assert!(check(&v).is_empty());
    for name in EXPECTED {
        let mut broken = v.clone();
        match broken.values.get_mut(*name) {
            Some(Value::Bytes(b)) if !b.is_empty() => {
                let last = b.len() - 1;
                b[last] ^= 0x01;
            }
            Some(Value::Bytes(b)) => b.push(0),
            Some(Value::Text(s)) => s.push('x'),
            None => panic!("{name} missing"),
        }
        let fail = check(&broken);
        assert!(!fail.is_empty(), "corrupting {name} went unnoticed");

        let mut gone = v.clone();
        gone.values.remove(*name);
        assert!(!check(&gone).is_empty(), "deleting {name} went unnoticed");
    }
}

#[test]
fn parser_refuses_sloppy_blocks() {
    let ok = "text\n```vectors\n# comment\na.b_1: 00 ff\ns: \"x y\"\n```\n```\nnot: vectors\n```\n";
    let v = parse_vectors(ok).unwrap();
    assert_eq!(v.values.len(), 2);
    assert_eq!(v.values["a.b_1"], Value::Bytes(vec![0, 0xff]));
    assert_eq!(v.values["s"], Value::Text("x y".into()));
    for bad in [
        "```vectors\na: 0\n```\n",         // odd digit count
        "```vectors\na: 0g\n```\n",        // not hex
        "```vectors\na: AB\n```\n",        // upper case
        "```vectors\na 00\n```\n",         // no colon
        "```vectors\nA: 00\n```\n",        // bad name
        "```vectors\na: 00\na: 01\n```\n", // twice
        "```vectors\na: \"x\n```\n",       // unterminated string
        "```vectors\na: 00\n",             // unterminated block
        "no blocks at all\n",              // nothing to check
    ] {
        assert!(parse_vectors(bad).is_err(), "{bad:?}");
    }
}

/// Prints the vector blocks computed from the document's inputs (for regenerating outputs).
#[test]
#[ignore]
fn print_vectors() {
    let (_, v) = load();
    let (out, fail) = compute(&v).unwrap();
    let mut s = String::new();
    for (name, bytes) in &out.bytes {
        let _ = writeln!(s, "{name}: {}", group(name, bytes));
    }
    println!("{s}");
    println!("problems: {fail:#?}");
}

/// Splits well-known layouts at their field boundaries, as the document shows them.
fn group(name: &str, b: &[u8]) -> String {
    let cuts: Vec<usize> = match name {
        "hello" => vec![1, 2, 6, 14, 30],
        "welcome" => vec![1, 2, 6, 10, 26, 30],
        "welcome.mac_input" => vec![30],
        "kdf_context" => vec![4, 8, 16, 32],
        n if n.ends_with(".datagram") => vec![1, 2, 6, 10, 14, b.len() - 8],
        n if n.ends_with(".nonce") => vec![4, 8, 9],
        _ => vec![],
    };
    let mut s = String::new();
    let mut at = 0;
    for cut in cuts.into_iter().chain([b.len()]) {
        if !s.is_empty() {
            s.push(' ');
        }
        s.push_str(&hex::encode(&b[at..cut]));
        at = cut;
    }
    s
}

/// Tags of a configuration item encoding (`tag u8 | length u8 | value`).
fn item_tags(items: &[u8]) -> Vec<u8> {
    let mut tags = Vec::new();
    let mut i = 0;
    while i + 2 <= items.len() {
        tags.push(items[i]);
        i += 2 + usize::from(items[i + 1]);
    }
    assert_eq!(i, items.len(), "item encoding ends inside an item");
    tags
}

/// The prose of section 16.7 counts the factory configuration's items in `schedule.items`; the
/// count must be the one of the encoding (it once said "eleven", the item count of the other
/// configuration vector, section 16.4).
#[test]
fn the_schedule_section_counts_the_factory_items_right() {
    let (text, v) = load();
    let tags = item_tags(&v.bytes("schedule.items").unwrap());
    let before_schedule = tags.iter().take_while(|&&t| t < 12).count();
    let mut buf = [0u8; 1002];
    let factory = tek_proto::message::ConfigItems::encode(&Config::default(), &mut buf).unwrap();
    assert_eq!(item_tags(factory.as_bytes()).len(), before_schedule);
    let words = [
        "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
        "eleven", "twelve",
    ];
    let said = text
        .split("tags 12..=15 after the ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("section 16.7 names the count of factory items");
    assert_eq!(
        said, words[before_schedule],
        "section 16.7 says {said:?} factory items; the encoding has {before_schedule}"
    );
}

/// The channel map of section 17.7 (`chmap.bytes`), plus `extra` board channels.
fn chmap(extra: usize) -> Vec<u8> {
    use tek_proto::channel::map::*;
    const MEAN0: [u8; 2] = [0x42, 0x00];
    let buses = [Bus {
        baud: Baud::B19200,
        parity: Parity::Even,
        timeout_ms: 200,
    }];
    let mut channels = vec![
        Channel {
            source: Source::Modbus(ModbusRead {
                bus: 0,
                slave: 1,
                function: Function::Input,
                register: 12,
                data_type: DataType::F32,
                word_order: WordOrder::HighFirst,
            }),
            conversion: Conversion::IDENTITY,
            resolution: Resolution {
                unit: Unit::Watt,
                exponent: 0,
            },
        },
        Channel {
            source: Source::Board(2),
            conversion: Conversion::IDENTITY,
            resolution: Resolution {
                unit: Unit::Celsius,
                exponent: -2,
            },
        },
        Channel {
            source: Source::Computed(&MEAN0),
            conversion: Conversion {
                mul: 1,
                div: 1000,
                offset: 0,
            },
            resolution: Resolution {
                unit: Unit::Watt,
                exponent: 3,
            },
        },
    ];
    for i in 0..extra {
        channels.push(Channel {
            source: Source::Board((i % 32) as u8),
            conversion: Conversion::IDENTITY,
            resolution: Resolution {
                unit: Unit::None,
                exponent: 0,
            },
        });
    }
    let mut buf = vec![0u8; buffer_len(&buses, &channels)];
    let n = emit(&buses, &channels, &mut buf).expect("chmap emits");
    buf.truncate(n);
    let map = ChannelMap::new_checked(&buf).expect("chmap frames");
    map.validate().expect("chmap validates");
    buf
}

/// Section 17.7: capabilities, expression program, channel map, split configuration, wide
/// telemetry.
fn channel_vectors(
    v: &Vectors,
    hs: &Handshake,
    out: &mut Outputs,
    fail: &mut Vec<String>,
) -> Result<(), String> {
    use tek_proto::channel::expr::{self, op, Env, Func, Scope};
    use tek_proto::channel::split::{self, feature, Assembled, Capabilities, ConfigChunk};
    use tek_proto::channel::wide::{ChannelSet, WideTelemetry, WideWriter};
    use tek_proto::channel::ChannelMessage;

    // Capabilities.
    let caps = Capabilities {
        features: feature::SPLIT_CONFIG
            | feature::WIDE_TELEMETRY
            | feature::MODBUS
            | feature::EXPRESSIONS,
        max_channels: 128,
        max_buses: 2,
        max_config: 8192,
        max_program: 128,
    };
    let mut buf = [0u8; 16];
    let n = ChannelMessage::Capabilities(caps)
        .emit(&mut buf)
        .map_err(|e| e.to_string())?;
    out.put("caps.message", &buf[..n]);
    match ChannelMessage::parse(&given(v, "caps.message", fail)) {
        Ok(Some(ChannelMessage::Capabilities(c))) if c == caps => {}
        other => fail.push(format!("caps.message: decodes to {other:?}")),
    }

    // Expression program: the stated instructions, verified, evaluated on each environment.
    let program = [
        op::CHAN,
        2,
        op::CONST32,
        0,
        0,
        0x0a,
        0xf0,
        op::GT,
        op::CHAN,
        0,
        op::CONST8,
        10,
        op::MUL,
        op::CHAN,
        3,
        op::DIV,
        op::CHAN,
        1,
        op::CHAN,
        3,
        op::ABS,
        op::MAX,
        op::SELECT,
    ];
    out.put("expr.program", program);
    let doc_program = given(v, "expr.program", fail);
    let scope = Scope {
        index: 4,
        count: 5,
        is_computed: |c| c == 4,
    };
    if let Err(e) = expr::verify(&doc_program, &scope) {
        fail.push(format!("expr.program: does not verify: {e}"));
    }
    struct Four([i32; 4]);
    impl Env for Four {
        fn value(&self, ch: u8) -> Option<i32> {
            self.0.get(usize::from(ch)).copied()
        }
        fn interval(&self, _: Func, _: u8) -> Option<i32> {
            None
        }
    }
    for i in 0..3 {
        let env = v.bytes(&format!("expr.env.{i}"))?;
        if env.len() != 16 {
            return Err(format!("expr.env.{i}: expected 16 bytes"));
        }
        let mut vals = [0i32; 4];
        for (k, val) in vals.iter_mut().enumerate() {
            *val = i32::from_be_bytes(env[4 * k..4 * k + 4].try_into().unwrap());
        }
        let result = expr::eval(&program, &Four(vals));
        let mut r = vec![u8::from(result.is_some())];
        r.extend_from_slice(&result.unwrap_or(0).to_be_bytes());
        out.put(&format!("expr.result.{i}"), r);
    }

    // Channel map.
    let map = chmap(0);
    out.put("chmap.bytes", map.clone());
    let doc_map = given(v, "chmap.bytes", fail);
    match tek_proto::channel::map::ChannelMap::new_checked(&doc_map) {
        Ok(m) if m.validate().is_ok() && m.channel_count() == 3 => {}
        other => fail.push(format!(
            "chmap.bytes: does not decode and validate: {other:?}"
        )),
    }

    // Split configuration.
    let version = v.u32("split.version")?;
    let k_cfg = split::digest_key(hs.keys.master());
    out.put("split.k_cfg", k_cfg.0);
    let mut assembled = vec![0, 4, 0x01, 0x02, 0x00, 0x78];
    assembled.extend_from_slice(&chmap(64));
    out.put("split.assembled", assembled.clone());
    let doc_assembled = given(v, "split.assembled", fail);
    if Assembled::parse(&doc_assembled).is_err() {
        fail.push("split.assembled: not a valid assembled configuration".into());
    }
    let mut reassembler = split::Reassembler::<2048>::new();
    let mut complete = None;
    for i in 0..2 {
        let chunk = ConfigChunk::split(&k_cfg, version, &assembled, i)
            .ok_or(format!("split.chunk.{i}: no such chunk"))?;
        let mut body = vec![0u8; chunk.buffer_len()];
        chunk.emit(&mut body).ok_or("split: emit")?;
        let name = format!("split.chunk.{i}.header");
        out.put(&name, &body[..16]);
        // The device reassembles from the document's headers and the document's bytes.
        let mut doc_body = given(v, &name, fail);
        if let Some(data) = doc_assembled.get(960 * i..(960 * (i + 1)).min(doc_assembled.len())) {
            doc_body.extend_from_slice(data);
        }
        match ConfigChunk::parse(&doc_body) {
            Ok(c) => match reassembler.push(&k_cfg, &c) {
                split::Progress::Complete(ver, bytes) => complete = Some((ver, bytes.to_vec())),
                split::Progress::Partial(_) => {}
                other => fail.push(format!("{name}: {other:?}")),
            },
            Err(e) => fail.push(format!("{name}: does not decode: {e}")),
        }
    }
    if complete != Some((version, doc_assembled.clone())) {
        fail.push("split.chunk.*.header: the device does not reassemble split.assembled".into());
    }

    // Wide telemetry.
    let mask = v.bytes("wide.channels")?;
    let mut m = [0u8; 16];
    if mask.is_empty() || mask.len() > 16 {
        return Err("wide.channels: 1..=16 bytes".into());
    }
    m[..mask.len()].copy_from_slice(&mask);
    let set = ChannelSet(u128::from_le_bytes(m));
    let now = v.u32("wide.now")?;
    let mut records = Vec::new();
    for i in 0..3 {
        let b = v.bytes(&format!("wide.record.{i}"))?;
        if b.len() != 4 + 5 * set.len() {
            return Err(format!("wide.record.{i}: wrong length"));
        }
        let time = u32::from_be_bytes(b[..4].try_into().unwrap());
        let mut values = vec![None; 128];
        for (k, ch) in set.iter().enumerate() {
            let at = 4 + 5 * k;
            match (b[at], &b[at + 1..at + 5]) {
                (1, x) => values[ch] = Some(i32::from_be_bytes(x.try_into().unwrap())),
                (0, [0, 0, 0, 0]) => {}
                _ => return Err(format!("wide.record.{i}: bad value of channel {ch}")),
            }
        }
        records.push((time, values));
    }
    let mut buf = [0u8; 256];
    let mut w = WideWriter::new(&mut buf, v.u32("wide.first_seq")?, set, now)
        .ok_or("wide: writer refused the header")?;
    for (time, values) in &records {
        if !w.push(*time, values) {
            return Err("wide: writer refused a record".into());
        }
    }
    let n = w.len();
    out.put("wide.body", &buf[..n]);
    match WideTelemetry::parse(&given(v, "wide.body", fail)) {
        Ok(t) => {
            let got: Vec<Vec<Option<i32>>> = t
                .records()
                .map(|r| (0..128).map(|c| r.get(c)).collect())
                .collect();
            let want: Vec<Vec<Option<i32>>> = records.iter().map(|r| r.1.clone()).collect();
            if got != want {
                fail.push(format!("wide.body: decodes to other values: {got:?}"));
            }
        }
        Err(e) => fail.push(format!("wide.body: does not decode: {e}")),
    }
    // Channel faults (17.8).
    {
        use tek_proto::channel::faults::{ChannelFaults, Fault, FaultEntry};
        let e = |channel, errors, last| FaultEntry {
            channel,
            errors,
            last,
        };
        let entries = [
            e(0, 3, Fault::Timeout),
            e(5, 1, Fault::Exception(2)),
            e(9, 65535, Fault::NoValue),
        ];
        let mut body = [0u8; 16];
        let n = ChannelFaults::emit(&entries, &mut body).ok_or("faults: emit refused")?;
        let msg = ChannelMessage::ChannelFaults(
            ChannelFaults::parse(&body[..n]).map_err(|e| format!("faults: {e}"))?,
        );
        let mut m = [0u8; 17];
        let n = msg.emit(&mut m).map_err(|e| format!("faults: {e}"))?;
        out.put("faults.message", &m[..n]);
        match ChannelMessage::parse(&given(v, "faults.message", fail)) {
            Ok(Some(ChannelMessage::ChannelFaults(f))) if f.entries().eq(entries) => {}
            other => fail.push(format!("faults.message: decodes to {other:?}")),
        }
    }
    // The short form of channels 0..=15: first seq 300, one record without values.
    let first16 = (0..16).fold(ChannelSet(0), |s, c| s.with(c));
    let mut w = WideWriter::new(&mut buf, 300, first16, 60).ok_or("wide: short header")?;
    if !w.push(60, &[None; 16]) {
        return Err("wide: writer refused the short form's record".into());
    }
    let n = w.len();
    out.put("wide.short.header", &buf[..4]);
    match WideTelemetry::parse(&buf[..n]) {
        Ok(t) if t.channels() == first16 && t.first_seq() == 300 => {}
        other => fail.push(format!("wide.short.header: decodes to {other:?}")),
    }
    Ok(())
}
