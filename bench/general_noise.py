"""The scale-free scheme under evaluation noise, on TRAINING families only (never the
benchmark suite): long runs on the meta-training family ``rotated-quadratic`` with relative
evaluation noise, at the benchmark's budgets (100 d and 1,000 d queries, q = 20), against
pycma's CMA-ES through the same oracle and budget.

Usage:
  python bench/general_noise.py --variants '[{}, {"noise_gate": 0, "mu_max": 1}]' \
      [--instances 3] [--deterministic] [--no-cma] [--out bench/results/general_noise.json]

Each variant is a set of overrides of :class:`~zol2l.learned.scalefree.SchemeConstants` for
the untrained scheme (zero head: the hand-designed part alone); ``"checkpoint"`` as a
variant runs ``pretrained:general`` itself.  Score of a problem: mean over the instances
(training ids) of ``log10(final loss / initial loss)``, the noiseless loss, floored at
1e-300 as ``zol2l benchmark`` does (lower is better).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch

from zol2l.fileio import write_json_atomic
from zol2l.learned.scalefree import ScaleFreeUpdateRNN, SchemeConstants
from zol2l.loop import run
from zol2l.optimizers import make
from zol2l.tasks import make_task

#: (dimension, relative noise, budget in multiples of d)
NOISY = ((10, 1e-3, 100), (10, 1e-3, 1000), (100, 1e-3, 100), (100, 1e-3, 1000),
         (1000, 1e-3, 100), (100, 1e-2, 100))
#: relative values are floored here (a run that reaches f = 0 exactly scores -300)
FLOOR = 1e-300
DETERMINISTIC = ((10, 0.0, 100), (10, 0.0, 1000), (100, 0.0, 100), (100, 0.0, 1000),
                 (1000, 0.0, 100))


def score(optimizer: Any, problem: Any, budget: int) -> float:
    result = run(optimizer, problem, 10**9, seed=0, nonfinite="inf", budget=budget)
    return float((result.loss[-1] / result.loss[0]).clamp_min(FLOOR).log10().mean())


def subject(variant: dict[str, Any] | str) -> Any:
    if variant == "checkpoint":
        return make("zo-lstm", checkpoint="pretrained:general", q=20)
    rnn = ScaleFreeUpdateRNN(constants=SchemeConstants(**variant))
    return make("zo-lstm-no-query", checkpoint=None, update_rnn=rnn, q=20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", default='["checkpoint"]',
                        help="JSON list: constant overrides, or \"checkpoint\"")
    parser.add_argument("--instances", type=int, default=3)
    parser.add_argument("--deterministic", action="store_true",
                        help="the noiseless controls instead of the noisy problems")
    parser.add_argument("--no-cma", action="store_true", help="leave out the CMA-ES peer")
    parser.add_argument("--out", type=Path, default=Path("bench/results/general_noise.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    variants = json.loads(args.variants)
    rows = []
    start = time.perf_counter()
    for dim, noise, mult in DETERMINISTIC if args.deterministic else NOISY:
        family = make_task("rotated-quadratic", dim=dim, noise=noise)
        budget = mult * dim

        def problem(family: Any = family) -> Any:
            return family.problem(list(range(args.instances)), seed=3)

        row: dict[str, Any] = {"dim": dim, "noise": noise, "budget": budget}
        for j, variant in enumerate(variants):
            row[f"variant{j}"] = score(subject(variant), problem(), budget)
        if not args.no_cma:
            row["cma-es"] = score(make("peer:cma-es", dim=dim, budget=budget), problem(),
                                  budget)
        rows.append(row)
        print(json.dumps(row), flush=True)
    write_json_atomic(args.out, {"variants": variants, "instances": args.instances,
                                 "defaults": SchemeConstants().to_dict(), "rows": rows,
                                 "seconds": time.perf_counter() - start})


if __name__ == "__main__":
    main()
