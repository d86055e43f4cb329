"""Black-box adversarial attacks on image classifiers (section 4.1 and appendix A.1).

Untargeted attack loss, eq. 6 of appendix A.1, with ``F`` the log-probabilities
(``log_softmax`` of the target's output) and ``t0`` the true label:

    ``f(x) = max{F_t0(x) - max_{j != t0} F_j(x), 0} + c * ||x - x0||_p``

with ``p = 1`` by default (``p = 2`` selectable), ``c = 0.1`` for MNIST and ``0.25`` for
CIFAR-10.  The optimization variable is ``w`` with ``x = (tanh(w) + 1) / 2`` (``box="tanh"``,
``w0 = arctanh((2 x0 - 1)(1 - 1e-6))``), or the additive perturbation ``delta`` with
``x = clip(x0 + delta, 0, 1)`` (``box="clamp"``, the authors' released code, ``delta0 = 0``).
One call of the objective evaluates every candidate of every image in target forward passes
of at most ``max_batch`` images (a memory cap); on the CPU each pass is further split into
sub-batches of :data:`CPU_CHUNK` images, whose activations stay in the core's caches: the
MNIST target's forward then runs 2.1x faster than in one 2,100-image pass, with the same
float32 values (``python bench/bench_forward.py``, ``bench/results/forward.json``).

Lower-dimensional attacks (appendix C.1, Figure 8): with the problem option
``perturbation_size=(h, w)`` the variable is a perturbation ``delta`` of ``h * w`` values per
channel, bilinearly resized (``align_corners=False``) to the image size, ``up(delta)``, and
applied where the default variable moves: ``x = (tanh(w0 + up(delta)) + 1) / 2`` with the
tanh box, ``x = clip(x0 + up(delta), 0, 1)`` with the clamp box; ``delta0 = 0`` in both.

Instances: the test images the target classifies correctly, in a seeded shuffle of the test
split; the first 100 are "train" instances (meta-training, tuning), the next 100 "test".
Instance ids are dataset indices.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, Literal

import torch
import torch.nn.functional as F

from zol2l.tasks.base import Problem, Protocol, Sizes, TaskFamily, TaskOption, check_split
from zol2l.tasks.registry import register_task

Box = Literal["tanh", "clamp"]
TANH_EPS = 1e-6
#: images per target forward pass on the CPU (cache-sized; ``bench/bench_forward.py``)
CPU_CHUNK = 64


class AttackProblem(Problem):
    """A batch of attack problems, one row per (image, trial)."""

    reports_loss = True

    def __init__(self, target: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor,
                 labels: torch.Tensor, ids: list[int], trials: list[int], *, c: float,
                 p: int, box: Box, max_batch: int, snapshot_every: int = 0,
                 perturbation_size: Sequence[int] | None = None) -> None:
        self.target, self.images, self.labels = target, images, labels
        self.ids, self.trials = ids, trials
        self.c, self.p, self.box, self.max_batch = float(c), int(p), box, int(max_batch)
        self.shape = tuple(images.shape[1:])
        flat = images.reshape(images.shape[0], -1)
        self.flat0 = flat
        self.perturbation_size = _check_size(perturbation_size, self.shape)
        if box == "tanh":
            self.x0 = torch.atanh((2.0 * flat - 1.0) * (1.0 - TANH_EPS))
        else:
            self.x0 = torch.zeros_like(flat)
        self.w0 = self.x0
        if self.perturbation_size is not None:  # the variable: a low-resolution perturbation
            h, w = self.perturbation_size
            channels = self.shape[0] if len(self.shape) == 3 else 1
            self.x0 = flat.new_zeros(flat.shape[0], channels * h * w)
        nrow, dev = images.shape[0], images.device
        self.best_dist = torch.full((nrow,), float("inf"), device=dev)
        self.best_x = flat.clone()
        self.best_iter = torch.full((nrow,), -1, dtype=torch.long, device=dev)
        self.snapshot_every = snapshot_every
        self.snapshots: dict[int, torch.Tensor] = {}
        self._seen = 0
        self._cache: tuple[torch.Tensor, dict[str, torch.Tensor]] | None = None

    def perturb_start(self, sigma: float, seed: int) -> None:
        """Start at ``x0 + sigma N(0, 1)`` (seeded by ``seed``) instead of exactly ``x0``."""
        if not float(sigma) >= 0.0:
            raise ValueError(f"init_noise must be >= 0, got {sigma}")
        if sigma:
            gen = torch.Generator().manual_seed(int(seed))
            noise = torch.randn(self.x0.shape, generator=gen, dtype=self.x0.dtype)
            self.x0 = self.x0 + float(sigma) * noise.to(self.x0.device)

    # -------------------------------------------------------------- parametrization
    def upsample(self, points: torch.Tensor) -> torch.Tensor:
        """Bilinear resize of low-resolution perturbations ``[..., C * h * w]`` to the image
        size ``[..., C * H * W]`` (``align_corners=False``); identity without
        ``perturbation_size``."""
        if self.perturbation_size is None:
            return points
        *lead, _ = points.shape
        shape = self.shape if len(self.shape) == 3 else (1, *self.shape)
        small = points.reshape(-1, shape[0], *self.perturbation_size)
        big = F.interpolate(small, size=tuple(shape[1:]), mode="bilinear", align_corners=False)
        return big.reshape(*lead, -1)

    def to_image(self, points: torch.Tensor) -> torch.Tensor:
        """Map variables ``[B, n, d]`` (or ``[B, d]``) to flat images in ``[0, 1]``."""
        if self.perturbation_size is not None:
            up = self.upsample(points)
            if self.box == "tanh":
                w0 = self.w0 if points.dim() == 2 else self.w0[:, None, :]
                return (torch.tanh(w0 + up) + 1.0) / 2.0
            points = up
        if self.box == "tanh":
            return (torch.tanh(points) + 1.0) / 2.0
        base = self.flat0 if points.dim() == 2 else self.flat0[:, None, :]
        return (base + points).clamp(0.0, 1.0)

    def _forward(self, images: torch.Tensor) -> torch.Tensor:
        """Log-probabilities of flat images ``[N, d]`` in chunks of ``max_batch`` images
        (:data:`CPU_CHUNK` at most on the CPU)."""
        size = self.max_batch if images.device.type != "cpu" else min(self.max_batch, CPU_CHUNK)
        chunks = [F.log_softmax(self.target(part.reshape(-1, *self.shape)).float(), dim=1)
                  for part in images.split(size)]
        return torch.cat(chunks)

    def _terms(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(margin, distortion, predicted label)``, each ``[B, n]``."""
        nrow, n, _ = points.shape
        images = self.to_image(points)
        logp = self._forward(images.reshape(nrow * n, -1)).reshape(nrow, n, -1)
        labels = self.labels[:, None, None].expand(nrow, n, 1)
        true = logp.gather(2, labels)[..., 0]
        others = logp.scatter(2, labels, float("-inf")).amax(dim=2)
        diff = images - self.flat0[:, None, :]
        dist = diff.abs().sum(2) if self.p == 1 else diff.square().sum(2).sqrt()
        return true - others, dist, logp.argmax(dim=2)

    def objective(self, points: torch.Tensor) -> torch.Tensor:
        margin, dist, pred = self._terms(points.to(self.flat0.dtype))
        # remember each row's first point (the estimators query x_t there): the loop reports
        # the loss and success of x_t after the step, and gets them here for free
        self._cache = (points[:, 0].detach(), {"margin": margin[:, 0].detach(),
                                               "dist": dist[:, 0].detach(), "pred": pred[:, 0]})
        return (margin.clamp_min(0.0) + self.c * dist).to(points.dtype)

    # -------------------------------------------------------------- monitoring
    def _rows(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if self._cache is None or not torch.equal(self._cache[0], x):
            with torch.no_grad():
                margin, dist, pred = self._terms(x[:, None, :].to(self.flat0.dtype))
            self._cache = (x, {"margin": margin[:, 0], "dist": dist[:, 0], "pred": pred[:, 0]})
        return self._cache[1]

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        rows = self._rows(x)
        return (rows["margin"].clamp_min(0.0) + self.c * rows["dist"]).to(x.dtype)

    def metrics(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Success (prediction != true label) and prediction of each row; keeps the best
        successful example (smallest ``p``-distortion) and periodic snapshots of row 0."""
        rows = self._rows(x)
        success = rows["pred"] != self.labels
        better = success & (rows["dist"] < self.best_dist)
        if bool(better.any()):
            images = self.to_image(x.detach()).to(self.flat0.dtype)
            self.best_x[better] = images[better]
            self.best_dist[better] = rows["dist"][better]
            self.best_iter[better] = self._seen
        if self.snapshot_every and self._seen % self.snapshot_every == 0:
            self.snapshots[self._seen] = self.to_image(x[:1].detach())[0].clone()
        self._seen += 1
        return {"success": success, "pred": rows["pred"]}

    def state(self) -> dict[str, Any]:
        """Best successful examples per row, and row 0's snapshots."""
        return {"best_x": self.best_x, "best_dist": self.best_dist, "best_iter": self.best_iter,
                "snapshots": dict(self.snapshots), "seen": self._seen}

    def restore(self, state: dict[str, Any]) -> None:
        dev = self.best_x.device
        self.best_x = state["best_x"].to(dev)
        self.best_dist = state["best_dist"].to(dev)
        self.best_iter = state["best_iter"].to(dev)
        self.snapshots = {int(t): v.to(dev) for t, v in state["snapshots"].items()}
        self._seen = int(state["seen"])


def _check_size(size: Sequence[int] | None,
                shape: tuple[int, ...]) -> tuple[int, int] | None:
    """Validate a ``perturbation_size`` ``(h, w)`` for images of ``shape`` (``C, H, W``)."""
    if size is None:
        return None
    if isinstance(size, (str, bytes)) or len(size) != 2:
        raise ValueError(f"perturbation_size must be (h, w), got {size!r}")
    h, w = (int(v) for v in size)
    if h < 1 or w < 1 or (h, w) != tuple(size):
        raise ValueError(f"perturbation_size must be two positive integers, got {size!r}")
    if len(shape) not in (2, 3):
        raise ValueError(f"perturbation_size needs 2-D images (C, H, W), got shape {shape}")
    return h, w


def attack_options(c: float) -> tuple[TaskOption, ...]:
    """The command-line options of an attack family whose distortion weight is ``c``."""
    return (
        TaskOption("data_dir", str, None, "folder with mnist.npz / cifar10.npz or the official "
                   "files (None: $ZOL2L_DATA_DIR)"),
        TaskOption("target", str, None, "torch.export (.pt2) or TorchScript file of the "
                   "classifier (None: the shipped target). A .pt2 whose weights or constants "
                   "are pickles is refused; a TorchScript file is a program that runs when "
                   "loaded: use only files you trust"),
        TaskOption("outputs", str, "logits", "what --target returns",
                   choices=("logits", "log_probs")),
        TaskOption("c", float, c, "distortion weight c of eq. 6"),
        TaskOption("p", int, 1, "distortion norm p of eq. 6", choices=(1, 2)),
        TaskOption("box", str, "tanh", "x = (tanh(w) + 1) / 2, or x = clip(x0 + delta, 0, 1)",
                   choices=("tanh", "clamp")),
        TaskOption("max_batch", int, 1024, "images per target forward pass (memory cap)"),
        TaskOption("device", str, "cpu", "torch device of the target and the attack "
                   "(e.g. cuda)"),
    )


class AttackFamily(TaskFamily):
    """Attacks on one classifier: ``dataset`` is ``"mnist"`` or ``"cifar10"``; the constructor's
    ``c=None`` is the family's ``default_c``."""

    dataset: str = ""
    #: the shape ``(C, H, W)`` of the dataset's images
    image_shape: tuple[int, ...] = ()
    default_c: float = 0.1
    cli_options = attack_options(default_c)
    #: the paper's protocol (section 4.1): 100 images, 10 trials, 200 steps; alpha tuned on
    #: 20 training images (section 4.3)
    protocol = Protocol(steps=200, q=20, full=Sizes(instances=100, trials=10, steps=200),
                        quick=Sizes(instances=2, trials=1, steps=10), tune_instances=20,
                        quick_tune_instances=1, halve_capped_tune_steps=True,
                        caps=("images",))

    def __init__(self, *, target: Callable[[torch.Tensor], torch.Tensor] | str | None = None,
                 outputs: str = "logits", data_dir: str | None = None,
                 images: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                 c: float | None = None, p: int = 1, box: Box = "tanh",
                 max_batch: int = 1024, instance_seed: int = 0, per_split: int = 100,
                 device: str | torch.device = "cpu") -> None:
        from zol2l.targets import Float32Target, load_pretrained_target, load_target_file

        if p not in (1, 2):
            raise ValueError(f"p must be 1 or 2, got {p}")
        if box not in ("tanh", "clamp"):
            raise ValueError(f"box must be 'tanh' or 'clamp', got {box!r}")
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if c is not None and not float(c) >= 0:
            raise ValueError(f"c (the distortion weight, --c) must be >= 0, got {c}")
        if isinstance(target, str):
            self.target_name = target
            target = load_target_file(target, outputs=outputs)  # type: ignore[arg-type]
        elif target is None:
            self.target_name = f"pretrained:{self.dataset}"
            target = load_pretrained_target(self.dataset)
        else:
            self.target_name = type(target).__name__
        for param in getattr(target, "parameters", lambda: [])():
            param.requires_grad_(False)
        self.device = torch.device(device)
        if isinstance(target, torch.nn.Module):
            target = target.to(self.device)
        # on CUDA, every forward pass of the target in full float32 (no TF32), the global
        # flags untouched
        self.target = Float32Target(target) if self.device.type == "cuda" else target
        if images is None or labels is None:
            from zol2l.data import load_dataset

            images, labels = load_dataset(self.dataset, data_dir, "test")  # type: ignore[arg-type]
        self.images, self.labels = images.to(self.device), labels.to(self.device)
        check = getattr(self.target, "check_images", None)
        if callable(check):  # a loaded --target file: fail now, clearly, on a shape mismatch
            check(tuple(self.images.shape[1:]), self.dataset)
        self.c = self.default_c if c is None else float(c)
        self.p, self.box, self.max_batch = p, box, max_batch
        self.instance_seed, self.per_split = instance_seed, per_split
        self._splits: dict[str, list[int]] | None = None

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "dataset": self.dataset, "target": self.target_name,
                "c": self.c, "p": self.p, "box": self.box, "max_batch": self.max_batch,
                "instance_seed": self.instance_seed, "device": str(self.device),
                "target_sha256": getattr(self.target, "weights_sha256", None)}

    @torch.no_grad()
    def _select(self) -> dict[str, list[int]]:
        """Correctly classified test images in a seeded shuffle: train = first ``per_split``,
        test = the next ``per_split`` (disjoint)."""
        if self._splits is None:
            gen = torch.Generator().manual_seed(self.instance_seed)
            order = torch.randperm(len(self.labels), generator=gen)
            chosen: list[int] = []
            for part in order.split(256):
                part = part.to(self.device)
                logits = self.target(self.images[part])
                chosen += part[logits.argmax(1) == self.labels[part]].tolist()
                if len(chosen) >= 2 * self.per_split:
                    break
            if len(chosen) < 2 * self.per_split:
                raise ValueError(f"only {len(chosen)} correctly classified test images, need "
                                 f"{2 * self.per_split}")
            self._splits = {"train": chosen[: self.per_split],
                            "test": chosen[self.per_split : 2 * self.per_split]}
        return self._splits

    def instance_ids(self, split: str) -> list[int]:
        return list(self._select()[check_split(split)])

    def problem(self, ids: Sequence[int], trials: int = 1, seed: int = 0,
                snapshot_every: int = 0, perturbation_size: Sequence[int] | None = None,
                init_noise: float = 0.0, **options: Any) -> AttackProblem:
        """``len(ids) * trials`` attack rows.  ``snapshot_every``: keep row 0's image every
        that many iterations; ``perturbation_size=(h, w)``: optimize an ``h x w`` (per
        channel) perturbation, bilinearly resized to the image (appendix C.1);
        ``init_noise=sigma``: start each row at ``x0 + sigma N(0, 1)`` (seeded by ``seed``;
        the authors' code starts at ``1e-4 N(0, 1)``) instead of exactly ``x0``."""
        if trials < 1 or not len(ids):
            raise ValueError("need at least one image id and one trial")
        rows = [int(i) for i in ids for _ in range(trials)]
        for i in set(rows):
            if not 0 <= i < len(self.labels):
                raise ValueError(f"image id {i} out of range [0, {len(self.labels)})")
        index = torch.tensor(rows, device=self.device)
        problem = AttackProblem(self.target, self.images[index], self.labels[index], rows,
                                [t for _ in ids for t in range(trials)], c=self.c, p=self.p,
                                box=self.box, max_batch=self.max_batch,
                                snapshot_every=snapshot_every,
                                perturbation_size=perturbation_size)
        problem.perturb_start(init_noise, seed)
        return problem

    def summary(self, result: Any, problem: Problem) -> dict[str, Any]:
        """Attack metrics: success rate, iterations/queries to first success, distortions."""
        assert isinstance(problem, AttackProblem)
        success = result.metrics["success"].cpu()  # [T + 1, B]
        ever = success.any(dim=0)
        first = torch.where(ever, success.float().argmax(dim=0), torch.full_like(ever, -1,
                            dtype=torch.long))
        spent = torch.tensor([0, *result.queries]).cumsum(0)
        iters = first[ever].double()
        final = (problem.to_image(result.x).to(problem.flat0.dtype) - problem.flat0).cpu()
        best = (problem.best_x - problem.flat0).cpu()

        def norms(diff: torch.Tensor, mask: torch.Tensor) -> dict[str, float | None]:
            sel = diff[mask].double()
            if not len(sel):
                return {"l1": None, "l2": None, "linf": None}
            return {"l1": float(sel.abs().sum(1).mean()), "l2": float(sel.norm(dim=1).mean()),
                    "linf": float(sel.abs().amax(1).mean())}

        return {
            "success_rate": float(ever.double().mean()),
            "success_curve": success.double().mean(dim=1).tolist(),
            "iters_to_success_mean": float(iters.mean()) if len(iters) else None,
            "iters_to_success_median": float(iters.median()) if len(iters) else None,
            "queries_to_success_mean": float(spent[first[ever]].double().mean())
            if len(iters) else None,
            "first_success_iter": first.tolist(),
            "distortion_success": norms(best, ever),
            "distortion_final": norms(final, torch.ones_like(ever)),
            "best_success_iter": problem.best_iter.cpu().tolist(),
        }


@register_task
class MNISTAttack(AttackFamily):
    """Black-box attack on the MNIST target (d = 784, c = 0.1, q = 20)."""

    name = "mnist-attack"
    protocol = replace(AttackFamily.protocol, title="(a) MNIST attack")
    dataset = "mnist"
    image_shape = (1, 28, 28)


@register_task
class CIFAR10Attack(AttackFamily):
    """Black-box attack on the CIFAR-10 target (d = 3072, c = 0.25, q = 50)."""

    name = "cifar10-attack"
    dataset = "cifar10"
    image_shape = (3, 32, 32)
    default_c = 0.25
    cli_options = attack_options(default_c)
    # its forward passes cost ~4x MNIST's and it queries 51 points per step: smaller quick runs
    protocol = replace(AttackFamily.protocol, q=50, quick=Sizes(instances=1, trials=1, steps=5),
                       caps=("cifar_images", "images"), title="(b) CIFAR-10 attack")
