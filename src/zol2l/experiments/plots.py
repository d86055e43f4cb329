"""Figures: loss curves with a shaded +-1 std band, vs iterations and vs queries."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def band(ax: Any, xs: Sequence[float] | np.ndarray, mean: Sequence[float] | np.ndarray,
         std: Sequence[float] | np.ndarray | None, *, label: str, color: str | None = None,
         log: bool = False, lw: float = 1.6) -> None:
    """Plot ``mean`` against ``xs`` with a shaded ``mean +- std`` band (every loss figure of
    zol2l); on a log scale the band's lower edge stays above zero."""
    xs, mean = np.asarray(xs, dtype=float), np.asarray(mean, dtype=float)
    (line,) = ax.plot(xs, mean, label=label, color=color, lw=lw)
    if std is not None:
        std = np.asarray(std, dtype=float)
        low = mean - std
        if log:
            low = np.maximum(low, np.nanmin(mean[mean > 0]) * 0.5 if (mean > 0).any() else 1e-12)
        ax.fill_between(xs, low, mean + std, color=line.get_color(), alpha=0.18, lw=0)
    if log:
        ax.set_yscale("log")


def plot_loss(results: dict[str, Any], path: str | os.PathLike, *, log: bool = False,
              title: str | None = None) -> None:
    """Write the two-panel loss figure of an evaluation payload to ``path``."""
    fig, (ax_it, ax_q) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, block in results["optimizers"].items():
        mean = block["loss_mean"]
        iters = np.arange(len(mean))
        queries = np.concatenate([[0], np.cumsum(block["queries_per_step"])])[: len(mean)]
        for ax, xs in ((ax_it, iters), (ax_q, queries)):
            band(ax, xs, mean, block["loss_std"], label=name, log=log)
    for ax, label in ((ax_it, "iteration"), (ax_q, "queries per run")):
        ax.set_xlabel(label)
        ax.set_ylabel("loss")
        ax.grid(alpha=0.3)
    ax_it.legend(frameon=False)
    ntr = len(results.get("instances", [])), results.get("trials", 1)
    fig.suptitle(title or f"{results['task']}: mean loss +- 1 std over {ntr[0]} instances x "
                 f"{ntr[1]} trials (q = {results.get('q')})")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
