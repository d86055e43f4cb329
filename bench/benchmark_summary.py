"""Merge several ``zol2l benchmark`` runs (e.g. one per dimension) into one summary: wins
per peer over all (problem, budget) pairs, the quality bar, and the markdown tables.

Usage:
  python bench/benchmark_summary.py runs/bench/d10 runs/bench/d100 runs/bench/d1000 \
      --out bench/results/benchmark_summary.json [--tables docs/benchmark_tables.md]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from zol2l.benchmark.report import markdown, quality_bar, wins
from zol2l.fileio import write_json_atomic


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="benchmark output folders")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--tables", type=Path, default=None)
    args = parser.parse_args()
    payloads = [json.loads((run / "results.json").read_text()) for run in args.runs]
    merged = {"problems": [p for payload in payloads for p in payload["problems"]]}
    summary = {"runs": [str(r) for r in args.runs], "wins": wins(merged),
               "quality_bar": quality_bar(merged),
               "per_run": {str(r): {"size": p["size"], "peers": p["peers"],
                                    "tuned_delta": p["tuned_delta"], "seconds": p["seconds"],
                                    "wins": wins(p), "quality_bar": quality_bar(p)}
                           for r, p in zip(args.runs, payloads, strict=True)}}
    write_json_atomic(args.out, summary)
    print(json.dumps({"wins": summary["wins"], "quality_bar": summary["quality_bar"]},
                     indent=1))
    if args.tables:
        args.tables.write_text("".join(f"\n### {run}\n" + markdown(p)
                                       for run, p in zip(args.runs, payloads, strict=True)))


if __name__ == "__main__":
    main()
