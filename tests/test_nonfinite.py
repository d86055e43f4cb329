"""Non-finite losses in the harness: evaluate stops with an error naming optimizer, instance,
trial and iteration; tune records diverged grid points as null and never selects them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import Quadratic, load_strict_json

from zol2l.experiments.evaluate import evaluate, write_json
from zol2l.experiments.options import RunOptions
from zol2l.experiments.tune import tune
from zol2l.experiments.units import NonFiniteRunError
from zol2l.tasks.base import TaskFamily


class Fragile(Quadratic):
    """A quadratic whose value is NaN once any coordinate leaves [-limit, limit]."""

    limit = 3.0

    def objective(self, points: torch.Tensor) -> torch.Tensor:
        value = super().objective(points)
        return torch.where(points.abs().amax(dim=2) > self.limit, torch.nan, value)


class FragileFamily(TaskFamily):
    name = "fragile-quadratic"

    def instance_ids(self, split: str) -> list[int]:
        return [0, 1, 2] if split == "train" else [3, 4]

    def problem(self, ids: Sequence[int], trials: int = 1, seed: int = 0,
                **options: Any) -> Fragile:
        rows = [int(i) for i in ids for _ in range(trials)]
        x0 = torch.stack([torch.full((4,), 0.5 + 0.1 * i, dtype=torch.float64) for i in rows])
        problem = Fragile(x0, torch.ones_like(x0))
        problem.ids, problem.trials = rows, [t for _ in ids for t in range(trials)]
        return problem


def test_evaluate_names_the_first_non_finite_run() -> None:
    with pytest.raises(NonFiniteRunError) as info:
        evaluate(FragileFamily(), {"zo-sgd": {"lr": 50.0, "q": 3}}, instances=2, trials=2,
                 steps=4, options=RunOptions(progress=False))
    text = str(info.value)
    assert text.startswith("zo-sgd on instance 3, trial 0: the loss is nan at iteration 1")
    fine = evaluate(FragileFamily(), {"zo-sgd": {"lr": 0.01, "q": 3}}, instances=2, trials=2,
                    steps=4, options=RunOptions(progress=False))
    assert all(v == v for v in fine["optimizers"]["zo-sgd"]["final_loss"])


def test_tune_records_diverged_grid_points_as_null(tmp_path: Path) -> None:
    payload = tune(FragileFamily(), ["zo-sgd"], steps=3, fixed={"zo-sgd": {"q": 2}},
                   options=RunOptions(progress=False),
                   coarse=(0.01, 1.0, 1000.0), refine=(0.5, 1.0))
    entry = payload["optimizers"]["zo-sgd"]
    by_delta = {t["delta"]: t for t in entry["trials"]}
    assert by_delta[1000.0]["final_loss_mean"] is None
    assert by_delta[1000.0]["diverged_runs"] == 3
    assert by_delta[0.01]["diverged_runs"] == 0 and by_delta[0.01]["final_loss_mean"] > 0
    assert entry["hyperparameters"]["delta"] != 1000.0
    write_json(tmp_path / "hparams.json", payload)
    assert load_strict_json(tmp_path / "hparams.json")["optimizers"]["zo-sgd"] == \
        json.loads(json.dumps(entry))
    with pytest.raises(ValueError, match="every grid point of zo-sgd diverged"):
        tune(FragileFamily(), ["zo-sgd"], steps=3, fixed={"zo-sgd": {"q": 2}},
             options=RunOptions(progress=False), coarse=(1000.0,), refine=(1.0,))
