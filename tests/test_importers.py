"""core.importers: every format on the real files, idempotent re-imports, and a corpus of bad input
that must name file, row and field and leave the store file byte-for-byte unchanged."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from core import catalogue, importers
from core.importers import InputError, import_file, import_labels, parse_file
from core.records import sample_id
from core.store import Store

FIXTURES = Path(__file__).resolve().parent / "fixtures"
ROOT = Path(__file__).resolve().parents[1]


def need(shared_data: Path, relative: str) -> Path:
    path = shared_data / relative
    if not path.exists():
        pytest.skip(f"{relative} is missing from the shared data folder {shared_data}")
    return path


def judges_by_name(store, dataset=None) -> dict[str, dict]:
    return {j["name"]: j for j in store.judges(dataset)}


def labels_by_judge(store, dataset) -> dict[str, dict[str, dict]]:
    out: dict[str, dict[str, dict]] = {}
    for row in store.labels(dataset):
        out.setdefault(row["judge"], {})[row["sample_id"]] = row
    return out


def jsonl(*rows: dict) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------------------- Auto-J


def test_autoj_real_file_gives_the_published_label_counts_and_consistency(store, shared_data):
    path = need(shared_data, "autoj/testdata_pairwise.jsonl")
    res = import_file(store, "autoj", path)
    assert (res.dataset, res.samples_added, res.samples_seen) == ("autoj-pairwise", 1392, 1392)
    assert res.judges == ["autoj-human", "auto-j-13b"]
    assert res.counts == {"rows": 1392, "repeats": 2, "empty_responses": 1, "normalised": 549}
    judges = judges_by_name(store, "autoj-pairwise")
    human, autoj = judges["autoj-human"], judges["auto-j-13b"]
    assert (human["kind"], human["labels"], human["a"], human["b"], human["tie"]) == ("human", 1392, 520, 499, 373)
    assert (autoj["kind"], autoj["size_b"], autoj["both_orders"], autoj["with_prob"]) == ("llm", 13, 1392, 1392)
    # the README's reproduction of Auto-J's leaderboard: consistency between the two orders
    assert autoj["consistent"] == 1161 and round(100 * autoj["consistent"] / 1392, 2) == 83.41
    labels = labels_by_judge(store, "autoj-pairwise")
    both_right = sum(
        1 for sid, l in labels["auto-j-13b"].items()
        if l["verdict_ab"] == l["verdict_ba"] == labels["autoj-human"][sid]["choice"]
    )
    assert both_right == 765 and round(100 * both_right / 1392, 2) == 54.96
    # Auto-J's choice and P(A) come from combine_verdicts: agreeing orders give certainty
    for l in labels["auto-j-13b"].values():
        if l["verdict_ab"] == l["verdict_ba"] == "A":
            assert (l["choice"], l["prob_a"]) == ("A", 1.0)
        if {l["verdict_ab"], l["verdict_ba"]} == {"A", "B"}:
            assert (l["choice"], l["prob_a"]) == ("tie", 0.5)
    scenarios = store.rows("SELECT scenario, scenario_group, COUNT(*) n FROM samples GROUP BY scenario")
    assert len(scenarios) == 58 and {r["n"] for r in scenarios} == {24}
    assert all(r["scenario_group"] in catalogue.group_keys() for r in scenarios)


def test_autoj_without_the_output_files_imports_the_human_labels_only(tmp_path, store, shared_data):
    source = need(shared_data, "autoj/testdata_pairwise.jsonl")
    lone = tmp_path / "testdata_pairwise.jsonl"
    lone.write_bytes(source.read_bytes())
    res = import_file(store, "autoj", lone)
    assert res.judges == ["autoj-human"] and res.labels_written == 1392


def test_autoj_explicit_output_paths_must_exist(tmp_path, store, shared_data):
    path = need(shared_data, "autoj/testdata_pairwise.jsonl")
    with pytest.raises(InputError) as e:
        import_file(store, "autoj", path, outputs=tmp_path / "nope.jsonl")
    assert (Path(e.value.file).name, e.value.message) == ("nope.jsonl", "no such file")


# ---------------------------------------------------------------------------- PandaLM


def test_pandalm_real_files_keep_every_row_and_all_five_judges(store, shared_data):
    path = need(shared_data, "pandalm/testset-v1.json")
    res = import_file(store, "pandalm", path)
    assert (res.dataset, res.samples_added) == ("pandalm-test", 999)
    # 71 contents repeat another row, 99 extra rows in all: every one is kept, numbered by occurrence
    assert res.counts["repeats"] == 99 and res.counts["unparsable:gpt-3.5-turbo"] == 25
    repeated = store.rows("SELECT n FROM (SELECT COUNT(*) AS n FROM samples GROUP BY query, response_a, response_b) WHERE n > 1")
    assert len(repeated) == 71 and sum(r["n"] - 1 for r in repeated) == 99
    judges = judges_by_name(store, "pandalm-test")
    assert set(judges) == {"pandalm-annotator1", "pandalm-annotator2", "pandalm-annotator3",
                           "pandalm-human-majority", "gpt-3.5-turbo", "pandalm-7b"}
    gpt, p7 = judges["gpt-3.5-turbo"], judges["pandalm-7b"]
    assert (gpt["labels"], gpt["a"], gpt["b"], gpt["tie"]) == (999 - 25, 460, 476, 38)
    assert (p7["labels"], p7["a"], p7["b"], p7["tie"], p7["size_b"]) == (999, 433, 459, 107, 7)
    assert all(judges[f"pandalm-annotator{k}"]["kind"] == "human" for k in (1, 2, 3))
    labels = labels_by_judge(store, "pandalm-test")
    ids = store.sample_ids("pandalm-test")
    votes = {sid: tuple(labels[f"pandalm-annotator{k}"][sid]["choice"] for k in (1, 2, 3)) for sid in ids}
    assert sum(1 for v in votes.values() if len(set(v)) == 1) == 879
    for sid, v in votes.items():
        majority = labels["pandalm-human-majority"][sid]
        top, n = Counter(v).most_common(1)[0]
        assert majority["choice"] == (top if n >= 2 else "tie")
        assert majority["prob_a"] == pytest.approx((v.count("A") + 0.5 * v.count("tie")) / 3)
    models = {r["m"] for r in store.rows("SELECT model_a AS m FROM samples UNION SELECT model_b FROM samples")}
    assert models == {"bloom-7b", "llama-7b", "cerebras-gpt-6.7B", "opt-7b", "pythia-6.9b"}
    by_idx = {r["source_id"]: r for r in store.rows("SELECT * FROM samples")}
    assert by_idx["157"]["response_a"] == "True"  # a JSON boolean in the file, kept as the model's text
    assert by_idx["466"]["query"] == "Truthfulness"  # blank instruction, the task is all in the input
    assert json.loads(by_idx["0"]["metadata"]) == {"idx": 0, "motivation_app": "Grammarly"}
    assert by_idx["0"]["query"].startswith("The sentence you are given might be too wordy") and "\n\nIf you have any" in by_idx["0"]["query"]


# ---------------------------------------------------------------------------- AlpacaEval

ALPACA_SAME_PAIRS = ("alpaca_eval_gpt4_turbo_fn", "alpaca_eval_cot_gpt4_turbo_fn", "weighted_alpaca_eval_gpt4_turbo")


def test_alpaca_eval_three_annotators_of_one_model_share_the_805_samples(store, shared_data):
    folder = need(shared_data, "alpaca_eval/gpt-3.5-turbo-0301")
    added = []
    for annotator in ALPACA_SAME_PAIRS:
        res = import_file(store, "alpaca_eval", folder / annotator / "annotations.json")
        assert res.dataset == "alpaca_eval-gpt-3.5-turbo-0301" and res.counts["rows"] == 805
        added.append(res.samples_added)
    assert added == [805, 0, 0]
    assert len(store.sample_ids("alpaca_eval-gpt-3.5-turbo-0301")) == 805
    judges = judges_by_name(store)
    assert set(judges) == set(ALPACA_SAME_PAIRS) and all(j["labels"] == 805 and j["kind"] == "llm" for j in judges.values())
    assert (judges["alpaca_eval_cot_gpt4_turbo_fn"]["a"], judges["alpaca_eval_cot_gpt4_turbo_fn"]["b"]) == (751, 53)
    assert judges["weighted_alpaca_eval_gpt4_turbo"]["with_prob"] == 804  # the 1.5 (identical outputs) is a plain tie
    row = store.rows("SELECT model_a, model_b, metadata FROM samples LIMIT 1")[0]
    assert (row["model_a"], row["model_b"]) == ("gpt4_1106_preview", "gpt-3.5-turbo-0301")
    assert json.loads(row["metadata"])["source_dataset"] == "helpful_base"


def test_alpaca_eval_weighted_preference_becomes_the_probability_of_a(store, shared_data):
    path = need(shared_data, "alpaca_eval/gpt-3.5-turbo-0301/weighted_alpaca_eval_gpt4_turbo/annotations.json")
    rows = json.loads(path.read_text())
    import_file(store, "alpaca_eval", path)
    labels = labels_by_judge(store, "alpaca_eval-gpt-3.5-turbo-0301")["weighted_alpaca_eval_gpt4_turbo"]
    for row in rows[:50]:
        sid = sample_id("alpaca_eval-gpt-3.5-turbo-0301", row["instruction"], row["output_1"], row["output_2"])
        if row["preference"] != 1.5:
            assert labels[sid]["prob_a"] == pytest.approx(2 - row["preference"])
            assert labels[sid]["choice"] == ("A" if row["preference"] < 1.5 else "B")


def test_alpaca_eval_failed_annotation_is_counted_and_keeps_its_sample(store, shared_data):
    path = need(shared_data, "alpaca_eval/gpt-3.5-turbo-0301/alpaca_eval_gpt4/annotations.json")
    res = import_file(store, "alpaca_eval", path)
    assert (res.samples_seen, res.samples_added, res.labels_written) == (805, 805, 804)
    assert res.counts == {"rows": 805, "failed": 1, "normalised": 213}


def test_alpaca_eval_identical_outputs_keep_the_sample_without_a_label(store, shared_data):
    path = need(shared_data, "alpaca_eval/alpaca-7b/alpaca_eval_gpt4/annotations.json")
    res = import_file(store, "alpaca_eval", path)
    assert res.dataset == "alpaca_eval-alpaca-7b"
    assert (res.samples_added, res.labels_written, res.counts["identical_outputs"]) == (805, 789, 16)
    flagged = [r for r in store.rows("SELECT id, metadata FROM samples") if json.loads(r["metadata"]).get("identical_outputs")]
    assert len(flagged) == 16
    labelled = {l["sample_id"] for l in store.labels("alpaca_eval-alpaca-7b")}
    assert not labelled & {r["id"] for r in flagged}


# ---------------------------------------------------------------------------- the paper's HF layout

HF_FIXTURE = FIXTURES / "hf_sample.jsonl"


def _hf_rows() -> list[dict]:
    return [json.loads(line) for line in HF_FIXTURE.read_text(encoding="utf-8").splitlines()]


def test_hf_layout_gives_samples_cases_33_judges_and_features(store):
    res = import_file(store, "hf", HF_FIXTURE)
    assert (res.dataset, res.samples_added, res.labels_written) == ("preference-dissection", 4, 4 * 33)
    assert res.features_written == 3 * 29  # the fourth row has no per-response annotations
    judges = judges_by_name(store)
    assert len(judges) == 33 and "human" not in judges
    assert judges["arena-human"]["kind"] == "human" and judges["arena-human"]["size_b"] is None
    assert judges["gpt-4-1106-preview"]["size_b"] is None and judges["gpt-3.5-turbo-1106"]["kind"] == "llm"
    assert (judges["mistral-8x7b"]["size_b"], judges["qwen-72b-chat"]["size_b"], judges["yi-6b"]["size_b"]) == (56, 72, 6)
    rows = {r["scenario"]: r for r in store.rows("SELECT * FROM samples")}
    plan, wall, cats = rows["planning"], rows["open_question"], rows["creative_writing"]
    assert plan["scenario_group"] == "Daily Tasks" and plan["model_a"] == "model-alpha-13b"
    assert json.loads(plan["cases"]) == {"intent_unclear": False, "express_feeling": True, "w_constraints": True,
                                         "w_stances": False, "w_mistakes": False}
    assert json.loads(cats["cases"])["intent_unclear"] is True
    assert wall["reference"].startswith("All branches together")
    human = labels_by_judge(store, "preference-dissection")["arena-human"]
    assert [human[r["id"]]["choice"] for r in store.rows("SELECT id FROM samples ORDER BY position")] == ["A", "B", "B", "B"]

    def feats(sid):
        return {f["attribute"]: f for f in store.rows("SELECT * FROM features WHERE sample_id = ?", [sid])}

    f = feats(wall["id"])
    assert (f["corrects_mistakes"]["value"], f["no_severe_errors"]["value"], f["no_minor_errors"]["value"]) == (1, 1, 1)
    assert (f["no_moderate_errors"]["value"], f["lengthy"]["value"], f["empathetic"]["value"]) == (0, 1, 0)
    assert f["clear"]["source"] == "hf:paper" and not f["clear"]["excluded"]
    f = feats(plan["id"])
    assert (f["empathetic"]["value"], f["friendly"]["value"], f["no_moderate_errors"]["value"]) == (1, 1, 1)
    assert f["satisfies_constraints"]["value"] == 0  # both rated 3
    f = feats(cats["id"])
    assert f["clarifies_intent"]["value"] == -1 and all(x["excluded"] for x in f.values())  # errors not checkable


def test_hf_parquet_file_imports_the_same_as_its_jsonl(tmp_path, store):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    parquet = tmp_path / "train-00000-of-00001.parquet"
    pq.write_table(pa.Table.from_pylist(_hf_rows()), parquet)
    first = import_file(store, "hf", HF_FIXTURE)
    features_before = store.rows("SELECT sample_id, attribute, value, score_a, score_b, excluded FROM features ORDER BY 1, 2")
    again = import_file(store, "hf", parquet)
    assert (again.samples_seen, again.samples_added, again.labels_written, again.features_written) == (4, 0, 132, 87)
    assert store.rows("SELECT sample_id, attribute, value, score_a, score_b, excluded FROM features ORDER BY 1, 2") == features_before
    assert first.judges == again.judges


def test_hf_folder_of_parquet_files(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    (tmp_path / "data").mkdir()
    pq.write_table(pa.Table.from_pylist(_hf_rows()), tmp_path / "data" / "train.parquet")
    assert importers.load_hf(tmp_path) == [tmp_path / "data" / "train.parquet"]


def test_hf_hub_name_without_network_fails_fast_with_an_input_error(tmp_path):
    code = (
        "from core.importers import parse_file, InputError\n"
        "try:\n"
        "    parse_file('hf', 'GAIR/preference-dissection')\n"
        "except InputError as e:\n"
        "    print('INPUT-ERROR', e)\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf-home"), "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("INPUT-ERROR preference-dissection: cannot fetch the dataset from the Hugging Face hub")
    assert len(out.stdout.strip().splitlines()) == 1


@pytest.mark.parametrize("name", ["/no/such/dir/file.parquet", "data/train.parquet", "not a name"])
def test_load_hf_rejects_something_that_is_neither_a_file_nor_a_hub_name(name):
    with pytest.raises(InputError, match="no such file, and not a hub dataset name"):
        importers.load_hf(name)


@pytest.mark.parametrize("name,size", [("human", None), ("gpt-4-1106-preview", None), ("llama-2-70b-chat", 70),
                                       ("mistral-8x7b-instruct-v0.1", 56), ("vicuna-13b-v1.5", 13), ("yi-6b-chat", 6),
                                       ("tulu-2-dpo-7b", 7), ("wizardLM-70b-v1.0", 70)])
def test_judge_sizes_follow_the_paper_table(name, size):
    assert importers.PAPER_JUDGE_SIZES[name] == size
    assert len(importers.PAPER_JUDGES) == 33


# ---------------------------------------------------------------------------- Chatbot Arena


def test_arena_conversations_single_and_multi_turn(store):
    res = import_file(store, "arena", FIXTURES / "arena_sample.json")
    assert (res.dataset, res.samples_added, res.judges) == ("chatbot-arena", 4, ["arena-crowd"])
    assert judges_by_name(store)["arena-crowd"]["kind"] == "human"
    rows = {r["source_id"]: r for r in store.rows("SELECT * FROM samples")}
    labels = labels_by_judge(store, "chatbot-arena")["arena-crowd"]
    assert [labels[rows[q]["id"]]["choice"] for q in ("q-001", "q-002", "q-003", "q-004")] == ["A", "tie", "B", "tie"]
    single, multi, unsafe = rows["q-001"], rows["q-002"], rows["q-003"]
    assert (single["query"], single["turns"], single["scenario_group"]) == (
        "What is the boiling point of water at sea level in Fahrenheit?", 1, None)
    assert multi["turns"] == 2
    assert "Name a prime number bigger than 10." in multi["query"] and "And one bigger than 100?" in multi["query"]
    assert "11 is a prime" in multi["response_a"] and "101." in multi["response_a"] and "103 is prime." in multi["response_b"]
    assert unsafe["scenario_group"] == "Unsafe Queries"
    assert json.loads(single["metadata"])["voter"] == "arena_user_101"


def test_arena_accepts_the_papers_raw_rows(store, shared_data):
    path = need(shared_data, "gair/sample_unannotated.jsonl")
    res = import_file(store, "arena", path)
    assert (res.samples_added, res.labels_written) == (2, 2)
    rows = store.rows("SELECT * FROM samples ORDER BY position")
    assert [(r["scenario"], r["scenario_group"], r["source_id"]) for r in rows] == [
        ("functional_writing", "Functional Writing", "0"), ("default", "Others", "1")]
    assert rows[0]["reference"].startswith("1. Choose your destination") and rows[0]["model_b"] == "gpt-3.5-turbo"
    assert {l["choice"] for l in store.labels("chatbot-arena")} == {"B"}


# ---------------------------------------------------------------------------- generic

ROWS = [
    {"prompt": "How do I boil an egg?", "good": "Put it in boiling water for 9 minutes.", "bad": "Microwave it.", "verdict": "1"},
    {"prompt": "Capital of France?", "good": "Paris.", "bad": "Lyon.", "verdict": "2"},
    {"prompt": "Say hi", "good": "Hi!", "bad": "Hello!", "verdict": "0"},
]


def test_generic_column_mapping_and_configurable_label_values(tmp_path, store):
    path = tmp_path / "mine.jsonl"
    path.write_text(jsonl(*ROWS))
    res = import_file(store, "generic", path, columns={"query": "prompt", "response_a": "good", "response_b": "bad",
                                                       "label": "verdict"}, label_values="1=A,2=B,0=tie",
                      judge="team-raters", judge_kind="human")
    assert (res.dataset, res.samples_added, res.judges) == ("mine", 3, ["team-raters"])
    choices = [l["choice"] for l in store.rows("SELECT choice FROM labels l JOIN samples s ON s.id = l.sample_id ORDER BY s.position")]
    assert choices == ["A", "B", "tie"]


def test_generic_csv_json_jsonl_and_parquet_give_the_same_samples(tmp_path, store):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    rows = [{"query": r["prompt"], "response_a": r["good"], "response_b": r["bad"], "label": "ab"[i % 2], "model_a": "m1"}
            for i, r in enumerate(ROWS)]
    (tmp_path / "p.jsonl").write_text(jsonl(*rows))
    (tmp_path / "p.json").write_text(json.dumps(rows))
    with (tmp_path / "p.csv").open("w", newline="") as f:
        import csv

        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "p.parquet")
    added = [import_file(store, "generic", tmp_path / name, dataset="same").samples_added
             for name in ("p.jsonl", "p.json", "p.csv", "p.parquet")]
    assert added == [3, 0, 0, 0]
    assert [l["choice"] for l in store.labels("same")] == ["A", "B", "A"]


def test_generic_prob_a_column_sets_choice_and_probability(tmp_path, store):
    path = tmp_path / "soft.csv"
    path.write_text("query,response_a,response_b,prob_a\nq1,a,b,0.8\nq2,a,b,0.5\nq3,a,b,\n")
    res = import_file(store, "generic", path, judge="rm", judge_kind="llm")
    assert res.labels_written == 2
    assert [(l["choice"], l["prob_a"]) for l in store.labels("soft")] == [("A", 0.8), ("tie", 0.5)]


def test_generic_chosen_rejected_randomises_sides_with_a_recorded_seed(tmp_path, store):
    path = tmp_path / "prefs.jsonl"
    path.write_text(jsonl(*({"prompt": f"question {i}", "chosen": f"good answer {i}", "rejected": f"bad answer {i}"}
                            for i in range(40))))
    options = dict(pairs="chosen_rejected", columns={"query": "prompt"})
    import_file(store, "generic", path, dataset="seed0", **options)
    import_file(store, "generic", path, dataset="seed0-again", **options)
    import_file(store, "generic", path, dataset="seed7", seed=7, **options)

    def sides(dataset):
        out = []
        for r in store.rows("SELECT s.response_a, s.metadata, l.choice FROM samples s JOIN labels l ON l.sample_id = s.id"
                            " WHERE s.dataset = ? ORDER BY s.position", [dataset]):
            meta = json.loads(r["metadata"])
            assert r["choice"] == meta["chosen"]  # the label is the chosen side
            assert r["response_a"].startswith("good" if meta["chosen"] == "A" else "bad")
            out.append((meta["ab_seed"], meta["chosen"]))
        return out

    s0, again, s7 = sides("seed0"), sides("seed0-again"), sides("seed7")
    assert s0 == again and {seed for seed, _ in s0} == {0} and {seed for seed, _ in s7} == {7}
    assert 10 <= sum(side == "A" for _, side in s0) <= 30  # both sides are used
    assert [side for _, side in s0] != [side for _, side in s7]


def test_exact_repeats_in_one_file_are_all_kept_and_reimport_adds_nothing(tmp_path, store):
    row = {"query": "q", "response_a": "a", "response_b": "b", "label": "A"}
    path = tmp_path / "rep.jsonl"
    path.write_text(jsonl(row, row, {**row, "label": "B"}))
    res = import_file(store, "generic", path)
    assert (res.samples_added, res.counts["repeats"]) == (3, 2)
    assert [l["choice"] for l in store.labels("rep")] == ["A", "A", "B"]
    assert import_file(store, "generic", path).samples_added == 0


REIMPORTS = [
    ("autoj", "autoj/testdata_pairwise.jsonl", {}),
    ("pandalm", "pandalm/testset-v1.json", {}),
    ("alpaca_eval", "alpaca_eval/alpaca-7b/weighted_alpaca_eval_gpt4_turbo/annotations.json", {}),
    ("arena", "gair/sample_unannotated.jsonl", {}),
    ("hf", "fixture:hf_sample.jsonl", {}),
    ("arena", "fixture:arena_sample.json", {}),
]


@pytest.mark.parametrize("fmt,relative,options", REIMPORTS, ids=[f"{f}-{Path(r).name}" for f, r, _ in REIMPORTS])
def test_reimporting_a_file_adds_nothing(fmt, relative, options, store, request):
    if relative.startswith("fixture:"):
        path = FIXTURES / relative.split(":", 1)[1]
    else:
        path = need(request.getfixturevalue("shared_data"), relative)
    first = import_file(store, fmt, path, **options)
    counts = store.table_counts()
    positions = store.rows("SELECT id, position FROM samples ORDER BY position")
    again = import_file(store, fmt, path, **options)
    assert first.samples_added == first.samples_seen > 0
    assert again.samples_added == 0 and again.samples_seen == first.samples_seen
    assert store.table_counts() == counts
    assert store.rows("SELECT id, position FROM samples ORDER BY position") == positions


# ---------------------------------------------------------------------------- import_labels


@pytest.fixture
def seeded(tmp_path, store):
    """A store holding dataset 'seed' with three samples, in this order."""
    path = tmp_path / "seed.jsonl"
    path.write_text(jsonl(*({"query": f"q{i}", "response_a": f"a{i}", "response_b": f"b{i}"} for i in range(3))))
    import_file(store, "generic", path)
    return store


def seed_ids() -> list[str]:
    return [sample_id("seed", f"q{i}", f"a{i}", f"b{i}") for i in range(3)]


def test_import_labels_paper_upload_list_in_dataset_order(tmp_path, seeded):
    path = tmp_path / "labels.json"
    path.write_text(json.dumps(["A", "B", "tie"]))
    assert import_labels(seeded, path, dataset="seed", judge="my-llm", notes="uploaded") == 3
    assert seeded.sample_ids("seed") == seed_ids()
    got = {l["sample_id"]: l["choice"] for l in seeded.labels("seed", ["my-llm"])}
    assert got == dict(zip(seed_ids(), ["A", "B", "tie"]))
    assert judges_by_name(seeded)["my-llm"]["kind"] == "llm"


def test_import_labels_csv_with_probabilities(tmp_path, seeded):
    a, b, c = seed_ids()
    path = tmp_path / "labels.csv"
    path.write_text(f"sample_id,label,prob_a\n{c},B,0.2\n{a},a,\n")
    assert import_labels(seeded, path, dataset="seed", judge="rm", kind="llm") == 2
    got = {l["sample_id"]: (l["choice"], l["prob_a"]) for l in seeded.labels("seed", ["rm"])}
    assert got == {c: ("B", 0.2), a: ("A", None)}


# ---------------------------------------------------------------------------- bad input


@dataclass
class Bad:
    id: str
    fmt: str
    files: dict[str, Any]  # name -> text, bytes or a callable(sample ids) -> text; the first is the input
    row: int | None
    field: str | None
    message: str
    options: dict[str, Any] = field(default_factory=dict)
    file: str | None = None  # the file the error names, when not the input
    labels: bool = False  # import_labels (dataset 'seed') instead of import_file


GOOD = {"query": "q1", "response_a": "a1", "response_b": "b1", "label": "A"}
AUTOJ_ROW = {"scenario": "planning", "label": "0", "prompt": "p", "response 1": "a", "response 2": "b"}
PANDALM_ROW = {"idx": 0, "motivation_app": "X", "cmp_key": "llama-7b_opt-7b", "instruction": "i", "input": "",
               "response1": "a", "response2": "b", "annotator1": 1, "annotator2": 1, "annotator3": 2}
ALPACA_ROW = {"instruction": "i", "output_1": "a", "output_2": "b", "generator_1": "g1", "generator_2": "g2",
              "annotator": "ann", "preference": 1.0}
ARENA_ROW = {"question_id": "x", "model_a": "m1", "model_b": "m2", "winner": "model_a",
             "conversation_a": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}],
             "conversation_b": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hey"}]}


def _hf(**changes) -> str:
    row = _hf_rows()[0]
    for dotted, value in changes.items():
        *path, last = dotted.split("__")
        target = row
        for part in path:
            target = target[part]
        target[last] = value
    return jsonl(row)


BAD = [
    Bad("jsonl-invalid-json", "generic", {"data.jsonl": jsonl(GOOD) + '{"query": "q2",\n'}, 2, None, "invalid JSON at line 2"),
    Bad("jsonl-not-utf8", "generic", {"data.jsonl": jsonl(GOOD).encode() + b'{"query": "caf\xe9"}\n'}, 2, None, "not valid UTF-8"),
    Bad("csv-not-utf8", "generic", {"data.csv": b"query,response_a,response_b\nq1,a1,b1\nq2,caf\xe9,b2\n"}, 2, None, "not valid UTF-8"),
    Bad("json-not-utf8", "generic", {"data.json": b'[{"query": "q"},\n {"query": "caf\xe9"}]'}, None, None, "not valid UTF-8: byte 0xe9 at line 2"),
    Bad("empty-file", "generic", {"data.jsonl": b""}, None, None, "the file is empty"),
    Bad("blank-file", "generic", {"data.csv": "\n  \n"}, None, None, "the file is empty"),
    Bad("csv-header-only", "generic", {"data.csv": "query,response_a,response_b\n"}, None, None, "no data rows"),
    Bad("csv-ragged-row", "generic", {"data.csv": "query,response_a,response_b\nq1,a,b\nq2,a,b,extra\n"}, 2, None, "expected 3 fields"),
    Bad("csv-duplicate-header", "generic", {"data.csv": "query,query,response_b\nq,a,b\n"}, None, None, "duplicate column name"),
    Bad("missing-column", "generic", {"data.csv": "prompt,response_a,response_b\nq,a,b\n"}, 1, "query", "missing"),
    Bad("mapped-column-missing", "generic", {"data.jsonl": jsonl(GOOD)}, 1, "prompt", "missing", {"columns": {"query": "prompt"}}),
    Bad("mapped-label-missing", "generic", {"data.jsonl": jsonl(GOOD)}, 1, "verdict", "missing", {"columns": {"label": "verdict"}}),
    Bad("unknown-label", "generic", {"data.jsonl": jsonl(GOOD, {**GOOD, "query": "q2", "label": "X"})}, 2, "label",
        "unknown label value 'X' (expected one of A, B, tie)"),
    Bad("non-string-query", "generic", {"data.jsonl": jsonl(GOOD, {**GOOD, "query": 42})}, 2, "query", "must be a string, not a number"),
    Bad("empty-response", "generic", {"data.jsonl": jsonl({**GOOD, "response_b": "  "})}, 1, "response_b", "is empty"),
    Bad("duplicate-id", "generic", {"data.csv": "id,query,response_a,response_b\nx1,q1,a,b\nx2,q2,a,b\nx1,q3,a,b\n"}, 3, "id",
        "duplicate id 'x1' (also in row 1)"),
    Bad("prob-out-of-range", "generic", {"data.jsonl": jsonl({**GOOD, "label": None, "prob_a": 1.5})}, 1, "prob_a", "probability"),
    Bad("unknown-scenario-group", "generic", {"data.jsonl": jsonl({**GOOD, "scenario_group": "Cooking"})}, 1, "scenario_group",
        "unknown scenario group"),
    Bad("json-list-of-strings", "generic", {"data.json": '["a", "b"]'}, 1, None, "expected a JSON object, found a string"),
    Bad("json-syntax", "generic", {"data.json": '[{"query": "q", "response_a": "a", "response_b": "b"},\n {"query": }]'}, None, None,
        "invalid JSON at line 2"),
    Bad("parquet-garbage", "generic", {"data.parquet": b"PAR1 this is not parquet"}, None, None, "not a readable parquet file"),
    Bad("unsupported-suffix", "generic", {"data.txt": "hello"}, None, None, "unsupported file type"),
    Bad("unknown-option", "generic", {"data.jsonl": jsonl(GOOD)}, None, "colums", "unknown option 'colums'", {"colums": {}}),
    Bad("bad-label-values", "generic", {"data.jsonl": jsonl(GOOD)}, None, "label_values", "not one of A, B, tie",
        {"label_values": "1=A,2=C"}),
    Bad("bad-judge-kind", "generic", {"data.jsonl": jsonl(GOOD)}, None, "judge_kind", "must be one of", {"judge_kind": "robot"}),
    Bad("unknown-format", "nope", {"data.jsonl": jsonl(GOOD)}, None, None, "unknown format 'nope'"),
    Bad("autoj-unknown-label", "autoj", {"test.jsonl": jsonl(AUTOJ_ROW, {**AUTOJ_ROW, "label": "7"})}, 2, "label",
        "unknown label value '7' (expected one of 0, 1, 2)"),
    Bad("autoj-missing-field", "autoj", {"test.jsonl": jsonl({k: v for k, v in AUTOJ_ROW.items() if k != "response 2"})}, 1,
        "response 2", "missing"),
    Bad("autoj-outputs-misaligned", "autoj", {"test.jsonl": jsonl(AUTOJ_ROW),
                                              "pairwise_example_output.jsonl": jsonl({"output": 0}, {"output": 1})},
        None, None, "has 2 verdicts but test.jsonl has 1 rows", file="pairwise_example_output.jsonl"),
    Bad("autoj-bad-output", "autoj", {"test.jsonl": jsonl(AUTOJ_ROW), "pairwise_exchange_example_output.jsonl": jsonl({"output": "x"})},
        1, "output", "unknown label value 'x'", file="pairwise_exchange_example_output.jsonl"),
    Bad("pandalm-cmp-key", "pandalm", {"test.json": json.dumps([{**PANDALM_ROW, "cmp_key": "llama7b"}])}, 1, "cmp_key", "cannot split"),
    Bad("pandalm-aux-missing-idx", "pandalm", {"test.json": json.dumps([PANDALM_ROW]),
                                               "gpt-3.5-turbo-testset-v1.json": json.dumps([{"idx": 5, "gpt_result": "1"}])},
        None, "idx", "has no row with idx '0'", file="gpt-3.5-turbo-testset-v1.json"),
    Bad("pandalm-bad-annotator", "pandalm", {"test.json": json.dumps([{**PANDALM_ROW, "annotator2": 3}])}, 1, "annotator2",
        "unknown label value 3"),
    Bad("alpaca-bad-preference", "alpaca_eval", {"annotations.json": json.dumps([ALPACA_ROW, {**ALPACA_ROW, "preference": 3.5}])},
        2, "preference", "must be 1, 2, 1.5"),
    Bad("alpaca-mixed-generators", "alpaca_eval", {"annotations.json": json.dumps([ALPACA_ROW, {**ALPACA_ROW, "generator_2": "g3"}])},
        None, "generator_2", "pass dataset="),
    Bad("arena-unknown-winner", "arena", {"arena.json": json.dumps([{**ARENA_ROW, "winner": "model_c"}])}, 1, "winner",
        "unknown label value 'model_c'"),
    Bad("arena-conversation-not-a-list", "arena", {"arena.json": json.dumps([{**ARENA_ROW, "conversation_a": "hi"}])}, 1,
        "conversation_a", "must be a non-empty list"),
    Bad("arena-user-turns-differ", "arena", {"arena.json": json.dumps([{**ARENA_ROW, "conversation_b": [
        {"role": "user", "content": "hey"}, {"role": "assistant", "content": "yo"}]}])}, 1, "conversation_b", "differ"),
    Bad("hf-unknown-preference-label", "hf", {"hf.jsonl": _hf(preference_labels__human="response_3")}, 1,
        "preference_labels.human", "unknown label value 'response_3'"),
    Bad("hf-non-numeric-rating", "hf", {"hf.jsonl": _hf(basic_response_1__polite="very")}, 1, "basic_response_1.polite",
        "must be a number"),
    Bad("hf-response-not-an-object", "hf", {"hf.jsonl": _hf(response_2="just text")}, 1, "response_2", "must be an object"),
    Bad("hf-bad-clear-intent", "hf", {"hf.jsonl": _hf(**{"clear intent": "Maybe"})}, 1, "clear intent", "must be 'Yes' or 'No'"),
    Bad("labels-list-wrong-length", "", {"labels.json": '["A", "B"]'}, None, None, "2 labels for the 3 samples", labels=True),
    Bad("labels-list-unknown-value", "", {"labels.json": '["A", "X", "B"]'}, 2, "label", "unknown label value 'X'", labels=True),
    Bad("labels-csv-unknown-sample", "", {"labels.csv": lambda ids: f"sample_id,label\n{ids[0]},A\nnope,B\n"}, 2, "sample_id",
        "unknown sample id 'nope'", labels=True),
    Bad("labels-csv-duplicate-sample", "", {"labels.csv": lambda ids: f"sample_id,label\n{ids[0]},A\n{ids[0]},B\n"}, 2, "sample_id",
        "also in row 1", labels=True),
    Bad("labels-csv-missing-column", "", {"labels.csv": lambda ids: f"sample_id,verdict\n{ids[0]},A\n"}, 1, "label", "missing",
        labels=True),
    Bad("labels-csv-bad-prob", "", {"labels.csv": lambda ids: f"sample_id,label,prob_a\n{ids[0]},A,2\n"}, 1, "prob_a",
        "probability", labels=True),
]


@pytest.mark.parametrize("case", BAD, ids=[c.id for c in BAD])
def test_bad_input_names_file_row_and_field_and_leaves_the_store_unchanged(case: Bad, tmp_path, seeded):
    seeded.close()
    store_file = seeded.path
    before = file_sha256(store_file)
    written = []
    for name, content in case.files.items():
        if callable(content):
            content = content(seed_ids())
        (tmp_path / name).write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
        written.append(tmp_path / name)
    with Store(store_file) as store:
        with pytest.raises(InputError) as info:
            if case.labels:
                import_labels(store, written[0], dataset="seed", judge="uploaded")
            else:
                import_file(store, case.fmt, written[0], **case.options)
    err = info.value
    assert (Path(err.file).name, err.row, err.field) == (case.file or written[0].name, case.row, case.field)
    assert case.message in err.message
    location = ", ".join([case.file or written[0].name] + [f"row {case.row}"] * (case.row is not None)
                         + [f"field {case.field!r}"] * (case.field is not None))
    assert str(err) == f"{location}: {err.message}" and "\n" not in str(err)
    assert file_sha256(store_file) == before


def test_input_error_reads_as_one_line():
    err = InputError("/some/where/data.jsonl", "unknown label value 'X'\n(expected one of A, B, tie)", row=12, field="label")
    assert str(err) == "data.jsonl, row 12, field 'label': unknown label value 'X' (expected one of A, B, tie)"
    assert isinstance(err, ValueError) and (err.row, err.field) == (12, "label")
    assert str(InputError("x.csv", "the file is empty")) == "x.csv: the file is empty"


def test_import_labels_checks_the_dataset_and_the_kind(tmp_path, seeded):
    path = tmp_path / "labels.json"
    path.write_text('["A"]')
    with pytest.raises(InputError, match="has no samples in the store"):
        import_labels(seeded, path, dataset="nope", judge="j")
    with pytest.raises(InputError) as e:
        import_labels(seeded, path, dataset="seed", judge="j", kind="robot")
    assert e.value.field == "kind"


def test_parse_file_never_touches_a_store(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text(jsonl(GOOD))
    batch = parse_file("generic", path)
    assert [s.query for s in batch.samples] == ["q1"] and batch.judges[0].name == "human"
    assert set(importers.FORMATS) == {"autoj", "pandalm", "alpaca_eval", "hf", "arena", "generic"}
