"""Eligibility rules, part 3: evaluating a bound rule for one customer.

SQL three-valued logic, with ``None`` as NULL. Every sub-expression is evaluated for every
customer (AND, OR and COALESCE do not short-circuit), so whether a rule raises does not depend
on the order of its operands: an int64 overflow in ``+ - *`` or unary minus is a `DataError`
wherever it occurs. Float arithmetic is IEEE-754 (it may give inf or NaN, never an error);
``/`` converts both sides to float and divides as IEEE-754 does (as DuckDB 2.0 does):
``x / 0`` is ±inf, ``0 / 0`` is NaN. Floats compare as DuckDB
compares them: NaN equals NaN and is greater than every other number, and -0.0 equals 0.0.

Example:
    >>> import pyarrow as pa
    >>> from nba_fast.reference.bind import bind_rule
    >>> from nba_fast.reference.rules import parse_rule
    >>> schema = pa.schema([("age", pa.int64())])
    >>> rule, _ = bind_rule(parse_rule("age BETWEEN 18 AND 65"), schema, "example")
    >>> [evaluate(rule, {"age": age}, now_us=0) for age in (17, 30, None)]
    [False, True, None]
"""

from __future__ import annotations

import functools
import math
import operator
import re
from collections.abc import Callable, Mapping
from typing import Any

from nba_fast._core import DataError
from nba_fast.reference.rules import (
    INT64_MAX,
    INT64_MIN,
    Between,
    Binary,
    Coalesce,
    Column,
    DaysSince,
    Expr,
    InList,
    IsNull,
    Like,
    Literal,
    Unary,
    to_sql,
)

__all__ = ["MICROS_PER_DAY", "Value", "evaluate"]

Value = int | float | str | bool | None
"""A SQL value: int (int64, or a timestamp in microseconds), float, str, bool, None = NULL."""

MICROS_PER_DAY = 86_400_000_000


def evaluate(node: Expr, row: Mapping[str, Value], now_us: int) -> Value:
    """The value of a bound expression for one customer.

    Args:
        node: a rule bound by `nba_fast.reference.bind.bind_rule`.
        row: the customer's values of the columns the rule reads.
        now_us: the decision time in microseconds since the epoch (for days_since).

    Returns:
        The value; for a whole rule, True, False or None (NULL).

    Raises:
        DataError: an int64 overflow.
    """
    match node:
        case Literal(value=value):
            return value
        case Column(name=name):
            return row[name]
        case Unary(op="NOT", operand=operand):
            return _not(evaluate(operand, row, now_us))
        case Unary(op="+", operand=operand):
            return evaluate(operand, row, now_us)  # unary plus: the number itself
        case Unary(operand=operand):
            value = evaluate(operand, row, now_us)
            if isinstance(value, float):
                return -value
            return None if value is None else _checked(-_int(value), node)
        case Binary(op="AND", left=left, right=right):
            return _and(evaluate(left, row, now_us), evaluate(right, row, now_us))
        case Binary(op="OR", left=left, right=right):
            return _or(evaluate(left, row, now_us), evaluate(right, row, now_us))
        case Binary(op=op, left=left, right=right) if op in ("+", "-", "*", "/"):
            left_value, right_value = evaluate(left, row, now_us), evaluate(right, row, now_us)
            return _arithmetic(op, left_value, right_value, node)
        case Binary(op=op, left=left, right=right):
            return _compare(op, evaluate(left, row, now_us), evaluate(right, row, now_us))
        case IsNull(operand=operand, negated=negated):
            return (evaluate(operand, row, now_us) is None) != negated
        case InList(operand=operand, items=items, negated=negated):
            value = evaluate(operand, row, now_us)
            found: Value = False
            for item in items:
                found = _or(found, _compare("=", value, evaluate(item, row, now_us)))
            return _not(found) if negated else found
        case Between(operand=operand, low=low, high=high, negated=negated):
            value = evaluate(operand, row, now_us)
            low_value, high_value = evaluate(low, row, now_us), evaluate(high, row, now_us)
            inside = _and(_compare(">=", value, low_value), _compare("<=", value, high_value))
            return _not(inside) if negated else inside
        case Like(operand=operand, pattern=pattern, negated=negated):
            value = evaluate(operand, row, now_us)
            if value is None:
                return None
            matched = _like_regex(pattern).fullmatch(str(value)) is not None
            return matched != negated
        case Coalesce(args=args, as_float=as_float):
            values = [evaluate(arg, row, now_us) for arg in args]
            first = next((value for value in values if value is not None), None)
            return float(first) if as_float and first is not None else first
        case DaysSince(column=Column(name=name)):
            then = row[name]
            if then is None:
                return None
            # Exact integer difference, then one conversion and one float division.
            return float(_checked(now_us - _int(then), node)) / float(MICROS_PER_DAY)
    raise AssertionError(f"unknown node {node!r}")  # pragma: no cover


def _int(value: Value) -> int:
    assert isinstance(value, int) and not isinstance(value, bool), value
    return value


def _checked(result: int, node: Expr) -> int:
    """`result` if it fits in int64, else the overflow as a `DataError`."""
    if not INT64_MIN <= result <= INT64_MAX:
        raise DataError(f"integer overflow in {to_sql(node)} (the result {result} is not int64)")
    return result


def _not(value: Value) -> Value:
    return None if value is None else not value


def _and(left: Value, right: Value) -> Value:
    if left is False or right is False:
        return False
    if left is None or right is None:
        return None
    return True


def _or(left: Value, right: Value) -> Value:
    if left is True or right is True:
        return True
    if left is None or right is None:
        return None
    return False


def _ieee_divide(dividend: float, divisor: float) -> float:
    """IEEE-754 division, which Python's ``/`` refuses for a zero divisor."""
    if divisor != 0.0:
        return dividend / divisor
    if dividend == 0.0 or math.isnan(dividend):
        return math.nan
    return math.copysign(math.inf, dividend) * math.copysign(1.0, divisor)


def _arithmetic(op: str, left: Value, right: Value, node: Expr) -> Value:
    if left is None or right is None:
        return None
    assert not isinstance(left, str | bool) and not isinstance(right, str | bool)
    if op == "/":
        return _ieee_divide(float(left), float(right))
    if isinstance(left, float) or isinstance(right, float):
        x, y = float(left), float(right)
        return x + y if op == "+" else x - y if op == "-" else x * y
    exact = left + right if op == "+" else left - right if op == "-" else left * right
    return _checked(exact, node)


def _float_key(value: float) -> tuple[int, float]:
    """DuckDB's float order: NaN after every number and equal to itself."""
    return (1, 0.0) if math.isnan(value) else (0, value)


_COMPARISONS: dict[str, Callable[[Any, Any], Any]] = {
    "=": operator.eq,
    "<>": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def _compare(op: str, left: Value, right: Value) -> Value:
    if left is None or right is None:
        return None
    if isinstance(left, float) or isinstance(right, float):
        assert not isinstance(left, str) and not isinstance(right, str)
        return bool(_COMPARISONS[op](_float_key(float(left)), _float_key(float(right))))
    # Binding guarantees one comparable kind here: ints (or timestamps), strs or bools.
    return bool(_COMPARISONS[op](left, right))


@functools.lru_cache(maxsize=1024)
def _like_regex(pattern: str) -> re.Pattern[str]:
    """LIKE as a regex: ``%`` any run, ``_`` one character, all else literal (no escape)."""
    parts = [".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern]
    return re.compile("".join(parts), re.DOTALL)
