"""Bad input gets a typed exception naming the culprit, never a panic (DESIGN.md §2).

Each test feeds one fault to both engines (the ``engine_cls`` fixture) and asserts the exact
exception class, a subclass of `NbaFastError`, and that the message names the column, action,
rule or id at fault. `expect_error` fails on any other exception, a pyo3 ``PanicException``
(a ``BaseException``) included.
"""

from __future__ import annotations

import math
from typing import Any

import nba_fast
import numpy as np
import pyarrow as pa
import pytest
from nba_fast import ConfigError, DataError, NbaFastError, RuleError, SchemaError

from tests.conftest import NOW, expect_error, guarded, known_bug
from tests.strategies import BIND_ERRORS, OVERFLOWS, RULE_BUGS, SYNTAX_ERRORS, VALID_EDGES

CATALOG = [
    {
        "id": "gold",
        "issue": "Sales",
        "group": "Cards",
        "channel": "email",
        "eligibility": "age >= 18",
    },
    {"id": "loan", "issue": "Sales", "group": "Loans", "channel": "sms"},
]


def customers(**overrides: Any) -> pa.Table:
    columns: dict[str, Any] = {
        "customer_id": pa.array([3, 1, 2], pa.int64()),
        "age": pa.array([40, 30, 16], pa.int64()),
        "email": pa.array(["c@x", "a@x", None], pa.string()),
        "phone": pa.array(["333", None, "222"], pa.string()),
    }
    columns.update(overrides)
    return pa.table({name: value for name, value in columns.items() if value is not None})


def long_propensities(
    rows: list[tuple[Any, str, Any]], id_type: pa.DataType | None = None
) -> pa.Table:
    return pa.table(
        {
            "customer_id": pa.array([r[0] for r in rows], id_type or pa.int64()),
            "action_id": pa.array([r[1] for r in rows], pa.string()),
            "propensity": pa.array([r[2] for r in rows], pa.float64()),
        }
    )


def decide(engine_cls: Any, table: Any = None, catalog: Any = None, **kwargs: Any) -> Any:
    engine = engine_cls(CATALOG if catalog is None else catalog)
    return engine.decide(customers() if table is None else table, now=NOW, **kwargs)


def test_error_classes_share_a_base() -> None:
    for error in (SchemaError, RuleError, ConfigError, DataError):
        assert issubclass(error, NbaFastError)
        assert issubclass(error, Exception)


# --- customers -------------------------------------------------------------------------------


def test_missing_customer_id(engine_cls: Any) -> None:
    table = customers(customer_id=None)
    expect_error(lambda: decide(engine_cls, table), SchemaError, "customer_id")


@pytest.mark.parametrize(
    "data_type", [pa.float64(), pa.uint64(), pa.bool_(), pa.timestamp("us"), pa.binary()]
)
def test_customer_id_of_another_type(engine_cls: Any, data_type: pa.DataType) -> None:
    ids = pa.array([3, 1, 2], pa.int64())
    ids = pa.array([b"3", b"1", b"2"]) if data_type == pa.binary() else ids.cast(data_type)
    table = customers(customer_id=ids)
    expect_error(lambda: decide(engine_cls, table), SchemaError, "customer_id")


@pytest.mark.parametrize("ids", [[3, None, 2], ["c", "a", None]], ids=["int", "str"])
def test_null_customer_id(engine_cls: Any, ids: list[Any]) -> None:
    table = customers(customer_id=pa.array(ids))
    expect_error(lambda: decide(engine_cls, table), DataError, "customer_id")


@pytest.mark.parametrize(
    ("ids", "culprit"),
    [
        ([1, 2, 2], "2"),  # sorted
        ([7, 1, 7], "7"),  # unsorted
        ([-5, 9, -5], "-5"),
        (["bob", "bob", "carol"], "bob"),
        (["zoe", "amy", "zoe"], "zoe"),
    ],
)
def test_duplicate_customer_id(engine_cls: Any, ids: list[Any], culprit: str) -> None:
    table = customers(customer_id=pa.array(ids))
    err = expect_error(lambda: decide(engine_cls, table), DataError, culprit)
    assert "customer_id" in str(err) or "duplicate" in str(err).lower() or "more than" in str(err)


def test_duplicate_customer_id_across_batches(engine_cls: Any) -> None:
    """The duplicate sits in another record batch of a stream than its twin."""
    first = customers(customer_id=pa.array([5, 6, 7])).to_batches()[0]
    second = customers(customer_id=pa.array([8, 5, 9])).to_batches()[0]
    stream = pa.RecordBatchReader.from_batches(first.schema, [first, second])
    expect_error(lambda: decide(engine_cls, stream), DataError, "5")


def test_customers_not_arrow(engine_cls: Any) -> None:
    rows = [{"customer_id": 1, "age": 30, "email": "a@x", "phone": "1"}]
    expect_error(lambda: decide(engine_cls, rows), SchemaError, "customers")
    expect_error(lambda: decide(engine_cls, "customers.parquet"), SchemaError, "customers")


def test_missing_email_column_for_an_email_action(engine_cls: Any) -> None:
    table = customers(email=None)
    expect_error(lambda: decide(engine_cls, table), SchemaError, "email", "gold")


def test_missing_phone_column_for_an_sms_action(engine_cls: Any) -> None:
    table = customers(phone=None)
    expect_error(lambda: decide(engine_cls, table), SchemaError, "phone", "loan")


def test_email_column_not_strings(engine_cls: Any) -> None:
    table = customers(email=pa.array([1, 2, 3]))
    expect_error(lambda: decide(engine_cls, table), SchemaError, "email")


@pytest.mark.parametrize("column", ["opt_out_email", "opt_out_sms"])
def test_opt_out_not_boolean(engine_cls: Any, column: str) -> None:
    table = customers(**{column: pa.array(["yes", "no", "yes"])})
    expect_error(lambda: decide(engine_cls, table), SchemaError, column)


# --- propensities ------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [math.nan, -0.1, 1.5, math.inf], ids=["nan", "neg", "gt1", "inf"])
def test_long_propensity_out_of_range(engine_cls: Any, bad: float) -> None:
    table = long_propensities([(1, "gold", 0.5), (3, "loan", bad)])
    err = expect_error(lambda: decide(engine_cls, propensities=table), DataError, "loan")
    assert "3" in str(err)


def test_propensity_for_a_customer_not_in_customers_is_still_checked(engine_cls: Any) -> None:
    table = long_propensities([(1, "gold", 0.5), (99, "gold", 2.0)])
    expect_error(lambda: decide(engine_cls, propensities=table), DataError, "99", "gold")


@pytest.mark.parametrize("bad", [math.nan, -0.5, 1.0000001], ids=["nan", "neg", "gt1"])
def test_propensity_array_out_of_range(engine_cls: Any, bad: float) -> None:
    matrix = np.full((3, 2), 0.5)
    matrix[1, 1] = bad  # customer 1 (second row in input order), action "loan"
    err = expect_error(lambda: decide(engine_cls, propensities=matrix), DataError, "loan")
    assert "1" in str(err)


@pytest.mark.parametrize("shape", [(3, 1), (2, 2), (3, 3), (0, 2)])
def test_propensity_array_of_the_wrong_shape(
    request: pytest.FixtureRequest, engine_cls: Any, shape: tuple[int, int]
) -> None:
    matrix = np.full(shape, 0.5)
    expect_error(lambda: decide(engine_cls, propensities=matrix), DataError, "propensities")


@pytest.mark.parametrize(
    "matrix",
    [np.full(6, 0.5), np.full((3, 2, 1), 0.5), np.full((3, 2), "0.5"), np.full((3, 2), 0.5 + 0j)],
    ids=["1-D", "3-D", "strings", "complex"],
)
def test_propensity_array_not_2d_numeric(
    request: pytest.FixtureRequest, engine_cls: Any, matrix: np.ndarray[Any, Any]
) -> None:
    expect_error(lambda: decide(engine_cls, propensities=matrix), SchemaError, "propensities")


def test_duplicate_propensity_pair(engine_cls: Any) -> None:
    table = long_propensities([(2, "loan", 0.1), (1, "gold", 0.5), (2, "loan", 0.3)])
    expect_error(lambda: decide(engine_cls, propensities=table), DataError, "2", "loan")


def test_unknown_action_in_propensities(engine_cls: Any) -> None:
    table = long_propensities([(1, "gold", 0.5), (1, "platinum", 0.5)])
    expect_error(lambda: decide(engine_cls, propensities=table), DataError, "platinum")


def test_unknown_action_with_null_propensity(engine_cls: Any) -> None:
    table = long_propensities([(1, "platinum", None)])
    expect_error(lambda: decide(engine_cls, propensities=table), DataError, "platinum")


def test_null_typed_action_id_in_propensities(
    request: pytest.FixtureRequest, engine_cls: Any
) -> None:
    """A null-typed column reads as all NULL (docs/semantics.md), and a NULL action_id is
    bad data, not a bad schema."""
    table = pa.table({"customer_id": [1], "action_id": pa.nulls(1), "propensity": [0.5]})
    expect_error(lambda: decide(engine_cls, propensities=table), DataError, "action_id")


@pytest.mark.parametrize("missing", ["customer_id", "action_id", "propensity"])
def test_propensities_missing_a_column(engine_cls: Any, missing: str) -> None:
    table = long_propensities([(1, "gold", 0.5)]).drop_columns([missing])
    expect_error(lambda: decide(engine_cls, propensities=table), SchemaError, missing)


def test_propensity_column_not_numeric(engine_cls: Any) -> None:
    table = long_propensities([(1, "gold", 0.5)]).set_column(2, "propensity", pa.array(["0.5"]))
    expect_error(lambda: decide(engine_cls, propensities=table), SchemaError, "propensity")


def test_propensity_customer_id_of_the_other_kind(engine_cls: Any) -> None:
    table = long_propensities([("1", "gold", 0.5)], pa.string())
    expect_error(lambda: decide(engine_cls, propensities=table), SchemaError, "customer_id")


# --- catalog -------------------------------------------------------------------------------------


def action(**fields: Any) -> dict[str, Any]:
    return {"id": "gold", "issue": "Sales", "group": "Cards", "channel": "email", **fields}


@pytest.mark.parametrize("field", ["value", "context_weight", "lever"])
@pytest.mark.parametrize("bad", [-1.0, math.inf, -math.inf, math.nan, True])
def test_catalog_factor_bad(engine_cls: Any, field: str, bad: Any) -> None:
    expect_error(lambda: engine_cls([action(**{field: bad})]), ConfigError, "gold", field)


@pytest.mark.parametrize("bad", [1.5, -0.01, math.nan, "0.5"])
def test_catalog_default_propensity_bad(engine_cls: Any, bad: Any) -> None:
    expect_error(
        lambda: engine_cls([action(default_propensity=bad)]),
        ConfigError,
        "gold",
        "default_propensity",
    )


def test_duplicate_action_id(engine_cls: Any) -> None:
    catalog = [action(), action(id="loan"), action()]
    expect_error(lambda: engine_cls(catalog), ConfigError, "gold")


def test_empty_window(engine_cls: Any) -> None:
    catalog = [action(active_from=NOW, active_until=NOW)]
    expect_error(lambda: engine_cls(catalog), ConfigError, "gold", "active_from")


def test_empty_catalog(engine_cls: Any) -> None:
    expect_error(lambda: engine_cls([]), ConfigError, "catalog")


def test_decide_without_a_catalog(engine_cls: Any) -> None:
    expect_error(lambda: engine_cls(None).decide(customers(), now=NOW), ConfigError, "catalog")


@pytest.mark.parametrize("bad", [0, -1, True, 1.0, "2"])
def test_max_per_customer_bad(engine_cls: Any, bad: Any) -> None:
    expect_error(lambda: engine_cls(CATALOG, max_per_customer=bad), ConfigError, "max_per_customer")


# --- rules ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "rule", ["age >= ", "age >= 18 AND AND age < 60", "age = 1 = 2", "upper(state) = 'X'"]
)
def test_rule_syntax_error_at_construction(engine_cls: Any, rule: str) -> None:
    catalog = [CATALOG[1], action(eligibility=rule)]
    err = expect_error(lambda: engine_cls(catalog), RuleError, "gold")
    assert rule.split()[0] in str(err), "the message quotes the rule"


def test_rule_unknown_column(engine_cls: Any) -> None:
    catalog = [action(eligibility="age >= 18 AND income > 5000")]
    expect_error(lambda: decide(engine_cls, catalog=catalog), RuleError, "gold", "income")


def test_rule_quoted_name_matches_exactly(engine_cls: Any) -> None:
    catalog = [action(eligibility='"AGE" >= 18')]
    expect_error(lambda: decide(engine_cls, catalog=catalog), RuleError, "gold", "AGE")


def test_rule_ambiguous_column(engine_cls: Any) -> None:
    table = customers(Score=pa.array([1, 2, 3]), SCORE=pa.array([1, 2, 3]))
    catalog = [action(eligibility="score > 1")]
    expect_error(lambda: decide(engine_cls, table, catalog=catalog), RuleError, "gold", "score")


def test_rule_type_mismatch(engine_cls: Any) -> None:
    catalog = [action(eligibility="age = 'x'")]
    expect_error(lambda: decide(engine_cls, catalog=catalog), RuleError, "gold", "age")


def test_rule_not_boolean(engine_cls: Any) -> None:
    catalog = [action(eligibility="age + 1")]
    expect_error(lambda: decide(engine_cls, catalog=catalog), RuleError, "gold", "age + 1")


def test_rule_on_an_unsupported_column_type(engine_cls: Any) -> None:
    table = customers(blob=pa.array([b"a", b"b", b"c"]))
    catalog = [action(eligibility="blob IS NULL")]
    expect_error(lambda: decide(engine_cls, table, catalog=catalog), RuleError, "gold", "blob")


def test_rule_int64_overflow(engine_cls: Any) -> None:
    rule = "age * 9223372036854775807 > 0"
    catalog = [action(eligibility=rule)]
    expect_error(lambda: decide(engine_cls, catalog=catalog), DataError, rule)


def test_rule_overflow_in_an_inactive_action(engine_cls: Any) -> None:
    """Every rule is evaluated for every customer, active or not (docs/semantics.md)."""
    rule = "age + 9223372036854775807 > 0"
    catalog = [action(eligibility=rule, active_until=NOW)]
    expect_error(lambda: decide(engine_cls, catalog=catalog), DataError, rule)


RULE_CUSTOMERS = pa.table(
    {
        "customer_id": [1, 2],
        "age": [1, None],
        "kids": [2, 3],
        "score": [0.5, None],
        "state": ["a", "b"],
        "city": ["x", None],
        "vip": [True, None],
        "signup": pa.array([0, None], pa.timestamp("us", tz="UTC")),
        "last_seen": pa.array([0, 1], pa.timestamp("us")),
        "nothing": pa.nulls(2),
    }
)


def rule_engine(engine_cls: Any, rule: str) -> Any:
    return engine_cls([{**action(eligibility=rule), "channel": "push", "default_propensity": 1.0}])


@pytest.mark.parametrize("rule", SYNTAX_ERRORS)
def test_rule_that_does_not_parse(
    request: pytest.FixtureRequest, engine_cls: Any, rule: str
) -> None:
    """Not in the subset: a RuleError naming the action as the Engine is built."""
    if rule in RULE_BUGS:
        known_bug(request, *RULE_BUGS[rule])
    expect_error(lambda: rule_engine(engine_cls, rule), RuleError, "gold")


@pytest.mark.parametrize("rule", BIND_ERRORS)
def test_rule_that_does_not_bind(engine_cls: Any, rule: str) -> None:
    """Parses, but not against these columns: a RuleError naming the action from decide."""
    engine = guarded(lambda: rule_engine(engine_cls, rule))
    assert not isinstance(engine, NbaFastError), f"Engine() raised {engine!r}"
    expect_error(lambda: engine.decide(RULE_CUSTOMERS, now=NOW), RuleError, "gold")


@pytest.mark.parametrize("rule", OVERFLOWS)
def test_rule_that_overflows(request: pytest.FixtureRequest, engine_cls: Any, rule: str) -> None:
    if rule in RULE_BUGS:
        known_bug(request, *RULE_BUGS[rule])
    engine = rule_engine(engine_cls, rule)
    expect_error(lambda: engine.decide(RULE_CUSTOMERS, now=NOW), DataError)
    empty = RULE_CUSTOMERS.slice(0, 0)  # nothing evaluated, nothing overflows
    assert engine.decide(empty, now=NOW).decisions.num_rows == 0


@pytest.mark.parametrize("rule", VALID_EDGES)
def test_rule_edge_cases_that_are_valid(
    request: pytest.FixtureRequest, engine_cls: Any, rule: str
) -> None:
    if rule in RULE_BUGS:
        known_bug(request, *RULE_BUGS[rule])
    result = guarded(lambda: rule_engine(engine_cls, rule).decide(RULE_CUSTOMERS, now=NOW))
    assert not isinstance(result, NbaFastError), f"{type(result).__name__}: {result}"


def test_uint64_value_above_int64(request: pytest.FixtureRequest, engine_cls: Any) -> None:
    known_bug(request, "reference", "the DataError does not name the column ('age')")
    table = customers(age=pa.array([1, 2**63, 3], pa.uint64()))
    expect_error(lambda: decide(engine_cls, table), DataError, "age")


def test_days_since_outside_int64(request: pytest.FixtureRequest, engine_cls: Any) -> None:
    """`now - col` in microseconds must fit in int64 (docs/semantics.md, days_since)."""
    rule = "days_since(seen) > 0"
    long_ago = pa.array([-(2**63) + 1], pa.int64()).cast(pa.timestamp("us"))
    table = pa.table({"customer_id": [1], "seen": long_ago})
    catalog = [action(eligibility=rule, channel="push")]
    expect_error(lambda: decide(engine_cls, table, catalog=catalog), DataError, rule)


def test_non_finite_priority(engine_cls: Any) -> None:
    catalog = [action(value=1e308, lever=1e308, default_propensity=1.0)]
    expect_error(lambda: decide(engine_cls, catalog=catalog), DataError, "gold")


# --- do-not-contact ------------------------------------------------------------------------------


def test_do_not_contact_without_channel(engine_cls: Any) -> None:
    dnc = pa.table({"customer_id": pa.array([1], pa.int64())})
    expect_error(lambda: decide(engine_cls, do_not_contact=dnc), SchemaError, "channel")


def test_do_not_contact_without_id_or_address(engine_cls: Any) -> None:
    dnc = pa.table({"channel": ["email"]})
    err = expect_error(lambda: decide(engine_cls, do_not_contact=dnc), SchemaError)
    assert "customer_id" in str(err) or "address" in str(err)


def test_do_not_contact_null_channel(engine_cls: Any) -> None:
    dnc = pa.table({"channel": pa.array([None], pa.string()), "customer_id": pa.array([1])})
    expect_error(lambda: decide(engine_cls, do_not_contact=dnc), DataError, "channel")


def test_do_not_contact_row_with_neither(engine_cls: Any) -> None:
    dnc = pa.table(
        {
            "channel": ["email", "sms"],
            "customer_id": pa.array([1, None], pa.int64()),
            "address": pa.array([None, None], pa.string()),
        }
    )
    expect_error(lambda: decide(engine_cls, do_not_contact=dnc), DataError, "do_not_contact")


def test_do_not_contact_customer_id_of_the_other_kind(engine_cls: Any) -> None:
    dnc = pa.table({"channel": ["email"], "customer_id": ["1"]})
    expect_error(lambda: decide(engine_cls, do_not_contact=dnc), SchemaError, "customer_id")


# --- arbitrate -----------------------------------------------------------------------------------


def candidates(**overrides: Any) -> pa.Table:
    columns: dict[str, Any] = {
        "customer_id": pa.array([1, 1, 2], pa.int64()),
        "action_id": ["gold", "loan", "gold"],
        "propensity": [0.1, 0.2, 0.3],
        "value": [1.0, 2.0, 3.0],
    }
    columns.update(overrides)
    return pa.table({name: value for name, value in columns.items() if value is not None})


def arbitrate(engine_cls: Any, table: pa.Table) -> Any:
    return engine_cls(None).arbitrate(table, now=NOW)


@pytest.mark.parametrize("missing", ["customer_id", "action_id", "propensity"])
def test_arbitrate_missing_column(engine_cls: Any, missing: str) -> None:
    table = candidates(**{missing: None})
    expect_error(lambda: arbitrate(engine_cls, table), SchemaError, missing)


@pytest.mark.parametrize("field", ["value", "context_weight", "lever"])
@pytest.mark.parametrize("bad", [-2.0, math.inf, math.nan])
def test_arbitrate_bad_factor(engine_cls: Any, field: str, bad: float) -> None:
    table = candidates(**{field: [1.0, bad, 1.0]})
    expect_error(lambda: arbitrate(engine_cls, table), DataError, field, "loan")


def test_arbitrate_negative_value_names_the_customer(engine_cls: Any) -> None:
    table = candidates(customer_id=pa.array([7, 7, 8]), value=[1.0, -1.0, 1.0])
    expect_error(lambda: arbitrate(engine_cls, table), DataError, "value", "7", "loan")


@pytest.mark.parametrize("bad", [1.5, -0.5, math.nan])
def test_arbitrate_propensity_out_of_range(engine_cls: Any, bad: float) -> None:
    table = candidates(propensity=[0.1, 0.2, bad])
    expect_error(lambda: arbitrate(engine_cls, table), DataError, "gold", "2")


def test_arbitrate_duplicate_pair(engine_cls: Any) -> None:
    table = candidates(customer_id=pa.array([4, 5, 4]), action_id=["gold", "loan", "gold"])
    expect_error(lambda: arbitrate(engine_cls, table), DataError, "4", "gold")


def test_arbitrate_duplicate_pair_with_null_propensity(engine_cls: Any) -> None:
    table = candidates(action_id=["gold", "gold", "loan"], propensity=[None, 0.1, 0.2])
    expect_error(lambda: arbitrate(engine_cls, table), DataError, "1", "gold")


def test_arbitrate_null_customer_id(engine_cls: Any) -> None:
    table = candidates(customer_id=pa.array([1, None, 2], pa.int64()))
    expect_error(lambda: arbitrate(engine_cls, table), DataError, "customer_id")


def test_arbitrate_null_action_id(engine_cls: Any) -> None:
    table = candidates(action_id=["gold", None, "loan"])
    expect_error(lambda: arbitrate(engine_cls, table), DataError, "action_id")


def test_arbitrate_null_typed_action_id(request: pytest.FixtureRequest, engine_cls: Any) -> None:
    table = candidates(action_id=pa.nulls(3))
    expect_error(lambda: arbitrate(engine_cls, table), DataError, "action_id")


@pytest.mark.parametrize(
    ("column", "values"),
    [("value", ["1", "2", "3"]), ("channel", [1, 2, 3]), ("propensity", ["a", "b", "c"])],
)
def test_arbitrate_mistyped_column(engine_cls: Any, column: str, values: list[Any]) -> None:
    table = candidates(**{column: values})
    expect_error(lambda: arbitrate(engine_cls, table), SchemaError, column)


def test_arbitrate_not_arrow(engine_cls: Any) -> None:
    rows = [{"customer_id": 1, "action_id": "gold", "propensity": 0.1}]
    expect_error(lambda: arbitrate(engine_cls, rows), SchemaError, "candidates")


def test_customers_stream_failing_part_way(engine_cls: Any) -> None:
    """A customers stream that fails after its first batch fails the call with a typed error
    that says how far it got (as the history's does)."""
    first = customers().to_batches()[0]

    def batches() -> Any:
        yield first
        raise OSError("the customers' file went away")

    stream = pa.RecordBatchReader.from_batches(first.schema, batches())
    err = expect_error(lambda: decide(engine_cls, stream), DataError, "went away")
    assert str(err).startswith("customers: the stream failed after 3 rows: "), err


def test_a_failing_batch_stops_reading_the_customers() -> None:
    """A batch that fails to decide ends the call at once, rather than after consuming the
    rest of an endless stream."""
    bad = customers(p_gold=pa.array([0.5, 1.5, 0.5])).to_batches()[0]
    read = 0

    def endless() -> Any:
        nonlocal read
        while True:
            read += 1
            yield bad

    stream = pa.RecordBatchReader.from_batches(bad.schema, endless())
    expect_error(
        lambda: decide(nba_fast.Engine, stream, propensities={"gold": "p_gold"}),
        DataError,
        "1.5",
    )
    assert read < 20, f"{read} batches were read, the first of them failing"
