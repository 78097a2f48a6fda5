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


def agreement(store: Store, dataset: str | None = None, judges: list[str] | None = None) -> list[Agreement]:
    """Pairwise agreement between judges on the samples both labelled (ties count as a choice)."""
    labels = pd.DataFrame(store.labels(dataset, judges), columns=["sample_id", "judge", "choice"])
    if labels.empty:
        return []
    wide = labels.assign(code=labels["choice"].map(_CODE)).pivot(index="sample_id", columns="judge", values="code")
    names = sorted(wide.columns)
    m = wide[names].to_numpy(dtype=float)
    have = ~np.isnan(m)
    out = []
    for i, a in enumerate(names):
        for j in range(i + 1, len(names)):
            both = have[:, i] & have[:, j]
            shared = int(both.sum())
            agree = int((m[both, i] == m[both, j]).sum())
            out.append(Agreement(a, names[j], shared, agree))
    return out


def agreement_frame(store: Store, dataset: str | None = None) -> pd.DataFrame:
    """Agreement as a long table (judge_a, judge_b, shared, agree, rate), both orders plus the diagonal."""
    rows = []
    for ag in agreement(store, dataset):
        if not ag.shared:
            continue
        rows.append((ag.judge_a, ag.judge_b, ag.shared, ag.agree, ag.rate))
        rows.append((ag.judge_b, ag.judge_a, ag.shared, ag.agree, ag.rate))
    for j in store.judges(dataset):
        rows.append((j["name"], j["name"], j["labels"], j["labels"], 1.0))
    return pd.DataFrame(rows, columns=["judge_a", "judge_b", "shared", "agree", "rate"])


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
