"""The store on SQLite and PostgreSQL: tables, Arrow round trips, keys, the run lock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest
from nba_fast.store import HISTORY_SCHEMA, DatabaseError, Store, redact

NOW = datetime(2025, 6, 2, 8, 0, tzinfo=UTC)


def _events(ids: list[int], when: datetime, run_id: str | None = "r1") -> pa.Table:
    n = len(ids)
    return pa.table(
        {
            "customer_id": pa.array(ids, pa.int64()),
            "action_id": ["gold"] * n,
            "issue": ["Sales"] * n,
            "group": ["Cards"] * n,
            "channel": ["email"] * n,
            "outcome": ["pending"] * n,
            "timestamp": pa.array([when] * n, pa.timestamp("us", tz="UTC")),
            "run_id": pa.array([run_id] * n, pa.string()),
        },
        schema=HISTORY_SCHEMA,
    )


def test_tables_history_round_trip(db_url: str) -> None:
    with Store(db_url) as store:
        assert not store.table_exists("runs")
        with store.transaction():
            store.create_tables(pa.int64())
            store.create_tables(pa.int64())  # idempotent
        assert store.table_exists("action_details")
        assert store.table_exists("interaction_history")
        empty = store.read_history(None, pa.int64())
        assert empty.num_rows == 0
        assert empty.schema.field("timestamp").type == pa.timestamp("us", tz="UTC")
        with store.transaction():
            store.ingest("interaction_history", _events([1, 2, 3], NOW - timedelta(days=3)))
            store.ingest("interaction_history", _events([4], NOW - timedelta(days=30), "old"))
        recent = store.read_history(NOW - timedelta(days=10), pa.int64())
        assert sorted(recent.column("customer_id").to_pylist()) == [1, 2, 3]
        assert recent.column("timestamp")[0].as_py() == NOW - timedelta(days=3)
        assert recent.schema.names == [f.name for f in HISTORY_SCHEMA if f.name != "run_id"]
        # The engine reads it as it is.
        as_text = store.read_history(None, pa.string())
        assert sorted(as_text.column("customer_id").to_pylist()) == ["1", "2", "3", "4"]


def test_unique_key_refuses_a_second_copy(db_url: str) -> None:
    with Store(db_url) as store:
        with store.transaction():
            store.create_tables(pa.int64())
            store.ingest("interaction_history", _events([1, 2], NOW))
        with pytest.raises(DatabaseError, match="interaction_history"), store.transaction():
            store.ingest("interaction_history", _events([2], NOW))
        assert store.count("interaction_history") == 2


def test_transaction_rolls_back_on_error(db_url: str) -> None:
    with Store(db_url) as store:
        with store.transaction():
            store.create_tables(pa.int64())
        with pytest.raises(RuntimeError), store.transaction():
            store.insert_run("r1", "c", NOW)
            store.ingest("interaction_history", _events([1], NOW))
            raise RuntimeError("boom")
        assert store.run("r1") is None
        assert store.count("interaction_history") == 0


def test_runs_row_round_trip(db_url: str) -> None:
    with Store(db_url) as store:
        with store.transaction():
            store.create_tables(pa.string())
            store.insert_run("r1", "cards", NOW)
        row = store.run("r1")
        assert row is not None
        assert (row["campaign"], row["now"], row["status"]) == ("cards", NOW, "running")
        with store.transaction():
            store.finish_run("r1", customers=10, decisions=4, funnel="[]")
        row = store.run("r1")
        assert row is not None
        assert (row["status"], row["customers"], row["decisions"]) == ("committed", 10, 4)
        assert row["finished_at"] is not None


def test_bad_urls(tmp_path: object) -> None:
    with pytest.raises(DatabaseError, match="unknown database URL"):
        Store("mysql://x")
    with pytest.raises(DatabaseError, match="cannot open"):
        Store("sqlite:////nonexistent-folder/x/y.db")
    with pytest.raises(DatabaseError, match=r"postgresql://ann:\*\*\*@127\.0\.0\.1:1/x"):
        Store("postgresql://ann:secret@127.0.0.1:1/x")
    assert redact("sqlite:///a.db") == "sqlite:///a.db"


def test_a_malformed_url_is_a_database_error() -> None:
    # urllib cannot split these; the message must still hide the password.
    for url in ("postgresql://ann:secret@[::1/x", "postgresql://[bad"):
        with pytest.raises(DatabaseError) as info:
            Store(url)
        assert "secret" not in str(info.value)
    assert redact("postgresql://ann:secret@[::1/x") == "postgresql://ann:***@[::1/x"


@pytest.mark.parametrize("year", [1, 999, 1000, 9999])
def test_runs_now_round_trips_in_every_year(db_url: str, year: int) -> None:
    # SQLite stores the fixed form YYYY-MM-DD...: a year below 1000 must keep its 4 digits.
    now = NOW.replace(year=year)
    with Store(db_url) as store:
        with store.transaction():
            store.create_tables(pa.int64())
            store.insert_run("r1", "cards", now)
        row = store.run("r1")
        assert row is not None and row["now"] == now
