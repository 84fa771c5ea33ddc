"""One outbound job, four ways: nba_fast, DuckDB SQL, Polars lazy, and `nba_fast.reference`.

The job (DESIGN.md §3) on a scenario of `scenarios`: from the Parquet files to one decision per
customer. Every customer x active action is a candidate with the propensity of its
``p_<action>`` column; it must pass the action's SQL eligibility rule, be contactable (the
channel's address present, not opted out, not on the do-not-contact list by id or address),
survive the three contact policies (anti-joins over the history), and then the best by
priority ``((propensity * value) * context_weight) * lever`` (ties: action id ascending) wins.

With caps, DuckDB and Polars cut the top choices by a row number per cap scope (a top choice
stays if, in every scope that contains it, it ranks within the cap by priority, then customer
id): the way one writes caps in SQL. nba_fast's greedy with fallback is a different, harder
job (a capped-out customer falls back to the next best action with room), so decisions are
compared only without caps, where the three must agree exactly.

Each ``*_job`` function returns a pyarrow table of ``customer_id``, ``action_id``,
``priority``; `agreement` compares two of them.

The peers support what the scenarios use: suppressions with threshold 1 (dropped when a counted
event lies within the last ``suppress_days``), limits with any threshold, caps on any scope.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from scenarios import Data, propensity_column

Tables = dict[str, pa.Table]
"""The scenario's tables in memory: ``customers``, ``history``, ``do_not_contact``."""

__all__ = [
    "ENGINES",
    "PEERS",
    "Agreement",
    "Stages",
    "agreement",
    "duckdb_job",
    "duckdb_sql",
    "load",
    "nba_fast_job",
    "polars_job",
    "reference_job",
]

_ADDRESS = {"email": "email", "sms": "phone"}
_LEVEL_COLUMN = {"action": "action_id", "group": "group", "issue": "issue", "channel": "channel"}
_BATCH_ROWS = 131_072


@dataclass
class Stages:
    """Wall-clock seconds per stage, and the bytes of Arrow data an engine read."""

    seconds: dict[str, float] = field(default_factory=dict)
    bytes_read: int = 0


def _active(data: Data) -> list[dict[str, Any]]:
    """The actions active at the scenario's `now` (the others are ineligible)."""
    now = data.now
    return [
        a
        for a in data.catalog
        if (a.get("active_from") is None or a["active_from"] <= now)
        and (a.get("active_until") is None or now < a["active_until"])
    ]


def _micros(days: float) -> timedelta:
    return timedelta(microseconds=round(float(days) * 86_400_000_000.0))


def _check_policies(policies: list[dict[str, Any]]) -> None:
    for policy in policies:
        if policy["kind"] == "suppress" and policy["threshold"] != 1:
            raise NotImplementedError(
                f"policy {policy['name']!r}: the peers express suppressions with threshold 1 only"
            )
        if policy.get("threshold_column"):
            raise NotImplementedError(f"policy {policy['name']!r}: no threshold_column")


def _cap_scopes(caps: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Caps grouped by kind: {"action": {id: max}, "channel": {...}, "all": {"": max}}."""
    scopes: dict[str, dict[str, int]] = {}
    for cap in caps:
        kind, _, name = cap["scope"].partition(":")
        scopes.setdefault(kind, {})[name] = int(cap["max"])
    return scopes


# --- DuckDB --------------------------------------------------------------------------------


def _sql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _sql_time(instant: datetime) -> str:
    return f"TIMESTAMPTZ '{instant.astimezone(UTC).isoformat()}'"


def _parquet_relations(data: Data) -> dict[str, str]:
    return {
        "customers": f"read_parquet('{data.customers}')",
        "history": f"read_parquet('{data.history}')",
        "do_not_contact": f"read_parquet('{data.do_not_contact}')",
    }


def duckdb_sql(data: Data, *, caps: bool, relations: Mapping[str, str] | None = None) -> str:
    """The job as one DuckDB query over the scenario's Parquet files (or other relations)."""
    _check_policies(data.policies)
    relations = _parquet_relations(data) if relations is None else relations
    now = _sql_time(data.now)
    customers = relations["customers"]
    branches = []
    for action in _active(data):
        channel = action["channel"]
        conditions = [f"({action['eligibility'] or 'TRUE'})"]
        address = _ADDRESS.get(channel)
        if address is not None:
            conditions.append(f"{address} IS NOT NULL")
        conditions.append(f"opt_out_{channel} IS NOT TRUE")
        p = f'"p_{action["id"]}"'
        priority = (
            f"(({p} * {action['value']!r}::DOUBLE) * {action['context_weight']!r}::DOUBLE)"
            f" * {action['lever']!r}::DOUBLE"
        )
        branches.append(
            f"SELECT customer_id, {_sql_text(action['id'])} AS action_id, "
            f'{_sql_text(channel)} AS channel, {_sql_text(action["group"])} AS "group", '
            f"{_sql_text(action['issue'])} AS issue, {priority} AS priority "
            f"FROM c WHERE {' AND '.join(conditions)}"
        )
    channels = sorted({a["channel"] for a in data.catalog})
    channel_list = ", ".join(_sql_text(c) for c in channels)
    ctes = [
        f"c AS (SELECT * FROM {customers})",
        f"dnc AS (SELECT * FROM {relations['do_not_contact']})",
        f"h AS (SELECT * FROM {relations['history']} WHERE timestamp <= {now})",
        # (customer, channel) pairs the do-not-contact list blocks; '*' blocks every channel.
        "blocked_raw AS ("
        "SELECT customer_id, channel FROM dnc WHERE customer_id IS NOT NULL "
        "UNION ALL SELECT c.customer_id, d.channel FROM dnc d JOIN c ON d.address = c.email "
        "WHERE d.channel IN ('email', '*') "
        "UNION ALL SELECT c.customer_id, d.channel FROM dnc d JOIN c ON d.address = c.phone "
        "WHERE d.channel IN ('sms', '*'))",
        "blocked AS (SELECT DISTINCT b.customer_id, ch.channel FROM blocked_raw b "
        f"JOIN (SELECT unnest([{channel_list}]) AS channel) ch "
        "ON b.channel = ch.channel OR b.channel = '*')",
        "cand AS (" + " UNION ALL ".join(branches) + ")",
    ]
    survivors = "cand"
    anti = ["ANTI JOIN blocked b ON cand.customer_id = b.customer_id AND cand.channel = b.channel"]
    for number, policy in enumerate(data.policies):
        name = f"pol{number}"
        keys = ["customer_id"]
        level_column = _LEVEL_COLUMN.get(policy["level"])
        if level_column is not None:
            keys.append(f'"{level_column}"')
        where = [f"outcome IN ({', '.join(_sql_text(o) for o in policy['outcomes'])})"]
        select = list(keys)
        if policy["channel"] != "*":
            where.append(f"channel = {_sql_text(policy['channel'])}")
            if level_column != "channel":
                select.append(f"{_sql_text(policy['channel'])} AS channel")
                keys.append("channel")
        if policy["kind"] == "suppress":
            since = data.now - _micros(policy["suppress_days"])
            where.append(f"timestamp > {_sql_time(since)}")
            body = f"SELECT DISTINCT {', '.join(select)} FROM h WHERE {' AND '.join(where)}"
        else:
            since = data.now - _micros(policy["window_days"])
            where.append(f"timestamp > {_sql_time(since)}")
            body = (
                f"SELECT {', '.join(select)} FROM h WHERE {' AND '.join(where)} "
                f"GROUP BY ALL HAVING count(*) >= {int(policy['threshold'])}"
            )
        ctes.append(f"{name} AS ({body})")
        on = " AND ".join(f"cand.{k} = {name}.{k}" for k in keys)
        anti.append(f"ANTI JOIN {name} ON {on}")
    ctes.append(f"kept AS (SELECT cand.* FROM {survivors} {' '.join(anti)})")
    ctes.append(
        "top AS (SELECT * FROM kept QUALIFY row_number() OVER "
        "(PARTITION BY customer_id ORDER BY priority DESC, action_id) = 1)"
    )
    if not caps:
        return "WITH " + ",\n".join(ctes) + "\nSELECT customer_id, action_id, priority FROM top"
    ranks, limits = [], []
    for kind, named in _cap_scopes(data.caps).items():
        column = "" if kind == "all" else f'"{_LEVEL_COLUMN[kind]}"'
        partition = f"PARTITION BY {column} " if column else ""
        ranks.append(
            f"row_number() OVER ({partition}ORDER BY priority DESC, customer_id) AS r_{kind}"
        )
        if kind == "all":
            limits.append(f"r_all <= {named['']}")
            continue
        cases = " ".join(f"WHEN {_sql_text(n)} THEN {m}" for n, m in named.items())
        limits.append(f"r_{kind} <= CASE {column} {cases} ELSE 9223372036854775807 END")
    ctes.append(f"ranked AS (SELECT *, {', '.join(ranks)} FROM top)")
    return (
        "WITH "
        + ",\n".join(ctes)
        + f"\nSELECT customer_id, action_id, priority FROM ranked WHERE {' AND '.join(limits)}"
    )


def duckdb_job(
    data: Data, *, caps: bool, tables: Tables | None = None, stages: Stages | None = None
) -> pa.Table:
    """The job in DuckDB (all cores, an in-memory database), over the Parquet files or, given
    `tables`, over those Arrow tables (scanned in place)."""
    import duckdb

    connection = duckdb.connect()
    relations = None
    if tables is not None:
        relations = {}
        for name, table in tables.items():
            connection.register(f"{name}_arrow", table)
            relations[name] = f"{name}_arrow"
    try:
        connection.execute("SET TimeZone = 'UTC'")
        now_us = (data.now - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
        connection.execute(
            f"CREATE MACRO days_since(x) AS ({now_us} - epoch_us(x)) / 86400000000.0"
        )
        query = duckdb_sql(data, caps=caps, relations=relations)
        result = connection.sql(query).to_arrow_table()
    finally:
        connection.close()
    return result


# --- Polars --------------------------------------------------------------------------------

_DAYS_SINCE = re.compile(r"days_since\(\s*\"?(\w+)\"?\s*\)", re.IGNORECASE)


def polars_job(
    data: Data, *, caps: bool, tables: Tables | None = None, stages: Stages | None = None
) -> pa.Table:
    """The job as one Polars lazy query over the Parquet files or, given `tables`, over those
    Arrow tables (zero-copy where Polars can)."""
    import polars as pl

    _check_policies(data.policies)
    now = data.now

    def scan(name: str, path: Path) -> Any:
        if tables is None:
            return pl.scan_parquet(path)
        return pl.from_arrow(tables[name]).lazy()

    customers = scan("customers", data.customers)
    # `days_since(col)` has no Polars SQL spelling: a computed column stands in for it.
    derived = sorted(
        {m.group(1) for a in data.catalog for m in _DAYS_SINCE.finditer(a["eligibility"] or "")}
    )
    customers = customers.with_columns(
        [
            ((pl.lit(now) - pl.col(c)).dt.total_microseconds() / 86_400_000_000.0).alias(
                f"__days_since_{c}"
            )
            for c in derived
        ]
    )
    branches = []
    for action in _active(data):
        channel = action["channel"]
        rule = _DAYS_SINCE.sub(lambda m: f"__days_since_{m.group(1)}", action["eligibility"] or "")
        keep = pl.sql_expr(rule) if rule else pl.lit(True)
        address = _ADDRESS.get(channel)
        if address is not None:
            keep = keep & pl.col(address).is_not_null()
        keep = keep & ~pl.col(f"opt_out_{channel}").fill_null(False)
        p = pl.col(f"p_{action['id']}")
        priority = ((p * action["value"]) * action["context_weight"]) * action["lever"]
        branches.append(
            customers.filter(keep).select(
                pl.col("customer_id"),
                pl.lit(action["id"]).alias("action_id"),
                pl.lit(channel).alias("channel"),
                pl.lit(action["group"]).alias("group"),
                pl.lit(action["issue"]).alias("issue"),
                priority.cast(pl.Float64).alias("priority"),
            )
        )
    candidates = pl.concat(branches)
    channels = sorted({a["channel"] for a in data.catalog})
    dnc = scan("do_not_contact", data.do_not_contact)
    contacts = customers.select("customer_id", "email", "phone")
    blocked_raw = pl.concat(
        [
            dnc.filter(pl.col("customer_id").is_not_null()).select("customer_id", "channel"),
            dnc.filter(pl.col("channel").is_in(["email", "*"]))
            .join(contacts, left_on="address", right_on="email")
            .select(pl.col("customer_id_right").alias("customer_id"), "channel"),
            dnc.filter(pl.col("channel").is_in(["sms", "*"]))
            .join(contacts, left_on="address", right_on="phone")
            .select(pl.col("customer_id_right").alias("customer_id"), "channel"),
        ]
    )
    blocked = pl.concat(
        [
            blocked_raw.filter(pl.col("channel").is_in([ch, "*"])).select(
                "customer_id", pl.lit(ch).alias("channel")
            )
            for ch in channels
        ]
    ).unique()
    candidates = candidates.join(blocked, on=["customer_id", "channel"], how="anti")
    history = scan("history", data.history).with_columns(
        [pl.col(c).cast(pl.String) for c in ("action_id", "issue", "group", "channel", "outcome")]
    )
    history = history.filter(pl.col("timestamp") <= now)
    for policy in data.policies:
        keys = ["customer_id"]
        level_column = _LEVEL_COLUMN.get(policy["level"])
        if level_column is not None:
            keys.append(level_column)
        events = history.filter(pl.col("outcome").is_in(policy["outcomes"]))
        if policy["channel"] != "*":
            events = events.filter(pl.col("channel") == policy["channel"])
        days = policy["suppress_days"] if policy["kind"] == "suppress" else policy["window_days"]
        events = events.filter(pl.col("timestamp") > now - _micros(days))
        if policy["kind"] == "suppress":
            hits = events.select(keys).unique()
        else:
            hits = (
                events.group_by(keys)
                .agg(pl.len().alias("n"))
                .filter(pl.col("n") >= policy["threshold"])
                .select(keys)
            )
        join_keys = list(keys)
        if policy["channel"] != "*" and level_column != "channel":
            hits = hits.with_columns(pl.lit(policy["channel"]).alias("channel"))
            join_keys.append("channel")
        candidates = candidates.join(hits, on=join_keys, how="anti")
    top = candidates.sort(["priority", "action_id"], descending=[True, False]).unique(
        subset="customer_id", keep="first"
    )
    if caps:
        keep = pl.lit(True)
        for kind, named in _cap_scopes(data.caps).items():
            order = pl.int_range(pl.len()).add(1)
            if kind == "all":
                keep = keep & (order <= named[""])
                continue
            column = _LEVEL_COLUMN[kind]
            limit = pl.col(column).replace_strict(
                named, default=np.iinfo(np.int64).max, return_dtype=pl.Int64
            )
            keep = keep & (order.over(column) <= limit)
        top = top.sort(["priority", "customer_id"], descending=[True, False]).filter(keep)
    frame = top.select("customer_id", "action_id", "priority").collect()
    return frame.to_arrow()


# --- nba_fast and its reference ------------------------------------------------------------


def _customer_batches(
    data: Data, columns: list[str], tables: Tables | None
) -> Iterator[pa.RecordBatch]:
    """The customers' `columns` in row order: from memory, or decoded from Parquet one row
    group at a time (columns decoded in parallel), without pre-buffering: pyarrow's dataset
    scanner, and `iter_batches` with `pre_buffer`, held up to the whole file's bytes (2.3 GiB
    on bank-10m); this reader peaks at 0.37 GiB in about the same time."""
    if tables is not None:
        yield from tables["customers"].select(columns).to_batches(max_chunksize=_BATCH_ROWS)
        return
    parquet = pq.ParquetFile(data.customers, pre_buffer=False)
    yield from parquet.iter_batches(batch_size=_BATCH_ROWS, columns=columns, use_threads=True)


def _counted(
    schema: pa.Schema, batches: Iterator[pa.RecordBatch], stages: Stages
) -> pa.RecordBatchReader:
    """`batches` as a stream, each one's bytes added to `stages.bytes_read` as it is read."""

    def counted() -> Iterator[pa.RecordBatch]:
        for batch in batches:
            stages.bytes_read += batch.nbytes
            yield batch

    return pa.RecordBatchReader.from_batches(schema, counted())


def _stream(data: Data, stages: Stages, tables: Tables | None) -> pa.RecordBatchReader:
    """The customers, propensity columns included, as a stream of record batches."""
    schema = pq.read_schema(data.customers)
    return _counted(schema, _customer_batches(data, schema.names, tables), stages)


def _history_stream(data: Data, stages: Stages, tables: Tables | None) -> pa.RecordBatchReader:
    """The history as a stream: from memory, or decoded from Parquet one row group at a time
    (its string columns dictionary-encoded, as they are stored), so only the events some
    policy counts are ever held whole."""
    if tables is not None:
        batches: Iterator[pa.RecordBatch] = iter(tables["history"].to_batches())
        schema = tables["history"].schema
    else:
        parquet = pq.ParquetFile(
            data.history,
            pre_buffer=False,
            read_dictionary=["action_id", "issue", "group", "channel", "outcome"],
        )
        schema = parquet.schema_arrow
        batches = parquet.iter_batches(batch_size=_BATCH_ROWS, use_threads=True)
    return _counted(schema, batches, stages)


def _propensity_columns(data: Data) -> dict[str, str]:
    """Each action's propensity column in the customers table."""
    return {a["id"]: propensity_column(a["id"]) for a in data.catalog}


def nba_fast_job(
    data: Data,
    *,
    caps: bool,
    tables: Tables | None = None,
    stages: Stages | None = None,
    threads: int | None = None,
) -> pa.Table:
    """The job in nba_fast: the customers and the history streamed batch by batch, each
    action's propensity read from its column of the customers' stream
    (``propensities={action_id: column}``); the do-not-contact list read whole. From the
    Parquet files or, given `tables`, from memory."""
    import time

    import nba_fast as nba

    stages = Stages() if stages is None else stages
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        stages.seconds[name] = stages.seconds.get(name, 0.0) + now - clock
        clock = now

    engine = nba.Engine(
        data.catalog,
        policies=data.policies,
        caps=data.caps if caps else None,
        threads=threads,
    )
    lap("compile")
    dnc = pq.read_table(data.do_not_contact) if tables is None else tables["do_not_contact"]
    stages.bytes_read += dnc.nbytes
    history = _history_stream(data, stages, tables)
    lap("read_inputs")
    result = engine.decide(
        _stream(data, stages, tables),
        propensities=_propensity_columns(data),
        history=history,
        do_not_contact=dnc,
        now=data.now,
    )
    lap("engine")
    for name, seconds in result.timings.items():
        stages.seconds[f"engine.{name}"] = seconds
    return result.decisions.select(["customer_id", "action_id", "priority"])


def decode_floor(data: Data, *, reader: str = "pyarrow", stages: Stages | None = None) -> int:
    """Decodes the Parquet inputs the job reads and does nothing else: what any engine fed by
    that reader pays before it decides anything, so the ceiling of its speed-up over a peer.
    ``pyarrow``: exactly the streams `nba_fast_job` reads (the customers, the history and
    the do-not-contact list), drained batch by batch; ``polars``: the same files read whole
    by Polars' reader (the fastest of those measured). Returns the rows decoded."""
    stages = Stages() if stages is None else stages
    if reader == "polars":
        import polars as pl

        rows = 0
        for path in (data.customers, data.history, data.do_not_contact):
            frame = pl.read_parquet(path)
            stages.bytes_read += int(frame.estimated_size())
            rows += int(frame.height)
        return rows
    if reader != "pyarrow":
        raise ValueError(f"decode_floor: unknown reader {reader!r} (pyarrow or polars)")
    dnc = pq.read_table(data.do_not_contact)
    stages.bytes_read += dnc.nbytes
    rows = int(dnc.num_rows)
    for stream in (_stream(data, stages, None), _history_stream(data, stages, None)):
        for batch in stream:
            rows += int(batch.num_rows)
    return rows


def load(data: Data) -> Tables:
    """The scenario's three tables, read into memory."""
    return {
        "customers": pq.read_table(data.customers),
        "history": pq.read_table(data.history),
        "do_not_contact": pq.read_table(data.do_not_contact),
    }


def _head(data: Data, rows: int) -> pa.Table:
    """The first `rows` customers, with their propensity columns."""
    batches = pq.ParquetFile(data.customers).iter_batches(batch_size=rows)
    return pa.Table.from_batches([next(batches)])


def reference_job(
    data: Data, *, caps: bool, sample: int = 20_000, stages: Stages | None = None
) -> pa.Table:
    """The pure-Python reference on the first `sample` customers (and their history)."""
    from nba_fast import reference

    table = _head(data, sample)
    ids = table.column("customer_id")
    history = pq.read_table(data.history)
    history = history.filter(pc.is_in(history.column("customer_id"), ids))
    engine = reference.Engine(
        data.catalog, policies=data.policies, caps=data.caps if caps else None
    )
    result = engine.decide(
        table,
        propensities=_propensity_columns(data),
        history=history,
        do_not_contact=pq.read_table(data.do_not_contact),
        now=data.now,
    )
    return result.decisions.select(["customer_id", "action_id", "priority"])


def reference_sample_for_nba_fast(data: Data, *, caps: bool, sample: int) -> pa.Table:
    """nba_fast on exactly the reference's sample, to compare their decisions."""
    import nba_fast as nba

    table = _head(data, sample)
    ids = table.column("customer_id")
    history = pq.read_table(data.history)
    history = history.filter(pc.is_in(history.column("customer_id"), ids))
    engine = nba.Engine(data.catalog, policies=data.policies, caps=data.caps if caps else None)
    result = engine.decide(
        table,
        propensities=_propensity_columns(data),
        history=history,
        do_not_contact=pq.read_table(data.do_not_contact),
        now=data.now,
    )
    return result.decisions.select(["customer_id", "action_id", "priority"])


Job = Callable[..., pa.Table]

PEERS: Mapping[str, Job] = {"duckdb": duckdb_job, "polars": polars_job}
"""The peers, by name."""

ENGINES: Mapping[str, Job] = {"nba_fast": nba_fast_job, **PEERS}
"""Every engine that runs the whole scenario, by name."""


# --- agreement -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Agreement:
    """How two engines' decisions compare."""

    compared: int
    """Customers in either answer."""
    same: int
    """Customers given the same action with the same priority by both."""
    examples: list[dict[str, Any]]
    """Up to 5 customers they disagree on."""

    @property
    def exact(self) -> bool:
        return self.same == self.compared


def agreement(left: pa.Table, right: pa.Table) -> Agreement:
    """Compares two one-decision-per-customer answers, customer by customer."""
    a = left.select(["customer_id", "action_id", "priority"]).cast(
        pa.schema(
            [("customer_id", pa.int64()), ("action_id", pa.string()), ("priority", pa.float64())]
        )
    )
    b = right.select(["customer_id", "action_id", "priority"]).cast(a.schema)
    joined = a.join(b, "customer_id", join_type="full outer", left_suffix="_l", right_suffix="_r")
    same_action = pc.fill_null(
        pc.equal(joined.column("action_id_l"), joined.column("action_id_r")), False
    )
    same_priority = pc.fill_null(
        pc.equal(joined.column("priority_l"), joined.column("priority_r")), False
    )
    same = pc.and_(same_action, same_priority)
    differ = joined.filter(pc.invert(same)).slice(0, 5).to_pylist()
    return Agreement(joined.num_rows, int(pc.sum(same).as_py() or 0), differ)
