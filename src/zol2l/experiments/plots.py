"""Figures: loss curves with a shaded +-1 std band, vs iterations and vs queries."""

from __future__ import annotations

import os
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def plot_loss(results: dict[str, Any], path: str | os.PathLike, *, log: bool = False,
              title: str | None = None) -> None:
    """Write the two-panel loss figure of an evaluation payload to ``path``."""
    fig, (ax_it, ax_q) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, block in results["optimizers"].items():
        mean = np.asarray(block["loss_mean"], dtype=float)
        std = np.asarray(block["loss_std"], dtype=float)
        iters = np.arange(len(mean))
        queries = np.concatenate([[0], np.cumsum(block["queries_per_step"])])[: len(mean)]
        for ax, xs in ((ax_it, iters), (ax_q, queries)):
            (line,) = ax.plot(xs, mean, label=name, lw=1.6)
            low = np.maximum(mean - std, np.finfo(float).tiny) if log else mean - std
            ax.fill_between(xs, low, mean + std, color=line.get_color(), alpha=0.18, lw=0)
    for ax, label in ((ax_it, "iteration"), (ax_q, "queries per run")):
        ax.set_xlabel(label)
        ax.set_ylabel("loss")
        ax.grid(alpha=0.3)
        if log:
            ax.set_yscale("log")
    ax_it.legend(frameon=False)
    ntr = len(results.get("instances", [])), results.get("trials", 1)
    fig.suptitle(title or f"{results['task']}: mean loss +- 1 std over {ntr[0]} instances x "
                 f"{ntr[1]} trials (q = {results.get('q')})")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
