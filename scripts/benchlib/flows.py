"""Short flows for scripts/bench (use case 2a), run inside a namespace.

  flows.py server PORT        TCP listener on PORT, MPTCP on PORT+1: read
                              until EOF, answer one byte, close
  flows.py client ADDR PORT tcp|mptcp N SIZE GAP_MS
                              N sequential uploads of SIZE bytes; prints a
                              JSON list of completion times in ms (connect
                              to the server's answer: handshake + transfer)
"""

import json
import socket
import sys
import threading
import time

IPPROTO_MPTCP = 262


def serve(port, proto):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM, proto)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port))
    s.listen(64)
    while True:
        c, _ = s.accept()
        threading.Thread(target=handle, args=(c,), daemon=True).start()


def handle(c):
    with c:
        while c.recv(1 << 16):
            pass
        c.sendall(b"k")


def client(addr, port, proto, n, size, gap):
    data = b"x" * size
    fct = []
    for _ in range(n):
        t = time.perf_counter()
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM,
                          IPPROTO_MPTCP if proto == "mptcp" else 0)
        s.settimeout(20)
        s.connect((addr, port))
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        if s.recv(1) != b"k":
            raise SystemExit("flows.py: no answer from the server")
        fct.append((time.perf_counter() - t) * 1e3)
        s.close()
        time.sleep(gap / 1e3)
    print(json.dumps(fct))


if __name__ == "__main__":
    if sys.argv[1] == "server":
        p = int(sys.argv[2])
        threading.Thread(target=serve, args=(p, 0), daemon=True).start()
        serve(p + 1, IPPROTO_MPTCP)
    else:
        client(sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5]),
               int(sys.argv[6]), float(sys.argv[7]))
