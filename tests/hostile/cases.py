"""The hostile-input corpus for tests/fault/test_hostile_slow.py: every case
with the answer the daemon must give. Not a test itself (no test_ prefix).

A case is a dict:
  cat     category (json_bomb, number, duplicate_key, utf8, header, url,
          slow, traversal, foreign_id, multipart, content_type, worker)
  name    unique name
  kind    "http": raw bytes to the HTTP port, the answer read until close;
          "slow": the same bytes dribbled (see runner), /healthz checked
          meanwhile; "worker": frames to the worker socket (see WORKER)
  send    bytes; {FILE} {BADFILE} {JOB} {MODEL} are the ids of real objects
          the runner creates first: it sets CTX before running this module
          (Content-Length is computed after they are filled in)
  expect  the HTTP status; 0 = the connection is closed with no answer
  param   (optional) the error's "param" the answer must name
  wait    (optional) seconds to wait for an answer (default 10)

Expected statuses follow ft_err.h: 400 invalid input, 404 no such object or
URL, 405 wrong method, 413 too large, 415 wrong Content-Type; statuses from
libmicrohttpd's own parser (400, 413/414/431 for oversize request lines and
headers, 501 for transfer codings it lacks, 505 bad versions) are as
RFC 9110/9112 ask."""

HOST = b"Host: x\r\nConnection: close\r\n"
CTX = globals().get("CTX") or {}  # set by the runner before this module runs


def fill(b):
    for k, v in CTX.items():
        b = b.replace(("{%s}" % k).encode(), v.encode())
    return b


def req(method, path, body=b"", headers=b"", cl=True, version=b"HTTP/1.1"):
    if isinstance(path, str):
        path = path.encode()
    if isinstance(body, str):
        body = body.encode()
    path, body = fill(path), fill(body)
    h = method.encode() + b" " + path + b" " + version + b"\r\n" + HOST + headers
    if cl and (body or method in ("POST", "PUT")):
        h += b"Content-Length: %d\r\n" % len(body)
    return h + b"\r\n" + body


def job(body, headers=b"Content-Type: application/json\r\n"):
    return req("POST", "/v1/fine_tuning/jobs", body, headers)


def jobf(fields):
    """A job body with a real training file and the given extra JSON text."""
    return job(b'{"model":"{MODEL}","training_file":"{FILE}"' + fields + b"}")


def hp(k, v):
    return jobf(b',"method":{"type":"supervised","supervised":{"hyperparameters":{"%s":%s}}}' %
                (k.encode(), v))


def mp(parts, boundary=b"XyZ", ctype=None, tail=True):
    """A multipart/form-data upload of (headers, content) parts."""
    body = b""
    for hdrs, content in parts:
        body += b"--" + boundary + b"\r\n" + hdrs + b"\r\n\r\n" + content + b"\r\n"
    if tail:
        body += b"--" + boundary + b"--\r\n"
    if ctype is None:
        ctype = b"multipart/form-data; boundary=" + boundary
    return req("POST", "/v1/files", body, b"Content-Type: " + ctype + b"\r\n")


GOOD = b'{"prompt":"a","completion":"b"}\n'
FILEPART = (b'Content-Disposition: form-data; name="file"; filename="d.jsonl"', GOOD)
PURPOSE = (b'Content-Disposition: form-data; name="purpose"', b"fine-tune")

CASES = []


def add(cat, name, send, expect, kind="http", **kw):
    CASES.append(dict(cat=cat, name=name, kind=kind, send=send, expect=expect, **kw))


# ---- JSON bombs -------------------------------------------------------------
for d in (33, 64, 1000, 100000):  # the daemon caps nesting before jansson sees it
    add("json_bomb", "nested arrays %d" % d, job(b"[" * d + b"]" * d), 400)
    add("json_bomb", "nested objects %d" % d, job(b'{"a":' * d + b"1" + b"}" * d), 400)
    add("json_bomb", "unclosed nesting %d" % d, job(b"[" * d), 400)
add("json_bomb", "nested in a field", jobf(b',"metadata":' + b"[" * 5000 + b"]" * 5000), 400)
add("json_bomb", "array of 400k zeros", job(b"[" + b"0," * 400000 + b"0]"), 400)
add("json_bomb", "field array of 300k", jobf(b',"suffix":[' + b"1," * 300000 + b"1]"), 400,
    param="suffix")
add("json_bomb", "60k unknown keys",
    job(b"{" + b",".join(b'"k%d":0' % i for i in range(60000)) + b"}"), 400)
add("json_bomb", "string of 900 kB", job(b'{"model":"' + b"a" * 900000 + b'"}'), 400)
add("json_bomb", "body just over 1 MiB", job(b'{"model":"' + b"a" * (1 << 20) + b'"}'), 413)
add("json_bomb", "Content-Length 1 GiB, no body",
    req("POST", "/v1/fine_tuning/jobs", b"", b"Content-Length: 1073741824\r\n", cl=False), 413)
add("json_bomb", "4 MB chunked body",
    req("POST", "/v1/fine_tuning/jobs",
        b"".join(b"10000\r\n" + b"[" * 65536 + b"\r\n" for _ in range(64)) + b"0\r\n\r\n",
        b"Transfer-Encoding: chunked\r\n", cl=False), 413)
add("json_bomb", "empty body", job(b""), 400)
add("json_bomb", "only whitespace", job(b" \r\n\t " * 1000), 400)
add("json_bomb", "a JSON string", job(b'"x"'), 400)
add("json_bomb", "null", job(b"null"), 400)
add("json_bomb", "two objects", job(b'{"model":"m"}{"model":"m"}'), 400)
add("json_bomb", "trailing garbage", job(b'{"model":"{MODEL}","training_file":"{FILE}"}xx'), 400)
add("json_bomb", "many \\u escapes", job(b'{"model":"' + b"\\ud83d\\ude00" * 50000 + b'"}'), 400)

# ---- numbers ----------------------------------------------------------------
# numbers jansson cannot hold are invalid JSON (no param); the rest are range
# or type errors naming the field; 1e-999 is 0.0, a real where an integer goes
for v in (b"1e999", b"-1e999", b"2e308", b"9223372036854775808", b"18446744073709551616", b"NaN",
          b"Infinity", b"-", b"01", b"0x10"):
    add("number", "seed %s" % v.decode(), jobf(b',"seed":' + v), 400)
for v, want in ((b"-0", 200), (b"0", 200), (b"2147483647", 200), (b"null", 200),
                (b"9223372036854775807", 400), (b"2147483648", 400), (b"-1", 400), (b"1.5", 400),
                (b"1e3", 400), (b"1e-999", 400), (b'"7"', 400), (b"true", 400)):
    add("number", "seed %s" % v.decode(), jobf(b',"seed":' + v), want,
        param="seed" if want == 400 else None)
for k, v in (("n_epochs", b"1e999"), ("n_epochs", b"-0"), ("n_epochs", b"2147483648"),
             ("n_epochs", b"4294967297"), ("n_epochs", b"-9223372036854775808"),
             ("n_epochs", b"1.0000000000000002"), ("batch_size", b"1e308"),
             ("learning_rate", b"1e-320"), ("learning_rate", b"-0.0"), ("learning_rate", b"1e999"),
             ("learning_rate", b"2"), ("learning_rate", b"1e-45"), ("warmup_ratio", b"-0.0"),
             ("warmup_ratio", b"0.9999999999999999"), ("max_seq_len", b"9223372036854775807"),
             ("gradient_accumulation_steps", b"0"), ("weight_decay", b"1.0000001"),
             ("max_grad_norm", b"1e39"), ("max_grad_norm", b"1e6")):
    # (values are kept as floats: 0.9999999999999999 is 1.0f, out of [0, 1),
    # and 1e-320 is 0.0f, out of (0, 1]; 1e-45 is the smallest float, > 0)
    want = 200 if (k, v) in (("max_grad_norm", b"1e6"), ("warmup_ratio", b"-0.0"),
                             ("learning_rate", b"1e-45")) else 400
    add("number", "%s %s" % (k, v.decode()), hp(k, v), want,
        param=None if want == 200 or v == b"1e999" else
        "method.supervised.hyperparameters." + k)
add("number", "lora r 2^63", jobf(b',"adapter":{"type":"lora","r":9223372036854775807}'), 400,
    param="adapter.r")
add("number", "lora alpha 1e999", jobf(b',"adapter":{"type":"lora","alpha":1e999}'), 400)
add("number", "checkpoints keep -0", jobf(b',"checkpoints":{"keep":-0}'), 400,
    param="checkpoints.keep")
add("number", "validation_split 1e-400 (underflows to 0)",
    jobf(b',"data":{"validation_split":1e-400}'), 200)
add("number", "validation_split 0.5000000000000001",
    jobf(b',"data":{"validation_split":0.5000000000000001}'), 400, param="data.validation_split")
add("number", "list limit 2^64", req("GET", "/v1/files?limit=18446744073709551616"), 400,
    param="limit")
add("number", "list limit -0", req("GET", "/v1/files?limit=-0"), 400, param="limit")
add("number", "list limit 1e2", req("GET", "/v1/fine_tuning/jobs?limit=1e2"), 400, param="limit")
add("number", "list limit empty", req("GET", "/v1/files?limit="), 400, param="limit")
add("number", "events limit 0x10", req("GET", "/v1/fine_tuning/jobs/{JOB}/events?limit=0x10"),
    400, param="limit")
add("number", "upload Content-Length 2^64+1",
    req("POST", "/v1/files", b"", b"Content-Type: application/jsonl\r\n"
        b"Content-Length: 18446744073709551617\r\n", cl=False), 413)

# ---- duplicate keys ---------------------------------------------------------
add("duplicate_key", "top level", job(b'{"model":"a","model":"b","training_file":"{FILE}"}'), 400)
add("duplicate_key", "nested", jobf(b',"adapter":{"type":"lora","type":"full"}'), 400)
add("duplicate_key", "deep", hp("n_epochs", b'1,"n_epochs":2'), 400)
add("duplicate_key", "escaped equal", job(b'{"model":"a","mod\\u0065l":"b"}'), 400)
add("duplicate_key", "two file parts", mp([FILEPART, FILEPART, PURPOSE]), 400, param="file")
add("duplicate_key", "two purpose parts", mp([PURPOSE, FILEPART, PURPOSE]), 400, param="purpose")
# the first of a repeated query parameter counts (libmicrohttpd)
add("duplicate_key", "query twice, bad first", req("GET", "/v1/files?limit=abc&limit=1"), 400,
    param="limit")
add("duplicate_key", "query twice, bad second", req("GET", "/v1/files?limit=1&limit=abc"), 200)
add("duplicate_key", "jsonl record with dup keys (a bad file still uploads)",
    req("POST", "/v1/files", b'{"prompt":"a","prompt":"b","completion":"c"}\n',
        b"Content-Type: application/jsonl\r\n"), 200)

# ---- invalid UTF-8 ----------------------------------------------------------
for n, b in (("lone continuation", b"\x80"), ("overlong slash", b"\xc0\xaf"),
             ("surrogate", b"\xed\xa0\x80"), ("truncated", b"\xe2\x82"), ("0xff", b"\xff"),
             ("above U+10FFFF", b"\xf4\x90\x80\x80")):
    add("utf8", "JSON value: " + n, job(b'{"model":"' + b + b'","training_file":"{FILE}"}'), 400)
    add("utf8", "JSON key: " + n, jobf(b',"' + b + b'":1'), 400)
add("utf8", "JSON escaped lone surrogate", job(b'{"model":"\\ud800","training_file":"{FILE}"}'),
    400)
add("utf8", "JSON \\u0000 in model", job(b'{"model":"a\\u0000b","training_file":"{FILE}"}'), 400)
# (the error message quotes the id: it must still be valid JSON, not a 500)
add("utf8", "URL path", req("GET", b"/v1/files/file-\xff\xfe"), 404, param="file_id")
add("utf8", "URL query", req("GET", b"/v1/files?after=\xc0\xaf"), 404, param="after")
add("utf8", "percent-encoded in path", req("GET", "/v1/models/%ff%fe"), 404, param="model")
add("utf8", "truncated in a long message",
    req("GET", "/v1/fine_tuning/jobs/" + "\u00e9" * 300), 404)
add("utf8", "unknown form field named in invalid UTF-8",
    mp([FILEPART, PURPOSE, (b'Content-Disposition: form-data; name="\xff\xfe"', b"1")]), 400)
add("utf8", "header value", req("GET", "/healthz", headers=b"X-Junk: \xff\xfe\x80\r\n"), 200)
# libmicrohttpd takes any header name; an unknown one is ignored
add("utf8", "header name", req("GET", "/healthz", headers=b"X-\xff: 1\r\n"), 200)
add("utf8", "upload filename", req("POST", "/v1/files?filename=a%ff.jsonl", GOOD,
                                   b"Content-Type: application/jsonl\r\n"), 400, param="filename")
add("utf8", "multipart filename",
    mp([(b'Content-Disposition: form-data; name="file"; filename="\xff.jsonl"', GOOD), PURPOSE]),
    400, param="file")
add("utf8", "upload content (a bad file still uploads)",
    req("POST", "/v1/files", b'{"text":"\xff"}\n', b"Content-Type: application/jsonl\r\n"), 200)
add("utf8", "purpose", req("POST", "/v1/files?purpose=%ff", GOOD,
                           b"Content-Type: application/jsonl\r\n"), 400, param="purpose")

# ---- headers and request lines ----------------------------------------------
add("header", "64 kB header", req("GET", "/healthz", headers=b"X-A: " + b"a" * 65536 + b"\r\n"),
    431)
add("header", "1 MB header", req("GET", "/healthz", headers=b"X-A: " + b"a" * 1000000 + b"\r\n"),
    431)
add("header", "5000 headers", req("GET", "/healthz",
                                  headers=b"".join(b"X-%d: v\r\n" % i for i in range(5000))), 431)
add("header", "100 headers", req("GET", "/healthz",
                                 headers=b"".join(b"X-%d: v\r\n" % i for i in range(100))), 200)
add("header", "duplicate equal Content-Length",
    req("POST", "/v1/fine_tuning/jobs", b"{}", b"Content-Length: 2\r\nContent-Length: 2\r\n",
        cl=False), 400)
add("header", "duplicate different Content-Length",
    req("POST", "/v1/fine_tuning/jobs", b"{}", b"Content-Length: 2\r\nContent-Length: 9\r\n",
        cl=False), 400)
add("header", "Content-Length list",
    req("POST", "/v1/fine_tuning/jobs", b"{}", b"Content-Length: 2, 2\r\n", cl=False), 400)
add("header", "Content-Length and chunked",
    req("POST", "/v1/fine_tuning/jobs", b"2\r\n{}\r\n0\r\n\r\n",
        b"Content-Length: 2\r\nTransfer-Encoding: chunked\r\n", cl=False), 400)
add("header", "chunked then Content-Length",
    req("POST", "/v1/fine_tuning/jobs", b"2\r\n{}\r\n0\r\n\r\n",
        b"Transfer-Encoding: chunked\r\nContent-Length: 200\r\n", cl=False), 400)
add("header", "negative Content-Length",
    req("POST", "/v1/fine_tuning/jobs", b"{}", b"Content-Length: -2\r\n", cl=False), 400)
add("header", "Content-Length not a number",
    req("POST", "/v1/fine_tuning/jobs", b"{}", b"Content-Length: two\r\n", cl=False), 400)
add("header", "Content-Length with sign",
    req("POST", "/v1/fine_tuning/jobs", b"{}", b"Content-Length: +2\r\n", cl=False), 400)
add("header", "Content-Length 30 digits",
    req("POST", "/v1/fine_tuning/jobs", b"{}", b"Content-Length: 1" + b"0" * 29 + b"\r\n",
        cl=False), 413)
add("header", "Transfer-Encoding gzip",
    req("POST", "/v1/fine_tuning/jobs", b"{}", b"Transfer-Encoding: gzip\r\n", cl=False), 400)
add("header", "Transfer-Encoding gzip, chunked",
    req("POST", "/v1/fine_tuning/jobs", b"2\r\n{}\r\n0\r\n\r\n",
        b"Transfer-Encoding: gzip, chunked\r\n", cl=False), 400)
add("header", "Transfer-Encoding on a GET",
    req("GET", "/healthz", headers=b"Transfer-Encoding: identity\r\n"), 400)
add("header", "bad chunk size",
    req("POST", "/v1/fine_tuning/jobs", b"zz\r\n{}\r\n0\r\n\r\n",
        b"Transfer-Encoding: chunked\r\n", cl=False), 400)
add("header", "chunk size overflow",
    req("POST", "/v1/fine_tuning/jobs", b"ffffffffffffffffff\r\n{}\r\n0\r\n\r\n",
        b"Transfer-Encoding: chunked\r\n", cl=False), 413)
add("header", "chunk longer than said",
    req("POST", "/v1/fine_tuning/jobs", b"1\r\n{}\r\n0\r\n\r\n",
        b"Transfer-Encoding: chunked\r\n", cl=False), 400)
add("header", "body shorter than Content-Length, then close",
    req("POST", "/v1/fine_tuning/jobs", b"{}", b"Content-Length: 100\r\n", cl=False), 0,
    shut=True)
# libmicrohttpd 0.9.75 is lenient where RFC 9112 says 400 (no Host, two Host,
# space before the colon, obs-fold, NUL in a value): the daemon reads no
# header where that matters (no proxy in front re-parses them), so these
# are answered as if the header were absent or plain
add("header", "no Host", b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n", 200)
add("header", "two Host", req("GET", "/healthz", headers=b"Host: y\r\n"), 200)
add("header", "header without colon", req("GET", "/healthz", headers=b"NoColon\r\n"), 400)
add("header", "space before colon", req("GET", "/healthz", headers=b"X-A : 1\r\n"), 200)
add("header", "obs-fold continuation", req("GET", "/healthz", headers=b"X-A: 1\r\n  2\r\n"), 200)
add("header", "NUL in header value", req("GET", "/healthz", headers=b"X-A: a\x00b\r\n"), 200)
add("header", "bare LF line ends", b"GET /healthz HTTP/1.1\nHost: x\nConnection: close\n\n", 200)
add("header", "Expect 100-continue", req("POST", "/v1/fine_tuning/jobs", b"{}",
                                         b"Expect: 100-continue\r\n"), 400)
add("header", "Expect unknown (ignored)", req("GET", "/healthz", headers=b"Expect: teapot\r\n"),
    200)
add("header", "empty request line", b"\r\n\r\n", 0, wait=1)
# no line end yet: waits like any slow client (the connection timeout ends it)
add("header", "TLS hello on the plain port", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" +
    b"\x00" * 64, 0, wait=1)
add("header", "binary garbage with line ends", b"\x00\xff\x01\r\n" * 20 + b"\r\n", 0, wait=1)
add("header", "binary garbage with spaces", b"\x00 \xff \x01\r\n" * 20 + b"\r\n", 0, wait=1)
add("header", "HTTP/0.9", b"GET /healthz\r\n\r\n", 400)
add("header", "HTTP/2.0 version", req("GET", "/healthz", version=b"HTTP/2.0"), 505)
add("header", "HTTP/1.10 version", req("GET", "/healthz", version=b"HTTP/1.10"), 400)
add("header", "version garbage", req("GET", "/healthz", version=b"HTTQ/1.1"), 400)
add("header", "HTTP/2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505)
add("header", "lower-case get", req("get", "/healthz"), 405)
add("header", "unknown method", req("FROB", "/healthz"), 405)
add("header", "method with NUL (the method is \"GE\")", req("GE\x00T", "/healthz"), 405)
add("header", "TRACE", req("TRACE", "/healthz"), 405)
add("header", "CONNECT", b"CONNECT x:443 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 404)
add("header", "OPTIONS *", b"OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 404)
add("header", "PUT on a GET route", req("PUT", "/v1/files", b"{}"), 405)
add("header", "DELETE on a POST route", req("DELETE", "/v1/fine_tuning/jobs"), 405)
add("header", "HEAD healthz", req("HEAD", "/healthz"), 200)
add("header", "1 MB method", req("G" * 1000000, "/healthz"), 414)
# (a request line without spaces is read as HTTP/0.9-style and left waiting)
add("header", "tabs in request line",
    b"GET\t/healthz\tHTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 0, wait=1)
add("header", "two spaces in request line",
    b"GET  /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 200)
add("header", "pipelined second request", req("GET", "/healthz").replace(b"Connection: close\r\n",
                                                                          b"") + req("GET", "/x"),
    200)

# ---- URLs -------------------------------------------------------------------
add("url", "100 kB URL", req("GET", "/v1/files/" + "a" * 100000), 414)
add("url", "20 kB URL", req("GET", "/v1/models/" + "a" * 20000), 404)
add("url", "2 kB id", req("GET", "/v1/models/" + "a" * 2000), 404)
add("url", "%00 in path", req("GET", "/healthz%00/x"), 404)
add("url", "%00 after id", req("GET", "/v1/files/{FILE}%00"), 404)
add("url", "%00 in query", req("GET", "/v1/files?after=%00"), 404, param="after")
add("url", "%00 in a model file name", req("GET", "/v1/models/{MODEL}/files/config.json%00"), 404)
# (absolute-form is for proxies; the daemon routes the path only)
add("url", "absolute-form", req("GET", "http://x/healthz"), 404)
add("url", "no leading slash", req("GET", "healthz"), 404)
add("url", "double slash", req("GET", "//healthz"), 404)
add("url", "trailing slash", req("GET", "/healthz/"), 404)
add("url", "bad percent escape", req("GET", "/v1/files/%zz"), 404)
add("url", "lone percent", req("GET", "/v1/files/%"), 404)
add("url", "percent at the end of query", req("GET", "/v1/files?limit=%"), 400, param="limit")
add("url", "encoded slash in id", req("GET", "/v1/files/a%2Fb"), 404)
add("url", "empty segment", req("GET", "/v1/files//content"), 404)
add("url", "fragment", req("GET", "/healthz#x"), 404)
add("url", "query with 10k params",
    req("GET", "/v1/files?" + "&".join("k%d=v" % i for i in range(3000))), 0)
add("url", "control characters", req("GET", b"/v1/files/\x01\x02"), 404, param="file_id")
add("url", "space in URL", req("GET", b"/v1/files/a b"), 404, param="file_id")
add("url", "unknown route", req("GET", "/v2/files"), 404)
add("url", "case of a route", req("GET", "/V1/FILES"), 404)

# ---- traversal ----------------------------------------------------------------
RAW = b"Content-Type: application/jsonl\r\n"
for n in ("..", "../../etc/passwd", "..%2F..%2Fetc%2Fpasswd", "%2e%2e", "%2e%2e%2fx", "/etc/passwd",
          "%2Fetc%2Fpasswd", "a%0a.jsonl", ".", "..%5c..%5cx", "a/b.jsonl",
          "%c0%ae%c0%ae"):
    add("traversal", "upload ?filename=" + n,
        req("POST", "/v1/files?filename=" + n, GOOD, RAW), 400, param="filename")
# %00 is not decoded: the name is the plain "a%00b.jsonl", not "a"
add("traversal", "upload ?filename=a%00b.jsonl",
    req("POST", "/v1/files?filename=a%00b.jsonl", GOOD, RAW), 200)
for n in (b"../x.jsonl", b"/etc/passwd", b"..", b"a\\..\\b", b"a/b", b"x\ty"):
    add("traversal", "multipart filename " + repr(n),
        mp([(b'Content-Disposition: form-data; name="file"; filename="' + n + b'"', GOOD),
            PURPOSE]), 400, param="file")
# a raw NUL in a part header: microhttpd's parser ends the name there ("x")
add("traversal", "multipart filename with a NUL byte",
    mp([(b'Content-Disposition: form-data; name="file"; filename="x\x00/../y"', GOOD), PURPOSE]),
    200)
for p in ("/v1/models/{MODEL}/files/..", "/v1/models/{MODEL}/files/%2e%2e",
          "/v1/models/{MODEL}/files/..%2f..%2f..%2fetc%2fpasswd", "/v1/models/{MODEL}/files/.",
          "/v1/models/{MODEL}/files/%2fetc%2fpasswd", "/v1/models/{MODEL}/files/config.json%00.txt",
          "/v1/models/{MODEL}/files/.hidden", "/v1/models/../files/config.json",
          "/v1/models/%2e%2e/files/config.json", "/v1/models/..%2fmodels%2f{MODEL}/files/config.json",
          "/v1/files/..%2f..%2fetc%2fpasswd/content", "/v1/files/../../etc/passwd",
          "/v1/fine_tuning/jobs/..%2f..%2f/events", "/v1/models/%2e", "/v1/models/.."):
    add("traversal", "GET " + p, req("GET", p), 404)
add("traversal", "DELETE /v1/models/..", req("DELETE", "/v1/models/.."), 404)
add("traversal", "DELETE /v1/models/%2e%2e%2fx", req("DELETE", "/v1/models/%2e%2e%2fx"), 404)
for m in (b"../../etc", b"/etc", b"..", b"a/../../b", b"tiny\\u0000"):
    add("traversal", "job model " + repr(m),
        job(b'{"model":"' + m + b'","training_file":"{FILE}"}'), 400,
        param="model" if m != b"tiny\\u0000" else None)
for f in (b"../../etc/passwd", b"file-../../x", b"/etc/passwd"):
    add("traversal", "job training_file " + repr(f),
        job(b'{"model":"{MODEL}","training_file":"' + f + b'"}'), 400, param="training_file")

# ---- foreign and unknown ids, on every route with an id ------------------------
IDS = {
    "well-formed, unknown": {"file": "file-000000000000000000000000",
                             "job": "ftjob-000000000000000000000000", "model": "ft:none"},
    "wrong kind": {"file": "{JOB}", "job": "{FILE}", "model": "{FILE}"},
    "upper case": {"file": "FILE-000000000000000000000000",
                   "job": "FTJOB-000000000000000000000000", "model": "TINYX"},
    "too long": {"file": "file-" + "0" * 300, "job": "ftjob-" + "0" * 300, "model": "m" * 300},
    "unicode": {"file": "file-%e2%80%ae", "job": "ftjob-%e2%80%ae", "model": "%e2%80%ae"},
    "quote and semicolon": {"file": "file-%27%3b--", "job": "ftjob-%27%3b--",
                            "model": "x%27%3b--"},
    "sql wildcard": {"file": "file-%25", "job": "%25", "model": "%25"},
}
ROUTES = [("GET", "/v1/files/%s", "file"), ("DELETE", "/v1/files/%s", "file"),
          ("GET", "/v1/files/%s/content", "file"), ("GET", "/v1/fine_tuning/jobs/%s", "job"),
          ("POST", "/v1/fine_tuning/jobs/%s/cancel", "job"),
          ("POST", "/v1/fine_tuning/jobs/%s/pause", "job"),
          ("POST", "/v1/fine_tuning/jobs/%s/resume", "job"),
          ("GET", "/v1/fine_tuning/jobs/%s/events", "job"),
          ("GET", "/v1/fine_tuning/jobs/%s/checkpoints", "job"), ("GET", "/v1/models/%s", "model"),
          ("DELETE", "/v1/models/%s", "model"), ("GET", "/v1/models/%s/files/config.json", "model")]
for idn, ids in IDS.items():
    for m, pat, kind in ROUTES:
        add("foreign_id", "%s %s (%s)" % (m, pat, idn), req(m, pat % ids[kind]), 404)
add("foreign_id", "model file unknown name", req("GET", "/v1/models/{MODEL}/files/nope.bin"), 404)
add("foreign_id", "list after unknown file", req("GET", "/v1/files?after=file-000000000000000000000000"),
    404, param="after")
add("foreign_id", "list after unknown job",
    req("GET", "/v1/fine_tuning/jobs?after=ftjob-000000000000000000000000"), 404, param="after")
add("foreign_id", "events after unknown event",
    req("GET", "/v1/fine_tuning/jobs/{JOB}/events?after=ftevent-0"), 404, param="after")
add("foreign_id", "job on an unknown file",
    job(b'{"model":"{MODEL}","training_file":"file-000000000000000000000000"}'), 400,
    param="training_file")
add("foreign_id", "job on a file that failed validation",
    job(b'{"model":"{MODEL}","training_file":"{BADFILE}"}'), 400, param="training_file")
add("foreign_id", "job validation_file unknown",
    jobf(b',"validation_file":"file-000000000000000000000000"'), 400, param="validation_file")
add("foreign_id", "job on an unknown model",
    job(b'{"model":"no-such-model","training_file":"{FILE}"}'), 400, param="model")
add("foreign_id", "resume a queued job", req("POST", "/v1/fine_tuning/jobs/{JOB}/resume"), 409)

# ---- multipart ----------------------------------------------------------------
add("multipart", "no boundary", mp([FILEPART, PURPOSE], ctype=b"multipart/form-data"), 400)
add("multipart", "empty boundary",
    mp([FILEPART, PURPOSE], ctype=b"multipart/form-data; boundary="), 400)
add("multipart", "boundary not in the body",
    mp([FILEPART, PURPOSE], ctype=b"multipart/form-data; boundary=Other"), 400)
add("multipart", "no closing boundary", mp([FILEPART, PURPOSE], tail=False), 400)
add("multipart", "no file part", mp([PURPOSE]), 400, param="file")
add("multipart", "no purpose part", mp([FILEPART]), 400, param="purpose")
add("multipart", "wrong purpose", mp([FILEPART, (PURPOSE[0], b"assistants")]), 400,
    param="purpose")
add("multipart", "unknown field", mp([FILEPART, PURPOSE,
                                      (b'Content-Disposition: form-data; name="x"', b"1")]), 400)
add("multipart", "part without a name", mp([(b"Content-Disposition: form-data", b"x"), FILEPART,
                                            PURPOSE]), 400)
add("multipart", "part without headers", mp([(b"", b"x"), FILEPART, PURPOSE]), 400)
add("multipart", "empty file", mp([(FILEPART[0], b""), PURPOSE]), 400, param="file")
add("multipart", "boundary of 300 chars", mp([FILEPART, PURPOSE], boundary=b"b" * 300), 200)
add("multipart", "garbage body", req("POST", "/v1/files", b"\x00\xff" * 5000,
                                     b"Content-Type: multipart/form-data; boundary=XyZ\r\n"), 400)
add("multipart", "10 kB part header",
    mp([(FILEPART[0] + b"\r\nX-Pad: " + b"p" * 10000, GOOD), PURPOSE]), 200)
add("multipart", "200 kB part header",
    mp([(FILEPART[0] + b"\r\nX-Pad: " + b"p" * 200000, GOOD), PURPOSE]), 400)
add("multipart", "1000 tiny parts", mp([FILEPART, PURPOSE] +
                                       [(b'Content-Disposition: form-data; name="x%d"' % i, b"")
                                        for i in range(1000)]), 400)
add("multipart", "a file part without filename",
    mp([(b'Content-Disposition: form-data; name="file"', GOOD), PURPOSE]), 200)

# ---- Content-Type -----------------------------------------------------------
for ct in (None, b"application/json", b"text/plain", b"application/octet-stream",
           b"multipart/mixed; boundary=XyZ", b"application/jsonlines-but-not",
           b"\xff\xfe", b"application/jsonlx", b"application/json" + b"l" * 5000):
    h = b"" if ct is None else b"Content-Type: " + ct + b"\r\n"
    add("content_type", "upload as %r" % (ct[:40] if ct else ct,), req("POST", "/v1/files", GOOD, h),
        415)
add("content_type", "upload with 5000 empty parameters",
    req("POST", "/v1/files", GOOD, b"Content-Type: application/jsonl" + b";" * 5000 + b"\r\n"), 200)
add("content_type", "upload as APPLICATION/JSONL", req("POST", "/v1/files", GOOD,
                                                     b"Content-Type: APPLICATION/JSONL\r\n"), 200)
add("content_type", "upload text/csv with JSON", req("POST", "/v1/files", GOOD,
                                                   b"Content-Type: text/csv\r\n"), 200)
add("content_type", "job as form", job(b"model=tiny",
                                      b"Content-Type: application/x-www-form-urlencoded\r\n"), 400)
add("content_type", "job as multipart", job(b"--XyZ\r\n\r\nx\r\n--XyZ--\r\n",
                                           b"Content-Type: multipart/form-data; boundary=XyZ\r\n"),
    400)
add("content_type", "job with a UTF-16 BOM body", job(b"\xff\xfe{\x00}\x00"), 400)
add("content_type", "job with a UTF-8 BOM", job(b"\xef\xbb\xbf{}"), 400)

# ---- slow clients (kind "slow": the request dribbled a few bytes at a time) ----
add("slow", "slow request line and headers", req("GET", "/healthz"), 200, kind="slow", rate=40)
add("slow", "slow JSON body", job(b'{"model":"' + b"x" * 60 + b'"}'), 400, kind="slow", rate=40)
add("slow", "slow upload", req("POST", "/v1/files", GOOD * 3, RAW), 200, kind="slow", rate=40)
add("slow", "headers never finished", b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: ", 0,
    kind="slow", rate=40, abandon=True)
add("slow", "body never finished", req("POST", "/v1/fine_tuning/jobs", b"{", b"", cl=False)
    .replace(b"\r\n\r\n", b"\r\nContent-Length: 1000\r\n\r\n"), 0, kind="slow", rate=40,
    abandon=True)
add("slow", "30 idle connections at once", b"GET /healthz HTTP/1.1\r\n", 0, kind="slow", rate=40,
    abandon=True, conns=30)

# ---- forged worker messages (kind "worker") ------------------------------------
# send: a list of steps run on one connection to the worker socket (unix, or
# "tcp" for the remote-worker port with token "hostile-token"):
#   ("frame", obj)       one frame holding json.dumps(obj) (a str: those bytes)
#   ("raw", bytes)       bytes as they are
#   ("expect", type)     the next frame from the daemon has this "type"
#   ("closed",)          the daemon closes the connection (after any reply)
#   ("open",)            nothing comes for 0.3 s and the connection stays open
#   ("claim_job",)       claim and wait for a job (sets {LEASED} and {ATTEMPT})
# expect is 0 (nothing HTTP); the steps are the expectations.
H = ("frame", {"type": "hello", "worker_id": "hostile", "pid": 1})


def W(name, steps, transport="unix"):
    add("worker", name, steps, 0, kind="worker", transport=transport)


W("oversize length before hello", [("raw", b"\xff\xff\xff\xff"), ("closed",)])
W("64 KiB + 1 before hello", [("raw", (65537).to_bytes(4, "big")), ("closed",)])
W("16 MiB + 1 after hello", [H, ("expect", "welcome"), ("raw", ((16 << 20) + 1).to_bytes(4, "big")),
                             ("closed",)])
W("zero-length frame", [("raw", b"\x00\x00\x00\x00"), ("closed",)])
W("frame of invalid JSON", [("frame", "{not json"), ("closed",)])
W("frame of invalid UTF-8", [("frame", b'{"type":"hello","worker_id":"\xff"}'), ("closed",)])
W("frame of an array", [("frame", [1, 2]), ("closed",)])
W("frame without type", [("frame", {"worker_id": "x"}), ("closed",)])
W("type not a string", [("frame", {"type": 5}), ("closed",)])
W("duplicate keys in a frame", [("frame", '{"type":"hello","type":"claim"}'), ("closed",)])
W("deeply nested frame", [("frame", '{"type":"hello","x":' + "[" * 50000 + "]" * 50000 + "}"),
                          ("closed",)])
W("claim before hello", [("frame", {"type": "claim"}), ("closed",)])
W("hello twice", [H, ("expect", "welcome"), H, ("closed",)])
W("unknown message type is a protocol error", [H, ("expect", "welcome"),
                                               ("frame", {"type": "frob"}), ("expect", "error"),
                                               ("closed",)])
W("a daemon's message type from a worker", [H, ("expect", "welcome"),
                                            ("frame", {"type": "welcome"}), ("expect", "error"),
                                            ("closed",)])
W("truncated frame then EOF", [("raw", b"\x00\x00\x00\x20{\"type\":"), ("eof",)])
W("heartbeat for a job not leased", [H, ("expect", "welcome"),
                                     ("frame", {"type": "heartbeat", "job_id": "{JOB}", "attempt": 1}),
                                     ("expect", "lease_lost"), ("open",)])
W("done for an unknown job", [H, ("expect", "welcome"),
                              ("frame", {"type": "done", "job_id": "ftjob-000000000000000000000000",
                                         "attempt": 1, "result": {}}),
                              ("expect", "lease_lost"), ("open",)])
W("job message without attempt", [H, ("expect", "welcome"),
                                  ("frame", {"type": "metrics", "job_id": "{JOB}"}), ("closed",)])
W("attempt not an integer", [H, ("expect", "welcome"),
                             ("frame", {"type": "metrics", "job_id": "{JOB}", "attempt": 1e999}),
                             ("closed",)])
W("tcp: wrong token", [("frame", {"type": "hello", "worker_id": "x", "token": "wrong"}),
                       ("expect", "error"), ("closed",)], "tcp")
W("tcp: no token", [H, ("expect", "error"), ("closed",)], "tcp")
W("tcp: token of another type", [("frame", {"type": "hello", "token": ["hostile-token"]}),
                                 ("expect", "error"), ("closed",)], "tcp")
W("tcp: claim before hello", [("frame", {"type": "claim"}), ("expect", "error"), ("closed",)],
  "tcp")
W("tcp: oversize before hello", [("raw", b"\x7f\xff\xff\xff"), ("closed",)], "tcp")
W("tcp: right token", [("frame", {"type": "hello", "worker_id": "t", "token": "hostile-token"}),
                       ("expect", "welcome"), ("open",)], "tcp")
# a real lease, then forged messages about it (one connection: the lease stays)
LEASE = [H, ("expect", "welcome"), ("claim_job",)]
W("lease: stale attempt", LEASE + [
    ("frame", {"type": "heartbeat", "job_id": "{LEASED}", "attempt": "{ATTEMPT-1}"}),
    ("expect", "lease_lost"),
    ("frame", {"type": "heartbeat", "job_id": "{LEASED}", "attempt": "{ATTEMPT+1}"}),
    ("expect", "lease_lost"),
    ("frame", {"type": "done", "job_id": "{JOB}x", "attempt": "{ATTEMPT}", "result": {}}),
    ("expect", "lease_lost"),
    ("frame", {"type": "heartbeat", "job_id": "{LEASED}", "attempt": "{ATTEMPT}"}),
    ("open",),
    ("frame", {"type": "metrics", "job_id": "{LEASED}", "attempt": "{ATTEMPT}",
               "metrics": {"step": -1}}), ("closed",)])
W("lease: checkpoint outside the job", LEASE + [
    ("frame", {"type": "checkpoint", "job_id": "{LEASED}", "attempt": "{ATTEMPT}", "step": 1,
               "path": "/etc"}), ("closed",)])
W("lease: checkpoint path with ..", LEASE + [
    ("frame", {"type": "checkpoint", "job_id": "{LEASED}", "attempt": "{ATTEMPT}", "step": 1,
               "path": "{CKPT}/../../../etc"}), ("closed",)])
W("lease: metrics step 2^63", LEASE + [
    ("frame", '{"type":"metrics","job_id":"{LEASED}","attempt":{ATTEMPT},'
              '"metrics":{"step":9223372036854775808}}'), ("closed",)])
W("lease: metrics step 1e999", LEASE + [
    ("frame", '{"type":"metrics","job_id":"{LEASED}","attempt":{ATTEMPT},'
              '"metrics":{"step":1e999}}'), ("closed",)])
W("lease: metrics with NaN-like loss", LEASE + [
    ("frame", {"type": "metrics", "job_id": "{LEASED}", "attempt": "{ATTEMPT}",
               "metrics": {"step": 1, "train_loss": 1e308, "x": "\u202e"}}), ("open",)])
W("lease: event with a huge message", LEASE + [
    ("frame", {"type": "event", "job_id": "{LEASED}", "attempt": "{ATTEMPT}", "level": "bogus",
               "message": "m" * 100000, "data": {"a": [1] * 1000}}), ("open",)])
W("lease: NUL escape in a frame", LEASE + [
    ("frame", {"type": "event", "job_id": "{LEASED}", "attempt": "{ATTEMPT}", "message": "\u0000"}),
    ("expect", "error"), ("closed",)])
W("lease: failed with a forged error", LEASE + [
    ("frame", {"type": "failed", "job_id": "{LEASED}", "attempt": "{ATTEMPT}",
               "error": {"code": "\u202e", "message": 5, "param": ["x"]}}), ("open",)])
