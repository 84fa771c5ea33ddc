"""Campaign inputs in every format: Parquet, CSV, Arrow IPC (file and stream), and SQL."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.feather as feather
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest
from nba_fast import DataError, SchemaError
from nba_fast.runner import run_campaign
from nba_fast.store import DatabaseError, Store

from tests.runner.conftest import CAMPAIGN, NOW, table_rows


def _decisions(campaign: Path, url: str) -> list[tuple[int, str]]:
    run_campaign(campaign, db=url, now=NOW, run_id="r")
    rows = table_rows(url, "SELECT customer_id, action_id FROM action_details")
    return sorted((row["customer_id"], row["action_id"]) for row in rows)


def _write(table: pa.Table, path: Path) -> None:
    if path.suffix == ".csv":
        pa_csv.write_csv(table, path)
    elif path.suffix == ".feather":
        feather.write_feather(table, path)
    else:  # .arrow: the stream format
        with ipc.new_stream(path, table.schema) as writer:
            writer.write_table(table)


@pytest.mark.parametrize("suffix", [".csv", ".feather", ".arrow"])
def test_file_formats_decide_alike(campaign: Path, tmp_path: Path, suffix: str) -> None:
    expected = _decisions(campaign, f"sqlite:///{tmp_path / 'parquet.db'}")
    propensities = pq.read_table(campaign.parent / "propensities.parquet")
    _write(propensities, campaign.parent / f"propensities{suffix}")
    campaign.write_text(CAMPAIGN.replace("propensities.parquet", f"propensities{suffix}"))
    assert _decisions(campaign, f"sqlite:///{tmp_path / 'other.db'}") == expected


def test_a_customers_csv_with_only_a_header_is_a_run_with_no_customers(
    campaign: Path, sqlite_url: str
) -> None:
    # No rows: nothing to infer the columns' types from (pyarrow reads them as null).
    columns = pq.read_table(campaign.parent / "customers.parquet").column_names
    (campaign.parent / "customers.csv").write_text(",".join(columns) + "\n")
    campaign.write_text(CAMPAIGN.replace("customers.parquet", "customers.csv"))
    report = run_campaign(campaign, db=sqlite_url, now=NOW, run_id="r")
    assert (report.status, report.customers, report.decisions) == ("committed", 0, 0)
    assert table_rows(sqlite_url, "SELECT count(*) AS n FROM action_details") == [{"n": 0}]
    assert table_rows(sqlite_url, "SELECT run_id, status FROM runs") == [
        {"run_id": "r", "status": "committed"}
    ]
    # Without propensities, the ids take the kind the database's tables hold (integers here).
    text = CAMPAIGN.replace("customers.parquet", "customers.csv")
    text = text.replace('propensities = "propensities.parquet"\n', "")
    campaign.write_text(text.replace("treatment = ", "default_propensity = 0.1\ntreatment = "))
    again = run_campaign(campaign, db=sqlite_url, now=NOW, run_id="r2")
    assert (again.status, again.customers) == ("committed", 0)


def test_sql_inputs(campaign: Path, db_url: str, tmp_path: Path) -> None:
    expected = _decisions(campaign, f"sqlite:///{tmp_path / 'parquet.db'}")
    with Store(db_url) as store, store.transaction():
        store.execute("CREATE TABLE scores (customer_id BIGINT, action_id TEXT, propensity FLOAT)")
        store.ingest("scores", pq.read_table(campaign.parent / "propensities.parquet"))
    sql = '{ sql = "SELECT customer_id, action_id, propensity FROM scores" }'
    campaign.write_text(CAMPAIGN.replace('"propensities.parquet"', sql))
    assert _decisions(campaign, db_url) == expected


def test_unreadable_and_wrong_inputs(campaign: Path, sqlite_url: str) -> None:
    (campaign.parent / "propensities.parquet").write_text("garbage")
    with pytest.raises(DataError, match=r"propensities\.parquet: cannot read inputs\.propensities"):
        run_campaign(campaign, db=sqlite_url, now=NOW)
    customers = pq.read_table(campaign.parent / "customers.parquet")
    pq.write_table(customers.drop_columns(["customer_id"]), campaign.parent / "customers.parquet")
    with pytest.raises(SchemaError, match=r"customers\.parquet: customers need a 'customer_id'"):
        run_campaign(campaign, db=sqlite_url, now=NOW)


def test_unsigned_ids_beyond_int64_are_a_data_error(campaign: Path, sqlite_url: str) -> None:
    path = campaign.parent / "customers.parquet"
    customers = pq.read_table(path)
    ids = customers.column("customer_id").cast(pa.uint64()).to_pylist()
    ids[0] = 2**64 - 5
    pq.write_table(customers.set_column(0, "customer_id", pa.array(ids, pa.uint64())), path)
    with pytest.raises(
        DataError, match=r"customers\.parquet: column 'customer_id'.*18446744073709551611"
    ):
        run_campaign(campaign, db=sqlite_url, now=NOW)


def test_sql_inputs_cannot_write(campaign: Path, db_url: str) -> None:
    # The campaign file is edited by marketing users (its treatments are sandboxed for that
    # reason): its input queries must not change the database, e.g. its history or its runs.
    with Store(db_url) as store, store.transaction():
        store.execute("CREATE TABLE scores (customer_id BIGINT, action_id TEXT, propensity FLOAT)")
        store.ingest("scores", pq.read_table(campaign.parent / "propensities.parquet"))
        before = store.count("scores")
    sql = '{ sql = "DELETE FROM scores RETURNING customer_id, action_id, propensity" }'
    campaign.write_text(CAMPAIGN.replace('"propensities.parquet"', sql))
    with pytest.raises(DatabaseError, match=r"inputs\.propensities"):
        run_campaign(campaign, db=db_url, now=NOW, run_id="r")
    with Store(db_url) as store:
        assert store.count("scores") == before
    # A reading query still works, and the run writes as usual afterwards.
    sql = '{ sql = "SELECT customer_id, action_id, propensity FROM scores" }'
    campaign.write_text(CAMPAIGN.replace('"propensities.parquet"', sql))
    assert run_campaign(campaign, db=db_url, now=NOW, run_id="r").written > 0
