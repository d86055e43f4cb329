"""The attack task: loss by hand, parametrizations, success, distortions, instance selection."""

from __future__ import annotations

import math

import pytest
import torch

from zol2l.tasks.attack import TANH_EPS, AttackProblem
from zol2l.tasks.registry import make_task


class Linear2x2(torch.nn.Module):
    """A fixed 'classifier' on 1x2x2 images: logits = W x + b (3 classes)."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 2.0, 0.0, 0.0], [0.0, 0.0, 0.0, -1.0]])
        self.b = torch.tensor([0.5, 0.0, 0.2])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], -1) @ self.w.T + self.b


def tiny_task(**options):  # noqa: ANN003, ANN201
    g = torch.Generator().manual_seed(0)
    images = torch.rand((40, 1, 2, 2), generator=g)
    model = Linear2x2()
    labels = model(images).argmax(1)
    labels[::7] = (labels[::7] + 1) % 3  # some images are misclassified
    return make_task("mnist-attack", target=model, images=images, labels=labels,
                     per_split=5, **options), model, images, labels


def log_softmax_by_hand(z: list[float]) -> list[float]:
    m = max(z)
    s = math.log(sum(math.exp(v - m) for v in z)) + m
    return [v - s for v in z]


@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("box", ["tanh", "clamp"])
def test_loss_by_hand(p: int, box: str) -> None:
    task, model, images, labels = tiny_task(p=p, box=box, c=0.3)
    prob = task.problem([3], trials=1)
    x0 = images[3].reshape(-1)
    target_img = torch.tensor([0.9, 0.1, 0.4, 0.05])
    if box == "tanh":
        w = torch.atanh(2 * target_img - 1)
    else:
        w = target_img - x0
    value = float(prob.objective(w[None, None, :])[0, 0])
    logits = (model.w @ target_img + model.b).tolist()
    logp = log_softmax_by_hand(logits)
    t0 = int(labels[3])
    margin = logp[t0] - max(v for j, v in enumerate(logp) if j != t0)
    diff = [a - b for a, b in zip(target_img.tolist(), x0.tolist(), strict=True)]
    dist = sum(abs(d) for d in diff) if p == 1 else math.sqrt(sum(d * d for d in diff))
    assert value == pytest.approx(max(margin, 0.0) + 0.3 * dist, rel=1e-5, abs=1e-6)


def test_tanh_round_trip_and_clamp_box() -> None:
    task, _, images, _ = tiny_task()
    prob = task.problem([0, 1], trials=1)
    back = prob.to_image(prob.x0)
    assert (back - prob.flat0).abs().max() < 2 * TANH_EPS
    edge = make_task("mnist-attack", target=Linear2x2(), images=torch.tensor(
        [[[[0.0, 1.0], [0.5, 1.0]]]]).repeat(12, 1, 1, 1), labels=torch.zeros(12, dtype=torch.long),
        per_split=1)
    p = edge.problem([0])
    assert bool(torch.isfinite(p.x0).all())  # 0 and 1 pixels are clipped safely
    clamp_task, *_ = tiny_task(box="clamp")
    cp = clamp_task.problem([2])
    assert torch.equal(cp.x0, torch.zeros_like(cp.x0))
    far = torch.full_like(cp.x0, 5.0)
    assert torch.equal(cp.to_image(far), torch.ones_like(far))


def test_success_detection_and_metrics() -> None:
    task, model, images, labels = tiny_task(box="clamp")
    ids = task.instance_ids("test")[:2]
    prob: AttackProblem = task.problem(ids, trials=1)
    x = prob.x0.clone()
    assert not bool(prob.metrics(x)["success"].any())
    # push row 0 towards another class: class 2 wins when pixel 3 is very negative -> 0 and
    # pixels 0, 1 small; build the image directly
    adv = torch.tensor([0.0, 0.0, 0.0, 0.0]) - prob.flat0[0]
    x2 = x.clone()
    x2[0] = adv
    out = prob.metrics(x2)
    pred = int(model(torch.zeros(1, 4)).argmax())
    assert bool(out["success"][0]) == (pred != int(prob.labels[0]))
    assert not bool(out["success"][1])
    if bool(out["success"][0]):
        assert int(prob.best_iter[0]) == 1 and torch.equal(prob.best_x[0], torch.zeros(4))


def test_instance_selection_deterministic_disjoint_correct() -> None:
    task, model, images, labels = tiny_task()
    train, test = task.instance_ids("train"), task.instance_ids("test")
    again, *_ = tiny_task()
    assert train == again.instance_ids("train") and test == again.instance_ids("test")
    assert len(train) == len(test) == 5 and not set(train) & set(test)
    chosen = torch.tensor(train + test)
    assert bool((model(images[chosen]).argmax(1) == labels[chosen]).all())
    other = make_task("mnist-attack", target=model, images=images, labels=labels, per_split=5,
                      instance_seed=1)
    assert other.instance_ids("train") != train


def test_batched_objective_rows_are_independent() -> None:
    task, *_ = tiny_task(max_batch=3)
    prob = task.problem(task.instance_ids("train")[:3], trials=2)
    pts = prob.x0[:, None, :] + 0.1 * torch.randn(6, 5, 4, generator=torch.Generator())
    together = prob.objective(pts)
    for r in range(6):
        alone = task.problem([prob.ids[r]]).objective(pts[r : r + 1])
        torch.testing.assert_close(together[r : r + 1], alone)


def test_errors() -> None:
    with pytest.raises(ValueError, match="p must be 1 or 2"):
        tiny_task(p=3)
    with pytest.raises(ValueError, match="box"):
        tiny_task(box="sigmoid")
    task, *_ = tiny_task()
    with pytest.raises(ValueError, match="out of range"):
        task.problem([1000])
