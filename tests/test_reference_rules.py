"""The reference's rule language (nba_fast.reference.rules/bind/evaluate), hand-checked.

Each case states the SQL value the rule must have, worked out by hand from docs/semantics.md.
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime
from typing import Any

import pyarrow as pa
import pytest
from nba_fast._core import DataError, RuleError
from nba_fast.config import to_epoch_micros
from nba_fast.reference.bind import bind_expression, bind_rule
from nba_fast.reference.evaluate import Value, evaluate
from nba_fast.reference.inputs import column_values
from nba_fast.reference.rules import (
    Between,
    Binary,
    Column,
    InList,
    IsNull,
    Like,
    Literal,
    RuleSyntaxError,
    Unary,
    parse_rule,
)

NOW = datetime(2024, 6, 1, tzinfo=UTC)
NOW_US = to_epoch_micros(NOW)

# The columns every case can use: name -> (Arrow type, value).
COLUMNS: dict[str, tuple[pa.DataType, Any]] = {
    "i": (pa.int64(), 5),
    "small": (pa.int8(), -3),
    "big": (pa.int64(), 2**62),
    "odd": (pa.int64(), 2**53 + 1),
    "f": (pa.float64(), 2.5),
    "half": (pa.float32(), 0.5),
    "nan": (pa.float64(), math.nan),
    "negzero": (pa.float64(), -0.0),
    "s": (pa.string(), "abc"),
    "dict_s": (pa.dictionary(pa.int32(), pa.string()), "CA"),
    "b": (pa.bool_(), True),
    "ts": (pa.timestamp("us", tz="UTC"), datetime(2024, 5, 30, 12, tzinfo=UTC)),
    "ts_ns": (pa.timestamp("ns"), to_epoch_micros(NOW) * 1000 - 1),
    "day": (pa.date32(), date(2024, 5, 31)),
    "ni": (pa.int64(), None),
    "nf": (pa.float64(), None),
    "ns": (pa.string(), None),
    "nb": (pa.bool_(), None),
    "nts": (pa.timestamp("us"), None),
    "void": (pa.null(), None),
    "tags": (pa.list_(pa.string()), ["x"]),
}
SCHEMA = pa.schema([(name, data_type) for name, (data_type, _) in COLUMNS.items()])
ROW: dict[str, Value] = {
    name: column_values(pa.chunked_array([pa.array([value], data_type)]))[0]
    for name, (data_type, value) in COLUMNS.items()
    if name != "tags"
}


def value(expression: str) -> Value:
    """The value of `expression` for the one customer ROW at NOW."""
    bound, _ = bind_expression(parse_rule(expression), SCHEMA, "test")
    return evaluate(bound, ROW, NOW_US)


def sql_type(expression: str) -> str:
    return bind_expression(parse_rule(expression), SCHEMA, "test")[1]


# --- parsing -------------------------------------------------------------------------------


def test_precedence_tree() -> None:
    a, b, c = (Column(name, quoted=False) for name in "abc")
    assert parse_rule("a OR b AND NOT c") == Binary("OR", a, Binary("AND", b, Unary("NOT", c)))
    assert parse_rule("NOT a = b") == Unary("NOT", Binary("=", a, b))
    assert parse_rule("a = b IS NULL") == IsNull(Binary("=", a, b), negated=False)
    assert parse_rule("a + b * c") == Binary("+", a, Binary("*", b, c))
    assert parse_rule("a - b - c") == Binary("-", Binary("-", a, b), c)
    assert parse_rule("-a * b") == Binary("*", Unary("-", a), b)
    assert parse_rule("a BETWEEN b AND c AND a") == Binary("AND", Between(a, b, c, False), a)
    assert parse_rule("a NOT IN (b, 1)") == InList(a, (b, Literal(1)), negated=True)
    assert parse_rule("a + 1 NOT LIKE 'x'") == Like(Binary("+", a, Literal(1)), "x", True)
    assert parse_rule("a LIKE 'x' = TRUE") == Binary("=", Like(a, "x", False), Literal(True))
    assert parse_rule("TRUE = a IN (1)") == Binary(
        "=", Literal(True), InList(a, (Literal(1),), False)
    )


def test_literals_and_names() -> None:
    assert parse_rule("'it''s'") == Literal("it's")
    assert parse_rule('"my ""col"""') == Column('my "col"', quoted=True)
    assert parse_rule("1.5") == Literal(1.5) and parse_rule("1e3") == Literal(1000.0)
    assert parse_rule(".5") == Literal(0.5) and parse_rule("7") == Literal(7)
    assert parse_rule("true") == Literal(True) and parse_rule("Null") == Literal(None)
    assert parse_rule("-9223372036854775808") == Literal(-(2**63))
    assert parse_rule("x -- a comment\n = /* another */ 1") == Binary(
        "=", Column("x", quoted=False), Literal(1)
    )
    assert parse_rule("a != b") == parse_rule("a <> b")


@pytest.mark.parametrize(
    "rule",
    [
        "a = b = c",
        "a < b > c",
        "a LIKE 'x' LIKE 'y'",
        "a BETWEEN 1 AND 2 BETWEEN FALSE AND TRUE",
        "a LIKE b",
        "a IN ()",
        "a >= ",
        "(a = 1",
        "a = 1)",
        "9223372036854775808 > 0",
        "lower(a) = 'x'",
        "days_since(a + 1) > 1",
        "COALESCE() = 1",
        "a = 'unterminated",
        "a ILIKE 'x'",
        "1abc = 1",
        'a = ""',
        "a IS 1",
        "",
    ],
)
def test_syntax_errors(rule: str) -> None:
    with pytest.raises(RuleSyntaxError):
        parse_rule(rule)


# --- binding -------------------------------------------------------------------------------


def test_types() -> None:
    assert sql_type("i + 1") == "int"
    assert sql_type("i + f") == "float"
    assert sql_type("i / 1") == "float"
    assert sql_type("-small") == "int"
    assert sql_type("half") == "float"
    assert sql_type("dict_s") == "string"
    assert sql_type("day") == "timestamp"
    assert sql_type("days_since(ts)") == "float"
    assert sql_type("COALESCE(ni, f)") == "float"
    assert sql_type("COALESCE(NULL, NULL)") == "null"
    assert sql_type("void + 1") == "int"


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ("i = 'x'", r"cannot compare i \(int\) with 'x' \(string\)"),
        ("ts > 1", r"cannot compare ts \(timestamp\) with 1 \(int\)"),
        ("b = 1", r"cannot compare"),
        ("s IN ('a', 1)", r"cannot compare s \(string\) with 1 \(int\)"),
        ("i BETWEEN 1 AND 'z'", r"cannot compare"),
        ("NOT i", r"NOT needs bool, got i \(int\)"),
        ("i AND TRUE", r"AND needs bool"),
        ("s + 1 > 0", r"'\+' needs float or int, got s \(string\)"),
        ("-s = 'x'", r"unary minus needs"),
        ("ts - ts > 0", r"'-' needs"),
        ("i LIKE 'x'", r"LIKE needs string, got i \(int\)"),
        ("days_since(i) > 1", r"days_since needs timestamp, got i \(int\)"),
        ("COALESCE(i, 'x') = 1", r"COALESCE arguments must share one type, got int, string"),
        ("i + 1", r"the rule must be boolean, but it is int"),
        ("missing > 1", r"unknown column 'missing'"),
        ('"I" > 1', r"unknown column 'I'"),
        ("tags IS NULL", r"column 'tags' has Arrow type list<item: string>"),
    ],
)
def test_type_errors(rule: str, message: str) -> None:
    with pytest.raises(RuleError, match=r"^ctx: " + message):
        bind_rule(parse_rule(rule), SCHEMA, "ctx")


def test_column_resolution() -> None:
    schema = pa.schema([("Age", pa.int64()), ("AGE", pa.int64()), ("state", pa.string())])
    bound, columns = bind_rule(parse_rule("STATE = 'CA' AND Age > 1"), schema, "ctx")
    assert columns == {"state", "Age"}
    assert bound == Binary(
        "AND",
        Binary("=", Column("state", quoted=True), Literal("CA")),
        Binary(">", Column("Age", quoted=True), Literal(1)),
    )
    with pytest.raises(RuleError, match=r"unknown column 'age'"):  # Age or AGE: ambiguous
        bind_rule(parse_rule("age > 1"), schema, "ctx")
    with pytest.raises(RuleError, match=r"unknown column 'State'"):  # quoted: exact only
        bind_rule(parse_rule("\"State\" = 'CA'"), schema, "ctx")


def test_null_rule_is_allowed() -> None:
    bound, _ = bind_rule(parse_rule("NULL"), SCHEMA, "ctx")
    assert evaluate(bound, ROW, NOW_US) is None


# --- evaluation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        # Three-valued logic.
        ("nb AND FALSE", False),
        ("nb AND TRUE", None),
        ("nb OR TRUE", True),
        ("nb OR FALSE", None),
        ("NOT nb", None),
        ("ni > 1", None),
        ("ni IS NULL", True),
        ("i IS NULL", False),
        ("ni IS NOT NULL", False),
        ("void IS NULL", True),
        ("NULL = NULL", None),
        # IN and BETWEEN.
        ("i IN (1, 5)", True),
        ("i IN (1, NULL)", None),
        ("i IN (5, NULL)", True),
        ("i NOT IN (1, NULL)", None),
        ("i NOT IN (1, 2)", True),
        ("ni IN (1)", None),
        ("i IN (5.0)", True),
        ("dict_s IN ('CA', 'NY')", True),
        ("i BETWEEN 5 AND 6", True),
        ("i BETWEEN 6 AND 5", False),
        ("i NOT BETWEEN 1 AND 4", True),
        ("i BETWEEN NULL AND 4", False),
        ("i BETWEEN NULL AND 6", None),
        # Arithmetic.
        ("i + 2 * 3 = 11", True),
        ("7 / 2 = 3.5", True),
        ("-7 / 2 = -3.5", True),
        # IEEE-754 division, as DuckDB 2.0: x / 0 is ±inf, 0 / 0 is NaN (which equals NaN).
        ("i / 0 > 1e308", True),
        ("f / -0.0 < -1e308", True),
        ("(i - i) / 0 = 0.0 / 0", True),
        ("(i - i) / 0 > 1e308", True),
        ("8 / 2 / 2 = 2", True),
        ("2 - 1 - 1 = 0", True),
        ("-2 * 3 = -6", True),
        ("- -i = 5", True),
        ("i + f = 7.5", True),
        ("half * 2 = 1", True),
        ("1e308 * 10 > 1e308", True),
        ("ni + 1 IS NULL", True),
        # Comparisons.
        ("odd = 9007199254740992.0", True),  # int vs float compares as float64
        ("odd = 9007199254740992", False),  # int vs int is exact
        ("nan = nan", True),  # DuckDB: NaN equals NaN ...
        ("nan > 1e308", True),  # ... and is above every number
        ("nan < 0", False),
        ("nan <> nan", False),
        ("negzero = 0", True),
        ("negzero < 0.0", False),
        ("'B' < 'a'", True),
        ("'é' > 'z'", True),
        ("'' < 'a'", True),
        ("FALSE < TRUE", True),
        ("b = TRUE", True),
        ("ts < day", True),
        ("day < ts", False),
        ("NOT i = 1", True),
        ("i = 1 IS NULL", False),
        ("i IS NULL = FALSE", True),
        ("TRUE OR TRUE AND FALSE", True),
        ("(TRUE OR TRUE) AND FALSE", False),
        # LIKE: % and _ only, case-sensitive, no escape, every other character literal.
        ("s LIKE 'a%'", True),
        ("s LIKE 'A%'", False),
        ("s LIKE 'a_c'", True),
        ("s LIKE '_'", False),
        ("s LIKE '%'", True),
        ("s NOT LIKE '%c'", False),
        ("'a.c' LIKE 'a.c'", True),
        ("s LIKE 'a.c'", False),
        ("'a+b' LIKE 'a+b'", True),
        ("'a\nb' LIKE 'a%b'", True),
        ("'a\nb' LIKE 'a_b'", True),
        ("'100%' LIKE '100\\%'", False),
        ("'é' LIKE '_'", True),
        ("'' LIKE '%'", True),
        ("ns LIKE '%'", None),
        ("ns NOT LIKE '%'", None),
        # COALESCE.
        ("COALESCE(ni, 2) = 2", True),
        ("COALESCE(ns, s) = 'abc'", True),
        ("COALESCE(NULL, NULL) IS NULL", True),
        ("COALESCE(nb, nb) IS NULL", True),
        # days_since.
        ("days_since(ts) = 1.5", True),
        ("days_since(day) = 1", True),
        ("days_since(nts) IS NULL", True),
        ("days_since(void) IS NULL", True),
    ],
)
def test_evaluation(expression: str, expected: Value) -> None:
    assert value(expression) is expected


def test_values() -> None:
    assert value("7 / 2") == 3.5
    assert value("i * 2") == 10 and isinstance(value("i * 2"), int)
    assert value("-f") == -2.5
    assert value("-small") == 3
    assert value("1e308 * 10") == math.inf
    assert value("COALESCE(i, 2.5)") == 5.0 and isinstance(value("COALESCE(i, 2.5)"), float)
    assert value("COALESCE(ni, 2.5)") == 2.5
    assert value("COALESCE(ni, 7)") == 7 and isinstance(value("COALESCE(ni, 7)"), int)
    assert value("-9223372036854775808") == -(2**63)
    # A nanosecond timestamp floors to the microsecond: 1 µs before NOW.
    assert value("days_since(ts_ns)") == 1 / 86_400_000_000
    assert value("days_since(ts)") == 1.5
    # One exact integer difference, one conversion, one division.
    schema = pa.schema([("t", pa.timestamp("us"))])
    bound, _ = bind_expression(parse_rule("days_since(t)"), schema, "ctx")
    then = -(2**60) + 12_345
    assert evaluate(bound, {"t": then}, NOW_US) == float(NOW_US - then) / 86_400_000_000.0


@pytest.mark.parametrize(
    "expression",
    [
        "big * 2",
        "big + big",
        "-big - big - 1",
        "9223372036854775807 + 1",
        "-(-9223372036854775808)",
        "-9223372036854775808 - 1",
        "(FALSE AND big * 4 > 0) IS NULL",  # no short-circuit: the overflow is still an error
        "COALESCE(i, big * 4) = 5",
        "FALSE AND (TRUE OR big * 4 > 0)",
    ],
)
def test_int64_overflow_is_a_data_error(expression: str) -> None:
    with pytest.raises(DataError, match=r"integer overflow"):
        value(expression)


def test_like_on_dictionary_and_large_strings() -> None:
    schema = pa.schema([("s", pa.large_string())])
    bound, _ = bind_rule(parse_rule("s LIKE '%z'"), schema, "ctx")
    assert evaluate(bound, {"s": "xyz"}, 0) is True
