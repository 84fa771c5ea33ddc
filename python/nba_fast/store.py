"""The runner's database: SQLite (embedded, the default) or PostgreSQL, Arrow in and out via ADBC.

Three tables, created if absent:

- ``action_details``: what the third-party email/SMS sender reads, one row per decision, key
  (``run_id``, ``customer_id``, ``action_id``), ``status`` = ``pending``.
- ``interaction_history``: the contact history the contact policies read (DESIGN.md §2) plus
  ``run_id``; unique on (``run_id``, ``customer_id``, ``action_id``, ``outcome``), so one run can
  append its ``pending`` event for a decision only once.
- ``runs``: one row per run: its campaign, its decision time ``now``, ``status`` (``running``
  from the claim until the commit, then ``committed``), counts and the funnel as JSON.

Timestamps are ``timestamptz`` in PostgreSQL; SQLite has no time type, so they are TEXT in one
fixed ISO 8601 UTC form, ``YYYY-MM-DD HH:MM:SS.ffffffZ``, which sorts as time does. Whoever
writes into ``interaction_history`` of an SQLite database (the sender's outcomes) uses that form.

`Store.transaction` is the run lock: ``BEGIN IMMEDIATE`` in SQLite (one writer at a time),
``pg_advisory_xact_lock`` in PostgreSQL (per schema). A run waits for another run's lock up to
``NBA_FAST_LOCK_TIMEOUT`` seconds (default `BUSY_TIMEOUT_MS`, 10 minutes), then fails with a
`LockTimeoutError`.
Everything a run reads for its decisions and everything it writes happen inside one such
transaction, so two runs on one database are serialised and the second sees the first's events.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import adbc_driver_manager.dbapi as adbc_dbapi
import pyarrow as pa
import pyarrow.compute as pc

from nba_fast._core import DataError, NbaFastError, SchemaError

__all__ = [
    "ACTION_DETAILS_SCHEMA",
    "BUSY_TIMEOUT_MS",
    "HISTORY_SCHEMA",
    "LOCK_TIMEOUT_ENV",
    "RUNS_SCHEMA",
    "DatabaseError",
    "LockTimeoutError",
    "Store",
    "lock_timeout",
    "redact",
]

BUSY_TIMEOUT_MS = 600_000
"""How long a run waits for another run's lock before giving up (10 min), unless
`LOCK_TIMEOUT_ENV` says otherwise."""

LOCK_TIMEOUT_ENV = "NBA_FAST_LOCK_TIMEOUT"
"""Environment variable: how many seconds a run waits for the run lock (both databases)."""

_TS = pa.timestamp("us", tz="UTC")

ACTION_DETAILS_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("customer_id", pa.int64()),  # or utf8, as the customers' ids are
        ("action_id", pa.string()),
        ("issue", pa.string()),
        ("group", pa.string()),
        ("channel", pa.string()),
        ("treatment", pa.string()),
        ("variant", pa.string()),
        ("propensity", pa.float64()),
        ("value", pa.float64()),
        ("context_weight", pa.float64()),
        ("lever", pa.float64()),
        ("priority", pa.float64()),
        ("rank", pa.int32()),
        ("email", pa.string()),
        ("phone", pa.string()),
        ("subject", pa.string()),
        ("body", pa.string()),
        ("sms_text", pa.string()),
        ("sms_segments", pa.int32()),
        ("sms_encoding", pa.string()),
        ("link_split", pa.bool_()),
        ("status", pa.string()),
        ("decided_at", _TS),
        ("created_at", _TS),
    ]
)
"""The columns of ``action_details``, in table order."""

HISTORY_SCHEMA = pa.schema(
    [
        ("customer_id", pa.int64()),
        ("action_id", pa.string()),
        ("issue", pa.string()),
        ("group", pa.string()),
        ("channel", pa.string()),
        ("outcome", pa.string()),
        ("timestamp", _TS),
        ("run_id", pa.string()),
    ]
)
"""The columns of ``interaction_history``: the engine's history schema plus ``run_id``."""

RUNS_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("campaign", pa.string()),
        ("now", _TS),
        ("status", pa.string()),
        ("customers", pa.int64()),
        ("decisions", pa.int64()),
        ("funnel", pa.string()),
        ("started_at", _TS),
        ("finished_at", _TS),
    ]
)
"""The columns of ``runs``."""

_KEYS = {
    "action_details": "PRIMARY KEY (run_id, customer_id, action_id)",
    "interaction_history": "UNIQUE (run_id, customer_id, action_id, outcome)",
    "runs": "PRIMARY KEY (run_id)",
}
_NOT_NULL = {
    "action_details": {"run_id", "customer_id", "action_id", "channel", "status", "decided_at"},
    "interaction_history": {"customer_id", "action_id", "outcome", "timestamp"},
    "runs": {"run_id", "campaign", "now", "status", "started_at"},
}
_SCHEMAS = {
    "action_details": ACTION_DETAILS_SCHEMA,
    "interaction_history": HISTORY_SCHEMA,
    "runs": RUNS_SCHEMA,
}


class DatabaseError(NbaFastError):
    """The database cannot be reached or refused a statement; the message names the database
    (without its password) and the statement's purpose."""


class LockTimeoutError(DatabaseError):
    """Another run held the run lock for longer than the lock timeout (`lock_timeout`)."""


def lock_timeout() -> float:
    """Seconds a run waits for the run lock: ``NBA_FAST_LOCK_TIMEOUT``, else 600.

    Raises:
        DatabaseError: the variable is not a number of seconds > 0.
    """
    raw = os.environ.get(LOCK_TIMEOUT_ENV, "").strip()
    if not raw:
        return BUSY_TIMEOUT_MS / 1000
    try:
        seconds = float(raw)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise DatabaseError(f"{LOCK_TIMEOUT_ENV}={raw!r}: expected a number of seconds > 0")
    return seconds


def redact(url: str) -> str:
    """The URL without its password, for messages.

    Example:
        >>> redact("postgresql://ann:secret@db.example.com/nba")
        'postgresql://ann:***@db.example.com/nba'
    """
    try:
        parts = urlsplit(url)
    except ValueError:  # malformed (e.g. an unclosed '['): hide what could be a password
        return re.sub(r"(://[^/@:]*:)[^/@]*@", r"\1***@", url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def _is_text_type(declared: str) -> bool:
    """Whether a declared SQL column type holds text (SQLite's affinity rules, which also fit
    PostgreSQL's type names: text, character varying, ...)."""
    return "INT" not in declared and any(word in declared for word in ("CHAR", "CLOB", "TEXT"))


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class Store:
    """A connection to the runner's database.

    Args:
        url: ``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db`` or a libpq URL
            ``postgresql://user@host:port/db`` (``?options=-csearch_path%3DSCHEMA`` selects a
            schema).
        read_only: open an SQLite file read-only (``mode=ro``): a dry run creates no file
            and leaves the journal mode as it is; a missing file is a DatabaseError.
            PostgreSQL connections are not changed (a dry run only reads).

    Raises:
        DatabaseError: an unknown URL scheme, or the database cannot be opened.

    Example:
        >>> import tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "doc.db")
        >>> with Store(f"sqlite:///{path}") as store:
        ...     with store.transaction():
        ...         store.create_tables(pa.int64())
        ...     store.query("SELECT count(*) AS n FROM runs").column("n").to_pylist()
        [0]
    """

    def __init__(self, url: str, *, read_only: bool = False) -> None:
        self.url = url
        self.where = redact(url)
        self._conn: Any
        self._in_transaction = False
        self.lock_timeout = lock_timeout()
        # Whole milliseconds, at least 1 (0 would mean "no wait" in SQLite, "forever" in PG).
        self._lock_timeout_ms = max(1, min(round(self.lock_timeout * 1000), 2**31 - 1))
        try:
            if url.startswith("sqlite://"):
                self.dialect = "sqlite"
                path = url[len("sqlite:///") :] if url.startswith("sqlite:///") else ""
                if not path:
                    raise DatabaseError(f"{url}: expected sqlite:///PATH (a file)")
                import adbc_driver_sqlite.dbapi as sqlite

                if read_only and not os.path.isfile(path):
                    raise DatabaseError(
                        f"{self.where}: cannot open the database read-only: no file {path}"
                    )
                # A URI (the driver opens with SQLITE_OPEN_URI): ?mode=ro creates nothing.
                target = f"file:{quote(path)}?mode=ro" if read_only else path
                self._conn = sqlite.connect(target, autocommit=True)
                self.execute(f"PRAGMA busy_timeout = {self._lock_timeout_ms}", purpose="configure")
                if not read_only:
                    # WAL: the sender can read while a run writes; the run lock still
                    # serialises runs.
                    self.query("PRAGMA journal_mode = WAL", purpose="configure")
            elif url.startswith(("postgresql://", "postgres://")):
                self.dialect = "postgresql"
                import adbc_driver_postgresql.dbapi as postgresql

                # Not autocommit: the driver commits a statement with bound parameters on its
                # own in autocommit mode, even inside an explicit BEGIN. So transactions are the
                # connection's, and a statement outside `transaction` is committed at once.
                self._conn = postgresql.connect(url, autocommit=False)
            else:
                raise DatabaseError(
                    f"{self.where}: unknown database URL: expected sqlite:///PATH or "
                    "postgresql://USER@HOST/DB"
                )
        except adbc_dbapi.Error as err:
            said = str(err).replace(url, self.where)  # libpq quotes a URL it cannot parse
            raise DatabaseError(f"{self.where}: cannot open the database: {said}") from err

    def close(self) -> None:
        """Closes the connection (an open transaction rolls back)."""
        with suppress(adbc_dbapi.Error):  # a broken connection: nothing left to close
            self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- statements ------------------------------------------------------------------------

    def param(self, position: int) -> str:
        """The placeholder of the `position`-th (1-based) parameter in this dialect."""
        return "?" if self.dialect == "sqlite" else f"${position}"

    def execute(self, sql: str, params: Sequence[Any] = (), *, purpose: str = "execute") -> None:
        """Runs a statement that returns no rows."""
        cursor = self._conn.cursor()
        try:
            cursor.execute(sql, params or None)
        except adbc_dbapi.Error as err:
            self._settle(ok=False)
            raise DatabaseError(f"{self.where}: cannot {purpose}: {err}") from err
        finally:
            cursor.close()
        self._settle(ok=True)

    def _settle(self, *, ok: bool) -> None:
        """Outside `transaction`, ends PostgreSQL's implicit transaction (SQLite autocommits)."""
        if self.dialect != "postgresql" or self._in_transaction:
            return
        try:
            self._conn.commit() if ok else self._conn.rollback()
        except adbc_dbapi.Error as err:
            raise DatabaseError(f"{self.where}: cannot commit: {err}") from err

    def query(
        self,
        sql: str,
        params: Sequence[Any] = (),
        *,
        schema: pa.Schema | None = None,
        purpose: str = "query",
    ) -> pa.Table:
        """Runs a query and returns its rows as an Arrow table.

        Args:
            sql: the query, with this dialect's placeholders (see `param`).
            params: the parameters.
            schema: if given, the result is cast to it (SQLite reports the types of values,
                not of columns: an empty result has no types, an all-NULL column none either).
            purpose: what the query is for, in error messages.
        """
        cursor = self._conn.cursor()
        try:
            if self.dialect == "sqlite":
                # The SQLite driver infers each column's type from the first batch; one batch
                # for the whole result keeps a column that starts with NULLs from failing.
                cursor.adbc_statement.set_options(**{"adbc.sqlite.query.batch_rows": str(1 << 30)})
            cursor.execute(sql, params or None)
            table: pa.Table = cursor.fetch_arrow_table()
        except (adbc_dbapi.Error, OSError) as err:
            self._settle(ok=False)
            raise DatabaseError(f"{self.where}: cannot {purpose}: {err}") from err
        finally:
            cursor.close()
        self._settle(ok=True)
        table = table.replace_schema_metadata(None)
        if schema is not None:
            table = self._cast(table, schema, purpose)
        return table

    def read_only_query(self, sql: str, *, purpose: str = "query") -> pa.Table:
        """Runs a query that must not change the database (a campaign's input query: campaign
        files are edited by users who are not trusted with the database): SQLite's
        ``query_only``, PostgreSQL's ``READ ONLY`` transaction refuse any write.

        Raises:
            DatabaseError: the query fails, or tries to write.
        """
        if self._in_transaction:
            raise RuntimeError("read_only_query runs outside a transaction")
        if self.dialect == "sqlite":
            self.execute("PRAGMA query_only = ON", purpose="make the connection read-only")
            try:
                return self.query(sql, purpose=purpose)
            finally:
                self.execute("PRAGMA query_only = OFF", purpose="make the connection writable")
        self._in_transaction = True  # one transaction: SET, query, then roll back
        try:
            self._conn.rollback()
            self.execute("SET TRANSACTION READ ONLY", purpose="start a read-only transaction")
            return self.query(sql, purpose=purpose)
        finally:
            self._in_transaction = False
            with suppress(adbc_dbapi.Error):
                self._conn.rollback()

    def _cast(self, table: pa.Table, schema: pa.Schema, purpose: str) -> pa.Table:
        columns = []
        for target in schema:
            column = table.column(target.name)
            if column.type != target.type:
                try:
                    if column.null_count == len(column):  # no values: SQLite gives no type
                        column = pa.chunked_array([pa.nulls(len(column), target.type)])
                    else:
                        column = column.cast(target.type)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
                    raise DataError(
                        f"{self.where}: {purpose}: column {target.name!r} holds {column.type} "
                        f"values that are not {target.type}: {err}"
                    ) from err
            columns.append(column)
        return pa.Table.from_arrays(
            columns, schema=pa.schema([f.with_nullable(True) for f in schema])
        )

    def ingest(
        self,
        table_name: str,
        table: pa.Table,
        *,
        chunk_rows: int = 200_000,
        progress: Callable[[int], None] | None = None,
    ) -> int:
        """Appends `table` to `table_name` (in the current transaction), `chunk_rows` at a time,
        calling `progress(rows_written)` after each chunk. Returns the rows written."""
        table = self.to_database(table)
        written = 0
        for start in range(0, table.num_rows, chunk_rows):
            chunk = table.slice(start, chunk_rows)
            cursor = self._conn.cursor()
            try:
                cursor.adbc_ingest(table_name, chunk, mode="append")
            except adbc_dbapi.Error as err:
                self._settle(ok=False)
                raise DatabaseError(f"{self.where}: cannot write {table_name}: {err}") from err
            finally:
                cursor.close()
            self._settle(ok=True)
            written += chunk.num_rows
            if progress is not None:
                progress(written)
        return written

    def to_database(self, table: pa.Table) -> pa.Table:
        """`table` in the form this database stores: timestamps as ISO text in SQLite."""
        if self.dialect != "sqlite":
            return table
        columns = []
        for column in table.columns:
            if pa.types.is_timestamp(column.type):
                # 'YYYY-MM-DD HH:MM:SS.ffffffZ'. Through a naive timestamp (same UTC value):
                # Arrow's cast of a zoned one to text is ten times slower.
                naive = column.cast(_TS).cast(pa.timestamp("us")).cast(pa.string())
                column = pc.binary_join_element_wise(naive, "Z", "")
            columns.append(column)
        return pa.Table.from_arrays(columns, names=table.column_names)

    def timestamp(self, instant: datetime) -> Any:
        """`instant` as a query parameter comparable with this database's timestamp columns."""
        instant = instant.astimezone(UTC)
        if self.dialect == "sqlite":
            # Not strftime: its %Y does not pad years below 1000 to four digits.
            return instant.replace(tzinfo=None).isoformat(" ", "microseconds") + "Z"
        return instant

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One transaction under the run lock: commits if the block ends normally, rolls back
        if it raises (or if the process dies: the database never sees a commit)."""
        if self._in_transaction:
            raise RuntimeError("transactions do not nest")
        if self.dialect == "sqlite":
            try:
                self.execute("BEGIN IMMEDIATE", purpose="take the run lock (BEGIN IMMEDIATE)")
            except DatabaseError as err:
                if "locked" in str(err.__cause__) or "busy" in str(err.__cause__):
                    raise self._lock_timed_out() from err
                raise
            self._in_transaction = True
        else:
            self._in_transaction = True
            try:
                self._conn.rollback()  # a fresh transaction, whatever came before
                # Advisory locks ignore lock_timeout: statement_timeout bounds the wait, for
                # this statement only (then back to the session's own value).
                self.execute(
                    f"SET LOCAL statement_timeout = {self._lock_timeout_ms}", purpose="configure"
                )
                try:
                    self.query(
                        "SELECT pg_advisory_xact_lock("
                        "hashtext(current_schema() || '.nba_fast_runs'))",
                        purpose="take the run lock (pg_advisory_xact_lock)",
                    )
                except DatabaseError as err:
                    if getattr(err.__cause__, "sqlstate", None) == "57014":  # query_canceled
                        raise self._lock_timed_out() from err
                    raise
                self.execute("SET LOCAL statement_timeout TO DEFAULT", purpose="configure")
            except BaseException:
                self._in_transaction = False
                with suppress(adbc_dbapi.Error):
                    self._conn.rollback()
                raise
        try:
            yield
        except BaseException:
            self._in_transaction = False
            with suppress(adbc_dbapi.Error, DatabaseError):  # a lost connection rolls back too
                if self.dialect == "sqlite":
                    self.execute("ROLLBACK", purpose="roll back")
                else:
                    self._conn.rollback()
            raise
        self._in_transaction = False
        try:
            if self.dialect == "sqlite":
                self.execute("COMMIT", purpose="commit")
            else:
                self._conn.commit()
        except adbc_dbapi.Error as err:
            raise DatabaseError(f"{self.where}: cannot commit: {err}") from err

    def _lock_timed_out(self) -> LockTimeoutError:
        return LockTimeoutError(
            f"{self.where}: another run holds the run lock; gave up after waiting "
            f"{self.lock_timeout:g} s (set {LOCK_TIMEOUT_ENV} to wait longer)"
        )

    # --- the runner's tables ---------------------------------------------------------------

    def table_exists(self, name: str) -> bool:
        """Whether table `name` exists (in the current schema, for PostgreSQL)."""
        if self.dialect == "sqlite":
            sql = "SELECT count(*) AS n FROM sqlite_master WHERE type = 'table' AND name = ?"
        else:
            sql = (
                "SELECT count(*) AS n FROM pg_tables "
                "WHERE schemaname = current_schema() AND tablename = $1"
            )
        found = self.query(sql, [name], purpose="look for tables").column(0).to_pylist()
        return bool(found[0])

    def create_tables(self, customer_id_type: pa.DataType, *, ids_from: str = "customers") -> None:
        """Creates ``runs``, ``action_details`` and ``interaction_history`` where absent;
        ``customer_id`` is BIGINT or TEXT as the customers' ids are.

        Raises:
            SchemaError: a table already holds ids of the other kind (integers vs strings);
                the message names the table and `ids_from`, where the ids come from.
        """
        id_sql = "TEXT" if pa.types.is_string(customer_id_type) else "BIGINT"
        for name, schema in _SCHEMAS.items():
            columns = []
            for column in schema:
                sql_type = self._sql_type(column.type) if column.name != "customer_id" else id_sql
                not_null = " NOT NULL" if column.name in _NOT_NULL[name] else ""
                columns.append(f"{_quote(column.name)} {sql_type}{not_null}")
            body = ",\n  ".join([*columns, _KEYS[name]])
            self.execute(
                f"CREATE TABLE IF NOT EXISTS {name} (\n  {body}\n)", purpose=f"create {name}"
            )
        self.execute(
            "CREATE INDEX IF NOT EXISTS interaction_history_by_time "
            'ON interaction_history ("timestamp")',
            purpose="index interaction_history",
        )
        for name in ("action_details", "interaction_history"):
            declared = self._customer_id_sql_type(name)
            if _is_text_type(declared) != (id_sql == "TEXT"):
                kind = "strings" if id_sql == "TEXT" else "integers"
                raise SchemaError(
                    f"{self.where}: table {name} stores customer_id as {declared}, but the "
                    f"ids of {ids_from} are {kind}: use ids of the table's kind, or another "
                    "database"
                )

    def _customer_id_sql_type(self, table_name: str) -> str:
        """The declared SQL type of `table_name`'s ``customer_id`` column, upper case."""
        if self.dialect == "sqlite":
            sql = "SELECT type FROM pragma_table_info(?) WHERE name = 'customer_id'"
        else:
            sql = (
                "SELECT data_type FROM information_schema.columns WHERE table_schema = "
                "current_schema() AND table_name = $1 AND column_name = 'customer_id'"
            )
        found = self.query(sql, [table_name], purpose=f"read the columns of {table_name}")
        values = found.column(0).to_pylist()
        return str(values[0]).upper() if values else "TEXT"

    def _sql_type(self, data_type: pa.DataType) -> str:
        if pa.types.is_timestamp(data_type):
            return "TEXT" if self.dialect == "sqlite" else "TIMESTAMPTZ"
        if pa.types.is_floating(data_type):
            return "DOUBLE PRECISION"
        if pa.types.is_int32(data_type):
            return "INTEGER"
        if pa.types.is_integer(data_type):
            return "BIGINT"
        if pa.types.is_boolean(data_type):
            return "BOOLEAN"
        return "TEXT"

    def run(self, run_id: str) -> dict[str, Any] | None:
        """The ``runs`` row of `run_id`, or None."""
        columns = ", ".join(_quote(f.name) for f in RUNS_SCHEMA)
        rows = self.query(
            f"SELECT {columns} FROM runs WHERE run_id = {self.param(1)}",
            [run_id],
            schema=RUNS_SCHEMA,
            purpose="read runs",
        ).to_pylist()
        return rows[0] if rows else None

    def committed_after(self, now: datetime, run_id: str) -> dict[str, Any] | None:
        """The committed run (other than `run_id`) with the latest ``now`` after `now`, or None."""
        columns = ", ".join(_quote(f.name) for f in RUNS_SCHEMA)
        p = self.param
        rows = self.query(
            f"SELECT {columns} FROM runs WHERE status = 'committed' AND run_id <> {p(1)} "
            f'AND "now" > {p(2)} ORDER BY "now" DESC, run_id LIMIT 1',
            [run_id, self.timestamp(now)],
            schema=RUNS_SCHEMA,
            purpose="read runs",
        ).to_pylist()
        return rows[0] if rows else None

    def insert_run(self, run_id: str, campaign: str, now: datetime) -> None:
        """Records a claimed run as ``running``."""
        p = self.param
        self.execute(
            f'INSERT INTO runs (run_id, campaign, "now", status, started_at) '
            f"VALUES ({p(1)}, {p(2)}, {p(3)}, 'running', {p(4)})",
            [run_id, campaign, self.timestamp(now), self.timestamp(datetime.now(UTC))],
            purpose="claim the run",
        )

    def finish_run(self, run_id: str, *, customers: int, decisions: int, funnel: str) -> None:
        """Marks a run ``committed`` with its counts (in the run's write transaction)."""
        p = self.param
        self.execute(
            f"UPDATE runs SET status = 'committed', customers = {p(1)}, decisions = {p(2)}, "
            f"funnel = {p(3)}, finished_at = {p(4)} WHERE run_id = {p(5)}",
            [customers, decisions, funnel, self.timestamp(datetime.now(UTC)), run_id],
            purpose="record the run",
        )

    def release_run(self, run_id: str, campaign: str, now: datetime) -> None:
        """Deletes the claim of a run that failed before writing anything: the ``running``
        row of `run_id` with this `campaign` and `now` (a ``committed`` row, or a claim
        another campaign took meanwhile, stays). Best effort: if the database is gone, the
        claim stays, as after a kill, and a rerun redoes the run."""
        p = self.param
        with suppress(DatabaseError), self.transaction():
            self.execute(
                f"DELETE FROM runs WHERE run_id = {p(1)} AND status = 'running' "
                f'AND campaign = {p(2)} AND "now" = {p(3)}',
                [run_id, campaign, self.timestamp(now)],
                purpose="release the run's claim",
            )

    def read_history(self, since: datetime | None, customer_id_type: pa.DataType) -> pa.Table:
        """The interaction history after `since` (all of it for None), typed for the engine."""
        columns = ", ".join(_quote(f.name) for f in HISTORY_SCHEMA if f.name != "run_id")
        sql = f"SELECT {columns} FROM interaction_history"
        params: list[Any] = []
        if since is not None:
            sql += f' WHERE "timestamp" > {self.param(1)}'
            params.append(self.timestamp(since))
        schema = pa.schema(
            [
                pa.field(f.name, customer_id_type if f.name == "customer_id" else f.type)
                for f in HISTORY_SCHEMA
                if f.name != "run_id"
            ]
        )
        return self.query(sql, params, schema=schema, purpose="read interaction_history")

    def count(self, table_name: str, where: str = "", params: Sequence[Any] = ()) -> int:
        """``SELECT count(*)`` of a table, optionally filtered."""
        if not re.fullmatch(r"[a-z_]+", table_name):
            raise ValueError(f"not a table name: {table_name!r}")
        sql = f"SELECT count(*) AS n FROM {table_name}" + (f" WHERE {where}" if where else "")
        value = self.query(sql, params, purpose=f"count {table_name}").column(0)[0].as_py()
        return int(value)
