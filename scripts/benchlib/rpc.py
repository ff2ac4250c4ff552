"""Request/response flows for scripts/bench (use case 1, tail latency), run
inside a namespace, over MPTCP (IPPROTO_MPTCP).

  rpc.py server PORT            for every connection: read a 4-byte length
                                and that many bytes, answer one byte, again
  rpc.py client ADDR PORT N SEED GAP_MS MIN MAX
                                one connection (its subflows come from the
                                path manager); N requests of a size drawn
                                uniformly from [MIN, MAX] bytes with
                                random.Random(SEED), GAP_MS apart; prints a
                                JSON object: completion times in ms (first
                                byte sent to the answer read) and the sizes
"""

import json
import random
import socket
import struct
import sys
import threading
import time

IPPROTO_MPTCP = 262


def recv_exact(c, n):
    buf = bytearray()
    while len(buf) < n:
        b = c.recv(min(1 << 16, n - len(buf)))
        if not b:
            return None
        buf += b
    return buf


def handle(c):
    with c:
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while True:
            h = recv_exact(c, 4)
            if h is None:
                return
            if recv_exact(c, struct.unpack("!I", h)[0]) is None:
                return
            c.sendall(b"k")


def serve(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM, IPPROTO_MPTCP)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port))
    s.listen(64)
    while True:
        c, _ = s.accept()
        threading.Thread(target=handle, args=(c,), daemon=True).start()


def client(addr, port, n, seed, gap, lo, hi):
    rnd = random.Random(seed)
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM, IPPROTO_MPTCP)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.settimeout(30)
    s.connect((addr, port))
    time.sleep(0.5)  # the second subflow joins
    fct, sizes = [], []
    for _ in range(n):
        size = rnd.randint(lo, hi)
        msg = struct.pack("!I", size) + b"x" * size
        t = time.perf_counter()
        s.sendall(msg)
        if s.recv(1) != b"k":
            raise SystemExit("rpc.py: no answer from the server")
        fct.append((time.perf_counter() - t) * 1e3)
        sizes.append(size)
        time.sleep(gap / 1e3)
    s.close()
    print(json.dumps({"fct_ms": fct, "sizes": sizes}))


if __name__ == "__main__":
    if sys.argv[1] == "server":
        serve(int(sys.argv[2]))
    else:
        a = sys.argv
        client(a[2], int(a[3]), int(a[4]), int(a[5]), float(a[6]), int(a[7]), int(a[8]))
