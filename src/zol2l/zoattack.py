"""``ZOAttack``: a black-box adversarial attack as a callable object, torchattacks style."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import torch

from zol2l.experiments.defaults import record_sources, resolve
from zol2l.experiments.evaluate import block
from zol2l.loop import run
from zol2l.optimizers import make
from zol2l.optimizers.registry import accepted, base_name
from zol2l.tasks import available_tasks, task_class
from zol2l.tasks.attack import AttackFamily, AttackProblem

#: image shapes of the registered attack tasks, whose tuned settings and checkpoints are used
SHIPPED_SHAPES = {cls.image_shape: cls.name for cls in map(task_class, available_tasks())
                  if issubclass(cls, AttackFamily)}

__all__ = ["ZOAttack"]

#: the attack metrics of ``zol2l attack``: AttackFamily.summary reads only the result and the
#: problem, so it serves here without a dataset-backed family
_METRICS = SimpleNamespace(summary=lambda result, problem: AttackFamily.summary(
    None, result, problem))  # type: ignore[arg-type]


class ZOAttack:
    r"""Untargeted zeroth-order attack (Ruan et al. 2020, sec. 4.1): for each image it minimizes
    ``max{F_t0(x) - max_{j != t0} F_j(x), 0} + c ||x - x0||_p`` (``F``: log-probabilities)
    with a registered ZO optimizer that sees only values, through zol2l's oracle and loop.

    Arguments:
        model (nn.Module or callable): maps images ``[N, C, H, W]`` in ``[0, 1]`` to logits.
        optimizer (str): a registered optimizer name. Default: ``"zo-lstm"``.
        steps (int): iterations per image. Default: 200.
        q (int): query directions per step (``q + 1`` queries). Default: 20.
        c (float): distortion weight. Default: 0.1.
        box (str): ``"tanh"`` (``x = (tanh(w) + 1) / 2``) or ``"clamp"``
            (``x = clip(x0 + delta, 0, 1)``). Default: ``"tanh"``.
        p (int): distortion norm, 1 or 2. Default: 1.
        seed (int): seeds the query directions (and ``init_noise``). Default: 0.
        init_noise (float): start at ``x0 + init_noise N(0, 1)``. Default: 0.
        max_batch (int): images per forward pass of ``model``. Default: 1024.
        **hyperparameters: the optimizer's.  Those left out come from the shipped settings of
            the matching task (MNIST-shaped ``1x28x28`` images: ``mnist-attack``'s tuned file
            and ``pretrained:mnist-attack``; ``3x32x32``: ``cifar10-attack``'s), else the
            optimizer's defaults and the general ZO-LSTM checkpoint.

    Shape:
        - images: :math:`(N, C, H, W)` in ``[0, 1]``.
        - labels: :math:`(N)`, the true classes.
        - output: :math:`(N, C, H, W)`: the best (least distorted) successful adversarial
          image of each input, or the input itself where the attack never succeeded.

    Attributes:
        last_result (dict): metrics of the last call (``success`` per image, ``success_rate``,
            queries, distortions: the ``results.json`` block of ``zol2l attack``).

    Examples::

        >>> atk = zol2l.ZOAttack(model, optimizer="zo-lstm", steps=200, q=20, c=0.1)
        >>> adv = atk(images, labels)
        >>> atk.last_result["success_rate"]
    """

    def __init__(self, model: Callable[[torch.Tensor], torch.Tensor], optimizer: str = "zo-lstm",
                 steps: int = 200, q: int = 20, c: float = 0.1, box: str = "tanh", *,
                 p: int = 1, seed: int = 0, init_noise: float = 0.0, max_batch: int = 1024,
                 **hyperparameters: Any) -> None:
        if not callable(model):
            raise TypeError(f"model must be callable, got {type(model).__name__}")
        if box not in ("tanh", "clamp"):
            raise ValueError(f"box must be 'tanh' or 'clamp', got {box!r}")
        if p not in (1, 2):
            raise ValueError(f"p must be 1 or 2, got {p!r}")
        known = accepted(base_name(optimizer))
        unknown = sorted(set(hyperparameters) - set(known))
        if unknown:
            raise ValueError(f"unknown keyword {unknown[0]!r} for {optimizer!r}; accepted: "
                             f"{', '.join(known)}")
        self.model, self.optimizer, self.steps, self.q = model, optimizer, int(steps), int(q)
        self.c, self.box, self.p, self.seed = float(c), box, int(p), int(seed)
        self.init_noise, self.max_batch = float(init_noise), int(max_batch)
        self.hyperparameters = dict(hyperparameters)
        self.last_result: dict[str, Any] | None = None

    def settings(self, shape: tuple[int, ...]) -> tuple[dict[str, Any], dict[str, str]]:
        """The optimizer's hyperparameters for images of ``shape`` and their sources."""
        task = SHIPPED_SHAPES.get(tuple(shape), "custom-attack")
        stub = SimpleNamespace(name=task, describe=lambda: {"name": task, "box": self.box})
        table, sources = resolve(stub, [self.optimizer],  # type: ignore[arg-type]
                                 user={self.optimizer: self.hyperparameters})
        hp = {**table[self.optimizer], "q": self.q}
        sources[self.optimizer]["q"] = "user"
        return hp, sources[self.optimizer]

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Attack ``images`` (true classes ``labels``); returns the adversarial images."""
        if images.dim() != 4:
            raise ValueError(f"images must be [N, C, H, W], got shape {tuple(images.shape)}")
        labels = torch.as_tensor(labels, device=images.device).long().reshape(-1)
        if labels.shape[0] != images.shape[0]:
            raise ValueError(f"{labels.shape[0]} labels for {images.shape[0]} images")
        if bool((images < 0).any() or (images > 1).any()):
            raise ValueError("images must lie in [0, 1]")
        hp, sources = self.settings(tuple(images.shape[1:]))
        n = images.shape[0]
        problem = AttackProblem(self.model, images.detach().float(), labels, list(range(n)),
                                [0] * n, c=self.c, p=self.p, box=self.box,  # type: ignore
                                max_batch=self.max_batch)
        problem.perturb_start(self.init_noise, self.seed)
        opt = make(base_name(self.optimizer), **hp)
        opt_hp = opt.hyperparameters()
        with torch.no_grad():
            result = run(opt, problem, self.steps, seed=self.seed, nonfinite="inf")
        record = block(result, opt_hp, _METRICS, problem)  # type: ignore[arg-type]
        payload = {"optimizers": {self.optimizer: record}}
        record_sources(payload, {self.optimizer: sources})
        success = problem.best_iter >= 0
        adv = torch.where(success[:, None], problem.best_x, problem.flat0)
        self.last_result = {**record, "optimizer": self.optimizer, "steps": self.steps,
                            "c": self.c, "box": self.box, "p": self.p, "seed": self.seed,
                            "success": success.cpu().tolist()}
        return adv.reshape(images.shape).to(images.dtype)
