"""Benchmark of the volume-cap stage: greedy with fallback and the optimal allocation.

Issue 4's targets: the greedy must not sort every candidate (a full sort of the candidates'
priorities is timed alongside, for scale), and `allocation="optimal"` must reach within 0.1% of
its dual bound in about 20 passes over the candidates. The scenario is `generate.bank_segment`
(2M customers x 10 actions with rules) with every survivor kept for fallback, caps on each
action at 4% of the customers, on email at 15% and on SMS at 10%, and `max_per_customer` 1.

Times are the best of 3 (after a warm-up) of `decide` with the caps, minus the best of 3
without them. Prints a markdown table and writes ``bench/results/caps.json`` with the value
uplift of `optimal` over `greedy` (docs/semantics.md quotes it).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import nba_fast as nba
import numpy as np
from generate import NOW, bank_segment
from nba_fast import _core

RESULTS = Path(__file__).resolve().parent / "results" / "caps.json"


def caps_for(catalog: list[dict[str, Any]], customers: int) -> list[dict[str, Any]]:
    """A cap on every action (4% of the customers), on email (15%) and on SMS (10%)."""
    caps = [{"scope": f"action:{a['id']}", "max": customers * 4 // 100} for a in catalog]
    caps.append({"scope": "channel:email", "max": customers * 15 // 100})
    caps.append({"scope": "channel:sms", "max": customers * 10 // 100})
    return caps


def best_of(runs: int, call: Callable[[], Any]) -> tuple[float, Any]:
    result = call()  # warm-up
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        result = call()
        best = min(best, time.perf_counter() - start)
    return best, result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--customers", type=int, default=2_000_000)
    parser.add_argument("--actions", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--allow-dev-build", action="store_true")
    args = parser.parse_args(argv)
    if _core.BUILD_PROFILE != "release" and not args.allow_dev_build:
        print("bench_caps: needs a release build (make build-release)", file=sys.stderr)
        return 2

    customers, catalog, propensities, dnc = bank_segment(args.customers, args.actions)
    caps = caps_for(catalog, args.customers)
    inputs = {"propensities": propensities, "do_not_contact": dnc, "now": NOW}
    plain = nba.Engine(catalog)
    greedy = nba.Engine(catalog, caps=caps)
    optimal = nba.Engine(catalog, caps=caps, allocation="optimal")

    base, _ = best_of(args.repeat, lambda: plain.decide(customers, **inputs))
    greedy_s, greedy_result = best_of(args.repeat, lambda: greedy.decide(customers, **inputs))
    optimal_s, optimal_result = best_of(args.repeat, lambda: optimal.decide(customers, **inputs))
    survivors = sum(
        r["count"] for r in greedy_result.funnel.to_pylist() if r["stage"] == "not_suppressed"
    )
    # For scale: one full sort of as many doubles as there are surviving candidates.
    values = np.random.default_rng(0).random(survivors)
    sort_s, _ = best_of(args.repeat, lambda: np.sort(values, kind="quicksort"))

    g, o = greedy_result.allocation, optimal_result.allocation
    assert g is not None and o is not None
    funnel = greedy_result.funnel.to_pylist()
    fell_back = sum(r["count"] for r in funnel if r["stage"] == "fallback")
    capped_out = sum(r["count"] for r in funnel if r["stage"] == "capped_out")
    uplift = (o.objective - g.objective) / g.objective if g.objective else 0.0
    result = {
        "customers": args.customers,
        "actions": args.actions,
        "caps": len(caps),
        "surviving_candidates": survivors,
        "decide_without_caps_s": round(base, 4),
        "decide_greedy_s": round(greedy_s, 4),
        "added_by_greedy_s": round(greedy_s - base, 4),
        "allocate_greedy_s": round(greedy_result.timings.get("allocate", 0.0), 4),
        "decide_optimal_s": round(optimal_s, 4),
        "allocate_optimal_s": round(optimal_result.timings.get("allocate", 0.0), 4),
        "numpy_full_sort_of_survivors_s": round(sort_s, 4),
        "greedy_objective": g.objective,
        "optimal_objective": o.objective,
        "dual_bound": o.dual_bound,
        "certified_gap": o.gap,
        "passes": o.passes,
        "uplift_of_optimal": uplift,
        "decisions_greedy": greedy_result.decisions.num_rows,
        "decisions_optimal": optimal_result.decisions.num_rows,
        "top_choices_capped_out": capped_out,
        "fell_back": fell_back,
        "build_profile": _core.BUILD_PROFILE,
    }
    print(
        "| customers | survivors | decide | + greedy caps | + optimal | full sort (numpy) "
        "| greedy value | optimal value | uplift | gap | passes |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    print(
        f"| {args.customers:,} | {survivors:,} | {base:.3f} s | {greedy_s - base:.3f} s | "
        f"{optimal_s - base:.3f} s | {sort_s:.3f} s | {g.objective:,.0f} | {o.objective:,.0f} | "
        f"{uplift:+.2%} | {o.gap:.4%} | {o.passes} |"
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
