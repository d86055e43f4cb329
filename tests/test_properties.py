"""Property-based tests (hypothesis): the oracle, the estimators, the data loaders, the
hyperparameter files and the model-file check.  Few examples each, derandomized, no example
database (fast and reproducible)."""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zol2l.data import DataFormatError, load_dataset_uint8
from zol2l.estimators import coordinatewise, gaussian
from zol2l.experiments.defaults import read_hparams
from zol2l.modelfiles import UnsafeModelFileError, detect_format
from zol2l.oracle import BudgetExhausted, NonFiniteValueError, Oracle

FAST = settings(max_examples=25, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow])
DTYPES = st.sampled_from([torch.float32, torch.float64])


def _quadratic(points: torch.Tensor) -> torch.Tensor:
    return 0.5 * points.square().sum(-1)


# ----------------------------------------------------------------------------- oracle
@FAST
@given(mode=st.sampled_from(["problems", "batch", "point"]), nprob=st.integers(1, 3),
       n=st.integers(1, 5), dim=st.integers(1, 4), dtype=DTYPES,
       budget=st.none() | st.integers(1, 20), calls=st.integers(1, 6))
def test_oracle_shapes_dtypes_and_budget(mode: str, nprob: int, n: int, dim: int,
                                         dtype: torch.dtype, budget: int | None,
                                         calls: int) -> None:
    evaluated: list[int] = []

    def fun(p: torch.Tensor) -> torch.Tensor:
        evaluated.append(1)
        return _quadratic(p)

    oracle = Oracle(fun, dim, mode=mode, budget=budget, dtype=dtype)  # type: ignore[arg-type]
    points = torch.randn(nprob, n, dim, generator=torch.Generator().manual_seed(n), dtype=dtype)
    for k in range(calls):
        before = (oracle.queries, len(evaluated))
        if budget is not None and oracle.queries + n > budget:
            with pytest.raises(BudgetExhausted):
                oracle(points)
            assert (oracle.queries, len(evaluated)) == before  # nothing was evaluated
            break
        out = oracle(points)
        assert out.shape == (nprob, n) and out.dtype == dtype
        torch.testing.assert_close(out, _quadratic(points))
        assert oracle.queries == (k + 1) * n
        assert budget is None or oracle.queries <= budget


@FAST
@given(nprob=st.integers(1, 3), n=st.integers(1, 5),
       bad=st.lists(st.sampled_from([math.nan, math.inf, -math.inf]), max_size=4),
       seed=st.integers(0, 1000))
def test_oracle_nonfinite_values(nprob: int, n: int, bad: list[float], seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    values = torch.rand(nprob, n, generator=gen, dtype=torch.float64)
    where = torch.randperm(nprob * n, generator=gen)[: len(bad)]
    values.view(-1)[where] = torch.tensor(bad[: len(where)], dtype=torch.float64)
    points = torch.zeros(nprob, n, 2, dtype=torch.float64)
    strict = Oracle(lambda p: values.clone(), 2, mode="problems")
    lenient = Oracle(lambda p: values.clone(), 2, mode="problems", nonfinite="inf")
    finite = torch.isfinite(values)
    if bool(finite.all()):
        assert torch.equal(strict(points), values)
    else:
        with pytest.raises(NonFiniteValueError, match="iteration 0"):
            strict(points)
    out = lenient(points)
    assert torch.equal(out[finite], values[finite]) and bool((out[~finite] == math.inf).all())


@FAST
@given(value=st.one_of(st.text(max_size=5), st.booleans(), st.binary(max_size=3)))
def test_oracle_rejects_non_numbers(value: object) -> None:
    oracle = Oracle(lambda x: value, 2, mode="point")
    with pytest.raises(TypeError, match="must return a number"):
        oracle(torch.zeros(1, 1, 2, dtype=torch.float64))


# ----------------------------------------------------------------------------- estimators
@FAST
@given(nprob=st.integers(1, 3), dim=st.integers(1, 6), q=st.integers(1, 8),
       antithetic=st.booleans(), dtype=DTYPES)
def test_estimator_query_counts(nprob: int, dim: int, q: int, antithetic: bool,
                                dtype: torch.dtype) -> None:
    oracle = Oracle(_quadratic, dim, mode="problems", dtype=dtype)
    x = torch.ones(nprob, dim, dtype=dtype)
    est = gaussian(oracle, x, q, 1e-3, torch.Generator().manual_seed(q), antithetic=antithetic)
    assert est.queries == oracle.queries == (2 * q + 1 if antithetic else q + 1)
    assert oracle.calls == 1 and est.grad.shape == (nprob, dim) and est.grad.dtype == dtype
    torch.testing.assert_close(est.fx, _quadratic(x))
    cw = coordinatewise(Oracle(_quadratic, dim, mode="problems", dtype=dtype), x, 1e-3)
    assert cw.queries == 2 * dim + 1
    torch.testing.assert_close(cw.grad, x, rtol=1e-3, atol=1e-3)  # exact up to rounding


@FAST
@given(dim=st.integers(1, 8), q=st.integers(1, 6), antithetic=st.booleans(),
       seed=st.integers(0, 2**31 - 1))
def test_gaussian_estimator_is_unbiased_on_random_quadratics(dim: int, q: int,
                                                             antithetic: bool,
                                                             seed: int) -> None:
    """f(x) = 1/2 x^T A x + b^T x: E[estimate] = A x + b exactly (odd Gaussian moments
    vanish), and each coordinate of one direction's term (g.z) z has variance
    g_i^2 + |g|^2; the mean over R rows x q directions lies within 6 standard errors."""
    gen = torch.Generator().manual_seed(seed)
    m = torch.randn(dim, dim, generator=gen, dtype=torch.float64)
    a = m @ m.T / dim + torch.eye(dim, dtype=torch.float64)
    b = torch.randn(dim, generator=gen, dtype=torch.float64)
    x0 = torch.randn(dim, generator=gen, dtype=torch.float64)

    def f(p: torch.Tensor) -> torch.Tensor:
        return 0.5 * torch.einsum("bni,ij,bnj->bn", p, a, p) + p @ b

    rows = 4000
    oracle = Oracle(f, dim, mode="problems")
    est = gaussian(oracle, x0.expand(rows, dim).clone(), q, 1e-5, gen, antithetic=antithetic)
    g = a @ x0 + b
    mean = est.grad.mean(dim=0)
    stderr = ((g.square() + g.square().sum()) / (rows * q)).sqrt()
    assert bool(((mean - g).abs() <= 6 * stderr + 1e-6).all()), (mean, g, stderr)
    assert oracle.queries == (2 * q + 1 if antithetic else q + 1)


# ----------------------------------------------------------------------------- data loaders
GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
NOISE = st.one_of(st.binary(max_size=400), st.binary(max_size=200).map(lambda b: b"PK" + b),
                  st.binary(max_size=200).map(lambda b: b"\x80\x02" + b),
                  st.binary(max_size=200).map(lambda b: b"\x93NUMPY" + b))


def _load_from(files: dict[str, bytes], name: str) -> None:
    with tempfile.TemporaryDirectory() as d:
        for rel, data in files.items():
            path = Path(d) / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        try:
            load_dataset_uint8(name, d, "test")  # type: ignore[arg-type]
        except DataFormatError:
            pass  # the loader's own error is the only acceptable failure


@FAST
@given(data=NOISE)
def test_random_npz_bytes_raise_only_the_loader_error(data: bytes) -> None:
    _load_from({"mnist.npz": data}, "mnist")
    _load_from({"cifar10.npz": data}, "cifar10")


ARRAYS = st.builds(
    lambda shape, dtype, fill: np.full(shape, fill).astype(dtype),
    st.lists(st.integers(0, 4), max_size=4).map(tuple) | st.sampled_from([(3, 28, 28),
                                                                          (2, 32, 32, 3)]),
    st.sampled_from(["uint8", "int64", "float32", "bool", "<U2"]), st.integers(-3, 300))


@FAST
@given(x=ARRAYS, y=ARRAYS, keys=st.sampled_from([("x_test", "y_test"), ("x_test", "y"),
                                                 ("images", "labels")]))
def test_npz_with_arbitrary_arrays_loads_or_raises_the_loader_error(
        x: np.ndarray, y: np.ndarray, keys: tuple[str, str]) -> None:
    for name in ("mnist", "cifar10"):
        with tempfile.TemporaryDirectory() as d:
            np.savez(Path(d) / f"{name}.npz", **{keys[0]: x, keys[1]: y})
            try:
                images, labels = load_dataset_uint8(name, d, "test")  # type: ignore[arg-type]
            except DataFormatError:
                continue
            assert images.dtype == np.uint8 and labels.dtype == np.int64
            assert len(images) == len(labels) and ((labels >= 0) & (labels <= 9)).all()


@FAST
@given(images=st.one_of(NOISE, st.binary(max_size=300).map(
           lambda b: b"\x00\x00\x08\x03" + b)),
       labels=st.one_of(NOISE, st.binary(max_size=50).map(lambda b: b"\x00\x00\x08\x01" + b)),
       gz=st.booleans())
def test_random_idx_bytes_raise_only_the_loader_error(images: bytes, labels: bytes,
                                                      gz: bool) -> None:
    suffix, wrap = (".gz", lambda b: GZIP_HEADER + b) if gz else ("", lambda b: b)
    _load_from({f"t10k-images-idx3-ubyte{suffix}": wrap(images),
                f"t10k-labels-idx1-ubyte{suffix}": wrap(labels)}, "mnist")


@FAST
@given(data=NOISE)
def test_random_cifar_batch_bytes_raise_only_the_loader_error(data: bytes) -> None:
    _load_from({"cifar-10-batches-py/test_batch": data}, "cifar10")


# ----------------------------------------------------------------------------- files
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
                    | st.text(max_size=5),
                    lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=8)


@FAST
@given(payload=JSON | st.fixed_dictionaries({"optimizers": JSON}) | st.fixed_dictionaries(
    {"optimizers": st.dictionaries(st.sampled_from(["zo-sgd", "zo-adam", "x"]),
                                   st.fixed_dictionaries({"hyperparameters": JSON}))}))
def test_hyperparameter_files_parse_or_raise_a_clear_error(payload: object) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "hp.json"
        path.write_text(json.dumps(payload))
        try:
            table = read_hparams(path)
        except ValueError as exc:
            assert str(path) in str(exc)
            return
        assert all(isinstance(v, dict) for v in table.values())


@FAST
@given(delta=st.floats(1e-3, 1e3), q=st.integers(1, 50), beta1=st.floats(0.0, 0.99))
def test_valid_hyperparameter_files_round_trip(delta: float, q: int, beta1: float) -> None:
    table = {"zo-sgd": {"delta": delta, "q": q}, "zo-adam": {"delta": delta, "beta1": beta1}}
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "hp.json"
        path.write_text(json.dumps({"optimizers": {k: {"hyperparameters": v}
                                                   for k, v in table.items()}}))
        assert read_hparams(path) == table


@FAST
@given(data=NOISE | st.binary(max_size=100).map(lambda b: b"PK\x03\x04" + b))
def test_random_model_files_are_refused_cleanly(data: bytes) -> None:
    try:
        detect_format(data, "f.pt2")
    except UnsafeModelFileError as exc:
        assert str(exc).startswith("f.pt2: detected ")


def test_the_strict_json_parser_rejects_nan(tmp_path: Path) -> None:
    from conftest import load_strict_json

    (tmp_path / "ok.json").write_text(json.dumps({"a": [1.5, None]}))
    assert load_strict_json(tmp_path / "ok.json") == {"a": [1.5, None]}
    for token in ("NaN", "Infinity", "-Infinity"):
        (tmp_path / "bad.txt").write_text(f'{{"a": {token}}}')
        with pytest.raises(ValueError, match="is not JSON"):
            load_strict_json(tmp_path / "bad.txt")
    assert np.isnan(json.loads('{"a": NaN}')["a"])  # what the default parser would accept


FLOATS = st.recursive(st.floats() | st.integers() | st.none() | st.text(max_size=3),
                      lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.text(max_size=3), inner, max_size=3), max_leaves=10)


@FAST
@given(payload=FLOATS)
def test_strict_json_writer_and_undefined_statistics(payload: object) -> None:
    from zol2l.fileio import strict_dumps, undefined_as_null

    def nonfinite(v: object) -> bool:
        if isinstance(v, float):
            return not math.isfinite(v)
        items = v.values() if isinstance(v, dict) else v if isinstance(v, list) else []
        return any(nonfinite(x) for x in items)

    if nonfinite(payload):
        with pytest.raises(ValueError, match="refusing to write non-finite numbers"):
            strict_dumps(payload)
    safe = undefined_as_null(payload)
    assert json.loads(strict_dumps(safe)) == json.loads(json.dumps(safe))
