"""Put a library peer's entries from an earlier ``zol2l benchmark`` run into a new run of the
same suite that left the peer out (``--peers none``), and rewrite the run's results, tables
and ECDF plot.

A peer's runs (CMA-ES, NGOpt) do not depend on zol2l's optimizers: the same suite size, seed
and q give the same instances, the same oracle and the same peer seeds, so its earlier units
are its units now.  pycma at d = 100 costs about 4 minutes per problem on this CPU, which is
why a rerun of the zol2l side can borrow them.  The script refuses runs whose size, seed or
q differ, and with ``--check`` it first compares the peer's entries against a fresh run of
some of the problems (every number must be equal).

Usage:
  python bench/reuse_peer.py results/benchmark/d100 --from OLD/results.json --peer cma-es \
      [--check FRESH/results.json] [--source "git 81f648c"]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from zol2l.benchmark.report import ecdf_plot, markdown, quality_bar, wins
from zol2l.fileio import write_json_atomic


def _problems(payload: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p["problem"]: p for p in payload["problems"]}


def check_same_peer(old: dict[str, Any], fresh: dict[str, Any], peer: str) -> int:
    """Compare ``peer``'s entries of every problem of ``fresh`` with ``old``; return how many
    (problem, budget) entries matched (raises on the first difference)."""
    by_name, count = _problems(old), 0
    for problem in fresh["problems"]:
        for budget, entries in problem["budgets"].items():
            if entries[peer] != by_name[problem["problem"]]["budgets"][budget][peer]:
                raise SystemExit(f"{peer} differs on {problem['problem']} at {budget} d")
            count += 1
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="the new run's folder (results.json)")
    parser.add_argument("--from", dest="old", type=Path, required=True,
                        help="the earlier run's results.json")
    parser.add_argument("--peer", required=True)
    parser.add_argument("--check", type=Path, default=None,
                        help="a fresh run's results.json with the peer on some problems")
    parser.add_argument("--source", default=None, help="where the earlier run comes from")
    args = parser.parse_args()
    new = json.loads((args.run / "results.json").read_text())
    old = json.loads(args.old.read_text())
    for key in ("size", "seed", "q", "targets"):
        if new[key] != old[key]:
            raise SystemExit(f"the runs differ in {key}: {new[key]} against {old[key]}")
    if args.peer not in old["peers"] or args.peer in new["peers"]:
        raise SystemExit(f"{args.peer} must be a peer of the earlier run and not of the new")
    checked = 0
    if args.check is not None:
        checked = check_same_peer(old, json.loads(args.check.read_text()), args.peer)
    by_name = _problems(old)
    for problem in new["problems"]:
        for budget, entries in problem["budgets"].items():
            entries[args.peer] = by_name[problem["problem"]]["budgets"][budget][args.peer]
    new["peers"] = [*new["peers"], args.peer]
    new.setdefault("reused", {})[args.peer] = {
        "from": args.source or str(args.old), "checked_entries": checked}
    new["wins"], new["quality_bar"] = wins(new), quality_bar(new)
    write_json_atomic(args.run / "results.json", new)
    ecdf_plot(new, args.run / "ecdf.png")
    (args.run / "tables.md").write_text(markdown(new))
    print(f"{args.peer}: {len(new['problems'])} problems from {args.old}; "
          f"{checked} entries checked equal")


if __name__ == "__main__":
    main()
