"""Eligibility rules, part 2: binding a parsed rule to the customers' columns.

Binding resolves every column name against the customers' schema and type-checks the rule
(docs/semantics.md, "Eligibility rules"). The result is the same tree with every `Column`
renamed to the exact column it resolved to, and every `Coalesce` that mixes ints with floats
marked `as_float`. After binding, the Python type of every value the evaluator meets is its
SQL type: ``int`` (int64 and timestamps as microseconds), ``float``, ``str``, ``bool``, or
``None`` for NULL, so the evaluator needs no types of its own.

SQL types are named by the strings of `SQL_TYPES`.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa
import pyarrow.types as pat

from nba_fast._core import RuleError
from nba_fast.reference.rules import (
    ARITHMETIC,
    COMPARISONS,
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

__all__ = ["SQL_TYPES", "bind_expression", "bind_rule", "resolve_column", "sql_type_of"]

SQL_TYPES = ("int", "float", "string", "bool", "timestamp", "null")
_NUMBERS = frozenset({"int", "float"})


def sql_type_of(data_type: pa.DataType) -> str | None:
    """The SQL type a customers' column of this Arrow type has in rules, None if unsupported.

    Dictionary-encoded columns count as their value type; a column of Arrow type ``null``
    is all NULL.
    """
    if pat.is_dictionary(data_type):
        return sql_type_of(data_type.value_type)
    if pat.is_integer(data_type):
        return "int"
    if pat.is_floating(data_type):
        return "float"
    if pat.is_string(data_type) or pat.is_large_string(data_type):
        return "string"
    if pat.is_string_view(data_type):
        return "string"
    if pat.is_boolean(data_type):
        return "bool"
    if pat.is_timestamp(data_type) or pat.is_date(data_type):
        return "timestamp"
    if pat.is_null(data_type):
        return "null"
    return None


def resolve_column(column: Column, names: Sequence[str]) -> str | None:
    """The customers' column `column` refers to, or None.

    A quoted name matches exactly; an unquoted one exactly if such a column exists, else
    case-insensitively if exactly one column matches.
    """
    if column.name in names:
        return column.name
    if column.quoted:
        return None
    matches = [name for name in names if name.lower() == column.name.lower()]
    return matches[0] if len(matches) == 1 else None


class _Binder:
    """Binds one rule; `context` prefixes every error (it names the action and the rule)."""

    def __init__(self, schema: pa.Schema, context: str) -> None:
        self.schema = schema
        self.names: list[str] = list(schema.names)
        self.context = context
        self.columns: set[str] = set()

    def fail(self, message: str) -> RuleError:
        return RuleError(f"{self.context}: {message}")

    def column(self, column: Column) -> tuple[Column, str]:
        name = resolve_column(column, self.names)
        if name is None:
            raise self.fail(f"unknown column {column.name!r}")
        data_type = self.schema.field(name).type
        sql_type = sql_type_of(data_type)
        if sql_type is None:
            raise self.fail(f"column {name!r} has Arrow type {data_type}, which rules cannot use")
        self.columns.add(name)
        return Column(name, quoted=True), sql_type

    def comparable(self, left: Expr, left_type: str, right: Expr, right_type: str) -> None:
        if "null" in (left_type, right_type) or left_type == right_type:
            return
        if left_type in _NUMBERS and right_type in _NUMBERS:
            return
        raise self.fail(
            f"cannot compare {to_sql(left)} ({left_type}) with {to_sql(right)} ({right_type})"
        )

    def expect(self, node: Expr, node_type: str, allowed: frozenset[str], role: str) -> None:
        if node_type != "null" and node_type not in allowed:
            raise self.fail(
                f"{role} needs {' or '.join(sorted(allowed))}, got {to_sql(node)} ({node_type})"
            )

    def bind(self, node: Expr) -> tuple[Expr, str]:
        """The bound node and its SQL type."""
        match node:
            case Literal(value=value):
                return node, _literal_type(value)
            case Column():
                return self.column(node)
            case Unary(op="NOT", operand=operand):
                bound, operand_type = self.bind(operand)
                self.expect(operand, operand_type, frozenset({"bool"}), "NOT")
                return Unary("NOT", bound), "bool"
            case Unary(op=op, operand=operand):
                bound, operand_type = self.bind(operand)
                role = "unary minus" if op == "-" else "unary plus"
                self.expect(operand, operand_type, _NUMBERS, role)
                return Unary(op, bound), operand_type
            case Binary(op=op, left=left, right=right):
                return self.binary(op, left, right)
            case IsNull(operand=operand, negated=negated):
                return IsNull(self.bind(operand)[0], negated), "bool"
            case InList(operand=operand, items=items, negated=negated):
                bound, operand_type = self.bind(operand)
                bound_items = []
                for item in items:
                    bound_item, item_type = self.bind(item)
                    self.comparable(operand, operand_type, item, item_type)
                    bound_items.append(bound_item)
                return InList(bound, tuple(bound_items), negated), "bool"
            case Between(operand=operand, low=low, high=high, negated=negated):
                bound, operand_type = self.bind(operand)
                bound_low, low_type = self.bind(low)
                bound_high, high_type = self.bind(high)
                self.comparable(operand, operand_type, low, low_type)
                self.comparable(operand, operand_type, high, high_type)
                return Between(bound, bound_low, bound_high, negated), "bool"
            case Like(operand=operand, pattern=pattern, negated=negated):
                bound, operand_type = self.bind(operand)
                self.expect(operand, operand_type, frozenset({"string"}), "LIKE")
                return Like(bound, pattern, negated), "bool"
            case Coalesce(args=args):
                return self.coalesce(args)
            case DaysSince(column=column):
                bound_column, column_type = self.column(column)
                self.expect(column, column_type, frozenset({"timestamp"}), "days_since")
                return DaysSince(bound_column), "float"
        raise AssertionError(f"unknown node {node!r}")  # pragma: no cover

    def binary(self, op: str, left: Expr, right: Expr) -> tuple[Expr, str]:
        bound_left, left_type = self.bind(left)
        bound_right, right_type = self.bind(right)
        bound = Binary(op, bound_left, bound_right)
        if op in ("AND", "OR"):
            self.expect(left, left_type, frozenset({"bool"}), op)
            self.expect(right, right_type, frozenset({"bool"}), op)
            return bound, "bool"
        if op in COMPARISONS:
            self.comparable(left, left_type, right, right_type)
            return bound, "bool"
        assert op in ARITHMETIC
        self.expect(left, left_type, _NUMBERS, f"'{op}'")
        self.expect(right, right_type, _NUMBERS, f"'{op}'")
        if op == "/" or "float" in (left_type, right_type):
            return bound, "float"
        return bound, "int" if "int" in (left_type, right_type) else "null"

    def coalesce(self, args: tuple[Expr, ...]) -> tuple[Expr, str]:
        bound_args: list[Expr] = []
        types: set[str] = set()
        for arg in args:
            bound_arg, arg_type = self.bind(arg)
            bound_args.append(bound_arg)
            if arg_type != "null":
                types.add(arg_type)
        if len(types) > 1 and types != _NUMBERS:
            listed = ", ".join(sorted(types))
            raise self.fail(f"COALESCE arguments must share one type, got {listed}")
        if types == _NUMBERS:
            return Coalesce(tuple(bound_args), as_float=True), "float"
        return Coalesce(tuple(bound_args)), types.pop() if types else "null"


def _literal_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    return "float" if isinstance(value, float) else "string"


def bind_expression(node: Expr, schema: pa.Schema, context: str) -> tuple[Expr, str]:
    """Resolves and type-checks any expression (a rule or a part of one).

    Args:
        node: the parsed expression.
        schema: the customers' Arrow schema.
        context: names the action and the rule in error messages.

    Returns:
        The bound expression and its SQL type (one of `SQL_TYPES`).

    Raises:
        RuleError: an unknown column, a column type rules cannot use, or mismatched types.
    """
    return _Binder(schema, context).bind(node)


def bind_rule(rule: Expr, schema: pa.Schema, context: str) -> tuple[Expr, set[str]]:
    """Resolves and type-checks a parsed rule against the customers' schema.

    Args:
        rule: the parsed rule.
        schema: the customers' Arrow schema.
        context: names the action and the rule in error messages.

    Returns:
        The bound rule and the names of the columns it reads.

    Raises:
        RuleError: an unknown column, a column type rules cannot use, mismatched types, or a
            rule that is not boolean.
    """
    binder = _Binder(schema, context)
    bound, rule_type = binder.bind(rule)
    if rule_type not in ("bool", "null"):
        raise binder.fail(f"the rule must be boolean, but it is {rule_type}")
    return bound, binder.columns
