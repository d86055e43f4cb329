"""Analysis of a ``zol2l benchmark`` payload: wins, the quality bar, tables, the ECDF plot."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from zol2l.benchmark.suite import SUBJECT


def _entries(payload: dict[str, Any]) -> list[tuple[dict[str, Any], str, dict[str, Any]]]:
    return [(p, factor, table) for p in payload["problems"]
            for factor, table in p["budgets"].items()]


def _lower(a: float | None, b: float | None) -> bool:
    return a is not None and (b is None or a < b)


def wins(payload: dict[str, Any], subject: str = SUBJECT) -> dict[str, dict[str, Any]]:
    """Per peer: on how many (problem, budget) pairs ``subject`` has the lower score."""
    out: dict[str, dict[str, Any]] = {}
    for _, _, table in _entries(payload):
        mine = table[subject]["score"]
        for peer, block in table.items():
            if peer == subject:
                continue
            row = out.setdefault(peer, {"wins": 0, "problems": 0})
            row["problems"] += 1
            row["wins"] += int(_lower(mine, block["score"]))
    for row in out.values():
        row["fraction"] = row["wins"] / row["problems"] if row["problems"] else None
    return out


def _fraction(pairs: list[tuple[float | None, float | None]], within: float = 1.0) -> float | None:
    """Share of pairs where the first score beats the second (allowing ``within`` x in the
    value, i.e. ``log10(within)`` in the score)."""
    if not pairs:
        return None
    slack = math.log10(within)
    good = sum(1 for a, b in pairs if a is not None and (b is None or a <= b + slack))
    return good / len(pairs)


def quality_bar(payload: dict[str, Any], subject: str = SUBJECT) -> dict[str, Any]:
    """The quality bar of the general optimizer on this payload: it never ends above
    ``f(x0)``; it beats default ZO-ADAM on at least 90% and tuned ZO-ADAM on at least 70% of
    the (problem, budget) pairs; and, when CMA-ES ran, the fractions of pairs where it is ahead
    of CMA-ES at d >= 500 and on the noisy problems, and within 3x of it (in final value) at
    d <= 100 without noise (the table in docs/general.md)."""
    above = sum(t[subject]["above_start"] for _, _, t in _entries(payload))
    bar: dict[str, Any] = {"runs_above_start": above, "never_above_start": above == 0}
    w = wins(payload, subject)
    for peer, need in (("zo-adam", 0.9), ("zo-adam-tuned", 0.7)):
        if peer in w:
            bar[f"beats_{peer}"] = {"fraction": w[peer]["fraction"], "needed": need,
                                    "holds": (w[peer]["fraction"] or 0) >= need}
    if any("cma-es" in t for _, _, t in _entries(payload)):
        def pairs(select):
            return [(t[subject]["score"], t["cma-es"]["score"])
                    for p, _, t in _entries(payload) if select(p)]
        big = pairs(lambda p: p["options"].get("dim", 0) >= 500)
        noisy = pairs(lambda p: p["options"].get("noise", 0) > 0)
        small = pairs(lambda p: p["options"].get("dim", 0) <= 100
                      and not p["options"].get("noise", 0))
        bar["cma_es"] = {
            "ahead_at_d_ge_500": _fraction(big), "ahead_on_noisy": _fraction(noisy),
            "within_3x_at_d_le_100_deterministic": _fraction(small, within=3.0),
        }
    return bar


def markdown(payload: dict[str, Any]) -> str:
    """Tables of scores (mean log10 of the final value / f(x0)), one row per problem."""
    lines = []
    for factor in [str(b) for b in payload["size"]["budgets"]]:
        labels = list(payload["problems"][0]["budgets"][factor])
        lines += [f"\n**Budget {factor} d queries** (mean log10 final f / f(x0) over "
                  f"{payload['size']['instances']} test instances; lower is better; "
                  "bold: best)\n",
                  "| problem | " + " | ".join(labels) + " |",
                  "|---|" + "---|" * len(labels)]
        for p in payload["problems"]:
            table = p["budgets"][factor]
            scores = [table[k]["score"] for k in labels]
            best = min((s for s in scores if s is not None), default=None)
            cells = ["div." if s is None else (f"**{s:.2f}**" if s == best else f"{s:.2f}")
                     for s in scores]
            lines.append(f"| {p['problem']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def ecdf_plot(payload: dict[str, Any], path: str | Path) -> None:
    """ECDF of (run, target) pairs reached against queries / d (COCO's runtime ECDF), one
    panel per dimension and noise level, for the payload's targets (fractions of f(x0))."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    targets = [f"{t:g}" for t in payload["targets"]]
    groups: dict[tuple[int, float], list[dict[str, Any]]] = {}
    for p in payload["problems"]:
        opts = p["options"]
        groups.setdefault((int(opts["dim"]), float(opts.get("noise", 0.0))), []).append(p)
    top = str(max(payload["size"]["budgets"]))
    fig, axes = plt.subplots(1, len(groups), figsize=(4.2 * len(groups), 3.6), squeeze=False)
    for ax, ((dim, noise), probs) in zip(axes[0], sorted(groups.items()), strict=True):
        labels = list(probs[0]["budgets"][top])
        for label in labels:
            hits: list[float] = []
            total = 0
            for p in probs:
                reached = p["budgets"][top][label]["queries_to"]
                for target in targets:
                    total += len(reached[target])
                    hits += [q / dim for q in reached[target] if q is not None]
            xs = sorted(hits)
            ax.step([1.0] + xs, [0.0] + [(i + 1) / total for i in range(len(xs))],
                    where="post", label=label, lw=2.2 if label == SUBJECT else 1.2)
        ax.set_xscale("log")
        ax.set_ylim(0, 1)
        ax.set_xlabel("queries / d")
        ax.set_title(f"d = {dim}" + (f", noise {noise:g}" if noise else ""))
    axes[0][0].set_ylabel("fraction of (run, target) pairs")
    axes[0][-1].legend(fontsize=7, loc="upper left")
    fig.suptitle("zol2l benchmark: share of (run, target) pairs reached, targets "
                 + ", ".join(targets) + " of f(x0)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
