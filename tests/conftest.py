"""Shared fixtures: a seeded quadratic problem family for optimizer tests."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import torch

from zol2l.experiments.options import RunOptions
from zol2l.tasks.base import Problem


class Quadratic(Problem):
    """``f(x) = 1/2 sum_i a_i x_i^2`` per row, reported loss = f (deterministic)."""

    reports_loss = True

    def __init__(self, x0: torch.Tensor, scales: torch.Tensor) -> None:
        self.x0, self.scales = x0, scales
        self.ids = list(range(x0.shape[0]))
        self.trials = [0] * x0.shape[0]

    def objective(self, points: torch.Tensor) -> torch.Tensor:
        return 0.5 * (self.scales[:, None, :] * points.square()).sum(dim=2)

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        return self.objective(x[:, None, :])[:, 0]


def quadratic(rows: int = 2, dim: int = 10, seed: int = 0, cond: float = 4.0) -> Quadratic:
    """Seeded convex quadratic with eigenvalues in ``[1, cond]``."""
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn((rows, dim), generator=g, dtype=torch.float64)
    scales = 1.0 + (cond - 1.0) * torch.rand((rows, dim), generator=g, dtype=torch.float64)
    return Quadratic(x0, scales)


DATA = Path(os.environ.get("ZOL2L_DATA_DIR")
            or Path(__file__).resolve().parents[2] / "shared" / "data")
# Outside CI a checkout without the shared data skips these; in CI (CI=true) they must run.
needs_data = pytest.mark.skipif(not (DATA / "mnist.npz").is_file() and not os.environ.get("CI"),
                                reason="the shared MNIST/CIFAR-10 data is not beside this checkout")


def run_quick(name: str, out: Path) -> tuple[Any, dict, dict, bool]:
    """Run ``zol2l reproduce NAME --quick`` into ``out``: ``(context, payload, saved
    results.json, whether the CIFAR-10 data is missing)``; checks the saved experiment name."""
    from zol2l.experiments.reproduce import Context, run_experiment
    from zol2l.experiments.reproduce.generalization import unavailable

    ctx = Context(out, quick=True, options=RunOptions(progress=False), data_dir=str(DATA))
    cifar_missing = bool(unavailable(ctx, "cifar10-attack"))
    payload = run_experiment(name, ctx)
    saved = json.loads((out / "results.json").read_text())
    assert saved["experiment"] == name
    return ctx, payload, saved, cifar_missing


# ----------------------------------------------------------------- strict JSON, one-line errors
def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON")


def load_strict_json(path: Path) -> Any:
    """Parse ``path`` as strict JSON: NaN, Infinity and -Infinity are errors."""
    return json.loads(path.read_text(), parse_constant=_reject_constant)


@pytest.fixture(autouse=True)
def every_json_written_is_strict(request: pytest.FixtureRequest,
                                 tmp_path_factory: pytest.TempPathFactory) -> Any:
    """After each test, parse every JSON file the test wrote under pytest's temporary
    folders with a parser that rejects NaN and Infinity."""
    import time

    start = time.time() - 1.0
    yield
    root = tmp_path_factory.getbasetemp()
    for path in root.rglob("*.json"):
        if path.is_file() and path.stat().st_mtime >= start:
            try:
                load_strict_json(path)
            except ValueError as exc:
                pytest.fail(f"{request.node.nodeid} wrote {path}, which is not strict JSON: "
                            f"{exc}")


def one_line_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run ``zol2l ARGV``; assert exit code 2 and exactly one stderr line, starting with
    ``zol2l: error:``; return that line."""
    from zol2l.cli import main

    code = main(argv)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2, (code, err)
    assert len(lines) == 1 and lines[0].startswith("zol2l: error: "), err
    return lines[0]
