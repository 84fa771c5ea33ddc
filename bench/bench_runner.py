"""Benchmark of one outbound run end to end: `nba_fast.runner.run_campaign` into SQLite.

The scenario is the demo's phase 3 campaign (five card offers on email and SMS, SQL rules, the
60/30-day email cooldown, Jinja templates) over ``--customers`` generated U+ Bank customers
(default 1,000,000) with their propensities in Parquet (5 per customer), written to a fresh
SQLite database (or ``--db``). It times the runner's stages, as `RunReport.timings` reports
them: ``inputs`` (reading the Parquet files), ``decide`` (the history read and the Rust
engine), ``render`` (templates, SMS segments, the action_details table) and ``write`` (the
ingest of action_details and interaction_history, and the commit), and prints the process's
peak RSS. One run, cold: this is the cost of a real daily run.

    python bench/bench_runner.py                    # 1M customers, SQLite in a temp folder
    BUILD=dev python bench/bench_runner.py          # labels the figures with the build profile
    python bench/bench_runner.py --customers 100000 --db postgresql://postgres@127.0.0.1/test

Writes ``bench/results/runner.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq
from nba_fast import _core
from nba_fast.demo import PHASE_DAYS, campaign_toml
from nba_fast.demo_data import MEAN_PROPENSITY, uplus_customers, uplus_propensities
from nba_fast.runner import run_campaign

RESULTS = Path(__file__).resolve().parent / "results" / "runner.json"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--db", default=None, help="database URL (default: a fresh SQLite file)")
    args = parser.parse_args()
    if _core.DEBUG_BUILD:
        parser.error("nba_fast is an opt-level 0 build: `make build` or `make build-release` first")

    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder)
        started = time.perf_counter()
        customers = uplus_customers(args.customers)
        pq.write_table(customers, out / "customers.parquet")
        pq.write_table(
            uplus_propensities(customers, list(MEAN_PROPENSITY)), out / "propensities.parquet"
        )
        generated = time.perf_counter() - started
        del customers
        db = args.db or f"sqlite:///{out / 'bench.db'}"
        path = out / "campaign.toml"
        path.write_text(campaign_toml(3, database=db, email_cap=0))
        started = time.perf_counter()
        report = run_campaign(path, db=db, now=PHASE_DAYS[2], run_id="bench")
        total = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # _core tells opt-level 0 from the rest only: say which profile was built, e.g. BUILD=dev.
    build = "opt-level 0" if _core.DEBUG_BUILD else os.environ.get("BUILD", "optimised") + " build"
    rows = [(stage, seconds) for stage, seconds in report.timings.items()]
    print(f"run_campaign, {report.customers:,} customers x 5 actions, {build}, {db.split(':')[0]}")
    print(f"(data generated and written to Parquet in {generated:.1f} s, not counted)\n")
    print("| stage | seconds |\n|---|---:|")
    for stage, seconds in rows:
        print(f"| {stage} | {seconds:.2f} |")
    print(f"| **total** (incl. campaign load, claim) | **{total:.2f}** |")
    print(f"\n{report.decisions:,} decisions ({report.by_channel}); peak RSS {peak_mb:,.0f} MB")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "customers": report.customers,
                "decisions": report.decisions,
                "database": db.split(":")[0],
                "build": build,
                "timings_s": report.timings,
                "total_s": total,
                "peak_rss_mb": peak_mb,
            },
            indent=2,
        )
        + "\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
