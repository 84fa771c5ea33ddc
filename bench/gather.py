"""What scattered reads cost on this machine, on one core and on both at once.

The caps' ordered phase (`allocate.rs`) takes each customer's turn in priority order, so the
candidate it reads next is anywhere in memory; the parallel blocks split those turns over both
cores. How much two cores gain there is bounded by how many scattered reads the machine serves
at once, which this measures: each process sums ``--reads`` elements of a ``--mib`` MiB array
(4 KiB pages, as glibc malloc gives nba_fast) at random positions, one process alone and then
``--processes`` at once, and prints the reads per second in all:

    .venv/bin/python bench/gather.py
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import time
from typing import Any

os.environ.setdefault("NUMPY_MADVISE_HUGEPAGE", "0")

import numpy as np  # after the page size is chosen


def _gather(mib: int, reads: int, seed: int, start: Any, out: Any) -> None:
    values = np.arange(mib * (1 << 20) // 4, dtype=np.uint32)
    positions = np.random.default_rng(seed).integers(0, len(values), reads, dtype=np.int64)
    start.wait()
    clock = time.perf_counter()
    total = 0
    for piece in np.array_split(positions, 64):  # keeps the gathered copy in cache
        total += int(values.take(piece).sum())
    out.put((time.perf_counter() - clock, total))


def _run(processes: int, mib: int, reads: int) -> float:
    """Reads per second, in all, of `processes` gathering at once."""
    start = mp.Barrier(processes)
    out: Any = mp.Queue()
    workers = [
        mp.Process(target=_gather, args=(mib, reads, seed, start, out)) for seed in range(processes)
    ]
    for worker in workers:
        worker.start()
    seconds = max(out.get()[0] for _ in workers)
    for worker in workers:
        worker.join()
    return processes * reads / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--mib", type=int, default=256, help="MiB of the array each reads")
    parser.add_argument("--reads", type=int, default=20_000_000, help="reads per process")
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    for run in range(1, args.repeat + 1):
        one = _run(1, args.mib, args.reads)
        many = _run(args.processes, args.mib, args.reads)
        print(
            f"run {run}: 1 process {one / 1e6:.1f} M reads/s, "
            f"{args.processes} at once {many / 1e6:.1f} M reads/s in all ({many / one:.2f}x)"
        )


if __name__ == "__main__":
    main()
