"""The bias card: position on JudgeBench's real verdicts in both orders, self-preference and
verbosity on a synthetic judge with known biases."""

import json

import numpy as np
import pytest

from core import bias, fit, synthetic
from core.records import Dataset, ImportBatch, Judge, Label, Sample, combine_verdicts
from core.store import Store

_DECISION = {"A>B": "A", "B>A": "B", "A=B": "tie"}
_SWAP = {"A": "B", "B": "A", "tie": "tie"}


def _judgebench(store: Store, folder) -> dict[str, str]:
    """JudgeBench's pairs and three judges' verdicts, built with core.records directly: game 1 is A
    shown first; game 2 shows B first and its decision is mapped back to A/B. Returns judge names."""
    pairs = [json.loads(line) for line in (folder / "pairs.jsonl").read_text().splitlines() if line.strip()]
    samples = {p["pair_id"]: Sample("judgebench", p["question"], p["response_A"], p["response_B"],
                                    model_a=p["response_model"], model_b=p["response_model"]) for p in pairs}
    labels = [Label(samples[p["pair_id"]].id, "gold", {"A>B": "A", "B>A": "B"}[p["label"]]) for p in pairs]
    names = {"o1-mini": "judge-o1-mini-arena-hard.jsonl", "skywork-27b": "judge-skywork-reward-gemma-2-27b.jsonl",
             "internlm2-7b": "judge-internlm2-7b-reward.jsonl"}
    for judge, file in names.items():
        for line in (folder / file).read_text().splitlines():
            r = json.loads(line)
            g1, g2 = (g.get("decision") for g in r["judgments"])
            ab = _DECISION.get(g1)
            ba = _SWAP[_DECISION[g2]] if g2 in _DECISION else None
            choice, p_a = combine_verdicts(ab, ba)
            labels.append(Label(samples[r["pair_id"]].id, judge, choice, prob_a=p_a, verdict_ab=ab, verdict_ba=ba))
    store.write_batch(ImportBatch(Dataset("judgebench", source="test"), list(samples.values()),
                                  [Judge("gold", "gold")] + [Judge(j, "llm") for j in names], labels))
    return names


def test_judgebench_position_figures_match_the_data_readme(tmp_path, shared_data):
    """The README of ../shared/data/judgebench: o1-mini's 700 games, the response shown first won 367,
    the second 289, ties 44; consistent across orders 68.6%; Skywork-27B 99.1%, internlm2-7b 100%."""
    with Store(tmp_path / "jb.db") as s:
        _judgebench(s, shared_data / "judgebench")
        card = {i.measure: i for i in bias.bias_card(s, "o1-mini", "judgebench")}
        first = card["first-slot rate (the response shown first wins)"]
        assert (first.n, round(first.value * first.n)) == (367 + 289, 367) and "44 ties" in first.note
        assert first.lo < 367 / 656 < first.hi and first.lo > 0.5  # a real first-slot bias
        same = card["same verdict in both orders (consistency)"]
        assert same.n == 350 and same.value == pytest.approx(0.686, abs=0.0005)
        # the CLI prints the same card (in-process, through main)
        from core import cli

        import contextlib
        import io

        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            assert cli.main(["--store", str(tmp_path / "jb.db"), "bias-card", "--judge", "o1-mini", "--json"]) == 0
        printed = {r["measure"]: r for r in json.loads(out.getvalue())}
        assert printed["same verdict in both orders (consistency)"]["value"] == pytest.approx(same.value)
        for judge, rate in (("skywork-27b", 0.991), ("internlm2-7b", 1.0)):
            c = {i.measure: i for i in bias.bias_card(s, judge, "judgebench")}
            assert c["same verdict in both orders (consistency)"].value == pytest.approx(rate, abs=0.0005)
        # per-order accuracy against the gold label: 70.9% A shown first, 74.6% B shown first
        rows = s.conn.execute("SELECT g.choice, l.verdict_ab, l.verdict_ba FROM labels l JOIN labels g"
                              " ON g.sample_id = l.sample_id AND g.judge = 'gold' WHERE l.judge = 'o1-mini'").fetchall()
        assert np.mean([g == ab for g, ab, _ in rows]) == pytest.approx(0.709, abs=0.0005)
        assert np.mean([g == ba for g, _, ba in rows]) == pytest.approx(0.746, abs=0.0005)


def test_self_preference_and_verbosity_net_of_content(tmp_path):
    """A synthetic judge from the 'gpt' family that prefers its own family's responses (weight 1.0) and
    longer ones (0.8) on pairs where both also differ in quality: the card finds both, with intervals
    that exclude indifference, and a judge from another family shows no self-preference."""
    rng = np.random.default_rng(2)
    n = 600
    X = synthetic.simulate_features(n, rng)
    keys = list(fit.catalogue.attribute_keys())
    w = np.zeros(len(keys))
    w[keys.index("lengthy")] = 0.8
    w[keys.index("no_severe_errors")] = 1.0
    models = np.array(["gpt-4o", "llama-3-8b", "qwen-7b"])
    ma, mb = models[rng.integers(0, 3, n)], models[rng.integers(0, 3, n)]
    own = (ma == "gpt-4o").astype(float) - (mb == "gpt-4o")
    z = X @ w + 1.0 * own
    choice = np.where(rng.random(n) < 1 / (1 + np.exp(-z)), "A", "B")
    other = np.where(rng.random(n) < 1 / (1 + np.exp(-(X @ w))), "A", "B")
    samples = [Sample("synth", f"q{i}", f"a{i}", f"b{i}", model_a=str(ma[i]), model_b=str(mb[i])) for i in range(n)]
    from core.records import Feature

    feats = [Feature(s_.id, "synthetic", k, int(X[i, j])) for i, s_ in enumerate(samples)
             for j, k in enumerate(keys)]
    labels = [Label(s_.id, "gpt-4-judge", str(c)) for s_, c in zip(samples, choice)]
    labels += [Label(s_.id, "llama-judge", str(c)) for s_, c in zip(samples, other)]
    with Store(tmp_path / "b.db") as s:
        s.write_batch(ImportBatch(Dataset("synth", source="test"), samples,
                                  [Judge("gpt-4-judge", "llm"), Judge("llama-judge", "llm")], labels, features=feats))
        fit.dissect(s, "synth", "synthetic", scopes=["all"])
        card = {i.measure.split(",")[0]: i for i in bias.bias_card(s, "gpt-4-judge", "synth")}
        net = card["own-family covariate"]
        assert net.lo > 0.5 and net.n == int((own != 0).sum())
        assert card["P(prefer the response from its own family"].lo > 0.5
        assert card["length weight"].lo > 0.5
        fair = {i.measure.split(",")[0]: i for i in bias.bias_card(s, "llama-judge", "synth")}
        assert fair["own-family covariate"].lo < 0.5 < fair["own-family covariate"].hi
    assert bias.family("Qwen1.5-72B-Chat") == "qwen" and bias.family("o1-mini") == "openai"
    assert bias.family("demo-crowd") is None and bias.family("acme-7b", {"acme": "acme"}) == "acme"


def test_families_with_puts_the_users_patterns_first_and_lets_them_win():
    """The one rule the CLI's --family and the Judges page's "extra model families" share (they once
    merged in opposite orders: on the page the built-in family won a pattern the user had remapped)."""
    fams = bias.families_with([" gpt = my-openai", "acme=acme", "gpt-4o=omni"])
    assert list(fams)[:3] == ["gpt", "acme", "gpt-4o"] and fams["gpt"] == "my-openai"
    assert list(fams)[3:] == [p for p in bias.DEFAULT_FAMILIES if p != "gpt"]
    assert bias.family("gpt-4o", fams) == "my-openai"  # first match wins: the order given
    assert bias.family("acme-7b", fams) == "acme" and bias.family("claude-3", fams) == "anthropic"
    # the built-in pattern (not just "gpt") remapped: the user's family wins over the default
    builtin = next(p for p, f in bias.DEFAULT_FAMILIES.items() if f == "openai")
    assert bias.family("chatgpt", bias.families_with([f"{builtin}=mine"])) == "mine"
    assert bias.families_with(None) == bias.families_with([]) == bias.DEFAULT_FAMILIES
    assert bias.families_with(["x=a", "x=a"])["x"] == "a"  # a repeat that agrees is harmless


@pytest.mark.parametrize("item,says", [("acme", "expected PATTERN=FAMILY"), ("=acme", "expected PATTERN=FAMILY"),
                                       ("acme=", "expected PATTERN=FAMILY"), ("([=bad", "not a regular expression")])
def test_families_with_names_the_bad_item(item, says):
    with pytest.raises(ValueError, match=r"^model family '.*': .*" + says):
        bias.families_with(["ok=fine", item])
    with pytest.raises(ValueError, match="already mapped to 'a'"):
        bias.families_with(["x=a", "x=b"])


def test_the_cli_family_option_uses_the_same_rule(tmp_path, capsys):
    from core import cli

    assert cli.main(["--store", str(tmp_path / "none.db"), "bias-card", "--judge", "j", "--family", "acme"]) == 2
    assert capsys.readouterr().err.strip() == "error: --family 'acme': expected PATTERN=FAMILY"
    assert cli.main(["--store", str(tmp_path / "none.db"), "bias-card", "--judge", "j", "--family", "([=x"]) == 2
    assert "--family '([=x': '([' is not a regular expression" in capsys.readouterr().err
