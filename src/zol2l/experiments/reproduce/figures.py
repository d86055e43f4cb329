"""Figure helpers shared by the ``zol2l reproduce`` experiments (matplotlib, Agg backend).

Every panel draws a mean curve with a shaded +-1 std band, as the paper's figures do; a
figure is a grid of such panels, written at 120 dpi.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from zol2l.experiments.plots import band  # noqa: E402
from zol2l.optimizers.registry import colors, labels  # noqa: E402

#: one colour per optimizer, the same in every figure (declared where each is registered;
#: ``zo-lstm-finetune`` labels ZO-LSTM with its update scale tuned on the task, section 4.3)
COLORS = {**colors(), "zo-lstm-finetune": "tab:cyan"}
#: the paper's name of each optimizer (declared where each is registered)
LABELS = {**labels(), "zo-lstm-finetune": "ZO-LSTM-finetune"}


def label(name: str) -> str:
    """The paper's name of an optimizer (``name`` itself when unknown)."""
    return LABELS.get(name, name)


def color(name: str) -> str | None:
    """A fixed colour per optimizer (``None``: matplotlib's cycle)."""
    return COLORS.get(name)


def loss_panel(ax: Any, blocks: Mapping[str, Mapping[str, Any]], *, title: str,
               queries: bool = False, log: bool = False, ylabel: str = "loss") -> None:
    """One panel of mean loss +- std per optimizer from evaluation blocks
    (``results.json["optimizers"]``), against iterations or against queries."""
    for name, block in blocks.items():
        mean = np.asarray(block["loss_mean"], dtype=float)
        xs = np.arange(len(mean), dtype=float)
        if queries:
            xs = np.concatenate([[0], np.cumsum(block["queries_per_step"])])[: len(mean)]
        band(ax, xs, mean, block.get("loss_std"), label=label(name), color=color(name), log=log)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("queries" if queries else "iteration")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(frameon=False, fontsize=8)


def grid(nrows: int, ncols: int, *, width: float = 4.6, height: float = 3.6) -> tuple[Any, Any]:
    """A figure with an ``nrows x ncols`` array of axes (always 2-D)."""
    fig, axes = plt.subplots(nrows, ncols, squeeze=False,
                             figsize=(width * ncols, height * nrows + 0.4))
    return fig, axes


def save(fig: Any, path: str | os.PathLike, *, suptitle: str | None = None) -> str:
    """Title, lay out, write and close ``fig``; returns the file name."""
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return os.path.basename(os.fspath(path))
