"""What fresh memory costs on this machine: the first touch of newly allocated pages.

Every engine in `report.py` runs in a fresh process and allocates its working memory anew, so
the cost of touching a page for the first time is part of every figure, and on a virtual
machine it varies. This prints, for `--gib` GiB allocated `--repeat` times in this process, the
time to fill fresh pages and to fill the same pages again. numpy asks for transparent huge
pages on large arrays (as allocators may); ``NUMPY_MADVISE_HUGEPAGE=0`` measures 4 KiB pages,
which is what nba_fast's own allocations (glibc malloc) get:

    .venv/bin/python bench/first_touch.py
    NUMPY_MADVISE_HUGEPAGE=0 .venv/bin/python bench/first_touch.py
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--gib", type=float, default=1.0, help="GiB allocated each time")
    parser.add_argument("--repeat", type=int, default=3, help="allocations, one after another")
    args = parser.parse_args()
    words = int(args.gib * (1 << 30)) // 8
    for run in range(1, args.repeat + 1):
        start = time.perf_counter()
        pages = np.ones(words)  # allocated and filled: every page touched for the first time
        fresh = time.perf_counter() - start
        start = time.perf_counter()
        pages[:] = 2.0  # the same pages again
        again = time.perf_counter() - start
        del pages
        print(
            f"allocation {run}: fresh pages {fresh / args.gib:.3f} s/GiB, "
            f"the same pages again {again / args.gib:.3f} s/GiB"
        )


if __name__ == "__main__":
    main()
