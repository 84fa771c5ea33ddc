"""Benchmark of treatment rendering and SMS segment counting (issue 5, item 5).

Target: one million SMS texts rendered, with their segment counts, in a few seconds: in bulk,
not one Jinja call per row. Scenarios (generated data, fixed seed):

- ``sms_plain``: 1M SMS, slots only (``Hi {{ first_name }}, ... {{ customer_id }}``).
- ``sms_control``: 1M SMS with an ``if`` on a column and filters (``{{ first_name|title }}``,
  ``{{ expiry.strftime(...) }}``): rendered once per distinct value, then assembled.
- ``email_variants``: 100k emails (subject and a multi-line body) with variants by language and
  by state.
- ``segments_*``: `sms_segments` alone on 1M texts: single-part ASCII, single-part non-ASCII
  (UCS-2, with an emoji), two-part GSM-7 with a link, two-part GSM-7 with extension characters
  (packed exactly, character positions matter) and a link.
- ``jinja_per_row``: the baseline, one sandboxed Jinja render per row for ``sms_control``'s
  template, measured on 20k rows and scaled to 1M (labelled as such).

Each time is the best of ``--repeat`` runs (default 3), wall-clock and CPU (the CPU time of
this process, steadier when the machine is shared). Prints a markdown table and writes
``bench/results/render.json``. Run: ``.venv/bin/python bench/bench_render.py``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import nba_fast as nba
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from nba_fast import _core
from nba_fast.render import make_environment

RESULTS = Path(__file__).resolve().parent / "results" / "render.json"
SYLLABLES = ["an", "be", "ca", "do", "el", "fi", "ga", "ho", "ja", "ki", "lu", "ma", "no", "ri"]
SMS_PLAIN = (
    "Hi {{ first_name }}, your {{ card }} is ready. Apply today: "
    "https://u.plus/a/{{ customer_id }} Reply STOP to opt out"
)
SMS_CONTROL = (
    "{% if tier == 'gold' %}Gold member {% endif %}{{ first_name|title }}, your {{ card }} "
    "offer ends {{ expiry.strftime('%d %b') }}: https://u.plus/a/{{ customer_id }} STOP=opt out"
)
EMAIL = {
    "channel": "email",
    "subject": "{{ first_name|title }}, the {{ card }} is waiting",
    "body": (
        "Dear {{ first_name|title }} {{ last_name }},\n\n"
        "{% if tier == 'gold' %}As a gold member you pay no annual fee.\n{% endif %}"
        "Your balance of {{ balance }} qualifies you for the {{ card }}.\n"
        "APPLY TODAY: https://u.plus/apply?c={{ customer_id }}\n"
    ),
    "variant": [
        {
            "language": "es",
            "subject": "{{ first_name|title }}, la {{ card }} le espera",
            "body": (
                "Estimado/a {{ first_name|title }}:\n"
                "SOLICÍTELA HOY: https://u.plus/es?c={{ customer_id }}\n"
            ),
        },
        {
            "region": "CA",
            "body": (
                "Dear {{ first_name|title }},\nAPPLY TODAY.\n"
                "CA residents: see our privacy notice.\n"
            ),
        },
    ],
}


def names(rng: np.random.Generator, distinct: int, rows: int) -> pa.Array:
    """``rows`` strings drawn from ``distinct`` made-up names."""
    pool = {
        "".join(rng.choice(SYLLABLES, size=rng.integers(2, 4))).capitalize()
        for _ in range(distinct * 2)
    }
    values = sorted(pool)[:distinct]
    codes = pa.array(rng.integers(0, len(values), rows), pa.int32())
    return pa.DictionaryArray.from_arrays(codes, pa.array(values)).cast(pa.string())


def customers(rows: int, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)

    def pick(values: list[str], weights: list[float] | None = None) -> pa.Array:
        codes = rng.choice(len(values), size=rows, p=weights)
        return pa.array(values).take(pa.array(codes))

    start = date(2026, 12, 1)
    expiry = np.array([start + timedelta(days=d) for d in range(60)], dtype="datetime64[D]")
    return pa.table(
        {
            "customer_id": pa.array(np.arange(rows, dtype=np.int64)),
            "first_name": names(rng, 2000, rows),
            "last_name": names(rng, 5000, rows),
            "card": pick(["Standard Card", "Gold Card", "Travel Card", "Cashback Card"]),
            "tier": pick(["gold", "silver", "basic"], [0.1, 0.3, 0.6]),
            "expiry": pa.array(expiry[rng.integers(0, 60, rows)]),
            "balance": pa.array(rng.integers(0, 100_000, rows)),
            "language": pick(["en", "es"], [0.8, 0.2]),
            "state": pick(["CA", "NY", "TX", "FL"]),
            "country": pick(["US"]),
        }
    )


def decisions(people: pa.Table, channel: str, treatment: str) -> pa.Table:
    rows = people.num_rows
    return pa.table(
        {
            "customer_id": people.column("customer_id"),
            "action_id": pa.repeat(pa.scalar("standard_card"), rows),
            "channel": pa.repeat(pa.scalar(channel), rows),
            "treatment": pa.repeat(pa.scalar(treatment), rows),
        }
    )


def texts(rows: int, head: str, tail: str) -> pa.Array:
    ids = pa.array(np.arange(rows)).cast(pa.string())
    return pc.binary_join_element_wise(head, ids, tail, "")


def best(run: Callable[[], Any], repeat: int) -> tuple[tuple[float, float], Any]:
    """Best wall-clock and best CPU seconds of ``repeat`` runs (CPU time is steadier on a shared
    machine), and the last result."""
    walls, cpus, result = [], [], None
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        result = run()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return (min(walls), min(cpus)), result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="SMS rows (default 1M)")
    parser.add_argument("--emails", type=int, default=100_000, help="email rows (default 100k)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    if _core.DEBUG_BUILD:
        print("refusing to benchmark a debug build: run `make build-release` first")
        return 2

    treatments = nba.load_treatments(
        {
            "sms_plain": {"channel": "sms", "text": SMS_PLAIN},
            "sms_control": {"channel": "sms", "text": SMS_CONTROL},
            "email_variants": EMAIL,
        },
        source="bench_render.py",
    )
    people = customers(args.rows)
    results: list[dict[str, Any]] = []

    def record(name: str, rows: int, seconds: tuple[float, float], note: str) -> None:
        wall, cpu = seconds
        entry = {"scenario": name, "rows": rows, "seconds": round(wall, 3)}
        results.append({**entry, "cpu_seconds": round(cpu, 3), "note": note})
        print(f"{name}: {rows:,} rows in {wall:.3f} s (cpu {cpu:.3f} s; {note})", file=sys.stderr)

    for name in ("sms_plain", "sms_control"):
        plan = decisions(people, "sms", name)
        seconds, out = best(lambda p=plan: nba.render(p, people, treatments), args.repeat)
        segments = pc.value_counts(out.column("sms_segments")).to_pylist()
        record(name, args.rows, seconds, f"render + segments; parts {segments}")

    few = people.slice(0, args.emails)
    plan = decisions(few, "email", "email_variants")
    seconds, out = best(lambda: nba.render(plan, few, treatments), args.repeat)
    variants = pc.value_counts(out.column("variant")).to_pylist()
    record("email_variants", args.emails, seconds, f"subject + body; variants {variants}")

    offer = "your Standard Card offer is waiting, "
    fees = "offer: 0 fee, 5% back €, "
    cases = {
        "segments_ascii_1part": texts(
            args.rows, "Hi Stephen, your Standard Card is ready: https://u.plus/a/", " STOP"
        ),
        "segments_ucs2_1part": texts(
            args.rows, "¡Hola José! Tu tarjeta está lista 👋 https://u.plus/a/", " STOP"
        ),
        "segments_gsm_2part_link": texts(
            args.rows,
            "Hi Stephen, " + offer * 3 + "apply now at https://u.plus/apply?c=",
            " Reply STOP to opt out",
        ),
        "segments_gsm_2part_extension": texts(
            args.rows, "Hi Stephen, [Standard Card] " + fees * 5 + "https://u.plus/a/", " {STOP}"
        ),
    }
    for name, array in cases.items():
        seconds, (segments, _) = best(lambda a=array: nba.sms_segments(a), args.repeat)
        split = pc.sum(nba.sms.link_split(array)).as_py()
        parts = pc.value_counts(segments).to_pylist()
        record(name, args.rows, seconds, f"parts {parts}; links split {split}")

    sample = 20_000
    template = make_environment().from_string(SMS_CONTROL)
    rows = people.slice(0, sample).to_pylist()
    (wall, cpu), _ = best(lambda: [template.render(**row) for row in rows], 1)
    scale = args.rows / sample
    record(
        "jinja_per_row",
        args.rows,
        (wall * scale, cpu * scale),
        f"one render per row; measured on {sample:,} rows ({wall:.3f} s), scaled",
    )

    print("| scenario | rows | wall s | cpu s | note |")
    print("|---|---:|---:|---:|---|")
    for row in results:
        print(
            f"| {row['scenario']} | {row['rows']:,} | {row['seconds']:.3f} "
            f"| {row['cpu_seconds']:.3f} | {row['note']} |"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "machine": platform.platform(),
                "python": platform.python_version(),
                "results": results,
            },
            indent=2,
        )
        + "\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
