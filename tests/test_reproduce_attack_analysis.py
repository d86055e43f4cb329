"""Appendix C analyses (Figures 8-11) of ``zol2l reproduce``, and the attack task's
low-resolution perturbation option used by Figure 8."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import DATA, needs_data

from zol2l.experiments.evaluate import evaluate
from zol2l.experiments.options import RunOptions
from zol2l.experiments.reproduce import available_experiments, reproduce
from zol2l.tasks.registry import make_task

NAMES = ("fig8", "fig9", "fig10", "fig11")


class Flat(torch.nn.Module):
    """A fixed linear 'classifier' on flattened images (3 classes)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.w = torch.randn((3, dim), generator=torch.Generator().manual_seed(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], -1) @ self.w.T


def tiny_task(shape: tuple[int, ...] = (1, 4, 6), **options):  # noqa: ANN003, ANN201
    images = torch.rand((30, *shape), generator=torch.Generator().manual_seed(0))
    model = Flat(images[0].numel())
    labels = model(images).argmax(1)
    return make_task("mnist-attack", target=model, images=images, labels=labels, per_split=5,
                     **options)


# ------------------------------------------------------------------ perturbation_size
@pytest.mark.parametrize("shape", [(1, 4, 6), (3, 4, 6)])
@pytest.mark.parametrize("size", [(2, 3), (1, 1), (4, 6)])
def test_low_resolution_dimension_and_start(shape: tuple[int, ...], size: tuple[int, int]) -> None:
    task = tiny_task(shape)
    ids = task.instance_ids("test")[:2]
    plain = task.problem(ids, trials=2)
    low = task.problem(ids, trials=2, perturbation_size=size)
    assert low.dim == size[0] * size[1] * shape[0]
    assert low.x0.shape == (4, low.dim) and bool((low.x0 == 0).all())
    # the start is the original image, as without the option
    torch.testing.assert_close(low.to_image(low.x0), plain.to_image(plain.x0))


@pytest.mark.parametrize("box", ["tanh", "clamp"])
def test_full_size_is_the_default_parametrization(box: str) -> None:
    task = tiny_task((3, 4, 6), box=box)
    ids = task.instance_ids("test")[:3]
    plain = task.problem(ids)
    full = task.problem(ids, perturbation_size=(4, 6))
    delta = 0.3 * torch.randn((3, 5, 72), generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(full.upsample(delta), delta)  # bilinear at scale 1: identity
    moved = plain.x0[:, None, :] + delta if box == "tanh" else delta
    torch.testing.assert_close(full.to_image(delta), plain.to_image(moved))
    torch.testing.assert_close(full.objective(delta), plain.objective(moved))


def test_upsampling_is_bilinear_per_channel() -> None:
    task = tiny_task((2, 4, 6), box="clamp")
    problem = task.problem(task.instance_ids("test")[:1], perturbation_size=(2, 3))
    small = torch.tensor([[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, -1.0, -1.0, -1.0, -1.0, -1.0, -1.0]])
    big = problem.upsample(small).reshape(2, 4, 6)
    expect = torch.nn.functional.interpolate(small.reshape(1, 2, 2, 3), size=(4, 6),
                                             mode="bilinear", align_corners=False)[0]
    torch.testing.assert_close(big, expect)
    assert bool((big[1] == -1.0).all())  # a constant channel stays constant


def test_low_resolution_gradient_shape_and_validation() -> None:
    task = tiny_task((1, 4, 6))
    problem = task.problem(task.instance_ids("test")[:2], trials=1, perturbation_size=(2, 2))
    points = (0.1 * torch.randn((2, 3, 4))).requires_grad_(True)
    problem.differentiable_objective(points).sum().backward()
    assert points.grad is not None and points.grad.shape == (2, 3, 4)
    assert bool((points.grad != 0).any())
    for bad in [(0, 2), (2,), (2, 2, 2), "ab", (1.5, 2)]:
        with pytest.raises(ValueError, match="perturbation_size"):
            task.problem([problem.ids[0]], perturbation_size=bad)


def test_low_resolution_through_evaluate() -> None:
    task = tiny_task((1, 4, 6))
    payload = evaluate(task, {"zo-sgd": {"delta": 1.0, "q": 3}}, instances=2, trials=2, steps=4,
                       options=RunOptions(progress=False),
                       problem_options={"perturbation_size": [2, 3]})
    block = payload["optimizers"]["zo-sgd"]
    assert len(block["loss_mean"]) == 5 and len(block["first_success_iter"]) == 4


# ------------------------------------------------------------------ the experiments
def test_registered_in_order() -> None:
    names = available_experiments()
    assert [n for n in names if n in NAMES] == list(NAMES)


@needs_data
@pytest.mark.parametrize("name", NAMES)
def test_quick_experiment(tmp_path: Path, name: str) -> None:
    out = tmp_path / name
    payload = reproduce(name, out, quick=True, data_dir=str(DATA),
                        options=RunOptions(progress=False))
    data = json.loads((out / "results.json").read_text())
    assert data["experiment"] == name == payload["experiment"]
    for key in ("paper", "quick", "machine", "seconds", "protocol", "results", "checks",
                "figures", "sources"):
        assert key in data, key
    assert data["quick"] is True
    for key in ("images", "trials", "steps", "q", "checkpoint"):
        assert key in data["protocol"], key
    assert data["checks"]
    for check in data["checks"]:
        assert set(check) == {"claim", "holds", "evidence"}
        assert check["holds"] in (True, False, None)
        assert check["claim"] and check["evidence"]
    assert data["figures"] == [f"{name}.png"]
    assert (out / f"{name}.png").stat().st_size > 5_000
    results = data["results"]
    if name == "fig8":
        assert data["protocol"]["dims"] == [49, 784]
        for entry in results["per_d"].values():
            for opt in ("zo-sgd", "zo-lstm-no-update"):
                assert 0 <= entry[opt]["iters_mean"] <= data["protocol"]["steps"]
                assert 0.0 <= entry[opt]["success_rate"] <= 1.0
    elif name == "fig9":
        assert len(results["per_image"]) == 2
        assert set(results["means"]) >= {"corr_variance_lstm", "corr_variance_no_query"}
    elif name == "fig10":
        assert list(results["per_p"]) == ["P=0", "P=1"]
    else:
        final = results["final"]
        assert set(final) == {"zo-szvrg", "zo-sgd", "zo-lstm-no-update"}
        assert final["zo-szvrg"]["total_queries"] > final["zo-sgd"]["total_queries"]
