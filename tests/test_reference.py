"""The reference Engine (nba_fast.reference) on small, hand-checked examples.

The reference is the oracle of the Rust engine, so every expected answer here is worked out by
hand from DESIGN.md and docs/semantics.md, never taken from either engine.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa
import pytest
from nba_fast._core import ConfigError, DataError, RuleError, SchemaError
from nba_fast.reference import Engine, Result

NOW = datetime(2024, 6, 1, tzinfo=UTC)


def act(action_id: str, channel: str = "email", **fields: Any) -> dict[str, Any]:
    return {"id": action_id, "issue": "Sales", "group": "Cards", "channel": channel, **fields}


def picks(result: Result) -> list[tuple[Any, str, int]]:
    """(customer_id, action_id, rank) of each decision, in output order."""
    d = result.decisions
    return list(
        zip(
            d.column("customer_id").to_pylist(),
            d.column("action_id").to_pylist(),
            d.column("rank").to_pylist(),
            strict=True,
        )
    )


def stages(result: Result) -> list[tuple[str, str, int]]:
    f = result.funnel
    return list(
        zip(
            f.column("stage").to_pylist(),
            f.column("action_id").to_pylist(),
            f.column("count").to_pylist(),
            strict=True,
        )
    )


def keep(stage: str, counts: dict[str, int]) -> list[tuple[str, str, int]]:
    return [(stage, action_id, count) for action_id, count in sorted(counts.items())]


# --- the pipeline end to end ---------------------------------------------------------------

CATALOG = [
    act("gold", value=2.0, eligibility="age >= 18", treatment="GoldMail"),
    act("loan", group="Loans", default_propensity=0.05),
    act("sms_tip", "sms", context_weight=0.5),
    act("old", active_until=NOW),
]
CUSTOMERS = pa.table(
    {
        "customer_id": [3, 1, 2],
        "age": [40, 30, 16],
        "email": ["c@x", "a@x", None],
        "phone": ["333", None, "222"],
        "opt_out_sms": [False, None, True],
    }
)
PROPENSITIES = pa.table(
    {
        "customer_id": [1, 1, 2, 3, 3, 3],
        "action_id": ["gold", "sms_tip", "gold", "gold", "loan", "sms_tip"],
        "propensity": [0.1, 0.9, 0.5, 0.2, 0.5, 0.6],
    }
)


def test_decide_end_to_end() -> None:
    # Customer 1: old inactive; gold 0.1*2 = 0.2; loan default 0.05; sms_tip has no phone.
    # Customer 2: gold ineligible (16); loan has no email; sms_tip opted out.
    # Customer 3: gold 0.2*2 = 0.4; loan 0.5; sms_tip 0.6*0.5 = 0.3.
    result = Engine(CATALOG).decide(CUSTOMERS, propensities=PROPENSITIES, now=NOW)
    assert result.decisions.to_pylist() == [
        {
            "customer_id": 1,
            "action_id": "gold",
            "issue": "Sales",
            "group": "Cards",
            "channel": "email",
            "treatment": "GoldMail",
            "propensity": 0.1,
            "value": 2.0,
            "context_weight": 1.0,
            "lever": 1.0,
            "priority": 0.2,
            "rank": 1,
        },
        {
            "customer_id": 3,
            "action_id": "loan",
            "issue": "Sales",
            "group": "Loans",
            "channel": "email",
            "treatment": None,
            "propensity": 0.5,
            "value": 1.0,
            "context_weight": 1.0,
            "lever": 1.0,
            "priority": 0.5,
            "rank": 1,
        },
    ]
    kept = {"gold": 2, "loan": 2, "old": 0, "sms_tip": 1}
    assert stages(result) == [
        *keep("candidate", {"gold": 3, "loan": 3, "old": 3, "sms_tip": 3}),
        ("inactive", "old", 3),
        ("ineligible", "gold", 1),
        *keep("eligible", {"gold": 2, "loan": 3, "old": 0, "sms_tip": 3}),
        ("no_address", "loan", 1),
        ("no_address", "sms_tip", 1),
        ("opted_out", "sms_tip", 1),
        *keep("contactable", kept),
        *keep("not_suppressed", kept),
        *keep("top_choice", {"gold": 1, "loan": 1, "old": 0, "sms_tip": 0}),
        *keep("selected", {"gold": 1, "loan": 1, "old": 0, "sms_tip": 0}),
    ]


def test_max_per_customer() -> None:
    engine = Engine(CATALOG, max_per_customer=3)
    result = engine.decide(CUSTOMERS, propensities=PROPENSITIES, now=NOW)
    assert picks(result) == [
        (1, "gold", 1),
        (1, "loan", 2),
        (3, "loan", 1),
        (3, "gold", 2),
        (3, "sms_tip", 3),
    ]
    assert result.decisions.column("priority").to_pylist() == [0.2, 0.05, 0.5, 0.4, 0.3]
    top = {"gold": 2, "loan": 2, "old": 0, "sms_tip": 1}
    assert stages(result)[-8:] == [*keep("top_choice", top), *keep("selected", top)]


def test_output_schemas() -> None:
    result = Engine(CATALOG).decide(CUSTOMERS, propensities=PROPENSITIES, now=NOW)
    schema = result.decisions.schema
    assert [(f.name, str(f.type), f.nullable) for f in schema] == [
        ("customer_id", "int64", False),
        ("action_id", "string", False),
        ("issue", "string", True),
        ("group", "string", True),
        ("channel", "string", True),
        ("treatment", "string", True),
        ("propensity", "double", False),
        ("value", "double", False),
        ("context_weight", "double", False),
        ("lever", "double", False),
        ("priority", "double", False),
        ("rank", "int32", False),
    ]
    assert [(f.name, str(f.type)) for f in result.funnel.schema] == [
        ("stage", "string"),
        ("action_id", "string"),
        ("count", "int64"),
    ]


def test_empty_customers() -> None:
    customers = pa.table(
        {"customer_id": pa.array([], pa.string()), "email": pa.array([], pa.string())}
    )
    result = Engine([act("a"), act("b")]).decide(customers, now=NOW)
    assert result.decisions.num_rows == 0
    assert result.decisions.schema.field("customer_id").type == pa.string()
    zero = {"a": 0, "b": 0}
    keeps = ["candidate", "eligible", "contactable", "not_suppressed", "top_choice", "selected"]
    assert stages(result) == [row for stage in keeps for row in keep(stage, zero)]


# --- priority and rank ---------------------------------------------------------------------


def test_priority_multiplies_left_to_right() -> None:
    engine = Engine([act("a", value=3.0, context_weight=0.7, default_propensity=0.1)])
    result = engine.decide(pa.table({"customer_id": [1], "email": ["x"]}), now=NOW)
    [priority] = result.decisions.column("priority").to_pylist()
    assert priority == ((0.1 * 3.0) * 0.7) * 1.0 == 0.21000000000000002
    assert priority != 0.1 * (3.0 * 0.7)


def test_ties_break_by_action_id_in_byte_order() -> None:
    wide_tilde = "\uff5e"  # U+FF5E < U+1F600 in code points and in UTF-8 bytes alike
    ids = ["b", "😀", "a", "B", wide_tilde, "é", "z"]
    engine = Engine([act(i, "push", default_propensity=0.5) for i in ids], max_per_customer=7)
    result = engine.decide(pa.table({"customer_id": [1]}), now=NOW)
    ordered = ["B", "a", "b", "z", "é", wide_tilde, "😀"]
    assert [a for _, a, _ in picks(result)] == ordered
    assert [a for s, a, _ in stages(result) if s == "candidate"] == ordered


def test_zero_priorities_tie_too() -> None:
    engine = Engine([act("b", "push", value=0.0), act("a", "push", value=0.0)])
    customers = pa.table({"customer_id": [1]})
    propensities = pa.table(
        {"customer_id": [1, 1], "action_id": ["a", "b"], "propensity": [-0.0, 0.5]}
    )
    result = engine.decide(customers, propensities=propensities, now=NOW)
    assert picks(result) == [(1, "a", 1)]  # -0.0 and 0.0 are equal priorities: "a" wins


def test_output_ordered_by_customer_id() -> None:
    engine = Engine([act("a", "push", default_propensity=0.5)])
    result = engine.decide(pa.table({"customer_id": [10, -2, 3]}), now=NOW)
    assert [c for c, _, _ in picks(result)] == [-2, 3, 10]
    result = engine.decide(pa.table({"customer_id": ["b", "B", "é", "a"]}), now=NOW)
    assert [c for c, _, _ in picks(result)] == ["B", "a", "b", "é"]


# --- propensities --------------------------------------------------------------------------


def test_missing_and_null_propensities() -> None:
    engine = Engine(
        [act("a", "push", default_propensity=0.3), act("b", "push")], max_per_customer=2
    )
    propensities = pa.table(
        {
            "customer_id": [1, 1, 2, 99],
            "action_id": ["a", "b", "b", "a"],
            "propensity": [None, None, 0.4, 0.7],  # customer 99 is not a customer: ignored
        }
    )
    result = engine.decide(pa.table({"customer_id": [1, 2]}), propensities=propensities, now=NOW)
    assert picks(result) == [(1, "a", 1), (2, "b", 1), (2, "a", 2)]
    assert result.decisions.column("propensity").to_pylist() == [0.3, 0.4, 0.3]
    assert ("no_propensity", "b", 1) in stages(result)
    without = engine.decide(pa.table({"customer_id": [1]}), now=NOW)
    assert picks(without) == [(1, "a", 1)]


def test_propensity_matrix() -> None:
    engine = Engine([act("a", "push"), act("b", "push", value=2.0)])
    matrix = np.array([[0.9, 0.4], [0.5, 0.1]])  # rows in input order: customers 7, 5
    result = engine.decide(pa.table({"customer_id": [7, 5]}), propensities=matrix, now=NOW)
    assert picks(result) == [(5, "a", 1), (7, "a", 1)]
    assert result.decisions.column("priority").to_pylist() == [0.5, 0.9]
    ints = engine.decide(pa.table({"customer_id": [7]}), propensities=np.array([[0, 1]]), now=NOW)
    assert picks(ints) == [(7, "b", 1)]


# --- activity ------------------------------------------------------------------------------


def test_active_window_bounds() -> None:
    tick = timedelta(microseconds=1)
    engine = Engine(
        [
            act("from_now", "push", active_from=NOW),
            act("until_now", "push", active_until=NOW),
            act("from_later", "push", active_from=NOW + tick),
            act("until_later", "push", active_until=NOW + tick),
        ]
    )
    naive_now = NOW.replace(tzinfo=None)  # naive means UTC
    result = engine.decide(pa.table({"customer_id": [1]}), now=naive_now)
    assert [(s, a) for s, a, n in stages(result) if s == "inactive"] == [
        ("inactive", "from_later"),
        ("inactive", "until_now"),
    ]
    assert ("no_propensity", "from_now", 1) in stages(result)


# --- eligibility ---------------------------------------------------------------------------


def test_null_rule_makes_the_action_ineligible() -> None:
    engine = Engine([act("a", "push", eligibility="score > 600 OR vip", default_propensity=1)])
    customers = pa.table(
        {
            "customer_id": [1, 2, 3, 4],
            "score": [700, None, None, 500],
            "vip": [False, True, None, None],
        }
    )
    result = engine.decide(customers, now=NOW)
    # 1: TRUE OR FALSE; 2: NULL OR TRUE; 3: NULL OR NULL -> NULL; 4: FALSE OR NULL -> NULL.
    assert picks(result) == [(1, "a", 1), (2, "a", 1)]
    assert ("ineligible", "a", 2) in stages(result)


def test_rules_over_many_types() -> None:
    rule = (
        "state IN ('CA', 'NY') AND NOT has_card AND days_since(last_contact) >= 30 "
        "AND income / household BETWEEN 1000 AND 5000.5 AND COALESCE(segment, 'none') LIKE 'n%' "
        'AND "Credit Score" >= 650'
    )
    engine = Engine([act("card", "push", eligibility=rule, default_propensity=0.5)])
    customers = pa.table(
        {
            "customer_id": ["a", "b", "c"],
            "state": pa.array(["CA", "NY", "TX"]).dictionary_encode(),
            "has_card": [False, False, False],
            "last_contact": pa.array(
                [
                    NOW - timedelta(days=30),
                    NOW - timedelta(days=29, hours=23),
                    NOW - timedelta(days=90),
                ],
                pa.timestamp("ms", tz="UTC"),
            ),
            "income": [9000, 9000, 9000],
            "household": pa.array([2, 2, 2], pa.int16()),
            "segment": [None, "new", "none"],
            "Credit Score": [650.0, 700.0, 800.0],
        }
    )
    result = engine.decide(customers, now=NOW)
    # a: 30 days exactly, 9000/2 = 4500.0, 'none' LIKE 'n%', 650 >= 650 -> selected.
    # b: 29.96 days -> ineligible.  c: TX -> ineligible.
    assert picks(result) == [("a", "card", 1)]


def test_rule_is_evaluated_even_for_inactive_actions() -> None:
    engine = Engine([act("a", "push", eligibility="x * 4 > 0", active_until=NOW)])
    with pytest.raises(DataError, match=r"action 'a': eligibility rule 'x \* 4 > 0', customer 1: "):
        engine.decide(pa.table({"customer_id": [1], "x": [2**62]}), now=NOW)
    # With no overflow, the action is inactive whatever its rule says.
    result = engine.decide(pa.table({"customer_id": [1], "x": [1]}), now=NOW)
    assert ("inactive", "a", 1) in stages(result)


def test_empty_and_missing_rules_are_true() -> None:
    engine = Engine(
        [
            act("a", "push", eligibility="", default_propensity=1),
            act("b", "push", eligibility="  ", default_propensity=1),
        ],
        max_per_customer=2,
    )
    assert len(picks(engine.decide(pa.table({"customer_id": [1]}), now=NOW))) == 2


def test_rule_syntax_error_at_construction() -> None:
    with pytest.raises(RuleError, match=r"action 'a': eligibility rule 'age >= ' does not parse"):
        Engine([act("a", eligibility="age >= ")])


def test_rule_binding_errors_at_decide() -> None:
    engine = Engine([act("a", "push", eligibility="agee >= 18")])
    with pytest.raises(
        RuleError, match=r"action 'a': eligibility rule 'agee >= 18': unknown column 'agee'"
    ):
        engine.decide(pa.table({"customer_id": [1], "age": [20]}), now=NOW)
    engine = Engine([act("a", "push", eligibility="age >= '18'")])
    with pytest.raises(RuleError, match=r"cannot compare age \(int\) with '18' \(string\)"):
        engine.decide(pa.table({"customer_id": [1], "age": [20]}), now=NOW)


def test_unsigned_64_bit_rule_column() -> None:
    engine = Engine([act("a", "push", eligibility="n > 0")])
    with pytest.raises(DataError, match=r"customers: value 18446744073709551615 does not fit"):
        engine.decide(
            pa.table({"customer_id": [1], "n": pa.array([2**64 - 1], pa.uint64())}), now=NOW
        )


# --- contactability ------------------------------------------------------------------------


def test_do_not_contact() -> None:
    engine = Engine(
        [
            act(a, c, default_propensity=0.5)
            for a, c in (("e", "email"), ("s", "sms"), ("p", "push"))
        ],
        max_per_customer=3,
    )
    customers = pa.table(
        {
            "customer_id": [1, 2, 3, 4, 5],
            "email": ["a@x", "b@x", "c@x", "d@x", "e@x"],
            "phone": ["111", "222", "333", "444", "555"],
        }
    )
    dnc = pa.table(
        {
            "channel": ["email", "sms", "email", "*", "*", "push", "fax"],
            "customer_id": [1, None, None, None, 5, 2, 1],
            "address": [None, "222", "333", "d@x", None, None, None],
        }
    )
    result = engine.decide(customers, do_not_contact=dnc, now=NOW)
    # 1: email by id. 2: sms by address, push by id. 3: "333" on an email row is no email.
    # 4: a "*" address blocks every channel. 5: a "*" id blocks every channel.
    assert picks(result) == [
        (1, "p", 1), (1, "s", 2),
        (2, "e", 1),
        (3, "e", 1), (3, "p", 2), (3, "s", 3),
    ]  # fmt: skip
    assert [row for row in stages(result) if row[0] == "do_not_contact"] == [
        ("do_not_contact", "e", 3),
        ("do_not_contact", "p", 3),
        ("do_not_contact", "s", 3),
    ]


def test_star_address_matches_the_phone_for_email_actions() -> None:
    engine = Engine([act("e", default_propensity=0.5)])
    customers = pa.table({"customer_id": [1, 2], "email": ["a@x", "b@x"], "phone": ["111", "222"]})
    dnc = pa.table({"channel": ["*"], "address": ["222"]})
    assert picks(engine.decide(customers, do_not_contact=dnc, now=NOW)) == [(1, "e", 1)]


def test_contactability_reasons_in_order() -> None:
    engine = Engine([act("e", default_propensity=0.5)])
    customers = pa.table(
        {
            "customer_id": ["n", "o", "d", "ok", "null_opt"],
            "email": [None, "o@x", "d@x", "ok@x", "q@x"],
            "opt_out_email": [True, True, False, False, None],
        }
    )
    dnc = pa.table({"channel": ["email"] * 3, "customer_id": ["n", "o", "d"]})
    result = engine.decide(customers, do_not_contact=dnc, now=NOW)
    assert picks(result) == [("null_opt", "e", 1), ("ok", "e", 1)]
    drops = [
        row for row in stages(result) if row[0] in ("no_address", "opted_out", "do_not_contact")
    ]
    assert drops == [("no_address", "e", 1), ("opted_out", "e", 1), ("do_not_contact", "e", 1)]


def test_other_channels_need_no_address() -> None:
    engine = Engine([act("p", "push", default_propensity=0.5)])
    result = engine.decide(pa.table({"customer_id": [1], "opt_out_email": ["yes"]}), now=NOW)
    assert picks(result) == [(1, "p", 1)]  # opt_out_email concerns no action of the catalog


# --- input forms ---------------------------------------------------------------------------


def test_polars_duckdb_and_streams() -> None:
    engine = Engine(CATALOG)
    expected = Engine(CATALOG).decide(CUSTOMERS, propensities=PROPENSITIES, now=NOW)
    forms = [
        (pl.from_arrow(CUSTOMERS), pl.from_arrow(PROPENSITIES)),
        (CUSTOMERS.to_batches()[0], PROPENSITIES.to_reader()),
        (CUSTOMERS.to_reader(), duckdb.sql("SELECT * FROM PROPENSITIES")),
    ]
    for customers, propensities in forms:
        result = engine.decide(customers, propensities=propensities, now=NOW)
        assert result.decisions.equals(expected.decisions)
        assert result.funnel.equals(expected.funnel)


def test_id_types_are_normalised() -> None:
    engine = Engine([act("a", "push", default_propensity=0.5)])
    small = engine.decide(pa.table({"customer_id": pa.array([2, 1], pa.uint32())}), now=NOW)
    assert small.decisions.schema.field("customer_id").type == pa.int64()
    assert picks(small) == [(1, "a", 1), (2, "a", 1)]
    encoded = pa.array(["y", "x"]).dictionary_encode()
    strings = engine.decide(pa.table({"customer_id": encoded}), now=NOW)
    assert strings.decisions.schema.field("customer_id").type == pa.string()
    assert picks(strings) == [("x", "a", 1), ("y", "a", 1)]


def test_history_without_policies_is_checked_and_changes_nothing() -> None:
    engine = Engine([act("a", "push", default_propensity=0.5)])
    history = pa.table(
        {
            "customer_id": [1],
            "action_id": ["a"],
            "issue": ["Sales"],
            "group": ["Cards"],
            "channel": ["push"],
            "outcome": ["sent"],
            "timestamp": pa.array([NOW], pa.timestamp("us", tz="UTC")),
        }
    )
    result = engine.decide(pa.table({"customer_id": [1]}), history=history, now=NOW)
    assert picks(result) == [(1, "a", 1)]
    with pytest.raises(SchemaError, match=r"history: expected an Arrow table"):
        engine.decide(pa.table({"customer_id": [1]}), history=object(), now=NOW)


# --- errors --------------------------------------------------------------------------------


def test_engine_options() -> None:
    with pytest.raises(ConfigError, match=r"policy 'p': missing required key 'kind'"):
        Engine(CATALOG, policies=[{"name": "p"}])
    with pytest.raises(ConfigError, match=r"cap 'everyone': unknown scope"):
        Engine(CATALOG, caps=[{"scope": "everyone", "max": 1}])
    bad: Any
    for bad in (0, -1, True, 1.0):
        with pytest.raises(ConfigError, match=r"max_per_customer must be an integer >= 1"):
            Engine(CATALOG, max_per_customer=bad)
    assert Engine(CATALOG, policies=[], caps=None).max_per_customer == 1
    with pytest.raises(ConfigError, match=r"decide needs a catalog"):
        Engine(None).decide(CUSTOMERS, now=NOW)


@pytest.mark.parametrize(
    ("customers", "error", "message"),
    [
        (pa.table({"id": [1]}), SchemaError, r"customers: column 'customer_id' is missing"),
        (pa.table({"customer_id": [1.0]}), SchemaError, r"'customer_id' must be an integer"),
        (pa.table({"customer_id": pa.array([1], pa.uint64())}), SchemaError, r"got uint64"),
        (pa.table({"customer_id": [1, None]}), DataError, r"customer_id is null in row 1"),
        (pa.table({"customer_id": [7, 8, 7]}), DataError, r"customer_id 7 appears more than once"),
        (pa.table({"customer_id": ["x", "x"]}), DataError, r"customer_id 'x' appears more than"),
        ({"customer_id": [1]}, SchemaError, r"customers: expected an Arrow table"),
    ],
)
def test_customer_errors(customers: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        Engine([act("a", "push")]).decide(customers, now=NOW)


def test_contact_column_errors() -> None:
    with pytest.raises(SchemaError, match=r"column 'email' is missing; action 'e' on channel"):
        Engine([act("e")]).decide(pa.table({"customer_id": [1]}), now=NOW)
    with pytest.raises(SchemaError, match=r"column 'phone' is missing; action 's'"):
        Engine([act("s", "sms")]).decide(pa.table({"customer_id": [1]}), now=NOW)
    with pytest.raises(SchemaError, match=r"column 'phone' must be strings, got int64"):
        Engine([act("e")]).decide(
            pa.table({"customer_id": [1], "email": ["a"], "phone": [5]}), now=NOW
        )
    with pytest.raises(SchemaError, match=r"column 'opt_out_email' must be boolean, got string"):
        Engine([act("e")]).decide(
            pa.table({"customer_id": [1], "email": ["a"], "opt_out_email": ["no"]}), now=NOW
        )


@pytest.mark.parametrize(
    ("columns", "error", "message"),
    [
        ({"customer_id": [1], "action_id": ["a"], "propensity": [float("nan")]}, DataError,
         r"propensity nan for customer 1 and action 'a' is not a probability"),
        ({"customer_id": [1], "action_id": ["a"], "propensity": [1.5]}, DataError,
         r"propensity 1.5 for customer 1 and action 'a'"),
        ({"customer_id": [1], "action_id": ["a"], "propensity": [-0.1]}, DataError, r"-0.1"),
        ({"customer_id": [1, 1], "action_id": ["a", "a"], "propensity": [0.1, 0.2]}, DataError,
         r"customer 1 has more than one propensity for action 'a'"),
        ({"customer_id": [1], "action_id": ["zz"], "propensity": [None]}, DataError,
         r"action 'zz' is not in the catalog"),
        ({"customer_id": pa.array([None], pa.int8()), "action_id": ["a"], "propensity": [0.1]},
         DataError,
         r"propensities: customer_id is null in row 0"),
        ({"customer_id": [1], "action_id": [None], "propensity": [0.1]}, DataError,
         r"action_id is null in row 0"),
        ({"customer_id": [1], "action_id": ["a"]}, SchemaError,
         r"propensities: column 'propensity' is missing"),
        ({"customer_id": [1], "action_id": ["a"], "propensity": ["0.1"]}, SchemaError,
         r"column 'propensity' must be numeric"),
        ({"customer_id": ["1"], "action_id": ["a"], "propensity": [0.1]}, SchemaError,
         r"propensities: customer_id is string but the customers' customer_id is an integer"),
    ],
)  # fmt: skip
def test_propensity_errors(columns: dict[str, Any], error: type[Exception], message: str) -> None:
    engine = Engine([act("a", "push")])
    with pytest.raises(error, match=message):
        engine.decide(pa.table({"customer_id": [1]}), propensities=pa.table(columns), now=NOW)


def test_null_propensity_is_no_duplicate() -> None:
    engine = Engine([act("a", "push")])
    propensities = pa.table(
        {"customer_id": [1, 1], "action_id": ["a", "a"], "propensity": [None, 0.5]}
    )
    result = engine.decide(pa.table({"customer_id": [1]}), propensities=propensities, now=NOW)
    assert picks(result) == [(1, "a", 1)]


def test_propensity_matrix_errors() -> None:
    engine = Engine([act("a", "push"), act("b", "push")])
    customers = pa.table({"customer_id": [1, 2]})
    with pytest.raises(DataError, match=r"shape \(2, 3\), but there are 2 customers and 2 catalog"):
        engine.decide(customers, propensities=np.zeros((2, 3)), now=NOW)
    with pytest.raises(DataError, match=r"shape \(1, 2\)"):
        engine.decide(customers, propensities=np.zeros((1, 2)), now=NOW)
    with pytest.raises(SchemaError, match=r"must be 2-D, got 1-D"):
        engine.decide(customers, propensities=np.zeros(4), now=NOW)
    with pytest.raises(SchemaError, match=r"must be numeric"):
        engine.decide(customers, propensities=np.array([["a", "b"], ["c", "d"]]), now=NOW)
    with pytest.raises(DataError, match=r"propensity nan for customer 2 and action 'b'"):
        engine.decide(customers, propensities=np.array([[0.1, 0.2], [0.3, np.nan]]), now=NOW)


@pytest.mark.parametrize(
    ("dnc", "error", "message"),
    [
        (pa.table({"customer_id": [1]}), SchemaError, r"column 'channel' is missing"),
        (pa.table({"channel": ["*"]}), SchemaError, r"needs a 'customer_id' or an 'address'"),
        (pa.table({"channel": ["*"], "customer_id": pa.array([None], pa.int64())}), DataError,
         r"row 0 has neither a customer_id nor an address"),
        (pa.table({"channel": [None], "customer_id": [1]}), DataError, r"channel is null in row 0"),
        (pa.table({"channel": ["*"], "customer_id": ["1"]}), SchemaError,
         r"do_not_contact: customer_id is string"),
        (pa.table({"channel": [1], "customer_id": [1]}), SchemaError, r"'channel' must be strings"),
    ],
)  # fmt: skip
def test_do_not_contact_errors(dnc: pa.Table, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        Engine([act("a", "push")]).decide(
            pa.table({"customer_id": [1]}), do_not_contact=dnc, now=NOW
        )


def test_non_finite_priority() -> None:
    engine = Engine([act("a", "push", value=1e200, context_weight=1e200, default_propensity=1)])
    with pytest.raises(DataError, match=r"customer 1, action 'a': priority .* is not finite"):
        engine.decide(pa.table({"customer_id": [1]}), now=NOW)


# --- arbitrate -----------------------------------------------------------------------------


def test_arbitrate() -> None:
    engine = Engine([act("gold", value=2.0, default_propensity=0.1, treatment="T"), act("loan")])
    candidates = pa.table(
        {
            "customer_id": [2, 1, 1, 2, 1, 2],
            "action_id": ["gold", "gold", "loan", "loan", "new", "new"],
            "propensity": [None, 0.3, 0.5, None, 0.4, None],
            "value": [None, None, None, None, 3.0, None],
            "issue": [None, None, None, None, "X", None],
            "channel": [None, None, None, None, "sms", None],
        }
    )
    result = engine.arbitrate(candidates, now=NOW)
    # 1: gold 0.3*2 = 0.6, loan 0.5, new 0.4*3 = 1.2 (not in the catalog: its own factors).
    # 2: gold takes the default 0.1 -> 0.2; loan and new have no propensity.
    assert result.decisions.to_pylist() == [
        {
            "customer_id": 1, "action_id": "new", "issue": "X", "group": None, "channel": "sms",
            "treatment": None, "propensity": 0.4, "value": 3.0, "context_weight": 1.0,
            "lever": 1.0, "priority": 1.2000000000000002, "rank": 1,
        },
        {
            "customer_id": 2, "action_id": "gold", "issue": "Sales", "group": "Cards",
            "channel": "email", "treatment": "T", "propensity": 0.1, "value": 2.0,
            "context_weight": 1.0, "lever": 1.0, "priority": 0.2, "rank": 1,
        },
    ]  # fmt: skip
    everyone = {"gold": 2, "loan": 2, "new": 2}
    assert stages(result) == [
        *keep("candidate", everyone),
        *keep("eligible", everyone),
        *keep("contactable", everyone),
        *keep("not_suppressed", everyone),
        ("no_propensity", "loan", 1),
        ("no_propensity", "new", 1),
        *keep("top_choice", {"gold": 1, "loan": 0, "new": 1}),
        *keep("selected", {"gold": 1, "loan": 0, "new": 1}),
    ]


def test_arbitrate_overrides_and_ranks() -> None:
    engine = Engine([act("a", value=10.0, lever=2.0)], max_per_customer=2)
    candidates = pa.table(
        {
            "customer_id": ["c", "c", "c"],
            "action_id": pa.array([1, 2, 3]),  # integer ids read as their decimal text
            "propensity": [0.5, 0.5, 0.25],
            "context_weight": [2.0, None, 4.0],
            "lever": pa.array([None, 3, None], pa.int32()),
        }
    )
    result = Engine(None, max_per_customer=2).arbitrate(candidates, now=NOW)
    # "1": 0.5*1*2*1 = 1.0; "2": 0.5*1*1*3 = 1.5; "3": 0.25*1*4*1 = 1.0 (ties with "1").
    assert picks(result) == [("c", "2", 1), ("c", "1", 2)]
    overridden = engine.arbitrate(
        pa.table({"customer_id": [1], "action_id": ["a"], "propensity": [0.5], "value": [1.0]})
    )
    assert overridden.decisions.column("priority").to_pylist() == [1.0]  # ((0.5*1)*1)*2


def test_arbitrate_empty() -> None:
    empty = pa.table(
        {"customer_id": pa.array([], pa.int32()), "action_id": pa.array([], pa.string()),
         "propensity": pa.array([], pa.float64())}
    )  # fmt: skip
    result = Engine(None).arbitrate(empty, now=NOW)
    assert result.decisions.num_rows == 0 and result.funnel.num_rows == 0
    assert result.decisions.schema.field("customer_id").type == pa.int64()


@pytest.mark.parametrize(
    ("columns", "error", "message"),
    [
        ({"customer_id": [1, 1], "action_id": ["a", "a"], "propensity": [None, 0.5]}, DataError,
         r"candidates: customer 1 has action 'a' more than once"),
        ({"customer_id": [1], "action_id": ["a"], "propensity": [2.0]}, DataError,
         r"propensity 2.0 for customer 1 and action 'a' is not a probability"),
        ({"customer_id": [1], "action_id": ["a"], "propensity": [0.5], "lever": [-1.0]}, DataError,
         r"candidates: lever -1.0 for customer 1 and action 'a' must be finite and >= 0"),
        ({"customer_id": [1], "action_id": ["a"], "propensity": [0.5], "value": [float("inf")]},
         DataError, r"value inf"),
        ({"customer_id": [1], "action_id": ["a"], "propensity": [0.5], "value": ["1"]},
         SchemaError, r"column 'value' must be numeric"),
        ({"customer_id": [1], "action_id": ["a"], "propensity": [0.5], "issue": [1]},
         SchemaError, r"column 'issue' must be strings"),
        ({"customer_id": [1], "action_id": ["a"]}, SchemaError,
         r"candidates: column 'propensity' is missing"),
        ({"customer_id": [1], "action_id": [None], "propensity": [0.5]}, DataError,
         r"candidates: action_id is null in row 0"),
        ({"customer_id": pa.array([None], pa.string()), "action_id": ["a"], "propensity": [0.5]},
         DataError,
         r"candidates: customer_id is null in row 0"),
        ({"customer_id": [1], "action_id": ["a"], "propensity": [1.0], "value": [1e200],
          "lever": [1e200]}, DataError, r"priority .* is not finite"),
    ],
)  # fmt: skip
def test_arbitrate_errors(columns: dict[str, Any], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        Engine(None).arbitrate(pa.table(columns), now=NOW)
