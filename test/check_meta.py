"""Checks META.json against the PGXN Meta Spec 1.0.x (https://pgxn.org/spec/),
as written in the spec: the required keys and their types, terms, semantic
versions, version ranges, the license shortcuts, provides, prereqs phases and
relationships, release_status, resources, and no keys outside the spec but
custom x_ ones.  No validator of the spec is packaged in Debian, so this is
our reading of it; it also checks that META.json agrees with the tree
(version = withdraw.control's default_version, files that exist).

Run: python3 test/check_meta.py [META.json]; exit status 1 with the problems.
"""

import json
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SEMVER = re.compile(r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)"
                    r"(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?(\+[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?$")
# a term: at least two characters, no whitespace, slash, backslash or control character
TERM = re.compile(r"^[^\s/\\\x00-\x1f]{2,}$")
LICENSES = {"agpl_3", "apache_1_1", "apache_2_0", "artistic_1", "artistic_2", "bsd", "freebsd",
            "gfdl_1_2", "gfdl_1_3", "gpl_1", "gpl_2", "gpl_3", "lgpl_2_1", "lgpl_3_0", "mit",
            "mozilla_1_0", "mozilla_1_1", "openssl", "perl_5", "postgresql", "qpl_1_0", "ssleay",
            "sun", "zlib", "open_source", "restricted", "unrestricted", "unknown"}
TOP_KEYS = {"name", "abstract", "description", "version", "maintainer", "license", "provides",
            "prereqs", "release_status", "generated_by", "tags", "no_index", "resources", "meta-spec"}
REQUIRED = ["name", "abstract", "maintainer", "license", "provides", "version", "meta-spec"]
PHASES = {"configure", "build", "test", "runtime", "develop"}
RELATIONSHIPS = {"requires", "recommends", "suggests", "conflicts"}
RANGE_PART = re.compile(r"^(==|!=|>=|<=|>|<)?\s*(\S+)$")


def custom(key):
    return key[:2] in ("x_", "X_")


def version_range(value):
    if value == 0 or value == "0":
        return True
    if not isinstance(value, str):
        return False
    for part in value.split(","):
        m = RANGE_PART.match(part.strip())
        if not m or not SEMVER.match(m.group(2)):
            return False
    return True


def check(meta):
    problems = []

    def need(cond, what):
        if not cond:
            problems.append(what)

    if not isinstance(meta, dict):
        return ["the document is not a JSON object"]
    for key in REQUIRED:
        need(key in meta, f"required key {key!r} is missing")
    for key in meta:
        need(key in TOP_KEYS or custom(key), f"key {key!r} is not in the spec (custom keys start with x_)")
    need(isinstance(meta.get("name"), str) and TERM.match(meta.get("name", "")), "name must be a term")
    for key in ("abstract", "description", "generated_by"):
        if key in meta:
            need(isinstance(meta[key], str) and meta[key].strip(), f"{key} must be a non-empty string")
    need(isinstance(meta.get("version"), str) and SEMVER.match(meta.get("version", "")),
         "version must be a semantic version")
    m = meta.get("maintainer")
    need(isinstance(m, str) and m or isinstance(m, list) and m and all(isinstance(x, str) and x for x in m),
         "maintainer must be a string or a non-empty list of strings")
    lic = meta.get("license")
    need(isinstance(lic, str) and lic in LICENSES
         or isinstance(lic, list) and lic and all(x in LICENSES for x in lic)
         or isinstance(lic, dict) and lic and all(isinstance(v, str) and re.match(r"^[a-z]+://", v)
                                                  for v in lic.values()),
         "license must be a known shortcut, a list of them, or an object of license URIs")
    provides = meta.get("provides")
    if not isinstance(provides, dict) or not provides:
        problems.append("provides must be a non-empty object")
    else:
        for ext, p in provides.items():
            need(TERM.match(ext), f"provides: {ext!r} is not a term")
            if not isinstance(p, dict):
                problems.append(f"provides.{ext} must be an object")
                continue
            need(isinstance(p.get("file"), str), f"provides.{ext}.file is required")
            need(isinstance(p.get("version"), str) and SEMVER.match(p.get("version", "")),
                 f"provides.{ext}.version must be a semantic version")
            for k in p:
                need(k in ("file", "version", "abstract", "docfile") or custom(k),
                     f"provides.{ext}.{k} is not in the spec")
    spec = meta.get("meta-spec")
    need(isinstance(spec, dict) and isinstance(spec.get("version"), str)
         and re.match(r"^1\.0\.[0-9]+$", spec.get("version", "")), "meta-spec.version must be 1.0.x")
    prereqs = meta.get("prereqs", {})
    need(isinstance(prereqs, dict), "prereqs must be an object")
    for phase, rels in (prereqs.items() if isinstance(prereqs, dict) else []):
        if custom(phase):
            continue
        need(phase in PHASES, f"prereqs: unknown phase {phase!r}")
        for rel, reqs in (rels.items() if isinstance(rels, dict) else []):
            need(rel in RELATIONSHIPS or custom(rel), f"prereqs.{phase}: unknown relationship {rel!r}")
            for name, rng in (reqs.items() if isinstance(reqs, dict) else []):
                need(TERM.match(name), f"prereqs.{phase}.{rel}: {name!r} is not a term")
                need(version_range(rng), f"prereqs.{phase}.{rel}.{name}: {rng!r} is not a version range")
    if "release_status" in meta:
        need(meta["release_status"] in ("stable", "testing", "unstable"),
             "release_status must be stable, testing or unstable")
    if "tags" in meta:
        need(isinstance(meta["tags"], list) and all(isinstance(t, str) and 0 < len(t) <= 255
                                                    for t in meta["tags"]), "tags must be strings")
    return problems


def check_tree(meta):
    problems = []
    control = open(os.path.join(ROOT, "withdraw.control")).read()
    default = re.search(r"default_version\s*=\s*'([^']+)'", control).group(1)
    if meta.get("version") != default:
        problems.append(f"version {meta.get('version')} is not withdraw.control's {default}")
    for ext, p in meta.get("provides", {}).items():
        if p.get("version") != default:
            problems.append(f"provides.{ext}.version is not {default}")
        for key in ("file", "docfile"):
            if key in p and not os.path.exists(os.path.join(ROOT, p[key])):
                problems.append(f"provides.{ext}.{key} {p[key]} does not exist")
    return problems


def self_test():
    """The checks can fail: documents the spec refuses are refused."""
    good = json.load(open(os.path.join(ROOT, "META.json")))
    bad = [dict(good, license="proprietary"), dict(good, version="0.4"),
           {k: v for k, v in good.items() if k != "provides"}, dict(good, colour="blue"),
           dict(good, prereqs={"runtime": {"requires": {"PostgreSQL": ">= fifteen"}}}),
           dict(good, name="with draw"), dict(good, **{"meta-spec": {"version": "2.0.0"}})]
    return [i for i, doc in enumerate(bad) if not check(doc)]


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "META.json")
    meta = json.load(open(path))
    problems = check(meta) + check_tree(meta)
    missed = self_test()
    if missed:
        problems.append(f"the checker accepted bad documents {missed}")
    for p in problems:
        print(f"META.json: {p}")
    print(f"META.json: {'valid' if not problems else 'INVALID'} (PGXN Meta Spec 1.0.x; 7 bad documents refused)")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
