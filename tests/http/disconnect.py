#!/usr/bin/env python3
"""disconnect.py - a streaming client of Baton's HTTP API that goes away mid-stream.

    disconnect.py HOST:PORT KEY MAX_TOKENS AFTER BUSY_CMD...

Sends POST /v1/completions with stream=true and max_tokens MAX_TOKENS, reads until
AFTER tokens have arrived, then stops reading (the connection stays open) and runs
BUSY_CMD every 50 ms until it exits 0 (the workers report the slot busy; at most
5 s), then closes the connection. Prints one JSON line: tokens received, whether
the stream had ended already, busy seen, and the close time (time.time()).
"""
import json
import socket
import subprocess
import sys
import time

host, port = sys.argv[1].rsplit(":", 1)
key, max_tokens, after = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
busy_cmd = sys.argv[5:]
body = json.dumps({"prompt": "Once upon a time", "max_tokens": max_tokens, "temperature": 0, "stream": True,
                   "ignore_eos": True}).encode()
s = socket.create_connection((host, int(port)))
s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer " + key.encode() +
          b"\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
buf = b""
while buf.count(b'"text":') < after and b"[DONE]" not in buf:
    d = s.recv(4096)
    if not d:
        break
    buf += d
n = buf.count(b'"text":')
busy = False
t_end = time.time() + 5
while time.time() < t_end:
    if subprocess.run(busy_cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0:
        busy = True
        break
    time.sleep(0.05)
s.setblocking(False)
try:
    while True:
        d = s.recv(1 << 20)
        if not d:
            break
        buf += d
except BlockingIOError:
    pass
ended = b"[DONE]" in buf
t_close = time.time()
s.close()
print(json.dumps({"tokens": n, "ended": ended, "busy": busy, "t_close": t_close}))
