"""Compare two ``zol2l reproduce`` output trees: are the numbers the same?

Usage:
    python tools/compare_reproduce.py BEFORE_DIR AFTER_DIR

For every ``results.json`` under ``BEFORE_DIR`` that holds an experiment, the one at the same
place under ``AFTER_DIR`` must have the same ``results`` (timing and machine fields aside);
differences of ``protocol`` and of the claims' texts are listed too.  Exit status 1 when some
results differ or are missing.  Used to check that a refactoring leaves the numbers of
``zol2l reproduce all --quick`` unchanged.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

TIMING = {"seconds", "seconds_per_step", "compute_seconds", "cpu_seconds", "machine"}


def diff(a: Any, b: Any, path: str = "") -> Iterator[str]:
    """The places where ``a`` and ``b`` differ (ignoring :data:`TIMING` keys)."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted((set(a) | set(b)) - TIMING):
            if key not in a or key not in b:
                yield f"{path}/{key}: only in {'after' if key not in a else 'before'}"
            else:
                yield from diff(a[key], b[key], f"{path}/{key}")
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            yield from diff(x, y, f"{path}[{i}]")
    elif a != b:
        yield f"{path}: {str(a)[:80]} != {str(b)[:80]}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    args = parser.parse_args()
    bad = 0
    for path in sorted(args.before.rglob("results.json")):
        rel = path.relative_to(args.before)
        old = json.loads(path.read_text())
        if "results" not in old:
            continue
        other = args.after / rel
        if not other.is_file():
            print(f"{rel}: missing after")
            bad += 1
            continue
        new = json.loads(other.read_text())
        results = list(diff(old["results"], new["results"]))
        protocol = list(diff(old["protocol"], new["protocol"]))
        claims = list(diff([c["claim"] for c in old["checks"]],
                           [c["claim"] for c in new["checks"]]))
        print(f"{rel}: results {'IDENTICAL' if not results else 'DIFFER'}; protocol diffs "
              f"{len(protocol)}; claim-text diffs {len(claims)}")
        for line in results[:10] + protocol[:8] + claims[:4]:
            print("   ", line)
        bad += bool(results)
    print("FAIL" if bad else "ALL RESULTS IDENTICAL")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
