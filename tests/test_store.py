import sqlite3
import threading

import pytest

from core.records import Dataset, Feature, ImportBatch, Judge, Label, Sample, combine_verdicts
from core.store import MIGRATIONS, Store, fts_query, open_store


def batch(dataset="ds", n=3, judge="j1"):
    samples = [
        Sample(dataset, f"question {i} about volcanoes", f"answer A{i} lava", f"answer B{i} ash", scenario_group="Knowledge-aware")
        for i in range(n)
    ]
    return ImportBatch(
        dataset=Dataset(dataset, source="test"),
        samples=samples,
        judges=[Judge(judge, "human")],
        labels=[Label(s.id, judge, "A" if i % 2 else "B") for i, s in enumerate(samples)],
        features=[Feature(samples[0].id, "t", "clear", 1, 3, 1)],
    )


def test_new_store_is_migrated_in_wal_mode_with_a_busy_timeout(tmp_path):
    s = Store(tmp_path / "s.db", busy_timeout_s=7)
    assert s.scalar("PRAGMA journal_mode") == "wal"
    assert s.scalar("PRAGMA busy_timeout") == 7000
    assert not MIGRATIONS.pending(s.db)
    assert {"datasets", "samples", "judges", "labels", "annotations", "features", "jobs", "profiles",
            "samples_fts"} <= set(s.db.table_names())
    s.close()
    # reopening applies nothing twice
    s2 = Store(tmp_path / "s.db")
    assert len(MIGRATIONS.applied(s2.db)) == len(MIGRATIONS._migrations)


def test_write_batch_and_reimport_adds_nothing(tmp_path):
    s = Store(tmp_path / "s.db")
    r1 = s.write_batch(batch())
    assert (r1.samples_added, r1.labels_written) == (3, 3)
    before = s.table_counts()
    r2 = s.write_batch(batch())
    assert r2.samples_added == 0
    assert s.table_counts() == before
    assert [r["position"] for r in s.rows("SELECT position FROM samples ORDER BY position")] == [0, 1, 2]


def test_a_failing_batch_leaves_nothing_behind(tmp_path):
    s = Store(tmp_path / "s.db")
    s.write_batch(batch("first"))
    before = s.table_counts()
    bad = batch("second")
    bad.labels.append(Label("no-such-sample", "j1", "A"))  # violates the foreign key
    with pytest.raises(sqlite3.IntegrityError):
        s.write_batch(bad)
    assert s.table_counts() == before
    assert [d["name"] for d in s.datasets()] == ["first"]


def test_a_batch_brings_its_annotations_and_profiles_in_its_transaction(tmp_path):
    """The demo writes its pairs, ready-made annotations and true profiles as one write_batch: all of it, or
    (a failure anywhere) none of it; the bulk write's larger page cache is the connection's own again after,
    whichever way it ended."""
    from core import demo

    s = Store(tmp_path / "s.db")
    cache = s.scalar("PRAGMA cache_size")
    b, ann, prof = demo.generate(0, 2)
    bad = ImportBatch(b.dataset, samples=b.samples, judges=b.judges, features=b.features,
                      labels=[*b.labels, Label("no-such-sample", b.judges[0].name, "A")])  # a foreign key fails
    with pytest.raises(sqlite3.IntegrityError):
        s.write_batch(bad, annotations=ann, profiles=prof)
    assert s.is_empty() and s.table_counts()["annotations"] == 0 and not s.profiles()
    assert s.scalar("PRAGMA cache_size") == cache
    s.write_batch(b, annotations=ann, profiles=prof)
    assert s.table_counts()["annotations"] == len(ann) and len(s.profiles()) == len(prof)
    assert s.scalar("PRAGMA cache_size") == cache


def test_a_snapshot_copies_its_tables_into_an_empty_store_with_the_write_time_filled(tmp_path):
    """Store.snapshot / copy_snapshot (the prebuilt demo's path): the rows come back as they were, the omitted
    columns filled at copy time, in one transaction; nothing is written for another meta, into tables that
    have rows, or inside an open transaction (and a snapshot is not taken inside one either)."""
    from core.store import snapshot_meta

    src = Store(tmp_path / "src.db")
    b = batch(n=5)
    src.write_batch(b)
    tables = ("datasets", "samples", "judges", "labels")
    omit = {"datasets": ("imported_at", "updated_at"), "judges": ("created_at",), "labels": ("created_at",)}
    image = src.snapshot(tables, omit=omit, meta={"v": "1"})
    assert snapshot_meta(image) == {"v": "1"} and snapshot_meta(b"not a database" * 100) is None
    dst = Store(tmp_path / "dst.db")
    fill = {t: {c: "2026-01-01T00:00:00+00:00" for c in cols} for t, cols in omit.items()}
    assert dst.copy_snapshot(image, tables, fill=fill, meta={"v": "2"}) is None and dst.is_empty()
    dst.conn.execute("BEGIN")
    assert dst.copy_snapshot(image, tables, fill=fill, meta={"v": "1"}) is None
    with pytest.raises(ValueError):
        dst.snapshot(tables, omit=omit, meta={})
    dst.conn.rollback()
    assert dst.copy_snapshot(image, tables, fill=fill, meta={"v": "1"}) == {"datasets": 1, "samples": 5, "judges": 1,
                                                                            "labels": 5}
    assert dst.copy_snapshot(image, tables, fill=fill, meta={"v": "1"}) is None  # the tables have rows now
    for t in tables:
        keep = lambda rows: [{k: v for k, v in r.items() if k not in omit.get(t, ())} for r in rows]
        assert keep(dst.rows(f"SELECT rowid, * FROM {t} ORDER BY rowid")) == keep(src.rows(f"SELECT rowid, * FROM {t} ORDER BY rowid"))
        for col in omit.get(t, ()):
            assert {r[col] for r in dst.rows(f"SELECT {col} FROM {t}")} == {"2026-01-01T00:00:00+00:00"}
    assert [h["id"] for h in dst.search(b.samples[0].query)] == [h["id"] for h in src.search(b.samples[0].query)]
    assert "snapshot" not in [r["name"] for r in dst.rows("PRAGMA database_list")]


def test_feature_provenance_is_encoded_as_given(tmp_path):
    """Provenance dicts are encoded once per distinct value (the demo's 38,280 features share one), and values
    that compare equal but encode apart (True, 1, 1.0) keep their own JSON."""
    s = Store(tmp_path / "s.db")
    b = batch(n=4)
    b.features = [Feature(x.id, "t", "clear", 1, 3, 1, provenance=p) for x, p in
                  zip(b.samples, [{"seed": True}, {"seed": 1}, {"seed": 1.0}, {"seed": [1, {"a": 2}]}])]
    s.write_batch(b)
    got = dict(s.conn.execute("SELECT sample_id, provenance FROM features").fetchall())
    assert [got[x.id] for x in b.samples] == ['{"seed": true}', '{"seed": 1}', '{"seed": 1.0}',
                                              '{"seed": [1, {"a": 2}]}']


def test_appending_to_a_dataset_continues_positions(tmp_path):
    s = Store(tmp_path / "s.db")
    s.write_batch(batch(n=2))
    more = batch(n=4)  # two already stored, two new
    s.write_batch(more)
    ids = s.sample_ids("ds")
    assert ids == [x.id for x in more.samples]


def test_sample_ids_are_stable_content_hashes():
    a = Sample("ds", "q", "a", "b")
    assert a.id == Sample("ds", "q", "a", "b").id
    assert a.id != Sample("ds", "q", "b", "a").id
    assert a.id != Sample("other", "q", "a", "b").id
    assert a.id != Sample("ds", "q", "a", "b", occurrence=1).id


def test_overview_counts(tmp_path):
    s = Store(tmp_path / "s.db")
    s.write_batch(batch(n=5))
    ov = s.overview()
    assert ov.counts["samples"] == 5 and ov.counts["labels"] == 5
    (j,) = ov.judges
    assert (j["name"], j["labels"], j["a"], j["b"], j["tie"]) == ("j1", 5, 2, 3, 0)
    assert ov.scenarios == [{"dataset": "ds", "scenario_group": "Knowledge-aware", "samples": 5}]
    (d,) = ov.datasets
    assert (d["samples"], d["judges"], d["labels"]) == (5, 1, 5)


def test_full_text_search(tmp_path):
    s = Store(tmp_path / "s.db")
    s.write_batch(batch(n=3))
    s.write_batch(ImportBatch(Dataset("x"), samples=[Sample("x", "how to bake bread", "knead the dough", "buy it")]))
    hits = s.search("dough")
    assert [h["dataset"] for h in hits] == ["x"]
    assert len(s.search("volcanoes")) == 3
    assert s.search("volcanoes", dataset="x") == []
    assert s.search("lava question") and not s.search("lava bread")  # all words required
    # FTS syntax in user input is inert
    assert s.search('"unbalanced AND OR (') == []
    assert s.search("   ") == []


def test_fts_query_quotes_every_word():
    assert fts_query('a "b" OR c*') == '"a" "b" "OR" "c"'


def test_label_checks():
    with pytest.raises(ValueError):
        Label("s", "j", "C")
    with pytest.raises(ValueError):
        Label("s", "j", "A", prob_a=1.5)
    with pytest.raises(ValueError):
        Judge("j", "robot")


@pytest.mark.parametrize(
    "ab,ba,expected",
    [("A", "A", ("A", 1.0)), ("A", "B", ("tie", 0.5)), ("A", "tie", ("A", 0.75)),
     ("B", None, ("B", 0.0)), (None, None, None)],
)
def test_combine_verdicts(ab, ba, expected):
    assert combine_verdicts(ab, ba) == expected


def test_open_store_gives_each_thread_its_own_connection(tmp_path):
    path = tmp_path / "s.db"
    main = open_store(path)
    assert open_store(path) is main
    seen = []

    def worker():
        s = open_store(path)
        seen.append(s)
        s.write_batch(batch(n=1))

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert seen and seen[0] is not main
    assert main.table_counts()["samples"] == 1


def test_profiles_upsert(tmp_path):
    s = Store(tmp_path / "s.db")
    row = dict(dataset="d", scope="Code", judge="j", feature_source="f", method="truth",
               attributes=["a", "b"], mean=[0.1, -0.2])
    s.save_profile(row)
    s.save_profile({**row, "mean": [0.3, 0.4]})
    (p,) = s.rows("SELECT * FROM profiles")
    assert p["mean"] == "[0.3, 0.4]"
    assert s.profiles()[0]["mean"] == [0.3, 0.4]
    assert s.profiles(columns=["judge", "mean"]) == [{"judge": "j", "mean": [0.3, 0.4]}]  # only what is asked


def test_judge_names_and_feature_sources_are_per_dataset(tmp_path):
    s = Store(tmp_path / "s.db")
    s.write_batch(batch("first", n=3, judge="j1"))
    second = batch("second", n=2, judge="j2")
    second.features.append(Feature(second.samples[0].id, "t", "harmless", 0))  # same sample twice: counted once
    second.features.append(Feature(second.samples[1].id, "other", "clear", -1))
    s.write_batch(second)
    assert s.judge_names("first") == ["j1"]
    assert s.judge_names("second") == ["j2"]
    assert s.judge_names() == ["j1", "j2"]
    assert s.judge_names("no-such-dataset") == []
    assert s.feature_sources("second") == [{"source": "other", "samples": 1}, {"source": "t", "samples": 1}]
    assert s.feature_sources() == [{"source": "t", "samples": 2}, {"source": "other", "samples": 1}]


def test_choices_and_has_features_are_per_dataset(tmp_path):
    s = Store(tmp_path / "s.db")
    s.write_batch(batch("first", n=3, judge="j1"))
    s.write_batch(batch("second", n=2, judge="j1"))
    first = s.sample_ids("first")
    assert s.choices("first", "j1") == {sid: ("A" if i % 2 else "B") for i, sid in enumerate(first)}
    assert len(s.choices("second", "j1")) == 2 and s.choices("first", "nobody") == {}
    assert s.has_features("first", "t") and not s.has_features("first", "other")
    assert not s.has_features("no-such-dataset", "t")


def test_version_moves_with_every_content_change(tmp_path):
    s = Store(tmp_path / "s.db")
    b = batch(n=3)
    s.write_batch(b)
    v0 = s.version()
    assert s.version() == v0  # reading does not move it
    # a relabelled sample: same count, same rowids, a different version (caches must not keep the old label)
    s.write_labels([], [Label(b.samples[0].id, "j1", "tie")])
    v1 = s.version()
    assert v1 != v0 and s.table_counts()["labels"] == 3
    s.write_features([Feature(b.samples[0].id, "t", "clear", -1, 1, 3)])  # an annotation resolved again
    v2 = s.version()
    assert v2 != v1
    s.set_sample_analysis(b.samples[1].id, scenario_group="Code")  # it has one: not overwritten, no change
    assert s.version() == v2
    s.set_sample_analysis(b.samples[1].id, cases={"stance": True})  # the query analysis filled in
    assert s.version() != v2


def test_a_success_after_a_failure_carries_the_failed_attempts_cost(tmp_path):
    s = Store(tmp_path / "s.db")
    b = batch(n=1)
    s.write_batch(b)
    base = {"id": "r1", "request_key": "k1", "sample_id": b.samples[0].id, "annotator": "m", "prompt_version": "v",
            "step": "ratings"}
    s.record_annotation({**base, "status": "failed", "error": "unparseable", "prompt_tokens": 100,
                         "completion_tokens": 40, "cost": 0.002, "attempts": 2, "job_id": 7})
    s.record_annotation({**base, "status": "ok", "parsed": {"x": 1}, "prompt_tokens": 100, "completion_tokens": 30,
                         "cost": 0.0015, "attempts": 1, "job_id": 7})
    (row,) = s.rows("SELECT status, prompt_tokens, completion_tokens, cost, attempts FROM annotations")
    assert row["status"] == "ok" and (row["prompt_tokens"], row["completion_tokens"], row["attempts"]) == (200, 70, 3)
    assert row["cost"] == pytest.approx(0.0035)  # the failed attempts were paid for: the job's spend keeps them
    # a success is final: writing it again (a reused answer) adds nothing
    s.record_annotation({**base, "status": "ok", "parsed": {"x": 1}, "prompt_tokens": 100, "completion_tokens": 30,
                         "cost": 0.0015, "attempts": 1, "job_id": 7})
    assert s.scalar("SELECT cost FROM annotations") == pytest.approx(0.0015)


@pytest.mark.parametrize("n_attributes", [29, 31, 32, 33, 40, 70])
def test_designs_pack_features_correctly_for_any_catalogue_size(tmp_path, monkeypatch, n_attributes):
    """Regression: ``Store.designs`` packed each feature's attribute index into a fixed 5-bit field,
    so a 32nd attribute read as "unknown" (dropped) and a 33rd overflowed into the sample's position
    (features landed on the wrong sample), without an error. The design matrix must equal a direct,
    unpacked computation from the features table whatever the catalogue's size."""
    import json

    import numpy as np

    keys = [f"attr{i:02d}" for i in range(n_attributes)]
    path = tmp_path / "attrs.json"
    path.write_text(json.dumps([{"key": k, "label": k, "rating": "0-3", "rule": "score", "definition": "d"}
                                for k in keys]))
    monkeypatch.setenv("PREFDISSECT_ATTRIBUTES", str(path))
    rng = np.random.default_rng(n_attributes)
    samples = [Sample("ds", f"question {i}", f"answer A{i}", f"answer B{i}", scenario_group="Code")
               for i in range(12)]
    features = [Feature(s.id, "t", k, int(rng.integers(-1, 2)), excluded=(i == 5))
                for i, s in enumerate(samples) for k in keys if rng.random() < 0.8]
    # an attribute the catalogue does not have is not a column
    features += [Feature(s.id, "t", "retired_attribute", 1) for s in samples[:3]]
    s = Store(tmp_path / "s.db")
    s.write_batch(ImportBatch(dataset=Dataset("ds", source="test"), samples=samples, judges=[Judge("j1", "human")],
                              labels=[Label(x.id, "j1", "AB"[i % 2]) for i, x in enumerate(samples)],
                              features=features))
    for include_excluded in (False, True):
        d = s.design("ds", "t", include_excluded=include_excluded)
        ids = [x.id for x in samples if include_excluded or x.id != samples[5].id]
        expected = np.zeros((len(ids), n_attributes))
        for f in features:
            if f.sample_id in ids and f.attribute in keys:
                expected[ids.index(f.sample_id), keys.index(f.attribute)] = f.value
        assert d.attributes == keys
        assert d.sample_ids == ids
        np.testing.assert_array_equal(d.X, expected)
        assert d.excluded == (0 if include_excluded else 1)
        assert list(d.Y[:, 0]) == [1.0 if i % 2 == 0 else 0.0 for i, x in enumerate(samples) if x.id in ids]
    s.close()


def test_designs_and_fit_probs_take_a_judges_probability_by_one_rule(tmp_path):
    """A label's P(A) is the combined choice's (``Design.P``); the A-first row of a fit with the position term
    takes it only where the label has no per-order verdicts (``Design.P_ab``). ``fit_probs``, from which the
    simulator recomputes a soft fit's input key, must read the same values as the fit's design, or a profile
    is called stale (or fresh) on inputs the fit never took."""
    import numpy as np

    samples = [Sample("ds", f"question {i}", f"answer A{i}", f"answer B{i}", scenario_group="Code") for i in range(5)]
    labels = [Label(samples[0].id, "j1", "A", prob_a=0.8),  # one order, as shown: both rows' probability
              Label(samples[1].id, "j1", "tie", prob_a=0.5, verdict_ab="A", verdict_ba="B"),  # pools both orders
              Label(samples[2].id, "j1", "B", prob_a=0.3, verdict_ba="B"),  # B shown first only
              Label(samples[3].id, "j1", "A"),  # no probability
              Label(samples[4].id, "j1", "B", prob_a=0.1, verdict_ab="B")]  # A shown first only
    s = Store(tmp_path / "s.db")
    s.write_batch(ImportBatch(dataset=Dataset("ds", source="test"), samples=samples, judges=[Judge("j1", "llm")],
                              labels=labels, features=[Feature(x.id, "t", "clear", 1) for x in samples]))
    d = s.design("ds", "t")
    nan = np.nan
    np.testing.assert_array_equal(d.P[:, 0], [0.8, 0.5, 0.3, nan, 0.1])
    np.testing.assert_array_equal(d.P_ab[:, 0], [0.8, nan, nan, nan, nan])
    for position, design in ((False, d.P), (True, d.P_ab)):
        expected = {i: p for i, p in zip(d.sample_ids, design[:, 0]) if not np.isnan(p)}
        assert s.fit_probs("ds", "j1", position=position) == expected
    s.close()


def test_a_store_written_before_the_migrations_moved_opens_unchanged(tmp_path):
    """The migrations moved from core/store.py to core/migrations.py (issue 13). A store written by
    the code before the move (commit 0faf2d0: three samples, one judge, one feature) opens with
    nothing left to apply, the schema its migrations make, and its contents intact."""
    import gzip
    from pathlib import Path

    from core.store import schema_differences

    path = tmp_path / "old.db"
    path.write_bytes(gzip.decompress((Path(__file__).parent / "fixtures" / "store_written_by_0faf2d0.db.gz")
                                     .read_bytes()))
    s = Store(path)
    applied = {m.name for m in MIGRATIONS.applied(s.db)}
    assert applied == {m.name for m in MIGRATIONS._migrations}
    assert schema_differences(s.conn, applied) == []
    assert [d["name"] for d in s.datasets()] == ["ds"]
    assert s.table_counts()["samples"] == 3 and s.table_counts()["labels"] == 3
    assert s.write_batch(batch()).samples_added == 0  # the same import adds nothing
    s.close()


def test_store_reads_return_named_row_types():
    """Issue 13: each read's row shape has a name (a TypedDict), so a reader sees the columns
    without opening the schema; only the generic ``rows(sql)`` returns plain dicts."""
    import inspect
    import typing

    import core.store as store_module

    untyped = []
    for name, fn in inspect.getmembers(Store, inspect.isfunction):
        if name.startswith("_") or name == "rows":
            continue
        ret = typing.get_type_hints(fn, vars(store_module)).get("return")
        # a row is a dict keyed by column: plain dict[str, Any] rows (in a list, a tuple or a
        # mapping by id) have no name; a decoded JSON value (llm_dialect, cached_annotations) is no row
        if name not in ("llm_dialect", "cached_annotations") and "dict[str, typing.Any]" in str(ret):
            untyped.append(f"{name} -> {ret}")
    assert not untyped, untyped
    row = store_module.DatasetRow(name="d", source="", licence="", description="", synthetic=0, imported_at="",
                                  samples=0, judges=0, labels=0)
    assert row["name"] == "d" and store_module.ProfileRow.__total__ is False


def test_model_pair_counts_count_pairs_between_two_named_models(tmp_path):
    """The simulator's model list: per model, the pairs it answers in against another named model (a pair with
    one model unnamed, empty or the same on both sides does not count), as counted from every pair's metadata."""
    s = Store(tmp_path / "s.db")
    pairs = [("m1", "m2"), ("m2", "m1"), ("m1", "m3"), ("m1", None), ("m2", "m2"), ("", "m3"), (None, None)]
    b = ImportBatch(Dataset("ds", source="test"),
                    samples=[Sample("ds", f"q{i}", f"a{i}", f"b{i}", model_a=a, model_b=m) for i, (a, m) in enumerate(pairs)])
    s.write_batch(b)
    s.write_batch(ImportBatch(Dataset("other", source="test"), samples=[Sample("other", "q", "a", "b", model_a="m1",
                                                                                   model_b="m9")]))
    want: dict[str, int] = {}
    for m in s.pair_meta("ds").values():
        if m["model_a"] and m["model_b"] and m["model_a"] != m["model_b"]:
            for x in (m["model_a"], m["model_b"]):
                want[x] = want.get(x, 0) + 1
    assert s.model_pair_counts("ds") == want == {"m1": 3, "m2": 2, "m3": 1}
