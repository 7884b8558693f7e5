"""Fuzz the DSL loader and --set overrides with 10,000 examples per property (CI runs 2,000).

Runs the properties of tests/test_fuzz_dsl.py with a larger budget; the only outcomes they
allow are a valid space or an AutoPeftError with a key path.

Usage:
    python benchmarks/fuzz_dsl.py [--examples 10000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=10_000)
    args = ap.parse_args()
    started = time.perf_counter()
    env = {**os.environ, "AUTOPEFT_FUZZ_EXAMPLES": str(args.examples)}
    code = subprocess.call([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(ROOT / "tests" / "test_fuzz_dsl.py")],
                           env=env, cwd=ROOT)
    print(f"wall time {time.perf_counter() - started:.0f} s")
    print(f"SUMMARY fuzz: {args.examples} examples x 3 properties: {'no bug found' if code == 0 else 'FAILED (see above)'}")
    return code


if __name__ == "__main__":
    sys.exit(main())
