"""Catalog loading: every source form, the defaults, and each ConfigError."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pytest
from nba_fast._core import ConfigError
from nba_fast.config import (
    CATALOG_SCHEMA,
    Action,
    catalog_to_arrow,
    load_catalog,
    to_epoch_micros,
)

BASE: dict[str, Any] = {"id": "gold", "issue": "Sales", "group": "Cards", "channel": "email"}


def entry(**fields: Any) -> dict[str, Any]:
    return {**BASE, **fields}


TOML = """
[[action]]
id = "gold"
issue = "Sales"
group = "Cards"
channel = "email"
treatment = "GoldEmail"
value = 120
lever = 1.5
context_weight = 0.5
eligibility = "age >= 18 AND NOT has_card"
active_from = 2024-01-01T00:00:00Z
active_until = 2024-06-30T12:00:00+02:00
default_propensity = 0.02

[[action]]
id = "loan"
issue = "Sales"
group = "Loans"
channel = "sms"
active_from = 2024-01-01
active_until = "2025-01-01T00:00:00"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "catalog.toml"
    path.write_text(text, encoding="utf-8")
    return path


# --- sources -------------------------------------------------------------------------------


def test_toml_file(tmp_path: Path) -> None:
    gold, loan = load_catalog(write(tmp_path, TOML))
    assert gold == Action(
        id="gold",
        issue="Sales",
        group="Cards",
        channel="email",
        treatment="GoldEmail",
        value=120.0,
        lever=1.5,
        context_weight=0.5,
        eligibility="age >= 18 AND NOT has_card",
        active_from=datetime(2024, 1, 1, tzinfo=UTC),
        active_until=datetime(2024, 6, 30, 10, 0, tzinfo=UTC),
        default_propensity=0.02,
    )
    assert isinstance(gold.value, float)
    # A TOML local date is midnight UTC; an ISO string without offset is UTC.
    assert loan.active_from == datetime(2024, 1, 1, tzinfo=UTC)
    assert loan.active_until == datetime(2025, 1, 1, tzinfo=UTC)
    assert (loan.value, loan.lever, loan.context_weight) == (1.0, 1.0, 1.0)
    assert loan.treatment is None and loan.eligibility is None and loan.default_propensity is None


def test_toml_path_as_string(tmp_path: Path) -> None:
    assert [a.id for a in load_catalog(str(write(tmp_path, TOML)))] == ["gold", "loan"]


def test_list_of_dicts_keeps_order_and_applies_defaults() -> None:
    actions = load_catalog([entry(id="b"), entry(id="a", value=2)])
    assert [a.id for a in actions] == ["b", "a"]
    assert actions[1].value == 2.0
    assert actions[0] == Action("b", "Sales", "Cards", "email")


def test_action_objects_are_validated_too() -> None:
    assert load_catalog([Action("a", "i", "g", "email")]) == [Action("a", "i", "g", "email")]
    with pytest.raises(ConfigError, match=r"action 'a': field 'value'"):
        load_catalog([Action("a", "i", "g", "email", value=-1.0)])


def test_aware_datetimes_are_converted_to_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    [action] = load_catalog([entry(active_from=datetime(2024, 1, 1, 2, 0, tzinfo=plus_two))])
    assert action.active_from == datetime(2024, 1, 1, tzinfo=UTC)
    assert action.active_from is not None and action.active_from.tzinfo == UTC
    [action] = load_catalog([entry(active_from=date(2024, 3, 1), active_until="2024-03-02")])
    assert action.active_from == datetime(2024, 3, 1, tzinfo=UTC)
    assert action.active_until == datetime(2024, 3, 2, tzinfo=UTC)


def test_arrow_table_round_trip() -> None:
    actions = load_catalog(
        [
            entry(
                id="a",
                treatment="T",
                value=2,
                eligibility="x > 1",
                active_from=datetime(2024, 1, 1, 0, 0, 0, 7, tzinfo=UTC),
                default_propensity=0.5,
            ),
            entry(id="b", channel="sms", active_until="2030-01-01T00:00:00Z"),
        ]
    )
    table = catalog_to_arrow(actions)
    assert table.schema == CATALOG_SCHEMA
    assert table.column("active_from").to_pylist()[0] == datetime(
        2024, 1, 1, 0, 0, 0, 7, tzinfo=UTC
    )
    assert table.column("value").to_pylist() == [2.0, 1.0]
    assert load_catalog(table) == actions
    assert load_catalog(table.to_batches()[0]) == actions
    assert load_catalog(pa.RecordBatchReader.from_batches(table.schema, table.to_batches())) == (
        actions
    )
    assert load_catalog(pl.from_arrow(table)) == actions


def test_arrow_table_with_few_columns_and_other_types() -> None:
    table = pa.table(
        {
            "id": pa.array(["a", "b"]).dictionary_encode(),
            "issue": pa.array(["i", "i"], pa.large_string()),
            "group": ["g", "g"],
            "channel": ["email", "sms"],
            "value": pa.array([3, None], pa.int32()),
            "active_from": pa.array([1_000_000_999, None], pa.timestamp("ns")),
            "active_until": pa.array([None, "2024-01-01T00:00:00+00:00"]),
            "treatment": pa.nulls(2),
        }
    )
    a, b = load_catalog(table)
    assert (a.id, a.value, b.value) == ("a", 3.0, 1.0)
    assert a.active_from == datetime(1970, 1, 1, 0, 0, 1, 0, tzinfo=UTC)  # ns floored to µs
    assert b.active_until == datetime(2024, 1, 1, tzinfo=UTC)
    assert a.treatment is None


def test_catalog_to_arrow_of_no_actions_is_empty() -> None:
    assert catalog_to_arrow([]).num_rows == 0


# --- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["id", "issue", "group", "channel"])
def test_missing_required_field(field: str) -> None:
    fields = {k: v for k, v in BASE.items() if k != field}
    with pytest.raises(ConfigError, match=rf"missing required field '{field}'"):
        load_catalog([fields])


def test_missing_field_names_the_action() -> None:
    with pytest.raises(ConfigError, match=r"action 'gold': missing required field 'channel'"):
        load_catalog([{"id": "gold", "issue": "i", "group": "g"}])
    with pytest.raises(ConfigError, match=r"action #2: missing required field 'id'"):
        load_catalog([entry(id="a"), {"issue": "i", "group": "g", "channel": "c"}])


def test_null_required_field_is_missing() -> None:
    with pytest.raises(ConfigError, match=r"action 'gold': missing required field 'issue'"):
        load_catalog([entry(issue=None)])


def test_unknown_field() -> None:
    with pytest.raises(ConfigError, match=r"action 'gold': unknown field 'prority'"):
        load_catalog([entry(prority=1)])


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("id", 7, "must be a string"),
        ("channel", ["email"], "must be a string"),
        ("treatment", 3, "must be a string"),
        ("eligibility", True, "must be a string"),
        ("value", "1.0", "must be a number"),
        ("lever", True, "must be a number"),
        ("default_propensity", False, "must be a number"),
        ("active_from", 20240101, "must be a date-time"),
        ("active_until", "next tuesday", "is not an ISO 8601 date-time"),
    ],
)
def test_wrong_type(field: str, value: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=rf"field '{field}' {message}"):
        load_catalog([entry(**{field: value})])


def test_duplicate_and_empty_id() -> None:
    with pytest.raises(ConfigError, match=r"action 'a': duplicate id \(actions #1 and #3"):
        load_catalog([entry(id="a"), entry(id="b"), entry(id="a")])
    with pytest.raises(ConfigError, match=r"action #1: field 'id' must not be empty"):
        load_catalog([entry(id="")])


@pytest.mark.parametrize("field", ["value", "lever", "context_weight"])
@pytest.mark.parametrize("bad", [-1, -0.001, math.inf, -math.inf, math.nan, 10**400])
def test_bad_factor(field: str, bad: float) -> None:
    with pytest.raises(
        ConfigError, match=rf"action 'gold': field '{field}' must be finite and >= 0"
    ):
        load_catalog([entry(**{field: bad})])


def test_zero_factors_are_fine() -> None:
    [action] = load_catalog([entry(value=0, lever=0.0, context_weight=-0.0)])
    assert (action.value, action.lever) == (0.0, 0.0)


@pytest.mark.parametrize("bad", [-0.1, 1.0000001, math.nan, math.inf, 2])
def test_default_propensity_outside_unit_interval(bad: float) -> None:
    with pytest.raises(ConfigError, match=r"action 'gold': field 'default_propensity' must be in"):
        load_catalog([entry(default_propensity=bad)])


def test_default_propensity_bounds_are_inclusive() -> None:
    assert load_catalog([entry(default_propensity=0)])[0].default_propensity == 0.0
    assert load_catalog([entry(default_propensity=1)])[0].default_propensity == 1.0


def test_empty_active_window() -> None:
    moment = datetime(2024, 1, 1, tzinfo=UTC)
    with pytest.raises(ConfigError, match=r"action 'gold': field 'active_from' .* must be before"):
        load_catalog([entry(active_from=moment, active_until=moment)])
    with pytest.raises(ConfigError, match=r"must be before"):
        load_catalog([entry(active_from="2024-02-01", active_until="2024-01-01")])


def test_empty_catalog(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no actions"):
        load_catalog([])
    with pytest.raises(ConfigError, match=r"no actions"):
        load_catalog(write(tmp_path, "# nothing here\n"))
    with pytest.raises(ConfigError, match=r"no actions"):
        load_catalog(catalog_to_arrow([]))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[action]\nid = 1", "not valid TOML"),
        ("[action]\nid = 'a'\n", r"\[\[action\]\] tables"),
        ("[[actions]]\nid = 'a'\n", r"unknown top-level key\(s\) \['actions'\]"),
        ("[[action]]\nid = 'a'\nissue = 'i'\ngroup = 'g'\nchannel = 'c'\nvalue = nan\n", "finite"),
        ("[[action]]\nid='a'\nissue='i'\ngroup='g'\nchannel='c'\nactive_from=10:00:00\n", "date"),
    ],
)
def test_bad_toml(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_catalog(write(tmp_path, text))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot read"):
        load_catalog(tmp_path / "nope.toml")


def test_arrow_unknown_column_and_wrong_type() -> None:
    with pytest.raises(ConfigError, match=r"unknown field 'prority'"):
        load_catalog(pa.table({**{k: [v] for k, v in BASE.items()}, "prority": [1]}))
    with pytest.raises(ConfigError, match=r"field 'value' must be integers or floats"):
        load_catalog(pa.table({**{k: [v] for k, v in BASE.items()}, "value": ["1"]}))
    with pytest.raises(ConfigError, match=r"field 'id' must be strings"):
        load_catalog(pa.table({**{k: [v] for k, v in BASE.items()}, "id": [1]}))


def test_unsupported_catalog_object() -> None:
    with pytest.raises(ConfigError, match=r"expected a TOML file path"):
        load_catalog(42)
    with pytest.raises(ConfigError, match=r"action #1: expected a table/dict"):
        load_catalog(["gold"])


# --- to_epoch_micros -----------------------------------------------------------------------


def test_epoch_micros_exact() -> None:
    assert to_epoch_micros(datetime(1970, 1, 1)) == 0
    assert to_epoch_micros(datetime(1970, 1, 1, tzinfo=UTC)) == 0
    assert to_epoch_micros(datetime(1969, 12, 31, 23, 59, 59, 999_999)) == -1
    assert to_epoch_micros(datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)) == (
        253_402_300_799_999_999
    )
    assert to_epoch_micros(datetime(1, 1, 1)) == -62_135_596_800_000_000
    plus_five = timezone(timedelta(hours=5, minutes=30))
    assert to_epoch_micros(datetime(1970, 1, 1, 5, 30, 0, 1, tzinfo=plus_five)) == 1


def test_epoch_micros_now() -> None:
    before = to_epoch_micros(datetime.now(UTC))
    now = to_epoch_micros(None)
    assert before <= now <= to_epoch_micros(datetime.now(UTC))


def test_epoch_micros_rejects_other_types() -> None:
    bad: Callable[[Any], int] = to_epoch_micros
    with pytest.raises(TypeError, match=r"now must be a datetime"):
        bad(date(2024, 1, 1))
