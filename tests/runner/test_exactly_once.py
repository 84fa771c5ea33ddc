"""Exactly once: a real ``nba-fast run`` process killed (SIGKILL) at every stage, then run
again, leaves exactly the rows of an uninterrupted run; two processes at once never send a
customer twice. On SQLite and on PostgreSQL."""

from __future__ import annotations

import signal
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from nba_fast.runner import PAUSE_ENV, PAUSE_STAGES, RunConflictError, run_campaign
from nba_fast.store import LOCK_TIMEOUT_ENV, DatabaseError, Store

from tests.runner.conftest import NOW, run_cli, start, table_rows, wait_for_pause

DETAILS = (
    "SELECT run_id, customer_id, action_id, channel, email, phone, subject, body, sms_text, "
    "status FROM action_details ORDER BY customer_id, action_id"
)
HISTORY = (
    "SELECT run_id, customer_id, action_id, outcome FROM interaction_history "
    "ORDER BY customer_id, action_id"
)


@pytest.fixture
def reference(campaign: Path, tmp_path: Path) -> dict[str, list[dict[str, Any]]]:
    """What an uninterrupted run writes (on its own SQLite database)."""
    url = f"sqlite:///{tmp_path / 'reference.db'}"
    report = run_campaign(campaign, db=url, now=NOW, run_id="r1")
    assert report.status == "committed" and report.written > 0
    return {"details": table_rows(url, DETAILS), "history": table_rows(url, HISTORY)}


def _args(campaign: Path, url: str, run_id: str = "r1") -> list[str]:
    return ["run", str(campaign), "--db", url, "--now", NOW.isoformat(), "--run-id", run_id]


@pytest.mark.parametrize("stage", PAUSE_STAGES)
def test_kill_at_any_stage_then_rerun(
    stage: str, campaign: Path, db_url: str, reference: dict[str, list[dict[str, Any]]]
) -> None:
    process = start(_args(campaign, db_url), **{PAUSE_ENV: stage})
    wait_for_pause(process, stage)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=30)  # reaps it and closes its pipes
    assert process.returncode == -signal.SIGKILL

    # Killed before COMMIT: nothing of the run is there, but the claim is.
    assert table_rows(db_url, DETAILS) == []
    assert table_rows(db_url, HISTORY) == []
    [run] = table_rows(db_url, "SELECT run_id, status FROM runs")
    assert run == {"run_id": "r1", "status": "running"}

    # Run again, without --now: the recorded now is used; everything is written once.
    again = run_cli(["run", str(campaign), "--db", db_url, "--run-id", "r1"])
    assert again.returncode == 0, again.stderr
    assert "redone" in again.stdout
    assert table_rows(db_url, DETAILS) == reference["details"]
    assert table_rows(db_url, HISTORY) == reference["history"]

    # And again: already committed, nothing written.
    third = run_cli(_args(campaign, db_url))
    assert third.returncode == 0, third.stderr
    assert "already committed" in third.stdout
    assert table_rows(db_url, DETAILS) == reference["details"]
    [run] = table_rows(db_url, "SELECT run_id, status FROM runs")
    assert run == {"run_id": "r1", "status": "committed"}


def test_same_run_twice_at_once(
    campaign: Path, db_url: str, reference: dict[str, list[dict[str, Any]]]
) -> None:
    # The first holds the run lock (paused after deciding) while the second starts.
    first = start(
        _args(campaign, db_url), **{PAUSE_ENV: "decided", "NBA_FAST_TEST_PAUSE_SECONDS": "2"}
    )
    wait_for_pause(first, "decided")
    second = start(_args(campaign, db_url))
    out_first, err_first = first.communicate(timeout=60)
    out_second, err_second = second.communicate(timeout=60)
    assert (first.returncode, second.returncode) == (0, 0), err_first + err_second
    assert "committed:" in out_first
    assert "already committed" in out_second
    assert table_rows(db_url, DETAILS) == reference["details"]
    assert table_rows(db_url, HISTORY) == reference["history"]


def test_two_runs_at_once_never_send_a_customer_twice(campaign: Path, db_url: str) -> None:
    # Two different runs of a campaign whose policy allows one message a day: the second
    # waits for the first's lock and reads its pending events, so it sends to nobody twice.
    first = start(
        _args(campaign, db_url, "run-a"),
        **{PAUSE_ENV: "decided", "NBA_FAST_TEST_PAUSE_SECONDS": "2"},
    )
    wait_for_pause(first, "decided")
    second = start(_args(campaign, db_url, "run-b"))
    _, err_first = first.communicate(timeout=60)
    _, err_second = second.communicate(timeout=60)
    assert (first.returncode, second.returncode) == (0, 0), err_first + err_second
    rows = table_rows(db_url, "SELECT run_id, customer_id FROM action_details")
    customers = [row["customer_id"] for row in rows]
    assert len(customers) > 0
    assert len(customers) == len(set(customers))
    assert {row["run_id"] for row in rows} == {"run-a"}  # run-b found everyone contacted


def test_a_run_gives_up_waiting_for_the_lock_after_the_lock_timeout(
    campaign: Path, db_url: str
) -> None:
    # The first holds the run lock (paused after deciding); the second waits 1 s, not 10 min.
    first = start(
        _args(campaign, db_url, "run-a"),
        **{PAUSE_ENV: "decided", "NBA_FAST_TEST_PAUSE_SECONDS": "30"},
    )
    try:
        wait_for_pause(first, "decided")
        started = time.monotonic()
        second = run_cli(_args(campaign, db_url, "run-b"), **{LOCK_TIMEOUT_ENV: "1"})
        waited = time.monotonic() - started
    finally:
        first.kill()
        first.communicate(timeout=30)
    assert second.returncode == 5, second.stderr
    assert "another run holds the run lock" in second.stderr
    assert f"{LOCK_TIMEOUT_ENV}" in second.stderr
    assert waited < 20  # process start-up and imports included
    # The second claimed nothing (the killed first left its claim).
    assert table_rows(db_url, "SELECT run_id FROM runs") == [{"run_id": "run-a"}]


@pytest.mark.parametrize("value", ["soon", "0", "-1", "nan", "inf"])
def test_a_bad_lock_timeout_is_a_database_error_naming_the_variable(
    sqlite_url: str, value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(LOCK_TIMEOUT_ENV, value)
    with pytest.raises(DatabaseError, match=f"{LOCK_TIMEOUT_ENV}="):
        Store(sqlite_url)


def test_ctrl_c_rolls_back_and_exits_130(campaign: Path, sqlite_url: str) -> None:
    process = start(_args(campaign, sqlite_url), **{PAUSE_ENV: "mid_write"})
    wait_for_pause(process, "mid_write")
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 130, err
    assert "interrupted" in err
    assert table_rows(sqlite_url, DETAILS) == []
    again = run_cli(_args(campaign, sqlite_url))
    assert again.returncode == 0, again.stderr
    assert "redone" in again.stdout


def test_a_dry_run_says_what_running_the_run_again_would_do(campaign: Path, db_url: str) -> None:
    # Killed after its claim: a dry run decides at the claimed now, as the redo will.
    process = start(_args(campaign, db_url), **{PAUSE_ENV: "claimed"})
    wait_for_pause(process, "claimed")
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=30)
    dry = run_campaign(campaign, db=db_url, run_id="r1", dry_run=True)
    assert (dry.status, dry.now) == ("dry_run", NOW)
    with pytest.raises(RunConflictError):  # as the real run would be
        run_campaign(campaign, db=db_url, now=NOW + timedelta(hours=1), run_id="r1", dry_run=True)

    # Committed: the dry run says so, rather than deciding again over the run's own events.
    report = run_campaign(campaign, db=db_url, run_id="r1")
    assert report.status == "committed" and report.resumed
    dry = run_campaign(campaign, db=db_url, run_id="r1", dry_run=True)
    assert (dry.status, dry.now, dry.decisions) == ("already_committed", NOW, report.decisions)
    assert table_rows(db_url, "SELECT run_id, status FROM runs") == [
        {"run_id": "r1", "status": "committed"}
    ]


def test_killed_run_is_not_redone_after_a_later_run_committed(campaign: Path, db_url: str) -> None:
    # r1 dies after its claim; r2, a day later, commits; redoing r1 at its old now would not
    # see r2's pending events (events after now are ignored) and could email them again.
    process = start(_args(campaign, db_url), **{PAUSE_ENV: "claimed"})
    wait_for_pause(process, "claimed")
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=30)
    later = (NOW + timedelta(days=1)).isoformat()
    second = run_cli(["run", str(campaign), "--db", db_url, "--now", later, "--run-id", "r2"])
    assert second.returncode == 0, second.stderr
    before = table_rows(db_url, DETAILS)
    assert before and {row["run_id"] for row in before} == {"r2"}

    redo = run_cli(["run", str(campaign), "--db", db_url, "--run-id", "r1"])
    assert redo.returncode == 6, redo.stderr
    assert "'r2'" in redo.stderr and "another --run-id" in redo.stderr
    assert table_rows(db_url, DETAILS) == before
    runs = table_rows(db_url, "SELECT run_id, status FROM runs ORDER BY run_id")
    assert runs == [
        {"run_id": "r1", "status": "running"},
        {"run_id": "r2", "status": "committed"},
    ]

    # The same redo before any later run commits is still fine (the other kill tests).
    with pytest.raises(RunConflictError, match="has committed since"):
        run_campaign(campaign, db=db_url, run_id="r1")
