"""Campaign files: a good one loads; a wrong one names the file, the field and what it expected."""

from __future__ import annotations

from pathlib import Path

import pytest
from nba_fast import ConfigError
from nba_fast.campaign import CampaignError, load_campaign

from tests.runner.conftest import CAMPAIGN, write_campaign


def test_loads_the_test_campaign(campaign: Path) -> None:
    loaded = load_campaign(campaign)
    assert loaded.name == "test-cards"
    assert loaded.database == "sqlite:///nba_demo.db"
    assert [a.id for a in loaded.actions] == [
        "card_standard_email",
        "card_gold_email",
        "card_cashback_sms",
    ]
    assert loaded.actions[0].treatment == "StandardCardEmail"
    assert loaded.customers.path == campaign.parent / "customers.parquet"
    assert loaded.customers.format == "parquet"
    assert [p.name for p in loaded.policies] == ["one_a_day"]
    assert loaded.history_horizon_days() == 1.0
    assert set(loaded.treatments) == {"StandardCardEmail", "GoldCardEmail", "CashbackCardSms"}


def test_sql_inputs_and_formats(tmp_path: Path) -> None:
    folder = tmp_path / "c"
    write_campaign(folder)
    (folder / "dnc.csv").write_text("channel,customer_id\n*,3\n")
    text = CAMPAIGN.replace(
        'propensities = "propensities.parquet"',
        'propensities = { sql = "SELECT * FROM scores" }\ndo_not_contact = "dnc.csv"',
    )
    path = folder / "campaign.toml"
    path.write_text(text)
    loaded = load_campaign(path)
    assert loaded.propensities is not None and loaded.propensities.sql == "SELECT * FROM scores"
    assert loaded.do_not_contact is not None and loaded.do_not_contact.format == "csv"


BAD = [
    # (replace this, with that, the message must contain these)
    (
        'name = "test-cards"',
        'name = "test-cards"\ncolour = "red"',
        ["'campaign.colour'", "unknown"],
    ),
    ('name = "test-cards"', "name = 42", ["'campaign.name'", "expected a non-empty string", "42"]),
    ('name = "test-cards"', 'name = "x"\ndatabase = "mysql://x"', ["'campaign.database'"]),
    ('channels = ["email", "sms"]', 'channels = ["fax"]', ["'campaign.channels'", "fax"]),
    (
        'customers = "customers.parquet"',
        "customers = 42",
        ["'inputs.customers'", 'expected a file path or { sql = "..." }', "got 42"],
    ),
    ('customers = "customers.parquet"', 'customers = "nope.parquet"', ["'inputs.customers'"]),
    ('customers = "customers.parquet"', 'customers = "c.xlsx"', ["'inputs.customers'", ".csv"]),
    ('customers = "customers.parquet"', "customers = { sql = 1 }", ["'inputs.customers.sql'"]),
    (
        'customers = "customers.parquet"',
        'customers = { query = "x" }',
        ["'inputs.customers.query'"],
    ),
    ("[inputs]", "[inputs]\nscores = 'x.csv'", ["'inputs.scores'", "unknown"]),
    ("value = 120.0", 'value = "high"', ["'action[1]'", "'value'", "must be a number"]),
    ("value = 120.0", "value = 120.0\ncolour = 1", ["'action[1]'", "'colour'"]),
    ('treatment = "GoldCardEmail"', 'treatment = "Nope"', ["'action[2].treatment'", "Nope"]),
    ('channel = "sms"', 'channel = "fax"', ["'action[3].channel'", "fax"]),
    ("threshold = 1", "threshold = 0", ["'policy'", "'threshold'"]),
    ('kind = "limit"', 'kind = "forbid"', ["'policy'", "'kind'"]),
    ("[[policy]]", "[[cap]]\nscope = 'planet:earth'\nmax = 1\n[[policy]]", ["'cap'", "scope"]),
    ("[campaign]", "[campaigns]\nx = 1\n[campaign]", ["unknown top-level key 'campaigns'"]),
    (
        'name = "test-cards"',
        'name = "test-cards"\ndatabase = "sqlite://runs.db"',
        ["'campaign.database'", "sqlite:///PATH"],
    ),
]


@pytest.mark.parametrize(("old", "new", "expected"), BAD)
def test_errors_name_file_and_field(
    tmp_path: Path, old: str, new: str, expected: list[str]
) -> None:
    folder = tmp_path / "c"
    write_campaign(folder, n=5)
    assert old in CAMPAIGN
    path = folder / "campaign.toml"
    path.write_text(CAMPAIGN.replace(old, new, 1))
    with pytest.raises(CampaignError) as info:
        load_campaign(path)
    message = str(info.value)
    assert message.startswith(f"{path}: "), message
    for part in expected:
        assert part in message, message
    assert isinstance(info.value, ConfigError)


def test_missing_parts(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[campaign]\nname = "x"\n')
    with pytest.raises(CampaignError, match=r"c\.toml: field 'inputs\.customers': missing"):
        load_campaign(path)
    path.write_text('[campaign]\nname = "x"\n[inputs]\ncustomers = { sql = "SELECT 1" }\n')
    with pytest.raises(CampaignError, match=r"field 'action': missing"):
        load_campaign(path)
    with pytest.raises(CampaignError, match="not valid TOML"):
        path.write_text("[campaign\n")
        load_campaign(path)
    with pytest.raises(CampaignError, match="cannot read"):
        load_campaign(tmp_path / "absent.toml")


def test_duplicate_action_ids(tmp_path: Path) -> None:
    folder = tmp_path / "c"
    write_campaign(folder, n=5)
    path = folder / "campaign.toml"
    path.write_text(CAMPAIGN.replace('id = "card_gold_email"', 'id = "card_standard_email"'))
    with pytest.raises(CampaignError, match="duplicate id"):
        load_campaign(path)
