"""The pieces the Annotate & fit and Judges pages share: the pages that change the store.

Sample selection, the LLM endpoint form (the key's status, never the key), the cost estimate,
starting a background job, the job watcher (a fragment that polls the job's row in the store, so
a reload or a second browser sees the same job), job history, and adding a judge from an
uploaded labels file. Everything here calls ``core``; nothing derived from data is rendered as
markup (``st.text`` / ``st.code`` / data frames, or markdown through ``render.plain``).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import replace
from pathlib import Path

import pandas as pd
import streamlit as st

from core import config, importers, jobs
from core.llm import KEY_ENVS, LLMSettings
from core.prices import fmt_cost
from core.store import category_scope
from dashboard import auth, data, data_judges, data_samples, fmt
from dashboard.render import plain

ROOT = Path(__file__).resolve().parent.parent

POLL_S = 1.0  # how often the watcher polls a live job's row
#: the columns of a job's failed-requests table
FAILURE_COLUMNS = {"sample_id": "sample", "step": "step", "orientation": "order", "error": "why it failed",
                   "attempts": st.column_config.NumberColumn("attempts", help="tries before it was given up"),
                   "created_at": fmt.time_column("when")}
STATUS_COLOURS = {"queued": "gray", "running": "blue", "done": "green", "failed": "red", "cancelled": "orange",
                  "paused": "orange", "running (worker lost)": "red"}
# ---------------------------------------------------------------- the annotator endpoint and its key


def _secret_key() -> str | None:
    try:
        for name in KEY_ENVS:
            if name in st.secrets and st.secrets[name]:
                return str(st.secrets[name])
    except Exception:  # no secrets file
        return None
    return None


def key_source() -> str | None:
    """Where the API key comes from ("environment", "Streamlit secrets") or None; never the key."""
    if any(os.environ.get(k) for k in KEY_ENVS):
        return "environment"
    return "Streamlit secrets" if _secret_key() else None


_TYPED = "workbench_typed_keys"  # session memory only: normalised base URL -> a key typed for it


def worker_env(base_url: str | None = None) -> dict[str, str]:
    """What a worker needs beyond this process's environment: the key from Streamlit secrets when
    the environment has none, and a key this session typed for ``base_url`` when the operator did
    not configure that endpoint. Keys go into the worker's process environment only, never to a
    file, the store, job parameters or logs; the worker sends the operator's key only to the
    endpoints the operator configured (``config.key_allowed_for``)."""
    env: dict[str, str] = {}
    if not any(os.environ.get(k) for k in KEY_ENVS):
        key = _secret_key()
        if key:
            env[KEY_ENVS[0]] = key
    typed = st.session_state.get(_TYPED, {}).get(config.normalise_base_url(base_url))
    if typed and not config.key_allowed_for(base_url):
        env[config.TYPED_KEY_ENV] = typed
    return env


def has_key_for(base_url: str | None) -> bool:
    """Whether a job on ``base_url`` would be sent with a key (the operator's or one typed here)."""
    if config.key_allowed_for(base_url):
        return bool(key_source())
    return bool(st.session_state.get(_TYPED, {}).get(config.normalise_base_url(base_url)))


def llm_configured() -> bool:
    return bool(key_source() or LLMSettings.from_env().base_url)


def endpoint_form(prefix: str) -> dict:
    """Base URL, model, prices, requests in flight and the seconds a request may take (defaults from
    ``PREFDISSECT_LLM_*``) and whether a key is set. Returns the public settings (no key), as jobs store them."""
    env = LLMSettings.from_env()
    c1, c2 = st.columns(2)
    base_url = c1.text_input("Base URL (OpenAI-compatible)", value=env.base_url or "", key=f"{prefix}_base_url",
                             placeholder="empty: OpenAI", help="OpenAI, vLLM, Ollama, a gateway, the loopback server")
    model = c2.text_input("Model", value=env.model, key=f"{prefix}_model")
    c3, c4, c5, c6 = st.columns(4)
    # empty: the price table's figure for the model (core/prices.py), or unknown
    price_in = c3.number_input("USD per million input tokens", min_value=0.0, value=env.price_input,
                               step=0.05, format="%.3f", key=f"{prefix}_price_in", placeholder="from the price table")
    price_out = c4.number_input("USD per million output tokens", min_value=0.0, value=env.price_output,
                                step=0.05, format="%.3f", key=f"{prefix}_price_out", placeholder="from the price table")
    concurrency = c5.number_input("Requests in flight", min_value=1, max_value=512, value=int(env.concurrency),
                                  key=f"{prefix}_concurrency")
    # no upper bound, and the deployment's own value shown as it is (a bound below it would fail the page)
    timeout = c6.number_input("Seconds per request", min_value=0.1, value=max(0.1, float(env.timeout_s)),
                              step=10.0, format="%g", key=f"{prefix}_timeout",
                              help="a request that takes longer is given up, and retried where a retry can help; "
                                   "a slow local server gets longer at its measured pace")
    source = key_source()
    typed_base = base_url.strip() or None
    if not config.key_allowed_for(typed_base):
        # the deployment's key goes only to the endpoints its operator configured
        st.caption(":material/shield: This base URL is not one this deployment is configured for, so its API key "
                   "is not sent there. If the server needs a key, type one: it is used for jobs you start on this "
                   "URL in this browser session only, and never stored or shown.")
        typed = st.text_input("API key for this base URL (optional)", type="password", key=f"{prefix}_typed_key")
        keys = st.session_state.setdefault(_TYPED, {})
        if typed.strip():
            keys[config.normalise_base_url(typed_base)] = typed.strip()
        else:
            keys.pop(config.normalise_base_url(typed_base), None)
    elif source:
        st.caption(f":material/key: API key: set (from the {source}). It is passed to the worker's environment "
                   "only, never shown or stored.")
    else:
        st.caption(":material/key_off: API key: not set. Set PREFDISSECT\\_LLM\\_API\\_KEY (or OPENAI\\_API\\_KEY) in the "
                   "environment or in Streamlit secrets; a local server may need none.")
    batch = st.toggle("Batch mode (Batch API: half price, results within 24 hours)", key=f"{prefix}_batch",
                      help="Requests go as JSONL files through the server's files and batches endpoints (OpenAI, "
                           "and gateways that speak the same API); steps that need earlier answers run as "
                           "successive rounds. The job polls until every round is back.")
    settings = replace(env, base_url=base_url.strip() or None, model=model.strip() or env.model,
                       price_input=None if price_in is None else float(price_in),
                       price_output=None if price_out is None else float(price_out), concurrency=int(concurrency),
                       timeout_s=float(timeout), batch=bool(batch))
    st.caption(f":material/sell: {settings.price.describe()}")
    return settings.public()


# ---------------------------------------------------------------- what to work on


def selection_form(prefix: str, overview: dict) -> tuple[dict, int]:
    """Dataset, scenario groups (none chosen: every group) and a sample limit. Returns the job's
    selection parameters and how many samples they cover."""
    datasets = overview["datasets"]
    dataset = st.selectbox("Dataset", list(datasets["name"]), key=f"{prefix}_dataset")
    scen = overview["scenarios"]
    scen = scen[(scen["dataset"] == dataset) & (scen["scenario_group"] != "(unclassified)")]
    counts = dict(zip(scen["scenario_group"], scen["samples"].astype(int)))
    groups = st.multiselect("Scenario groups", list(counts), key=f"{prefix}_groups", placeholder="every group",
                            format_func=lambda g: f"{g} ({counts[g]:,})")
    limit = int(st.number_input("At most this many samples (0: all)", min_value=0, value=0, step=10,
                                key=f"{prefix}_limit"))
    n = sum(counts[g] for g in groups) if groups else int(datasets.set_index("name").loc[dataset, "samples"])
    if limit:
        n = min(n, limit)
    return {"dataset": dataset, "scenarios": groups, "limit": limit or None}, n


def show_estimate(est: dict, llm: dict | None = None) -> None:
    """The cost estimate of a job before it starts: totals and one row per step; a loud warning when
    requests go to a remote endpoint whose price is unknown (neither given nor in the price table):
    the provider bills them, and a budget cannot stop a job whose cost cannot be counted."""
    e = est["estimate"]
    if llm is not None and e.requests and not e.price_known:
        local = any(h in str(llm.get("base_url") or "") for h in ("localhost", "127.0.0.1", "0.0.0.0", "[::1]"))
        if not local:
            st.error(f"No price is known for {plain(llm.get('model') or 'this model')}: {e.requests:,} requests will "
                     "be sent to a remote endpoint that may bill them, and their cost cannot be counted (a budget "
                     "cannot stop the job). Enter the model's prices per million tokens above (or set "
                     "PREFDISSECT_LLM_PRICE_INPUT / _OUTPUT) before starting.", icon=":material/warning:")
    cols = st.columns(4)
    cols[0].metric("Samples", f"{e.samples:,}")
    cols[1].metric("Requests to send", f"{e.requests:,}", help=f"{e.cached:,} already answered (from the store, free)")
    cols[2].metric("Tokens (in + out)", f"~{e.input_tokens + e.output_tokens:,}")
    cols[3].metric("Estimated cost", fmt_cost(e.cost, known=e.price_known), help=e.price_source or None)
    if not est["steps"].empty:
        fmt.dataframe(est["steps"], hide_index=True, column_config={
            "input_tokens": st.column_config.NumberColumn("input tokens (est.)", format="%d"),
            "output_tokens": st.column_config.NumberColumn("output tokens (typical)", format="%d"),
            # an unknown price has no cost column: never a column of $0
            "cost": st.column_config.NumberColumn("cost (USD)", format="$%.4f") if e.price_known else None})
    how = "Input tokens are counted on the actual prompts"
    if est["sampled"]:
        how += f" of {est['sampled']:,} evenly spaced samples, scaled to all {e.samples:,}"
    st.caption(how + "; outputs are typical lengths per step; conditional ratings are counted for every sample "
               "(an upper bound).")


# ---------------------------------------------------------------- starting and watching jobs


def flash(message: str, kind: str = "success") -> None:
    st.session_state["workbench_flash"] = (kind, message)


def show_flash() -> None:
    kind, message = st.session_state.pop("workbench_flash", (None, None))
    if message:
        getattr(st, kind)(plain(message))


def start(kind: str, params: dict, *, total: int = 0, budget: float | None = None, watch_key: str = "watch") -> None:
    """Submit the job (or run a finished one again) and start a worker unless one is on it."""
    if kind == "judge" and params.get("judge"):
        try:  # the name as it will be stored; refused when it only differs by case from a stored judge's
            params = {**params, "judge": data.store().judge_name(params["judge"])}
        except ValueError as e:
            st.error(str(e))
            return
    env = worker_env((params.get("llm") or {}).get("base_url"))
    job, pid = jobs.launch(data.store(), kind, params, total=total, budget=budget, env=env)
    st.session_state[f"{watch_key}_next"] = job.id
    if pid:
        flash(f"Job #{job.id} started (worker pid {pid}).")
    elif job.active:
        flash(f"Job #{job.id} is already {job.status}: no second worker was started.", "info")
    elif job.stopping:
        flash(f"Job #{job.id} is still stopping (its requests in flight finish first); start it again in a moment.",
              "info")
    else:
        flash(f"Job #{job.id} is {job.status}.", "info")
    st.rerun()


def watch(kinds: tuple[str, ...] | None = None, key: str = "watch") -> None:
    """Pick a job (default: the one just started, else the newest live one, else the newest) and
    follow it: a fragment polls its row while it is live."""
    recent = [j for j in jobs.list_jobs(data.store(), 100) if not kinds or j.kind in kinds]
    if not recent:
        st.caption("No jobs yet.")
        return
    by_id = {j.id: j for j in recent}
    pick = f"{key}_pick"
    nxt = st.session_state.pop(f"{key}_next", None)
    if nxt in by_id:
        st.session_state[pick] = nxt
    if st.session_state.get(pick) not in by_id:
        live = [j for j in recent if j.active or j.stale]
        st.session_state[pick] = (live or recent)[0].id
    labels = {i: f"#{i} · {j.summary}" for i, j in by_id.items()}  # stable labels: the state is in the panel
    job_id = st.selectbox("Job", list(by_id), key=pick, format_func=labels.__getitem__)
    live = by_id[job_id].active or by_id[job_id].stopping
    st.fragment(_panel, run_every=POLL_S if live else None)(job_id, live, key)


def _panel(job_id: int, was_live: bool, key: str) -> None:
    store = data.store()
    job = jobs.get(store, job_id)
    if was_live and not (job.active or job.stopping):
        st.rerun()  # it ended: refresh the whole page (history, estimates, feature sets)
    with st.container(border=True):
        st.badge(job.state, color=STATUS_COLOURS.get(job.state, "gray"))
        st.text(job.summary)
        st.progress(job.fraction, text=f"{job.done:,} of {job.total:,} {job.unit}")
        cols = st.columns(4)
        cols[0].metric("Done", f"{job.done:,}")
        cols[1].metric("Failed", f"{job.failed:,}")
        cols[2].metric("Total", f"{job.total:,}")
        if job.spends:
            spend = job.spend_text + (f" of ${job.budget:.2f}" if job.budget is not None else "")
            cols[3].metric("Spend / budget", spend, help="what the job's requests cost over all its runs")
        else:  # fits and offline jobs send no paid request: their time is what matters
            cols[3].metric("Duration", duration_text(job.duration_s), help="from its last start to its end (or now)")
        if job.message:
            st.text(job.message)
        if job.error:
            st.error("The job failed:")
            st.code(job.error, language=None, wrap_lines=True)
        fails = jobs.failures(store, job_id)
        if fails:
            st.caption("Latest failed requests (the reasons the server or the parser gave)")
            fmt.dataframe(pd.DataFrame(fails), hide_index=True, column_config=FAILURE_COLUMNS)
        past = jobs.runs(store, job_id)
        if past:
            st.caption("Earlier runs of this job")
            fmt.dataframe(pd.DataFrame(past)[["run", "status", "done", "total", "failed", "cost", "message", "started_at",
                                              "finished_at"]], hide_index=True,
                          column_config={"cost": st.column_config.NumberColumn("cost (USD)", format=fmt.MONEY),
                                         "started_at": fmt.time_column("started"),
                                         "finished_at": fmt.time_column("finished")})
        with st.expander("Worker log (last lines)"):
            st.code(jobs.log_tail(store.path, job_id) or "(no log yet)", language=None, wrap_lines=True)
        next_step(job, key)
        if not auth.can_edit():
            return
        c1, c2, c3 = st.columns([1, 1, 2])
        if c1.button("Cancel", key=f"{key}_cancel_{job_id}", disabled=not job.active, icon=":material/stop:"):
            jobs.cancel(store, job_id)
            flash(f"Job #{job_id}: cancel requested; requests in flight finish and are stored.", "info")
            st.rerun()
        new_budget = None
        if job.status == "paused":
            new_budget = c3.number_input("New budget (USD)", min_value=0.0, value=float(job.budget or 0.0) * 2,
                                         step=0.5, key=f"{key}_budget_{job_id}") or None
        again = job.status in ("done", "failed")
        if c2.button("Run again" if again else "Resume", key=f"{key}_resume_{job_id}",
                     disabled=job.active or job.stopping, icon=":material/replay:" if again else ":material/play_arrow:",
                     help="run it again: only what has not succeeded is sent (new data or failed requests)" if again
                     else "continue where it stopped: only what has not succeeded is sent"):
            jobs.resume(store, job_id, budget=new_budget)
            pid = jobs.ensure_worker(store, job_id, env=worker_env((job.params.get("llm") or {}).get("base_url")))
            flash(f"Job #{job_id} resumed" + (f" (worker pid {pid})." if pid else "."))
            st.rerun()


duration_text = jobs.duration_text  # one wording of a duration (the worker log uses it too)


def next_step(job, key: str) -> None:
    """After a finished job, the step that follows: fit profiles on the features an annotation made;
    read the profiles a fit made."""
    if job.status != "done":
        return
    if job.kind in ("annotate", "heuristic"):
        if st.button("Next: fit profiles on these features", key=f"{key}_next_{job.id}", icon=":material/arrow_forward:",
                     help="opens the Fit profiles tab with this dataset"):
            st.session_state["annotate_tab"] = "Fit profiles"
            st.session_state["fit_dataset"] = job.params.get("dataset")
            st.rerun()
    elif job.kind == "fit":
        st.page_link(ROOT / "pages" / "profiles.py", label="Next: read the profiles", icon=":material/bar_chart:",
                     query_params={"dataset": job.params.get("dataset", "")} if job.params.get("dataset") else None)


def history(kinds: tuple[str, ...] | None = None) -> None:
    store = data.store()
    rows = [j for j in jobs.list_jobs(store, 200) if not kinds or j.kind in kinds]
    if not rows:
        st.caption("No jobs yet.")
        return
    runs = jobs.run_counts(store)
    frame = pd.DataFrame([{
        "id": j.id, "kind": j.kind, "status": j.state, "job": j.summary, "done": j.done, "total": j.total,
        "failed": j.failed, "cost": j.cost if j.spends else None, "budget": j.budget, "runs": runs.get(j.id, 0),
        "created": j.created_at, "started": j.started_at, "finished": j.finished_at,
        "duration": duration_text(j.duration_s), "message": j.message,
    } for j in rows])
    fmt.dataframe(frame, hide_index=True, column_config={
        "id": st.column_config.NumberColumn("job #"),
        "cost": st.column_config.NumberColumn("cost (USD)", format=fmt.MONEY,
                                              help="not applicable to jobs that send no paid request"),
        "budget": st.column_config.NumberColumn("budget (USD)", format="$%.2f", help="not applicable: no budget set"),
        "runs": st.column_config.NumberColumn("runs", help="how many times it was started"),
        "created": fmt.time_column("created"), "started": fmt.time_column("started"),
        "finished": fmt.time_column("finished", help="not applicable while it runs or waits"),
        "duration": st.column_config.TextColumn("duration", help="from its last start to its end (or now)")})


def fit_form(prefix: str, overview: dict, *, default_judges: list[str] | None = None, watch_key: str = "watch") -> None:
    """Fit chosen judges' profiles on a feature set: a fit job, watched like the others."""
    names = list(overview["datasets"]["name"])
    dataset = st.selectbox("Dataset", names, key=f"{prefix}_dataset")
    fs = data_judges.feature_sources(data.activity_fingerprint(), dataset)
    if not fs["sources"]:
        st.info("This dataset has no features yet: annotate it first (the offline heuristics need no LLM).")
        return
    sizes = {r["source"]: r["samples"] for r in fs["sources"]}
    sources = list(sizes)
    source = st.selectbox("Feature set", sources, index=sources.index(fs["default"]), key=f"{prefix}_source",
                          format_func=lambda s: f"{s} ({sizes[s]:,} samples)")
    judge_names = data_judges.dataset_judges(data.fingerprint(), dataset)
    k = f"{prefix}_judges"
    if k in st.session_state:  # set by another widget (a judge just added): keep what this dataset has
        st.session_state[k] = [j for j in st.session_state[k] if j in judge_names]
    default = [j for j in (default_judges or []) if j in judge_names] or None
    chosen = st.multiselect("Judges", judge_names, default=None if k in st.session_state else default, key=k,
                            placeholder="every judge with labels")
    own = [category_scope(c) for c in data_samples.sample_options(data.fingerprint(), dataset).categories]
    k = f"{prefix}_scopes"
    if k in st.session_state:  # a category scope of another dataset is not offered here
        st.session_state[k] = [x for x in st.session_state[k] if x in data_judges.fit_scopes() or x in own]
    scopes = st.multiselect("Scopes", data_judges.fit_scopes() + own, key=k,
                            placeholder="every scope: all, the scenario groups, the query cases",
                            help="category:NAME scopes are the dataset's own categories (fitted only when chosen)")
    method = st.radio("Method", ["fast", "exact"], horizontal=True, key=f"{prefix}_method",
                      help="fast: batched HMC, checked against NUTS; exact: NUTS (slower)")
    model = st.radio("Model", ["full", "paper"], horizontal=True, key=f"{prefix}_model",
                     format_func=lambda m: "position term and ties" if m == "full" else "the paper's",
                     help="position term and ties: a 'shown first' term, verdicts in both orders as two "
                          "observations, ties as an outcome (Davidson) where the judge tied. The paper's: the "
                          "combined verdict, no position term, ties dropped, hard labels.")
    labels = "hard"
    if model == "full":
        labels = st.radio("Labels", ["soft", "hard"], horizontal=True, key=f"{prefix}_labels",
                          format_func=lambda m: "soft: the judge's own P(A) where given" if m == "soft"
                          else "hard: the choice alone",
                          help="soft: a label that carries the judge's probability that A is better (a vote share, "
                               "a score- or log-probability-derived P(A)) is fitted by that probability; a tie "
                               "stays a tie. hard: the A/B choice alone, as the paper.")
    force = st.checkbox("Refit even when the inputs did not change", key=f"{prefix}_force")
    params = {"dataset": dataset, "features": source, "judges": chosen, "scopes": scopes, "method": method,
              "force": force, **({"position": False, "ties": "drop"} if model == "paper" else {}),
              **({"labels": "hard"} if labels == "hard" else {})}
    if auth.require_editor("fitting profiles"):
        if st.button("Fit", type="primary", key=f"{prefix}_start", icon=":material/model_training:"):
            start("fit", params, watch_key=watch_key)


# ---------------------------------------------------------------- adding a judge from a file


def import_labels(filename: str, content: bytes, *, dataset: str, judge: str, kind: str, replace: bool = False) -> int:
    """Add a judge's labels from an uploaded file (``core.importers.import_labels``): written to a
    temporary file named like the upload, so an error names the file; all or nothing."""
    name = Path(filename).name or "labels"
    with tempfile.TemporaryDirectory(prefix="labels-upload-") as tmp:
        path = Path(tmp) / name
        path.write_bytes(content)
        return importers.import_labels(data.store(), path, dataset=dataset, judge=judge.strip(), kind=kind,
                                       notes=f"uploaded labels ({name})", replace=replace)
