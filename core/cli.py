"""Command line: ``python -m core COMMAND ...``, a thin shell over the library.

Every command prints a short summary; bad input exits non-zero with a one-line error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from . import config


class CLIError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


def _store(args):
    from .store import Store

    return Store(args.store) if args.store else Store()


def _inert(text: Any) -> str:
    """Dataset text for a terminal: control characters (an ANSI escape would recolour or move the
    cursor) and invisible formatting characters (bidirectional overrides) shown as escapes."""
    import unicodedata

    text = "" if text is None else str(text)
    if text.isascii() and text.isprintable():
        return text
    return "".join(ch if ch == " " or unicodedata.category(ch) not in ("Cc", "Cf", "Zl", "Zp", "Co", "Cs")
                   else ascii(ch)[1:-1] for ch in text)


def _pairs(items: Sequence[str] | None, what: str) -> dict[str, str]:
    out = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CLIError(f"{what} must look like KEY=VALUE, not {item!r}")
        out[key.strip()] = value.strip()
    return out


def _names(values: Sequence[str] | None, known: Sequence[str] = ()) -> list[str] | None:
    """Names from a repeatable option (``--judges A --judges B``): a value that is a known name is
    taken whole (so a name with a comma can be selected); any other is split on commas (the
    older ``--judges A,B`` form). None when the option was not given."""
    if not values:
        return None
    known = set(known)
    out: list[str] = []
    for v in values:
        out.extend([v] if v in known else [p for p in v.split(",") if p])
    return list(dict.fromkeys(out))


def _judge_names(store, values, dataset: str | None = None) -> list[str] | None:
    return _names(values, store.judge_names(dataset) if values else ())


def _scope_names(values) -> list[str] | None:
    from . import scopes

    return _names(values, scopes.fit_choices())


def _number(convert, what: str, allowed, limit: str):
    """An argparse type: ``convert(text)`` ("expected WHAT" when it cannot), refused unless ``allowed(value)``
    ("must be LIMIT")."""
    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, not {text!r}") from None
        if not allowed(value):
            raise argparse.ArgumentTypeError(f"must be {limit}, not {text}")
        return value
    return parse


_positive_int = _number(int, "a whole number", lambda v: v >= 1, "1 or more")
_non_negative_int = _number(int, "a whole number", lambda v: v >= 0, "0 or more")
_money = _number(float, "an amount in USD", lambda v: 0 < v < float("inf"), "more than 0")
_seconds = _number(float, "a number of seconds", lambda v: 0 < v < float("inf"), "more than 0")


def _timeout_args(g) -> None:
    g.add_argument("--timeout", type=_seconds, metavar="SECONDS",
                   help="seconds a request may take before it is given up (default 120, PREFDISSECT_LLM_TIMEOUT; "
                        "a slow local server gets longer at its measured pace)")
    g.add_argument("--max-retries", type=_non_negative_int, metavar="N",
                   help="retries of a request that failed in a way a retry can help (default 6, "
                        "PREFDISSECT_LLM_MAX_RETRIES)")


def _llm_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("LLM endpoint (defaults from PREFDISSECT_LLM_* variables; the key only from the environment)")
    g.add_argument("--model")
    g.add_argument("--base-url", help="OpenAI-compatible base URL (vLLM, Ollama, a gateway, the loopback server)")
    g.add_argument("--concurrency", type=int, help="requests in flight")
    g.add_argument("--temperature", type=float)
    g.add_argument("--max-tokens", type=int)
    g.add_argument("--rpm", type=float, help="requests per minute limit")
    g.add_argument("--tpm", type=float, help="tokens per minute limit")
    g.add_argument("--price-input", type=float, help="USD per million input tokens")
    g.add_argument("--price-output", type=float, help="USD per million output tokens")
    _timeout_args(g)
    b = p.add_argument_group("batch mode (core/batch.py; see the README's 'Batch mode')")
    b.add_argument("--batch", action="store_true",
                   help="send the requests as JSONL files through the server's Batch API (files and batches "
                        "endpoints): half price on OpenAI; steps that need earlier answers run as further rounds")
    b.add_argument("--batch-file-only", metavar="DIR",
                   help="write the next round's requests as Batch-API JSONL files in DIR and stop (for vLLM's "
                        "run_batch or a gateway); bring the answers back with --ingest")
    b.add_argument("--ingest", metavar="FILE", help="read a batch runner's output JSONL back into the store, then "
                   "resolve what is complete (with --batch-file-only DIR: write the next round)")
    b.add_argument("--poll", type=float, default=30.0, metavar="SECONDS",
                   help="with --batch: seconds between checks of open batches (default 30)")


def _selection_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", required=True)
    p.add_argument("--scenario", help="only this scenario group")
    p.add_argument("--limit", type=_positive_int, help="only the first N samples")
    p.add_argument("--budget", type=_money, help="stop before the projected spend passes this many USD")
    p.add_argument("--estimate-only", action="store_true", help="print the cost estimate and stop")


def _profile_set_args(p: argparse.ArgumentParser) -> None:
    """Which stored profiles (export-profiles, similarity): judges, feature set, method (``core.profile.stored_set``)."""
    p.add_argument("--judges", action="append", help="judges (repeatable, or comma-separated) (default: all)")
    p.add_argument("--features", help="feature set of the profiles (default: the first stored)")
    p.add_argument("--method", help="exact, fast, truth or imported (default: the first stored, in that order)")


# The command registry: each handler below is declared with ``@command(NAME, help=..., description=...)``
# and its arguments with ``@option(...)`` (argparse's ``add_argument``) or ``@options(shared)`` right above its
# ``def``, so one command is one place to read; ``build_parser`` only assembles them.

#: name -> (add_parser keyword arguments, argument adders in declaration order, handler)
COMMANDS: dict[str, tuple[dict[str, Any], list[Callable[[argparse.ArgumentParser], Any]], Callable[[Any], int]]] = {}

#: the order in which ``python -m core --help`` lists the commands
HELP_ORDER = (
    "demo", "import", "labels", "delete", "info", "preflight", "export", "restore", "search", "samples", "annotate", "judge",
    "probe", "fit", "profiles", "export-profiles", "similarity", "jobs", "judges", "bias-card", "worker", "simulate",
    "experiment", "experiments", "loopback",
)


def command(name: str, **parser_kwargs):
    """Register the decorated function as the handler of ``python -m core NAME`` (``parser_kwargs`` go to
    ``add_parser``: help, description); the ``@option`` / ``@options`` lines under it declare its arguments."""
    def register(func):
        COMMANDS[name] = (parser_kwargs, func.__dict__.pop("_cli_options", []), func)
        return func
    return register


def _declare(adder):
    def add(func):
        # decorators apply bottom-up: insert at the front so arguments keep the order they are written in
        func.__dict__.setdefault("_cli_options", []).insert(0, adder)
        return func
    return add


def option(*flags, **kwargs):
    """One argument of the command declared below (argparse's ``add_argument`` signature)."""
    return _declare(lambda p: p.add_argument(*flags, **kwargs))


def options(adder: Callable[[argparse.ArgumentParser], Any]):
    """A set of arguments several commands share: ``adder(parser)`` adds them (``_llm_args``, ``_selection_args``)."""
    return _declare(adder)


@command("demo", help="build the built-in synthetic demo dataset", description="Build the "
         "deterministic synthetic demo (texts, annotations, features, judges with known profiles).")
@option("--seed", type=int, default=0, help="random seed (default 0)")
@option("--per-group", type=_positive_int, default=None,
        help="pairs per scenario group (default: the demo's own, core.demo.N_PER_GROUP)")
@option("--no-fit", action="store_true", help="do not fit the judges' profiles after building")
@option("--generate", action="store_true", help="generate the default demo even where its prebuilt copy "
        "(core/data/demo-prebuilt.sqlite.gz) could be copied in (the same rows, a few seconds more)")
@option("--write-prebuilt", action="store_true", help="for developers: generate the default demo and save it "
        "as core/data/demo-prebuilt.sqlite.gz, the copy a first start writes (after a change to the generator, "
        "the schema or a catalogue); touches no store")
def cmd_demo(args) -> int:
    from . import demo

    if args.write_prebuilt:
        if args.seed != 0 or args.per_group not in (None, demo.N_PER_GROUP):
            raise CLIError("--write-prebuilt saves the default demo: drop --seed and --per-group")
        size = demo.write_prebuilt()
        print(f"wrote {demo.PREBUILT} ({size / 1e6:.2f} MB)")
        return 0
    with _store(args) as store:
        res = demo.build_demo(store, seed=args.seed, n_per_group=args.per_group or demo.N_PER_GROUP,
                              fit=not args.no_fit, prebuilt=not args.generate)
        fitted = len(store.profiles(dataset=res.dataset, method="fast", columns=["id"]))
    print(
        f"demo dataset '{res.dataset}' (synthetic): {res.samples_added} samples added "
        f"({res.samples_seen} in the demo), judges: {', '.join(res.judges)}; {fitted} fitted profiles"
    )
    return 0


@command(
    "import",
    help="import a file of pairwise preferences",
    description="Import pairwise preference data. FORMAT is one of: autoj, pandalm, alpaca_eval, hf "
    "(the paper's Hugging Face layout; PATH may be a hub name), arena, generic. Re-importing a file adds nothing; "
    "a malformed file is rejected whole with the row and field at fault.",
    )
@option("format", metavar="FORMAT")
@option("path", metavar="PATH")
@option("--dataset", help="dataset name (default depends on the format)")
@option("--judge", help="judge name for the labels (generic format)")
@option("--judge-kind", choices=["human", "llm", "gold", "synthetic"], help="judge kind (generic format)")
@option("--map", action="append", metavar="FIELD=COLUMN",
        help="column mapping for the generic format, e.g. --map query=prompt (repeatable); COLUMN may be a "
        "path into nested JSON (judgments.0.decision). FIELDs: query, response_a, response_b, id (your own "
        "ids), model_a, model_b, scenario, scenario_group, category (your own taxonomy), reference, and one "
        "judge's verdicts: label (A/B/tie, A>>B / A>B / A=B strengths, or a text ending in [[A>B]]), "
        "label_ba (the verdict with B shown first, as that run gave it; mapped back), prob_a, scores / "
        "scores_ba ([first shown, second shown] per run), score_a, score_b; chosen, rejected (--pairs)")
@option("--pairs", choices=["ab", "chosen_rejected"], help="generic format: A/B columns or chosen/rejected")
@option("--seed", type=int, help="seed for randomising A/B positions of chosen/rejected pairs")
@option("--opt", action="append", metavar="KEY=VALUE",
        help="format-specific option (repeatable). generic: label_values=1=A,2=B,0=tie (other verdict "
        "spellings; an empty right side means no verdict), allow_empty=1 (keep empty responses), "
        "category_groups='mmlu*=Exam Questions,code*=Code' (file your categories under the paper's "
        "scenario groups), swapped=FILE (the run with B shown first, in a second file), ba_mapped=1 "
        "(label_ba / the swapped file is already in A/B terms), score_scale=S (P(A) = sigmoid((score A "
        "- score B) / S), default 1). autoj: outputs=, exchange_outputs=. pandalm: gpt35=, pandalm7b=")
@option("--replace", action="store_true",
        help="replace the judge's labels on the dataset (and its kind) when the file would change them; "
        "without it such a file is refused and nothing is written")
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
    if args.replace:
        options["replace"] = True
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
    for note in res.notes():
        print(f"  note: {note}")
    return 0


@command(
    "labels",
    help="add a judge's labels for samples already stored",
    description="Add a judge's labels: a JSON list of \"A\"/\"B\" in the dataset's sample order "
    "(the paper's upload format) or a CSV with columns sample_id,label.",
    )
@option("path", metavar="PATH")
@option("--dataset", required=True)
@option("--judge", required=True)
@option("--kind", default="llm", choices=["human", "llm", "gold", "synthetic"],
        help="the judge's kind (default llm); a stored judge keeps its kind unless --replace")
@option("--map", action="append", metavar="FIELD=COLUMN",
        help="column mapping (repeatable; COLUMN may be a nested path like judgments.1.decision). FIELDs: "
        "sample_id (our id, or your own id given at import), label, label_ba (the verdict with B shown "
        "first, as that run gave it; mapped back), prob_a, scores, scores_ba, score_a, score_b")
@option("--swapped", metavar="FILE", help="the same judge's run with B shown first, in a second file "
        "(same columns, matched by sample id); its verdicts are mapped back to A/B")
@option("--opt", action="append", metavar="KEY=VALUE",
        help="label_values=1=A,2=B,0=tie (other verdict spellings), ba_mapped=1 (the swapped verdicts "
        "are already in A/B terms), score_scale=S (P(A) = sigmoid((score A - score B) / S))")
@option("--replace", action="store_true",
        help="replace the judge's labels on the dataset; without it, a file that would change any stored "
        "label of the judge (or its kind) is refused and nothing is written")
def cmd_labels(args) -> int:
    from . import importers

    if not Path(args.path).exists():
        raise CLIError(f"{args.path}: no such file")
    options: dict[str, Any] = _pairs(args.opt, "--opt")
    unknown = sorted(set(options) - {"label_values", "ba_mapped", "score_scale"})
    if unknown:
        raise CLIError(f"unknown --opt key(s) {', '.join(unknown)} for labels (known: label_values, ba_mapped, score_scale)")
    with _store(args) as store:
        n = importers.import_labels(store, args.path, dataset=args.dataset, judge=args.judge, kind=args.kind,
                                    columns=_pairs(args.map, "--map"), swapped=args.swapped, replace=args.replace,
                                    **options)
    print(f"{args.path}: {n} labels for judge {args.judge!r} on dataset {args.dataset!r}"
          + (" (its earlier labels on the dataset replaced)" if args.replace else ""))
    return 0


@command(
    "delete", help="delete a dataset, a judge, a feature set or a profile (after a backup)",
    description="Delete WHAT NAME: a dataset (its samples, labels, features, annotations, profiles and finished "
    "jobs; judges left with no label), a judge (its labels and profiles; with --dataset only there), a feature "
    "set (its features and the profiles fitted on it; with --dataset only there) or a profile (by its id). "
    "Shows what goes and asks for confirmation (--yes to skip); a copy of the whole store is saved beside it "
    "first (<store>.before-delete-<time>.db).")
@option("what", choices=["dataset", "judge", "features", "profile"])
@option("name", help="the dataset, judge or feature set name, or the profile id")
@option("--dataset", help="judge / features: only on this dataset")
@option("--yes", action="store_true", help="do not ask for confirmation")
def cmd_delete(args) -> int:
    """Delete a dataset, a judge, a feature set or a profile: show what goes, confirm, back up, delete."""
    with _store(args) as store:
        plan = store.delete_plan(args.what, args.name, dataset=args.dataset)
        what = {"features": "feature set", "profile": "profile"}.get(args.what, args.what)
        scope = f" on dataset {args.dataset!r}" if args.dataset else ""
        print(f"deleting {what} {args.name!r}{scope} removes: "
              + ", ".join(f"{n:,} {table}" for table, n in plan.items() if n))
        if not args.yes:
            if not sys.stdin.isatty():
                raise CLIError("not confirmed: run again with --yes to delete (a backup of the store is taken first)")
            answer = input("a backup of the store is taken first. Delete? [y/N] ").strip().lower()
            if answer not in ("y", "yes"):
                print("nothing deleted")
                return 1
        removed, backup = store.delete(args.what, args.name, dataset=args.dataset)
    print(f"deleted: " + ", ".join(f"{n:,} {table}" for table, n in removed.items() if n)
          + f". The store as it was is kept in {backup}")
    return 0


@command("info", help="summarise the store", description="Show datasets, judges and table counts.")
@option("--json", action="store_true", help="print JSON")
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


@command("preflight", help="check the store's location before a deployment starts",
         description="Check that the store can be written where it is (exit 2 with one line if not) "
         "and warn when it sits where a restart or redeploy would lose it (a temporary folder, "
         "Heroku, or the code's own filesystem in a container or on a PaaS). The Procfile and the "
         "Dockerfile run it before the dashboard.")
def cmd_preflight(args) -> int:
    """Exit 2 with one line when the store cannot be written; warn when it may not last."""
    loc = config.check_store_location(Path(args.store) if args.store else None)
    for w in loc.warnings:
        print(f"warning: {w}", file=sys.stderr)
    if loc.error:
        print(f"error: {loc.error}", file=sys.stderr)
        return 2
    print(f"store: {loc.path} (writable{', may not last' if loc.warnings else ''})")
    return 0


@command("export", help="copy the store to a file while the app runs",
         description="Write a consistent snapshot of the store (SQLite's online backup) to PATH: a "
         "single file that `restore` or any SQLite tool opens. Safe while the dashboard and workers "
         "write.")
@option("path", help="the file to write")
@option("--overwrite", action="store_true", help="replace PATH if it exists")
def cmd_export(args) -> int:
    from .config import settings
    from .store import export_store

    source = Path(args.store) if args.store else settings().store
    if not source.exists():
        raise CLIError(f"no store at {source}")
    dest = export_store(source, args.path, overwrite=args.overwrite)
    print(f"exported {source} to {dest} ({dest.stat().st_size / 1e6:.1f} MB, a consistent snapshot)")
    return 0


@command("restore", help="replace the store's contents with an export",
         description="Check PATH (an export), save the current store beside itself as "
         "<name>.before-restore-<time>.db, then copy PATH in. Sessions see the restored contents "
         "on their next interaction.")
@option("path", help="an export written by `python -m core export`")
def cmd_restore(args) -> int:
    from .config import settings
    from .store import restore_store

    target = Path(args.store) if args.store else settings().store
    counts, safety = restore_store(args.path, target)
    print(f"restored {args.path} into {target}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    if safety:
        print(f"the previous contents are kept in {safety}")
    return 0


@command("search", help="full-text search over queries and responses",
         description="Full-text search over queries and responses, best match first.")
@option("text")
@option("--dataset")
@option("--limit", type=_positive_int, default=20)
def cmd_search(args) -> int:
    if not args.text.strip():
        raise CLIError("nothing to search for: give one or more words")
    with _store(args) as store:
        hits = store.search(args.text, dataset=args.dataset, limit=args.limit)
    for h in hits:
        query = " ".join(h["query"].split())[:100]
        print(_inert(f"{h['id']}  {h['dataset']}  {h['scenario_group'] or '-'}  {query}"))
    if not hits:
        print("no match")
    return 0


def _show_sample(store, args) -> int:
    from . import samples

    view = samples.sample_view(store, args.show)
    if view is None:
        raise CLIError(f"no sample {args.show!r}")
    s = view.sample
    ex = samples.explain(store, args.show, args.judge, args.scope, method=args.method) if args.judge else None
    if args.json:
        out = {"sample": {k: v for k, v in s.items()}, "votes": view.votes, "features": view.features,
               "reference": view.reference}
        if ex is not None:
            c = ex.contributions
            out["explanation"] = {"judge": ex.judge, "scope": ex.scope, "problem": ex.problem,
                                  "profile": None if ex.profile is None else
                                  {k: ex.profile[k] for k in ("method", "feature_source", "scope", "n", "accuracy")},
                                  "contributions": ex.frame_rows, "logit": c and c.logit, "p_a": c and c.p_a,
                                  "predicted": c and c.predicted, "actual": (ex.vote or {}).get("choice")}
        print(json.dumps(out, indent=2, default=str))
        return 0
    cases = ", ".join(k for k, v in (s.get("cases") or {}).items() if v) or "none"
    print(_inert(f"sample {s['id']} (dataset {s['dataset']}, #{s['position'] + 1}); scenario group "
                 f"{s.get('scenario_group') or '-'}; query cases: {cases}; models {s.get('model_a') or '?'} vs "
                 f"{s.get('model_b') or '?'}" + (f"; category {s['category']}" if s.get("category") else "")))
    print("query: " + _inert(" ".join(s["query"].split())[:300]))
    for v in view.votes:
        p = f"P(A) {v['prob_a']:.3f}" if v["prob_a"] is not None else ""
        orders = f"A first {v['verdict_ab']}, B first {v['verdict_ba']}" if v["verdict_ab"] or v["verdict_ba"] else ""
        print(_inert(f"  vote {v['judge']:<28} {v['choice']:<4} {p:<12} {orders}"))
    if ex is not None:
        if ex.contributions is None:
            print(f"contributions: {ex.problem}")
            return 0
        c, prof = ex.contributions, ex.profile
        print(f"contributions to {ex.judge}'s logit P(A) (profile: scope {ex.scope}, method {prof['method']}, "
              f"features {prof['feature_source']}):")
        for r in sorted(ex.frame_rows, key=lambda r: -abs(r["contribution"])):
            if r["contribution"]:
                print(f"  {r['label']:<40} x {r['x']:+.0f}  w {r['weight']:+.3f}  -> {r['contribution']:+.3f}")
        print(f"  sum = logit P(A) {c.logit:+.3f}: P(A) {c.p_a:.1%}, predicted {c.predicted}; "
              f"actual {(ex.vote or {}).get('choice') or 'no label'}")
    return 0


@command(
    "samples", help="list samples with filters, or show one with a judge's contributions",
    description="List a dataset's samples with the Samples page's filters (scenario group, query case, judge, "
     "judges that disagree, attributes on which A and B differ, full-text search), one page at a "
     "time; or --show ID: the sample, every judge's vote and, with --judge, each attribute's "
     "contribution to that judge's predicted choice (from its stored profile).")
@option("--dataset", help="default: the first dataset with samples")
@option("--scenario", help="a scenario group")
@option("--category", help="one of the dataset's own categories (from a category column at import)")
@option("--case", help="a query case (intent_unclear, express_feeling, w_constraints, w_stances, w_mistakes)")
@option("--scope", help="a profile scope: all, a scenario group or a query case (filters the list; "
                        "with --show, the profile used)")
@option("--judge", help="only samples this judge labelled, with its choice; with --show, whose choice to explain")
@option("--disagree", action="append", help="judges (two or more; repeatable, or comma-separated) whose choices differ")
@option("--attr", action="append", help="attribute key(s) on which A and B differ (repeat or comma-separate)")
@option("--features", help="feature source for --attr (default: the richest the dataset has)")
@option("--direction", choices=["A", "B"], help="with --attr: the response better on them")
@option("--include-excluded", action="store_true", help="keep samples left out of fitting in --attr")
@option("--search", help="full-text search (then best match first)")
@option("--page", type=_positive_int, default=1)
@option("--size", type=_positive_int, default=20)
@option("--show", metavar="ID", help="show one sample")
@option("--method", help="with --show and --judge: the profile method (default: exact, else fast, else truth, else imported)")
@option("--json", action="store_true")
def cmd_samples(args) -> int:
    """List samples with the Samples page's filters, one page at a time, or show one (``--show``)."""
    from . import samples
    from .store import SampleFilter

    with _store(args) as store:
        if args.show:
            return _show_sample(store, args)
        f = samples.checked_filter(store, SampleFilter(
            dataset=args.dataset, scenario=args.scenario, case=args.case, judge=args.judge, category=args.category,
            disagree=tuple(_judge_names(store, args.disagree, args.dataset) or ()),
            attributes=tuple(a for spec in args.attr or () for a in spec.split(",") if a), feature_source=args.features,
            direction=args.direction, include_excluded=args.include_excluded, text=args.search), args.scope)
        rows, total = store.browse(f, offset=(args.page - 1) * args.size, limit=args.size)
    if args.json:
        print(json.dumps({"total": total, "page": args.page, "size": args.size, "rows": rows}, indent=2, default=str))
        return 0
    first = (args.page - 1) * args.size
    print(f"{total:,} samples" + (f"; showing {first + 1:,}-{first + len(rows):,}" if rows else ""))
    for r in rows:
        choices = " ".join(f"{j}={c or '-'}" for j, c in r["choices"].items())
        feats = " ".join(f"{a}={v:+d}" for a, v in r["features"].items() if v is not None)
        print(_inert(f"{r['id']}  #{r['position'] + 1:<6} {r['scenario_group'] or '-':<18} {choices} {feats}  {r['query'][:80]}"))
    return 0


def _llm_overrides(args) -> dict[str, Any]:
    return {k: v for k, v in {
        "model": args.model, "base_url": args.base_url, "concurrency": args.concurrency,
        "temperature": args.temperature, "max_tokens": args.max_tokens, "requests_per_minute": args.rpm,
        "tokens_per_minute": args.tpm, "price_input": args.price_input, "price_output": args.price_output,
        "timeout_s": args.timeout, "max_retries": args.max_retries,
        "batch": True if getattr(args, "batch", False) or getattr(args, "batch_file_only", None)
        or getattr(args, "ingest", None) else None,
    }.items() if v is not None}


def _batch_files(store, samples, settings, work, kwargs: dict, args) -> int:
    """``--batch-file-only DIR`` and ``--ingest FILE``: batch files for a runner outside the tool."""
    from pathlib import Path

    from . import batch

    if args.ingest:
        counts = batch.ingest_file(store, args.ingest)
        print(f"{args.ingest}: {counts['answered']:,} answers, {counts['errored']:,} failed lines, "
              f"{counts['malformed']:,} malformed lines, {counts['unknown']:,} lines for requests this store did "
              "not plan")
    out = batch.run_batch(store, samples, settings, work, kwargs,
                          file_only=Path(args.batch_file_only) if args.batch_file_only else None,
                          on_event=print) if args.batch_file_only else None
    pr = out.progress if out else batch.resolve(store, samples, settings, work, kwargs)
    print(f"{pr.done:,} of {len(samples):,} samples resolved ({pr.failed:,} failed for good), "
          f"{pr.requests:,} answers recorded now, {pr.request_failures:,} of them failed (planned again)")
    if out and out.files:
        print("run them, e.g. with vLLM: python -m vllm.entrypoints.openai.run_batch -i FILE -o RESULTS "
              f"--model {settings.model}; then: --ingest RESULTS --batch-file-only {args.batch_file_only}")
    elif out and out.waiting:
        print(f"{out.waiting:,} requests are still in earlier files: --ingest their results")
    elif not args.batch_file_only and pr.done < len(samples):
        print("write the next round with --batch-file-only DIR")
    return 0


def _run_job_foreground(store, job) -> int:
    """Run a job in this process with a progress bar; print a summary."""
    from tqdm import tqdm

    from . import jobs

    if job.status in ("cancelled", "paused", "failed", "done") or job.stale:
        job = jobs.resume(store, job.id)
    if not jobs.claim(store, job.id):
        raise CLIError(f"job {job.id} is being run by worker pid {job.worker_pid}; watch it with `python -m core jobs`")
    bar = tqdm(total=None, unit="sample", file=sys.stderr, disable=None, dynamic_ncols=True)
    from .prices import fmt_cost

    priced = job.spend_text != "unknown"

    def progress(pr):
        bar.total = pr.total
        bar.n = pr.done
        bar.set_postfix_str(f"failed {pr.failed}, {fmt_cost(pr.cost, known=priced)}", refresh=False)
        bar.refresh()

    try:
        final = jobs.run(store, job.id, on_progress=progress)
    finally:
        bar.close()
    print(f"job {final.id} {final.status}: {final.done}/{final.total} samples done, {final.failed} failed, "
          f"cost {final.spend_text}. {final.message or ''}")
    return 0 if final.status == "done" else 3


def _samples_or_fail(store, args):
    samples = store.samples_for(args.dataset, scenario=args.scenario, limit=args.limit)
    if not samples:
        known = ", ".join(d["name"] for d in store.datasets()) or "none"
        raise CLIError(f"no samples in dataset {args.dataset!r}"
                       + (f" with scenario {args.scenario!r}" if args.scenario else "") + f" (datasets: {known})")
    return samples


@command(
    "annotate", help="rate the attributes of each pair with an LLM (or the offline heuristics)",
    description="Annotate samples with an OpenAI-compatible LLM: scenario, query analysis, 0-3 ratings, "
    "conditional ratings, reference answer, error detection. Every answer is stored as it arrives; rerun the "
    "same command to resume. Without an LLM configured, the offline heuristic annotator runs instead.")
@options(_selection_args)
@option("--both-orders", action="store_true", help="run pairwise steps in both orders and reconcile")
@option("--heuristic", action="store_true", help="use the offline heuristic annotator")
@options(_llm_args)
def cmd_annotate(args) -> int:
    from . import annotate, jobs
    from .llm import LLMSettings

    settings = LLMSettings.from_env(**_llm_overrides(args))
    with _store(args) as store:
        samples = _samples_or_fail(store, args)
        params = {"dataset": args.dataset, "scenario": args.scenario, "limit": args.limit}
        if args.heuristic or not (settings.key_is_set or settings.base_url or args.batch_file_only or args.ingest):
            if not args.heuristic:
                print("no LLM configured (set PREFDISSECT_LLM_API_KEY or PREFDISSECT_LLM_BASE_URL): "
                      "using the offline heuristic annotator", file=sys.stderr)
            job = jobs.submit(store, "heuristic", params, total=len(samples))
            return _run_job_foreground(store, job)
        est = annotate.estimate(store, samples, settings, both_orders=args.both_orders)
        print(annotate.estimate_text(est))
        if args.estimate_only:
            return 0
        if args.batch_file_only or args.ingest:
            return _batch_files(store, samples, settings, annotate.annotate_sample, {"both_orders": args.both_orders}, args)
        params.update(both_orders=args.both_orders, llm=settings.public())
        if args.batch:
            params["poll_s"] = args.poll
        job = jobs.submit(store, "annotate", params, total=len(samples), budget=args.budget)
        code = _run_job_foreground(store, job)
        if args.both_orders:
            cons = annotate.order_consistency(store, annotate.feature_source(settings.model, True))
            shown = ", ".join(f"{k} {v:.0%}" for k, v in cons.items() if v is not None)
            print(f"order consistency: {shown}")
        return code


@command(
    "judge", help="collect an LLM judge's labels (which response is better, in both orders)",
    description="Ask an OpenAI-compatible model which response is better, in both orders; uses the answer "
    "tokens' log-probabilities when the server returns them. Cached and resumable like annotation.")
@options(_selection_args)
@option("--judge", required=True, help="name to store the labels under")
@option("--single-order", action="store_true", help="ask only with A shown first")
@options(_llm_args)
def cmd_judge(args) -> int:
    from . import annotate, jobs, judges
    from .llm import LLMSettings

    settings = LLMSettings.from_env(**_llm_overrides(args))
    if not (settings.key_is_set or settings.base_url or args.batch_file_only or args.ingest):
        raise CLIError("no LLM configured: set PREFDISSECT_LLM_API_KEY (or OPENAI_API_KEY) and/or PREFDISSECT_LLM_BASE_URL")
    with _store(args) as store:
        args.judge = store.judge_name(args.judge)
        samples = _samples_or_fail(store, args)
        both = not args.single_order
        est = annotate.estimate(store, samples, settings, both_orders=both, planner=judges.plan_judge_requests)
        print(annotate.estimate_text(est))
        if args.estimate_only:
            return 0
        if args.batch_file_only or args.ingest:
            return _batch_files(store, samples, settings, judges.judge_sample, {"judge": args.judge, "both_orders": both}, args)
        params = {"dataset": args.dataset, "scenario": args.scenario, "limit": args.limit, "judge": args.judge,
                  "both_orders": both, "llm": settings.public()}
        if args.batch:
            params["poll_s"] = args.poll
        job = jobs.submit(store, "judge", params, total=len(samples), budget=args.budget)
        code = _run_job_foreground(store, job)
        c = judges.position_consistency(store, args.judge)
        if c.rate is not None:
            print(f"position consistency of {args.judge}: {c.rate:.1%} of {c.both_orders} samples")
        return code


@command(
    "probe", help="show (or find again) how an LLM endpoint takes structured outputs",
    description="Probe an OpenAI-compatible endpoint with a few tiny requests: which structured-output "
    "mode it honours (OpenAI json_schema, llama.cpp's json_object+schema grammar, vLLM guided_json, Ollama "
    "format, JSON mode, text), whether it serves one request at a time, and its pace. Annotate and judge do "
    "this once per base URL and model and keep the result in the store; --again forgets it and probes anew.")
@option("--again", action="store_true", help="forget the stored result and probe again")
@options(_llm_args)
def cmd_probe(args) -> int:
    from . import paidwork
    from .llm import DIALECTS, LLMError, LLMSettings

    settings = LLMSettings.from_env(**_llm_overrides(args))
    if not settings.base_url:
        print("OpenAI itself (no base URL): structured outputs json_schema, system role kept; nothing to probe")
        return 0
    with _store(args) as store:
        if args.again:
            store.forget_llm_dialect(settings.base_url, settings.model)
        try:
            d = paidwork.endpoint_dialect(store, settings)
        except (LLMError, ValueError) as e:
            raise CLIError(f"cannot probe {settings.base_url} ({settings.model}): {e}") from e
    print(f"{settings.base_url} {settings.model}: response mode {d.mode} ({DIALECTS[d.mode]['servers']}); system "
          f"role {'kept' if d.system_role else 'folded into the user message'}; "
          + ("one request at a time" if d.slots == 1 else "several requests at a time (or not measured)"))
    for note in d.notes:
        print(f"  {note}")
    return 0


@command("worker", help="run one queued job (the dashboard starts these)",
         description="Run one queued job to its end in this process.")
@option("job", type=int)
def cmd_worker(args) -> int:
    import os

    # background work: the dashboard's page runs come first when the cores are busy. Lowered before the
    # imports below (the store layer and the job's modules); a worker the dashboard starts is lowered by
    # it at once (core.jobs.start_worker), one started by hand here
    if hasattr(os, "nice") and os.nice(0) < config.WORKER_NICE:
        os.nice(config.WORKER_NICE - os.nice(0))

    from . import jobs
    from .store import now

    with _store(args) as store:
        if not jobs.claim(store, args.job):
            raise CLIError(f"job {args.job} is not queued or is already running")
        job = jobs.get(store, args.job)
        # the worker's stdout is the job's log (<store>.jobs/job-N.log): say what starts and what was done
        print(f"{now()} job {job.id} started by worker pid {os.getpid()}: {job.summary}", flush=True)
        try:
            jobs.run(store, args.job)
        finally:  # a job that raised is recorded as failed: its log says so, above the traceback
            print(f"{now()} " + "\n".join(jobs.report(store, args.job)), flush=True)
    return 0


def _jobs_submit_or_show(args) -> int:
    """``jobs --submit KIND --params JSON`` (what the dashboard's start buttons do) and ``jobs --show ID``."""
    from . import jobs
    from .llm import LLMSettings

    with _store(args) as store:
        if args.show:
            job = jobs.get(store, args.show)
            budget = f" of a ${job.budget:.2f} budget" if job.budget is not None else ""
            print(f"job {job.id} {job.state}: {job.summary}")
            print(f"  current run: {job.done}/{job.total} {job.unit} done, {job.failed} failed; spent {job.spend_text}{budget}")
            for line in filter(None, (job.message, job.error and f"error: {job.error}")):
                print(f"  {line}")
            for r in jobs.runs(store, job.id):
                print(f"  earlier run {r['run']}: {r['status']}, {r['done']}/{r['total']} done, {r['failed']} failed, "
                      f"${r['cost']:.4f}, {r['started_at']} to {r['finished_at'] or '?'}")
            for f in jobs.failures(store, job.id):
                print(f"  failed: sample {f['sample_id']} step {f['step']} ({f['orientation']}): {f['error']}")
            for b in store.llm_batches(job_id=job.id):  # batch mode: the batches this job sent
                print(f"  batch {b['id']} round {b['round']}: {b['requests']:,} requests, {b['status']}"
                      + (f" ({b['remote_id']}: {b['remote_status']})" if b["remote_id"] else "")
                      + (f", {b['answered']:,} answered, {b['failed']:,} failed, {b['malformed']:,} malformed"
                         if b["status"] == "ingested" else ""))
            return 0
        try:
            params = json.loads(args.params or "{}")
        except json.JSONDecodeError as e:
            raise CLIError(f"--params is not JSON: {e}") from None
        if not isinstance(params, dict) or not params.get("dataset"):
            raise CLIError('--params must be a JSON object with at least "dataset", e.g. '
                           '\'{"dataset": "demo-synthetic", "scenarios": ["Code", "Advice"]}\'')
        if args.submit in ("annotate", "judge") and "llm" not in params:
            params["llm"] = LLMSettings.from_env().public()
        if args.submit == "judge" and not params.get("judge"):
            raise CLIError('a judge job needs "judge": the name to store the labels under')
        if args.submit == "judge":
            params["judge"] = store.judge_name(params["judge"])
        total = 0 if args.submit == "fit" else len(jobs.select_samples(store, params))
        job, pid = jobs.launch(store, args.submit, params, total=total, budget=args.budget)
    if pid:
        print(f"job {job.id} queued ({job.summary}); worker pid {pid}. Follow it: python -m core jobs --show {job.id}")
    else:
        print(f"job {job.id} is {job.state} ({job.summary}): no new worker started")
    return 0


@command("jobs", help="list jobs; cancel or resume one",
         description="List annotation and judge jobs with progress and cost; cancel or resume one.")
@option("--cancel", type=int, metavar="ID")
@option("--resume", type=int, metavar="ID", help="queue the job again and start a worker for it")
@option("--submit", choices=["annotate", "judge", "heuristic", "fit"], metavar="KIND",
        help="queue a job (annotate, judge, heuristic, fit) with --params and start a worker for it; "
        "a finished job of the same parameters runs again (its history is kept)")
@option("--params", metavar="JSON", help='the job\'s parameters, e.g. \'{"dataset": "demo-synthetic", '
        '"scenarios": ["Code"], "limit": 20}\'; annotate and judge jobs take the LLM settings from '
        "PREFDISSECT_LLM_* unless \"llm\" is given")
@option("--budget", type=float, metavar="USD", help="the job's budget over all its runs (with --submit)")
@option("--show", type=int, metavar="ID", help="one job: progress, spend, earlier runs, failures")
def cmd_jobs(args) -> int:
    from . import jobs

    if getattr(args, "submit", None) or getattr(args, "show", None):
        return _jobs_submit_or_show(args)
    with _store(args) as store:
        if args.cancel:
            jobs.cancel(store, args.cancel)
        if args.resume:
            job = jobs.resume(store, args.resume)
            pid = jobs.ensure_worker(store, job.id)
            if pid:
                print(f"job {job.id} resumed by worker pid {pid}")
        for j in jobs.list_jobs(store):
            state = "running (worker lost)" if j.stale else j.status
            print(f"{j.id:>4}  {j.kind:<9} {state:<22} {j.done}/{j.total} done, {j.failed} failed, {j.spend_text}"
                  f"  {j.params.get('dataset', '')}  {j.message or ''}")
    return 0


def _fit_background(args) -> int:
    """``fit --background``: the same fit as a job run by a worker process (as the dashboard starts it)."""
    from . import featureset, jobs

    with _store(args) as store:
        if args.dataset not in {d["name"] for d in store.datasets()}:
            raise CLIError(f"no dataset {args.dataset!r}")
        params = {"dataset": args.dataset, "features": args.features or featureset.required(store, args.dataset),
                  "scopes": _scope_names(args.scopes),
                  "judges": _judge_names(store, args.judges, args.dataset), "method": args.method,
                  "prior_scale": args.prior_scale, "folds": args.folds, "seed": args.seed, "force": args.force,
                  "include_excluded": args.include_excluded, **_fit_model(args)}
        job, pid = jobs.launch(store, "fit", params)
    if pid:
        print(f"fit job {job.id} queued; worker pid {pid}. Follow it: python -m core jobs --show {job.id}")
    else:
        print(f"fit job {job.id} is {job.state}: no new worker started")
    return 0


@command("bias-card", help="a judge's bias card: position, verbosity, formatting, self-preference",
         description="Position (first-slot rate, consistency across orders, the fitted shown-first "
         "term), verbosity and formatting (raw preference rates and weights net of content), and "
         "self-preference (responses from the judge's own model family, raw and net of content), each "
         "with its interval and the number of pairs behind it.")
@option("--judge", required=True)
@option("--dataset", help="dataset (default: the one the judge labelled most)")
@option("--features", help="feature set (default: the dataset's richest)")
@option("--family", action="append", metavar="PATTERN=FAMILY",
        help="map model names matching PATTERN (a regular expression) to FAMILY; repeatable, "
        "checked before the built-in map")
@option("--json", action="store_true", help="print the card as JSON")
def cmd_bias_card(args) -> int:
    from . import bias

    families = bias.families_with(args.family, "--family")
    with _store(args) as store:
        if args.judge not in {r["name"] for r in store.judges()}:
            raise CLIError(f"no labels from judge {args.judge!r}")
        try:
            items = bias.bias_card(store, args.judge, args.dataset, feature_source=args.features, families=families)
        except ValueError as exc:
            raise CLIError(str(exc)) from exc
    if args.json:
        print(json.dumps(bias.card_rows(items), indent=2))
        return 0
    print(f"bias card of {args.judge}: rates with 94% Jeffreys intervals, weights net of content as 100*sigmoid(w)")
    for i in items:
        val = "-" if i.value is None else f"{i.value:.1%} [{i.lo:.1%}, {i.hi:.1%}]" if i.lo is not None else f"{i.value:.1%}"
        print(f"  {i.aspect:<16} {i.measure:<52} {val:<26} n={i.n:<6} {i.note}")
    return 0


@command("judges", help="list judges with agreement and position consistency",
         description="Judges with labels: kind, labels, datasets, agreement with a reference judge on "
         "shared samples, and position consistency (same verdict in both orders, where known).")
@option("--dataset", help="only this dataset's labels")
@option("--reference", help="judge to compare with (default: a human judge, else a gold one, else the first)")
def cmd_judges(args) -> int:
    import pandas as pd

    from . import judges

    with _store(args) as store:
        rows = store.judges(args.dataset)
        if args.reference and args.reference not in {r["name"] for r in rows}:
            raise CLIError(f"no labels from judge {args.reference!r}" + (f" on dataset {args.dataset!r}" if args.dataset else ""))
        reference = args.reference or judges.default_reference(rows)
        table = judges.judge_table(store, args.dataset, reference)
        orders = judges.order_figures(store, args.dataset, reference)
    if table.empty:
        print("no judges with labels")
        return 0
    print(f"agreement with {reference} on shared samples (chance level, Cohen's kappa [94% interval]); position "
          "consistency where both orders are known")
    for r in table.itertuples():
        agr = f"{r.agreement_ref:.1%} of {r.shared_ref}" if pd.notna(r.agreement_ref) else "-"
        if pd.notna(r.kappa_ref):
            agr += f" (chance {r.chance_ref:.1%}, kappa {r.kappa_ref:+.2f} [{r.kappa_lo:+.2f}, {r.kappa_hi:+.2f}])"
        cons = f"{r.consistency:.1%} of {r.both_orders}" if pd.notna(r.consistency) else "-"
        print(f"{r.name:<28} {r.kind:<9} {r.labels:>6} labels  agreement {agr:<16} position consistency {cons:<16}"
              f" {r.datasets}")
    if orders:
        print(f"per presentation order (agreement of each order's verdict with {reference}; games won by the "
              "response shown first / second / ties):")
    for o in orders:
        ab = f"{o.rate_ab:.1%} of {o.shared_ab}" if o.rate_ab is not None else "-"
        ba = f"{o.rate_ba:.1%} of {o.shared_ba}" if o.rate_ba is not None else "-"
        print(f"{o.judge:<28} A shown first {ab:<14} B shown first {ba:<14} of {o.games} games: first won "
              f"{o.first_won}, second won {o.second_won}, ties {o.ties}")
    return 0


def _fit_model(args) -> dict:
    """The model options of ``fit``: ``--paper`` is the paper's model (no position term, ties dropped,
    hard labels)."""
    if args.paper:
        if args.labels == "soft":
            raise CLIError("--paper fits hard labels (the paper's model); drop --labels soft, or drop --paper")
        return {"position": False, "ties": "drop", "labels": "hard"}
    return {"position": not args.no_position, "ties": args.ties, "labels": args.labels or "soft"}


@command(
    "fit", help="fit preference profiles (Bayesian logistic regression per scope and judge)",
    description="Fit one Bayesian logistic regression per (scope, judge): label 1 when the judge preferred A, "
    "the 29 comparison features with a Laplace(0, b) prior, a 'shown first' term (verdicts in both orders enter "
    "as two observations) and ties as an outcome (Davidson) where the judge tied; a label that carries the "
    "judge's own probability P(A) enters as that probability (a soft label; --labels hard: its choice "
    "alone); --paper fits the paper's model instead. Held-out accuracy is reported beside the majority, position-only and length-only baselines. "
    "The fast path (batched HMC, checked against NUTS) is "
    "the default; --method exact runs NUTS. Profiles whose inputs did not change are not fitted again.")
@option("--dataset", required=True)
@option("--features", help="feature set (default: LLM annotations, else the paper's, the demo's, "
        "the heuristics)")
@option("--scopes", action="append", help="scenario groups / query cases / category:NAME for one of "
        "your own categories (repeatable, or comma-separated; default: the 16 of the paper)")
@option("--judges", action="append", help="judges (repeatable, or comma-separated) (default: every judge with labels)")
@option("--method", choices=["fast", "exact"], default="fast")
@option("--prior-scale", type=float, default=0.1, help="Laplace prior scale b (default 0.1)")
@option("--folds", type=_non_negative_int, default=5, help="k for held-out accuracy (0 or 1: none)")
@option("--seed", type=int, default=0)
@option("--force", action="store_true", help="refit even when the inputs did not change")
@option("--include-excluded", action="store_true",
        help="keep samples whose errors could not be checked")
@option("--no-position", action="store_true",
        help="no 'shown first' term (by default every fit has one, and verdicts in both orders enter "
        "as two observations)")
@option("--ties", choices=["davidson", "drop"], default="davidson",
        help="ties as an outcome (Davidson's model, default; used where a judge tied) or dropped")
@option("--labels", choices=["soft", "hard"], default=None,
        help="soft (default): a label with the judge's own P(A) (a vote share, a score- or logprob-derived "
        "probability) is fitted by that probability, p log P(A wins) + (1-p) log P(B wins); a tie stays a tie, "
        "and a P(A) on the other side of its label's choice is used as given and counted in the provenance; "
        "hard: the choice alone, as the paper")
@option("--paper", action="store_true",
        help="the paper's model: the combined verdict, no position term, ties dropped, hard labels")
@option("--show", action="store_true",
        help="print each profile's held-out accuracy beside the best baseline, the position term, "
        "how many attributes were measured, and its top attributes")
@option("--background", action="store_true",
        help="run as a job in a worker process (as the dashboard does) and return at once")
def cmd_fit(args) -> int:
    from tqdm import tqdm

    from . import featureset, fit
    from .profile import is_attribute_term, is_position, measured_mask, profile_summary

    if getattr(args, "background", False):
        return _fit_background(args)
    with _store(args) as store:
        if args.dataset not in {d["name"] for d in store.datasets()}:
            raise CLIError(f"no dataset {args.dataset!r}")
        source = args.features or featureset.required(store, args.dataset)
        scopes = _scope_names(args.scopes)
        judges = _judge_names(store, args.judges, args.dataset)
        bar = tqdm(total=None, unit="step", file=sys.stderr, disable=None)

        def progress(stage, i, n):
            bar.total = n
            bar.n = i
            bar.set_postfix_str(stage, refresh=True)

        try:
            rep = fit.dissect(store, args.dataset, source, scopes=scopes, judges=judges, method=args.method,
                              prior_scale=args.prior_scale, folds=args.folds, seed=args.seed, force=args.force,
                              include_excluded=args.include_excluded, on_progress=progress, **_fit_model(args))
        finally:
            bar.close()
        print(f"dataset '{args.dataset}', features '{source}', {args.method} path: {len(rep.fitted)} profiles fitted, "
              f"{len(rep.unchanged)} unchanged, in {rep.seconds:.1f} s")
        for scope, why in rep.skipped:
            print(f"  skipped {scope}: {why}")
        if args.show:
            for p in store.profiles(dataset=args.dataset, feature_source=source, method=args.method):
                if scopes and p["scope"] not in scopes:
                    continue
                mask = measured_mask(p)
                top = sorted(((k, v) for k, v, ok in zip(p["attributes"], p["mean"], mask)
                              if ok and is_attribute_term(k)), key=lambda t: -t[1])[:3]
                acc = f"{p['accuracy']:.1%}" if p["accuracy"] is not None else "-"
                trust = profile_summary([p]).iloc[0]
                base = (f" vs {trust['baseline']} {trust['baseline_accuracy']:.1%}"
                        + ("" if trust["beats_baseline"] else " (NOT BETTER THAN BASELINE)")) if trust["baseline"] else ""
                pos = next((f" shown-first {v:+.2f} [{lo:+.2f}, {hi:+.2f}]" for k, v, lo, hi in
                            zip(p["attributes"], p["mean"], p["lo"] or [], p["hi"] or []) if is_position(k)), "")
                print(f"  {p['scope']:<18} {p['judge']:<26} n={p['n']:<5} held-out acc {acc:>6}{base}{pos}"
                      f"  measured {trust['measured']}  top: " + ", ".join(f"{k} {v:+.2f}" for k, v in top))
    return 0


@command("profiles", help="list profiles, or import published ones",
         description="List stored profiles, or import profiles in the seed repository's layout "
         "(one model_<scope>_fitted_paras.jsonl per scope) as external, means-only profiles.")
@option("--import", dest="import_dir", metavar="DIR")
@option("--dataset", help="dataset to list, or to file imported profiles under (default 'published')")
def cmd_profiles(args) -> int:
    from . import fit

    with _store(args) as store:
        if args.import_dir:
            if not Path(args.import_dir).is_dir():
                raise CLIError(f"{args.import_dir}: no such directory")
            n = fit.import_published(store, args.import_dir, dataset=args.dataset or "published")
            print(f"{args.import_dir}: {n} imported profiles (means only) in dataset '{args.dataset or 'published'}'")
            return 0
        rows = store.profiles(dataset=args.dataset)
        for p in rows:
            acc = f"{p['accuracy']:.1%}" if p["accuracy"] is not None else "-"
            print(f"{p['dataset']:<20} {p['scope']:<18} {p['judge']:<28} {p['method']:<9} {p['feature_source']:<24}"
                  f" n={p['n'] or '-':<5} acc {acc}")
        if not rows:
            print("no profiles")
    return 0


@command("export-profiles", help="write stored profiles as CSV or JSON (weights, intervals, provenance)",
         description="Write stored profiles as the Profiles page downloads them: CSV (one line per "
         "profile and attribute: weight mean, sd, interval, P(w > 0), 100*sigmoid(w) and its interval, "
         "R-hat, ESS, with accuracy and provenance) or JSON (one object per profile).")
@option("--dataset", required=True)
@option("--scope", help="one scenario group / query case / all (default: every scope)")
@options(_profile_set_args)
@option("--format", choices=["csv", "json"], default="csv")
@option("--out", "-o", metavar="FILE", help="write here instead of standard output")
def cmd_export_profiles(args) -> int:
    from .profile import export_profiles, stored_set

    with _store(args) as store:
        source, method = stored_set(store, args.dataset, args.features, args.method)
        rows = store.profiles(dataset=args.dataset, scope=args.scope, feature_source=source, method=method,
                              judges=_judge_names(store, args.judges, args.dataset))
    if not rows:
        raise CLIError(f"no {method!r} profiles of dataset {args.dataset!r}"
                       + (f" in scope {args.scope!r}" if args.scope else "") + " for those judges")
    text = export_profiles(rows, args.format)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
        print(f"wrote {len(rows)} profiles ({method}, features {source!r}) to {args.out}")
    else:
        sys.stdout.write(text)
    return 0


@command("similarity", help="judge similarity matrix and judge-group similarity",
         description="Similarity of judges: the correlation of their weight vectors, averaged over "
         "the scenario groups (or in one scope), ordered by hierarchical clustering; with --group or "
         "--size-split, the mean similarity within and between groups of judges.")
@option("--dataset", required=True)
@option("--scope", help="one scope instead of the average over the scenario groups")
@options(_profile_set_args)
@option("--corr", choices=["pearson", "spearman"], default="pearson")
@option("--group", action="append", metavar="NAME=J1,J2", help="a group of judges (repeatable)")
@option("--size-split", type=float, metavar="B",
        help="group by size at B billion parameters (judges.size_b, else read off the name)")
@option("--csv", metavar="FILE", help="also write the matrix as CSV")
def cmd_similarity(args) -> int:
    from . import catalogue, compare
    from .profile import stored_set

    with _store(args) as store:
        source, method = stored_set(store, args.dataset, args.features, args.method)
        weights = compare.weights_from_rows(store.profiles(dataset=args.dataset, feature_source=source, method=method))
        known = {j["name"]: j["size_b"] for j in store.judges()}
    if args.scope and args.scope not in weights:
        raise CLIError(f"no profiles in scope {args.scope!r} (there are: {', '.join(sorted(weights))})")
    report = compare.similarity_report(weights, scope=args.scope, judges=_names(args.judges, list(known)),
                                       corr=args.corr)
    if len(report.matrix) < 2:
        raise CLIError("similarity needs profiles of at least two judges")
    matrix, order = report.matrix, report.order
    where = f"in {args.scope!r}" if args.scope else f"averaged over {len(report.scopes)} scenario groups"
    print(f"{args.corr} similarity of {len(order)} judges ({args.dataset}, {method}, features {source!r}), {where};"
          " ordered by hierarchical clustering")
    if report.attribute_range:
        lo, hi = report.attribute_range
        print(f"computed over the attributes both profiles measured: {lo if lo == hi else f'{lo}-{hi}'} of "
              f"{len(catalogue.attribute_keys())} (the position term and unmeasured attributes left out)")
    print(matrix.round(3).to_string())
    groups: dict[str, list[str]] = {}
    for item in args.group or ():
        name, sep, members = item.partition("=")
        if not sep or not name.strip() or not members.strip():
            raise CLIError(f"--group must look like NAME=JUDGE,JUDGE,..., not {item!r}")
        groups[name.strip()] = [j.strip() for j in members.split(",") if j.strip() in matrix.index]
    if not groups and args.size_split:
        groups = compare.size_groups(order, compare.judge_sizes(order, known), args.size_split)
    groups = {k: v for k, v in groups.items() if v}
    if len(groups) >= 2:
        g = compare.group_similarity(matrix, groups)
        print()
        print(compare.group_table(g, groups).round(3).to_string(index=False))
    if args.csv:
        from . import safecsv

        safecsv.to_csv(matrix, args.csv)
        print(f"matrix written to {args.csv}")
    return 0


def _rates(items: Sequence[str] | None, what: str) -> dict[str, float]:
    """ATTR=RATE (or ATTR alone: rate 1) -> {attribute: rate}."""
    out: dict[str, float] = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        key = key.strip()
        try:
            rate = float(value) if sep else 1.0
        except ValueError:
            raise CLIError(f"{what} must look like ATTRIBUTE=RATE with a rate in [0, 1], not {item!r}") from None
        if not key:
            raise CLIError(f"{what} must look like ATTRIBUTE=RATE, not {item!r}")
        out[key] = rate
    return out


@command(
    "simulate", help="predict a model's win rate when its responses show (or hide) attributes",
    description="The injection simulator: from each judge's fitted profile, the observed win rate of MODEL against "
    "OPPONENT, the predicted win rate before and after injecting (+) or suppressing (-) attributes in MODEL's "
    "responses, each taking effect in a share RATE of the pairs, with 94% intervals from the posterior draws and "
    "each attribute's contribution (Shapley). Prints JSON, one result per judge. Optionally adds the "
    "what-to-inject ranking (--rank), attribute-controlled win rates of every model (--control) and a "
    "calibration table (--calibration). Win rates are shares in [0, 1]; ties count half.")
@option("--dataset", required=True)
@option("--judge", action="append", required=True, help="judge whose profile to use (repeatable)")
@option("--scope", default="all", help="scenario group, query case or 'all' (default)")
@option("--model", help="the model under test (default: response A of every pair)")
@option("--opponent", default="all", help="its opponent or baseline (default 'all': any other model)")
@option("--inject", action="append", metavar="ATTR=RATE",
        help="make MODEL show ATTR more than the opponent in a share RATE of the pairs (repeatable)")
@option("--suppress", action="append", metavar="ATTR=RATE",
        help="make MODEL show ATTR less than the opponent in a share RATE of the pairs (repeatable)")
@option("--features", help="feature set of the profile (default: the profile's own)")
@option("--method", help="profile method (default: exact, else fast, else any)")
@option("--rank", action="store_true", help="add the what-to-inject ranking (each attribute alone, rate 1)")
@option("--control", action="append", metavar="ATTR",
        help="add every model's win rate with ATTR's effect neutralised (repeatable)")
@option("--calibration", action="store_true", help="add predicted against observed by decile")
def cmd_simulate(args) -> int:
    from . import simulate

    with _store(args) as store:
        if args.dataset not in {d["name"] for d in store.datasets()}:
            raise CLIError(f"no dataset {args.dataset!r}")
        common = dict(scope=args.scope, feature_source=args.features, method=args.method)
        sims = simulate.simulate(store, args.dataset, args.judge, model=args.model, opponent=args.opponent,
                                 inject=_rates(args.inject, "--inject"), suppress=_rates(args.suppress, "--suppress"),
                                 **common)
        out: dict[str, Any] = {"dataset": args.dataset, "scope": args.scope, "model": args.model,
                               "opponent": args.opponent, "results": [s.to_dict() for s in sims]}
        # the scope's pairs read once per feature set for every table below (each would read them again)
        loaded: dict[str, simulate.PairSet] = {}

        def pairs(sim: simulate.Simulation) -> simulate.PairSet:
            if sim.feature_source not in loaded:
                loaded[sim.feature_source] = simulate.load_pairs(store, args.dataset, sim.feature_source, args.scope)
            return loaded[sim.feature_source]

        if args.rank:
            out["ranking"] = [simulate.injection_ranking(store, args.dataset, s.judge, model=args.model,
                                                         opponent=args.opponent, pairs=pairs(s), **common).to_dict()
                              for s in sims]
        if args.control:
            out["leaderboard"] = [simulate.controlled_win_rates(store, args.dataset, s.judge, args.control,
                                                                pairs=pairs(s), **common).to_dict() for s in sims]
        if args.calibration:
            out["calibration"] = [c.to_dict() for c in simulate.calibration(
                store, args.dataset, args.judge, pairs=pairs(sims[0]), **common)]
    print(json.dumps(out, indent=2))
    return 0


def _experiment_table(result: dict) -> str:
    def pct(x):
        return "   -  " if x is None else f"{100 * x:5.1f}%"

    lines = [f"{'arm':<12} {'n':>4}  {'measured [94%]':<24} {'predicted [predictive 94%]':<28} "
             f"{'shift':>7} {'predicted shift [predictive]':<30}"]
    for a in result["arms"]:
        m, p = a["measured"], a.get("predicted") or {}
        s, ps = a.get("shift") or {}, a.get("predicted_shift") or {}
        lines.append(f"{a['arm']:<12} {a['n']:>4}  {pct(m['rate'])} [{pct(m['lo'])}, {pct(m['hi'])}]  "
                     f"{pct(p.get('mean'))} [{pct(p.get('pred_lo'))}, {pct(p.get('pred_hi'))}]  "
                     f"{pct(s.get('mean'))} {pct(ps.get('mean'))} [{pct(ps.get('pred_lo'))}, {pct(ps.get('pred_hi'))}]")
        for k, v in a.get("success", {}).items():
            lines.append(f"    {v['direction']} {k}: success {pct(v['rate'])} "
                         f"({v['moved']} of {v['could_move']} queries that could move)")
    return "\n".join(lines)


def _experiment_args(xe: argparse.ArgumentParser) -> None:
    """The options of ``experiment`` (run, list, show, export, resume), grouped by what they set."""
    xe.add_argument("action", nargs="?", choices=["run", "list", "show", "export", "resume"])
    xe.add_argument("id", nargs="?", type=int, help="the experiment (show, export, resume)")
    q = xe.add_argument_group("queries and baseline (run)")
    q.add_argument("--queries-dataset", help="take the queries from this stored dataset")
    q.add_argument("--queries-file", help='or from a JSONL/JSON file of {"query", optional "baseline"}')
    q.add_argument("--limit", type=_positive_int, help="only the first N queries")
    q.add_argument("--baseline-from", metavar="MODEL",
                   help="baseline: the stored response of this model (default: response B of each sample)")
    q.add_argument("--baseline-model", help="or a baseline endpoint's model (answers with the plain prompt)")
    q.add_argument("--baseline-base-url", help="the baseline endpoint's base URL")
    j = xe.add_argument_group("judge and profile (run)")
    j.add_argument("--profile-dataset", help="the dataset the judge's profile was fitted on")
    j.add_argument("--judge", help="the profiled judge (its profile picks the default attributes and predicts)")
    j.add_argument("--scope", default="all", help="the profile's scope (default all)")
    j.add_argument("--features", help="the profile's feature set (default: the best fitted one)")
    j.add_argument("--judge-model", help="the judge endpoint's model (collected in both orders)")
    j.add_argument("--judge-base-url", help="the judge endpoint's base URL")
    j.add_argument("--judge-name", help="store the judge's labels under this name (default: its model)")
    j.add_argument("--annotator-base-url", help="for a profile on LLM features: the annotator's base URL")
    m = xe.add_argument_group("manipulation (run)")
    m.add_argument("--arm", action="append", metavar="NAME=+ATTR,-ATTR",
                   help="an arm: attributes to show (+) and avoid (-); repeat it; default: liked (top-k shown) "
                        "and disliked (bottom-k shown)")
    m.add_argument("--top-k", type=_positive_int, default=5, help="attributes per default arm (default 5)")
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--name", help="a name for the experiment")
    xe.add_argument("--budget", type=_money, help="stop cleanly before the job's spend passes this many USD")
    xe.add_argument("--estimate-only", action="store_true", help="create it, print the cost estimate and stop")
    xe.add_argument("--background", action="store_true", help="run it in a worker process")
    xe.add_argument("--format", choices=["csv", "json"], default="json", help="export format (default json)")
    xe.add_argument("--what", choices=["arms", "attributes"], default="arms", help="CSV export: which table")
    xe.add_argument("--output", "-o", help="export to this file (default: stdout)")
    g = xe.add_argument_group("model under test (run; defaults from PREFDISSECT_LLM_*; keys only from the environment)")
    g.add_argument("--model")
    g.add_argument("--base-url")
    g.add_argument("--concurrency", type=int)
    g.add_argument("--temperature", type=float)
    g.add_argument("--max-tokens", type=int, help="the answers' length limit (default 700)")
    g.add_argument("--rpm", type=float)
    g.add_argument("--tpm", type=float)
    g.add_argument("--price-input", type=float)
    g.add_argument("--price-output", type=float)
    _timeout_args(g)


@command("experiment", help="run the manipulation experiment; list, show, export or resume one",
         description="The paper's manipulation experiment, for real (core/experiment.py): the model under test answers "
        "each query once plainly (control) and once per arm with a system prompt asking it to show (or avoid) "
        "attributes, by default the judge's top and bottom attributes from its profile; the judge compares every "
        "answer with the baseline's in both orders; the report holds each arm's measured win rate and shift "
        "against the control beside the profile's prediction, with 94% intervals. Paid requests are keyed and "
        "stored: a rerun or resume sends only what is missing. Actions: run, list (default), show ID, export ID, "
        "resume ID.")
@options(_experiment_args)
def cmd_experiment(args) -> int:
    from . import experiment, jobs
    from .llm import LLMSettings

    action = args.action or "list"
    with _store(args) as store:
        if action == "list":
            rows = store.experiments()
            if not rows:
                print("no experiments yet: python -m core experiment run --help")
            for r in rows:
                spec = r["spec"] or {}
                print(f"{r['id']:>4}  {r['status']:<9} {_inert(r['name'])}  model {spec.get('model', {}).get('model')}, "
                      f"judge {spec.get('judge_name')}, {len(spec.get('arms', []))} arms, "
                      f"{(r['provenance'] or {}).get('queries')} queries, created {r['created_at']}")
            return 0
        if action in ("show", "export", "resume"):
            if args.id is None:
                raise CLIError(f"experiment {action} needs the experiment's id (python -m core experiment list)")
            rec = store.experiment(args.id)
            if rec is None:
                raise CLIError(f"no experiment {args.id}")
        if action == "show":
            print(f"experiment {rec['id']} {_inert(rec['name'])}: {rec['status']}"
                  + (f" (job {rec['job_id']})" if rec["job_id"] else ""))
            print(f"  pairs: dataset {rec['dataset']}; queries: {rec['queries_dataset']}; provenance: "
                  + json.dumps(rec["provenance"], sort_keys=True, default=str))
            if rec["result"]:
                print(_experiment_table(rec["result"]))
            return 0
        if action == "export":
            text = experiment.export(store, args.id, args.format, args.what)
            if args.output:
                from pathlib import Path

                Path(args.output).write_text(text, encoding="utf-8")
                print(f"wrote {args.output}")
            else:
                sys.stdout.write(text if text.endswith("\n") else text + "\n")
            return 0
        if action == "resume":
            exp_id = args.id
        else:  # run
            if not (args.queries_dataset or args.queries_file):
                raise CLIError("give the queries: --queries-dataset NAME or --queries-file FILE")
            if not (args.profile_dataset and args.judge):
                raise CLIError("give the judge's profile: --profile-dataset NAME --judge NAME")
            model = LLMSettings.from_env(**_llm_overrides(args))
            judge = LLMSettings.from_env(**{k: v for k, v in {"model": args.judge_model,
                                                               "base_url": args.judge_base_url}.items() if v})
            baseline = (LLMSettings.from_env(**{k: v for k, v in {"model": args.baseline_model,
                                                                  "base_url": args.baseline_base_url}.items() if v})
                        if args.baseline_model or args.baseline_base_url else None)
            queries = ({"file": args.queries_file} if args.queries_file else
                       {"dataset": args.queries_dataset, "baseline_model": args.baseline_from})
            if args.limit:
                queries["limit"] = args.limit
            spec = experiment.Spec(
                name=args.name or f"{model.model} vs {args.judge}", model=model.public(), judge=judge.public(),
                judge_name=store.judge_name(args.judge_name or judge.model),
                profile={"dataset": args.profile_dataset, "scope": args.scope, "judge": store.judge_name(args.judge),
                         **({"feature_source": args.features} if args.features else {})},
                arms=[experiment.Arm.parse(a) for a in args.arm or []], queries=queries,
                baseline=baseline.public() if baseline else None,
                annotator={"base_url": args.annotator_base_url} if args.annotator_base_url else None,
                seed=args.seed, max_tokens=args.max_tokens or 700, top_k=args.top_k)
            exp_id = experiment.create(store, spec)
            print(f"experiment {exp_id} created: arms "
                  + "; ".join(f"{a.name} ({', '.join(['+' + k for k in a.show] + ['-' + k for k in a.avoid]) or 'plain'})"
                              for a in experiment.Spec.from_dict(store.experiment(exp_id)["spec"]).arms))
        est = experiment.estimate(store, exp_id)
        print(est.text())
        if args.estimate_only:
            return 0
        params = {"experiment": exp_id}  # the job's key: one job per experiment, whoever starts it
        if args.background:
            job, pid = jobs.launch(store, "experiment", params, budget=args.budget)
            print(f"job {job.id} queued; worker pid {pid}. Follow it: python -m core jobs --show {job.id}")
            return 0
        job = jobs.submit(store, "experiment", params, budget=args.budget)
        if job.status in ("cancelled", "paused", "failed", "done") or job.stale:
            job = jobs.resume(store, job.id)
        if not jobs.claim(store, job.id):
            raise CLIError(f"job {job.id} is being run by worker pid {job.worker_pid}")
        last = [None]

        def progress(stage):
            if stage[0] != last[0]:
                last[0] = stage[0]
                print(f"  {stage[0]} ...", file=sys.stderr)

        final = jobs.run(store, job.id, on_progress=progress)
        print(f"job {final.id} {final.status}: {final.message}; spent {final.spend_text}")
        rec = store.experiment(exp_id)
        if rec["result"]:
            print(_experiment_table(rec["result"]))
            print(f"link: the Simulator page with ?experiment={exp_id}")
        return 0 if final.status == "done" else 3


@command("experiments", help="list the stored experiments (as `experiment list`)",
         description="List the stored manipulation experiments, newest first.")
def cmd_experiments(args) -> int:
    args.action = "list"
    return cmd_experiment(args)


@command("loopback", help="serve a scripted OpenAI-compatible endpoint on 127.0.0.1",
         description="Serve a scripted OpenAI-compatible endpoint on 127.0.0.1 for offline demos and "
         "tests; options after the command are passed on (see `python -m core loopback -- --help`).",
         add_help=True)
@option("rest", nargs=argparse.REMAINDER)
def cmd_loopback(args) -> int:
    from . import loopback

    rest = args.rest[1:] if args.rest[:1] == ["--"] else args.rest
    return loopback.main(rest) or 0


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
    assert set(COMMANDS) == set(HELP_ORDER), "a command missing from HELP_ORDER (or one there without a handler)"
    for name in HELP_ORDER:
        parser_kwargs, opts, func = COMMANDS[name]
        sp = sub.add_parser(name, **parser_kwargs)
        for add in opts:
            add(sp)
        sp.set_defaults(func=func)
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
        lines = getattr(e, "lines", None)
        if callable(lines):  # importers.InputErrors: every problem of a file, one per line
            for line in lines():
                print(f"error: {line.strip()}", file=sys.stderr)
            return 2
        msg = " ".join(str(e).split())
        print(f"error: {msg}", file=sys.stderr)
        return 2
    except Exception as e:
        from .llm import LLMError

        if isinstance(e, LLMError):  # an endpoint that cannot be used (a wrong key, no server): its words
            print(f"error: {e}", file=sys.stderr)
            return 2
        raise
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
