"""Property tests of the Python API: random strings, bytes, numbers and shapes.

Each entry point (``encode``, ``decode``, ``sample``, ``molshape.score``) either returns a
correct result or raises one of molshape's documented errors (:class:`molshape.MolshapeError`,
see docs/failure-behaviour.md). Example counts are small: the suite runs on a CPU in seconds.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import molshape

FAST = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

#: expression tokens, so that some random strings parse
TOKENS = ["x", "1", "2", "3", "+", "-", "*", "/", "sin(", "exp(", "(", ")", " "]
strings = st.one_of(st.text(max_size=40), st.lists(st.sampled_from(TOKENS), max_size=12).map("".join))
floats = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=32),
                   st.sampled_from([0.0, 1e30, -1e30, 3.4e38, float("nan"), float("inf"), -float("inf")]))


@functools.lru_cache(maxsize=1)
def _model() -> molshape.Model:
    return molshape.load("expr")


@pytest.fixture
def model() -> molshape.Model:
    return _model()


def _documented(e: BaseException) -> bool:
    return isinstance(e, molshape.MolshapeError) and "\n" not in str(e) and str(e) != ""


@FAST
@given(value=st.one_of(strings, st.lists(strings, max_size=5), st.binary(max_size=20),
                       st.lists(st.one_of(strings, st.integers(), st.none()), max_size=4), st.integers()))
def test_encode(model, value) -> None:
    try:
        z = model.encode(value)
    except Exception as e:  # noqa: BLE001 - the property: only documented errors
        assert _documented(e), repr(e)
        return
    n = 1 if isinstance(value, str) else len(value)
    assert z.shape == (n, model.latent_dim) and z.dtype == torch.float32 and bool(torch.isfinite(z).all())


@FAST
@given(rows=st.integers(0, 4), cols=st.sampled_from([0, 1, 24, 25, 26]), ndim=st.sampled_from([1, 2, 3]),
       dtype=st.sampled_from([torch.float32, torch.float64, torch.float16, torch.int64, torch.bool]),
       data=st.data())
def test_decode(model, rows: int, cols: int, ndim: int, dtype: torch.dtype, data) -> None:
    shape = {1: (cols,), 2: (rows, cols), 3: (rows, 1, cols)}[ndim]
    values = data.draw(st.lists(floats, min_size=math.prod(shape), max_size=math.prod(shape)))
    z = torch.tensor(np.array(values, dtype=np.float64).reshape(shape)).to(dtype) if dtype.is_floating_point \
        else torch.zeros(shape, dtype=dtype)
    try:
        out = model.decode(z)
    except Exception as e:  # noqa: BLE001 - the property: only documented errors
        assert _documented(e), repr(e)
        finite = bool(torch.isfinite(z.double()).all()) if dtype.is_floating_point else True
        assert not (ndim == 2 and cols == model.latent_dim and dtype.is_floating_point and finite), repr(e)
        return
    assert ndim == 2 and cols == model.latent_dim and bool(torch.isfinite(z.double()).all())
    assert len(out) == rows == len(out.reasons)
    for s, why in zip(out, out.reasons):
        assert (s is None) != (why is None) and (s is None or isinstance(s, str))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.one_of(st.integers(-3, 6), st.floats(allow_nan=True), st.booleans(), st.text(max_size=3)),
       component=st.one_of(st.none(), st.integers(-2, 12)))
def test_sample(model, n, component) -> None:
    try:
        out = model.sample(n, component=component)
    except Exception as e:  # noqa: BLE001 - the property: only documented errors
        assert _documented(e), repr(e)
        return
    assert isinstance(n, int) and not isinstance(n, bool) and n >= 0 and len(out) == n


@FAST
@given(value=st.one_of(strings, st.lists(strings, min_size=1, max_size=5), st.binary(max_size=10), st.integers()),
       target=st.sampled_from(["expr", "logp", "qed", "banana"]))
def test_score(value, target: str) -> None:
    try:
        df = molshape.score(value, target=target, workers=1)
    except Exception as e:  # noqa: BLE001 - the property: only documented errors
        assert _documented(e), repr(e)
        return
    inputs = [value] if isinstance(value, str) else value
    assert list(df["input"]) == inputs and target != "banana"
    for _, row in df.iterrows():
        if row["valid"]:
            assert math.isfinite(row["score"])
        else:
            assert row["reason"]
