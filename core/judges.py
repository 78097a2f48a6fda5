"""Judges: how their labels relate (agreement, position consistency), and collecting a new
judge's labels from any OpenAI-compatible model (the paper's "add a new model")."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .paidwork import Request, gather_all, run_work
from .prompts import messages, pair, prompts
from .records import Judge, Label
from .store import Store

if TYPE_CHECKING:  # pandas is imported where the agreement figures use it: a judge job's worker needs none
    import pandas as pd

_CODE = {"A": 1, "B": -1, "tie": 0}


def kappa(shared: np.ndarray, agree: np.ndarray, expected: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                                                np.ndarray]:
    """Cohen's kappa from counts: (kappa, its 94% interval lo, hi, the chance level p_e).

    p_o = agree / shared; p_e = expected / shared, the agreement two judges with these choice
    frequencies (A, B, tie, on the shared samples) reach by chance; kappa = (p_o - p_e) / (1 - p_e).
    The interval is Cohen's (1960) large-sample one, se = sqrt(p_o (1 - p_o) / (n (1 - p_e)^2)),
    clipped to [-1, 1]. NaN where nothing is shared or p_e = 1."""
    shared = np.asarray(shared, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        po = np.asarray(agree, dtype=float) / shared
        pe = np.asarray(expected, dtype=float) / shared
        k = (po - pe) / (1.0 - pe)
        se = np.sqrt(po * (1.0 - po) / (shared * (1.0 - pe) ** 2))
    k = np.where(pe < 1.0, k, np.nan)
    from .intervals import normal_interval  # SciPy: only the agreement figures, not collecting labels

    lo, hi = normal_interval(k, se)
    return k, np.clip(lo, -1.0, 1.0), np.clip(hi, -1.0, 1.0), pe


@dataclass(frozen=True)
class Agreement:
    judge_a: str
    judge_b: str
    shared: int  # samples both judges labelled
    agree: int  # of those, samples with the same choice (A, B or tie)
    expected: float = float("nan")  # agreeing samples expected by chance, from each judge's choice frequencies

    @property
    def rate(self) -> float | None:
        return self.agree / self.shared if self.shared else None

    @property
    def chance(self) -> float | None:
        """The agreement rate two judges with these choice frequencies reach by chance."""
        return self.expected / self.shared if self.shared else None

    @property
    def kappa(self) -> tuple[float, float, float] | None:
        """Cohen's kappa and its 94% interval (see :func:`kappa`)."""
        if not self.shared:
            return None
        k, lo, hi, _ = kappa(np.array(self.shared), np.array(self.agree), np.array(self.expected))
        return float(k), float(lo), float(hi)


def _read_labels(store: Store, dataset: str | None, judges: list[str] | None = None):
    """(sorted judge names, each judge's sample ids, each judge's packed labels): one scan of the
    labels, ``Store.packed_labels`` (its docstring gives the packing)."""
    return store.packed_labels(dataset, judges)


def _choice_codes(flags: np.ndarray) -> np.ndarray:
    return (flags >> 3) - 1  # A 1, tie 0, B -1 (as _CODE)


def _agreement_counts(store: Store, dataset: str | None, judges: list[str] | None):
    """(judge names, shared counts, agreeing counts, agreeing counts expected by chance): square
    matrices over the judges.

    One read of the labels and small products over a samples x judges code matrix, so 33
    judges over the paper's 5,240 pairs take a fraction of a second."""
    return _pairwise(*_read_labels(store, dataset, judges))


def _pairwise(names: list[str], ids: list[list[str]], flags: list[np.ndarray]):
    """(judge names, shared, agree, expected) from ``_read_labels``: a samples x judges boolean
    matrix per choice and their products (einsum: no BLAS pool to wake for small products).
    ``expected[a, b]`` is the count of agreements by chance on the samples both labelled:
    sum over choices of (a's count of it there) x (b's count of it there) / shared."""
    import pandas as pd  # only the agreement figures, not a judge job collecting labels

    if not names:
        z = np.zeros((0, 0), dtype=np.int64)
        return [], z, z, z.astype(float)
    rows, _ = pd.factorize(np.asarray([i for mine in ids for i in mine], dtype=object))
    cols = np.repeat(np.arange(len(names)), [len(f) for f in flags])
    codes = _choice_codes(np.concatenate(flags))
    have = np.zeros((rows.max() + 1, len(names)), dtype=bool)
    have[rows, cols] = True
    shared = np.einsum("ij,ik->jk", have, have, dtype=np.int64)
    agree = np.zeros_like(shared)
    expected = np.zeros(shared.shape)
    for code in set(_CODE.values()):
        hit = np.zeros_like(have)
        sel = codes == code
        hit[rows[sel], cols[sel]] = True
        agree += np.einsum("ij,ik->jk", hit, hit, dtype=np.int64)
        marg = np.einsum("ij,ik->jk", hit, have, dtype=np.int64)  # [a, b]: a chose it on samples b labelled
        expected += marg * marg.T
    with np.errstate(invalid="ignore", divide="ignore"):
        expected = np.where(shared > 0, expected / shared, 0.0)
    return list(names), shared, agree, expected


def agreement(store: Store, dataset: str | None = None, judges: list[str] | None = None) -> list[Agreement]:
    """Pairwise agreement between judges on the samples both labelled (ties count as a choice)."""
    names, shared, agree, expected = _agreement_counts(store, dataset, judges)
    return [Agreement(a, names[j], int(shared[i, j]), int(agree[i, j]), float(expected[i, j]))
            for i, a in enumerate(names) for j in range(i + 1, len(names))]


def agreement_frame(store: Store, dataset: str | None = None) -> pd.DataFrame:
    """Agreement as a long table (judge_a, judge_b, shared, agree, rate, chance, kappa, kappa_lo,
    kappa_hi), both orders plus the diagonal."""
    return _long(*_agreement_counts(store, dataset, None))


# ---------------------------------------------------------------- collecting an LLM judge's labels

JUDGE_LOGPROBS = 5  # top log-probabilities asked for the answer token


def judge_request(sample: dict, orientation: str):
    return Request(sample["id"], "judge", orientation, messages("judge", **pair(sample, orientation)), None,
                   prompts()["steps"]["judge"]["max_tokens"], logprobs=JUDGE_LOGPROBS, validate=_letter)


def _letter(text: str | None, top_logprobs: dict[str, float] | None = None) -> str:
    """The verdict of one answer: usable when "A" or "B" is among the top log-probabilities of an
    answer position (whatever token was sampled: "Which", "[", "**"), else when the text's first
    standalone letter is A or B ("[A]", "Response B is better")."""
    if top_logprobs and any(t.strip().upper() in ("A", "B") for t in top_logprobs):
        return "logprobs"
    m = _LETTER.search(text or "")
    if not m:
        raise ValueError(f"expected A or B, got {(text or '')[:40]!r}")
    return m.group(1).upper()


_LETTER = re.compile(r"(?<![A-Za-z])([AB])(?![A-Za-z])")


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
    m = _LETTER.search(parsed.get("text") or "")
    if m:
        return 1.0 if m.group(1).upper() == "A" else 0.0
    return None


def _verdict(p: float | None) -> str | None:
    if p is None:
        return None
    return "A" if p > 0.5 else "B" if p < 0.5 else "tie"


async def judge_sample(sample: dict, runner, *, judge: str, both_orders: bool = True) -> bool:
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
    return run_work(store, samples, settings, judge_sample, {"judge": judge, "both_orders": both_orders}, budget=budget,
                    job_id=job_id, on_progress=on_progress, should_stop=should_stop, processes=processes)


def plan_judge_requests(sample: dict, both_orders: bool) -> list:
    return [judge_request(sample, o) for o in (("AB", "BA") if both_orders else ("AB",))]


@dataclass(frozen=True)
class Consistency:
    judge: str
    both_orders: int  # labels with a verdict in both orders
    consistent: int  # of those, the same verdict
    labels: int = 0  # labels of the judge (on the samples asked about)

    @property
    def rate(self) -> float | None:
        return self.consistent / self.both_orders if self.both_orders else None


def position_consistency(store: Store, judge: str, sample_ids: list[str] | None = None) -> Consistency:
    """How often the judge gives the same verdict when the two responses swap places (on
    ``sample_ids`` only, when given)."""
    n, both, same = store.position_counts(judge, sample_ids)
    return Consistency(judge, both, same, labels=n)


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
    import pandas as pd

    names, ids, flags = _read_labels(store, dataset)
    if not names:
        empty = pd.DataFrame(dtype=int)
        return {"table": pd.DataFrame(columns=SUMMARY_COLUMNS), "shared": empty, "agree": empty, "expected": empty}
    code = [_choice_codes(f) for f in flags]

    def per_judge(bit: int) -> list[int]:
        return [int((f >> bit & 1).sum()) for f in flags]

    table = pd.DataFrame({"labels": [len(f) for f in flags], "a": [int((c == 1).sum()) for c in code],
                          "b": [int((c == -1).sum()) for c in code], "tie": [int((c == 0).sum()) for c in code],
                          "with_prob": per_judge(2), "both_orders": per_judge(1), "consistent": per_judge(0)},
                         index=pd.Index(names))
    meta = pd.DataFrame(store.judge_kinds(), columns=["name", "kind", "size_b"]).set_index("name")
    if dataset:
        datasets = pd.Series(dataset, index=names)
    else:
        pairs = pd.DataFrame(store.judge_datasets(), columns=["judge", "dataset"])
        datasets = pairs.groupby("judge")["dataset"].agg(", ".join)
    table["datasets"] = datasets.reindex(table.index).fillna("")
    table["consistency"] = (table["consistent"] / table["both_orders"]).where(table["both_orders"] > 0)
    table = table.join(meta, how="left").rename_axis("name").reset_index().sort_values("name")
    names, shared, agree, expected = _pairwise(names, ids, flags)
    return {"table": table[SUMMARY_COLUMNS].reset_index(drop=True),
            "shared": pd.DataFrame(shared, index=names, columns=names),
            "agree": pd.DataFrame(agree, index=names, columns=names),
            "expected": pd.DataFrame(expected, index=names, columns=names)}


def with_reference(summary: dict, reference: str | None) -> pd.DataFrame:
    """The summary's table with agreement with ``reference``: samples shared, agreeing, the share,
    the share expected by chance (``chance_ref``) and Cohen's kappa with its 94% interval."""
    table = summary["table"].copy()
    if reference is None or reference not in summary["shared"].index:
        table["shared_ref"], table["agree_ref"], table["agreement_ref"] = 0, 0, None
        table["chance_ref"] = table["kappa_ref"] = table["kappa_lo"] = table["kappa_hi"] = None
        return table
    table["shared_ref"] = table["name"].map(summary["shared"][reference]).fillna(0).astype(int)
    table["agree_ref"] = table["name"].map(summary["agree"][reference]).fillna(0).astype(int)
    table["agreement_ref"] = (table["agree_ref"] / table["shared_ref"]).where(table["shared_ref"] > 0)
    expected = table["name"].map(summary["expected"][reference]).fillna(0.0).to_numpy(dtype=float)
    k, lo, hi, pe = kappa(table["shared_ref"].to_numpy(), table["agree_ref"].to_numpy(), expected)
    ok = table["shared_ref"].to_numpy() > 0
    table["chance_ref"] = np.where(ok, pe, np.nan)
    table["kappa_ref"], table["kappa_lo"], table["kappa_hi"] = (np.where(ok, v, np.nan) for v in (k, lo, hi))
    return table


def agreement_pairs(summary: dict) -> pd.DataFrame:
    """Every ordered pair of judges with shared samples, and each judge with itself (as
    ``agreement_frame``): judge_a, judge_b, shared, agree, rate."""
    shared, agree = summary["shared"], summary["agree"]
    return _long(list(shared.index), shared.to_numpy(), agree.to_numpy(), summary["expected"].to_numpy())


def each_pair_once(frame: pd.DataFrame) -> pd.DataFrame:
    """An agreement table (``agreement_frame``/``agreement_pairs``) as its reader wants it: each
    unordered pair of different judges once (judge_a before judge_b by name), the highest agreement
    first, ties in name order."""
    pairs = frame[frame["judge_a"] < frame["judge_b"]]
    return pairs.sort_values(["rate", "judge_a", "judge_b"], ascending=[False, True, True]).reset_index(drop=True)


def _long(names: list[str], shared: np.ndarray, agree: np.ndarray, expected: np.ndarray) -> pd.DataFrame:
    """The square counts as one row per ordered pair with a shared sample (row-major order), with
    the chance level and Cohen's kappa (94% interval) beside each agreement rate."""
    import pandas as pd

    i, j = np.nonzero(shared > 0) if len(names) else (np.array([], int), np.array([], int))
    names = np.asarray(names, dtype=object)
    k, lo, hi, pe = kappa(shared[i, j], agree[i, j], np.asarray(expected, dtype=float)[i, j]) if len(i) else \
        (np.zeros(0),) * 4
    return pd.DataFrame({"judge_a": names[i], "judge_b": names[j], "shared": shared[i, j].astype(int),
                         "agree": agree[i, j].astype(int), "rate": agree[i, j] / shared[i, j],
                         "chance": pe, "kappa": k, "kappa_lo": lo, "kappa_hi": hi})


def judge_table(store: Store, dataset: str | None = None, reference: str | None = None) -> pd.DataFrame:
    """One row per judge with labels: kind, size, datasets, label counts, position consistency and
    agreement with ``reference`` on the samples both labelled (see ``judge_summary``)."""
    return with_reference(judge_summary(store, dataset), reference)


# ---------------------------------------------------------------- verdicts in both presentation orders

@dataclass(frozen=True)
class OrderFigures:
    """A judge's verdicts per presentation order (from ``labels.verdict_ab`` / ``verdict_ba``, both
    in A/B terms): agreement of each order's verdict with a reference judge's choice, and how
    often the response shown first won (position bias), over all games (one game per order)."""

    judge: str
    reference: str | None
    shared_ab: int  # samples with a verdict with A shown first and a reference label
    agree_ab: int
    shared_ba: int  # the same with B shown first
    agree_ba: int
    games: int  # verdicts given, both orders together
    first_won: int  # the response shown first was preferred
    second_won: int
    ties: int

    @property
    def rate_ab(self) -> float | None:
        return self.agree_ab / self.shared_ab if self.shared_ab else None

    @property
    def rate_ba(self) -> float | None:
        return self.agree_ba / self.shared_ba if self.shared_ba else None


def order_figures(store: Store, dataset: str | None = None, reference: str | None = None) -> list[OrderFigures]:
    """``OrderFigures`` of every judge with a verdict in either order (on ``dataset``), against
    ``reference`` (agreement counts 0 without one). One grouped read of the labels."""
    rows = store.order_counts(dataset, reference)
    return [OrderFigures(r[0], reference, *map(int, r[1:])) for r in rows]
