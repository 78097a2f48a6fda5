"""The manipulation experiment end to end against the loopback server: a scripted model under test
that shows the asked-for attributes at a set rate, and a judge whose verdicts come from a known
profile (over the offline heuristics' features), through the real openai client."""

import csv as csvlib
import io
import json

import pytest

from core import catalogue, experiment, heuristics, jobs
from core.loopback import LoopbackServer, manipulable_model, profile_judge
from core.store import Store
from tests.conftest import loopback_settings

#: the known profile (weights on attributes the offline heuristics measure; the rest 0)
WEIGHTS = {"well_formatted": 0.9, "supporting_materials": 0.7, "step_by_step": 0.5, "lengthy": 0.4,
           "informal": -0.8, "admits_limits": -1.0, "interactive": -0.4}
PROFILE = {"dataset": "profiles-src", "scope": "all", "judge": "known-judge"}
BASELINE = ("Here is a plain answer to the question. It covers the main facts in simple words. "
            "The details depend on the case at hand. A short summary closes it.")


def _labels():
    return {catalogue.attribute(k).label.lower(): k for k in catalogue.attribute_keys()}


def _featurize(query, first, second):
    return {f.attribute: f.value for f in heuristics.features_for(
        {"id": "x", "query": query, "response_a": first, "response_b": second})}


def _save_known_profile(store, weights=WEIGHTS):
    keys = catalogue.attribute_keys()
    store.save_profile({**PROFILE, "feature_source": "heuristic:v1", "method": "truth", "attributes": keys,
                        "mean": [weights.get(k, 0.0) for k in keys], "imported": 0,
                        "provenance": {"synthetic": True}})


def _queries(tmp_path, n, seed=0):
    path = tmp_path / f"queries-{seed}.jsonl"
    path.write_text("".join(json.dumps({"query": f"Question {seed}-{i}: how does topic {i} work in practice?",
                                        "baseline": BASELINE}) + "\n" for i in range(n)), encoding="utf-8")
    return path


def _settings(server, model, **kw):
    return loopback_settings(server, model=model, max_retries=4, concurrency=8, price_input=1.0, price_output=2.0,
                             **kw).public()


def _spec(server, queries_file, *, seed=0, arms=None, name="t"):
    return experiment.Spec(name=name, model=_settings(server, "mut-1"), judge=_settings(server, "judge-1"),
                           judge_name="known-judge-live", profile=dict(PROFILE),
                           arms=list(arms or []), queries={"file": str(queries_file)}, seed=seed, max_tokens=300)


def _server(rate, seed, **kw):
    mut = manipulable_model(_labels(), rate=rate, seed=seed)
    judge = profile_judge(WEIGHTS, _featurize, seed=seed)
    return LoopbackServer(script=lambda body: mut(body) or judge(body), seed=seed, **kw)


def test_default_arms_are_the_profiles_top_and_bottom_attributes(store):
    _save_known_profile(store)
    profile = store.profiles(dataset="profiles-src")[0]
    arms = experiment.default_arms(profile, k=3)
    assert [a.name for a in arms] == ["control", "liked", "disliked"]
    assert arms[1].show == ("well_formatted", "supporting_materials", "step_by_step")
    assert arms[2].show == ("admits_limits", "informal", "interactive")
    assert experiment.Arm.parse("terse=-lengthy,+clear").changes == [("clear", 1), ("lengthy", -1)]
    with pytest.raises(experiment.ExperimentError):
        experiment.Arm.parse("bad=+no_such_attribute")


def test_the_system_prompt_lists_what_to_show_and_avoid_and_the_scripted_model_reads_it():
    arm = experiment.Arm("x", ("well_formatted",), ("lengthy",))
    text = experiment.system_prompt(arm)
    assert "show these qualities:\n- well formatted:" in text and "avoid these qualities:\n- lengthy: A long" in text
    script = manipulable_model(_labels(), rate=1.0, base_rate=0.0)
    body = {"max_tokens": 300, "messages": [{"role": "system", "content": text}, {"role": "user", "content": "Why?"}]}
    answer = script(body)
    assert answer.startswith("## Answer") and len(answer.split()) < 40  # formatted, and short


def test_measured_shift_falls_in_the_predictive_interval_over_a_grid(tmp_path):
    """The issue's validation: over a grid of settings (success rate x seed), the measured shift of
    each manipulated arm lies in the predictive interval of the predicted shift in >= 90% of cases."""
    checks, shifts = [], {}
    for rate in (0.4, 0.9):
        for seed in range(5):
            with Store(tmp_path / f"grid-{rate}-{seed}.db") as store, _server(rate, seed) as server:
                _save_known_profile(store)
                exp_id = experiment.create(store, _spec(server, _queries(tmp_path, 40, seed), seed=seed))
                out = experiment.run(store, exp_id)
                assert out.status == "done", out.message
                result = store.experiment(exp_id)["result"]
                inside = experiment.within(result)
                assert set(inside) == {"liked", "disliked"}
                checks += inside.values()
                arms = {a["arm"]: a for a in result["arms"]}
                shifts[(rate, seed)] = (arms["liked"]["shift"]["mean"], arms["disliked"]["shift"]["mean"])
                for a in ("liked", "disliked"):
                    succ = arms[a]["success"]
                    assert set(succ) == set(arms[a]["show"]) and all(0 <= s["rate"] <= 1 for s in succ.values()
                                                                      if s["rate"] is not None)
                    assert arms[a]["simulated"] is not None
    assert sum(checks) / len(checks) >= 0.9, (sum(checks), len(checks))
    # the paper's direction: showing what the judge likes raises the win rate, what it dislikes lowers it
    # (on average over seeds: one seed's 40 queries can go either way at a low success rate)
    print(shifts, sum(checks), len(checks))
    for rate in (0.4, 0.9):
        assert sum(shifts[(rate, s)][0] for s in range(5)) > 0 > sum(shifts[(rate, s)][1] for s in range(5)), shifts
    # a higher success rate moves the win rate further
    assert sum(shifts[(0.9, s)][0] - shifts[(0.4, s)][0] for s in range(5)) > 0, shifts


def test_a_budget_pauses_the_job_a_resume_finishes_it_and_nothing_is_paid_twice(tmp_path):
    store = Store(tmp_path / "store.db")
    _save_known_profile(store)
    with _server(0.8, 0, latency=0.01) as server:
        exp_id = experiment.create(store, _spec(server, _queries(tmp_path, 12)))
        est = experiment.estimate(store, exp_id)
        assert est.cached == 0 and est.by_stage["generate"]["requests"] == 36 and \
            est.by_stage["judge"]["requests"] == 72 and est.cost > 0 and est.price_known
        job = jobs.submit(store, "experiment", {"experiment": exp_id}, budget=est.by_stage["generate"]["cost"] / 3)
        assert jobs.claim(store, job.id)
        paused = jobs.run(store, job.id)
        assert paused.status == "paused", paused.message
        assert "budget" in paused.message
        assert store.experiment(exp_id)["status"] == "paused"
        jobs.submit(store, "experiment", {"experiment": exp_id}, budget=100.0)  # resume with room
        assert jobs.claim(store, job.id)
        final = jobs.run(store, job.id)
        assert final.status == "done", final.message
        sent = server.stats.completions
        # every paid request is stored once; nothing was sent twice
        paid = store.scalar("SELECT COUNT(*) FROM annotations WHERE status = 'ok' AND reused = 0")
        assert paid == 36 + 72
        assert sent == paid
        # a rerun sends nothing
        jobs.submit(store, "experiment", {"experiment": exp_id})
        assert jobs.claim(store, job.id)
        assert jobs.run(store, job.id).status == "done"
        assert server.stats.completions == sent
        assert experiment.estimate(store, exp_id).requests == 0
    rec = store.experiment(exp_id)
    assert rec["status"] == "done" and rec["provenance"]["prompt_version"] == experiment.prompts()["version"]
    assert rec["provenance"]["seed"] == 0 and rec["provenance"]["feature_source"] == "heuristic:v1"
    csv = experiment.export(store, exp_id, "csv")
    rows = list(csvlib.DictReader(io.StringIO(csv)))
    assert [r["arm"] for r in rows] == ["control", "liked", "disliked"] and rows[1]["predicted_shift_pred_lo"]
    assert json.loads(experiment.export(store, exp_id, "json"))["result"]["arms"][0]["arm"] == "control"
    store.close()


def test_a_profile_on_features_that_cannot_be_reproduced_is_refused(store, tmp_path):
    keys = catalogue.attribute_keys()
    store.save_profile({**PROFILE, "feature_source": "demo", "method": "truth", "attributes": keys,
                        "mean": [0.1] * len(keys), "imported": 0, "provenance": {}})
    spec = experiment.Spec(name="x", model={"model": "m"}, judge={"model": "j"}, judge_name="j",
                           profile=dict(PROFILE), arms=[], queries={"file": str(_queries(tmp_path, 2))})
    with pytest.raises(experiment.ExperimentError, match="cannot be measured on new responses"):
        experiment.create(store, spec)


def test_the_cli_runs_lists_shows_and_exports_an_experiment(tmp_path, capsys):
    from core import cli

    db = tmp_path / "cli.db"
    with Store(db) as store:
        _save_known_profile(store)
    with _server(0.9, 1) as server:
        args = ["--store", str(db), "experiment", "run", "--queries-file", str(_queries(tmp_path, 6)),
                "--profile-dataset", "profiles-src", "--judge", "known-judge", "--model", "mut-1",
                "--base-url", server.url, "--judge-model", "judge-1", "--judge-base-url", server.url,
                "--arm", "fancy=+well_formatted,+supporting_materials", "--arm", "plain=-well_formatted",
                "--max-tokens", "300"]
        assert cli.main(args + ["--estimate-only"]) == 0
        out = capsys.readouterr().out
        assert "experiment 1 created: arms control (plain); fancy (+well_formatted, +supporting_materials); " \
               "plain (-well_formatted)" in out and "54 requests to send" in out
        assert cli.main(["--store", str(db), "experiment", "resume", "1"]) == 0
        out = capsys.readouterr().out
        assert "job 1 done" in out and "fancy" in out and "?experiment=1" in out
    assert cli.main(["--store", str(db), "experiments"]) == 0
    assert "done" in capsys.readouterr().out
    assert cli.main(["--store", str(db), "experiment", "show", "1"]) == 0
    assert "show well_formatted: success" in capsys.readouterr().out
    out_csv = tmp_path / "x.csv"
    assert cli.main(["--store", str(db), "experiment", "export", "1", "--format", "csv", "--what", "attributes",
                     "--output", str(out_csv)]) == 0
    rows = list(csvlib.DictReader(io.StringIO(out_csv.read_text())))
    assert {(r["arm"], r["attribute"], r["direction"]) for r in rows} == {
        ("fancy", "well_formatted", "show"), ("fancy", "supporting_materials", "show"), ("plain", "well_formatted", "avoid")}


def test_queries_from_a_stored_dataset_against_a_baseline_endpoint(store, tmp_path):
    from core.records import Dataset, ImportBatch, Sample

    _save_known_profile(store)
    names = [("gpt", "other") if i % 2 else ("other", "gpt") for i in range(6)]
    store.write_batch(ImportBatch(Dataset("arena-mini"), [
        Sample("arena-mini", f"Tell me about thing {i}.", f"{a} answer {i}.", f"{b} answer {i}.", model_a=a, model_b=b)
        for i, (a, b) in enumerate(names)]))
    # the stored responses of a named model
    got = experiment.read_queries(store, {"dataset": "arena-mini", "baseline_model": "gpt"})
    assert [q["baseline"] for q in got] == [f"gpt answer {i}." for i in range(6)]
    with _server(0.9, 3) as server:
        spec = _spec(server, "unused", name="endpoint baseline")
        spec.queries = {"dataset": "arena-mini", "limit": 4}
        spec.baseline = _settings(server, "base-1")
        exp_id = experiment.create(store, spec)
        est = experiment.estimate(store, exp_id)
        assert est.by_stage["baseline"]["requests"] == 4 and est.by_stage["generate"]["requests"] == 12
        assert experiment.run(store, exp_id).status == "done"
    pairs = store.samples_for(store.experiment(exp_id)["dataset"])
    assert len(pairs) == 12
    meta = store.pair_meta(store.experiment(exp_id)["dataset"])
    assert {m["model_b"] for m in meta.values()} == {"base-1 [baseline]"}
    assert {m["model_a"] for m in meta.values()} == {"mut-1 [control]", "mut-1 [liked]", "mut-1 [disliked]"}
    # the baseline answers are the endpoint's, not the stored ones
    assert not any(p["response_b"].startswith(("gpt answer", "other answer")) for p in pairs)


def test_a_killed_worker_resumes_and_no_stored_answer_is_sent_again(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    db = tmp_path / "kill.db"
    with Store(db) as store:
        _save_known_profile(store)
    with _server(0.8, 4) as server:
        server.hold(after=24)  # twelve answers stored and more, then the run waits on the server: the kill finds
        # it mid-way (it was 0.15 s answers until the kill, ~2 s of this test's wall)
        args = [sys.executable, "-m", "core", "--store", str(db), "experiment"]
        run = ["run", "--queries-file", str(_queries(tmp_path, 16)), "--profile-dataset", "profiles-src",
               "--judge", "known-judge", "--model", "mut-1", "--base-url", server.url, "--judge-model", "judge-1",
               "--judge-base-url", server.url, "--concurrency", "4", "--max-tokens", "300"]
        proc = subprocess.Popen(args + run, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 90
        with Store(db) as watch:
            while time.time() < deadline and ((watch.scalar(
                    "SELECT COUNT(*) FROM annotations WHERE status = 'ok'") or 0) < 12 or not server.held):
                time.sleep(0.05)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
            server.release()
            stored = {json.loads(r["params"])["messages_sha"] for r in
                      watch.rows("SELECT params FROM annotations WHERE status = 'ok'")}
        assert len(stored) >= 12
        seen = len(server.requests)
        res = subprocess.run(args + ["resume", "1"], cwd=root, capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
        from core.paidwork import messages_sha

        resent = {messages_sha(b["messages"]) for b in server.requests[seen:]}
    assert not (stored & resent), "an answer already stored was paid for again"
    assert "job 1 done" in res.stdout
    with Store(db) as store:
        assert store.experiment(1)["status"] == "done" and len(store.samples_for("experiment-1")) == 48
