"""``nba-fast``: what it prints and the exit code a script sees, for every kind of outcome."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from nba_fast.cli import EXIT_CODES, main

from tests.runner.conftest import CAMPAIGN, NOW, run_cli, table_rows


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_run_then_again(
    campaign: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ("run", str(campaign), "--db", sqlite_url, "--now", NOW.isoformat())
    code, out, _ = _run(capsys, *args)
    assert code == 0
    assert "run test-cards-2025-06-02 of campaign test-cards" in out
    assert "committed:" in out
    assert "funnel" in out and "candidate" in out and "selected" in out
    written = len(table_rows(sqlite_url, "SELECT customer_id FROM action_details"))
    assert f"committed: {written:,} action_details rows" in out
    code, out, _ = _run(capsys, *args)
    assert (code, "already committed" in out) == (0, True)
    assert len(table_rows(sqlite_url, "SELECT customer_id FROM action_details")) == written


def test_dry_run_writes_nothing(
    campaign: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "never.db"
    code, out, _ = _run(capsys, "run", str(campaign), "--db", f"sqlite:///{db}", "--dry-run")
    assert code == 0
    assert "dry run" in out
    assert not db.exists()


SCORES_SQL = '{ sql = "SELECT customer_id, action_id, propensity FROM scores" }'


def test_dry_run_with_sql_inputs_creates_no_database(
    campaign: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A missing database: an error (the query has nothing to read), and no empty file left.
    campaign.write_text(CAMPAIGN.replace('"propensities.parquet"', SCORES_SQL))
    missing = tmp_path / "missing.db"
    code, _, err = _run(capsys, "run", str(campaign), "--db", f"sqlite:///{missing}", "--dry-run")
    assert code == 5, err
    assert "read-only" in err
    assert not missing.exists()


def test_dry_run_leaves_an_sqlite_file_as_it_was(
    campaign: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # An existing database in rollback-journal mode: read, and left byte for byte as it was
    # (not switched to WAL, no -wal/-shm files).
    campaign.write_text(CAMPAIGN.replace('"propensities.parquet"', SCORES_SQL))
    db = tmp_path / "scores.db"
    scores = pq.read_table(campaign.parent / "propensities.parquet").to_pylist()
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE scores (customer_id INTEGER, action_id TEXT, propensity REAL)")
        conn.executemany(
            "INSERT INTO scores VALUES (:customer_id, :action_id, :propensity)", scores
        )
    conn.close()
    before = db.read_bytes()
    code, out, err = _run(capsys, "run", str(campaign), "--db", f"sqlite:///{db}", "--dry-run")
    assert code == 0, err
    assert "dry run" in out
    assert db.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("scores")) == [
        "scores.db"
    ]


def test_run_id_conflict(
    campaign: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ("run", str(campaign), "--db", sqlite_url, "--run-id", "r1")
    assert _run(capsys, *base, "--now", NOW.isoformat())[0] == 0
    code, _, err = _run(capsys, *base, "--now", "2025-06-03T08:00:00+00:00")
    assert code == 6
    assert "run-id conflict" in err and "'r1'" in err


def test_campaign_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(CAMPAIGN.replace("[inputs]", "[inputs]\nextra = 1"))
    code, _, err = _run(capsys, "run", str(path))
    assert code == 3
    assert f"{path}: field 'inputs.extra'" in err


def test_data_error(campaign: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    (campaign.parent / "customers.parquet").write_bytes(b"not parquet at all")
    code, _, err = _run(capsys, "run", str(campaign), "--db", sqlite_url)
    assert code == 4
    assert "customers.parquet" in err


def test_rule_on_a_missing_column(
    campaign: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    campaign.write_text(CAMPAIGN.replace("credit_score >= 700", "shoe_size >= 7"))
    code, _, err = _run(capsys, "run", str(campaign), "--db", sqlite_url)
    assert code == 3
    assert "shoe_size" in err


def test_database_error(campaign: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path}/no/such/folder/x.db"
    code, _, err = _run(capsys, "run", str(campaign), "--db", url)
    assert code == 5
    assert "database error" in err


def test_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    for args in (
        [],
        ["run"],
        ["run", "c.toml", "--now", "yesterday"],
        ["demo", "--customers", "0"],
    ):
        with pytest.raises(SystemExit) as info:
            main(args)
        assert info.value.code == 2
    capsys.readouterr()


def test_help_documents_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = capsys.readouterr().out
    for code in EXIT_CODES:
        assert f"  {code:>3}  " in out


def test_a_real_process(campaign: Path, sqlite_url: str) -> None:
    result = run_cli(["run", str(campaign), "--db", sqlite_url, "--now", NOW.isoformat()])
    assert result.returncode == 0, result.stderr
    assert "nba-fast: write done" in result.stderr  # progress, off a terminal
    bad = run_cli(["run", str(campaign), "--db", "mysql://x"])
    assert bad.returncode == 5


def test_a_policy_window_beyond_the_calendar_reads_all_history(
    campaign: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # now - 1,000,000 days is before year 1: the whole history counts, no OverflowError.
    campaign.write_text(CAMPAIGN.replace("window_days = 1\n", "window_days = 1000000\n"))
    first = ("run", str(campaign), "--db", sqlite_url, "--now", NOW.isoformat())
    assert _run(capsys, *first)[0] == 0
    later = ("run", str(campaign), "--db", sqlite_url, "--now", "2030-01-01T00:00:00Z")
    code, out, err = _run(capsys, *later)
    assert code == 0, err
    assert "400 customers, 0 decisions" in out  # everyone was sent to, within the window
