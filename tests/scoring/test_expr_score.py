"""molshape.scoring.expr_score: GVAE expression score without eval, Python precedence, worst cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from molshape.scoring import expr_score as es

X = np.linspace(-10, 10, 1000)

# string -> the same function written by hand (Python precedence, true division)
CASES = {
    "x": lambda x: x,
    "1/3+x+sin(x*x)": lambda x: 1 / 3 + x + np.sin(x * x),
    "x+x*x": lambda x: x + x * x,
    "x*x+x": lambda x: x * x + x,
    "x/3*2+1": lambda x: x / 3 * 2 + 1,
    "3/(x+1)/2": lambda x: 3 / (x + 1) / 2,
    "sin(x)*exp(x/3)+2*x": lambda x: np.sin(x) * np.exp(x / 3) + 2 * x,
    "2": lambda x: np.full_like(x, 2.0),
    "(x+1)*(x+2)/x": lambda x: (x + 1) * (x + 2) / x,
}


def reference_score(f) -> float:
    with np.errstate(all="ignore"):
        s = float(np.log(1 + np.mean(np.minimum((f(X) - (1 / 3 + X + np.sin(X * X))) ** 2, 1000))))
    return s if math.isfinite(s) else math.log(1001)


@pytest.mark.parametrize("s", list(CASES))
def test_values_and_score_match_hand_written(s):
    np.testing.assert_allclose(es.expression_values(s, X), CASES[s](X), rtol=1e-12)
    assert es.expression_score(s) == pytest.approx(reference_score(CASES[s]), abs=1e-12)


def test_target_scores_zero_and_worst_constant():
    assert es.expression_score("1/3+x+sin(x*x)") == pytest.approx(0.0, abs=1e-12)
    assert es.WORST == pytest.approx(math.log(1001))


@pytest.mark.parametrize("bad", ["x+", "", "y", "sin(x", "x**2", None])
def test_invalid_gets_worst_with_reason(bad):
    score, reason = es.score_with_reason(bad)
    assert score == es.WORST and reason


def test_overflow_is_capped_per_point_like_gvae():
    # exp(exp(exp(x))) overflows to inf for large x: those points cost 1000 each, no warning
    with np.errstate(all="raise"):
        s = es.expression_score("exp(exp(exp(x)))")
    assert math.isfinite(s) and s < es.WORST
    v = es.expression_values("exp(exp(exp(x)))")
    assert np.isinf(v).any()


def test_nan_mean_is_worst():
    # inf - inf = nan at large x: the mean is nan, so the whole expression scores worst
    assert es.expression_score("exp(exp(exp(x)))/exp(exp(exp(x)))") == es.WORST


def test_long_expressions_beyond_model_length_are_scored():
    s = "+".join(["x"] * 20)  # more than 15 rules
    assert es.expression_score(s) == pytest.approx(reference_score(lambda x: 20 * x))


def test_gvae_dataset_scores(expr_sample):
    scores = es.score_many(expr_sample[:200])
    assert scores.shape == (200,)
    assert np.isfinite(scores).all() and (scores >= 0).all() and (scores <= es.WORST).all()
    assert (scores < es.WORST).mean() > 0.5


def test_score_cli_expr():
    import json

    from click.testing import CliRunner

    from molshape.cli import main

    res = CliRunner().invoke(main, ["score", "--target", "expr", "1/3+x+sin(x*x)", "x+", "--json"],
                             catch_exceptions=False)
    assert res.exit_code == 3, res.output  # a row is invalid
    s = json.loads(res.stdout)  # --json: one document, the rows inside it
    assert (s["valid"], s["invalid"], s["best"]) == (1, 1, "1/3+x+sin(x*x)")
    assert s["rows"][1]["input"] == "x+" and s["rows"][1]["valid"] is False
    assert round(s["rows"][1]["score"], 5) == 6.90875
    res = CliRunner().invoke(main, ["score", "--target", "expr", "1/3+x+sin(x*x)", "x+"], catch_exceptions=False)
    assert "x+,False,6.90875" in res.stdout  # without --json: CSV on stdout
