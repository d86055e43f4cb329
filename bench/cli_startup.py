"""Time ``zol2l --help`` (a fresh interpreter each run) and say whether it imports torch.

Runs ``python -c "from zol2l.cli import main; main(['--help'])"`` ``--runs`` times with
``PYTHONPATH=--src`` (default: this checkout's ``src``) and records the wall times, whether
``torch`` was imported (``-X importtime``) and, for scale, the time of ``import torch``
alone.  Writes ``--out`` (default ``bench/results/cli_startup.json``)::

    python bench/cli_startup.py
    python bench/cli_startup.py --src /path/to/other/checkout/src --out /tmp/before.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HELP = "from zol2l.cli import main; main(['--help'])"


def _times(code: str, env: dict[str, str], runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        tick = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], env=env, check=True,
                       stdout=subprocess.DEVNULL)
        out.append(time.perf_counter() - tick)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--src", type=Path, default=ROOT / "src",
                        help="the zol2l sources to time (default: this checkout's)")
    parser.add_argument("--runs", type=int, default=5, help="runs of each (default: 5)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" /
                        "cli_startup.json", help="JSON file to write")
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": str(args.src)}
    trace = subprocess.run([sys.executable, "-X", "importtime", "-c", HELP], env=env,
                           check=True, capture_output=True, text=True).stderr
    imported = {line.rsplit("|", 1)[-1].strip() for line in trace.splitlines() if "|" in line}
    helps = _times(HELP, env, args.runs)
    torch_alone = _times("import torch", env, args.runs)
    payload = {
        "command": f"python -c \"{HELP}\"", "src": str(args.src), "runs": args.runs,
        "help_seconds": helps, "help_median_seconds": statistics.median(helps),
        "imports_torch": "torch" in imported,
        "modules_imported": len(imported),
        "import_torch_median_seconds": statistics.median(torch_alone),
        "load_average": list(os.getloadavg()),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    print(json.dumps(payload, indent=2))


if __name__ == "__main__":
    main()
