"""The daemon's route table (server/routes.h) and openapi.yaml must list the
same (method, path) pairs, both ways; every $ref in openapi.yaml must
resolve; and every operation must document its success response. Prints
"N passed, N failed" and exits non-zero on a failure."""
import os
import re
import sys

import yaml

SRC = os.environ.get("FT_SRC", os.getcwd())
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
    return {(m, p) for m, p in re.findall(r'X\((GET|POST|PUT|PATCH|DELETE),\s*"([^"]+)"', body)}


METHODS = {"get", "post", "put", "patch", "delete", "head", "options"}


def spec_routes(spec):
    out = set()
    for path, item in (spec.get("paths") or {}).items():
        for k in item:
            if k in METHODS:
                out.add((k.upper(), path))
    return out


def refs(node, acc):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref":
                acc.append(v)
            else:
                refs(v, acc)
    elif isinstance(node, list):
        for v in node:
            refs(v, acc)
    return acc


def resolve(spec, ref):
    if not ref.startswith("#/"):
        return False
    node = spec
    for part in ref[2:].split("/"):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def main():
    spec = yaml.safe_load(open(os.path.join(SRC, "openapi.yaml"), encoding="utf-8"))
    check("openapi.yaml is OpenAPI 3", str(spec.get("openapi", "")).startswith("3."))
    code, doc = code_routes(), spec_routes(spec)
    check("the route table is not empty", len(code) >= 10, "%d routes" % len(code))
    missing_doc = sorted(code - doc)
    missing_code = sorted(doc - code)
    check("every route of routes.h is in openapi.yaml", not missing_doc,
          ", ".join("%s %s" % r for r in missing_doc))
    check("every operation of openapi.yaml is in routes.h", not missing_code,
          ", ".join("%s %s" % r for r in missing_code))
    bad = sorted({r for r in refs(spec, []) if not resolve(spec, r)})
    check("every $ref resolves", not bad, ", ".join(bad))
    no_ok = []
    for path, item in spec["paths"].items():
        for m, op in item.items():
            if m in METHODS and not any(str(c).startswith("2") for c in op.get("responses", {})):
                no_ok.append("%s %s" % (m.upper(), path))
    check("every operation documents a 2xx response", not no_ok, ", ".join(no_ok))
    # path parameters named in the pattern are declared
    undeclared = []
    for path, item in spec["paths"].items():
        names = set(re.findall(r"{([^}]+)}", path))
        for m, op in item.items():
            if m not in METHODS:
                continue
            declared = set()
            for p in (item.get("parameters") or []) + (op.get("parameters") or []):
                if "$ref" in p:
                    p = spec["components"]["parameters"][p["$ref"].split("/")[-1]]
                if p.get("in") == "path":
                    declared.add(p["name"])
            if names - declared:
                undeclared.append("%s %s: %s" % (m.upper(), path, ",".join(sorted(names - declared))))
    check("path parameters are declared", not undeclared, "; ".join(undeclared))
    schemas = spec.get("components", {}).get("schemas", {})
    for s in ("Error", "File", "Job", "Event", "Checkpoint", "Model", "ListBase"):
        check("schema %s is defined" % s, s in schemas)
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
