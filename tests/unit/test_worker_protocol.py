"""The worker's side of the wire protocol (worker/worker.c) against a fake
daemon on a Unix socket: the worker says hello then claim, takes welcome, and
ignores a cancel about a job it does not hold; a message type it does not know,
or one only a worker sends, is a protocol error: it logs it, drops the
connection and exits 1 (a supervisor restarts it), instead of going on as if
the message meant something."""
import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time

FT_BIN = os.environ.get("FT_BIN", os.path.join(os.getcwd(), "build", "bin"))
passed = failed = 0


def check(desc, cond, detail=""):
    global passed, failed
    if cond:
        passed += 1
        print("ok  ", desc)
    else:
        failed += 1
        print("FAIL", desc, detail, file=sys.stderr)


def send(conn, msg):
    body = json.dumps(msg).encode()
    conn.sendall(struct.pack(">I", len(body)) + body)


def recv(conn, timeout=5.0):
    conn.settimeout(timeout)
    head = b""
    while len(head) < 4:
        chunk = conn.recv(4 - len(head))
        if not chunk:
            return None
        head += chunk
    (n,) = struct.unpack(">I", head)
    body = b""
    while len(body) < n:
        chunk = conn.recv(n - len(body))
        if not chunk:
            return None
        body += chunk
    return json.loads(body)


def session(tmp, name, bad_msg):
    """A worker that is welcomed, told about a job it does not hold, then sent
    bad_msg. Returns (alive after the harmless message, exit code, log)."""
    path = os.path.join(tmp, name + ".sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)
    log = open(os.path.join(tmp, name + ".log"), "w+")
    w = subprocess.Popen([os.path.join(FT_BIN, "finetuned-worker"), "--connect", "unix:" + path,
                          "--id", name], stdout=log, stderr=log)
    alive, code = False, None
    try:
        srv.settimeout(10)
        conn, _ = srv.accept()
        hello, claim = recv(conn), recv(conn)
        check(name + ": hello then claim", hello and hello.get("type") == "hello"
              and claim and claim.get("type") == "claim", "%r %r" % (hello, claim))
        send(conn, {"type": "welcome", "heartbeat_ms": 1000, "lease_ms": 5000,
                    "worker_id": name})
        send(conn, {"type": "cancel", "job_id": "ftjob-" + "0" * 24, "attempt": 1})
        time.sleep(0.5)
        alive = w.poll() is None
        send(conn, bad_msg)
        try:
            code = w.wait(timeout=10)
        except subprocess.TimeoutExpired:
            code = None
        conn.close()
    finally:
        if w.poll() is None:
            w.kill()
            w.wait()
        srv.close()
    log.seek(0)
    return alive, code, log.read()


def main():
    with tempfile.TemporaryDirectory(prefix="ftwproto.") as tmp:
        for name, bad in [("unknown", {"type": "canceled", "job_id": "x", "attempt": 1}),
                          ("wrong-side", {"type": "heartbeat", "job_id": "x", "attempt": 1})]:
            alive, code, log = session(tmp, name, bad)
            check(name + ": a known message leaves the worker running", alive, log[-2000:])
            check(name + ": exits 1 on " + bad["type"], code == 1, "exit %r\n%s" % (code, log))
            check(name + ": the log names the protocol error",
                  "unknown message type" in log and bad["type"] in log, log[-2000:])
    print("%d passed, %d failed" % (passed, failed))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
