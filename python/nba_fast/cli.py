"""The ``nba-fast`` command line (also ``python -m nba_fast``): ``run`` and ``demo``.

Results go to stdout, progress and errors to stderr; the exit code says what happened
(`EXIT_CODES`), so a scheduler can retry a database error and page someone for a campaign error.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from collections.abc import Sequence
from datetime import datetime
from typing import Any, TextIO

import pyarrow as pa

from nba_fast._core import ConfigError, DataError, NbaFastError, RuleError, SchemaError

__all__ = ["EXIT_CODES", "ProgressBar", "format_table", "funnel_totals", "main"]

EXIT_CODES: dict[int, str] = {
    0: "done (also: the run was already committed, so nothing was written again)",
    1: "internal error (a bug: please report it with the traceback)",
    2: "usage error (bad arguments)",
    3: "campaign error: the campaign file, a rule or a template is wrong",
    4: "data error: an input file or query does not fit the campaign",
    5: "database error: the database cannot be reached or refused a statement",
    6: "run-id conflict: the run id belongs to another campaign or another --now",
    130: "interrupted (Ctrl-C); nothing of the run was committed, run it again",
}
"""Exit codes of ``nba-fast``."""

# Stages that keep candidates, in pipeline order; every other funnel stage is a drop reason.
KEEP_STAGES = ("candidate", "eligible", "contactable", "not_suppressed", "top_choice", "selected")


def _epilog() -> str:
    codes = "\n".join(f"  {code:>3}  {meaning}" for code, meaning in EXIT_CODES.items())
    return f"exit codes:\n{codes}"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nba-fast",
        description="Next-best-action outbound runs: decide, render, write action_details.",
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = commands.add_parser(
        "run",
        help="run a campaign file once (exactly once per run id)",
        description="Decide and write one outbound run of a campaign to its database: "
        "action_details rows and pending interaction_history events, in one transaction. "
        "Running a committed run id again writes nothing; running one whose process was "
        "killed redoes it with the decision time it recorded.",
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("campaign", metavar="CAMPAIGN.toml", help="the campaign file")
    run.add_argument("--db", metavar="URL", help="database URL (default: the campaign's)")
    run.add_argument(
        "--now",
        metavar="ISO",
        type=_instant,
        help="decision time, ISO 8601 (naive = UTC; default: now, or a killed run's own)",
    )
    run.add_argument("--run-id", metavar="ID", help="run id (default: CAMPAIGN-YYYY-MM-DD)")
    run.add_argument("--dry-run", action="store_true", help="decide and render, write nothing")
    demo = commands.add_parser(
        "demo",
        help="the U+ Bank story, phase by phase, on generated data",
        description="Generate U+ Bank's customers and campaign files under --out and run the "
        "five phases of the outbound story against --db, printing what each changed.",
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.add_argument(
        "--customers", type=_positive, default=100_000, metavar="N", help="default 100000"
    )
    demo.add_argument(
        "--db", default="sqlite:///nba_demo.db", metavar="URL", help="default sqlite:///nba_demo.db"
    )
    demo.add_argument(
        "--out", default="uplus_bank", metavar="DIR", help="data and campaign files (./uplus_bank)"
    )
    demo.add_argument("--seed", type=int, default=0, help="random seed of the data (default 0)")
    return parser


def _instant(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 date-time: {text!r}") from err


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from err
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the exit code (see `EXIT_CODES`)."""
    args = _parser().parse_args(argv)
    from nba_fast.runner import RunConflictError
    from nba_fast.store import DatabaseError

    try:
        if args.command == "run":
            return _run(args)
        from nba_fast.demo import run_demo

        run_demo(customers=args.customers, db=args.db, out=args.out, seed=args.seed)
        return 0
    except KeyboardInterrupt:
        print("\nnba-fast: interrupted; nothing of the run was committed", file=sys.stderr)
        return 130
    except RunConflictError as err:
        return _fail(6, "run-id conflict", err)
    except DatabaseError as err:
        return _fail(5, "database error", err)
    except (DataError, SchemaError) as err:
        return _fail(4, "data error", err)
    except (ConfigError, RuleError) as err:
        return _fail(3, "campaign error", err)
    except NbaFastError as err:
        return _fail(4, "error", err)
    except Exception:
        print("nba-fast: internal error:", file=sys.stderr)
        traceback.print_exc()
        return 1


def _fail(code: int, kind: str, err: BaseException) -> int:
    print(f"nba-fast: {kind}: {err}", file=sys.stderr)
    return code


def _run(args: argparse.Namespace) -> int:
    from nba_fast.runner import run_campaign

    bar = ProgressBar(sys.stderr)
    report = run_campaign(
        args.campaign,
        db=args.db,
        now=args.now,
        run_id=args.run_id,
        dry_run=args.dry_run,
        progress=bar,
    )
    bar.finish()
    print(describe_run(report))
    return 0


def describe_run(report: Any) -> str:
    """A run report in words and tables, as ``nba-fast run`` prints it."""
    lines = [f"run {report.run_id} of campaign {report.campaign} on {report.database}"]
    lines.append(f"  now: {report.now.isoformat()}")
    if report.status == "already_committed":
        lines.append(
            f"  already committed earlier ({report.decisions:,} decisions): nothing written"
        )
        return "\n".join(lines)
    if report.status == "dry_run":
        lines.append(f"  dry run: {report.decisions:,} decisions, nothing written")
    else:
        redo = (
            " (redone: an earlier attempt claimed it and did not finish; its now was used)"
            if report.resumed
            else ""
        )
        lines.append(
            f"  committed{redo}: {report.written:,} action_details rows and as many pending "
            "interaction_history events"
        )
    channels = ", ".join(f"{channel} {count:,}" for channel, count in report.by_channel.items())
    lines.append(f"  {report.customers:,} customers, {report.decisions:,} decisions ({channels})")
    if report.ignored_propensities:
        lines.append(
            f"  {report.ignored_propensities:,} propensity rows of actions not in this "
            "campaign left out"
        )
    if report.timings:
        times = ", ".join(f"{stage} {seconds:.2f} s" for stage, seconds in report.timings.items())
        lines.append(f"  time: {times}")
    candidates = sum(
        row["count"] for row in report.funnel.to_pylist() if row["stage"] == "candidate"
    )
    lines.append("\nfunnel")
    lines.append(format_table(funnel_totals(report.funnel, candidates)))
    return "\n".join(lines)


def funnel_totals(funnel: pa.Table, candidates: int) -> pa.Table:
    """The funnel summed over actions: one row per stage, drops indented under their stage."""
    totals: dict[str, int] = {}
    for row in funnel.to_pylist():
        totals[row["stage"]] = totals.get(row["stage"], 0) + row["count"]
    stages = [stage if stage in KEEP_STAGES else f"  - {stage}" for stage in totals]
    counts = list(totals.values())
    shares = [f"{100.0 * count / candidates:5.1f} %" if candidates else "" for count in counts]
    return pa.table({"stage": stages, "count": counts, "of candidates": shares})


def format_table(table: pa.Table) -> str:
    """A plain-text table: numbers right-aligned with thousands separators, text left-aligned."""
    header = list(table.column_names)
    cells = [[_cell(value) for value in table.column(name).to_pylist()] for name in header]
    numeric = [
        pa.types.is_integer(field.type) or pa.types.is_floating(field.type)
        for field in table.schema
    ]
    widths = [
        max([len(name), *(len(cell) for cell in column)])
        for name, column in zip(header, cells, strict=True)
    ]

    def line(values: Sequence[str]) -> str:
        return "  ".join(
            value.rjust(width) if right else value.ljust(width)
            for value, width, right in zip(values, widths, numeric, strict=True)
        ).rstrip()

    rows = [line(header), line(["-" * width for width in widths])]
    rows += [line(row) for row in zip(*cells, strict=True)]
    return "\n".join(rows)


def _cell(value: object) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.4f}" if abs(value) < 1 else f"{value:,.2f}"
    return str(value).replace("\n", " ")


class ProgressBar:
    """A one-line progress bar on a terminal; on anything else, one line per finished stage."""

    def __init__(self, stream: TextIO, width: int = 30) -> None:
        self.stream = stream
        self.width = width
        self.tty = stream.isatty()
        self.stage = ""
        self.started = time.perf_counter()
        self.shown = 0.0

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage != self.stage:
            self.stage = stage
            self.started = time.perf_counter()
        finished = done >= total
        if self.tty:
            now = time.perf_counter()
            if not finished and now - self.shown < 0.1:
                return
            self.shown = now
            filled = self.width * done // max(total, 1)
            bar = "#" * filled + "." * (self.width - filled)
            count = f" {done:,}/{total:,}" if total > 1 else ""
            self.stream.write(f"\r{stage:<7} [{bar}] {100 * done // max(total, 1):3d}%{count}")
            if finished:
                self.stream.write(f" {now - self.started:.2f} s\n")
        elif finished:
            elapsed = time.perf_counter() - self.started
            self.stream.write(f"nba-fast: {stage} done in {elapsed:.2f} s\n")
        self.stream.flush()

    def finish(self) -> None:
        """Ends the bar's line (nothing to do off a terminal)."""
        self.stream.flush()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
