"""The LSTM cell of ZO-LSTM: feature-major ``CoordinateCell`` vs ``torch.nn.LSTMCell``.

Usage:
    python bench/bench_cell.py [--rows 15680] [--calls 200] [--out bench/results/cell.json]

Times one cell call (no autograd, one CPU thread) on ``--rows`` coordinates (default
20 images x 784 pixels, the MNIST attack's ``B * d``) with 10 hidden units and one input,
for both implementations with the same weights, and checks that they agree.  The two are
timed in turn ``--repeats`` times and each reports its fastest repeat (robust to other load
on a shared machine) and all repeats.  Writes JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from zol2l.learned.rnn import CoordinateCell


def per_call_ms(fn, calls: int) -> float:
    fn()
    tick = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - tick) / calls * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20 * 784)
    parser.add_argument("--hidden", type=int, default=10)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    cell = CoordinateCell(1, args.hidden)
    ref = torch.nn.LSTMCell(1, args.hidden, bias=False)
    ref.load_state_dict(cell.state_dict())
    x = torch.randn(args.rows, 1, generator=gen)
    h, c = (torch.randn(args.rows, args.hidden, generator=gen) for _ in range(2))
    xt, ht, ct = x.T.contiguous(), h.T.contiguous(), c.T.contiguous()
    with torch.no_grad():
        diff = (cell(xt, (ht, ct))[0].T - ref(x, (h, c))[0]).abs().max().item()
        runs: dict[str, list[float]] = {"feature_major_ms": [], "torch_lstm_cell_ms": []}
        for _ in range(args.repeats):
            runs["feature_major_ms"].append(per_call_ms(lambda: cell(xt, (ht, ct)), args.calls))
            runs["torch_lstm_cell_ms"].append(per_call_ms(lambda: ref(x, (h, c)), args.calls))
    results: dict[str, float] = {k: min(v) for k, v in runs.items()}
    results["speedup"] = results["torch_lstm_cell_ms"] / results["feature_major_ms"]
    payload = {"rows": args.rows, "hidden": args.hidden, "calls": args.calls,
               "repeats": runs, "threads": 1,
               "max_abs_difference": diff, "machine": platform.machine(),
               "torch": torch.__version__, **results}
    text = json.dumps(payload, indent=1, allow_nan=False)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
