"""Fixtures of the runner's tests: a small campaign on disk, and databases to run it against.

PostgreSQL tests use the server at ``NBA_FAST_TEST_PG`` (default
``postgresql://postgres@127.0.0.1:5432/test``), each in a schema of its own that is dropped
afterwards; where no server answers they are skipped, saying how to enable them.

Subprocess helpers (`start`, `wait_for_pause`, `run_cli`) run ``python -m nba_fast`` as a real
process, so tests can SIGKILL it at a chosen stage (`nba_fast.runner.PAUSE_ENV`).
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
import uuid
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

with warnings.catch_warnings():
    warnings.filterwarnings(
        "ignore", message="nba_fast was built without optimisations", category=RuntimeWarning
    )
    import nba_fast

from nba_fast.demo_data import uplus_customers, uplus_propensities

PG_BASE = os.environ.get("NBA_FAST_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
NOW = datetime(2025, 6, 2, 8, 0, tzinfo=UTC)
PACKAGE_ROOT = str(Path(nba_fast.__file__).resolve().parent.parent)

CAMPAIGN = """\
[campaign]
name = "test-cards"
channels = ["email", "sms"]

[inputs]
customers = "customers.parquet"
propensities = "propensities.parquet"

[[action]]
id = "card_standard_email"
issue = "Sales"
group = "CreditCards"
channel = "email"
value = 120.0
eligibility = "credit_score BETWEEN 600 AND 719 AND NOT has_credit_card"
treatment = "StandardCardEmail"

[[action]]
id = "card_gold_email"
issue = "Sales"
group = "CreditCards"
channel = "email"
value = 250.0
eligibility = "credit_score >= 700"
treatment = "GoldCardEmail"

[[action]]
id = "card_cashback_sms"
issue = "Sales"
group = "CreditCards"
channel = "sms"
value = 150.0
treatment = "CashbackCardSms"

# At most one message per customer per day, whichever run sends it.
[[policy]]
name = "one_a_day"
kind = "limit"
level = "customer"
outcomes = ["pending", "sent"]
threshold = 1
window_days = 1

[treatment.StandardCardEmail]
channel = "email"
subject = "{{ first_name }}, the Standard Card"
body = "APPLY TODAY: https://uplus.example/apply/standard?c={{ customer_id }}"

[treatment.GoldCardEmail]
channel = "email"
subject = "{{ first_name }}, the Gold Card"
body = "APPLY TODAY: https://uplus.example/apply/gold?c={{ customer_id }}"

[treatment.CashbackCardSms]
channel = "sms"
text = "U+ Bank: {{ first_name }}, 2% cash back. https://uplus.example/c/{{ customer_id }}"
"""

ACTION_IDS = ["card_standard_email", "card_gold_email", "card_cashback_sms"]


def write_campaign(folder: Path, n: int = 400, text: str = CAMPAIGN) -> Path:
    """Writes the test campaign and its data (`n` customers) into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    customers = uplus_customers(n, seed=7)
    pq.write_table(customers, folder / "customers.parquet")
    pq.write_table(
        uplus_propensities(customers, ACTION_IDS, seed=7), folder / "propensities.parquet"
    )
    path = folder / "campaign.toml"
    path.write_text(text)
    return path


@pytest.fixture
def campaign(tmp_path: Path) -> Path:
    """The test campaign file, with 400 customers next to it."""
    return write_campaign(tmp_path / "campaign")


def _postgres_reachable() -> str | None:
    """None if the test server answers, else why not."""
    try:
        import adbc_driver_postgresql.dbapi as pg

        with pg.connect(PG_BASE) as conn, conn.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchall()
    except Exception as err:
        return str(err).splitlines()[0]
    return None


_PG_PROBLEM: list[str | None] = []


def pg_url() -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh schema, dropped afterwards."""
    if not _PG_PROBLEM:
        _PG_PROBLEM.append(_postgres_reachable())
    if _PG_PROBLEM[0] is not None:
        pytest.skip(
            f"PostgreSQL not reachable at {PG_BASE} ({_PG_PROBLEM[0]}); start one on "
            "127.0.0.1:5432 with a database 'test' and trust auth (.ci/run does), or set "
            "NBA_FAST_TEST_PG to a libpq URL"
        )
    import adbc_driver_postgresql.dbapi as pg

    schema = f"nba_test_{uuid.uuid4().hex[:12]}"
    with pg.connect(PG_BASE, autocommit=True) as conn, conn.cursor() as cursor:
        cursor.execute(f"CREATE SCHEMA {schema}")
    separator = "&" if "?" in PG_BASE else "?"
    try:
        yield f"{PG_BASE}{separator}options=-csearch_path%3D{schema}"
    finally:
        with pg.connect(PG_BASE, autocommit=True) as conn, conn.cursor() as cursor:
            cursor.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database: an SQLite file, or a PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'runs.db'}"
    else:
        yield from pg_url()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'runs.db'}"


def env(**extra: str) -> dict[str, str]:
    """The environment of a child ``nba-fast`` process."""
    result = dict(os.environ)
    result["PYTHONPATH"] = PACKAGE_ROOT + os.pathsep + result.get("PYTHONPATH", "")
    result["PYTHONWARNINGS"] = "ignore"
    result.update(extra)
    return result


def start(args: list[str], **extra_env: str) -> subprocess.Popen[str]:
    """Starts ``python -m nba_fast ARGS`` as a real process."""
    return subprocess.Popen(
        [sys.executable, "-m", "nba_fast", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env(**extra_env),
    )


def wait_for_pause(process: subprocess.Popen[str], stage: str, timeout: float = 60.0) -> None:
    """Reads the process's stderr until it says it paused at `stage`."""
    assert process.stderr is not None
    descriptor = process.stderr.fileno()  # raw reads: a buffered reader would hide lines
    deadline = time.monotonic() + timeout
    seen = b""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([descriptor], [], [], 0.5)
        if ready:
            chunk = os.read(descriptor, 65536)
            seen += chunk
            if f"paused at {stage}".encode() in seen:
                return
            if not chunk and process.poll() is not None:
                break
    process.kill()
    process.communicate()
    raise AssertionError(f"the run never paused at {stage}: {seen.decode(errors='replace')}")


def run_cli(args: list[str], **extra_env: str) -> subprocess.CompletedProcess[str]:
    """Runs ``python -m nba_fast ARGS`` to the end."""
    return subprocess.run(
        [sys.executable, "-m", "nba_fast", *args],
        capture_output=True,
        text=True,
        env=env(**extra_env),
        timeout=120,
    )


def table_rows(url: str, sql: str) -> list[dict[str, Any]]:
    """The rows of a query, as dicts."""
    from nba_fast.store import Store

    with Store(url) as store:
        rows: list[dict[str, Any]] = store.query(sql).to_pylist()
    return rows


def as_table(rows: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(rows)
