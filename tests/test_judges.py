"""Agreement and the Judges page's summary, counted by hand on a small store."""

import numpy as np
import pandas as pd
import pytest

from core import judges
from core.records import Dataset, ImportBatch, Judge, Label, Sample
from core.store import Store


def _store(tmp_path):
    s = Store(tmp_path / "s.db")
    for name in ("first", "second"):
        samples = [Sample(name, f"q{i}", f"a{i}", f"b{i}") for i in range(4)]
        ids = [x.id for x in samples]
        labels = [
            # j1: A, B, tie, A; both orders known on the first three, the third flips
            Label(ids[0], "j1", "A", prob_a=0.9, verdict_ab="A", verdict_ba="A"),
            Label(ids[1], "j1", "B", verdict_ab="B", verdict_ba="B"),
            Label(ids[2], "j1", "tie", verdict_ab="A", verdict_ba="B"),
            Label(ids[3], "j1", "A"),
            # j2 on three of them: agrees with j1 on 0 and 2 (a tie counts as a choice)
            Label(ids[0], "j2", "A"), Label(ids[1], "j2", "A"), Label(ids[2], "j2", "tie"),
        ]
        if name == "second":
            labels.append(Label(ids[3], "j3", "B"))  # j3 labels only the second dataset
        s.write_batch(ImportBatch(Dataset(name, source="test"), samples,
                                  [Judge("j1", "human"), Judge("j2", "llm"), Judge("j3", "llm", size_b=7)], labels))
    return s


def test_summary_counts_and_agreement_by_hand(tmp_path):
    s = _store(tmp_path)
    one = judges.judge_summary(s, "first")
    table = one["table"].set_index("name")
    assert list(table.index) == ["j1", "j2"]
    assert table.loc["j1", ["labels", "a", "b", "tie", "with_prob", "both_orders", "consistent"]].tolist() == \
        [4, 2, 1, 1, 1, 3, 2]
    assert table.loc["j1", "consistency"] == 2 / 3 and pd.isna(table.loc["j2", "consistency"])
    assert (one["shared"].loc["j1", "j2"], one["agree"].loc["j1", "j2"]) == (3, 2)
    assert one["shared"].loc["j1", "j1"] == 4
    every = judges.judge_summary(s)["table"].set_index("name")
    assert every.loc["j1", "labels"] == 8 and every.loc["j1", "datasets"] == "first, second"
    assert every.loc["j3", "datasets"] == "second" and every.loc["j3", "size_b"] == 7
    # agreement: the same counts, per dataset and for named judges only
    (pair,) = judges.agreement(s, "first")
    assert (pair.judge_a, pair.judge_b, pair.shared, pair.agree) == ("j1", "j2", 3, 2)
    pairs = {(a.judge_a, a.judge_b): (a.shared, a.agree) for a in judges.agreement(s)}
    assert pairs == {("j1", "j2"): (6, 4), ("j1", "j3"): (1, 0), ("j2", "j3"): (0, 0)}
    assert [(a.judge_a, a.judge_b) for a in judges.agreement(s, judges=["j1", "j3"])] == [("j1", "j3")]
    assert judges.judge_summary(s, "no-such-dataset")["table"].empty


def test_each_pair_once_highest_agreement_first(tmp_path):
    """The Overview's and Judges page's agreement list: every unordered pair of different judges once
    (no diagonal, no mirror), by agreement rate, descending, ties in name order."""
    s = _store(tmp_path)
    frame = judges.agreement_frame(s)
    pairs = judges.each_pair_once(frame)
    assert [(r.judge_a, r.judge_b) for r in pairs.itertuples()] == [("j1", "j2"), ("j1", "j3")]
    assert pairs["rate"].tolist() == [4 / 6, 0.0]
    summary = judges.judge_summary(s, "first")
    assert judges.each_pair_once(judges.agreement_pairs(summary))[["judge_a", "judge_b"]].values.tolist() == \
        [["j1", "j2"]]
    tied = pd.DataFrame({"judge_a": ["b", "a", "c", "a"], "judge_b": ["c", "c", "a", "b"], "rate": [0.5, 0.5, 0.5, 0.7]})
    assert judges.each_pair_once(tied)[["judge_a", "judge_b"]].values.tolist() == [["a", "b"], ["a", "c"], ["b", "c"]]


def test_kappa_and_chance_level_by_hand(tmp_path):
    """On "first", j1 chose A, B, tie and j2 A, A, tie on the three shared samples: p_o = 2/3; by
    chance p_e = 1/3 * 2/3 (A) + 1/3 * 0 (B) + 1/3 * 1/3 (tie) = 1/3, so kappa = (2/3 - 1/3) / (2/3) = 1/2."""
    s = _store(tmp_path)
    (pair,) = judges.agreement(s, "first")
    assert pair.chance == pytest.approx(1 / 3)
    k, lo, hi = pair.kappa
    assert k == pytest.approx(0.5) and lo < 0.5 < hi
    frame = judges.agreement_frame(s, "first").set_index(["judge_a", "judge_b"])
    assert frame.loc[("j2", "j1"), "kappa"] == pytest.approx(0.5)
    assert frame.loc[("j1", "j1"), "kappa"] == pytest.approx(1.0)
    ref = judges.judge_table(s, "first", "j1").set_index("name")
    assert ref.loc["j2", "kappa_ref"] == pytest.approx(0.5) and ref.loc["j2", "chance_ref"] == pytest.approx(1 / 3)


def test_a_coin_flip_judge_has_kappa_near_zero_and_a_copy_near_one(tmp_path):
    """The issue's case: a coin-flip judge agreed 47% with a demo judge, which a bare percentage
    cannot tell from a real one. Kappa's interval covers 0 for the coin and excludes it for a
    judge that copies the reference 70% of the time."""
    rng = np.random.default_rng(0)
    n = 400
    samples = [Sample("coin", f"q{i}", f"a{i}", f"b{i}") for i in range(n)]
    ref = rng.choice(["A", "B"], n, p=[0.6, 0.4])
    coin = rng.choice(["A", "B"], n)
    copy = np.where(rng.random(n) < 0.7, ref, rng.choice(["A", "B"], n))
    labels = [Label(x.id, j, str(c)) for j, cs in (("ref", ref), ("coin", coin), ("copy", copy))
              for x, c in zip(samples, cs)]
    with Store(tmp_path / "c.db") as s:
        s.write_batch(ImportBatch(Dataset("coin", source="test"), samples,
                                  [Judge("ref", "human"), Judge("coin", "llm"), Judge("copy", "llm")], labels))
        table = judges.judge_table(s, "coin", "ref").set_index("name")
    assert table.loc["coin", "kappa_lo"] < 0 < table.loc["coin", "kappa_hi"]
    assert 0.4 < table.loc["copy", "kappa_lo"] and table.loc["copy", "kappa_ref"] < table.loc["copy", "kappa_hi"]
    # the chance level is what the two judges' choice frequencies give, near 1/2 here
    assert 0.45 < table.loc["coin", "chance_ref"] < 0.55
