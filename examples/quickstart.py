"""nba_fast in one page: decide the next-best action for a synthetic bank segment.

U+ Bank has 100,000 customers (``--customers N`` for more) and a catalog of credit-card and loan
offers on email and SMS, each with an SQL eligibility rule. A model has scored every customer
for every offer (a propensity matrix) and some customers and addresses are on the
do-not-contact list. For each customer nba_fast picks the offer with the highest priority
P·V·C·L (propensity x value x context weight x lever) among those that are active, eligible
and contactable, and counts at every stage what it kept and why it dropped the rest: the funnel.

Run it with ``make demo``, or ``python examples/quickstart.py --customers 1000000``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nba_fast as nba
import pyarrow as pa
from nba_fast.cli import KEEP_STAGES, format_table, funnel_totals

# The generator lives with the benchmarks so that the demo and the figures share their data.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from generate import NOW, bank_segment


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--customers", type=int, default=100_000, help="segment size")
    parser.add_argument("--actions", type=int, default=6, help="catalog size (default 6)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the data")
    parser.add_argument("--rows", type=int, default=10, help="decisions to show")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    customers, catalog, propensities, do_not_contact = bank_segment(
        args.customers, n_actions=args.actions, seed=args.seed
    )
    generated = time.perf_counter() - started
    print(
        f"Generated {customers.num_rows:,} customers, {len(catalog)} actions and "
        f"{do_not_contact.num_rows:,} do-not-contact rows in {generated:.2f} s.\n"
    )
    print("Catalog")
    print(
        format_table(
            pa.table(
                {
                    "id": [action["id"] for action in catalog],
                    "channel": [action["channel"] for action in catalog],
                    "value": [action["value"] for action in catalog],
                    "eligibility": [action["eligibility"] for action in catalog],
                }
            )
        )
    )

    engine = nba.Engine(catalog)  # rules are parsed and checked once, here
    started = time.perf_counter()
    result = engine.decide(
        customers, propensities=propensities, do_not_contact=do_not_contact, now=NOW
    )
    elapsed = time.perf_counter() - started
    candidates = customers.num_rows * len(catalog)
    print(
        f"\nDecided {customers.num_rows:,} customers x {len(catalog)} actions "
        f"({candidates:,} candidates) in {elapsed * 1000:,.1f} ms: "
        f"{customers.num_rows / elapsed / 1e6:,.2f} M customers/s; "
        f"{result.decisions.num_rows:,} customers get a message.\n"
    )

    print(f"First {args.rows} decisions")
    shown = result.decisions.slice(0, args.rows).select(
        ["customer_id", "action_id", "channel", "treatment", "propensity", "value", "priority"]
    )
    print(format_table(shown))

    print("\nFunnel, all actions (- = dropped, with the reason)")
    print(format_table(funnel_totals(result.funnel, candidates)))
    print("\nFunnel per action")
    print(format_table(funnel_per_action(result.funnel, [action["id"] for action in catalog])))
    return 0


def funnel_per_action(funnel: pa.Table, action_ids: list[str]) -> pa.Table:
    """The keep stages as columns, one row per action in catalog order."""
    counts: dict[tuple[str, str], int] = {
        (row["stage"], row["action_id"]): row["count"] for row in funnel.to_pylist()
    }
    columns: dict[str, list[Any]] = {"action_id": action_ids}
    for stage in KEEP_STAGES:
        columns[stage] = [counts.get((stage, action_id), 0) for action_id in action_ids]
    return pa.table(columns)


if __name__ == "__main__":
    sys.exit(main())
