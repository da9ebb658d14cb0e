#!/usr/bin/env python3
"""Validates evflow's JSON input and output files against the schemas in schemas/.

Usage: tests/schemas.py OUT_DIR TRAFFIC [--registry PATH | --no-registry] [--labels PATH]
                        [--jsonl SCHEMA FILE]... [--invalid SCHEMA FILE]...
       tests/schemas.py (--jsonl SCHEMA FILE | --invalid SCHEMA FILE)...

  OUT_DIR   an evflow output directory: anomalies.jsonl, notifications.jsonl and
            dead-letter.jsonl must be there (empty is fine); labels.jsonl is checked if present
  TRAFFIC   an input file of envelope lines (blank lines are skipped, as evflow does)

The registry is --registry, else registry.json next to TRAFFIC, else OUT_DIR/registry.json.
Labels are --labels, else OUT_DIR/labels.jsonl, else labels.jsonl next to TRAFFIC; they are
checked only if schemas/labels.schema.json exists.

--jsonl SCHEMA FILE checks another JSONL input file (blank lines skipped) against schemas/SCHEMA,
e.g. `--jsonl watch-event.schema.json tests/data/watches.jsonl`. --invalid SCHEMA FILE checks
the opposite: that schemas/SCHEMA rejects every non-blank line of FILE (the schema refuses what
evflow refuses). With only these options, OUT_DIR and TRAFFIC are left out.

Stops at the first line that does not validate: prints FILE:LINE and why to stderr and exits
with status 1. On success prints one line per file with the number of records checked.
Needs the `jsonschema` package (pip install jsonschema).
"""

import argparse
import json
import os
import sys

SCHEMAS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "schemas")

try:
    import jsonschema
    from jsonschema import Draft202012Validator
except ImportError:
    sys.exit("tests/schemas.py: the Python package `jsonschema` is missing: pip install jsonschema")


class Failure(Exception):
    pass


def strict_object(pairs):
    obj = {}
    for k, v in pairs:
        if k in obj:
            raise ValueError(f"duplicate key {k!r}")
        obj[k] = v
    return obj


def reject_constant(name):
    raise ValueError(f"{name} is not JSON")


def parse(text):
    """json.loads, but as strict as serde_json: no NaN/Infinity, no duplicate keys."""
    return json.loads(text, object_pairs_hook=strict_object, parse_constant=reject_constant)


def validator(name):
    path = os.path.join(SCHEMAS, name)
    try:
        with open(path, encoding="utf-8") as f:
            schema = json.load(f)
        Draft202012Validator.check_schema(schema)
    except (OSError, ValueError, jsonschema.SchemaError) as e:
        raise Failure(f"{os.path.normpath(path)}: not a usable schema: {e}")
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def explain(error):
    where = "".join(f"[{p!r}]" for p in error.absolute_path) or "(the record)"
    schema_at = "/".join(str(p) for p in error.absolute_schema_path)
    return f"{where}: {error.message} (schema: {schema_at})"


def check(v, instance, where):
    error = jsonschema.exceptions.best_match(v.iter_errors(instance))
    if error is not None:
        raise Failure(f"{where}: {explain(error)}")


def check_jsonl(path, schema, skip_blank=False):
    v = validator(schema)
    n = 0
    try:
        f = open(path, "rb")
    except OSError as e:
        raise Failure(f"{path}: {e}")
    with f:
        for lineno, raw in enumerate(f, 1):
            where = f"{path}:{lineno}"
            try:
                text = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as e:
                raise Failure(f"{where}: not UTF-8: {e}")
            if not text.strip():
                if skip_blank:
                    continue
                raise Failure(f"{where}: blank line")
            try:
                record = parse(text)
            except ValueError as e:
                raise Failure(f"{where}: not JSON: {e}")
            check(v, record, where)
            n += 1
    return n


def check_json(path, schema):
    v = validator(schema)
    try:
        with open(path, encoding="utf-8") as f:
            doc = parse(f.read())
    except (OSError, ValueError) as e:
        raise Failure(f"{path}: {e}")
    check(v, doc, path)
    return 1


def check_all_invalid(path, schema):
    """Every non-blank line of `path` is not JSON or fails `schema`; returns how many."""
    v = validator(schema)
    n = 0
    try:
        f = open(path, "rb")
    except OSError as e:
        raise Failure(f"{path}: {e}")
    with f:
        for lineno, raw in enumerate(f, 1):
            text = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            if not text.strip():
                continue
            try:
                record = parse(text)
            except ValueError:
                n += 1
                continue
            if jsonschema.exceptions.best_match(v.iter_errors(record)) is None:
                raise Failure(f"{path}:{lineno}: valid, but should not be: {text}")
            n += 1
    return n


def first_existing(*paths):
    return next((p for p in paths if p and os.path.isfile(p)), None)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out_dir", nargs="?")
    ap.add_argument("traffic", nargs="?")
    reg = ap.add_mutually_exclusive_group()
    reg.add_argument("--registry", help="registry JSON (default: found next to TRAFFIC or in OUT_DIR)")
    reg.add_argument("--no-registry", action="store_true", help="do not check a registry")
    ap.add_argument("--labels", help="labels JSONL (default: found in OUT_DIR or next to TRAFFIC)")
    ap.add_argument(
        "--jsonl", nargs=2, action="append", default=[], metavar=("SCHEMA", "FILE"),
        help="also check FILE, a JSONL input file, against schemas/SCHEMA",
    )
    ap.add_argument(
        "--invalid", nargs=2, action="append", default=[], metavar=("SCHEMA", "FILE"),
        help="check that schemas/SCHEMA rejects every non-blank line of FILE",
    )
    args = ap.parse_args()

    extra = [(f, s, lambda p, s: check_jsonl(p, s, skip_blank=True)) for s, f in args.jsonl]
    extra += [(f, s, check_all_invalid) for s, f in args.invalid]
    if args.out_dir is None and extra:
        return run_plan(extra, [])
    if args.traffic is None:
        ap.error("OUT_DIR and TRAFFIC are required (unless only --jsonl/--invalid are given)")

    traffic_dir = os.path.dirname(os.path.abspath(args.traffic))
    plan = [
        (os.path.join(args.out_dir, "anomalies.jsonl"), "anomaly.schema.json", check_jsonl),
        (os.path.join(args.out_dir, "notifications.jsonl"), "notification.schema.json", check_jsonl),
        (os.path.join(args.out_dir, "dead-letter.jsonl"), "dead-letter.schema.json", check_jsonl),
        (os.path.join(args.out_dir, "leakage.jsonl"), "leakage.schema.json", check_jsonl),
    ]
    skipped = []

    if os.path.isfile(os.path.join(SCHEMAS, "labels.schema.json")):
        labels = args.labels or first_existing(
            os.path.join(args.out_dir, "labels.jsonl"), os.path.join(traffic_dir, "labels.jsonl")
        )
        if labels:
            plan.append((labels, "labels.schema.json", check_jsonl))
        else:
            skipped.append("labels: no labels.jsonl in OUT_DIR or next to TRAFFIC")
    else:
        skipped.append("labels: schemas/labels.schema.json does not exist")

    if not args.no_registry:
        registry = args.registry or first_existing(
            os.path.join(traffic_dir, "registry.json"), os.path.join(args.out_dir, "registry.json")
        )
        if not registry:
            print(
                "FAIL: no registry.json next to TRAFFIC or in OUT_DIR; pass --registry PATH or --no-registry",
                file=sys.stderr,
            )
            return 1
        plan.append((registry, "registry.schema.json", check_json))

    plan.append((args.traffic, "envelope.schema.json", lambda p, s: check_jsonl(p, s, skip_blank=True)))
    return run_plan(plan + extra, skipped)


def run_plan(plan, skipped):
    for path, schema, run in plan:
        try:
            n = run(path, schema)
        except Failure as e:
            print(f"FAIL {e}", file=sys.stderr)
            return 1
        what = f"all rejected by {schema}" if run is check_all_invalid else schema
        print(f"ok {n:>9}  {path}  ({what})")
    for s in skipped:
        print(f"skipped     {s}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
