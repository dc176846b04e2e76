#!/usr/bin/env python3
"""Check our loader and sampler against one golden variant folder of upstream tensors.

Usage: python scripts/check_parity.py tests/golden/turbo_a [more folders...]
Prints a table of max abs/rel errors per tensor; exits 0 only when every tensor is within the
tolerances of tests/golden/README.md (integers and bools exact).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from acestep_worker.dev.parity import check_golden_dir, format_table  # noqa: E402


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    failed = 0
    for folder in argv:
        rows = check_golden_dir(folder)
        print(f"== {folder}")
        print(format_table(rows))
        bad = [r for r in rows if not r.passed]
        print(f"{len(rows) - len(bad)} passed, {len(bad)} failed\n")
        failed += len(bad)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
