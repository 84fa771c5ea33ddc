"""Peak resident memory of nba_fast's job per stage: RSS sampled every 5 ms around one run of
`peers.nba_fast_job` (from the Parquet files), bucketed by the stage timings it reports.

    python bench/rss_stages.py bank-10m --caps
"""

from __future__ import annotations

import argparse
import threading
import time
from pathlib import Path

from peers import Stages, nba_fast_job
from scenarios import SCENARIOS, ensure


def _rss_mib() -> int:
    """This process's resident set size, MiB (0 where /proc is absent)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) >> 10
    except OSError:
        pass
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("scenario", choices=sorted(SCENARIOS))
    parser.add_argument("--caps", action="store_true", help="with the scenario's caps")
    parser.add_argument("--every", type=float, default=0.005, help="seconds between samples")
    args = parser.parse_args()
    data = ensure(SCENARIOS[args.scenario])
    samples: list[tuple[float, int]] = []
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            samples.append((time.perf_counter(), _rss_mib()))
            done.wait(args.every)

    sampler = threading.Thread(target=sample)
    stages = Stages()
    sampler.start()
    start = time.perf_counter()
    try:
        nba_fast_job(data, caps=args.caps, stages=stages)
    finally:
        done.set()
        sampler.join()
    # The stages ran one after another in the order they were recorded.
    print("| stage | seconds | peak RSS (MiB) | RSS at its end (MiB) |")
    print("|---|---:|---:|---:|")
    begin = start
    for stage, seconds in stages.seconds.items():
        if stage == "engine":  # the sum of the engine.* stages that follow
            continue
        end = begin + seconds
        inside = [rss for at, rss in samples if begin <= at < end]
        peak = f"{max(inside):,}" if inside else "-"
        last = f"{inside[-1]:,}" if inside else "-"
        print(f"| {stage} | {seconds:.3f} | {peak} | {last} |")
        begin = end
    print(f"\nwhole run: {max(rss for _, rss in samples):,} MiB peak")


if __name__ == "__main__":
    main()
