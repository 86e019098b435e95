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
