"""Judges: how their labels relate (agreement, position consistency), and collecting a new
judge's labels from any OpenAI-compatible model (the paper's "add a new model")."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .store import Store

_CODE = {"A": 1, "B": -1, "tie": 0}


@dataclass(frozen=True)
class Agreement:
    judge_a: str
    judge_b: str
    shared: int  # samples both judges labelled
    agree: int  # of those, samples with the same choice (A, B or tie)

    @property
    def rate(self) -> float | None:
        return self.agree / self.shared if self.shared else None


def _agreement_counts(store: Store, dataset: str | None, judges: list[str] | None):
    """(judge names, shared counts, agreeing counts): square matrices over the judges.

    One read of the labels and small products over a samples x judges code matrix, so 33
    judges over the paper's 5,240 pairs take a fraction of a second."""
    sql = "SELECT l.sample_id, l.judge, l.choice FROM labels l"
    params: list = []
    if dataset:
        sql = ("SELECT l.sample_id, l.judge, l.choice FROM samples s JOIN labels l ON l.sample_id = s.id"
               " WHERE s.dataset = ?")
        params.append(dataset)
    if judges:
        sql += (" AND" if dataset else " WHERE") + f" l.judge IN ({', '.join('?' * len(judges))})"
        params.extend(judges)
    labels = pd.read_sql_query(sql, store.conn, params=params)
    return _pairwise(labels["sample_id"], labels["judge"], labels["choice"].map(_CODE).to_numpy())


def _pairwise(sample_ids: pd.Series, judge_names: pd.Series, codes: np.ndarray):
    """(sorted judge names, shared, agree) from one row per label: a samples x judges boolean
    matrix per choice code and their products (einsum: no BLAS pool to wake for small products)."""
    rows, _ = pd.factorize(sample_ids)
    cols, names = pd.factorize(judge_names, sort=True)
    have = np.zeros((rows.max() + 1 if len(rows) else 0, len(names)), dtype=bool)
    have[rows, cols] = True
    shared = np.einsum("ij,ik->jk", have, have, dtype=np.int64)
    agree = np.zeros_like(shared)
    for code in set(_CODE.values()):
        hit = np.zeros_like(have)
        sel = codes == code
        hit[rows[sel], cols[sel]] = True
        agree += np.einsum("ij,ik->jk", hit, hit, dtype=np.int64)
    return list(names), shared, agree


def agreement(store: Store, dataset: str | None = None, judges: list[str] | None = None) -> list[Agreement]:
    """Pairwise agreement between judges on the samples both labelled (ties count as a choice)."""
    names, shared, agree = _agreement_counts(store, dataset, judges)
    return [Agreement(a, names[j], int(shared[i, j]), int(agree[i, j]))
            for i, a in enumerate(names) for j in range(i + 1, len(names))]


def agreement_frame(store: Store, dataset: str | None = None) -> pd.DataFrame:
    """Agreement as a long table (judge_a, judge_b, shared, agree, rate), both orders plus the diagonal."""
    return _long(*_agreement_counts(store, dataset, None))


# ---------------------------------------------------------------- collecting an LLM judge's labels

JUDGE_LOGPROBS = 5  # top log-probabilities asked for the answer token


def judge_request(sample: dict, orientation: str):
    from .annotate import Request, _messages, _pair, prompts

    return Request(sample["id"], "judge", orientation, _messages("judge", **_pair(sample, orientation)), None,
                   prompts()["steps"]["judge"]["max_tokens"], logprobs=JUDGE_LOGPROBS, validate=_letter)


def _letter(text: str | None) -> str:
    letter = (text or "").strip()[:1].upper()
    if letter not in ("A", "B"):
        raise ValueError(f"expected A or B, got {(text or '')[:40]!r}")
    return letter


def first_preferred(parsed: dict | None) -> float | None:
    """P(the response shown first is better) from one answer: the answer tokens' probabilities
    when the server returned log-probabilities, else the parsed letter (1 or 0)."""
    if not parsed:
        return None
    top = parsed.get("top_logprobs") or {}
    pa = sum(np.exp(lp) for tok, lp in top.items() if tok.strip().upper() == "A")
    pb = sum(np.exp(lp) for tok, lp in top.items() if tok.strip().upper() == "B")
    if pa + pb > 0:
        return float(pa / (pa + pb))
    text = (parsed.get("text") or "").strip().upper()
    if text[:1] in ("A", "B"):
        return 1.0 if text[0] == "A" else 0.0
    return None


def _verdict(p: float | None) -> str | None:
    if p is None:
        return None
    return "A" if p > 0.5 else "B" if p < 0.5 else "tie"


async def judge_sample(sample: dict, runner, *, judge: str, both_orders: bool = True) -> bool:
    from .annotate import gather_all
    from .records import Judge, Label

    orders = ("AB", "BA") if both_orders else ("AB",)
    got = await gather_all({o: runner.run(judge_request(sample, o)) for o in orders})
    p_ab = first_preferred(got["AB"])
    p_ba = first_preferred(got.get("BA"))
    p_a_from_ba = None if p_ba is None else 1.0 - p_ba  # B was shown first
    known = [p for p in (p_ab, p_a_from_ba) if p is not None]
    if not known:
        return False
    prob_a = sum(known) / len(known)
    label = Label(sample["id"], judge, _verdict(prob_a), prob_a=prob_a, verdict_ab=_verdict(p_ab),
                  verdict_ba=_verdict(p_a_from_ba), source=f"collected:{runner.settings.model}")
    await runner.db("write_labels", [Judge(judge, "llm", notes=f"collected from {runner.settings.model}")], [label])
    return len(known) == len(orders)


def collect_labels(store: Store, samples: list[dict], settings, *, judge: str, both_orders: bool = True,
                   budget: float | None = None, job_id: int | None = None, on_progress=None, should_stop=None,
                   processes: int | None = None):
    """Ask an OpenAI-compatible model which response is better (in both orders), store its labels.

    Requests are cached like annotation: a rerun or resume sends only what has not succeeded.
    """
    from .annotate import run_work

    return run_work(store, samples, settings, "judge", {"judge": judge, "both_orders": both_orders}, budget=budget,
                    job_id=job_id, on_progress=on_progress, should_stop=should_stop, processes=processes)


def plan_judge_requests(sample: dict, both_orders: bool) -> list:
    return [judge_request(sample, o) for o in (("AB", "BA") if both_orders else ("AB",))]


@dataclass(frozen=True)
class Consistency:
    judge: str
    both_orders: int  # labels with a verdict in both orders
    consistent: int  # of those, the same verdict

    @property
    def rate(self) -> float | None:
        return self.consistent / self.both_orders if self.both_orders else None


def position_consistency(store: Store, judge: str) -> Consistency:
    """How often the judge gives the same verdict when the two responses swap places."""
    n, same = store.conn.execute(
        "SELECT COUNT(*), COALESCE(SUM(verdict_ab = verdict_ba), 0) FROM labels"
        " WHERE judge = ? AND verdict_ab IS NOT NULL AND verdict_ba IS NOT NULL",
        (judge,),
    ).fetchone()
    return Consistency(judge, n, same)


# ---------------------------------------------------------------- the Judges page's table

def default_reference(judge_rows: list[dict]) -> str | None:
    """The judge others are compared with by default: a human one, else a gold one, else the first."""
    for kind in ("human", "gold"):
        for j in judge_rows:
            if j["kind"] == kind:
                return j["name"]
    return judge_rows[0]["name"] if judge_rows else None


SUMMARY_COLUMNS = ["name", "kind", "size_b", "datasets", "labels", "a", "b", "tie", "with_prob", "both_orders",
                   "consistent", "consistency"]


def judge_summary(store: Store, dataset: str | None = None) -> dict:
    """One read of the labels (on ``dataset``, or on any) gives the Judges page everything:

    ``table``: one row per judge with labels: kind, size, the datasets it labelled, label counts,
    position consistency (labels with a verdict in both orders, how many keep their verdict, the
    share); ``shared`` and ``agree``: judge x judge frames of the samples both labelled and of
    those with the same choice (ties count as a choice), as ``agreement`` counts them."""
    # one scan of the labels, everything but the two keys as small integers (cheap to fetch)
    sql = ("SELECT l.sample_id, l.judge, CASE l.choice WHEN 'A' THEN 1 WHEN 'B' THEN -1 ELSE 0 END AS code,"
           " l.prob_a IS NOT NULL AS has_prob, l.verdict_ab IS NOT NULL AND l.verdict_ba IS NOT NULL AS both,"
           " l.verdict_ab IS NOT NULL AND l.verdict_ab = l.verdict_ba AS same FROM labels l")
    params: list = []
    if dataset:
        sql += " NOT INDEXED WHERE l.sample_id IN (SELECT id FROM samples WHERE dataset = ?)"
        params.append(dataset)
    labels = pd.read_sql_query(sql, store.conn, params=params)
    if labels.empty:
        empty = pd.DataFrame(dtype=int)
        return {"table": pd.DataFrame(columns=SUMMARY_COLUMNS), "shared": empty, "agree": empty}
    meta = pd.read_sql_query("SELECT name, kind, size_b FROM judges", store.conn).set_index("name")
    if dataset:
        datasets = pd.Series(dataset, index=labels["judge"].unique())
    else:
        pairs = pd.read_sql_query("SELECT DISTINCT l.judge, s.dataset FROM labels l JOIN samples s ON s.id = l.sample_id"
                                  " ORDER BY s.dataset", store.conn)
        datasets = pairs.groupby("judge")["dataset"].agg(", ".join)
    code = labels["code"]
    g = labels.assign(a=code == 1, b=code == -1, tie=code == 0).groupby("judge")
    table = pd.DataFrame({
        "labels": g.size(), "a": g["a"].sum(), "b": g["b"].sum(), "tie": g["tie"].sum(),
        "with_prob": g["has_prob"].sum(), "both_orders": g["both"].sum(), "consistent": g["same"].sum(),
    }).astype(int)
    table["datasets"] = datasets.reindex(table.index).fillna("")
    table["consistency"] = (table["consistent"] / table["both_orders"]).where(table["both_orders"] > 0)
    table = table.join(meta, how="left").rename_axis("name").reset_index().sort_values("name")
    names, shared, agree = _pairwise(labels["sample_id"], labels["judge"], labels["code"].to_numpy())
    return {"table": table[SUMMARY_COLUMNS].reset_index(drop=True),
            "shared": pd.DataFrame(shared, index=names, columns=names),
            "agree": pd.DataFrame(agree, index=names, columns=names)}


def with_reference(summary: dict, reference: str | None) -> pd.DataFrame:
    """The summary's table with agreement with ``reference``: samples shared, agreeing, the share."""
    table = summary["table"].copy()
    if reference is None or reference not in summary["shared"].index:
        table["shared_ref"], table["agree_ref"], table["agreement_ref"] = 0, 0, None
        return table
    table["shared_ref"] = table["name"].map(summary["shared"][reference]).fillna(0).astype(int)
    table["agree_ref"] = table["name"].map(summary["agree"][reference]).fillna(0).astype(int)
    table["agreement_ref"] = (table["agree_ref"] / table["shared_ref"]).where(table["shared_ref"] > 0)
    return table


def agreement_pairs(summary: dict) -> pd.DataFrame:
    """Every ordered pair of judges with shared samples, and each judge with itself (as
    ``agreement_frame``): judge_a, judge_b, shared, agree, rate."""
    shared, agree = summary["shared"], summary["agree"]
    return _long(list(shared.index), shared.to_numpy(), agree.to_numpy())


def _long(names: list[str], shared: np.ndarray, agree: np.ndarray) -> pd.DataFrame:
    """The square counts as one row per ordered pair with a shared sample (row-major order)."""
    i, j = np.nonzero(shared > 0) if len(names) else (np.array([], int), np.array([], int))
    names = np.asarray(names, dtype=object)
    return pd.DataFrame({"judge_a": names[i], "judge_b": names[j], "shared": shared[i, j].astype(int),
                         "agree": agree[i, j].astype(int), "rate": agree[i, j] / shared[i, j]})


def judge_table(store: Store, dataset: str | None = None, reference: str | None = None) -> pd.DataFrame:
    """One row per judge with labels: kind, size, datasets, label counts, position consistency and
    agreement with ``reference`` on the samples both labelled (see ``judge_summary``)."""
    return with_reference(judge_summary(store, dataset), reference)
