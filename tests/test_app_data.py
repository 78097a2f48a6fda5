"""The Your data page (AppTest): a malformed upload lists every problem and writes nothing; a good
one, mapped in the form, is checked, imported by a job, and shows on the other pages (its
categories on the Overview and as a Samples filter); deleting a dataset asks first, keeps a backup
and leaves nothing behind."""

from __future__ import annotations

import json
import time

import pytest

from core import jobs
from core.store import Store
from tests.conftest import store_sha256
from tests.stsession import open_page

PAGE = "data"  # pages/data.py


@pytest.fixture
def store_path(unfitted_store_path):
    return unfitted_store_path


def wait_done(store_path, at, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        with Store(store_path) as s:
            mine = [j for j in jobs.list_jobs(s) if j.kind == "import"]
        if mine and mine[0].status in jobs.FINISHED:
            return mine[0]
        time.sleep(0.05)
    raise AssertionError(f"the import job did not finish in {timeout} s")


ROWS = [{"prompt": f"question {i}", "first": f"answer A {i}", "second": f"answer B {i}",
         "verdict": ["A>>B", "A>B", "B>A", "A=B"][i % 4], "swapped": ["B>A", "B>A", "A>B", "A=B"][i % 4],
         "family": ["math", "code", "law"][i % 3]} for i in range(30)]


def upload(at, name: str, rows_or_text) -> None:
    body = rows_or_text if isinstance(rows_or_text, str) else "".join(json.dumps(r) + "\n" for r in rows_or_text)
    at.file_uploader(key="own_file").set_value((name, body.encode(), "application/octet-stream"))
    at.run()
    assert not at.exception, [e.value for e in at.exception]


def map_fields(at, **fields) -> None:
    for field, column in fields.items():
        at.selectbox(key=f"own_map_{field}").set_value(column)
    at.run()


def test_a_malformed_upload_lists_every_problem_and_writes_nothing(store_path):
    before = store_sha256(store_path)
    bad = [dict(r) for r in ROWS[:6]]
    bad[1]["verdict"] = "maybe"
    bad[3]["first"] = 7
    bad[4]["verdict"] = "perhaps"
    at = open_page(PAGE)
    upload(at, "bad.jsonl", bad)
    map_fields(at, query="prompt", response_a="first", response_b="second", label="verdict")
    at.button(key="own_check").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("3 problem(s)" in e.value for e in at.error)
    problems = next(df.value for df in at.dataframe if "problem" in df.value.columns)
    assert list(problems["row"]) == [2, 4, 5]
    assert list(problems["field"]) == ["verdict", "first", "verdict"]
    assert not [b for b in at.button if b.key == "own_import"]
    assert store_sha256(store_path) == before


def test_an_upload_is_mapped_checked_imported_as_a_job_and_shows_everywhere(store_path):
    at = open_page(PAGE)
    upload(at, "my pairs.jsonl", ROWS)
    preview = at.dataframe[0].value
    assert list(preview["prompt"]) == [r["prompt"] for r in ROWS[:5]]  # the first rows, as text
    map_fields(at, query="prompt", response_a="first", response_b="second", label="verdict", label_ba="swapped",
               category="family")
    at.text_input(key="own_dataset").input("mine").run()
    at.text_input(key="own_judge").input("my-judge").run()
    at.selectbox(key="own_kind").set_value("llm").run()
    at.button(key="own_check").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    metrics = {m.label: m.value for m in at.metric}
    assert (metrics["Samples"], metrics["Labels"], metrics["Judges"]) == ("30", "30", "1")
    at.button(key="own_import").click().run()
    job = wait_done(store_path, at)
    assert job.status == "done", (job.error, job.message)
    with Store(store_path) as s:
        labels = s.rows("SELECT verdict_ab, verdict_ba, strength_ab FROM labels WHERE judge = 'my-judge'"
                        " ORDER BY sample_id")
        cats = {r["category"]: r["samples"] for r in s.category_counts("mine")}
    assert len(labels) == 30 and all(l["verdict_ab"] and l["verdict_ba"] for l in labels)
    assert cats == {"math": 10, "code": 10, "law": 10}
    uploads = list((store_path.parent / "uploads").glob("*-my_pairs.jsonl"))
    assert len(uploads) == 1 and uploads[0].read_bytes().count(b"\n") == 30
    # on the Overview (breakdown by category) and the Samples page (a filter), without a restart
    ov = open_page()
    table = next(df.value for df in ov.dataframe if "category" in df.value.columns)
    assert set(table.loc[table["dataset"] == "mine", "category"]) == {"math", "code", "law"}
    sp = open_page("samples")
    sp.selectbox(key="samples_dataset").set_value("mine").run()
    sp.selectbox(key="samples_category").set_value("law").run()
    assert not sp.exception, [e.value for e in sp.exception]
    assert any("of **10**" in m.value for m in sp.markdown), [m.value for m in sp.markdown]
    with Store(store_path) as s:  # deleting the dataset takes its import job and the uploaded file with it
        removed, _ = s.delete("dataset", "mine", backup=False)
        assert removed["jobs"] == 1 and removed["uploads"] == 1 and not [j for j in jobs.list_jobs(s) if j.kind == "import"]
    assert not uploads[0].exists()


def test_deleting_a_dataset_asks_first_keeps_a_backup_and_leaves_nothing(store_path):
    at = open_page(PAGE)
    at.radio(key="own_del_what").set_value("dataset").run()
    at.selectbox(key="own_del_name").set_value("demo-synthetic").run()
    assert any("This removes:" in m.value and "samples" in m.value for m in at.markdown)
    assert at.button(key="own_del_go").disabled  # not confirmed yet
    at.checkbox(key="own_del_sure_0").check().run()
    at.button(key="own_del_go").click().run()
    assert not at.exception, [e.value for e in at.exception]
    with Store(store_path) as s:
        assert s.table_counts()["samples"] == 0 and s.table_counts()["labels"] == 0
        assert s.table_counts()["features"] == 0 and s.table_counts()["judges"] == 0
    backups = list(store_path.parent.glob("store.before-delete-*.db"))
    assert len(backups) == 1
    with Store(backups[0]) as b:
        assert b.table_counts()["samples"] > 0


def test_a_sample_shows_its_category_and_each_orders_verdict_strength(store_path, tmp_path):
    from core.importers import import_file

    rows = [{"query": "q1", "response_a": "a", "response_b": "b", "label": "A>>B", "label_ba": "A>B", "category": "law"}]
    path = tmp_path / "p.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with Store(store_path) as s:
        import_file(s, "generic", path, dataset="mine", judge="j", columns={"label": "label", "label_ba": "label_ba",
                                                                              "category": "category"})
        sid = s.sample_ids("mine")[0]
    at = open_page("samples", {"id": sid})
    assert any("your category: law" in c.value.replace("\\", "") for c in at.caption)
    votes = next(df.value for df in at.dataframe if "strength_ab" in df.value.columns).iloc[0]
    # A>>B with A first; A>B in the run with B first is "the first shown (B) is better": B, slightly
    assert (votes["verdict_ab"], votes["strength_ab"], votes["verdict_ba"], votes["strength_ba"]) == \
        ("A", "clearly", "B", "slightly")
