"""Bring your own data (issue 16): verdicts in both orders, strength and scores as one judge; the
user's own categories; text normalisation and duplicates; no silent replacement; names; every bad
row at once; delete. Real files from ../shared/data where the issue names them."""

from __future__ import annotations

import json
import math
import re
import sqlite3
from pathlib import Path

import pytest

from core import cli, heuristics
from core.importers import InputError, InputErrors, MAX_PROBLEMS, import_file, import_labels, parse_file
from core.records import NAME_MAX, combine_verdicts, normalise_name, normalise_text, sample_id
from core.store import ConflictError, SampleFilter, Store, category_scope


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


# ---------------------------------------------------------------------------- JudgeBench: both orders

JB_PAIRS = ["--map", "query=question", "--map", "response_a=response_A", "--map", "response_b=response_B",
            "--map", "id=pair_id", "--map", "category=source"]


@pytest.fixture(scope="module")
def judgebench_store(tmp_path_factory, shared_data):
    """JudgeBench imported through the CLI: gold pairs, o1-mini's two games (verdict text with its
    strength), both reward models (each game's decision and scores)."""
    jb = shared_data / "judgebench"
    if not (jb / "pairs.jsonl").is_file():
        pytest.skip(f"{jb} not found")
    db = tmp_path_factory.mktemp("jb") / "store.db"
    base = ["--store", str(db)]
    assert cli.main(base + ["import", "generic", str(jb / "pairs.jsonl"), "--dataset", "judgebench", "--judge", "gold",
                            "--judge-kind", "gold", *JB_PAIRS]) == 0
    assert cli.main(base + ["labels", str(jb / "judge-o1-mini-arena-hard.jsonl"), "--dataset", "judgebench",
                            "--judge", "o1-mini", "--map", "sample_id=pair_id",
                            "--map", "label=judgments.0.judgment.response",
                            "--map", "label_ba=judgments.1.judgment.response"]) == 0
    for name, file in (("skywork-27b", "judge-skywork-reward-gemma-2-27b.jsonl"),
                       ("internlm2-7b", "judge-internlm2-7b-reward.jsonl")):
        assert cli.main(base + ["labels", str(jb / file), "--dataset", "judgebench", "--judge", name,
                                "--map", "sample_id=pair_id", "--map", "label=judgments.0.decision",
                                "--map", "label_ba=judgments.1.decision", "--map", "scores=judgments.0.judgment.scores",
                                "--map", "scores_ba=judgments.1.judgment.scores"]) == 0
    return db


def test_judgebench_figures_of_its_readme_come_out_of_the_judges_command(judgebench_store, capsys):
    code, out, _ = run_cli(capsys, "--store", judgebench_store, "judges", "--dataset", "judgebench")
    assert code == 0
    rows = {m.group(1): m.groups()[1:] for m in re.finditer(
        r"^(\S+)\s+A shown first ([\d.]+)% of (\d+)\s+B shown first ([\d.]+)% of (\d+)\s+of (\d+) games: "
        r"first won (\d+), second won (\d+), ties (\d+)", out, re.M)}
    consistency = dict(re.findall(r"^(\S+)\s.*position consistency ([\d.]+)% of 350", out, re.M))
    # the shared data README: o1-mini 70.9% / 74.6%, consistent 68.6%, first 367 / second 289 / ties 44;
    # Skywork-27B 64.3% / 65.1%, consistent 99.1%; internlm2-7b 59.4% / 59.4%, consistent 100%
    assert rows["o1-mini"] == ("70.9", "350", "74.6", "350", "700", "367", "289", "44")
    assert consistency["o1-mini"] == "68.6"
    assert rows["skywork-27b"][0::2][:2] == ("64.3", "65.1")
    assert consistency["skywork-27b"] == "99.1"
    assert (rows["internlm2-7b"][0], rows["internlm2-7b"][2], consistency["internlm2-7b"]) == ("59.4", "59.4", "100.0")
    assert "gold" not in rows  # one order only: no per-order line


def test_judgebench_o1_mini_is_one_judge_with_both_verdicts_and_their_strength(judgebench_store, shared_data):
    raw = {}
    for line in (shared_data / "judgebench" / "judge-o1-mini-arena-hard.jsonl").open():
        r = json.loads(line)
        raw[r["pair_id"]] = [re.findall(r"\[\[(.*?)\]\]", g["judgment"]["response"])[-1] for g in r["judgments"]]
    with Store(judgebench_store) as s:
        own = dict(s.conn.execute("SELECT source_id, id FROM samples WHERE dataset = 'judgebench'"))
        labels = {r["sample_id"]: r for r in s.rows("SELECT * FROM labels WHERE judge = 'o1-mini'")}
        assert s.scalar("SELECT COUNT(*) FROM judges WHERE name LIKE 'o1-mini%'") == 1
    assert len(labels) == 350
    swap = {"A": "B", "B": "A", "tie": "tie"}
    for pid, (g1, g2) in raw.items():
        lab = labels[own[pid]]
        v1 = "tie" if "=" in g1 else g1[0]
        v2 = "tie" if "=" in g2 else swap[g2[0]]  # game 2 showed B first: mapped back
        assert (lab["verdict_ab"], lab["verdict_ba"]) == (v1, v2)
        assert lab["strength_ab"] == (None if v1 == "tie" else 2 if ">>" in g1 else 1)
        assert lab["strength_ba"] == (None if v2 == "tie" else 2 if ">>" in g2 else 1)
        assert lab["choice"] == combine_verdicts(v1, v2)[0]  # A with a tie is A; A against B is a tie


def test_judgebench_reward_scores_become_p_a_by_a_logistic_of_their_difference(judgebench_store, shared_data):
    with Store(judgebench_store) as s:
        own = dict(s.conn.execute("SELECT source_id, id FROM samples"))
        labels = {r["sample_id"]: r for r in s.rows("SELECT * FROM labels WHERE judge = 'skywork-27b'")}
    for line in (shared_data / "judgebench" / "judge-skywork-reward-gemma-2-27b.jsonl").open():
        r = json.loads(line)
        (a1, b1), (b2, a2) = (g["judgment"]["scores"] for g in r["judgments"])  # game 2: B shown first
        lab = labels[own[r["pair_id"]]]
        expected = (1 / (1 + math.exp(-(a1 - b1))) + 1 / (1 + math.exp(-(a2 - b2)))) / 2
        assert lab["prob_a"] == pytest.approx(expected, abs=1e-9)
        assert json.loads(lab["detail"]) == {"scores_ab": [a1, b1], "scores_ba": [a2, b2]}


def test_scores_alone_give_the_verdicts_and_equal_scores_are_a_tie(tmp_path, judgebench_store, shared_data):
    db = tmp_path / "s.db"
    db.write_bytes(Path(judgebench_store).read_bytes())
    with Store(db) as s:
        n = import_labels(s, shared_data / "judgebench" / "judge-skywork-reward-gemma-2-27b.jsonl", dataset="judgebench",
                          judge="skywork-scores-only", columns={"sample_id": "pair_id", "scores": "judgments.0.judgment.scores",
                                                                "scores_ba": "judgments.1.judgment.scores"})
        ties = s.scalar("SELECT COUNT(*) FROM labels WHERE judge = 'skywork-scores-only' AND verdict_ab = 'tie'"
                        " AND verdict_ba = 'tie' AND choice = 'tie' AND prob_a = 0.5")
    assert n == 350
    assert ties == 3  # the three pairs whose two responses got the same score (the repo's decision breaks them to B)


def test_a_second_file_of_the_swapped_run_gives_the_same_labels_as_two_columns(tmp_path, judgebench_store, shared_data):
    first, second = [], []
    for line in (shared_data / "judgebench" / "judge-o1-mini-arena-hard.jsonl").open():
        r = json.loads(line)
        first.append({"id": r["pair_id"], "verdict": r["judgments"][0]["judgment"]["response"]})
        second.append({"id": r["pair_id"], "verdict": r["judgments"][1]["judgment"]["response"]})
    jsonl(tmp_path / "run1.jsonl", first)
    jsonl(tmp_path / "run2.jsonl", second[::-1])  # another order: matched by id
    db = tmp_path / "s.db"
    db.write_bytes(Path(judgebench_store).read_bytes())
    with Store(db) as s:
        import_labels(s, tmp_path / "run1.jsonl", dataset="judgebench", judge="o1-mini-files",
                      columns={"sample_id": "id", "label": "verdict"}, swapped=tmp_path / "run2.jsonl")
        cols = "sample_id, choice, prob_a, verdict_ab, verdict_ba, strength_ab, strength_ba"
        a = s.rows(f"SELECT {cols} FROM labels WHERE judge = 'o1-mini' ORDER BY sample_id")
        b = s.rows(f"SELECT {cols} FROM labels WHERE judge = 'o1-mini-files' ORDER BY sample_id")
    assert a == b and len(a) == 350


def test_judgebench_sources_as_categories_with_a_mapping_onto_the_groups(tmp_path, shared_data):
    with Store(tmp_path / "s.db") as s:
        res = import_file(s, "generic", shared_data / "judgebench" / "pairs.jsonl", dataset="jb",
                          columns={"query": "question", "response_a": "response_A", "response_b": "response_B",
                                   "id": "pair_id", "category": "source"},
                          category_groups="mmlu*=Exam Questions,livebench*=Exam Questions,livecodebench*=Code")
        assert res.samples_added == 350
        counts = s.category_counts("jb")
        groups = dict(s.conn.execute("SELECT scenario_group, COUNT(*) FROM samples GROUP BY scenario_group"))
    families = {}
    for line in (shared_data / "judgebench" / "pairs.jsonl").open():
        src = json.loads(line)["source"]
        families[src.split("-")[0]] = families.get(src.split("-")[0], 0) + 1
    assert groups == {"Exam Questions": families["mmlu"] + families["livebench"], "Code": families["livecodebench"]}
    assert sum(r["samples"] for r in counts) == 350
    assert all(r["scenario_group"] == ("Code" if r["category"].startswith("livecodebench") else "Exam Questions")
               for r in counts)


def test_a_judgebench_category_is_a_fit_scope(tmp_path, judgebench_store):
    from core import fit

    db = tmp_path / "s.db"
    db.write_bytes(Path(judgebench_store).read_bytes())
    with Store(db) as s:
        code = s.browse(SampleFilter(dataset="judgebench", category="livecodebench"), limit=1000)[0]
        samples = s.samples_for("judgebench", ids=[r["id"] for r in code])
        s.write_features([f for x in samples for f in heuristics.features_for(x)])
        source = s.feature_sources("judgebench")[0]["source"]
        rep = fit.dissect(s, "judgebench", source, scopes=[category_scope("livecodebench")], folds=0,
                          judges=["gold", "o1-mini"])
        profiles = s.profiles(dataset="judgebench", scope=category_scope("livecodebench"))
        # ties are an outcome of the fit (Davidson), not dropped: every labelled sample counts
        labelled = s.scalar("SELECT COUNT(*) FROM labels l JOIN samples x ON x.id = l.sample_id"
                            " WHERE l.judge = 'o1-mini' AND x.category = 'livecodebench'")
        ties = s.scalar("SELECT COUNT(*) FROM labels l JOIN samples x ON x.id = l.sample_id"
                        " WHERE l.judge = 'o1-mini' AND x.category = 'livecodebench' AND l.choice = 'tie'")
    assert len(code) == 42 and not rep.skipped and ties > 0
    assert {p["judge"]: p["n"] for p in profiles} == {"gold": 42, "o1-mini": labelled}
    assert all(len(p["mean"]) == len(p["lo"]) == len(p["hi"]) for p in profiles)


def test_a_category_mapping_that_matches_nothing_is_refused(tmp_path, shared_data):
    with pytest.raises(InputError, match="matches none of the file's categories"):
        parse_file("generic", shared_data / "judgebench" / "pairs.jsonl",
                   columns={"query": "question", "response_a": "response_A", "response_b": "response_B",
                            "category": "source"}, category_groups="mmlu-pro=Exam Questions")


# ---------------------------------------------------------------------------- EvalBiasBench: categories

@pytest.fixture
def biasbench(tmp_path, shared_data):
    path = shared_data / "evalbiasbench" / "biasbench.json"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    store = Store(tmp_path / "s.db")
    import_file(store, "generic", path, dataset="biasbench", judge="biasbench-gold", judge_kind="gold",
                columns={"query": "instruction", "response_a": "response1", "response_b": "response2", "category": "bias"},
                label_values="1=A,2=B")
    yield store, json.loads(path.read_text())
    store.close()


def test_bias_types_become_categories_a_filter_a_breakdown_and_a_fit_scope(biasbench):
    from core import fit

    store, raw = biasbench
    counts = {r["category"]: r["samples"] for r in store.category_counts("biasbench")}
    assert counts == {k: len(v) for k, v in raw.items()}
    for category, rows in raw.items():
        _, total = store.browse(SampleFilter(dataset="biasbench", category=category))
        assert total == len(rows)
    samples = store.samples_for("biasbench")
    store.write_features([f for s in samples for f in heuristics.features_for(s)])
    source = store.feature_sources("biasbench")[0]["source"]
    scopes = [category_scope(c) for c in raw]
    designs = store.designs("biasbench", source, scopes)
    assert {sc: len(d.sample_ids) for sc, d in designs.items()} == {category_scope(k): len(v) for k, v in raw.items()}
    gold = {sc: d.Y[:, 0] for sc, d in designs.items()}
    for category, rows in raw.items():  # labels "1" -> A (1.0), "2" -> B (0.0), in the file's order
        assert list(gold[category_scope(category)]) == [1.0 if str(r["label"]) == "1" else 0.0 for r in rows]
    rep = fit.dissect(store, "biasbench", source, scopes=[category_scope("length bias")], folds=0)
    # the scope reaches the fit with its 17 samples, below the fit's minimum of 20 labelled samples
    assert rep.skipped == [(category_scope("length bias"), "biasbench-gold: 17 labelled samples (< 20)")]
    with pytest.raises(ValueError, match="unknown scope"):
        fit.dissect(store, "biasbench", source, scopes=[category_scope("no such bias")])


def test_cli_samples_and_fit_take_a_category_scope(biasbench, capsys):
    store, raw = biasbench
    code, out, _ = run_cli(capsys, "--store", store.path, "samples", "--dataset", "biasbench",
                           "--scope", category_scope("concreteness"))
    assert code == 0 and out.startswith(f"{len(raw['concreteness'])} samples")


# ---------------------------------------------------------------------------- one pair is one pair

ROWS = [{"query": "Tell me\r\nabout caf\u0065\u0301s ", "response_a": "\ufeffOne.\r\nTwo.  \r\n", "response_b": "B\t\n",
         "label": "A"},
        {"query": "q2", "response_a": "x", "response_b": "y", "label": "B"},
        {"query": "q2", "response_a": "x  ", "response_b": "y\r\n", "label": "B"}]


def test_the_same_file_saved_differently_imports_once_and_repeats_are_reported(tmp_path, store):
    messy = jsonl(tmp_path / "messy.jsonl", ROWS)
    clean = [{k: normalise_text(v) if k != "label" else v for k, v in r.items()} for r in ROWS]
    tidy = jsonl(tmp_path / "tidy.jsonl", clean)
    r1 = import_file(store, "generic", messy, dataset="d")
    r2 = import_file(store, "generic", tidy, dataset="d")
    assert (r1.samples_added, r2.samples_added) == (3, 0)
    assert r1.counts["repeats"] == 1 and r1.repeats == [(3, 2)]
    assert any("row 3 = row 2" in n for n in r1.notes())
    assert any("already in the store" in n for n in r2.notes())
    row = store.rows("SELECT query, response_a, response_b FROM samples ORDER BY position")[0]
    assert row == {"query": "Tell me\nabout caf\u00e9s", "response_a": "One.\nTwo.", "response_b": "B"}
    assert sample_id("d", ROWS[0]["query"], ROWS[0]["response_a"], ROWS[0]["response_b"]) \
        == sample_id("d", clean[0]["query"], clean[0]["response_a"], clean[0]["response_b"])


def test_a_crlf_csv_reimports_as_nothing_new(tmp_path, store):
    body = "query,response_a,response_b,label\n" + "".join(f'"q{i}\nline two ","a{i} ","b{i}",A\n' for i in range(5))
    (tmp_path / "unix.csv").write_text(body, encoding="utf-8", newline="")
    (tmp_path / "win.csv").write_bytes(b"\xef\xbb\xbf" + body.replace("\n", "\r\n").encode())
    assert import_file(store, "generic", tmp_path / "unix.csv", dataset="d").samples_added == 5
    again = import_file(store, "generic", tmp_path / "win.csv", dataset="d")
    assert (again.samples_added, again.samples_seen) == (0, 5)


# ---------------------------------------------------------------------------- no silent replacement

@pytest.fixture
def seeded(tmp_path):
    rows = [{"id": f"own-{i}", "query": f"q{i}", "response_a": f"a{i}", "response_b": f"b{i}", "label": "A"} for i in range(4)]
    store = Store(tmp_path / "s.db")
    import_file(store, "generic", jsonl(tmp_path / "pairs.jsonl", rows), dataset="d", judge="crowd")
    yield store
    store.close()


def test_labels_refuse_to_change_a_judges_labels_unless_replace(tmp_path, seeded, capsys):
    first = tmp_path / "l1.csv"
    first.write_text("sample_id,label\nown-0,A\nown-1,B\n")
    second = tmp_path / "l2.csv"
    second.write_text("sample_id,label\nown-0,B\nown-2,A\n")
    assert import_labels(seeded, first, dataset="d", judge="gpt") == 2
    assert import_labels(seeded, first, dataset="d", judge="gpt") == 2  # the same labels again: no change, no refusal
    before = seeded.rows("SELECT * FROM labels ORDER BY sample_id, judge")
    with pytest.raises(ConflictError, match="1 of them would change.*--replace"):
        import_labels(seeded, second, dataset="d", judge="gpt")
    assert seeded.rows("SELECT * FROM labels ORDER BY sample_id, judge") == before
    code, _, err = run_cli(capsys, "--store", seeded.path, "labels", second, "--dataset", "d", "--judge", "gpt")
    assert code == 2 and "--replace" in err
    code, out, _ = run_cli(capsys, "--store", seeded.path, "labels", second, "--dataset", "d", "--judge", "gpt", "--replace")
    assert code == 0
    got = dict(seeded.conn.execute("SELECT s.source_id, l.choice FROM labels l JOIN samples s ON s.id = l.sample_id"
                                   " WHERE judge = 'gpt'"))
    assert got == {"own-0": "B", "own-2": "A"}  # replaced whole: own-1's old label is gone


def test_a_judges_kind_is_kept_and_a_different_kind_refused(tmp_path, seeded):
    f = tmp_path / "l.csv"
    f.write_text("sample_id,label\nown-3,A\n")
    with pytest.raises(ConflictError, match="stored as kind 'human'"):
        import_labels(seeded, f, dataset="d", judge="crowd", kind="llm")
    import_labels(seeded, f, dataset="d", judge="crowd", kind="human")  # the same label again: no change
    assert seeded.scalar("SELECT kind FROM judges WHERE name = 'crowd'") == "human"
    assert seeded.scalar("SELECT COUNT(*) FROM labels WHERE judge = 'crowd'") == 4


def test_generic_reimport_with_other_labels_is_refused_unless_replace(tmp_path, seeded):
    rows = [{"id": f"own-{i}", "query": f"q{i}", "response_a": f"a{i}", "response_b": f"b{i}", "label": "B"} for i in range(4)]
    path = jsonl(tmp_path / "pairs2.jsonl", rows)
    with pytest.raises(ConflictError):
        import_file(seeded, "generic", path, dataset="d", judge="crowd")
    import_file(seeded, "generic", path, dataset="d", judge="crowd", replace=True)
    assert seeded.scalar("SELECT COUNT(*) FROM labels WHERE judge = 'crowd' AND choice = 'B'") == 4


# ---------------------------------------------------------------------------- names

@pytest.mark.parametrize("raw,expected", [("  gpt-4\t ", "gpt-4"), ("\uff27\uff30\uff34", "GPT"),
                                          ("a\u00a0\u00a0b", "a b"), ("judge, with comma", "judge, with comma")])
def test_names_are_normalised(raw, expected):
    assert normalise_name(raw) == expected


@pytest.mark.parametrize("raw,why", [("gpt\u200b4", "zero-width"), ("\u202egpt", "bidirectional"), ("a\x1b[31mb", "control"),
                                     ("a\x00b", "control"), ("x" * (NAME_MAX + 1), "at most"), ("   ", "empty")])
def test_bad_names_are_refused(raw, why):
    with pytest.raises(ValueError, match=why):
        normalise_name(raw)


def test_a_name_that_collides_after_normalisation_is_refused_with_the_existing_name(tmp_path, seeded):
    f = tmp_path / "l.csv"
    f.write_text("sample_id,label\nown-0,A\n")
    import_labels(seeded, f, dataset="d", judge="GPT-4 judge")
    for other in ("gpt-4 judge", "\uff47pt\uff0d4  Judge "):
        with pytest.raises(ConflictError, match="existing judge 'GPT-4 judge'"):
            import_labels(seeded, f, dataset="d", judge=other)
    import_labels(seeded, f, dataset="d", judge=" \uff27PT\uff0d4\u00a0judge")  # full width, NBSP: the same name
    with pytest.raises(InputError, match="invisible"):
        import_labels(seeded, f, dataset="d", judge="GPT-4\u200d judge")
    assert seeded.scalar("SELECT COUNT(*) FROM judges") == 2


def test_a_judge_name_with_a_comma_can_be_selected_with_repeatable_flags(tmp_path, seeded, capsys):
    f = tmp_path / "l.csv"
    f.write_text("sample_id,label\nown-0,B\nown-1,B\n")
    import_labels(seeded, f, dataset="d", judge="me, myself")
    code, out, err = run_cli(capsys, "--store", seeded.path, "samples", "--dataset", "d",
                             "--disagree", "crowd", "--disagree", "me, myself")
    assert code == 0, err
    assert out.startswith("2 samples") and "me, myself=B" in out


# ---------------------------------------------------------------------------- every bad row at once

GOOD = {"query": "q", "response_a": "a", "response_b": "b", "label": "A"}


def test_every_bad_row_is_listed_with_file_row_and_field(tmp_path, store, capsys):
    lines = [json.dumps({**GOOD, "query": "q1"}), json.dumps({**GOOD, "query": "q2", "label": "X"}), "{not json",
             json.dumps({**GOOD, "query": "q4", "response_b": 7}), '{"query": "q5", "query": "again", "response_a": "a", "response_b": "b"}',
             json.dumps({**GOOD, "query": "q6\u0000"}), "[" * 200 + "]" * 200, json.dumps({**GOOD, "query": "q8"})]
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputErrors) as info:
        import_file(store, "generic", path)
    found = [(e.row, e.field) for e in info.value.problems]
    assert found == [(2, "label"), (3, None), (4, "response_b"), (5, None), (6, "query"), (7, None)]
    messages = " | ".join(e.message for e in info.value.problems)
    for words in ("unknown label value 'X'", "invalid JSON", "must be a string", "duplicate key 'query'", "NUL byte",
                  "nested deeper than"):
        assert words in messages
    assert store.table_counts()["samples"] == 0
    code, _, err = run_cli(capsys, "--store", store.path, "import", "generic", path)
    assert code == 2 and err.count("\n") == 7 and "bad.jsonl, row 5: duplicate key" in err


def test_problems_are_capped_then_counted(tmp_path, store):
    rows = [{**GOOD, "query": f"q{i}", "label": "maybe"} for i in range(MAX_PROBLEMS + 20)]
    with pytest.raises(InputErrors) as info:
        import_file(store, "generic", jsonl(tmp_path / "many.jsonl", rows))
    assert len(info.value.problems) == MAX_PROBLEMS and info.value.more == 20
    assert info.value.lines()[-1] == "  ... and 20 more"


def test_deeply_nested_json_list_file_is_an_input_error(tmp_path, store):
    (tmp_path / "deep.json").write_text("[" + "[" * 100000 + "]" * 100000 + "]")
    with pytest.raises(InputError, match="nested deeper"):
        import_file(store, "generic", tmp_path / "deep.json")


def test_the_nesting_check_counts_brackets_outside_strings_as_a_walk_over_every_character_does():
    """The depth check cuts strings out with a regular expression and walks the brackets left; against a walk
    over every character (in or out of a string, after a backslash or not) on random texts and edge cases."""
    import random

    from core.importers import MAX_DEPTH, _too_deep

    def walk(text):
        depth, in_str, esc = 0, False, False
        for ch in text:
            if in_str:
                esc, in_str = (False, True) if esc else (ch == "\\", ch != '"')
            elif ch == '"':
                in_str = True
            elif ch in "[{":
                depth += 1
                if depth > MAX_DEPTH:
                    return True
            elif ch in "]}":
                depth -= 1
        return False

    rng = random.Random(5)
    chars, weights = '[{]}"\\a', (10, 10, 2, 2, 1, 1, 1)  # mostly opening brackets: near the limit either way
    texts = ["".join(rng.choices(chars, weights, k=rng.randint(150, 400))) for _ in range(2_000)]
    for d in (MAX_DEPTH - 1, MAX_DEPTH, MAX_DEPTH + 1, 100):
        texts += ["[" * d + "]" * d, '{"a":' * d + "1" + "}" * d, '["' + "[" * d + '"]', '"\\"' + "[" * d,
                  "[" * d + '"' + "]" * d, '["\\\\"' + "[" * d, "]" * 5 + "[" * d]
    deep = sum(map(walk, texts))
    assert 400 < deep < 1_600, deep  # both answers well represented
    for text in texts:
        assert _too_deep(text) == walk(text), text


def test_an_all_empty_labels_file_is_refused_and_creates_no_judge(tmp_path, seeded):
    (tmp_path / "empty.json").write_text(json.dumps([None] * 4))
    (tmp_path / "empty.csv").write_text("sample_id,label\nown-0,\nown-1,\n")
    for f in ("empty.json", "empty.csv"):
        with pytest.raises(InputError, match="every label in the file is empty"):
            import_labels(seeded, tmp_path / f, dataset="d", judge="nobody")
    assert seeded.scalar("SELECT COUNT(*) FROM judges WHERE name = 'nobody'") == 0


def test_an_all_empty_verdict_column_in_a_pairs_file_is_refused(tmp_path, store):
    rows = [{**GOOD, "query": f"q{i}", "verdict": None} for i in range(3)]
    with pytest.raises(InputError, match="every row's verdict is empty"):
        import_file(store, "generic", jsonl(tmp_path / "p.jsonl", rows), columns={"label": "verdict"})


# ---------------------------------------------------------------------------- delete

def orphans(store: Store) -> dict[str, int]:
    return {
        "labels": store.scalar("SELECT COUNT(*) FROM labels WHERE sample_id NOT IN (SELECT id FROM samples)"
                               " OR judge NOT IN (SELECT name FROM judges)"),
        "features": store.scalar("SELECT COUNT(*) FROM features WHERE sample_id NOT IN (SELECT id FROM samples)"),
        "annotations": store.scalar("SELECT COUNT(*) FROM annotations WHERE sample_id NOT IN (SELECT id FROM samples)"),
        "samples": store.scalar("SELECT COUNT(*) FROM samples WHERE dataset NOT IN (SELECT name FROM datasets)"),
        "profiles": store.scalar("SELECT COUNT(*) FROM profiles WHERE imported = 0 AND (dataset NOT IN (SELECT name FROM"
                                 " datasets) OR judge NOT IN (SELECT name FROM judges))"),
        "judges": store.scalar("SELECT COUNT(*) FROM judges WHERE name NOT IN (SELECT judge FROM labels)"),
        "fts": store.scalar("SELECT COUNT(*) FROM samples_fts WHERE rowid NOT IN (SELECT rowid FROM samples)"),
        "jobs": sum(1 for r in store.rows("SELECT params FROM jobs")
                    if json.loads(r["params"]).get("dataset") not in {d["name"] for d in store.datasets()}),
    }


def test_delete_each_kind_leaves_nothing_orphaned_and_keeps_a_backup(store_path, capsys):
    with Store(store_path) as s:
        dataset = s.datasets()[0]["name"]
        judge = s.judge_names(dataset)[0]
        source = s.feature_sources(dataset)[0]["source"]
        profile = s.profiles(dataset=dataset)[0]
        before = s.table_counts()
        plan = s.delete_plan("judge", judge)
    assert plan["labels"] > 0 and plan["profiles"] > 0 and plan["judges"] == 1
    code, out, err = run_cli(capsys, "--store", store_path, "delete", "judge", judge)
    assert code == 2 and "--yes" in err and f"{plan['labels']:,} labels" in out  # not confirmed: nothing deleted
    with Store(store_path) as s:
        assert s.table_counts() == before
    code, out, _ = run_cli(capsys, "--store", store_path, "delete", "judge", judge, "--yes")
    assert code == 0
    backup = Path(re.search(r"kept in (\S+)", out).group(1))
    with sqlite3.connect(backup) as b:
        assert b.execute("SELECT COUNT(*) FROM labels WHERE judge = ?", [judge]).fetchone()[0] == plan["labels"]
    with Store(store_path) as s:
        assert s.scalar("SELECT COUNT(*) FROM labels WHERE judge = ?", [judge]) == 0
        assert not s.profiles(judges=[judge])
        assert orphans(s) == dict.fromkeys(orphans(s), 0)
        s.delete("profile", str(s.profiles(dataset=dataset)[0]["id"]), backup=False)
        n_features = s.scalar("SELECT COUNT(*) FROM features WHERE source = ?", [source])
        removed, _ = s.delete("features", source, backup=False)
        assert removed["features"] == n_features and not s.profiles(feature_source=source)
        n_samples = s.scalar("SELECT COUNT(*) FROM samples WHERE dataset = ?", [dataset])
        removed, copy = s.delete("dataset", dataset)
        assert copy.is_file() and removed["samples"] == n_samples > 0
        assert dataset not in {d["name"] for d in s.datasets()}
        assert orphans(s) == dict.fromkeys(orphans(s), 0)
        with pytest.raises(ValueError, match="no dataset"):
            s.delete_plan("dataset", dataset)
    assert profile["id"]


def test_dataset_text_reaches_the_terminal_inert(tmp_path, store, capsys):
    rows = [{"query": "evil \x1b[2J\x1b[31mred\u202e txt", "response_a": "a", "response_b": "b", "label": "A",
             "category": "law"}]
    import_file(store, "generic", jsonl(tmp_path / "p.jsonl", rows), dataset="d")
    code, out, _ = run_cli(capsys, "--store", store.path, "samples", "--dataset", "d", "--category", "law")
    assert code == 0 and "1 samples" in out
    assert "\x1b" not in out and "\u202e" not in out and "\\x1b[2J" in out and "\\u202e" in out
    code, out, _ = run_cli(capsys, "--store", store.path, "search", "evil")
    assert code == 0 and "\x1b" not in out and "\\x1b[31mred" in out


def test_the_benchmark_formats_list_every_bad_row_too(tmp_path, store):
    good = {"conversation_a": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
            "conversation_b": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "b"}],
            "model_a": "m1", "model_b": "m2", "winner": "model_a"}
    rows = [good, {**good, "winner": "nobody"}, {**good, "model_a": 5}, {k: v for k, v in good.items() if k != "winner"}]
    with pytest.raises(InputErrors) as info:
        import_file(store, "arena", jsonl(tmp_path / "arena.jsonl", rows))
    assert [(e.row, e.field) for e in info.value.problems] == [(2, "winner"), (3, "model_a"), (4, "winner")]


def test_a_judge_to_collect_gets_a_checked_name(seeded, capsys):
    with pytest.raises(ConflictError, match="existing judge 'crowd'"):
        seeded.judge_name("CROWD")
    assert seeded.judge_name(" my\u00a0judge ") == "my judge"
    code, _, err = run_cli(capsys, "--store", seeded.path, "jobs", "--submit", "judge", "--params",
                           json.dumps({"dataset": "d", "judge": "bad\u200bname"}))
    assert code == 2 and "invisible" in err


def test_a_store_imported_before_normalisation_finds_its_pairs_again(tmp_path, store):
    """Before issue 16 a pair's id hashed its raw text: re-importing the file must not add it twice."""
    import hashlib

    from core.records import Dataset, Sample
    from core.importers import ParsedFile

    def old_id(*parts):
        h = hashlib.sha256()
        for part in ("d", *parts, "0"):
            h.update(part.encode())
            h.update(b"\x1f")
        return h.hexdigest()[:20]

    raw = ("a query \r\n", "A says  \r\n", "B says")
    old = Sample("d", *raw, id=old_id(*raw))  # as the old importer stored it (the text is stored normalised here)
    store.write_batch(ParsedFile(dataset=Dataset("d"), samples=[old]))
    rows = [{"query": raw[0], "response_a": raw[1], "response_b": raw[2], "label": "B"},
            {"query": "new", "response_a": "x", "response_b": "y", "label": "A"}]
    res = import_file(store, "generic", jsonl(tmp_path / "again.jsonl", rows), dataset="d")
    assert (res.samples_added, res.samples_seen) == (1, 2)
    assert store.scalar("SELECT choice FROM labels WHERE sample_id = ?", [old.id]) == "B"
    assert store.table_counts()["samples"] == 2


def test_an_import_job_reports_progress_by_rows(tmp_path, seeded, monkeypatch):
    from core import importers, jobs

    monkeypatch.setattr(importers, "ROW_HOOK_EVERY", 10)
    rows = [{"query": f"job q{i}", "response_a": "a", "response_b": "b", "label": "A", "category": "c"} for i in range(35)]
    path = importers.save_upload(seeded.path, "../odd name!.jsonl", "".join(json.dumps(r) + "\n" for r in rows).encode())
    assert path.parent == seeded.path.parent / "uploads" and path.name.endswith("-odd_name.jsonl")
    seen = []
    job = jobs.submit(seeded, "import", {"dataset": "d", "format": "generic", "path": str(path),
                                         "options": {"dataset": "d", "judge": "crowd"}}, total=36)
    assert jobs.claim(seeded, job.id)
    final = jobs.run(seeded, job.id, on_progress=seen.append)
    assert final.status == "done" and (final.done, final.total) == (36, 36) and final.unit == "rows"
    assert [i for _, i, _ in seen] == [0, 10, 20, 30, 35, 35, 36]
    assert "35 new samples of 35" in final.message
    assert seeded.scalar("SELECT COUNT(*) FROM samples WHERE category = 'c'") == 35
