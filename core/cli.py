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
        res = demo.build_demo(store, seed=args.seed, n_per_group=args.per_group, fit=not args.no_fit)
        fitted = store.scalar("SELECT COUNT(*) FROM profiles WHERE dataset = ? AND method = 'fast'", [res.dataset])
    print(
        f"demo dataset '{res.dataset}' (synthetic): {res.samples_added} samples added "
        f"({res.samples_seen} in the demo), judges: {', '.join(res.judges)}; {fitted} fitted profiles"
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


def _llm_overrides(args) -> dict[str, Any]:
    return {k: v for k, v in {
        "model": args.model, "base_url": args.base_url, "concurrency": args.concurrency,
        "temperature": args.temperature, "max_tokens": args.max_tokens, "requests_per_minute": args.rpm,
        "tokens_per_minute": args.tpm, "price_input": args.price_input, "price_output": args.price_output,
    }.items() if v is not None}


def _run_job_foreground(store, job) -> int:
    """Run a job in this process with a progress bar; print a summary."""
    from tqdm import tqdm

    from . import jobs

    if job.status == "done" and not job.failed:
        print(f"job {job.id} already finished: {job.done} samples, ${job.cost:.4f}")
        return 0
    if job.status in ("cancelled", "paused", "failed", "done") or job.stale:
        job = jobs.resume(store, job.id)
    if not jobs.claim(store, job.id):
        raise CLIError(f"job {job.id} is being run by worker pid {job.worker_pid}; watch it with `python -m core jobs`")
    bar = tqdm(total=None, unit="sample", file=sys.stderr, disable=None, dynamic_ncols=True)

    def progress(pr):
        bar.total = pr.total
        bar.n = pr.done
        bar.set_postfix_str(f"failed {pr.failed}, ${pr.cost:.4f}", refresh=False)
        bar.refresh()

    try:
        final = jobs.run(store, job.id, on_progress=progress)
    finally:
        bar.close()
    print(f"job {final.id} {final.status}: {final.done}/{final.total} samples done, {final.failed} failed, "
          f"cost ${final.cost:.4f}. {final.message or ''}")
    return 0 if final.status == "done" else 3


def _samples_or_fail(store, args):
    samples = store.samples_for(args.dataset, scenario=args.scenario, limit=args.limit)
    if not samples:
        known = ", ".join(d["name"] for d in store.datasets()) or "none"
        raise CLIError(f"no samples in dataset {args.dataset!r}"
                       + (f" with scenario {args.scenario!r}" if args.scenario else "") + f" (datasets: {known})")
    return samples


def cmd_annotate(args) -> int:
    from . import annotate, jobs
    from .llm import LLMSettings

    settings = LLMSettings.from_env(**_llm_overrides(args))
    with _store(args) as store:
        samples = _samples_or_fail(store, args)
        params = {"dataset": args.dataset, "scenario": args.scenario, "limit": args.limit}
        if args.heuristic or not (settings.key_is_set or settings.base_url):
            if not args.heuristic:
                print("no LLM configured (set PREFDISSECT_LLM_API_KEY or PREFDISSECT_LLM_BASE_URL): "
                      "using the offline heuristic annotator", file=sys.stderr)
            job = jobs.submit(store, "heuristic", params, total=len(samples))
            return _run_job_foreground(store, job)
        est = annotate.estimate(store, samples, settings, both_orders=args.both_orders)
        print(annotate.estimate_text(est))
        if args.estimate_only:
            return 0
        params.update(both_orders=args.both_orders, llm=settings.public())
        job = jobs.submit(store, "annotate", params, total=len(samples), budget=args.budget)
        code = _run_job_foreground(store, job)
        if args.both_orders:
            cons = annotate.order_consistency(store, annotate.feature_source(settings.model, True))
            shown = ", ".join(f"{k} {v:.0%}" for k, v in cons.items() if v is not None)
            print(f"order consistency: {shown}")
        return code


def cmd_judge(args) -> int:
    from . import annotate, jobs, judges
    from .llm import LLMSettings

    settings = LLMSettings.from_env(**_llm_overrides(args))
    if not (settings.key_is_set or settings.base_url):
        raise CLIError("no LLM configured: set PREFDISSECT_LLM_API_KEY (or OPENAI_API_KEY) and/or PREFDISSECT_LLM_BASE_URL")
    with _store(args) as store:
        samples = _samples_or_fail(store, args)
        both = not args.single_order
        est = annotate.estimate(store, samples, settings, both_orders=both, planner=judges.plan_judge_requests)
        print(annotate.estimate_text(est))
        if args.estimate_only:
            return 0
        params = {"dataset": args.dataset, "scenario": args.scenario, "limit": args.limit, "judge": args.judge,
                  "both_orders": both, "llm": settings.public()}
        job = jobs.submit(store, "judge", params, total=len(samples), budget=args.budget)
        code = _run_job_foreground(store, job)
        c = judges.position_consistency(store, args.judge)
        if c.rate is not None:
            print(f"position consistency of {args.judge}: {c.rate:.1%} of {c.both_orders} samples")
        return code


def cmd_worker(args) -> int:
    from . import jobs

    with _store(args) as store:
        if not jobs.claim(store, args.job):
            raise CLIError(f"job {args.job} is not queued or is already running")
        final = jobs.run(store, args.job)
    print(f"job {final.id} {final.status}")
    return 0


def cmd_jobs(args) -> int:
    from . import jobs

    with _store(args) as store:
        if args.cancel:
            jobs.cancel(store, args.cancel)
        if args.resume:
            job = jobs.resume(store, args.resume)
            if job.status == "queued":
                pid = jobs.start_worker(store.path, job.id)
                print(f"job {job.id} resumed by worker pid {pid}")
        for j in jobs.list_jobs(store):
            state = "running (worker lost)" if j.stale else j.status
            print(f"{j.id:>4}  {j.kind:<9} {state:<22} {j.done}/{j.total} done, {j.failed} failed, ${j.cost:.4f}"
                  f"  {j.params.get('dataset', '')}  {j.message or ''}")
    return 0


def _default_feature_source(store, dataset: str) -> str:
    """The richest feature set the dataset has: LLM annotations, then the paper's, the demo's, the heuristics."""
    sources = [r["source"] for r in store.feature_sources(dataset)]
    if not sources:
        raise CLIError(f"dataset {dataset!r} has no features yet: run `python -m core annotate --dataset {dataset}` "
                       "(without an LLM configured it uses the offline heuristics)")
    rank = lambda src: (0 if src.startswith("llm:") else 1 if src.startswith("hf:") else 2 if src == "demo" else 3)
    return sorted(sources, key=rank)[0]


def cmd_fit(args) -> int:
    from tqdm import tqdm

    from . import fit

    with _store(args) as store:
        if args.dataset not in {d["name"] for d in store.datasets()}:
            raise CLIError(f"no dataset {args.dataset!r}")
        source = args.features or _default_feature_source(store, args.dataset)
        scopes = args.scopes.split(",") if args.scopes else None
        judges = args.judges.split(",") if args.judges else None
        bar = tqdm(total=None, unit="step", file=sys.stderr, disable=None)

        def progress(stage, i, n):
            bar.total = n
            bar.n = i
            bar.set_postfix_str(stage, refresh=True)

        try:
            rep = fit.dissect(store, args.dataset, source, scopes=scopes, judges=judges, method=args.method,
                              prior_scale=args.prior_scale, folds=args.folds, seed=args.seed, force=args.force,
                              include_excluded=args.include_excluded, on_progress=progress)
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
                top = sorted(zip(p["attributes"], p["mean"]), key=lambda t: -t[1])[:3]
                acc = f"{p['accuracy']:.1%}" if p["accuracy"] is not None else "-"
                print(f"  {p['scope']:<18} {p['judge']:<26} n={p['n']:<5} held-out acc {acc:>6}  top: "
                      + ", ".join(f"{k} {v:+.2f}" for k, v in top))
    return 0


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


def cmd_loopback(args) -> int:
    from . import loopback

    rest = args.rest[1:] if args.rest[:1] == ["--"] else args.rest
    return loopback.main(rest) or 0


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


def _selection_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", required=True)
    p.add_argument("--scenario", help="only this scenario group")
    p.add_argument("--limit", type=int, help="only the first N samples")
    p.add_argument("--budget", type=float, help="stop before the projected spend passes this many USD")
    p.add_argument("--estimate-only", action="store_true", help="print the cost estimate and stop")


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
    d.add_argument("--no-fit", action="store_true", help="do not fit the judges' profiles after building")
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
    an = sub.add_parser(
        "annotate", help="rate the attributes of each pair with an LLM (or the offline heuristics)",
        description="Annotate samples with an OpenAI-compatible LLM: scenario, query analysis, 0-3 ratings, "
        "conditional ratings, reference answer, error detection. Every answer is stored as it arrives; rerun the "
        "same command to resume. Without an LLM configured, the offline heuristic annotator runs instead.")
    _selection_args(an)
    an.add_argument("--both-orders", action="store_true", help="run pairwise steps in both orders and reconcile")
    an.add_argument("--heuristic", action="store_true", help="use the offline heuristic annotator")
    _llm_args(an)
    an.set_defaults(func=cmd_annotate)

    jd = sub.add_parser(
        "judge", help="collect an LLM judge's labels (which response is better, in both orders)",
        description="Ask an OpenAI-compatible model which response is better, in both orders; uses the answer "
        "tokens' log-probabilities when the server returns them. Cached and resumable like annotation.")
    _selection_args(jd)
    jd.add_argument("--judge", required=True, help="name to store the labels under")
    jd.add_argument("--single-order", action="store_true", help="ask only with A shown first")
    _llm_args(jd)
    jd.set_defaults(func=cmd_judge)

    ft = sub.add_parser(
        "fit", help="fit preference profiles (Bayesian logistic regression per scope and judge)",
        description="Fit one Bayesian logistic regression per (scope, judge): label 1 when the judge preferred A, "
        "the 29 comparison features, Laplace(0, b) prior. The fast path (batched HMC, checked against NUTS) is "
        "the default; --method exact runs NUTS. Profiles whose inputs did not change are not fitted again.")
    ft.add_argument("--dataset", required=True)
    ft.add_argument("--features", help="feature set (default: LLM annotations, else the paper's, the demo's, "
                    "the heuristics)")
    ft.add_argument("--scopes", help="comma-separated scenario groups / query cases (default: all 16)")
    ft.add_argument("--judges", help="comma-separated judges (default: every judge with labels)")
    ft.add_argument("--method", choices=["fast", "exact"], default="fast")
    ft.add_argument("--prior-scale", type=float, default=0.1, help="Laplace prior scale b (default 0.1)")
    ft.add_argument("--folds", type=int, default=5, help="k for held-out accuracy (0 or 1: none)")
    ft.add_argument("--seed", type=int, default=0)
    ft.add_argument("--force", action="store_true", help="refit even when the inputs did not change")
    ft.add_argument("--include-excluded", action="store_true",
                    help="keep samples whose errors could not be checked")
    ft.add_argument("--show", action="store_true", help="print each profile's top attributes and accuracy")
    ft.set_defaults(func=cmd_fit)

    pf = sub.add_parser("profiles", help="list profiles, or import published ones",
                        description="List stored profiles, or import profiles in the seed repository's layout "
                        "(one model_<scope>_fitted_paras.jsonl per scope) as external, means-only profiles.")
    pf.add_argument("--import", dest="import_dir", metavar="DIR")
    pf.add_argument("--dataset", help="dataset to list, or to file imported profiles under (default 'published')")
    pf.set_defaults(func=cmd_profiles)

    jb = sub.add_parser("jobs", help="list jobs; cancel or resume one",
                        description="List annotation and judge jobs with progress and cost; cancel or resume one.")
    jb.add_argument("--cancel", type=int, metavar="ID")
    jb.add_argument("--resume", type=int, metavar="ID", help="queue the job again and start a worker for it")
    jb.set_defaults(func=cmd_jobs)

    wk = sub.add_parser("worker", help="run one queued job (the dashboard starts these)",
                        description="Run one queued job to its end in this process.")
    wk.add_argument("job", type=int)
    wk.set_defaults(func=cmd_worker)

    lb2 = sub.add_parser("loopback", help="serve a scripted OpenAI-compatible endpoint on 127.0.0.1",
                         description="Serve a scripted OpenAI-compatible endpoint on 127.0.0.1 for offline demos and "
                         "tests; options after the command are passed on (see `python -m core loopback -- --help`).",
                         add_help=True)
    lb2.add_argument("rest", nargs=argparse.REMAINDER)
    lb2.set_defaults(func=cmd_loopback)
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
