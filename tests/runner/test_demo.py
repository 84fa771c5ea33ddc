"""``nba-fast demo`` on 2,000 customers: each phase does what the story says."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from nba_fast import DataError
from nba_fast.campaign import load_campaign
from nba_fast.cli import main
from nba_fast.demo import campaign_toml, run_demo

from tests.runner.conftest import table_rows


def test_the_story(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    out = io.StringIO()
    reports = run_demo(customers=2_000, db=url, out=tmp_path / "uplus", stream=out)
    text = out.getvalue()
    assert [r.status for r in reports] == ["committed"] * 4
    run_ids = [r.run_id for r in reports]
    for name in ("phase1.toml", "phase2.toml", "phase3.toml", "campaign.toml"):
        load_campaign(tmp_path / "uplus" / name)  # every file it writes is a valid campaign

    # Phase 1: Stephen John gets the Standard Card email with its APPLY TODAY link.
    [stephen] = table_rows(
        url, f"SELECT * FROM action_details WHERE run_id = '{run_ids[0]}' AND customer_id = 1"
    )
    assert stephen["action_id"] == "card_standard_email"
    assert stephen["email"] == "stephen.john@example.com"
    assert "Stephen" in stephen["subject"]
    assert "APPLY TODAY: https://uplus.example/apply/standard?c=1" in stephen["body"]
    assert "APPLY TODAY" in text
    phase1 = table_rows(url, f"SELECT action_id FROM action_details WHERE run_id = '{run_ids[0]}'")
    assert {row["action_id"] for row in phase1} == {"card_standard_email"}

    # Phase 2: several offers, one (the best) per customer.
    phase2 = table_rows(
        url, f"SELECT customer_id, action_id FROM action_details WHERE run_id = '{run_ids[1]}'"
    )
    assert len({row["action_id"] for row in phase2}) >= 3
    assert len({row["customer_id"] for row in phase2}) == len(phase2)

    # Phase 3: nobody emailed yesterday is emailed again.
    again = table_rows(
        url,
        "SELECT count(*) AS n FROM action_details a JOIN action_details b "
        "ON a.customer_id = b.customer_id AND a.channel = 'email' AND b.channel = 'email' "
        f"WHERE a.run_id = '{run_ids[2]}' AND b.run_id IN ('{run_ids[0]}', '{run_ids[1]}')",
    )
    assert again == [{"n": 0}]
    assert "emailed again today: 0" in text

    # Phase 4: the email cap holds (2,000 customers: 100 emails).
    [emails] = table_rows(
        url,
        "SELECT count(*) AS n FROM action_details "
        f"WHERE run_id = '{run_ids[3]}' AND channel = 'email'",
    )
    assert emails["n"] == 100

    # Phase 5: one pending history event per action_details row.
    [details] = table_rows(url, "SELECT count(*) AS n FROM action_details")
    [events] = table_rows(url, "SELECT count(*) AS n FROM interaction_history")
    assert details == events
    assert "Phase 5" in text
    variants = table_rows(url, "SELECT DISTINCT variant FROM action_details")
    assert {row["variant"] for row in variants} >= {"default", "language=es", "region=NY"}

    # Again on the same database: nothing new.
    again_reports = run_demo(customers=2_000, db=url, out=tmp_path / "uplus", stream=io.StringIO())
    assert [r.status for r in again_reports] == ["already_committed"] * 4
    assert table_rows(url, "SELECT count(*) AS n FROM action_details") == [details]


def test_docs_show_the_demo_campaign() -> None:
    # docs/campaign.md's example is the file the demo writes (100,000 customers: cap 5,000).
    docs = Path(__file__).resolve().parents[2] / "docs" / "campaign.md"
    text = campaign_toml(4, database="sqlite:///nba_demo.db", email_cap=5_000)
    assert f"```toml\n{text.rstrip()}\n```" in docs.read_text()


def test_an_unwritable_out_folder_is_a_data_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    taken = tmp_path / "afile"
    taken.write_text("not a folder")
    with pytest.raises(DataError, match=rf"{taken}: cannot write the demo's files"):
        run_demo(customers=10, db=f"sqlite:///{tmp_path / 'd.db'}", out=taken)
    code = main(["demo", "--customers", "10", "--out", str(taken / "sub")])
    assert code == 4
    assert "Traceback" not in capsys.readouterr().err
