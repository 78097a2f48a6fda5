"""Command line: ``python -m core COMMAND ...``, a thin shell over the library.

Every command prints a short summary; bad input exits non-zero with a one-line error.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

from . import config


class CLIError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


def _store(args):
    from .store import Store

    return Store(args.store) if args.store else Store()


def _pairs(items: Sequence[str] | None, what: str) -> dict[str, str]:
    out = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CLIError(f"{what} must look like KEY=VALUE, not {item!r}")
        out[key.strip()] = value.strip()
    return out


def cmd_demo(args) -> int:
    from . import demo

    with _store(args) as store:
        res = demo.build_demo(store, seed=args.seed, n_per_group=args.per_group)
    print(
        f"demo dataset '{res.dataset}' (synthetic): {res.samples_added} samples added "
        f"({res.samples_seen} in the demo), judges: {', '.join(res.judges)}"
    )
    return 0


def cmd_import(args) -> int:
    from . import importers

    options: dict[str, Any] = _pairs(args.opt, "--opt")
    if args.dataset:
        options["dataset"] = args.dataset
    if args.judge:
        options["judge"] = args.judge
    if args.judge_kind:
        options["judge_kind"] = args.judge_kind
    if args.map:
        options["columns"] = _pairs(args.map, "--map")
    if args.pairs:
        options["pairs"] = args.pairs
    if args.seed is not None:
        options["seed"] = args.seed
    if args.format not in importers.FORMATS:
        raise CLIError(f"unknown format {args.format!r}; choose one of: {', '.join(sorted(importers.FORMATS))}")
    path = args.path
    if args.format != "hf" and not Path(path).exists():
        raise CLIError(f"{path}: no such file")
    with _store(args) as store:
        res = importers.import_file(store, args.format, path, **options)
    print(
        f"{path}: dataset '{res.dataset}': {res.samples_added} new samples of {res.samples_seen}, "
        f"{res.labels_written} labels from {len(res.judges)} judge(s) ({', '.join(res.judges)})"
        + (f", {res.features_written} features" if res.features_written else "")
    )
    return 0


def cmd_labels(args) -> int:
    from . import importers

    if not Path(args.path).exists():
        raise CLIError(f"{args.path}: no such file")
    with _store(args) as store:
        n = importers.import_labels(store, args.path, dataset=args.dataset, judge=args.judge, kind=args.kind)
    print(f"{args.path}: {n} labels for judge '{args.judge}' on dataset '{args.dataset}'")
    return 0


def cmd_info(args) -> int:
    with _store(args) as store:
        ov = store.overview()
        info = {"store": str(store.path), "counts": ov.counts, "datasets": ov.datasets, "judges": ov.judges}
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return 0
    print(f"store: {info['store']}")
    print("  " + ", ".join(f"{k} {v}" for k, v in info["counts"].items()))
    for d in info["datasets"]:
        tag = " [synthetic]" if d["synthetic"] else ""
        print(f"dataset {d['name']}{tag}: {d['samples']} samples, {d['judges']} judges, {d['labels']} labels")
    for j in info["judges"]:
        size = f", {j['size_b']:g}B" if j["size_b"] else ""
        print(f"judge {j['name']} ({j['kind']}{size}): {j['labels']} labels (A {j['a']}, B {j['b']}, tie {j['tie']})")
    return 0


def cmd_search(args) -> int:
    with _store(args) as store:
        hits = store.search(args.text, dataset=args.dataset, limit=args.limit)
    for h in hits:
        query = " ".join(h["query"].split())[:100]
        print(f"{h['id']}  {h['dataset']}  {h['scenario_group'] or '-'}  {query}")
    if not hits:
        print("no match")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m core",
        description="Preference dissection: import pairwise preference data, annotate, fit and compare judges.",
    )
    p.add_argument(
        "--store",
        help=f"store file (default: ${config.STORE_ENV} or store.db at the repository root)",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    d = sub.add_parser("demo", help="build the built-in synthetic demo dataset", description="Build the "
                       "deterministic synthetic demo (texts, annotations, features, judges with known profiles).")
    d.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    d.add_argument("--per-group", type=int, default=50, help="pairs per scenario group (default 50)")
    d.set_defaults(func=cmd_demo)

    i = sub.add_parser(
        "import",
        help="import a file of pairwise preferences",
        description="Import pairwise preference data. FORMAT is one of: autoj, pandalm, alpaca_eval, hf "
        "(the paper's Hugging Face layout; PATH may be a hub name), arena, generic. Re-importing a file adds nothing; "
        "a malformed file is rejected whole with the row and field at fault.",
    )
    i.add_argument("format", metavar="FORMAT")
    i.add_argument("path", metavar="PATH")
    i.add_argument("--dataset", help="dataset name (default depends on the format)")
    i.add_argument("--judge", help="judge name for the labels (generic format)")
    i.add_argument("--judge-kind", choices=["human", "llm", "gold", "synthetic"], help="judge kind (generic format)")
    i.add_argument("--map", action="append", metavar="FIELD=COLUMN",
                   help="column mapping for the generic format, e.g. --map query=prompt (repeatable)")
    i.add_argument("--pairs", choices=["ab", "chosen_rejected"], help="generic format: A/B columns or chosen/rejected")
    i.add_argument("--seed", type=int, help="seed for randomising A/B positions of chosen/rejected pairs")
    i.add_argument("--opt", action="append", metavar="KEY=VALUE", help="format-specific option (repeatable)")
    i.set_defaults(func=cmd_import)

    lb = sub.add_parser(
        "labels",
        help="add a judge's labels for samples already stored",
        description="Add a judge's labels: a JSON list of \"A\"/\"B\" in the dataset's sample order "
        "(the paper's upload format) or a CSV with columns sample_id,label.",
    )
    lb.add_argument("path", metavar="PATH")
    lb.add_argument("--dataset", required=True)
    lb.add_argument("--judge", required=True)
    lb.add_argument("--kind", default="llm", choices=["human", "llm", "gold", "synthetic"])
    lb.set_defaults(func=cmd_labels)

    inf = sub.add_parser("info", help="summarise the store", description="Show datasets, judges and table counts.")
    inf.add_argument("--json", action="store_true", help="print JSON")
    inf.set_defaults(func=cmd_info)

    s = sub.add_parser("search", help="full-text search over queries and responses",
                       description="Full-text search over queries and responses, best match first.")
    s.add_argument("text")
    s.add_argument("--dataset")
    s.add_argument("--limit", type=int, default=20)
    s.set_defaults(func=cmd_search)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except CLIError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (ValueError, OSError) as e:  # importers.InputError is a ValueError
        msg = " ".join(str(e).split())
        print(f"error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
