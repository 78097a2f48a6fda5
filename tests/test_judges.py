"""Agreement and the Judges page's summary, counted by hand on a small store."""

import pandas as pd

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
