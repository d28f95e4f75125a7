#!/usr/bin/env python3
"""rawpeer.py - a Baton peer written from the wire format alone, for tests that
must send what the C client library refuses to send (not a test itself).

  rawpeer.py generate HOST:PORT [--temperature X] [--top-p X] [--min-p X] [--top-k N]
             [--repeat-penalty X] [--presence-penalty X] [--frequency-penalty X]
             [--text-bytes N] [--tokens 1,2,3] [--max-tokens N] [--calls N]
      one Generate call as a client; prints "CODE MESSAGE" of its final status, the
      number of tokens streamed ("tokens=N"), the longest gap between two of them
      ("max_gap_ms=G"), when each arrived ("times_ms=..." on CLOCK_MONOTONIC) and the
      token ids ("ids=1,2,3", last) - X may be nan, inf, -inf
      --calls N: the same request N times at once on the one connection (call ids 1..N);
      prints "call=K CODE MESSAGE" for each final status as it arrives (flushed), then exits
  rawpeer.py peer HOST:PORT
      a hello with role PEER and an empty AuthProof to a worker's stage port, then
      a stage frame if it gets that far; prints what happened
Frames: 20-byte header (magic "BTN1", kind u16, flags u16, call id u32, message
length u32, payload length u32), then a protobuf message (proto/baton.proto).
"""
import os
import socket
import struct
import sys
import time

MAGIC = 0x314E5442
HELLO, CALL_STATUS, GENERATE, GENERATE_CHUNK, STAGE, AUTH_PROOF, AUTH_OK = 1, 2, 10, 11, 40, 60, 61
ROLE_CLIENT, ROLE_PEER = 1, 4


def varint(v):
    out = bytearray()
    v &= (1 << 64) - 1
    while True:
        b = v & 0x7F
        v >>= 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return bytes(out)


def field_varint(n, v):
    return varint(n << 3) + varint(v)


def field_bytes(n, b):
    return varint((n << 3) | 2) + varint(len(b)) + b


def field_float(n, x):
    return varint((n << 3) | 5) + struct.pack("<f", x)


def parse(msg):
    """protobuf fields -> {number: [values]} (varints as int, length-delimited as bytes)."""
    out, i = {}, 0
    while i < len(msg):
        key, i = read_varint(msg, i)
        n, wt = key >> 3, key & 7
        if wt == 0:
            v, i = read_varint(msg, i)
        elif wt == 2:
            ln, i = read_varint(msg, i)
            v, i = msg[i:i + ln], i + ln
        elif wt == 5:
            v, i = struct.unpack("<f", msg[i:i + 4])[0], i + 4
        elif wt == 1:
            v, i = msg[i:i + 8], i + 8
        else:
            raise ValueError("wire type %d" % wt)
        out.setdefault(n, []).append(v)
    return out


def read_varint(b, i):
    v = s = 0
    while True:
        c = b[i]
        i += 1
        v |= (c & 0x7F) << s
        s += 7
        if not c & 0x80:
            return v, i


class Conn:
    def __init__(self, addr, timeout=30):
        host, port = addr.rsplit(":", 1)
        self.s = socket.create_connection((host, int(port)), timeout=timeout)
        self.buf = b""

    def send(self, kind, msg=b"", call_id=0, payload=b""):
        self.s.sendall(struct.pack("<IHHIII", MAGIC, kind, 0, call_id, len(msg), len(payload)) + msg + payload)

    def recv(self):
        while True:
            if len(self.buf) >= 20:
                magic, kind, _, call_id, ml, pl = struct.unpack("<IHHIII", self.buf[:20])
                if magic != MAGIC:
                    raise ValueError("bad magic")
                if len(self.buf) >= 20 + ml + pl:
                    msg = self.buf[20:20 + ml]
                    self.buf = self.buf[20 + ml + pl:]
                    return kind, call_id, msg
            chunk = self.s.recv(1 << 16)
            if not chunk:
                raise EOFError("connection closed")
            self.buf += chunk

    def hello(self, role, cluster="baton"):
        self.send(HELLO, field_varint(1, 1) + field_varint(2, role) + field_bytes(3, cluster.encode()) +
                  field_bytes(4, b"rawpeer") + field_varint(5, 1) + field_varint(7, 1) + field_bytes(8, os.urandom(32)))
        kind, _, msg = self.recv()
        if kind != HELLO:
            return status_text(msg) if kind == CALL_STATUS else "unexpected frame %d" % kind
        self.send(AUTH_PROOF, b"")
        kind, _, msg = self.recv()
        if kind == AUTH_OK:
            return None
        return status_text(msg) if kind == CALL_STATUS else "unexpected frame %d" % kind


def status_text(msg):
    f = parse(msg)
    return "%d %s" % (f.get(1, [0])[0], f.get(2, [b""])[0].decode(errors="replace"))


def opt(args, name, default=None):
    return args[args.index(name) + 1] if name in args else default


def generate(addr, args):
    c = Conn(addr, timeout=120)
    err = c.hello(ROLE_CLIENT)
    if err:
        print("refused", err)
        return 1
    sp = b""
    for num, name in ((1, "--temperature"), (3, "--top-p"), (4, "--min-p"), (5, "--repeat-penalty"),
                      (6, "--presence-penalty"), (7, "--frequency-penalty")):
        v = opt(args, name)
        if v is not None:
            sp += field_float(num, float(v))
    if opt(args, "--top-k") is not None:
        sp += field_varint(2, int(opt(args, "--top-k")))
    if opt(args, "--seed") is not None:
        sp += field_varint(9, int(opt(args, "--seed")))
    req = b""
    if opt(args, "--tokens"):
        req += field_bytes(1, b"".join(varint(int(t)) for t in opt(args, "--tokens").split(",")))
    if opt(args, "--text-bytes"):
        n = int(opt(args, "--text-bytes"))
        req += field_bytes(2, (b"the sky is blue " * (n // 16 + 1))[:n])
    req += field_bytes(4, sp) + field_varint(5, int(opt(args, "--max-tokens", "4"))) + field_varint(8, 1)
    calls = int(opt(args, "--calls", "0"))
    if calls:
        for k in range(1, calls + 1):
            c.send(GENERATE, req, call_id=k)
        done = 0
        while done < calls:
            kind, call_id, msg = c.recv()
            if kind == CALL_STATUS:
                print("call=%d" % call_id, status_text(msg), flush=True)
                done += 1
        return 0
    c.send(GENERATE, req, call_id=1)
    ids, last, gap, times = [], None, 0.0, []
    while True:
        kind, call_id, msg = c.recv()
        if kind == GENERATE_CHUNK:
            now = time.monotonic()
            if last is not None:
                gap = max(gap, now - last)
            last = now
            times.append("%.0f" % (now * 1000))
            packed = parse(msg).get(1, [b""])
            for p in packed:
                if isinstance(p, int):
                    ids.append(p)
                    continue
                i = 0
                while i < len(p):
                    v, i = read_varint(p, i)
                    ids.append(v)
        elif kind == CALL_STATUS and call_id == 1:
            print(status_text(msg), "tokens=%d" % len(ids), "max_gap_ms=%.0f" % (gap * 1000),
                  "times_ms=" + ",".join(times), "ids=" + ",".join(map(str, ids)))
            return 0


def peer(addr):
    c = Conn(addr, timeout=10)
    try:
        err = c.hello(ROLE_PEER)
    except (EOFError, ConnectionError) as e:
        print("closed during the handshake:", e)
        return 0
    if err:
        print("refused", err)
        return 0
    # let in: try to push a stage frame (an empty one) as if we were the predecessor
    c.send(STAGE, field_varint(1, 999999) + field_varint(5, 1) + field_varint(6, 8))
    print("accepted as a peer")
    return 0


def main():
    if len(sys.argv) < 3:
        print(__doc__)
        return 2
    if sys.argv[1] == "generate":
        return generate(sys.argv[2], sys.argv[3:])
    if sys.argv[1] == "peer":
        return peer(sys.argv[2])
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main())
