"""``zol2l benchmark``: the held-out suite of the general ZO-LSTM against its peers."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def _list(kind: type) -> Any:
    def parse(text: str) -> tuple[Any, ...]:
        try:
            return tuple(kind(v) for v in text.split(",") if v.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated {kind.__name__} "
                                             f"values, got {text!r}") from None
    return parse


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of ``zol2l benchmark``."""
    from zol2l.experiments.options import DEFAULT_INSTANCE_CHUNK

    p.description = ("Run the held-out suite (COCO/BBOB-style functions at several dimensions, "
                    "with and without evaluation noise, and binary classification at a "
                    "dimension never trained on) for zo-lstm at its defaults, the zol2l "
                    "baselines at their defaults, ZO-ADAM tuned on the suite's training ids, "
                    "CMA-ES and NGOpt (pip install -e '.[peers]').  Writes OUT/results.json, "
                    "OUT/ecdf.png and OUT/tables.md.")
    p.add_argument("--out", required=True, type=Path, help="output directory")
    p.add_argument("--quick", action="store_true",
                   help="the small size (2 functions, d = 10, 2 instances, 100 d queries)")
    p.add_argument("--functions", type=_list(str), default=None,
                   help="comma-separated bbob functions, or 'none' (default: all of the size)")
    p.add_argument("--dims", type=_list(int), default=None,
                   help="comma-separated dimensions (default: 10,100,1000; quick: 10)")
    p.add_argument("--noises", type=_list(float), default=None,
                   help="comma-separated relative noise levels (default: 0,0.001)")
    p.add_argument("--budgets", type=_list(int), default=None,
                   help="budgets as multiples of d (default: 100,1000; quick: 100)")
    p.add_argument("--instances", type=int, default=None,
                   help="test instances per problem (default: 10; quick: 2)")
    p.add_argument("--tune-instances", type=int, default=None,
                   help="training instances per function for the tuned ZO-ADAM "
                        "(default: all of the split, 5)")
    p.add_argument("--no-binary", action="store_true",
                   help="leave out the held-out binary classification (d = 300)")
    p.add_argument("--peers", default="cma-es,ngopt",
                   help="comma-separated peers from other libraries, or 'none' "
                        "(default: %(default)s; a peer whose library is missing is skipped)")
    p.add_argument("--q", type=int, default=20,
                   help="query directions of the ZO optimizers (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    p.add_argument("--backend", choices=("local", "ray"), default="local",
                   help="where the work units run (default: %(default)s)")
    p.add_argument("--ray-address", default=None, help="HOST:PORT of a Ray head node")
    p.add_argument("--resume", action="store_true",
                   help="reuse the finished work units kept in OUT/units")
    p.add_argument("--instance-chunk", type=int, default=DEFAULT_INSTANCE_CHUNK,
                   help="instances per work unit (default: %(default)s)")
    p.add_argument("--quiet", action="store_true", help="print only the summary")
    p.set_defaults(func=cmd_benchmark)


def cmd_benchmark(args: argparse.Namespace) -> int:
    """Run ``zol2l benchmark``."""
    from dataclasses import replace

    from zol2l.benchmark.peers import available_peers
    from zol2l.benchmark.report import ecdf_plot, markdown, quality_bar, wins
    from zol2l.benchmark.runner import run_suite
    from zol2l.benchmark.suite import PEERS, SIZES
    from zol2l.experiments.backends import make_backend
    from zol2l.experiments.options import RunOptions
    from zol2l.fileio import write_json_atomic

    size = SIZES["quick" if args.quick else "full"]
    for field, value in (("functions", args.functions), ("dims", args.dims),
                         ("noises", args.noises), ("budgets", args.budgets),
                         ("instances", args.instances)):
        if value is not None:
            size = replace(size, **{field: () if value == ("none",) else value})
    if args.no_binary:
        size = replace(size, binary=False)
    wanted = [] if args.peers.strip() == "none" else \
        [p.strip() for p in args.peers.split(",") if p.strip()]
    for label in wanted:
        if label not in PEERS:
            raise ValueError(f"--peers: unknown peer {label!r}; peers: {', '.join(PEERS)}")
    found = {name.split(":", 1)[1] for name in available_peers()}
    peers = [label for label in wanted if label in found]
    for label in wanted:
        if label not in found:
            print(f"zol2l benchmark: peer {label} skipped: its library is not installed "
                  "(pip install -e '.[peers]')")
    log = (lambda text: None) if args.quiet else print
    with make_backend(args.backend, address=args.ray_address) as backend:
        options = RunOptions(backend=backend, resume=args.resume,
                             instance_chunk=args.instance_chunk, progress=False, seed=args.seed)
        ctx = {"q": args.q, "options": options, "tune_instances": args.tune_instances}
        payload = run_suite(size, ctx, peers=peers, workdir=args.out, log=log)
    payload["wins"] = wins(payload)
    payload["quality_bar"] = quality_bar(payload)
    args.out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out / "results.json", payload)
    ecdf_plot(payload, args.out / "ecdf.png")
    (args.out / "tables.md").write_text(markdown(payload))
    for peer, row in payload["wins"].items():
        print(f"zo-lstm beats {peer:>14} on {row['wins']} of {row['problems']} problems")
    print(f"wrote {args.out / 'results.json'}, {args.out / 'ecdf.png'}, {args.out / 'tables.md'}")
    return 0
