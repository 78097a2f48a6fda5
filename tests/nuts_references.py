"""The NUTS reference posteriors the fast sampler is checked against (``tests/test_fit.py``), stored.

A reference posterior is computed once, by long NUTS runs whose diagnostics are asserted, and stored; samplers are
then checked against the stored numbers (the posteriordb practice). This module owns the problems (their data,
rebuilt from fixed seeds), the NUTS settings of each reference, and the generator of
``tests/fixtures/nuts_references.json``::

    .venv/bin/python -m tests.nuts_references            # every reference
    .venv/bin/python -m tests.nuts_references n400 n120  # only these (the others are kept as stored)

It runs ``fit.fit_exact`` on each problem exactly as the tests once did on every run, asserts what they asserted
about it (no divergence, the shape of the draws, the least bulk ESS >= the problem's bar) and stores per problem:
the posterior mean and sd of every parameter (full float precision), the least bulk ESS, the largest R-hat, the
divergences, the sampler and its settings, the library versions (nutpie, pymc, pytensor, numpy), a sha256 of the
problem's data (X, y, position, prob) and the model's log density and gradient at a few fixed points (PyMC's model
from ``fit._pymc_model``, compiled by PyTensor, as ``fit_exact`` builds it). Measured: 116 CPU-s (3 min 13 s wall
at load ~5 on 2 cores; nutpie's two compiles included), 50 KB written.

The tests (``verified``) rebuild each problem's data and compare its sha256 with the stored one, and evaluate the
current model's log density and gradient at the stored points (rel 1e-10): the stored posterior is then the
current model's posterior of the current data. When either differs, the test fails, saying which and how to
regenerate. **Regenerate** when the model (``fit._pymc_model``, ``fit.exact_inputs``), its prior, a problem's data
(``core.synthetic``, the seeds here) or a reference's settings changed on purpose; the file is deterministic for
given library versions (nutpie's draws are reproducible for a seed), so a regeneration with nothing changed
rewrites it byte for byte, and a changed one's diff shows what moved. ``fit_exact`` itself stays exercised live in
the suite (``test_exact_lands_on_its_stored_reference`` samples one stored problem briefly and must land within
its own Monte-Carlo error of the stored mean; the exact-profile, fallback, dashboard and CLI tests run it too).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
from scipy import special

from core import catalogue, fit, sampler, synthetic

D = len(catalogue.attribute_keys())
PATH = Path(__file__).resolve().parent / "fixtures" / "nuts_references.json"
COMMAND = ".venv/bin/python -m tests.nuts_references"
VERSIONED = ("nutpie", "pymc", "pytensor", "numpy")

#: Warm-up draws per chain of every NUTS reference (not kept). nutpie's adaptation settles well inside it:
#: on n400, tune 1000 / 500 / 300 gave the same step size (0.149 / 0.148 / 0.149), tree size (30.9), no
#: divergence and a bulk ESS of 9,734 / 9,644 / 10,218 from the 12,000 kept draws; 500 (nutpie's default
#: is 300) keeps a margin and saves an eighth of each reference's gradient evaluations.
NUTS_TUNE = 500

#: The acceptance every NUTS reference tunes its step size to (``fit_exact``; 0.8 is the samplers' default).
#: Still exact; the Laplace prior's kink at 0 is what limits the step, and a lower target takes longer
#: steps at a lower acceptance for more ESS per gradient. Measured on the references (4 chains, tune 500):
#: 0.8 -> 0.6 doubles the step (0.148 -> 0.294 on n400) and halves the tree (30.9 -> 15.1 leapfrog steps
#: per draw) while the bulk ESS per draw falls from ~0.8 to ~0.53, so min ESS per 1000 gradients rose
#: 26.0 -> 35.4 (n400), 26.6 -> 34.8 (n400-missing), 18.6 -> 27.1 (n120), 22.9 -> 30.7 (ties with
#: position), 24.8 -> 37.1 and 28.1 -> 37.9 (soft labels), none divergent; 0.5 gained no more (33.4 on
#: n400, a third of its proposals rejected). So each reference draws more for less: 5000 draws per chain
#: at 0.6 cost ~25% fewer gradients than 3000 at 0.8 and give more ESS, which each reference asserts.
NUTS_ACCEPT = 0.6

# Three binary problems like real ones: n = 400 (a scenario group), n = 120 (a small query case),
# and n = 400 with 15% of the labels missing (ties), each with its NUTS draws per chain and the least bulk
# ESS (per weight, 4 chains) its reference must reach, asserted. Both samplers run long enough that the
# Monte-Carlo error of the comparison is well inside the bar (0.01 absolute on a mean, 10% relative on an
# sd), so the test is not flaky; seeds are fixed. The fast sampler's 4 x 10000 draws give an ESS >= 15,800;
# with NUTS's >= 9,000 and posterior sds <= 0.18 on the n = 400 problems, the standard error of a mean
# difference is <= 0.0024 (the bar is > 4.2 of them on the widest weight) and of an sd ratio <= 0.009 (the
# bar is > 10 of them; the fast sampler's own sd gap was <= 0.031). n = 120 (sds up to 0.23) asks NUTS for
# >= 18,000: se <= 0.0021. Measured (target_accept 0.6; the closed-form model of fit._pymc_model):
# min ESS 10,810 (n400), 10,171 (n400-missing) from 5000 draws per chain, 20,161 (n120) from 11,000
# (10,689 / 10,543 / 20,091 with pm.Bernoulli: the same sampler on the same density, another rounding).
# Gaps measured: means 0.0027 / 0.0037 / 0.0045, sds 3.8% / 3.4% / 2.9%.
#: name -> (rows, share of labels missing, NUTS draws per chain, least bulk ESS asserted)
BINARY = {"n400": (400, 0.0, 5000, 9000), "n120": (120, 0.0, 11000, 18000), "n400-missing": (400, 0.15, 5000, 9000)}


def sparse_weights(rng: np.random.Generator) -> np.ndarray:
    """Realistic weights: most small, a few clearly positive or negative (like the paper's)."""
    w = rng.laplace(0.0, 0.05, D)
    strong = rng.random(D) < 0.2
    return np.where(strong, rng.normal(0.0, 0.4, D), w)


def soft_problem(seed: int, n: int = 400):
    """A judge that reports its own P(A) (the true model's, blurred) and whose verdict is a draw from it."""
    rng = np.random.default_rng(seed)
    X = synthetic.simulate_features(n, rng)
    w = sparse_weights(rng)
    p = special.expit(X @ w + rng.normal(0.0, 0.5, n))
    y = (rng.random(n) < p).astype(float)
    return rng, X, w, p, y


def _binary_data(name: str) -> dict[str, Any]:
    n, missing, _, _ = BINARY[name]
    rng = np.random.default_rng(sum(map(ord, name)))
    X = synthetic.simulate_features(n, rng)
    y = synthetic.simulate_labels(X, sparse_weights(rng), rng).astype(float)
    y[rng.random(n) < missing] = np.nan
    return dict(X=X, y=y)


def _ties_data() -> dict[str, Any]:
    """Davidson's tie model with the position term: a judge with a position bias that ties now and then."""
    rng = np.random.default_rng(3)
    n = 400
    X = synthetic.simulate_features(n, rng)
    w = sparse_weights(rng)
    pos = np.where(rng.random(n) < 0.5, 1.0, -1.0)
    y = synthetic.simulate_outcomes(X, w, rng, position=pos, bias=0.4, theta=np.log(0.6))[:, 0]
    return dict(X=X, y=y, position=pos)


def _soft_data(model: str, soft: bool = True) -> dict[str, Any]:
    """``soft_problem(21)``, binary or with ties and the position term; with ``soft``, the judge's P(A) too."""
    rng, X, w, p, y = soft_problem(21)
    data = dict(X=X, y=y)
    if model != "binary":
        pos = np.where(rng.random(len(y)) < 0.5, 1.0, -1.0)
        y[rng.random(len(y)) < 0.2] = 0.5  # ties stay ties
        data["position"] = pos
    if soft:
        data["prob"] = p
    return data


@dataclass(frozen=True)
class Problem:
    """One reference: its data (rebuilt from fixed seeds), the model options and NUTS settings of its ``fit_exact``
    run, and the least bulk ESS its reference must reach (None: none asserted)."""

    name: str
    data: Callable[[], dict[str, Any]]
    draws: int
    ess_bar: float | None
    model: dict[str, Any] = field(default_factory=dict)
    tune: int = NUTS_TUNE
    chains: int = 4
    seed: int = 1

    def settings(self) -> dict[str, Any]:
        """``fit_exact``'s keyword arguments (besides the data) for this reference."""
        return dict(draws=self.draws, tune=self.tune, chains=self.chains, seed=self.seed, target_accept=NUTS_ACCEPT,
                    prior_scale=sampler.DEFAULT_PRIOR_SCALE, **self.model)

    def dimension(self) -> int:
        return D + (1 if self.model.get("intercept") else 0) + (1 if self.model.get("ties") == "davidson" else 0)


TIES = dict(intercept=True, ties="davidson")
PROBLEMS: dict[str, Problem] = {
    **{name: Problem(name, lambda name=name: _binary_data(name), spec[2], spec[3]) for name, spec in BINARY.items()},
    # 8,765 measured (9,336 with pm.Categorical, 7,945 from the 3000 draws at target_accept 0.8 the test used
    # before): sds <= 0.18, so NUTS's share of the se of a mean difference is <= 0.0020 and the bar 0.015 is > 7
    # of them; gaps measured 0.0038 (means) and 4.0% (sds)
    "ties+position": Problem("ties+position", _ties_data, 5000, 8000, TIES),
    # 11,346 (binary) and 10,867 (ties+position) measured (11,171 and 11,449 before the closed-form model, 9,169
    # and 10,447 from the 3000 draws at target_accept 0.8 before that): sds <= 0.16, NUTS's share of the se of a
    # mean difference <= 0.0017; gaps measured 0.0037 / 0.0029 (means), 3.5% / 4.0% (sds)
    "soft-binary": Problem("soft-binary", lambda: _soft_data("binary"), 5000, 9000),
    "soft-ties+position": Problem("soft-ties+position", lambda: _soft_data("ties+position"), 5000, 9000, TIES),
    # the same verdicts without the probabilities: the soft posterior must be another posterior than this one
    "hard-binary": Problem("hard-binary", lambda: _soft_data("binary", soft=False), 1000, None, tune=500, chains=2),
    "hard-ties+position": Problem("hard-ties+position", lambda: _soft_data("ties+position", soft=False), 1000, None,
                                  TIES, tune=500, chains=2),
}


def data_sha256(data: dict[str, Any]) -> str:
    """A hash of a problem's data: X, y, position and prob, each as little-endian float64 with its shape
    (NaN included bit for bit), or absent."""
    h = hashlib.sha256()
    for key in ("X", "y", "position", "prob"):
        value = data.get(key)
        h.update(key.encode())
        if value is None:
            h.update(b"none")
        else:
            a = np.ascontiguousarray(value, dtype="<f8")
            h.update(repr(a.shape).encode())
            h.update(a.tobytes())
    return h.hexdigest()


def logp_and_gradient(model):
    """One compiled function: point -> [log density, its gradient per free variable]."""
    import pytensor

    logp = model.logp()
    return model.compile_fn([logp, *pytensor.grad(logp, model.value_vars)])


def model_of(problem: Problem, data: dict[str, Any]):
    """PyMC's model of a problem as ``fit_exact`` builds it for NUTS."""
    s = problem.settings()
    Xd, yv, tie_model = fit.exact_inputs(data["X"], data["y"], intercept=s.get("intercept", False),
                                         position=data.get("position"), ties=s.get("ties", "drop"),
                                         prob=data.get("prob"))
    return fit._pymc_model(Xd, yv, s["prior_scale"], s.get("intercept", False), tie_model)


def _points(problem: Problem) -> list[dict[str, list[float] | float]]:
    """Fixed points to evaluate the model at: typical to wide weights (and log nu from -1 to 2)."""
    rng = np.random.default_rng(sum(map(ord, problem.name)))
    points = []
    for scale, theta in ((0.1, 0.0), (0.5, -1.0), (2.0, 2.0)):
        point: dict[str, Any] = {"w": rng.normal(0.0, scale, D).tolist()}
        if problem.model.get("intercept"):
            point["intercept"] = float(rng.normal(0.0, scale))
        if problem.model.get("ties") == "davidson":
            point["theta"] = theta
        points.append(point)
    return points


def density(problem: Problem, data: dict[str, Any], points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The model's log density and gradient (per free variable) at each point."""
    model = model_of(problem, data)
    names = [v.name for v in model.value_vars]
    f = logp_and_gradient(model)
    out = []
    for point in points:
        lp, *grad = f({k: np.asarray(v, dtype=float) for k, v in point.items()})
        out.append(dict(point=point, logp=float(lp), grad={k: np.asarray(g, dtype=float).tolist()
                                                           for k, g in zip(names, grad)}))
    return out


def compute(problem: Problem) -> dict[str, Any]:
    """Run one reference's NUTS, assert its diagnostics, and return what is stored of it."""
    data = problem.data()
    s = problem.settings()
    post = fit.fit_exact(data["X"], data["y"], position=data.get("position"), prob=data.get("prob"), **s)
    rhat, ess = sampler.rhat_ess(post.by_chain())
    assert post.draws.shape == (problem.chains * problem.draws, problem.dimension()), post.draws.shape
    assert post.diagnostics["divergences"] == 0, (problem.name, post.diagnostics)
    if problem.ess_bar is not None:  # what the tests asserted about the long references when they ran them
        assert ess.min() >= problem.ess_bar, (problem.name, float(ess.min()), problem.ess_bar)
    versions = fit.library_versions()
    return dict(
        data_sha256=data_sha256(data), settings=s, sampler=post.sampler,
        versions={k: versions.get(k) for k in VERSIONED},
        parameters=fit._attribute_names(problem.dimension(), bool(s.get("intercept")), None,
                                        s.get("ties") == "davidson"),
        draws_shape=list(post.draws.shape), mean=post.mean.tolist(), sd=post.sd.tolist(),
        min_bulk_ess=float(ess.min()), max_rhat=float(rhat.max()),
        divergences=post.diagnostics["divergences"],
        step_size=post.diagnostics.get("step_size"), mean_tree_size=post.diagnostics.get("mean_tree_size"),
        density=density(problem, data, _points(problem)),
    )


def _dump(value: Any, indent: int = 0) -> str:
    """JSON with objects on their own lines and lists on one line (diffs show which number moved)."""
    if isinstance(value, dict) and any(isinstance(v, (dict, list)) for v in value.values()):
        pad = " " * (indent + 1)
        items = [f"{pad}{json.dumps(k)}: {_dump(v, indent + 1)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + " " * indent + "}"
    if isinstance(value, list) and any(isinstance(v, dict) for v in value):
        pad = " " * (indent + 1)
        return "[\n" + ",\n".join(pad + _dump(v, indent + 1) for v in value) + "\n" + " " * indent + "]"
    return json.dumps(value, allow_nan=False)


def load() -> dict[str, Any]:
    """The stored references by problem name ({} when the file is absent)."""
    if not PATH.exists():
        return {}
    return json.loads(PATH.read_text())["problems"]


def write(problems: dict[str, Any]) -> None:
    doc = {"about": f"NUTS reference posteriors of tests/test_fit.py, written by `{COMMAND}` "
                    "(tests/nuts_references.py says when to regenerate)",
           "problems": {name: problems[name] for name in PROBLEMS if name in problems}}
    PATH.parent.mkdir(parents=True, exist_ok=True)
    PATH.write_text(_dump(doc) + "\n")


class StaleReference(AssertionError):
    """A stored reference that is not the current model's posterior of the current data."""


def _stale(name: str, what: str) -> StaleReference:
    return StaleReference(f"stored NUTS reference {name!r} ({PATH.relative_to(PATH.parents[2])}): {what}. If that "
                          f"change is intended, regenerate it: `{COMMAND} {name}` (all of them: `{COMMAND}`, "
                          f"~2 CPU minutes)")


def verified(name: str, data: dict[str, Any] | None = None) -> dict[str, Any]:
    """The stored reference of a problem, once it is shown to be the current model's posterior of the current data:
    same settings, same data (sha256) and the same log density and gradient at the stored points (rel 1e-10).
    Raises ``StaleReference`` saying which differs and how to regenerate."""
    problem = PROBLEMS[name]
    stored = load().get(name)
    if stored is None:
        raise _stale(name, "not stored")
    if stored["settings"] != problem.settings():
        raise _stale(name, f"stored for the settings {stored['settings']}, the problem's are {problem.settings()}")
    data = problem.data() if data is None else data
    if data_sha256(data) != stored["data_sha256"]:
        raise _stale(name, "the problem's data changed (its sha256 differs from the stored one's)")
    points = [entry["point"] for entry in stored["density"]]
    for entry, now in zip(stored["density"], density(problem, data, points)):
        if set(now["grad"]) != set(entry["grad"]):
            raise _stale(name, f"the model's free variables changed ({sorted(entry['grad'])} -> {sorted(now['grad'])})")
        same = np.isclose(now["logp"], entry["logp"], rtol=1e-10, atol=0.0) and all(
            np.allclose(now["grad"][k], entry["grad"][k], rtol=1e-10, atol=1e-10) for k in entry["grad"])
        if not same:
            raise _stale(name, f"the model's log density or gradient changed (at a stored point: log density "
                               f"{entry['logp']!r} stored, {now['logp']!r} now)")
    return stored


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.nuts_references", description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"problems to regenerate (default: all): "
                                                                 f"{', '.join(PROBLEMS)}")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in PROBLEMS]
    if unknown:
        parser.error(f"unknown problem(s) {', '.join(unknown)}; known: {', '.join(PROBLEMS)}")
    stored = load()
    t0, c0 = time.perf_counter(), time.process_time()
    for name in args.names or list(PROBLEMS):
        t, c = time.perf_counter(), time.process_time()
        stored[name] = compute(PROBLEMS[name])
        print(f"{name}: min bulk ESS {stored[name]['min_bulk_ess']:.0f}, divergences {stored[name]['divergences']}, "
              f"{time.perf_counter() - t:.1f} s, {time.process_time() - c:.1f} CPU-s", flush=True)
        write(stored)  # after each: an interrupted run keeps what it finished
    print(f"wrote {PATH} ({PATH.stat().st_size / 1024:.0f} KB) in {time.perf_counter() - t0:.1f} s, "
          f"{time.process_time() - c0:.1f} CPU-s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
