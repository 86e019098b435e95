#!/usr/bin/env python3
"""A tiny authoritative DNS server for the QEMU end-to-end test.

QEMU's user-mode network forwards the guest's DNS queries (to 10.0.2.3) to the resolver in the
host's /etc/resolv.conf. The end-to-end test runs QEMU in its own network and mount namespace
whose /etc/resolv.conf names 127.0.0.1, where this server answers A records for the test's
server names and NXDOMAIN for everything else. Every query is logged (one line per query on
stdout) so the test can check that the firmware really resolved the names.

Usage: dns_stub.py --listen 127.0.0.1:53 NAME=IPV4 [NAME=IPV4 ...]
Only standard-library Python 3. Malformed queries are dropped silently.
"""
import argparse
import socket
import struct
import sys


def parse_name(msg, at):
    labels = []
    while True:
        if at >= len(msg):
            raise ValueError("truncated name")
        n = msg[at]
        at += 1
        if n == 0:
            return ".".join(labels).lower(), at
        if n & 0xC0:
            raise ValueError("compression in a question")
        labels.append(msg[at:at + n].decode("ascii", "replace"))
        at += n


def answer(query, names):
    if len(query) < 12:
        raise ValueError("short header")
    qid, flags, qd, _an, _ns, _ar = struct.unpack("!HHHHHH", query[:12])
    if flags & 0x8000 or qd != 1:
        raise ValueError("not a single-question query")
    name, at = parse_name(query, 12)
    if at + 4 > len(query):
        raise ValueError("truncated question")
    qtype, qclass = struct.unpack("!HH", query[at:at + 4])
    question = query[12:at + 4]
    rd = flags & 0x0100
    addr = names.get(name)
    if addr is None:
        # NXDOMAIN, authoritative.
        hdr = struct.pack("!HHHHHH", qid, 0x8400 | rd | 3, 1, 0, 0, 0)
        return name, qtype, None, hdr + question
    if qtype != 1 or qclass != 1:
        # The name exists but has no record of that type: NOERROR, no answer.
        hdr = struct.pack("!HHHHHH", qid, 0x8400 | rd, 1, 0, 0, 0)
        return name, qtype, None, hdr + question
    hdr = struct.pack("!HHHHHH", qid, 0x8400 | rd, 1, 1, 0, 0)
    rr = struct.pack("!HHHIH", 0xC00C, 1, 1, 5, 4) + socket.inet_aton(addr)
    return name, qtype, addr, hdr + question + rr


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--listen", default="127.0.0.1:53")
    ap.add_argument("records", nargs="+", metavar="NAME=IPV4")
    args = ap.parse_args()
    names = {}
    for rec in args.records:
        name, _, addr = rec.partition("=")
        socket.inet_aton(addr)  # raises on a malformed address
        names[name.lower().rstrip(".")] = addr
    host, _, port = args.listen.rpartition(":")
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((host, int(port)))
    print(f"dns: listening on {host}:{port}", flush=True)
    while True:
        data, peer = sock.recvfrom(1500)
        try:
            name, qtype, addr, reply = answer(data, names)
        except (ValueError, struct.error) as err:
            print(f"dns: dropped malformed query from {peer[0]}: {err}", flush=True)
            continue
        print(f"dns: query {name} type {qtype} -> {addr or 'no address'}", flush=True)
        sock.sendto(reply, peer)


if __name__ == "__main__":
    sys.exit(main())
