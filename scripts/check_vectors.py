#!/usr/bin/env python3
"""Recomputes the test vectors of docs/PROTOCOL.md from the document alone.

This is a second, independent implementation of the TEK protocol's key schedule, handshake tags,
AES-128-CCM sealing and message encodings, written from PROTOCOL.md with Python's `cryptography`
package (AES-CMAC and AES-CCM with an 8-byte tag) and nothing from the Rust crate. If it agrees
with the vectors the crate produced, the specification is implementable by someone else.

Usage: check_vectors.py docs/PROTOCOL.md
Exits 0 when every vector matches, 1 (after listing every mismatch) otherwise. After a clean run
it also corrupts each vector in turn and makes sure the check notices, so it cannot pass vacuously.
"""

import datetime
import re
import struct
import sys

from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.ciphers.aead import AESCCM
from cryptography.hazmat.primitives.cmac import CMAC

# Every vector name the document must hold (section 16), and the only ones it may hold.
EXPECTED = [
    "device_key", "device_id", "boot_counter", "attempt", "device_nonce", "session_id",
    "server_nonce", "server_time",
    "hello_counter", "k_hs", "hello", "welcome.mac_input", "welcome", "kdf_context", "k_d2s",
    "k_s2d",
] + [
    f"{d}.{i}.{f}" for d in ("d2s", "s2d") for i in (0, 1)
    for f in ("counter", "message", "nonce", "datagram")
] + [
    "telemetry.first_seq", "telemetry.channels", "telemetry.now",
] + [f"telemetry.record.{i}" for i in range(5)] + [
    "telemetry.body",
    "config.version", "config.log_interval_s", "config.ethernet", "config.gsm_apn",
    "config.gsm_login", "config.gsm_password", "config.server.0", "config.server.1",
    "config.thermostat", "config.keepalive_s", "config.batch_s", "config.gsm_failover_s",
    "config.rollback_s", "config.items", "config.items_future",
    "schedule.unoccupied",
] + [f"schedule.point.{i}" for i in range(6)] + [
    "schedule.holiday.0", "schedule.holiday.1", "schedule.time_zone", "schedule.freeze",
    "schedule.items",
    "message.status", "message.config_ack", "message.command_set_relay", "message.command_ack",
    "message.pong",
] + [
    # Section 17: channels.
    "caps.message", "expr.program",
] + [f"expr.{k}.{i}" for k in ("env", "result") for i in range(3)] + [
    "chmap.bytes", "split.version", "split.k_cfg", "split.assembled", "split.chunk.0.header",
    "split.chunk.1.header", "wide.first_seq", "wide.channels", "wide.now",
] + [f"wide.record.{i}" for i in range(3)] + [
    "wide.body", "wide.short.header", "faults.message",
]


class VectorError(Exception):
    """The document's vector blocks are not well formed."""


def parse_vectors(text):
    """name -> bytes (hex values) or str (quoted values), from every ```vectors block."""
    out = {}
    in_fence = in_vectors = False
    blocks = 0
    for no, line in enumerate(text.splitlines(), 1):
        t = line.strip()
        if t.startswith("```"):
            if in_fence:
                in_fence = in_vectors = False
            else:
                in_fence = True
                in_vectors = t[3:].strip() == "vectors"
                blocks += in_vectors
            continue
        if not in_vectors or not t or t.startswith("#"):
            continue
        if ":" not in t:
            raise VectorError(f"line {no}: expected 'name: value'")
        name, value = (p.strip() for p in t.split(":", 1))
        if not name or any(not (c.islower() or c.isdigit() or c in "_.") for c in name):
            raise VectorError(f"line {no}: bad name {name!r}")
        if name in out:
            raise VectorError(f"line {no}: {name} given twice")
        if value.startswith('"'):
            if len(value) < 2 or not value.endswith('"') or '"' in value[1:-1]:
                raise VectorError(f"line {no}: bad string {value!r}")
            out[name] = value[1:-1]
        else:
            digits = "".join(value.split())
            if any(c not in "0123456789abcdef" for c in digits) or len(digits) % 2:
                raise VectorError(f"line {no}: bad hex {value!r}")
            out[name] = bytes.fromhex(digits)
    if in_fence:
        raise VectorError("unterminated code block")
    if not blocks:
        raise VectorError("no ```vectors block")
    return out


# --- primitives (section 4) -------------------------------------------------------------------

def cmac(key, data):
    c = CMAC(algorithms.AES(key))
    c.update(data)
    return c.finalize()


def kdf(key, label, context):
    """SP 800-108 counter mode, AES-CMAC PRF, 8-bit counter 1, L = 128 as 16 bits (4.2)."""
    return cmac(key, b"\x01" + label + b"\x00" + context + b"\x00\x80")


def u32(b):
    return struct.unpack(">I", b)[0]


def nonce(device_id, session_id, direction, counter):
    return struct.pack(">IIBI", device_id, session_id, direction, counter)


def seal(key, device_id, session_id, direction, counter, message):
    header = struct.pack(">BBIII", 1, 3, device_id, session_id, counter)
    n = nonce(device_id, session_id, direction, counter)
    return header + AESCCM(key, tag_length=8).encrypt(n, message, header)


def open_datagram(key, direction, datagram):
    header = datagram[:14]
    _, kind, device_id, session_id, counter = struct.unpack(">BBIII", header)
    if kind != 3:
        raise ValueError("not a session datagram")
    n = nonce(device_id, session_id, direction, counter)
    return AESCCM(key, tag_length=8).decrypt(n, datagram[14:], header)


# --- encodings (section 7) --------------------------------------------------------------------

def varint(v):
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def read_varint(b, at):
    v = 0
    for i in range(5):
        byte = b[at]
        at += 1
        if i == 4 and byte > 0x0F:
            raise ValueError("varint too long")
        v |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            return v, at
    raise ValueError("varint too long")


def wrap32(v):
    """Wrapping 32-bit two's complement."""
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


def zigzag(v):
    return ((v << 1) ^ (v >> 31)) & 0xFFFFFFFF


def unzigzag(u):
    return (u >> 1) ^ -(u & 1)


def encode_telemetry(first_seq, channels, now, records):
    """records: [(device time, [value per present channel])] (section 7.3)."""
    out = bytearray(struct.pack(">IBB", first_seq, channels, len(records)))
    prev_time, prev_values = None, None
    for time, values in records:
        out += varint(now - time if prev_time is None else time - prev_time)
        for i, v in enumerate(values):
            out += varint(zigzag(v if prev_values is None else wrap32(v - prev_values[i])))
        prev_time, prev_values = time, values
    return bytes(out)


def decode_telemetry(body):
    """-> (first seq, channels, [(seq, age, [values])])."""
    first_seq, channels, count = struct.unpack(">IBB", body[:6])
    n = bin(channels).count("1")
    at, recs = 6, []
    for k in range(count):
        step, at = read_varint(body, at)
        values = []
        for i in range(n):
            z, at = read_varint(body, at)
            d = unzigzag(z)
            values.append(d if k == 0 else wrap32(recs[-1][2][i] + d))
        age = step if k == 0 else recs[-1][1] - step
        if age < 0:
            raise ValueError("record in the future")
        recs.append((first_seq + k, age, values))
    if at != len(body):
        raise ValueError("trailing bytes")
    return first_seq, channels, recs


def item(tag, value):
    return bytes([tag, len(value)]) + value


def encode_config(cfg):
    """Items in tag order; absent Ethernet and empty strings left out (section 7.6)."""
    out = item(1, struct.pack(">H", cfg["log_interval_s"]))
    if cfg["ethernet"]:
        out += item(2, cfg["ethernet"])
    for tag, key in ((3, "gsm_apn"), (4, "gsm_login"), (5, "gsm_password")):
        if cfg[key]:
            out += item(tag, cfg[key].encode("ascii"))
    for s in cfg["servers"]:
        out += item(6, s.encode("ascii"))
    out += item(7, struct.pack(">hH", *cfg["thermostat"]))
    for tag, key in ((8, "keepalive_s"), (9, "batch_s"), (10, "gsm_failover_s"),
                     (11, "rollback_s")):
        out += item(tag, struct.pack(">H", cfg[key]))
    # Tags 12..=15 only when they differ from their defaults (section 7.6.1).
    if cfg["schedule"] is not None:
        unoccupied, points = cfg["schedule"]
        value = struct.pack(">h", unoccupied)
        for day, minute, pump, occupied in points:
            value += struct.pack(">H", day << 13 | minute << 2 | occupied << 1 | pump)
        out += item(12, value)
    if cfg["holidays"]:
        out += item(13, b"".join(struct.pack(">H", d) for d in cfg["holidays"]))
    if cfg["time_zone"]:
        out += item(14, cfg["time_zone"].encode("ascii"))
    if cfg["freeze"] != (300, 100):
        out += item(15, struct.pack(">hH", *cfg["freeze"]))
    return out


# A POSIX TZ rule as section 7.6.1 allows it (both DST dates required with a DST name).
_NAME = r"(?:[A-Za-z]{3,}|<[A-Za-z0-9+-]{3,}>)"
_OFFSET = r"[+-]?(?:[01]?[0-9]|2[0-4])(?::[0-5][0-9](?::[0-5][0-9])?)?"
_TIME = r"[+-]?(?:1[0-6][0-9]|[0-9]{1,2})(?::[0-5][0-9](?::[0-5][0-9])?)?"
_DATE = (r"(?:M(?:[1-9]|1[0-2])\.[1-5]\.[0-6]|J(?:[1-9][0-9]?|[12][0-9]{2}|3[0-5][0-9]|36[0-5])"
         r"|(?:[0-9]{1,2}|[12][0-9]{2}|3[0-5][0-9]|36[0-5]))")
TZ_RULE = re.compile(rf"{_NAME}{_OFFSET}(?:{_NAME}(?:{_OFFSET})?,{_DATE}(?:/{_TIME})?,"
                     rf"{_DATE}(?:/{_TIME})?)?")


def decode_config(items):
    """Decodes an item list, skipping unknown tags, refusing repeated known ones."""
    cfg = {"log_interval_s": 60, "ethernet": b"", "gsm_apn": "", "gsm_login": "",
           "gsm_password": "", "servers": [], "thermostat": (2700, 50), "keepalive_s": 60,
           "batch_s": 300, "gsm_failover_s": 300, "rollback_s": 900, "schedule": None,
           "holidays": [], "time_zone": "", "freeze": (300, 100)}
    u16_items = {1: ("log_interval_s", 10, 3600), 8: ("keepalive_s", 15, 600),
                 9: ("batch_s", 10, 3600), 10: ("gsm_failover_s", 30, 3600),
                 11: ("rollback_s", 60, 7200)}
    seen, at = set(), 0
    while at < len(items):
        tag, length = items[at], items[at + 1]
        value = items[at + 2:at + 2 + length]
        if len(value) != length:
            raise ValueError("truncated item")
        at += 2 + length
        if 1 <= tag <= 15 and tag != 6:
            if tag in seen:
                raise ValueError(f"tag {tag} twice")
            seen.add(tag)
        if tag in u16_items:
            key, lo, hi = u16_items[tag]
            (v,) = struct.unpack(">H", value)
            if not lo <= v <= hi:
                raise ValueError(f"tag {tag} out of range")
            cfg[key] = v
        elif tag == 2:
            if length != 16:
                raise ValueError("ethernet length")
            cfg["ethernet"] = value
        elif tag in (3, 4, 5):
            cfg[{3: "gsm_apn", 4: "gsm_login", 5: "gsm_password"}[tag]] = value.decode("ascii")
        elif tag == 6:
            cfg["servers"].append(value.decode("ascii"))
        elif tag == 7:
            cfg["thermostat"] = struct.unpack(">hH", value)
        elif tag == 12:
            if length < 2 or length % 2 or length > 2 + 2 * 40:
                raise ValueError("schedule length")
            (unoccupied,) = struct.unpack(">h", value[:2])
            if not 0 <= unoccupied <= 4000:
                raise ValueError("unoccupied setpoint out of range")
            points = []
            for (p,) in struct.iter_unpack(">H", value[2:]):
                day, minute, occupied, pump = p >> 13, (p >> 2) & 0x7FF, (p >> 1) & 1, p & 1
                if minute >= 1440:
                    raise ValueError("minute out of range")
                if points and (day, minute) <= points[-1][:2]:
                    raise ValueError("points not in order")
                points.append((day, minute, pump, occupied))
            cfg["schedule"] = (unoccupied, points)
        elif tag == 13:
            if length % 2 or length > 2 * 16:
                raise ValueError("holidays length")
            days = [d for (d,) in struct.iter_unpack(">H", value)]
            if any(a >= b for a, b in zip(days, days[1:])):
                raise ValueError("holidays not increasing")
            cfg["holidays"] = days
        elif tag == 14:
            tz = value.decode("ascii")
            if not 1 <= length <= 48 or not TZ_RULE.fullmatch(tz):
                raise ValueError("time zone")
            cfg["time_zone"] = tz
        elif tag == 15:
            limit, hysteresis = struct.unpack(">hH", value)
            if not (-1000 <= limit <= 1000 and 10 <= hysteresis <= 1000):
                raise ValueError("freeze protection out of range")
            cfg["freeze"] = (limit, hysteresis)
    return cfg


# --- channels (section 17) ---------------------------------------------------------------------

def tdiv(a, b):
    """Division truncated toward zero (17.3)."""
    q = abs(a) // abs(b)
    return q if (a < 0) == (b < 0) else -q


def eval_program(code, values):
    """Evaluates an expression program (17.3) over channel values (None = no value); no interval
    functions. Returns the value or None."""
    stack, at = [], 0
    binary = {0x10: lambda a, b: a + b, 0x11: lambda a, b: a - b, 0x12: lambda a, b: a * b,
              0x13: lambda a, b: None if b == 0 else tdiv(a, b), 0x14: min, 0x15: max,
              0x20: lambda a, b: int(a == b), 0x21: lambda a, b: int(a != b),
              0x22: lambda a, b: int(a < b), 0x23: lambda a, b: int(a <= b),
              0x24: lambda a, b: int(a > b), 0x25: lambda a, b: int(a >= b),
              0x26: lambda a, b: int(a != 0 and b != 0), 0x27: lambda a, b: int(a != 0 or b != 0)}
    while at < len(code):
        op = code[at]
        if op == 0x01:
            stack.append(struct.unpack(">b", code[at + 1:at + 2])[0]); at += 2
        elif op == 0x02:
            stack.append(struct.unpack(">i", code[at + 1:at + 5])[0]); at += 5
        elif op == 0x03:
            c = code[at + 1]
            stack.append(values[c] if c < len(values) else None); at += 2
        elif op == 0x04:
            stack.append(None); at += 1
        elif op in binary:
            b, a = stack.pop(), stack.pop()
            stack.append(None if a is None or b is None else binary[op](a, b)); at += 1
        elif op in (0x16, 0x17, 0x28):
            a = stack.pop()
            stack.append(None if a is None else {0x16: abs, 0x17: lambda x: -x,
                                                 0x28: lambda x: int(x == 0)}[op](a)); at += 1
        elif op == 0x30:
            e, t, c = stack.pop(), stack.pop(), stack.pop()
            stack.append(None if c is None else (t if c != 0 else e)); at += 1
        elif op == 0x31:
            b, a = stack.pop(), stack.pop()
            stack.append(a if a is not None else b); at += 1
        else:
            raise ValueError(f"opcode {op:#x} not supported here")
        if stack and stack[-1] is not None and not -(1 << 63) <= stack[-1] < (1 << 63):
            stack[-1] = None
    if len(stack) != 1:
        raise ValueError("program must leave one value")
    v = stack[0]
    return v if v is not None and -(1 << 31) <= v < (1 << 31) else None


def encode_map(buses, channels):
    """buses: [(baud code, parity code, timeout ms)]; channels: [(kind, body, mul, div, offset,
    unit, exponent)] (17.2)."""
    out = bytearray([1, len(buses), len(channels)])
    for baud, parity, timeout in buses:
        out += struct.pack(">BBH", baud, parity, timeout)
    for kind, body, mul, div, offset, unit, exponent in channels:
        out += bytes([kind, len(body)]) + body + struct.pack(">iHiBb", mul, div, offset, unit,
                                                             exponent)
    return bytes(out)


def section17_map(extra):
    """The channel map of 17.7, with `extra` board channels."""
    modbus = struct.pack(">BBBHBB", 0, 1, 4, 12, 4, 0)
    channels = [(1, modbus, 1, 1, 0, 1, 0), (2, bytes([2]), 1, 1, 0, 3, -2),
                (3, bytes([0x42, 0x00]), 1, 1000, 0, 1, 3)]
    channels += [(2, bytes([i % 32]), 1, 1, 0, 0, 0) for i in range(extra)]
    return encode_map([(1, 1, 200)], channels)


def encode_wide(first_seq, channels, now, records):
    """channels: sorted channel numbers; records: [(time, {channel: value or None})] (17.5)."""
    mask = sum(1 << c for c in channels)
    out = bytearray(varint(first_seq) + bytes([len(records)]))
    if channels == list(range(len(channels))):
        out.append(0x80 + len(channels) - 1)  # the short form of channels 0..=k
    else:
        mask_len = (mask.bit_length() + 7) // 8
        out.append(mask_len)
        out += mask.to_bytes(mask_len, "little")
    last, prev_time = {}, None
    for time, values in records:
        step = now - time if prev_time is None else time - prev_time
        present = [values[c] is not None for c in channels]
        gaps = not all(present)
        out += varint(step << 1 | gaps)
        if gaps:
            bits = sum(1 << k for k, p in enumerate(present) if p)
            out += bits.to_bytes((len(channels) + 7) // 8, "little")
        for c in channels:
            v = values[c]
            if v is None:
                continue
            out += varint(zigzag(wrap32(v - last[c]) if c in last else v))
            last[c] = v
        prev_time = time
    return bytes(out)


def compute_channels(v, out, fail):
    key = v["device_key"]
    out["caps.message"] = struct.pack(">BIBBHB", 0x06, 0x0F, 128, 2, 8192, 128)

    out["expr.program"] = bytes([0x03, 2, 0x02]) + struct.pack(">i", 2800) + bytes(
        [0x24, 0x03, 0, 0x01, 10, 0x12, 0x03, 3, 0x13, 0x03, 1, 0x03, 3, 0x16, 0x15, 0x30])
    for i in range(3):
        env = list(struct.unpack(">4i", v[f"expr.env.{i}"]))
        r = eval_program(out["expr.program"], env)
        out[f"expr.result.{i}"] = struct.pack(">Bi", r is not None, r or 0)

    out["chmap.bytes"] = section17_map(0)

    version = u32(v["split.version"])
    k_cfg = kdf(key, b"tek cfg", b"")
    out["split.k_cfg"] = k_cfg
    assembled = struct.pack(">H", 4) + bytes.fromhex("01020078") + section17_map(64)
    out["split.assembled"] = assembled
    total = len(assembled)
    count = -(-total // 960)
    digest = cmac(k_cfg, struct.pack(">I", version) + assembled)[:8]
    for i in range(count):
        out[f"split.chunk.{i}.header"] = struct.pack(">IHBB", version, total, i, count) + digest
    # The document's chunks reassemble to the document's configuration with a matching digest.
    doc = v["split.assembled"]
    if cmac(k_cfg, v["split.version"] + doc)[:8] != v.get("split.chunk.0.header", b"")[8:16]:
        fail.append("split.chunk.0.header: digest does not match split.assembled")

    mask = int.from_bytes(v["wide.channels"], "little")
    channels = [c for c in range(128) if mask >> c & 1]
    records = []
    for i in range(3):
        r = v[f"wide.record.{i}"]
        if len(r) != 4 + 5 * len(channels):
            raise ValueError(f"wide.record.{i}: wrong length")
        values = {}
        for k, c in enumerate(channels):
            flag, value = struct.unpack(">Bi", r[4 + 5 * k:9 + 5 * k])
            if flag not in (0, 1) or (flag == 0 and value != 0):
                raise ValueError(f"wide.record.{i}: bad value of channel {c}")
            values[c] = value if flag else None
        records.append((u32(r[:4]), values))
    out["wide.body"] = encode_wide(u32(v["wide.first_seq"]), channels, u32(v["wide.now"]),
                                   records)
    # 17.8: (channel, errors, last failure code, exception code).
    out["faults.message"] = bytes([0x09, 3]) + b"".join(
        struct.pack(">BHBB", *e) for e in [(0, 3, 1, 0), (5, 1, 3, 2), (9, 65535, 5, 0)])
    # Channels 0..=15, first seq 300, one record: the header's short form, then the record.
    out["wide.short.header"] = encode_wide(300, list(range(16)), 60,
                                           [(60, {c: None for c in range(16)})])[:4]


# --- the check --------------------------------------------------------------------------------

def compute(v, fail):
    """name -> bytes for every output, computed from the inputs; other problems go to `fail`."""
    out = {}
    key = v["device_key"]
    device_id = u32(v["device_id"])
    counter = (u32(v["boot_counter"]) << 32) | u32(v["attempt"])
    dn, sn = v["device_nonce"], v["server_nonce"]
    session_id = u32(v["session_id"])
    out["hello_counter"] = struct.pack(">Q", counter)

    k_hs = kdf(key, b"tek hs", b"")
    out["k_hs"] = k_hs
    hello_body = struct.pack(">BBIQ", 1, 1, device_id, counter) + dn
    hello = hello_body + cmac(k_hs, hello_body)
    out["hello"] = hello
    welcome_body = struct.pack(">BBII", 1, 2, device_id, session_id) + sn + v["server_time"]
    out["welcome.mac_input"] = welcome_body + hello[6:30]
    out["welcome"] = welcome_body + cmac(k_hs, welcome_body + hello[6:30])

    ctx = struct.pack(">IIQ", device_id, session_id, counter) + dn + sn
    out["kdf_context"] = ctx
    keys = {0: kdf(key, b"tek d2s", ctx), 1: kdf(key, b"tek s2d", ctx)}
    out["k_d2s"], out["k_s2d"] = keys[0], keys[1]

    # Telemetry from the stated records.
    channels = v["telemetry.channels"][0]
    n = bin(channels).count("1")
    records = []
    i = 0
    while f"telemetry.record.{i}" in v:
        r = v[f"telemetry.record.{i}"]
        if len(r) != 4 + 4 * n:
            fail.append(f"telemetry.record.{i}: {len(r)} bytes, expected {4 + 4 * n}")
            return out
        records.append((u32(r[:4]), list(struct.unpack(f">{n}i", r[4:]))))
        i += 1
    first_seq, now = u32(v["telemetry.first_seq"]), u32(v["telemetry.now"])
    body = encode_telemetry(first_seq, channels, now, records)
    out["telemetry.body"] = body
    out["d2s.1.message"] = b"\x01" + body
    try:
        got = decode_telemetry(v.get("telemetry.body", b""))
        want = (first_seq, channels,
                [(first_seq + k, now - t, vals) for k, (t, vals) in enumerate(records)])
        if got != want:
            fail.append(f"telemetry.body: decodes to {got}")
    except (ValueError, IndexError, struct.error) as e:
        fail.append(f"telemetry.body: does not decode: {e}")

    # Configuration from the stated fields.
    servers = []
    while f"config.server.{len(servers)}" in v:
        servers.append(v[f"config.server.{len(servers)}"])
    cfg = {
        "log_interval_s": struct.unpack(">H", v["config.log_interval_s"])[0],
        "ethernet": v["config.ethernet"],
        "gsm_apn": v["config.gsm_apn"], "gsm_login": v["config.gsm_login"],
        "gsm_password": v["config.gsm_password"], "servers": servers,
        "thermostat": struct.unpack(">hH", v["config.thermostat"]),
        "keepalive_s": struct.unpack(">H", v["config.keepalive_s"])[0],
        "batch_s": struct.unpack(">H", v["config.batch_s"])[0],
        "gsm_failover_s": struct.unpack(">H", v["config.gsm_failover_s"])[0],
        "rollback_s": struct.unpack(">H", v["config.rollback_s"])[0],
        "schedule": None, "holidays": [], "time_zone": "", "freeze": (300, 100),
    }
    items = encode_config(cfg)
    out["config.items"] = items
    out["s2d.1.message"] = b"\x82" + v["config.version"] + items
    for name in ("config.items", "config.items_future"):
        try:
            got = decode_config(v.get(name, b""))
            if got != cfg:
                fail.append(f"{name}: decodes to {got}")
        except (ValueError, IndexError, struct.error, UnicodeDecodeError) as e:
            fail.append(f"{name}: does not decode: {e}")
    if v.get("config.items_future") == v.get("config.items"):
        fail.append("config.items_future: must carry unknown items")

    # Schedule items: the factory configuration plus tags 12..=15 from the stated fields.
    points = []
    while f"schedule.point.{len(points)}" in v:
        day, minute, flags = struct.unpack(">BHB", v[f"schedule.point.{len(points)}"])
        points.append((day, minute, flags & 1, flags >> 1 & 1))
    holidays = []
    while f"schedule.holiday.{len(holidays)}" in v:
        date = datetime.date.fromisoformat(v[f"schedule.holiday.{len(holidays)}"])
        holidays.append((date - datetime.date(1970, 1, 1)).days)
    scheduled = {
        "log_interval_s": 60, "ethernet": b"", "gsm_apn": "", "gsm_login": "",
        "gsm_password": "", "servers": [], "thermostat": (2700, 50), "keepalive_s": 60,
        "batch_s": 300, "gsm_failover_s": 300, "rollback_s": 900,
        "schedule": (struct.unpack(">h", v["schedule.unoccupied"])[0], points),
        "holidays": holidays, "time_zone": v["schedule.time_zone"],
        "freeze": struct.unpack(">hH", v["schedule.freeze"]),
    }
    out["schedule.items"] = encode_config(scheduled)
    try:
        got = decode_config(v.get("schedule.items", b""))
        if got != scheduled:
            fail.append(f"schedule.items: decodes to {got}")
    except (ValueError, IndexError, struct.error, UnicodeDecodeError) as e:
        fail.append(f"schedule.items: does not decode: {e}")

    # Session datagrams: counters 0, 1 in each direction, in the order they were sealed.
    for d, direction in (("d2s", 0), ("s2d", 1)):
        for c in (0, 1):
            p = f"{d}.{c}"
            message = out.get(f"{p}.message", v.get(f"{p}.message", b""))
            out[f"{p}.counter"] = struct.pack(">I", c)
            out[f"{p}.nonce"] = nonce(device_id, session_id, direction, c)
            out[f"{p}.datagram"] = seal(keys[direction], device_id, session_id, direction, c,
                                        message)
            try:
                plain = open_datagram(keys[direction], direction, v.get(f"{p}.datagram", b""))
                if plain != message:
                    fail.append(f"{p}.datagram: opens to {plain.hex()}")
            except Exception as e:  # InvalidTag, struct.error, ...: all mean "does not open"
                fail.append(f"{p}.datagram: does not open: {type(e).__name__} {e}")

    # Plain messages whose meaning section 16 states in words.
    ok = v.get("d2s.0.message", b"")
    if ok[:1] == b"\x05" and len(ok) == 6 and ok[1] & 0xFE:
        fail.append("d2s.0.message: keepalive flags out of range")
    out["message.status"] = b"\x02" + struct.pack(
        ">BB4s4s4s4sI3sIIHIIIIBBBB", 0, 0x01 | 0x08, bytes([192, 168, 1, 77]),
        bytes([255, 255, 255, 0]), bytes([192, 168, 1, 1]), bytes([192, 168, 1, 1]), 86690,
        bytes([1, 0, 0]), 11, 0, 5, 290512, 180220, 0, 0, 99, 0, 0b01, 0)
    out["message.config_ack"] = struct.pack(">BIB", 0x03, 12, 0)
    out["message.command_set_relay"] = struct.pack(">BIBBB", 0x83, 42, 1, 1, 1)
    out["message.command_ack"] = struct.pack(">BIB", 0x04, 42, 0)
    out["message.pong"] = struct.pack(">BI", 0x84, 1764000350)
    compute_channels(v, out, fail)
    return out


def check(v):
    """Every problem with the vectors `v` (an empty list when all is well)."""
    fail = [f"{n}: missing from the document" for n in EXPECTED if n not in v]
    fail += [f"{n}: not a vector this checker knows" for n in v if n not in EXPECTED]
    if fail:
        return fail
    try:
        out = compute(v, fail)
    except (KeyError, ValueError, TypeError, IndexError, struct.error, AttributeError) as e:
        return fail + [f"cannot compute: {type(e).__name__}: {e}"]
    for name, value in out.items():
        if v.get(name) != value:
            have = v.get(name)
            have = have.hex() if isinstance(have, bytes) else repr(have)
            fail.append(f"{name}: document has {have}, computed {value.hex()}")
    return fail


def main(argv):
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[0], file=sys.stderr)
        print("usage: check_vectors.py docs/PROTOCOL.md", file=sys.stderr)
        return 2
    with open(argv[1], encoding="utf-8") as f:
        text = f.read()
    try:
        v = parse_vectors(text)
    except VectorError as e:
        print(f"check_vectors: {argv[1]}: {e}", file=sys.stderr)
        return 1
    fail = check(v)
    if fail:
        print(f"check_vectors: {len(fail)} MISMATCH(ES) in {argv[1]}:", file=sys.stderr)
        for f_ in fail:
            print(f"  {f_}", file=sys.stderr)
        return 1
    # Not vacuous: every single corrupted or deleted vector must be caught.
    for name in EXPECTED:
        broken = dict(v)
        value = broken[name]
        if isinstance(value, bytes):
            broken[name] = value[:-1] + bytes([value[-1] ^ 1]) if value else b"\x00"
        else:
            broken[name] = value + "x"
        gone = dict(v)
        del gone[name]
        if not check(broken) or not check(gone):
            print(f"check_vectors: corrupting {name} went unnoticed", file=sys.stderr)
            return 1
    print(f"check_vectors: all {len(v)} vectors of {argv[1]} recomputed independently: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
