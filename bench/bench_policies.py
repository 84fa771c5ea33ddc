"""Benchmark of the contact-policy stage: what the interaction history adds to `decide`.

Issue 3's target: 20 million history events against 2 million customers must add well under a
second to `decide` (release build). The scenario is `generate.bank_segment` (2M customers x 10
actions with rules) plus a deterministic history of 20M events over 90 days, with its string
columns dictionary-encoded as a database or Parquet reader hands them over, and three policies:
a 60/30-day email cool-down by group, a weekly limit across channels with a per-customer
threshold column, and an action-level suppression on clicks.

The time is the best of 3 runs (after a warm-up) of `decide` with the history and policies, minus
the best of 3 without them. Prints a markdown table and writes ``bench/results/policies.json``.
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
import pyarrow as pa
import pyarrow.compute as pc
from generate import NOW, NOW_MICROS, bank_segment
from nba_fast import _core

RESULTS = Path(__file__).resolve().parent / "results" / "policies.json"
POLICIES = [
    {"name": "email_cooldown", "kind": "suppress", "level": "group", "channel": "email",
     "outcomes": ["pending", "sent"], "threshold": 1, "window_days": 30, "suppress_days": 60},
    {"name": "weekly_cap", "kind": "limit", "level": "customer", "channel": "*",
     "outcomes": ["sent", "delivered"], "threshold": 3, "window_days": 7,
     "threshold_column": "max_per_week"},
    {"name": "clicked_recently", "kind": "suppress", "level": "action", "channel": "*",
     "outcomes": ["clicked"], "threshold": 1, "window_days": 14, "suppress_days": 14},
]  # fmt: skip


def dictionary(codes: np.ndarray[Any, Any], values: Sequence[str]) -> pa.DictionaryArray:
    return pa.DictionaryArray.from_arrays(pa.array(codes, pa.int32()), pa.array(values))


def history(
    n_events: int, n_customers: int, catalog: list[dict[str, Any]], seed: int = 0
) -> pa.Table:
    """`n_events` events of random customers over the 90 days before `NOW`."""
    rng = np.random.default_rng(seed)
    action = rng.integers(0, len(catalog) + 2, n_events)  # + 2 retired actions
    ids = [a["id"] for a in catalog] + ["retired_offer_a", "retired_offer_b"]
    groups = sorted({a["group"] for a in catalog} | {"Retired"})
    issues = sorted({a["issue"] for a in catalog})
    channels = ["email", "sms"]
    group_of = np.array([groups.index(a["group"]) for a in catalog] + [groups.index("Retired")] * 2)
    issue_of = np.array([issues.index(a["issue"]) for a in catalog] + [0, 0])
    channel_of = np.array([channels.index(a["channel"]) for a in catalog] + [0, 1])
    outcomes = ["pending", "sent", "delivered", "clicked", "failed"]
    ninety_days = 90 * 86_400_000_000
    timestamps = NOW_MICROS - rng.integers(0, ninety_days, n_events)
    outcome = rng.choice(len(outcomes), n_events, p=[0.1, 0.5, 0.3, 0.05, 0.05])
    return pa.table(
        {
            "customer_id": pa.array(rng.integers(0, n_customers, n_events), pa.int64()),
            "action_id": dictionary(action, ids),
            "issue": dictionary(issue_of[action], issues),
            "group": dictionary(group_of[action], groups),
            "channel": dictionary(channel_of[action], channels),
            "outcome": dictionary(outcome, outcomes),
            "timestamp": pa.array(timestamps, pa.timestamp("us", tz="UTC")),
        }
    )  # fmt: skip


def scale_ids(table: pa.Table, scale: int) -> pa.Table:
    """`table` with its integer customer_id multiplied by `scale`."""
    i = table.schema.get_field_index("customer_id")
    ids = pc.multiply(table.column(i), pa.scalar(scale, pa.int64()))  # nulls stay null
    return table.set_column(i, "customer_id", ids)


def best_of(runs: int, call: Callable[[], Any]) -> float:
    call()  # warm-up
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - start)
    return best


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--customers", type=int, default=2_000_000)
    parser.add_argument("--events", type=int, default=20_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--allow-dev-build", action="store_true")
    parser.add_argument(
        "--id-scale",
        type=int,
        default=1,
        help="multiply every customer_id by this: 10**12 spreads them too far for the dense "
        "history index, which measures the hashed one",
    )
    args = parser.parse_args(argv)
    if _core.BUILD_PROFILE != "release" and not args.allow_dev_build:
        print("bench_policies: needs a release build (make build-release)", file=sys.stderr)
        return 2

    customers, catalog, propensities, dnc = bank_segment(args.customers, 10)
    rng = np.random.default_rng(1)
    caps = rng.choice([1, 2, 5], args.customers).astype("int64")
    customers = customers.append_column(
        "max_per_week", pa.array(caps, pa.int64(), mask=rng.random(args.customers) < 0.8)
    )
    events = history(args.events, args.customers, catalog)
    if args.id_scale != 1:
        customers, dnc, events = (scale_ids(t, args.id_scale) for t in (customers, dnc, events))
    plain = nba.Engine(catalog)
    with_policies = nba.Engine(catalog, policies=POLICIES)

    def run_plain() -> Any:
        return plain.decide(customers, propensities=propensities, do_not_contact=dnc, now=NOW)

    def run_policies() -> Any:
        return with_policies.decide(
            customers, propensities=propensities, do_not_contact=dnc, history=events, now=NOW
        )

    base = best_of(args.repeat, run_plain)
    full = best_of(args.repeat, run_policies)
    funnel = run_policies().funnel.to_pylist()
    suppressed = sum(r["count"] for r in funnel if r["stage"].startswith("suppressed:"))
    result = {
        "customers": args.customers,
        "events": args.events,
        "id_scale": args.id_scale,
        "decide_without_policies_s": round(base, 4),
        "decide_with_policies_s": round(full, 4),
        "added_by_policies_s": round(full - base, 4),
        "candidates_suppressed": suppressed,
        "build_profile": _core.BUILD_PROFILE,
    }
    print("| customers | history events | decide without | with 3 policies | added | suppressed |")
    print("|---:|---:|---:|---:|---:|---:|")
    print(
        f"| {args.customers:,} | {args.events:,} | {base:.3f} s | {full:.3f} s | "
        f"{full - base:.3f} s | {suppressed:,} |"
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
