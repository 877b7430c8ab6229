"""The fuzzing suite's long mode: thousands of seeded cases per input class through the command line.

    python benchmarks/fuzz.py [--cases 10000] [--first-seed 0] [--classes model data ...] [--keep DIR]

The cases and the contract are those of ``tests/fuzzing.py`` (the CI runs a few hundred per class from
seed 0); ``--cases`` is the total, split evenly over the classes. Prints, per class, how the cases ended
(exit 0: accepted; exit 2: refused with one line) and every case that broke the contract, with the seed
that reproduces it; ``--keep DIR`` copies each breaking case's folder there. Exits 1 if any case broke it.
"""
from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from fuzzing import CLASSES, Seeds, run_case  # noqa: E402

from neurocc.report import table  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, default=10_000)
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--classes", nargs="+", choices=sorted(CLASSES), default=sorted(CLASSES))
    ap.add_argument("--keep", type=Path, help="copy the folder of every case that breaks the contract here")
    args = ap.parse_args()
    warnings.simplefilter("ignore", DeprecationWarning)
    logging.disable(logging.WARNING)
    per_class = max(1, args.cases // len(args.classes))
    rows, broken = [], []
    with tempfile.TemporaryDirectory() as tmp:
        seeds = Seeds(Path(tmp) / "seeds")
        for cls in args.classes:
            codes, failures, t0 = {}, 0, time.perf_counter()
            for seed in range(args.first_seed, args.first_seed + per_class):
                folder = Path(tmp) / "case"
                verdict = run_case(cls, seed, seeds, folder)
                codes[verdict.code] = codes.get(verdict.code, 0) + 1
                if verdict.failure:
                    failures += 1
                    broken.append(f"{cls} seed {seed}: {verdict.failure}")
                    print(broken[-1], flush=True)
                    if args.keep:
                        shutil.copytree(folder, args.keep / f"{cls}-{seed}", dirs_exist_ok=True)
            rows.append([cls, per_class, codes.get(0, 0), codes.get(2, 0),
                         sum(v for k, v in codes.items() if k not in (0, 2)), failures,
                         f"{time.perf_counter() - t0:.0f}"])
    print(table(["class", "cases", "exit 0", "exit 2", "other exit", "broke the contract", "s"], rows))
    print(f"{sum(r[1] for r in rows):,} cases, {len(broken)} broke the contract")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
