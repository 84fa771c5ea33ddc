"""Benchmark of `nba_fast.Engine.decide` against the pure-Python `nba_fast.reference.Engine`.

The scenario is `generate.bank_segment`: by default 1,000,000 customers x 10 actions, every
action with an SQL eligibility rule, a propensity matrix and a do-not-contact list, decided at
`generate.NOW`. The Rust engine is timed best of 3 after a warm-up run; the reference engine,
which is far slower, once on the first 20,000 customers, and its per-customer rate is compared
with the Rust engine's. Both engines must give the same decisions and funnel on that sample.

Prints a markdown table and writes the figures to ``bench/results/decide.json``.
Run it with ``make bench`` (a release build); it refuses an unoptimised one.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nba_fast as nba
import numpy as np
import numpy.typing as npt
import pyarrow as pa
from generate import NOW, bank_segment
from nba_fast import _core, reference

RESULTS = Path(__file__).resolve().parent / "results" / "decide.json"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Benchmark nba_fast.Engine.decide.")
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--actions", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=3, help="timed runs; the best counts")
    parser.add_argument(
        "--reference-customers",
        type=int,
        default=20_000,
        help="sample for the reference engine (0: skip it)",
    )
    parser.add_argument("--output", type=Path, default=RESULTS, help="JSON results file")
    parser.add_argument(
        "--allow-dev-build",
        action="store_true",
        help="run on a dev-profile build (opt-level 1) too; figures are then not comparable",
    )
    args = parser.parse_args(argv)

    profile = getattr(_core, "BUILD_PROFILE", "unknown")
    if _core.DEBUG_BUILD:
        print(
            "bench_decide: nba_fast._core is a debug build (opt-level 0); benchmarks refuse it. "
            "Build with `make build-release` (or run `make bench`).",
            file=sys.stderr,
        )
        return 2
    if profile != "release" and not args.allow_dev_build:
        print(
            f"bench_decide: nba_fast._core is a {profile!r} build, not 'release'. "
            "Build with `make build-release` (or run `make bench`), or pass --allow-dev-build.",
            file=sys.stderr,
        )
        return 2

    print(f"Generating {args.customers:,} customers x {args.actions} actions ...", flush=True)
    customers, catalog, propensities, do_not_contact = bank_segment(
        args.customers, n_actions=args.actions, seed=args.seed
    )
    candidates = customers.num_rows * len(catalog)

    engine = nba.Engine(catalog)

    def decide() -> nba.DecisionResult:
        return engine.decide(
            customers, propensities=propensities, do_not_contact=do_not_contact, now=NOW
        )

    print("Timing nba_fast.Engine.decide ...", flush=True)
    decide()  # warm-up: thread pool, page faults, rule plans
    times, result = _timed(decide, args.repeat)
    best = min(times)
    rust: dict[str, Any] = {
        "engine": "nba_fast.Engine",
        "customers": customers.num_rows,
        "actions": len(catalog),
        "candidates": candidates,
        "decisions": result.decisions.num_rows,
        "times_s": times,
        "best_s": best,
        "customers_per_s": customers.num_rows / best,
        "candidates_per_s": candidates / best,
    }
    rows = [rust]

    ref: dict[str, Any] | None = None
    if args.reference_customers > 0:
        sample_size = min(args.reference_customers, customers.num_rows)
        sample = customers.slice(0, sample_size)
        sample_propensities: npt.NDArray[np.float64] = propensities[:sample_size]
        print(f"Timing nba_fast.reference.Engine on {sample_size:,} customers ...", flush=True)
        reference_engine = reference.Engine(catalog)
        started = time.perf_counter()
        expected = reference_engine.decide(
            sample, propensities=sample_propensities, do_not_contact=do_not_contact, now=NOW
        )
        elapsed = time.perf_counter() - started
        got = engine.decide(
            sample, propensities=sample_propensities, do_not_contact=do_not_contact, now=NOW
        )
        for name in ("decisions", "funnel"):
            difference = _first_difference(getattr(got, name), getattr(expected, name))
            if difference is not None:
                print(
                    f"bench_decide: the Rust and reference engines disagree on {name}: "
                    f"{difference}; no figures written.",
                    file=sys.stderr,
                )
                return 1
        ref = {
            "engine": "nba_fast.reference.Engine",
            "customers": sample_size,
            "actions": len(catalog),
            "candidates": sample_size * len(catalog),
            "decisions": expected.decisions.num_rows,
            "times_s": [elapsed],
            "best_s": elapsed,
            "customers_per_s": sample_size / elapsed,
            "candidates_per_s": sample_size * len(catalog) / elapsed,
        }
        rows.append(ref)

    speedup = rust["customers_per_s"] / ref["customers_per_s"] if ref else None
    print()
    print(_markdown(rows))
    if speedup is not None:
        shown = f"{speedup:,.0f}" if speedup >= 10 else f"{speedup:.1f}"
        print(f"\nPer customer, nba_fast.Engine is {shown}x as fast as the reference engine.")

    report = {
        "benchmark": "decide",
        "recorded_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "scenario": {
            "generator": "bench/generate.py:bank_segment",
            "customers": customers.num_rows,
            "actions": len(catalog),
            "seed": args.seed,
            "do_not_contact_rows": do_not_contact.num_rows,
            "now": NOW.isoformat(),
        },
        "build": {
            "nba_fast": nba.__version__,
            "profile": profile,
            "threads": os.environ.get("NBA_FAST_THREADS", "all cores"),
        },
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "pyarrow": pa.__version__,
            "numpy": np.__version__,
        },
        "results": rows,
        "speedup_per_customer": speedup,
        # Both engines gave the same decisions and funnel on the reference sample.
        "agrees_with_reference": ref is not None,
    }
    _write_json(args.output, report)
    print(f"Wrote {args.output}")
    return 0


def _timed(
    run: Callable[[], nba.DecisionResult], repeat: int
) -> tuple[list[float], nba.DecisionResult]:
    """Wall-clock seconds of `repeat` runs (at least one), and the last run's result."""
    times: list[float] = []
    result = None
    for _ in range(max(1, repeat)):
        started = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - started)
    assert result is not None
    return times, result


def _first_difference(got: pa.Table, expected: pa.Table) -> str | None:
    """None if the tables hold the same rows (schemas' nullability aside), else the first diff."""
    if got.column_names != expected.column_names:
        return f"columns {got.column_names} != {expected.column_names}"
    if got.num_rows != expected.num_rows:
        return f"{got.num_rows} rows != {expected.num_rows} rows"
    for index, (left, right) in enumerate(zip(got.to_pylist(), expected.to_pylist(), strict=True)):
        if left != right:
            return f"row {index}: {left} != {right}"
    return None


def _markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| engine | customers | actions | candidates | time (s) | customers/s | candidates/s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        runs = len(row["times_s"])
        timing = f"{row['best_s']:.3f}" + (f" (best of {runs})" if runs > 1 else "")
        lines.append(
            f"| `{row['engine']}` | {row['customers']:,} | {row['actions']} | "
            f"{row['candidates']:,} | {timing} | {row['customers_per_s']:,.0f} | "
            f"{row['candidates_per_s']:,.0f} |"
        )
    return "\n".join(lines)


def _write_json(path: Path, report: dict[str, Any]) -> None:
    """Writes atomically, so an interrupted run never leaves half a results file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".tmp")
    partial.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    os.replace(partial, path)


if __name__ == "__main__":
    sys.exit(main())
