"""Propensities given as columns of the customers table: ``propensities={action_id: column}``.

The columns are read batch by batch as the customers stream, so a scoring job's wide output
(one score column per action) needs no second copy. The answer is the one the same values
give as a long table; bad input is a typed error naming the culprit, alike in both engines.
"""

from __future__ import annotations

from typing import Any

import nba_fast
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st
from nba_fast import DataError, SchemaError

from tests.conftest import NOW, assert_same_result, batches_of
from tests.strategies import customers, propensity_columns, scenarios

CATALOG = [
    {"id": "card", "issue": "Sales", "group": "Cards", "channel": "push", "value": 2.0},
    {"id": "loan", "issue": "Sales", "group": "Loans", "channel": "push", "value": 3.0},
    {
        "id": "save",
        "issue": "Retention",
        "group": "Savings",
        "channel": "push",
        "default_propensity": 0.2,
    },
]


def customers_table() -> pa.Table:
    return pa.table(
        {
            "customer_id": pa.array([1, 2, 3, 4], pa.int64()),
            "p_card": pa.array([0.5, None, 0.1, 0.9], pa.float64()),
            "p_loan": pa.array([0.1, 0.2, None, 0.0], pa.float32()),
            "segment": ["a", "b", "c", "d"],
        }
    )


MAPPING = {"card": "p_card", "loan": "p_loan"}


def as_long(table: pa.Table, mapping: dict[str, str]) -> pa.Table:
    """The same values as a long table (NULLs left out)."""
    rows: list[tuple[Any, str, float]] = []
    ids = table.column("customer_id").to_pylist()
    for action_id, column in mapping.items():
        for customer_id, p in zip(ids, table.column(column).to_pylist(), strict=True):
            if p is not None:
                rows.append((customer_id, action_id, float(p)))
    return pa.table(
        {
            "customer_id": pa.array([r[0] for r in rows], table.schema.field("customer_id").type),
            "action_id": pa.array([r[1] for r in rows], pa.string()),
            "propensity": pa.array([r[2] for r in rows], pa.float64()),
        }
    )


def test_columns_give_what_the_long_table_gives(engine_cls: Any) -> None:
    table = customers_table()
    engine = engine_cls(CATALOG, max_per_customer=3)
    by_columns = engine.decide(table, propensities=MAPPING, now=NOW)
    by_rows = engine.decide(table, propensities=as_long(table, MAPPING), now=NOW)
    assert_same_result(by_columns, by_rows)
    chosen = {
        (r["customer_id"], r["action_id"]): r["propensity"]
        for r in by_columns.decisions.to_pylist()
    }
    # A NULL and an action without a column take the default, or are dropped without one.
    assert chosen[(1, "card")] == 0.5
    assert (2, "card") not in chosen
    assert chosen[(2, "save")] == 0.2
    assert (3, "loan") not in chosen
    assert chosen[(3, "save")] == 0.2


def test_columns_are_read_from_every_batch_of_a_stream() -> None:
    table = customers_table()
    engine = nba_fast.Engine(CATALOG, max_per_customer=3, batch_rows=1)
    whole = engine.decide(table, propensities=MAPPING, now=NOW)
    streamed = engine.decide(batches_of(table, [1, 2, 1]), propensities=MAPPING, now=NOW)
    assert_same_result(whole, streamed)


@given(st.data())
def test_columns_agree_with_the_long_form_on_random_customers(data: st.DataObject) -> None:
    scenario = data.draw(scenarios())
    if isinstance(scenario.propensities, dict):
        people, mapping = scenario.people, scenario.propensities
    else:
        people, mapping = data.draw(propensity_columns(scenario.people, scenario.catalog))
    engine = nba_fast.Engine(scenario.catalog.actions, max_per_customer=scenario.max_per_customer)
    by_columns = engine.decide(people.table, propensities=mapping, now=scenario.now_arg)
    long = as_long(people.table, mapping)
    by_rows = engine.decide(people.table, propensities=long, now=scenario.now_arg)
    assert_same_result(by_columns, by_rows)


@given(customers())
def test_no_mapping_entries_means_default_propensities(people: Any) -> None:
    engine = nba_fast.Engine(CATALOG)
    empty = engine.decide(people.table, propensities={}, now=NOW)
    none = engine.decide(people.table, propensities=None, now=NOW)
    assert_same_result(empty, none)


@pytest.mark.parametrize(
    ("mapping", "error", "names"),
    [
        ({"nope": "p_card"}, DataError, ["'nope'", "not in the catalog"]),
        ({"card": "missing"}, SchemaError, ["'missing'", "'card'", "not a column of customers"]),
        ({"card": "segment"}, SchemaError, ["'segment'", "'card'", "must be numeric"]),
        ({1: "p_card"}, SchemaError, ["1: 'p_card'", "column names"]),
        ({"card": 7}, SchemaError, ["'card': 7", "column names"]),
    ],
)
def test_a_bad_mapping_is_a_typed_error_naming_it(
    engine_cls: Any, mapping: dict[Any, Any], error: type[Exception], names: list[str]
) -> None:
    engine = engine_cls(CATALOG)
    with pytest.raises(error) as caught:
        engine.decide(customers_table(), propensities=mapping, now=NOW)
    message = str(caught.value).replace('"', "'")
    for name in names:
        assert name in message


@pytest.mark.parametrize("bad", [1.5, -0.1, float("nan")])
def test_a_value_outside_0_1_names_the_customer_and_action(engine_cls: Any, bad: float) -> None:
    table = customers_table()
    values = table.column("p_loan").to_pylist()
    values[2] = bad
    table = table.set_column(2, "p_loan", pa.array(values, pa.float64()))
    with pytest.raises(DataError) as caught:
        engine_cls(CATALOG).decide(table, propensities=MAPPING, now=NOW)
    message = str(caught.value).replace('"', "'")
    assert "customer 3" in message
    assert "action 'loan'" in message
    assert "not a probability in [0, 1]" in message


def test_the_first_bad_value_is_reported_in_row_then_catalog_order(engine_cls: Any) -> None:
    table = pa.table(
        {
            "customer_id": [1, 2, 3],
            "p_card": [0.1, 2.0, 3.0],
            "p_loan": [0.1, 5.0, 0.2],
        }
    )
    with pytest.raises(DataError) as caught:
        engine_cls(CATALOG).decide(table, propensities=MAPPING, now=NOW)
    message = str(caught.value).replace('"', "'")
    # Rust writes 2.0 as "2", Python as "2.0".
    assert "propensity 2" in message
    assert "for customer 2 and action 'card'" in message
