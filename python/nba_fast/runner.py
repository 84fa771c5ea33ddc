"""An outbound run, end to end and exactly once: campaign file in, ``action_details`` out.

`run_campaign` reads the campaign and its inputs, then works in two transactions, each under the
database's run lock (`nba_fast.store.Store.transaction`):

1. **claim**: create the tables if absent and record the run in ``runs`` as ``running`` with its
   decision time ``now``. A run already ``committed`` stops here: nothing is written again.
   A run left ``running`` by a process that died is redone with its recorded ``now``, so the
   redo decides exactly what the lost run would have.
2. **decide and write**: read ``interaction_history`` (inside the lock, so a concurrent run's
   events are seen and its customers are not sent to twice), decide, render, write every
   ``action_details`` row and every ``pending`` event, and mark the run ``committed``, all in
   one transaction. A crash anywhere before its COMMIT leaves none of it; after, all of it.
   A run that fails with an error (bad data, a refused write) also deletes the claim it made,
   so that a rerun once fixed is a fresh run at its own ``now``.

The primary key of ``action_details`` and the unique key of ``interaction_history`` (both with
``run_id``) are the last line of defence: a bug that tried to write a run twice would fail, not
duplicate.

For tests, ``NBA_FAST_TEST_PAUSE_AT=STAGE`` (one of `PAUSE_STAGES`) makes the run print
``nba-fast: paused at STAGE`` on stderr and sleep ``NBA_FAST_TEST_PAUSE_SECONDS`` (default 60)
there, so a test can kill the process at that exact point.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.ipc as pa_ipc
import pyarrow.parquet as pq

from nba_fast._core import DataError, NbaFastError, RuleError, SchemaError
from nba_fast.api import Engine
from nba_fast.campaign import Campaign, InputSource, load_campaign
from nba_fast.render import TemplateError, check_columns, load_treatments, render
from nba_fast.store import (
    ACTION_DETAILS_SCHEMA,
    HISTORY_SCHEMA,
    Store,
    _is_text_type,
    redact,
)

__all__ = [
    "PAUSE_ENV",
    "PAUSE_STAGES",
    "Progress",
    "RunConflictError",
    "RunReport",
    "read_input",
    "run_campaign",
]

PAUSE_ENV = "NBA_FAST_TEST_PAUSE_AT"
"""Environment variable naming the stage at which a run pauses (tests only)."""

PAUSE_STAGES: tuple[str, ...] = ("claimed", "decided", "mid_write", "before_commit")
"""Where a run can be paused: after the claim's commit; after deciding (inside the write
transaction); after ``action_details`` is written and before the history; just before COMMIT."""

Progress = Callable[[str, int, int], None]
"""``progress(stage, done, total)``: called as long work advances."""


class RunConflictError(NbaFastError):
    """The run id is already taken by a run of another campaign or with another ``now``."""


@dataclass(frozen=True)
class RunReport:
    """What a run did.

    Attributes:
        run_id: the run's id.
        campaign: the campaign's name.
        database: the database URL, password redacted.
        now: the decision time used (for a redo, the one recorded by the first attempt).
        status: ``committed`` (this call wrote the run), ``already_committed`` (an earlier
            call did; nothing was written) or ``dry_run`` (nothing was written).
        resumed: this call redid a run that an earlier, killed attempt had claimed.
        customers: customers read.
        decisions: decisions of the run.
        written: ``action_details`` rows this call wrote (0 unless ``committed``).
        by_channel: decisions per channel.
        funnel: the engine's funnel (empty for ``already_committed``).
        timings: wall-clock seconds of the stages (inputs, decide, render, write).
        ignored_propensities: propensity rows for actions the campaign does not have (a
            model scores many actions; a campaign runs some), left out.
        sample: the first few action_details rows (empty for ``already_committed``).
    """

    run_id: str
    campaign: str
    database: str
    now: datetime
    status: str
    resumed: bool = False
    customers: int = 0
    decisions: int = 0
    written: int = 0
    by_channel: dict[str, int] = field(default_factory=dict)
    funnel: pa.Table = field(default_factory=lambda: pa.table({}))
    timings: dict[str, float] = field(default_factory=dict)
    sample: pa.Table = field(default_factory=lambda: pa.table({}))
    ignored_propensities: int = 0


def _pause(stage: str) -> None:
    if os.environ.get(PAUSE_ENV) == stage:
        print(f"nba-fast: paused at {stage}", file=sys.stderr, flush=True)
        time.sleep(float(os.environ.get("NBA_FAST_TEST_PAUSE_SECONDS", "60")))


def _utc(now: datetime) -> datetime:
    if now.tzinfo is None or now.utcoffset() is None:
        return now.replace(tzinfo=UTC)
    return now.astimezone(UTC)


def read_input(source: InputSource, store: Store | None) -> pa.Table:
    """Reads one campaign input: a Parquet, CSV or Arrow IPC file, or a SQL query.

    Raises:
        DataError: the file cannot be read as its format; the message names the file.
        DatabaseError: the query fails, or tries to write (it runs read-only).
    """
    if source.sql is not None:
        if store is None:
            raise DataError(f"{source.field}: a SQL input needs a database")
        return store.read_only_query(source.sql, purpose=f"read {source.field} ({source.sql!r})")
    path = source.path
    assert path is not None
    try:
        if source.format == "parquet":
            return pq.read_table(path)
        if source.format == "csv":
            return pa_csv.read_csv(path)
        try:
            with pa_ipc.open_file(path) as reader:
                return reader.read_all()
        except pa.ArrowInvalid:  # not the file format: perhaps the stream format
            with open(path, "rb") as file, pa_ipc.open_stream(file) as stream:
                return stream.read_all()
    except (OSError, pa.ArrowException) as err:
        raise DataError(f"{path}: cannot read {source.field} as {source.format}: {err}") from err


def run_campaign(
    path: str | os.PathLike[str],
    *,
    db: str | None = None,
    now: datetime | None = None,
    run_id: str | None = None,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> RunReport:
    """Runs a campaign once: decides and writes ``action_details`` and ``pending`` history events.

    Args:
        path: the campaign file (see docs/campaign.md).
        db: the database URL; default: the campaign's ``database``.
        now: the decision time (naive = UTC); default: the current time, or for a run that
            was claimed but not finished, the time it recorded.
        run_id: the run's id; default ``CAMPAIGN-YYYY-MM-DD`` of `now`.
        dry_run: decide and render, but write nothing (the database is only read), as
            running the run would: a run already claimed at its recorded now, a committed
            one not at all (``already_committed``), another ``now`` a `RunConflictError`.
        progress: called with ``(stage, done, total)`` as the run advances.

    Returns:
        What the run did (see `RunReport`). Running a committed run again returns
        ``status="already_committed"`` and writes nothing.

    Raises:
        CampaignError: the campaign file is wrong (before anything is read or written).
        DataError, SchemaError, RuleError: the inputs do not fit the campaign.
        DatabaseError: the database fails.
        RunConflictError: `run_id` belongs to a run of another campaign or another `now`.
    """
    campaign = load_campaign(path)
    url = db or campaign.database
    explicit_now = now is not None
    now = _utc(now) if now is not None else datetime.now(UTC)
    run_id = run_id or f"{campaign.name}-{now:%Y-%m-%d}"
    report = _Progress(progress)
    timings: dict[str, float] = {}

    treatments = load_treatments(campaign.treatments, source=str(campaign.path))
    try:
        engine = Engine(
            campaign.actions,
            policies=campaign.policies,
            caps=campaign.caps,
            allocation=campaign.allocation,
            max_per_customer=campaign.max_per_customer,
        )
    except RuleError as err:
        raise RuleError(f"{campaign.path}: {err}") from err
    needs_sql = any(s is not None and s.sql is not None for s in _sources(campaign))
    dry_without_db = dry_run and url.startswith("sqlite:///") and not needs_sql
    dry_without_db = dry_without_db and not Path(url[len("sqlite:///") :]).exists()
    store = None if dry_without_db else Store(url, read_only=dry_run)
    try:
        started = time.perf_counter()
        report("inputs", 0, 1)
        customers, propensities, do_not_contact = _read_inputs(campaign, store)
        propensities, ignored = _campaign_propensities(propensities, campaign)
        try:
            check_columns(treatments, customers.schema)
        except TemplateError as err:
            raise TemplateError(f"{campaign.path}: {err}") from err
        except (DataError, SchemaError) as err:  # the customers lack a column
            named = _name_culprit(err, campaign)
            if named is None:
                raise
            raise named from err
        id_type = customers.schema.field("customer_id").type
        report("inputs", 1, 1)
        timings["inputs"] = time.perf_counter() - started

        def decide(store: Store | None, now: datetime) -> tuple[Any, pa.Table]:
            started = time.perf_counter()
            report("decide", 0, 1)
            history = None
            if campaign.policies and store is not None and store.table_exists("runs"):
                try:
                    since: datetime | None = now - timedelta(days=campaign.history_horizon_days())
                except OverflowError:  # a window reaching before year 1: all of the history
                    since = None
                history = store.read_history(since, id_type)
            try:
                result = engine.decide(
                    customers,
                    propensities=propensities,
                    history=history,
                    do_not_contact=do_not_contact,
                    now=now,
                )
            except (DataError, SchemaError, RuleError) as err:
                named = _name_culprit(err, campaign)
                if named is None:
                    raise
                raise named from err
            timings["decide"] = time.perf_counter() - started
            report("decide", 1, 1)
            _pause("decided")
            started = time.perf_counter()
            report("render", 0, 1)
            try:
                details = _action_details(result.decisions, customers, treatments, run_id, now)
            except TemplateError as err:
                raise TemplateError(f"{campaign.path}: {err}") from err
            except (DataError, SchemaError) as err:
                named = _name_culprit(err, campaign)
                if named is None:
                    raise
                raise named from err
            timings["render"] = time.perf_counter() - started
            report("render", 1, 1)
            return result, details

        base = (run_id, campaign.name, redact(url))
        if dry_run:  # decide as running the run would: at a claimed run's now, or not at all
            claimed = None
            if store is not None and store.table_exists("runs"):
                claimed = store.run(run_id)
            if claimed is not None:
                _check_same_run(claimed, campaign.name, now if explicit_now else None)
                if claimed["status"] == "committed":
                    return _already(base, claimed, customers.num_rows)
                now = claimed["now"]
            result, details = decide(store, now)
            done = _report(base, now, "dry_run", customers, result.funnel, details, timings)
            return dataclasses.replace(done, ignored_propensities=ignored)

        assert store is not None
        with store.transaction():
            store.create_tables(id_type, ids_from=campaign.customers.describe())
            claimed = store.run(run_id)
            resumed = claimed is not None
            if claimed is None:
                store.insert_run(run_id, campaign.name, now)
            else:
                _check_same_run(claimed, campaign.name, now if explicit_now else None)
                now = claimed["now"]
        if claimed is not None and claimed["status"] == "committed":
            return _already(base, claimed, customers.num_rows)
        inserted = claimed is None  # this call's claim, released if the run fails
        _pause("claimed")

        try:
            with store.transaction():
                current = store.run(run_id)
                if current is None:  # a failed twin released the claim: claim it again
                    store.insert_run(run_id, campaign.name, now)
                    inserted = True
                else:  # ours, or a twin's at our now; not another's taken meanwhile
                    _check_same_run(current, campaign.name, now)
                    if current["status"] == "committed":  # a concurrent twin
                        return _already(base, current, customers.num_rows)
                    if resumed:
                        _check_not_overtaken(store, run_id, now)
                result, details = decide(store, now)
                started = time.perf_counter()
                events = _history_events(details, run_id, now, id_type)
                total = details.num_rows + events.num_rows
                report("write", 0, total)
                written = store.ingest(
                    "action_details", details, progress=lambda n: report("write", n, total)
                )
                _pause("mid_write")
                store.ingest(
                    "interaction_history",
                    events,
                    progress=lambda n: report("write", written + n, total),
                )
                funnel_json = json.dumps(
                    [[r["stage"], r["action_id"], r["count"]] for r in result.funnel.to_pylist()]
                )
                store.finish_run(
                    run_id,
                    customers=customers.num_rows,
                    decisions=details.num_rows,
                    funnel=funnel_json,
                )
                _pause("before_commit")
        except Exception:
            # Nothing of the run was written (the transaction rolled back). A claim this call
            # made goes too: the run failed, it did not die, so a rerun is a fresh run (its own
            # now, no run-id conflict). A claim of a killed attempt stays: it keeps that now.
            if inserted:
                store.release_run(run_id, campaign.name, now)
            raise
        timings["write"] = time.perf_counter() - started
        done = _report(base, now, "committed", customers, result.funnel, details, timings)
        return dataclasses.replace(
            done, resumed=resumed, written=written, ignored_propensities=ignored
        )
    finally:
        if store is not None:
            store.close()


class _Progress:
    """Calls the user's progress callback, if any."""

    def __init__(self, callback: Progress | None) -> None:
        self.callback = callback

    def __call__(self, stage: str, done: int, total: int) -> None:
        if self.callback is not None:
            self.callback(stage, done, total)


def _sources(campaign: Campaign) -> list[InputSource | None]:
    return [campaign.customers, campaign.propensities, campaign.do_not_contact]


def _read_inputs(
    campaign: Campaign, store: Store | None
) -> tuple[pa.Table, pa.Table | None, pa.Table | None]:
    customers = read_input(campaign.customers, store)
    if "customer_id" not in customers.column_names:
        raise SchemaError(
            f"{campaign.customers.describe()}: customers need a 'customer_id' column "
            f"(have: {', '.join(customers.column_names)})"
        )
    propensities = None
    if campaign.propensities is not None:
        propensities = read_input(campaign.propensities, store)
    id_type = customers.schema.field("customer_id").type
    if pa.types.is_null(id_type) and customers.num_rows == 0:
        # A CSV with a header and no rows: no values to infer the ids' type from. Take the
        # propensities' (the engine wants both alike), else the database's: no customers.
        id_type = _empty_ids_type(propensities, store)
        customers = customers.set_column(
            customers.column_names.index("customer_id"),
            "customer_id",
            customers.column("customer_id").cast(id_type),
        )
    if not (pa.types.is_integer(id_type) or pa.types.is_string(id_type)):
        if pa.types.is_large_string(id_type) or pa.types.is_string_view(id_type):
            customers = customers.set_column(
                customers.column_names.index("customer_id"),
                "customer_id",
                customers.column("customer_id").cast(pa.string()),
            )
        else:
            raise SchemaError(
                f"{campaign.customers.describe()}: column 'customer_id' must be integers or "
                f"strings, got {id_type}"
            )
    elif pa.types.is_integer(id_type) and id_type != pa.int64():
        try:
            ids = customers.column("customer_id").cast(pa.int64())
        except pa.ArrowInvalid as err:  # uint64 beyond the int64 range
            raise DataError(
                f"{campaign.customers.describe()}: column 'customer_id' ({id_type}) holds ids "
                f"beyond the 64-bit signed range the database stores: {err}"
            ) from err
        customers = customers.set_column(
            customers.column_names.index("customer_id"), "customer_id", ids
        )
    do_not_contact = None
    if campaign.do_not_contact is not None:
        do_not_contact = read_input(campaign.do_not_contact, store)
    return customers, propensities, do_not_contact


def _empty_ids_type(propensities: pa.Table | None, store: Store | None) -> pa.DataType:
    """The type of a header-only customers file's ids: the propensities', else the database
    tables', else strings."""
    if propensities is not None and "customer_id" in propensities.column_names:
        kind = propensities.schema.field("customer_id").type
        return pa.int64() if pa.types.is_integer(kind) else pa.string()
    if store is not None and store.table_exists("action_details"):
        declared = store._customer_id_sql_type("action_details")
        return pa.string() if _is_text_type(declared) else pa.int64()
    return pa.string()


def _campaign_propensities(
    propensities: pa.Table | None, campaign: Campaign
) -> tuple[pa.Table | None, int]:
    """The propensity rows of the campaign's actions, and how many others were left out."""
    if propensities is None or "action_id" not in propensities.column_names:
        return propensities, 0  # the engine names what is missing
    ids = pa.array([action.id for action in campaign.actions], pa.string())
    keep = pc.is_in(propensities.column("action_id").cast(pa.string()), value_set=ids)
    kept = propensities.filter(keep)
    return kept, propensities.num_rows - kept.num_rows


def _name_culprit(err: NbaFastError, campaign: Campaign) -> NbaFastError | None:
    """`err` of the engine with the file at fault leading its message, or None if unknown.

    The engine names its argument (``customers: ...``) or the action whose rule fails; the
    user needs the input file, or the campaign file."""
    text = str(err)
    for source in _sources(campaign):
        if source is not None and text.startswith(source.field.removeprefix("inputs.") + ":"):
            return type(err)(f"{source.describe()}: {text}")
    if isinstance(err, RuleError):
        return RuleError(f"{campaign.path}: {text}")
    return None


def _check_not_overtaken(store: Store, run_id: str, now: datetime) -> None:
    """Refuses to redo a killed run once a run with a later ``now`` has committed.

    A redo decides at the killed attempt's ``now``, and the contact policies ignore events
    after ``now``: the later run's ``pending`` events would be invisible to it, and its
    customers could be contacted twice.
    """
    later = store.committed_after(now, run_id)
    if later is not None:
        raise RunConflictError(
            f"run {run_id!r} was claimed with now={now.isoformat()} by an attempt that died, "
            f"and run {later['run_id']!r} (now={later['now'].isoformat()}) has committed since: "
            "a redo at the earlier now would not see that run's messages and could contact "
            "its customers twice. Start a new run with another --run-id instead"
        )


def _check_same_run(claimed: dict[str, Any], campaign: str, now: datetime | None) -> None:
    if claimed["campaign"] != campaign:
        raise RunConflictError(
            f"run {claimed['run_id']!r} belongs to campaign {claimed['campaign']!r}, "
            f"not {campaign!r}: choose another --run-id"
        )
    if now is not None and claimed["now"] != now:
        raise RunConflictError(
            f"run {claimed['run_id']!r} was claimed with now={claimed['now'].isoformat()}, "
            f"not {now.isoformat()}: rerun it without --now (or with that one), or choose "
            "another --run-id"
        )


def _action_details(
    decisions: pa.Table,
    customers: pa.Table,
    treatments: Any,
    run_id: str,
    now: datetime,
) -> pa.Table:
    """The ``action_details`` rows of the decisions: decision columns, contact point, message."""
    rendered = render(decisions, customers, treatments)
    aligned = rendered.num_rows == decisions.num_rows and all(
        rendered.column(key).equals(decisions.column(key)) for key in ("customer_id", "action_id")
    )
    if not aligned:  # the renderer owes us no order: put its rows in the decisions' order
        keys = ["customer_id", "action_id"]
        joined = decisions.select(keys).append_column(
            "_order", pa.array(range(decisions.num_rows), pa.int64())
        )
        joined = joined.join(rendered.drop_columns(["channel", "treatment"]), keys=keys)
        rendered = joined.sort_by("_order")
    n = decisions.num_rows
    positions = pc.index_in(decisions.column("customer_id"), customers.column("customer_id"))
    channel = decisions.column("channel")

    def contact(column: str, channel_name: str) -> pa.ChunkedArray:
        if column not in customers.column_names:
            return pa.chunked_array([pa.nulls(n, pa.string())])
        values = customers.column(column).cast(pa.string()).take(positions)
        return pc.if_else(pc.equal(channel, channel_name), values, None)

    columns: dict[str, Any] = {}
    for name in ACTION_DETAILS_SCHEMA.names:
        if name in ("run_id", "status"):
            value = run_id if name == "run_id" else "pending"
            columns[name] = pa.array([value] * n, pa.string())
        elif name in ("decided_at", "created_at"):
            instant = now if name == "decided_at" else datetime.now(UTC)
            columns[name] = pa.array([instant] * n, pa.timestamp("us", tz="UTC"))
        elif name == "email":
            columns[name] = contact("email", "email")
        elif name == "phone":
            columns[name] = contact("phone", "sms")
        elif name in decisions.column_names:
            columns[name] = decisions.column(name)
        else:
            columns[name] = rendered.column(name)
    schema = pa.schema(
        [
            f.with_type(decisions.schema.field("customer_id").type)
            if f.name == "customer_id"
            else f
            for f in ACTION_DETAILS_SCHEMA
        ]
    )
    return pa.table({name: _cast(columns[name], schema.field(name).type) for name in schema.names})


def _cast(column: Any, data_type: pa.DataType) -> Any:
    return column if column.type == data_type else column.cast(data_type)


def _history_events(
    details: pa.Table, run_id: str, now: datetime, id_type: pa.DataType
) -> pa.Table:
    """One ``pending`` event per decision, at `now`, for ``interaction_history``."""
    n = details.num_rows
    columns = {
        "customer_id": details.column("customer_id"),
        "action_id": details.column("action_id"),
        "issue": details.column("issue"),
        "group": details.column("group"),
        "channel": details.column("channel"),
        "outcome": pa.array(["pending"] * n, pa.string()),
        "timestamp": pa.array([now] * n, pa.timestamp("us", tz="UTC")),
        "run_id": pa.array([run_id] * n, pa.string()),
    }
    schema = pa.schema(
        [f.with_type(id_type) if f.name == "customer_id" else f for f in HISTORY_SCHEMA]
    )
    return pa.table(columns, schema=schema)


def _by_channel(details: pa.Table) -> dict[str, int]:
    counts = details.group_by("channel").aggregate([("channel", "count")])
    pairs = zip(counts.column("channel").to_pylist(), counts.column(1).to_pylist(), strict=True)
    return dict(sorted(pairs))


def _report(
    base: tuple[str, str, str],
    now: datetime,
    status: str,
    customers: pa.Table,
    funnel: pa.Table,
    details: pa.Table,
    timings: dict[str, float],
) -> RunReport:
    return RunReport(
        *base,
        now=now,
        status=status,
        customers=customers.num_rows,
        decisions=details.num_rows,
        by_channel=_by_channel(details),
        funnel=funnel,
        timings=timings,
        sample=details.slice(0, 5),
    )


def _already(base: tuple[str, str, str], row: dict[str, Any], customers: int) -> RunReport:
    return RunReport(
        *base,
        now=row["now"],
        status="already_committed",
        customers=customers,
        decisions=int(row["decisions"] or 0),
    )
