"""Choose the constants of the scale-free scheme on the META-TRAINING mixture (never on the
benchmark suite): the untrained scheme (zero head: the hand-designed part alone) under
variants of :class:`~zol2l.learned.scalefree.SchemeConstants`, against ZO-ADAM at its
defaults, on 6 training instances of every member of the general mixture.

Usage:
  python bench/general_scheme.py --variants '[{}, {"mu_ratio": 0.1}]' \
      [--steps 200] [--skip-dim 1000] [--out bench/results/general_scheme.json]

Score of a member: median over its instances of log10(final loss / initial loss) after
``--steps`` steps (lower is better); the JSON lists every member's score per variant and
the mean over members.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from zol2l.fileio import write_json_atomic
from zol2l.learned.scalefree import ScaleFreeUpdateRNN, SchemeConstants
from zol2l.loop import run
from zol2l.optimizers import make
from zol2l.tasks import make_task


def score(optimizer, problem, steps: int) -> float:
    result = run(optimizer, problem, steps, seed=0, nonfinite="inf")
    # floored as zol2l benchmark does: a run that reaches f = 0 exactly scores -300
    return float((result.loss[-1] / result.loss[0]).clamp_min(1e-300).log10().median())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", default="[{}]", help="JSON list of constant overrides")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--skip-dim", type=int, default=1000,
                        help="leave out members of this dimension (time)")
    parser.add_argument("--out", type=Path, default=Path("bench/results/general_scheme.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    variants = json.loads(args.variants)
    mix = make_task("mixture")
    rows = []
    start = time.perf_counter()
    for k, member in enumerate(mix.members):
        if member.options.get("dim") == args.skip_dim:
            continue
        problem = lambda k=k: mix.member_problem(k, list(range(6)), seed=3)  # noqa: E731
        row = {"member": member.to_dict(),
               "zo-adam": score(make("zo-adam", q=member.q), problem(), args.steps)}
        for j, overrides in enumerate(variants):
            rnn = ScaleFreeUpdateRNN(constants=SchemeConstants(**overrides))
            opt = make("zo-lstm-no-query", checkpoint=None, update_rnn=rnn, q=member.q)
            row[f"variant{j}"] = score(opt, problem(), args.steps)
        rows.append(row)
        print(json.dumps(row), flush=True)
    keys = [k for k in rows[0] if k != "member"]
    mean = {k: sum(r[k] for r in rows) / len(rows) for k in keys}
    print("mean", json.dumps(mean))
    write_json_atomic(args.out, {"variants": variants, "defaults": SchemeConstants().to_dict(),
                                 "steps": args.steps, "members": rows, "mean": mean,
                                 "seconds": time.perf_counter() - start})


if __name__ == "__main__":
    main()
