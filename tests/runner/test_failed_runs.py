"""A run that fails (bad data, a rule on a missing column, a refused write) leaves the database
as it found it: no rows, and no ``running`` claim that would pin a later run to its ``now`` or
make it a run-id conflict. Its error names the input file or the campaign file."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from nba_fast import DataError, RuleError, SchemaError
from nba_fast.cli import main
from nba_fast.render import TemplateError
from nba_fast.runner import PAUSE_ENV, run_campaign
from nba_fast.store import DatabaseError, Store

from tests.runner.conftest import CAMPAIGN, NOW, start, table_rows, wait_for_pause


def _counts(url: str) -> tuple[int, int, int]:
    with Store(url) as store:
        if not store.table_exists("runs"):
            return (0, 0, 0)
        tables = ("runs", "action_details", "interaction_history")
        runs, details, history = (store.count(name) for name in tables)
    return runs, details, history


def test_a_data_error_leaves_no_claim(campaign: Path, db_url: str) -> None:
    path = campaign.parent / "customers.parquet"
    customers = pq.read_table(path)
    pq.write_table(pa.concat_tables([customers, customers.slice(3, 1)]), path)
    with pytest.raises(DataError, match=r"customers\.parquet.*appears more than once"):
        run_campaign(campaign, db=db_url, now=NOW, run_id="r1")
    assert _counts(db_url) == (0, 0, 0)

    # Fixed, the run goes ahead at its own (later) now: no conflict, no redo of the failure.
    pq.write_table(customers, path)
    later = NOW + timedelta(hours=3)
    report = run_campaign(campaign, db=db_url, now=later, run_id="r1")
    assert (report.status, report.resumed, report.now) == ("committed", False, later)
    [run] = table_rows(db_url, "SELECT run_id, status FROM runs")
    assert run == {"run_id": "r1", "status": "committed"}


def test_a_rule_error_names_the_campaign_file_and_leaves_no_claim(
    campaign: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    campaign.write_text(CAMPAIGN.replace("credit_score >= 700", "shoe_size >= 7"))
    with pytest.raises(RuleError, match=rf"^{re.escape(str(campaign))}: .*shoe_size"):
        run_campaign(campaign, db=sqlite_url, now=NOW)
    assert _counts(sqlite_url) == (0, 0, 0)
    code = main(["run", str(campaign), "--db", sqlite_url])
    assert code == 3
    assert f"campaign error: {campaign}: " in capsys.readouterr().err


def test_a_redone_run_that_fails_keeps_its_claim(campaign: Path, sqlite_url: str) -> None:
    # A claim left by a killed attempt is not this call's to release: it keeps its now.
    with Store(sqlite_url) as store, store.transaction():
        store.create_tables(pa.int64())
        store.insert_run("r1", "test-cards", NOW)
    path = campaign.parent / "customers.parquet"
    customers = pq.read_table(path)
    pq.write_table(pa.concat_tables([customers, customers.slice(0, 1)]), path)
    with pytest.raises(DataError):
        run_campaign(campaign, db=sqlite_url, run_id="r1")
    [run] = table_rows(sqlite_url, "SELECT run_id, status FROM runs")
    assert run == {"run_id": "r1", "status": "running"}


def test_a_twin_whose_claim_was_released_claims_again(campaign: Path, sqlite_url: str) -> None:
    # The claim vanishes between this run's claim and its write (a failing twin released it):
    # the run records itself again, so its rows never lack their runs row.
    process = start(
        ["run", str(campaign), "--db", sqlite_url, "--now", NOW.isoformat(), "--run-id", "r1"],
        **{PAUSE_ENV: "claimed", "NBA_FAST_TEST_PAUSE_SECONDS": "2"},
    )
    wait_for_pause(process, "claimed")
    with Store(sqlite_url) as store, store.transaction():
        store.execute("DELETE FROM runs")
    _, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    [run] = table_rows(sqlite_url, "SELECT run_id, status, decisions FROM runs")
    written = len(table_rows(sqlite_url, "SELECT run_id FROM action_details"))
    assert run == {"run_id": "r1", "status": "committed", "decisions": written}
    assert written > 0


def test_customer_ids_of_another_kind_than_the_tables_are_refused(
    campaign: Path, db_url: str
) -> None:
    # The tables hold integer ids; a campaign with string ids would fail in PostgreSQL's COPY
    # with a cryptic message, and SQLite would store "007" as the integer 7, so a contact
    # policy would no longer find the customer's events.
    first = run_campaign(campaign, db=db_url, now=NOW, run_id="ints")
    for name in ("customers", "propensities"):
        path = campaign.parent / f"{name}.parquet"
        table = pq.read_table(path)
        ids = pa.array([f"{i:03d}" for i in table.column("customer_id").to_pylist()])
        pq.write_table(table.set_column(0, "customer_id", ids), path)
    with pytest.raises(SchemaError, match=r"action_details.*customer_id.*customers\.parquet"):
        run_campaign(campaign, db=db_url, now=NOW, run_id="strings")
    assert _counts(db_url) == (1, first.written, first.written)


def test_a_refused_write_leaves_nothing(campaign: Path, db_url: str) -> None:
    # The sender added a NOT NULL column the runner does not fill: the COPY / INSERT of
    # action_details fails inside the run's transaction. Typed, and nothing stays behind.
    with Store(db_url) as store, store.transaction():
        store.create_tables(pa.int64())
        store.execute("ALTER TABLE action_details ADD COLUMN sender_batch BIGINT NOT NULL")
    with pytest.raises(DatabaseError, match="cannot write action_details"):
        run_campaign(campaign, db=db_url, now=NOW, run_id="r1")
    assert _counts(db_url) == (0, 0, 0)


def test_a_template_error_while_rendering_names_the_campaign_file(
    campaign: Path, sqlite_url: str
) -> None:
    campaign.write_text(
        CAMPAIGN.replace("the Gold Card", "{{ 1 // (credit_score - credit_score) }}")
    )
    with pytest.raises(TemplateError, match=rf"^{re.escape(str(campaign))}: treatment 'Gold"):
        run_campaign(campaign, db=sqlite_url, now=NOW)
    assert _counts(sqlite_url) == (0, 0, 0)


def test_a_claim_taken_over_by_another_campaign_meanwhile_is_a_conflict(
    campaign: Path, sqlite_url: str
) -> None:
    # Between this run's claim and its write, its claim was released (a failing twin) and
    # the run id claimed by another campaign: writing under that claim would file this
    # campaign's rows as the other's run, and the other run would then find itself done.
    process = start(
        ["run", str(campaign), "--db", sqlite_url, "--now", NOW.isoformat(), "--run-id", "r1"],
        **{PAUSE_ENV: "claimed", "NBA_FAST_TEST_PAUSE_SECONDS": "2"},
    )
    wait_for_pause(process, "claimed")
    with Store(sqlite_url) as store, store.transaction():
        store.execute("DELETE FROM runs")
        store.insert_run("r1", "another-campaign", NOW + timedelta(hours=1))
    _, err = process.communicate(timeout=60)
    assert process.returncode == 6, err
    assert table_rows(sqlite_url, "SELECT run_id, campaign, status FROM runs") == [
        {"run_id": "r1", "campaign": "another-campaign", "status": "running"}
    ]
    assert _counts(sqlite_url)[1:] == (0, 0)


def test_a_variant_column_the_customers_lack_names_the_customers_file(
    campaign: Path, sqlite_url: str
) -> None:
    variant = '\n[[treatment.GoldCardEmail.variant]]\nlanguage = "es"\nsubject = "Hola"\n'
    campaign.write_text(CAMPAIGN + variant)
    path = campaign.parent / "customers.parquet"
    pq.write_table(pq.read_table(path).drop_columns(["language"]), path)
    with pytest.raises(SchemaError, match=rf"^{re.escape(str(path))}: .*'language'"):
        run_campaign(campaign, db=sqlite_url, now=NOW)
    assert _counts(sqlite_url) == (0, 0, 0)
