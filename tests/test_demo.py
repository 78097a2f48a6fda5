"""The synthetic demo: deterministic, idempotent, complete, and its texts show its ratings."""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections import Counter

import pytest

from core import catalogue, compare, demo, features, fit, judges
from core.profile import POSITION, beats_baselines, best_baseline
from core.records import Judge, word_count
from core.store import Store
from tests.conftest import copy_store

EMOJI = re.compile("[\U0001F300-\U0001FAFF\u2600-\u27BF]")
MARKDOWN = re.compile(r"^\s*(#{1,6} |[-*] |\d+\. )", re.M)
LIMITS = re.compile(r"can't|cannot|could be wrong|not certain|don't know|don't have access", re.I)
URL = re.compile(r"https?://\S+")
SLANG = re.compile(r"\b(tbh|gonna|kinda|lowkey|ngl|no biggie)\b", re.I)
JOKE = re.compile(r"\b(joke|kidding|pun)\b", re.I)
STEP = re.compile(r"^\d+\. |\bStep \d+: ", re.M)


@pytest.fixture(scope="module")
def generated():
    return demo.generate(seed=0)


@pytest.fixture(scope="module")
def built(tmp_path_factory, demo_built):
    """(a copy of the session's demo store, its build result). Its data is the prebuilt file's copy, as a first
    start writes it; ``test_the_prebuilt_demo_is_what_generating_and_writing_it_gives`` holds that to the
    generator's output, so the tests on it check what the generator and the store's write make."""
    path, result = demo_built
    store = Store(copy_store(path, tmp_path_factory.mktemp("demo") / "s.db"))
    yield store, result
    store.close()


def pairs(generated):
    """(sample, ratings of A, ratings of B) for every generated sample."""
    batch, annotations, _ = generated
    by_id = {a["sample_id"]: json.loads(a["parsed"]) for a in annotations}
    for s in batch.samples:
        parsed = by_id[s.id]
        yield s, parsed["response_a"], parsed["response_b"]


def responses(generated):
    """(sample, text, ratings) for every response, A and B alike."""
    for s, ra, rb in pairs(generated):
        yield s, s.response_a, ra
        yield s, s.response_b, rb


def sentences(text: str) -> list[str]:
    out = []
    for part in re.split(r"(?<=[.!?])\s+|\n+", EMOJI.sub("", text)):
        part = re.sub(r"^(#{1,6} |[-*] |\d+\. |\*\*Key point:\*\* )+", "", part.strip()).strip()
        if len(part.split()) >= 4:
            out.append(part)
    return out


# ------------------------------------------------------------------ generation


def test_same_seed_gives_identical_output_and_another_seed_does_not():
    one = demo.generate(seed=3, n_per_group=8)
    two = demo.generate(seed=3, n_per_group=8)
    dump = lambda g: json.dumps([dataclasses.asdict(g[0]), g[1], g[2]], sort_keys=True, default=str)
    assert dump(one) == dump(two)
    other = demo.generate(seed=4, n_per_group=8)
    assert [s.id for s in other[0].samples] != [s.id for s in one[0].samples]


def test_generate_covers_every_group_with_queries_models_and_scenarios(generated):
    batch, annotations, profiles = generated
    assert batch.dataset.name == demo.DEMO_DATASET == "demo-synthetic"
    assert batch.dataset.synthetic and "generated" in batch.dataset.description
    counts = Counter(s.scenario_group for s in batch.samples)
    assert counts == {g: demo.N_PER_GROUP for g in catalogue.group_keys()}
    n = len(batch.samples)
    assert len({s.id for s in batch.samples}) == n == len(catalogue.group_keys()) * demo.N_PER_GROUP
    for s in batch.samples:
        assert s.query and s.scenario and s.model_a != s.model_b
        assert s.model_a.startswith("demo-model-") and s.model_b.startswith("demo-model-")
        assert set(s.cases) == set(catalogue.case_keys())
    with_ref = {s.scenario_group for s in batch.samples if s.reference}
    assert {"Code", "Exam Questions", "Knowledge-aware", "NLP Tasks"} <= with_ref
    assert all(j.kind == "synthetic" for j in batch.judges) and len(batch.judges) >= 4
    assert len(annotations) == n and len(profiles) == 11 * len(batch.judges)


def test_query_cases_are_visible_in_the_query(generated):
    batch = generated[0]
    n_cases = Counter(k for s in batch.samples for k, v in s.cases.items() if v)
    assert all(n_cases[k] >= 10 for k in catalogue.case_keys()), n_cases
    for s in batch.samples:
        c = s.cases
        assert c["express_feeling"] == any(said in s.query for _, said in demo.FEELINGS)
        assert c["w_stances"] == ("Personally, I think" in s.query)
        assert c["w_mistakes"] == any(said in s.query for said, _ in demo.MISTAKES)
        assert c["intent_unclear"] == any(t in s.query for t in demo.VAGUE_TAILS)
        assert c["w_constraints"] == ("Mention the word" in s.query or "'Answer:'" in s.query or "'END'" in s.query)


def test_conditional_ratings_only_where_the_case_applies(generated):
    for s, text, r in responses(generated):
        for case in catalogue.query_cases():
            assert (case.attribute in r) == s.cases[case.key]
        if s.cases["w_stances"]:
            assert -2 <= r["supports_stances"] <= 2


# ------------------------------------------------------------------ the texts show the ratings


def test_well_formatted_3_against_0_has_markdown_only_in_a(generated):
    seen = 0
    for s, ra, rb in pairs(generated):
        if ra["well_formatted"] == 3 and rb["well_formatted"] == 0:
            seen += 1
            assert re.search(r"^## ", s.response_a, re.M) and MARKDOWN.search(s.response_a)
            assert not MARKDOWN.search(s.response_b) and "\n" not in s.response_b
    assert seen >= 10


@pytest.mark.parametrize("level", [0, 1, 2, 3])
def test_informal_level_shows_slang_and_emoji(generated, level):
    for _, text, r in responses(generated):
        if r["informal"] != level:
            continue
        assert len(SLANG.findall(text)) >= level
        assert len(EMOJI.findall(text)) == max(0, level - 1)


def test_admits_limits_shows_a_limit_or_refusal_phrase(generated):
    for _, text, r in responses(generated):
        assert bool(LIMITS.search(text)) == (r["admits_limits"] > 0), text


def test_interactive_asks_the_user_questions(generated):
    for s, text, r in responses(generated):
        assert text.count("?") >= r["interactive"]
        if r["interactive"] == 0:
            assert "?" not in text


def test_supporting_materials_cite_links(generated):
    for _, text, r in responses(generated):
        assert len(URL.findall(text)) == r["supporting_materials"]


def test_repetitive_responses_repeat_sentences_and_others_do_not(generated):
    for _, text, r in responses(generated):
        repeated = [s for s, n in Counter(sentences(text)).items() if n > 1]
        assert bool(repeated) == (r["repetitive"] > 0), (r["repetitive"], repeated, text)


def test_step_by_step_shows_numbered_steps(generated):
    for _, text, r in responses(generated):
        assert len(STEP.findall(text)) == (0, 2, 3, 5)[r["step_by_step"]], text


def test_funny_responses_joke(generated):
    for _, text, r in responses(generated):
        assert len(JOKE.findall(text)) == r["funny"]


def test_planted_errors_are_in_the_text(generated):
    n = 0
    for _, text, r in responses(generated):
        for e in r["errors"]:
            n += 1
            assert e["severity"] in catalogue.SEVERITIES
            assert " ".join(e["text"].split()) in " ".join(text.split())
    assert n > 100


def test_empathy_constraints_stances_and_corrections_show(generated):
    for s, text, r in responses(generated):
        if s.cases["express_feeling"]:
            feeling = next(f for f, said in demo.FEELINGS if said in s.query)
            assert text.count(feeling) >= r["empathetic"]
        if s.cases["w_constraints"]:
            kinds = [k for k in ("keyword", "prefix", "suffix") if _asked(k, s.query)]
            for kind, score in zip(kinds, r["constraint_scores"]):
                assert _satisfied(kind, s.query, text) == (score > 0), (kind, text)
        if s.cases["w_stances"]:
            stance = next(x for x in demo.STANCES if x in s.query)
            assert demo.STANCE_REPLY[r["supports_stances"]].format(stance=stance) in text
        if s.cases["w_mistakes"] and r["corrects_mistakes"] == 3:
            assert "Small correction:" in text


def _asked(kind: str, query: str) -> bool:
    return {"keyword": "Mention the word", "prefix": "'Answer:'", "suffix": "'END'"}[kind] in query


def _satisfied(kind: str, query: str, text: str) -> bool:
    if kind == "keyword":
        kw = re.search(r"Mention the word '(\w+)'", query).group(1)
        return kw in text
    if kind == "prefix":
        return text.startswith("Answer:")
    return text.rstrip().endswith("END")


def test_grammar_slips_and_length_follow_the_ratings(generated):
    by_grammar: dict[int, list[int]] = {}
    for _, text, r in responses(generated):
        assert r["lengthy"] == word_count(text)
        slips = sum(text.count(w) for w in (" pero ", " aber ", " también ", " donc "))
        by_grammar.setdefault(r["grammar"], []).append(slips)
    assert sum(by_grammar[3]) == 0 and sum(by_grammar[0]) > 0


def test_length_feature_means_clearly_more_words(generated):
    batch = generated[0]
    length = {f.sample_id: f.value for f in batch.features if f.attribute == "lengthy"}
    for s in batch.samples:
        wa, wb = word_count(s.response_a), word_count(s.response_b)
        if length[s.id] == 1:
            assert wa >= wb + 3 and wb <= 0.7 * wa
        elif length[s.id] == -1:
            assert wb >= wa + 3 and wa <= 0.7 * wb
    assert Counter(length.values())[1] > 50 and Counter(length.values())[-1] > 50


def test_features_are_the_resolved_ratings(generated):
    batch = generated[0]
    stored = {(f.sample_id, f.attribute): f.value for f in batch.features}
    for s, ra, rb in pairs(generated):
        for f in features.resolve(s.id, "demo", ra, rb, cases=s.cases):
            assert stored[s.id, f.attribute] == f.value


# ------------------------------------------------------------------ the store


def test_build_writes_everything_and_marks_it_synthetic(built):
    store, result = built
    n = len(catalogue.group_keys()) * demo.N_PER_GROUP
    assert result.dataset == "demo-synthetic" and result.samples_added == n
    ds = store.rows("SELECT * FROM datasets WHERE name = 'demo-synthetic'")[0]
    assert ds["synthetic"] == 1 and "generated" in ds["description"]
    groups = {r["scenario_group"]: r["samples"] for r in store.scenario_counts("demo-synthetic")}
    assert groups == {g: demo.N_PER_GROUP for g in catalogue.group_keys()}
    judges = store.judges("demo-synthetic")
    assert len(judges) >= 4 and {j["kind"] for j in judges} == {"synthetic"}
    assert all(j["labels"] == n and j["with_prob"] == (n if demo.JUDGES[j["name"]]["both_orders"] else 0) for j in judges)
    # the crowd ties; the LLM judges answer in both orders, and tie where the two orders disagree
    by_name = {j["name"]: j for j in judges}
    assert all((by_name[name]["tie"] > 0) for name in demo.JUDGES)
    both = dict(store.conn.execute("SELECT judge, SUM(verdict_ab IS NOT NULL AND verdict_ba IS NOT NULL) FROM labels"
                                   " GROUP BY judge").fetchall())
    assert {name: both[name] == n for name in demo.JUDGES} == {name: spec["both_orders"] for name, spec in demo.JUDGES.items()}
    assert set(result.judges) == {j["name"] for j in judges}


def test_build_stores_features_for_every_attribute(built):
    store, _ = built
    rows = store.rows("SELECT attribute, COUNT(*) AS n FROM features WHERE source = 'demo' GROUP BY attribute")
    n = store.scalar("SELECT COUNT(*) FROM samples")
    assert {r["attribute"]: r["n"] for r in rows} == {k: n for k in catalogue.attribute_keys()}


def test_build_stores_one_annotation_per_sample(built):
    store, _ = built
    rows = store.rows("SELECT * FROM annotations")
    n = store.scalar("SELECT COUNT(*) FROM samples")
    assert len(rows) == n and len({r["sample_id"] for r in rows}) == n
    r = rows[0]
    assert (r["annotator"], r["prompt_version"], r["step"], r["status"]) == ("demo-generator", "demo-v1", "ratings", "ok")
    assert r["cost"] == 0 and r["prompt_tokens"] == 0 and r["completion_tokens"] == 0
    parsed = json.loads(r["parsed"])
    assert {"query_analysis", "response_a", "response_b"} <= set(parsed)


def test_build_stores_the_true_profiles(built):
    store, _ = built
    rows = store.rows("SELECT * FROM profiles WHERE method = 'truth' AND dataset = 'demo-synthetic'")
    judges = {j["name"] for j in store.judges("demo-synthetic")}
    assert {(r["scope"], r["judge"]) for r in rows} == {(g, j) for g in catalogue.group_keys() for j in judges}
    keys = catalogue.attribute_keys()
    for r in rows:
        assert json.loads(r["attributes"]) == keys and r["feature_source"] == "demo" and r["imported"] == 0
        mean = json.loads(r["mean"])
        assert len(mean) == len(keys) and max(abs(w) for w in mean) <= demo.MAX_WEIGHT
        assert mean == [demo.true_weights(r["judge"], r["scope"])[k] for k in keys]  # the table, as stored
        assert json.loads(r["provenance"]) == {"synthetic": True, "seed": 0, "generator": "core.demo"}
    crowd = {r["scope"]: json.loads(r["mean"]) for r in rows if r["judge"] == "demo-crowd"}
    assert len({tuple(w) for w in crowd.values()}) > 1  # the weights vary by scenario group
    assert crowd["Advice"][keys.index("lengthy")] > 0 > crowd["Advice"][keys.index("admits_limits")]


def test_building_twice_adds_nothing(tmp_path):
    with Store(tmp_path / "s.db") as store:
        first = demo.build_demo(store, n_per_group=5)
        counts = store.table_counts()
        again = demo.build_demo(store, n_per_group=5)
        assert again.samples_added == 0 and first.samples_added == 55
        assert store.table_counts() == counts


# ------------------------------------------------------------------ the prebuilt default demo


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:25]}...{text[-25:]} ({len(text)} characters)"


def _table_rows(store, table):
    """(rowid, every column but the ones a write fills as it runs) of each row, in rowid order; and the values
    of those columns."""
    cols = [r["name"] for r in store.rows(f"PRAGMA table_info([{table}])")]
    timed = set(demo.COPY_TIME.get(table, ())) - {"id"}
    kept = [c for c in cols if c not in timed] if table != "_sqlite_migrations" else ["migration_set", "name"]
    rowid = "" if table.startswith("samples_fts_") and table.endswith(("config", "idx")) else "rowid, "
    rows = store.rows(f"SELECT {rowid}{', '.join(f'[{c}]' for c in kept)} FROM [{table}] ORDER BY 1")
    times = {v for r in store.rows(f"SELECT {', '.join(sorted(timed))} FROM [{table}]") for v in r.values()} if timed else set()
    return rows, times


def test_the_prebuilt_demo_is_what_generating_and_writing_it_gives(generated, tmp_path):
    """The default demo's prebuilt file (core/data/demo-prebuilt.sqlite.gz, which a first start copies in) holds
    exactly what the generator and the store's write make of it: every table of the store compared row by row,
    every column but the write's time (one value per table, as a write gives), and the build's result."""
    stale = (f"the prebuilt demo {demo.PREBUILT.relative_to(demo.PREBUILT.parents[2])} is no longer what generating "
             f"and writing the default demo gives; regenerate it with `{demo.REGENERATE}` and commit it")
    mismatch = demo.prebuilt_mismatch()
    assert mismatch is None, f"{stale} ({mismatch})"
    batch, annotations, profiles = generated  # the generator's own output, seed 0 at the default size
    with Store(tmp_path / "written.db") as written, Store(tmp_path / "copied.db") as copied:
        expected = written.write_batch(batch, annotations=annotations, profiles=profiles)
        assert demo.build_demo(copied, fit=False) == expected
        tables = [r["name"] for r in written.rows("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        assert tables == [r["name"] for r in copied.rows("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        for table in tables:
            if table in ("samples_fts_data", "samples_fts_idx"):  # the full-text index's segments: their layout
                continue  # may differ, what they find not (checked below)
            want, want_times = _table_rows(written, table)
            got, got_times = _table_rows(copied, table)
            assert len(got) == len(want), f"{stale}: table {table} has {len(got)} rows, a fresh write {len(want)}"
            for i, (g, w) in enumerate(zip(got, want)):
                assert g == w, f"{stale}: table {table}, row {i}: " + ", ".join(
                    f"{k} {_short(g[k])} (a fresh write: {_short(w[k])})" for k in w if g[k] != w[k])
            assert len(got_times) == min(1, len(want_times)) and None not in got_times, (table, got_times)
        for store in (written, copied):  # the full-text index holds exactly the samples' texts
            store.conn.execute("INSERT INTO samples_fts (samples_fts) VALUES ('integrity-check')")
            assert [h["id"] for h in store.search("function", limit=20)]
        assert written.search("kitten", limit=50) == copied.search("kitten", limit=50)
        assert copied.scalar("SELECT seq FROM sqlite_sequence WHERE name = 'profiles'") == len(profiles)


def test_a_first_build_copies_the_prebuilt_demo_and_says_so(tmp_path):
    """The default demo going into an empty store is copied from the prebuilt file: one progress step that says
    it writes (the dashboard imports its chart library beside it), the build's usual result, the write's time."""
    heard = []
    with Store(tmp_path / "s.db") as store:
        res = demo.build_demo(store, fit=False, on_progress=lambda *a: heard.append(a))
        assert res.samples_added == res.samples_seen == len(catalogue.group_keys()) * demo.N_PER_GROUP
        assert res.judges == list(demo.JUDGES) and res.labels_written == len(demo.JUDGES) * res.samples_added
        assert res.features_written == len(catalogue.attribute_keys()) * res.samples_added
        (stamp,) = {r["imported_at"] for r in store.rows("SELECT imported_at FROM datasets")}
        assert {r["created_at"] for r in store.rows("SELECT created_at FROM labels UNION SELECT created_at FROM profiles")} == {stamp}
    assert heard == [("writing the demo's prebuilt pairs, annotations and labels into the store", 0, 1)]


def test_a_generated_build_reports_its_generation_and_its_write(tmp_path):
    heard = []
    with Store(tmp_path / "s.db") as store:
        demo.build_demo(store, n_per_group=2, fit=False, on_progress=lambda *a: heard.append(a))
    assert heard == [("generating the pairs, their annotations and the judges' labels", 0, 2),
                     ("writing them into the store", 1, 2)]


def _refused(store):
    before = store.table_counts()
    assert demo._copy_prebuilt(store, None) is None
    assert store.table_counts() == before


def test_the_prebuilt_demo_is_copied_only_where_it_stands_for_a_fresh_build(tmp_path, monkeypatch):
    """Not for another attribute catalogue (PREFDISSECT_ATTRIBUTES), another schema, a missing or damaged file,
    or a store that has rows in the demo's tables: then nothing is written and the demo is generated."""
    import gzip

    from core import migrations

    with Store(tmp_path / "s.db") as store:
        # another attribute catalogue: one attribute dropped
        attrs = json.loads((catalogue.DATA_DIR / "attributes.json").read_text(encoding="utf-8"))
        (tmp_path / "attrs.json").write_text(json.dumps(attrs[:-1]), encoding="utf-8")
        monkeypatch.setenv("PREFDISSECT_ATTRIBUTES", str(tmp_path / "attrs.json"))
        assert "inputs" in demo.prebuilt_mismatch()
        _refused(store)
        monkeypatch.delenv("PREFDISSECT_ATTRIBUTES")
        # another schema: the code has a migration the file was not made with
        real = migrations.names
        monkeypatch.setattr(migrations, "names", lambda: real() + ["m999_future"])
        assert "migrations" in demo.prebuilt_mismatch()
        _refused(store)
        monkeypatch.undo()
        # a missing file, a file that is not gzip, a gzip of something that is not a database
        for content in (None, b"not gzip", gzip.compress(b"not a database " * 100)):
            path = tmp_path / "prebuilt.gz"
            path.unlink(missing_ok=True)
            if content is not None:
                path.write_bytes(content)
            monkeypatch.setattr(demo, "PREBUILT", path)
            assert demo.prebuilt_mismatch()
            _refused(store)
        monkeypatch.undo()
        # a store with a row in one of the demo's tables
        store.write_labels([Judge("someone", "human")], [])
        _refused(store)
    assert demo.prebuilt_mismatch() is None  # the shipped file, here (the test above holds it to a fresh build)


def _p_a(store, judge, attribute, value):
    return store.scalar(
        "SELECT AVG(l.choice = 'A') FROM labels l JOIN features f ON f.sample_id = l.sample_id"
        " WHERE l.judge = ? AND f.source = 'demo' AND f.attribute = ? AND f.value = ? AND l.choice != 'tie'",
        (judge, attribute, value),
    )


@pytest.mark.parametrize(
    "judge, attribute",
    [("demo-crowd", "lengthy"), ("demo-gpt-4-turbo", "no_severe_errors"), ("demo-tulu-70b", "rich_info"), ("demo-tulu-7b", "lengthy")],
)
def test_labels_follow_the_profiles(built, judge, attribute):
    store, _ = built
    up, down = _p_a(store, judge, attribute, 1), _p_a(store, judge, attribute, -1)
    assert up - down > 0.3, (up, down)


def test_the_crowd_dislikes_admitted_limitations_and_gpt_4_turbo_does_not(built):
    """The paper's finding, in the labels themselves (decisive ones): humans dislike "admits limitations"."""
    store, _ = built
    crowd = _p_a(store, "demo-crowd", "admits_limits", 1) - _p_a(store, "demo-crowd", "admits_limits", -1)
    gpt4 = _p_a(store, "demo-gpt-4-turbo", "admits_limits", 1) - _p_a(store, "demo-gpt-4-turbo", "admits_limits", -1)
    assert crowd < 0 and crowd < gpt4 - 0.1, (crowd, gpt4)


def test_prob_a_is_the_profile_probability(built):
    store, _ = built
    keys = catalogue.attribute_keys()
    sid, group = store.conn.execute("SELECT id, scenario_group FROM samples ORDER BY position LIMIT 1").fetchone()
    x = {a: v for a, v in store.conn.execute("SELECT attribute, value FROM features WHERE sample_id = ?", (sid,))}
    sigmoid = lambda z: 1 / (1 + math.exp(-z))
    for judge, spec in demo.JUDGES.items():
        w = demo.true_weights(judge, group)
        z, b = sum(x[k] * w[k] for k in keys), spec["position"]
        stored = store.scalar("SELECT prob_a FROM labels WHERE sample_id = ? AND judge = ?", (sid, judge))
        if spec["both_orders"]:  # the mean of P(A) with A shown first and with B shown first
            assert stored == pytest.approx((sigmoid(z + b) + sigmoid(z - b)) / 2, abs=1e-5)
        else:  # one vote in one order, like a crowd's: no probability of its own
            assert stored is None


# ------------------------------------------------------------------ the demo looks like real data


def _fitted(store, judge: str, scope: str = "all") -> dict[str, tuple[float, float, float]]:
    """{term: (mean, lo, hi)} of the judge's fast-path profile at ``scope``, as the store holds it."""
    p = store.profiles(dataset=demo.DEMO_DATASET, scope=scope, judges=[judge], method="fast")[0]
    return {a: (m, lo, hi) for a, m, lo, hi in zip(p["attributes"], p["mean"], p["lo"], p["hi"])}


def test_the_fitted_demo_shows_the_papers_findings(built):
    """What the first screens show (Profiles at scope "all", the Judges page's agreement): the crowd
    dislikes admitted limitations, GPT-4-Turbo rewards the absence of severe errors, the 7B judge
    favours the response shown first, and the judges agree as real judges do (about 60-75%)."""
    store, _ = built
    crowd, gpt4, small = (_fitted(store, j) for j in ("demo-crowd", "demo-gpt-4-turbo", "demo-tulu-7b"))
    assert crowd["admits_limits"][2] < 0, crowd["admits_limits"]  # mean and its 94% interval below 0
    assert gpt4["no_severe_errors"][1] > 0, gpt4["no_severe_errors"]
    assert small[POSITION][1] > 0, small[POSITION]  # the shown-first term, its interval above 0
    assert abs(crowd[POSITION][0]) < small[POSITION][0]  # the crowd has no first-slot bias to find
    rates = {(a.judge_a, a.judge_b): a.rate for a in judges.agreement(store, demo.DEMO_DATASET)}
    assert len(rates) == 6
    # the mean over the six pairs lies in the band the issue asks for; each pair near it (ties, the
    # crowd's and the LLM judges' split verdicts, count as a third outcome) and well above chance
    assert 0.6 <= sum(rates.values()) / len(rates) <= 0.75, rates
    assert all(0.55 <= r <= 0.8 for r in rates.values()), rates
    assert all(a.kappa[1] > 0 for a in judges.agreement(store, demo.DEMO_DATASET))


def test_similar_size_judges_prefer_alike(built):
    """The paper's finding on size: the two large LLM judges' profiles are the most alike pair."""
    store, _ = built
    sim = compare.similarity_matrix(compare.weights_from_rows(store.profiles(
        dataset=demo.DEMO_DATASET, feature_source=demo.FEATURE_SOURCE, method="fast")),
        sorted(demo.JUDGES), scopes=catalogue.group_keys())
    pairs = {(a, b): sim.loc[a, b] for a in sim.index for b in sim.columns if a < b}
    assert max(pairs, key=pairs.get) == ("demo-gpt-4-turbo", "demo-tulu-70b"), pairs


def test_every_scope_profile_beats_its_best_baseline(built):
    """Enough pairs per scope that each stored profile predicts held-out choices better than the
    majority label, "the longer wins" and "the first wins" on the same folds (the fit's own baselines)."""
    store, _ = built
    rows = store.profiles(dataset=demo.DEMO_DATASET, feature_source=demo.FEATURE_SOURCE, method="fast")
    assert {r["scope"] for r in rows} >= set(catalogue.group_keys()) | {"all"}
    losing = {(r["scope"], r["judge"]): (r["accuracy"], best_baseline(r["provenance"].get("baselines")))
              for r in rows if not beats_baselines(r["accuracy"], r["provenance"].get("baselines"))}
    assert not losing, losing


def test_the_table_of_true_weights_is_the_papers_scaled(shared_data):
    """core/data/demo_judges.json is what judges_from_published derives from the released weights."""
    directory = shared_data / "gair" / "fitted_paras_comparison"
    assert json.loads(demo.JUDGE_TABLE.read_text(encoding="utf-8")) == demo.judges_from_published(directory)
