"""Eligibility rules, part 1: the syntax tree, the tokenizer and the parser of the SQL subset.

The grammar is DuckDB's (PostgreSQL's) for the subset of DESIGN.md §3, by precedence climbing.
From loosest to tightest binding::

    OR  <  AND  <  NOT  <  IS [NOT] NULL  <  = <> != < <= > >=  <  [NOT] IN / BETWEEN / LIKE
        <  + -  <  * /  <  unary minus

Binary operators associate to the left, except that comparisons do not chain and neither do
IN / BETWEEN / LIKE (``a = b = c`` is a syntax error: write ``(a = b) = c``). ``--`` starts a
comment to the end of the line and ``/* ... */`` is a comment, as in SQL.

Example:
    >>> to_sql(parse_rule("age >= 18 AND NOT state IN ('CA', 'NY')"))
    "((age >= 18) AND (NOT (state IN ('CA', 'NY'))))"
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

__all__ = [
    "Between",
    "Binary",
    "Coalesce",
    "Column",
    "DaysSince",
    "Expr",
    "InList",
    "IsNull",
    "Like",
    "Literal",
    "RuleSyntaxError",
    "Unary",
    "parse_rule",
    "to_sql",
]

INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1


# --- syntax tree -------------------------------------------------------------------------


@dataclass(frozen=True)
class Literal:
    """A constant: int, float, str, bool, or None for NULL."""

    value: int | float | str | bool | None


@dataclass(frozen=True)
class Column:
    """A column reference; `quoted` names must match exactly."""

    name: str
    quoted: bool


@dataclass(frozen=True)
class Unary:
    """``-x`` or ``NOT x``."""

    op: str
    operand: Expr


@dataclass(frozen=True)
class Binary:
    """Arithmetic (``+ - * /``), comparison (``= <> < <= > >=``) or logic (``AND OR``)."""

    op: str
    left: Expr
    right: Expr


@dataclass(frozen=True)
class IsNull:
    """``x IS NULL`` (or ``IS NOT NULL`` when `negated`)."""

    operand: Expr
    negated: bool


@dataclass(frozen=True)
class InList:
    """``x [NOT] IN (a, b, ...)``."""

    operand: Expr
    items: tuple[Expr, ...]
    negated: bool


@dataclass(frozen=True)
class Between:
    """``x [NOT] BETWEEN low AND high``."""

    operand: Expr
    low: Expr
    high: Expr
    negated: bool


@dataclass(frozen=True)
class Like:
    """``x [NOT] LIKE 'pattern'``: ``%`` any run of characters, ``_`` one character."""

    operand: Expr
    pattern: str
    negated: bool


@dataclass(frozen=True)
class Coalesce:
    """``COALESCE(a, b, ...)``; `as_float` is set by binding when ints mix with floats."""

    args: tuple[Expr, ...]
    as_float: bool = False


@dataclass(frozen=True)
class DaysSince:
    """``days_since(col)``: (now - col) in days, as a float."""

    column: Column


Expr = Literal | Column | Unary | Binary | IsNull | InList | Between | Like | Coalesce | DaysSince

COMPARISONS: Final = frozenset({"=", "<>", "<", "<=", ">", ">="})
ARITHMETIC: Final = frozenset({"+", "-", "*", "/"})


class RuleSyntaxError(Exception):
    """A rule that does not parse; `position` is the 0-based character offset."""

    def __init__(self, message: str, position: int) -> None:
        super().__init__(f"{message} (at character {position})")
        self.position = position


# --- tokenizer ---------------------------------------------------------------------------

_KEYWORDS: Final = frozenset(
    {"AND", "OR", "NOT", "IN", "BETWEEN", "IS", "NULL", "LIKE", "TRUE", "FALSE"}
)
_TOKEN: Final = re.compile(
    r"""
      (?P<space>\s+|--[^\n]*)
    | (?P<comment>/\*)
    | (?P<number>(?:[0-9]+\.[0-9]*|\.[0-9]+|[0-9]+)(?:[eE][+-]?[0-9]+)?)
    | (?P<string>'(?:[^']|'')*')
    | (?P<qident>"(?:[^"]|"")+")
    | (?P<ident>[^\W\d]\w*)
    | (?P<op><>|!=|==|<=|>=|[-+*/=<>(),])
    """,
    re.VERBOSE | re.DOTALL,
)


@dataclass(frozen=True)
class _Token:
    kind: str  # number, string, qident, ident, keyword, op, end
    text: str
    position: int


def _skip_block_comment(source: str, start: int) -> int:
    """The position after the (nested) block comment opening at `start`."""
    depth, position = 0, start
    while position < len(source):
        pair = source[position : position + 2]
        if pair == "/*":
            depth, position = depth + 1, position + 2
        elif pair == "*/":
            depth, position = depth - 1, position + 2
            if depth == 0:
                return position
        else:
            position += 1
    raise RuleSyntaxError("unterminated comment", start)


def _tokenize(source: str) -> list[_Token]:
    tokens: list[_Token] = []
    position = 0
    while position < len(source):
        match = _TOKEN.match(source, position)
        if match is None:
            raise RuleSyntaxError(f"unexpected character {source[position]!r}", position)
        kind = match.lastgroup or ""
        text = match.group()
        if kind == "comment":  # block comments nest, as in DuckDB and PostgreSQL
            position = _skip_block_comment(source, position)
            continue
        if kind == "number" and match.end() < len(source) and re.match(r"\w", source[match.end()]):
            raise RuleSyntaxError(f"malformed number {text + source[match.end()]!r}", position)
        if kind == "ident" and text.upper() in _KEYWORDS:
            kind, text = "keyword", text.upper()
        if kind != "space":
            tokens.append(_Token(kind, text, position))
        position = match.end()
    tokens.append(_Token("end", "", len(source)))
    return tokens


# --- parser ------------------------------------------------------------------------------

# Binding power of each infix/postfix operator; prefix NOT and unary minus sit at _NOT, _UNARY.
_OR, _AND, _NOT, _IS, _COMPARE, _PREDICATE, _ADD, _MULTIPLY, _UNARY = range(1, 10)
_INFIX: Final = {
    "OR": _OR,
    "AND": _AND,
    "IS": _IS,
    **dict.fromkeys(["=", "==", "<>", "!=", "<", "<=", ">", ">="], _COMPARE),
    **dict.fromkeys(["IN", "BETWEEN", "LIKE"], _PREDICATE),
    **dict.fromkeys(["+", "-"], _ADD),
    **dict.fromkeys(["*", "/"], _MULTIPLY),
}
_NON_ASSOCIATIVE: Final = frozenset({_COMPARE, _PREDICATE})


class _Parser:
    def __init__(self, source: str) -> None:
        self.tokens = _tokenize(source)
        self.index = 0

    def peek(self, ahead: int = 0) -> _Token:
        return self.tokens[min(self.index + ahead, len(self.tokens) - 1)]

    def next(self) -> _Token:
        token = self.peek()
        self.index += 1
        return token

    def expect(self, text: str) -> None:
        token = self.next()
        if token.kind not in ("op", "keyword") or token.text != text:
            raise RuleSyntaxError(f"expected {text!r}, found {_describe(token)}", token.position)

    def infix_power(self) -> int:
        """Binding power of the operator at the cursor, 0 if none."""
        token = self.peek()
        if token.kind not in ("op", "keyword"):
            return 0
        if token.text == "NOT" and self.peek(1).text in ("IN", "BETWEEN", "LIKE"):
            return _PREDICATE
        return _INFIX.get(token.text, 0)

    def expression(self, power: int = 0) -> Expr:
        """Parses operators binding tighter than `power` (precedence climbing)."""
        left = self.prefix()
        while (operator_power := self.infix_power()) > power:
            left = self.infix(left, operator_power)
            if operator_power in _NON_ASSOCIATIVE and self.infix_power() == operator_power:
                token = self.peek()
                raise RuleSyntaxError(
                    f"{token.text!r} cannot follow a comparison, IN, BETWEEN or LIKE without "
                    "parentheses (they do not chain)",
                    token.position,
                )
        return left

    def prefix(self) -> Expr:
        token = self.next()
        if token.kind == "number":
            return Literal(_number(token.text, token.position))
        if token.kind == "string":
            return Literal(token.text[1:-1].replace("''", "'"))
        if token.kind == "qident":
            return Column(token.text[1:-1].replace('""', '"'), quoted=True)
        if token.kind == "ident":
            if self.peek().text == "(" and self.peek().kind == "op":
                return self.function(token)
            return Column(token.text, quoted=False)
        if token.kind == "keyword" and token.text in ("TRUE", "FALSE", "NULL"):
            return Literal({"TRUE": True, "FALSE": False, "NULL": None}[token.text])
        if token.kind == "keyword" and token.text == "NOT":
            return Unary("NOT", self.expression(_NOT))
        if token.kind == "op" and token.text == "-":
            if self.peek().kind == "number":  # fold, so that -9223372036854775808 is an int64
                number = self.next()
                return Literal(-_number(number.text, number.position, negative=True))
            return Unary("-", self.expression(_UNARY))
        if token.kind == "op" and token.text == "+":  # DuckDB accepts unary plus
            return Unary("+", self.expression(_UNARY))
        if token.kind == "op" and token.text == "(":
            inner = self.expression()
            self.expect(")")
            return inner
        raise RuleSyntaxError(f"expected an expression, found {_describe(token)}", token.position)

    def infix(self, left: Expr, power: int) -> Expr:
        token = self.next()
        if token.text in ("AND", "OR"):
            return Binary(token.text, left, self.expression(power))
        if token.text == "IS":
            negated = self.peek().text == "NOT"
            if negated:
                self.next()
            self.expect("NULL")
            return IsNull(left, negated)
        if power == _PREDICATE:
            negated = token.text == "NOT"
            keyword = self.next().text if negated else token.text
            return self.predicate(left, keyword, negated)
        # DuckDB reads `!=` as `<>` and `==` as `=`.
        op = {"!=": "<>", "==": "="}.get(token.text, token.text)
        return Binary(op, left, self.expression(power))

    def predicate(self, left: Expr, keyword: str, negated: bool) -> Expr:
        if keyword == "IN":
            self.expect("(")
            items = [self.expression()]
            while self.peek().text == ",":
                self.next()
                items.append(self.expression())
            self.expect(")")
            return InList(left, tuple(items), negated)
        if keyword == "BETWEEN":
            low = self.expression(_PREDICATE)
            self.expect("AND")
            return Between(left, low, self.expression(_PREDICATE), negated)
        pattern = self.next()
        if pattern.kind != "string":
            raise RuleSyntaxError(
                f"LIKE needs a string literal pattern, found {_describe(pattern)}",
                pattern.position,
            )
        return Like(left, pattern.text[1:-1].replace("''", "'"), negated)

    def function(self, name: _Token) -> Expr:
        self.expect("(")
        function = name.text.lower()
        if function == "days_since":
            argument = self.next()
            if argument.kind not in ("ident", "qident"):
                raise RuleSyntaxError(
                    f"days_since takes one column name, found {_describe(argument)}",
                    argument.position,
                )
            self.expect(")")
            text = argument.text
            if argument.kind == "qident":
                return DaysSince(Column(text[1:-1].replace('""', '"'), quoted=True))
            return DaysSince(Column(text, quoted=False))
        if function == "coalesce":
            args = [self.expression()]
            while self.peek().text == ",":
                self.next()
                args.append(self.expression())
            self.expect(")")
            return Coalesce(tuple(args))
        raise RuleSyntaxError(
            f"unknown function {name.text!r} (the rules know COALESCE and days_since)",
            name.position,
        )


def _number(text: str, position: int, *, negative: bool = False) -> int | float:
    """An integer literal (int64) or a decimal/exponent literal (float64)."""
    if any(c in text for c in ".eE"):
        return float(text)
    value = int(text)
    if value > (-INT64_MIN if negative else INT64_MAX):
        raise RuleSyntaxError(f"integer literal {text} does not fit in int64", position)
    return value


def _describe(token: _Token) -> str:
    return "the end of the rule" if token.kind == "end" else repr(token.text)


def parse_rule(source: str) -> Expr:
    """Parses one eligibility rule.

    Args:
        source: the rule's SQL text (not empty).

    Returns:
        The syntax tree.

    Raises:
        RuleSyntaxError: the text is not a rule of the subset.
    """
    parser = _Parser(source)
    tree = parser.expression()
    token = parser.peek()
    if token.kind != "end":
        raise RuleSyntaxError(f"unexpected {_describe(token)}", token.position)
    return tree


def to_sql(node: Expr) -> str:
    """The expression as SQL text, fully parenthesised (for error messages)."""
    match node:
        case Literal(value=None):
            return "NULL"
        case Literal(value=bool() as flag):
            return "TRUE" if flag else "FALSE"
        case Literal(value=str() as text):
            return "'" + text.replace("'", "''") + "'"
        case Literal(value=value):
            return repr(value)
        case Column(name=name, quoted=quoted):
            return '"' + name.replace('"', '""') + '"' if quoted else name
        case Unary(op="NOT", operand=operand):
            return f"(NOT {to_sql(operand)})"
        case Unary(op=op, operand=operand):
            return f"({op}{to_sql(operand)})"
        case Binary(op=op, left=left, right=right):
            return f"({to_sql(left)} {op} {to_sql(right)})"
        case IsNull(operand=operand, negated=negated):
            return f"({to_sql(operand)} IS {'NOT ' if negated else ''}NULL)"
        case InList(operand=operand, items=items, negated=negated):
            listed = ", ".join(to_sql(item) for item in items)
            return f"({to_sql(operand)} {'NOT ' if negated else ''}IN ({listed}))"
        case Between(operand=operand, low=low, high=high, negated=negated):
            keyword = "NOT BETWEEN" if negated else "BETWEEN"
            return f"({to_sql(operand)} {keyword} {to_sql(low)} AND {to_sql(high)})"
        case Like(operand=operand, pattern=pattern, negated=negated):
            keyword = "NOT LIKE" if negated else "LIKE"
            return f"({to_sql(operand)} {keyword} {to_sql(Literal(pattern))})"
        case Coalesce(args=args):
            return f"COALESCE({', '.join(to_sql(arg) for arg in args)})"
        case DaysSince(column=column):
            return f"days_since({to_sql(column)})"
    raise AssertionError(f"unknown node {node!r}")  # pragma: no cover
