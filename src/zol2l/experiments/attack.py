"""``zol2l attack``: black-box attacks through the evaluation harness, plus the example figure
(the paper's Table 1: the adversarial image over iterations, one row per optimizer) and the
best successful adversarial examples."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from zol2l.experiments.evaluate import evaluate, write_json  # noqa: E402
from zol2l.experiments.options import RunOptions  # noqa: E402
from zol2l.experiments.plots import plot_loss  # noqa: E402
from zol2l.loop import RunResult  # noqa: E402
from zol2l.tasks.attack import AttackFamily, AttackProblem  # noqa: E402


def attack(
    task: AttackFamily, optimizers: Mapping[str, Mapping[str, Any]], out: str | os.PathLike,
    *, images: int | None = 10, trials: int = 1, steps: int | None = None,
    split: str = "test", snapshots: int = 5, options: RunOptions = RunOptions(),
    **settings: Any,
) -> dict[str, Any]:
    """Attack the first ``images`` instances of ``split`` (or the dataset indices ``ids=``)
    with each optimizer for ``steps`` iterations (``None``: the task's ``default_steps``);
    ``settings`` go to :func:`~zol2l.experiments.evaluate.evaluate` (``ids``, ``tuned``,
    ``problem_options``); writes ``results.json``, ``loss.png``, ``examples.png`` and
    ``adversarial.npz`` into ``out``.  Finished work units are kept in ``out/units`` unless
    ``options.workdir`` says otherwise (``options.resume`` reuses them)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    steps = task.default_steps if steps is None else steps
    if options.workdir is None:
        options = replace(options, workdir=out / "units")
    kept: dict[str, tuple[RunResult, Any]] = {}
    payload = evaluate(
        task, optimizers, split=split, instances=images, trials=trials, steps=steps,
        problem_options={"snapshot_every": max(1, steps // snapshots),
                         **settings.pop("problem_options", {})}, keep=kept,
        options=options, **settings,
    )
    write_json(out / "results.json", payload)
    plot_loss(payload, out / "loss.png", title=f"{task.name}: attack loss")
    save_examples(kept, out / "adversarial.npz")
    plot_examples(task, kept, out / "examples.png")
    return payload


def save_examples(kept: Mapping[str, tuple[RunResult, AttackProblem]], path: Path) -> None:
    """Best successful adversarial example per row (``NaN`` rows never succeeded)."""
    arrays: dict[str, np.ndarray] = {}
    for name, (_, problem) in kept.items():
        best = problem.best_x.reshape(-1, *problem.shape).cpu().numpy().copy()
        best[problem.best_iter.cpu().numpy() < 0] = np.nan
        arrays[f"{name}/adversarial"] = best.astype(np.float32)
        arrays[f"{name}/best_iter"] = problem.best_iter.cpu().numpy()
        arrays[f"{name}/ids"] = np.asarray(problem.ids)
        arrays[f"{name}/labels"] = problem.labels.cpu().numpy()
    np.savez_compressed(path, **arrays)


def plot_examples(task: AttackFamily, kept: Mapping[str, tuple[RunResult, AttackProblem]],
                  path: Path) -> None:
    """Row per optimizer: the original image and the adversarial image at several iterations
    of the first (image, trial), each titled with the target's predicted label."""
    rows = list(kept.items())
    iters = sorted(rows[0][1][1].snapshots)
    fig, axes = plt.subplots(len(rows), len(iters) + 1, squeeze=False,
                             figsize=(1.6 * (len(iters) + 1), 2.3 * len(rows) + 0.4))
    for r, (name, (_, problem)) in enumerate(rows):
        original = problem.flat0[0]
        shots = [original] + [problem.snapshots[t] for t in iters]
        with torch.no_grad():
            preds = task.target(torch.stack(shots).reshape(-1, *problem.shape)).argmax(1).cpu()
        for c, (img, pred) in enumerate(zip(shots, preds.tolist(), strict=True)):
            ax = axes[r, c]
            pic = img.reshape(problem.shape).permute(1, 2, 0).cpu().numpy()
            ax.imshow(pic.squeeze(-1) if pic.shape[-1] == 1 else pic, cmap="gray",
                      vmin=0.0, vmax=1.0)
            ax.set_xticks([])
            ax.set_yticks([])
            label = "original" if c == 0 else f"iter {iters[c - 1]}"
            color = "black" if pred == int(problem.labels[0]) else "red"
            ax.set_title(f"{label}\npred {pred}", fontsize=8, color=color)
            if c == 0:
                ax.set_ylabel(name, fontsize=8)
    fig.suptitle(f"{task.name}: image {problem.ids[0]} (true label {int(problem.labels[0])}); "
                 "red = misclassified", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
