"""Runs one engine on one scenario in this (fresh) process and prints its measurements as JSON.

`report.py` starts one worker per engine and job, so each gets a clean heap: the peak resident
set size (``ru_maxrss``, which on Linux includes file pages mapped in) is that engine's alone.
Imports happen before the clock starts; each timed run goes from the Parquet files (in the page
cache after the first run) to the decisions as an Arrow table in memory.

    python bench/worker.py nba_fast bank-2m --caps --repeat 3 --save /tmp/nba.parquet
    python bench/worker.py memcpy          # the machine's copy bandwidth (1 GiB numpy copy)

Engines: ``nba_fast``, ``duckdb``, ``polars``, ``reference`` (on ``--sample`` customers),
``memcpy``, and ``decode-pyarrow`` / ``decode-polars``: the Parquet inputs decoded and nothing
decided, the floor under every engine that reads them with that reader.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
from peers import ENGINES, Stages, Tables, decode_floor, load, reference_job
from scenarios import SCENARIOS, Data, ensure

GIB = 1 << 30


def _status(key: str) -> int:
    """A ``/proc/self/status`` memory figure (e.g. ``VmRSS``, ``VmHWM``) in bytes; 0 elsewhere."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _peak_rss() -> int:
    """Peak resident set size of this process so far, in bytes (Linux reports KiB)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) * (1 if sys.platform == "darwin" else 1024)


def copy_bandwidth(size: int = GIB, repeat: int = 5) -> dict[str, float]:
    """Best-of-`repeat` time of copying a `size`-byte float64 array into another."""
    source = np.ones(size // 8, dtype=np.float64)
    target = np.empty_like(source)
    np.copyto(target, source)  # fault both in
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        np.copyto(target, source)
        best = min(best, time.perf_counter() - start)
    return {"bytes": float(size), "best_s": best, "bytes_per_s": size / best}


def run(
    engine: str,
    scenario: str,
    *,
    caps: bool,
    repeat: int,
    sample: int,
    threads: int | None,
    save: Path | None,
    source: str = "parquet",
) -> dict[str, Any]:
    """Times `repeat` runs of `engine` on `scenario`; returns the figures.

    `source` ``parquet``: each run reads the Parquet files; ``memory``: the tables are read
    into memory first (not timed) and each run starts from them."""
    if engine == "memcpy":
        return {"engine": "memcpy", **copy_bandwidth()}
    data = ensure(SCENARIOS[scenario])
    if engine in DECODERS:
        return decode(engine, data, repeat)
    if engine == "nba_fast":
        import nba_fast  # imported before the clock starts
        from nba_fast import _core

        if _core.BUILD_PROFILE != "release":
            raise SystemExit(
                f"worker: nba_fast._core is a {_core.BUILD_PROFILE!r} build; the benchmark needs "
                "a release build (make build-release)"
            )
    elif engine == "duckdb":
        import duckdb  # noqa: F401
    elif engine == "polars":
        import polars  # noqa: F401
    elif engine == "reference":
        import nba_fast.reference  # noqa: F401
    tables: Tables | None = None
    if source == "memory" and engine != "reference":
        tables = load(data)
    baseline = _status("VmRSS") or _peak_rss()
    times: list[float] = []
    stages: list[dict[str, float]] = []
    bytes_read = 0
    decisions = None
    for _ in range(repeat):
        record = Stages()
        start = time.perf_counter()
        if engine == "reference":
            decisions = reference_job(data, caps=caps, sample=sample, stages=record)
        elif engine == "nba_fast":
            decisions = ENGINES[engine](
                data, caps=caps, tables=tables, stages=record, threads=threads
            )
        else:
            decisions = ENGINES[engine](data, caps=caps, tables=tables, stages=record)
        times.append(time.perf_counter() - start)
        stages.append(record.seconds)
        bytes_read = record.bytes_read
    assert decisions is not None
    if save is not None:
        pq.write_table(decisions, save)
    customers = sample if engine == "reference" else data.scenario.customers
    customers = min(customers, data.scenario.customers)
    return _figures(
        engine,
        data,
        caps=caps,
        source="parquet" if engine == "reference" else source,
        customers=customers,
        decisions=decisions.num_rows,
        times=times,
        baseline=baseline,
        bytes_read=bytes_read,
        stages=stages[times.index(min(times))],
    )


def _figures(
    engine: str,
    data: Data,
    *,
    caps: bool,
    source: str,
    customers: int,
    decisions: int,
    times: list[float],
    baseline: int,
    bytes_read: int,
    stages: dict[str, float],
) -> dict[str, Any]:
    """One worker's figures: the timed runs, the rates of the best, and the process's RSS."""
    best = min(times)
    return {
        "engine": engine,
        "scenario": data.scenario.name,
        "caps": caps,
        "source": source,
        "customers": customers,
        "actions": data.scenario.actions,
        "candidates": customers * data.scenario.actions,
        "decisions": decisions,
        "times_s": times,
        "best_s": best,
        "customers_per_s": customers / best,
        "candidates_per_s": customers * data.scenario.actions / best,
        "baseline_rss_bytes": baseline,
        "peak_rss_bytes": max(_peak_rss(), _status("VmHWM")),
        "bytes_read": bytes_read,
        "stages_s": stages,
    }


DECODERS = {"decode-pyarrow": "pyarrow", "decode-polars": "polars"}
"""The decode-only jobs, by name: the reader each uses."""


def decode(engine: str, data: Data, repeat: int) -> dict[str, Any]:
    """Times `repeat` decodings of the scenario's Parquet inputs by `engine`'s reader."""
    reader = DECODERS[engine]
    if reader == "polars":
        import polars  # noqa: F401  (imported before the clock starts)
    baseline = _status("VmRSS") or _peak_rss()
    times: list[float] = []
    record = Stages()
    rows = 0
    for _ in range(repeat):
        record = Stages()
        start = time.perf_counter()
        rows = decode_floor(data, reader=reader, stages=record)
        times.append(time.perf_counter() - start)
    figures = _figures(
        engine,
        data,
        caps=False,
        source="parquet",
        customers=data.scenario.customers,
        decisions=0,
        times=times,
        baseline=baseline,
        bytes_read=record.bytes_read,
        stages={},
    )
    return {**figures, "rows_decoded": rows}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("engine", choices=[*ENGINES, "reference", "memcpy", *DECODERS])
    parser.add_argument("scenario", nargs="?", default="bank-2m", choices=sorted(SCENARIOS))
    parser.add_argument("--caps", action="store_true", help="apply the scenario's volume caps")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs; the best counts")
    parser.add_argument("--sample", type=int, default=20_000, help="customers (reference)")
    parser.add_argument("--threads", type=int, default=None, help="nba_fast threads")
    parser.add_argument("--save", type=Path, default=None, help="write the decisions here")
    parser.add_argument(
        "--source",
        choices=["parquet", "memory"],
        default="parquet",
        help="time from the Parquet files, or from the tables already in memory",
    )
    args = parser.parse_args(argv)
    figures = run(
        args.engine,
        args.scenario,
        caps=args.caps,
        repeat=max(1, args.repeat),
        sample=args.sample,
        threads=args.threads,
        save=args.save,
        source=args.source,
    )
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
