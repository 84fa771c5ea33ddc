"""Hypothesis strategies: random customers, catalogs, rules, propensities and candidates.

Rules come from a small typed grammar over the customers' columns (`RULE_COLUMNS`). Every
generated expression is rendered twice: in nba_fast's dialect (column names in random case or
quoted, `days_since`) and in DuckDB's (floats as DOUBLE casts, `days_since` spelled out), with
parentheses only where precedence needs them (plus a few spare ones), so the parser's precedence
is tested too. Integer sub-expressions stay small, so no int64 (or DuckDB int32 literal)
arithmetic overflows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import numpy as np
import pyarrow as pa
from hypothesis import strategies as st

from tests.conftest import NOW

# --- the rule grammar ------------------------------------------------------------------------

# Binding power, loosest first (docs/semantics.md "Eligibility rules").
OR, AND, NOT, IS, CMP, PRED, ADD, MUL, UNARY, ATOM = range(1, 11)

MICROS_PER_DAY = 86_400_000_000


@dataclass(frozen=True)
class Expr:
    """A rendered expression: nba_fast text, DuckDB text, binding power and SQL type."""

    nba: str
    duck: str
    power: int
    type: str  # int, float, string, bool, timestamp, null


def paren(e: Expr) -> Expr:
    return Expr(f"({e.nba})", f"({e.duck})", ATOM, e.type)


def _operand(e: Expr, needs_paren: bool) -> Expr:
    return paren(e) if needs_paren else e


def binary(op: str, left: Expr, right: Expr, power: int, result: str) -> Expr:
    """`left op right`; comparisons do not chain, the others associate to the left."""
    if power == CMP:
        left, right = _operand(left, left.power <= CMP), _operand(right, right.power <= CMP)
    else:
        left, right = _operand(left, left.power < power), _operand(right, right.power <= power)
    duck_op = "<>" if op == "!=" else op
    return Expr(
        f"{left.nba} {op} {right.nba}", f"{left.duck} {duck_op} {right.duck}", power, result
    )


def negate(e: Expr) -> Expr:
    """Unary minus (a space keeps `- -x` from reading as a `--` comment)."""
    e = _operand(e, e.power < UNARY)
    gap = " " if e.nba.startswith("-") or e.duck.startswith("-") else ""
    return Expr(f"-{gap}{e.nba}", f"-{gap}{e.duck}", UNARY, e.type)


def not_(e: Expr) -> Expr:
    e = _operand(e, e.power < NOT)
    return Expr(f"NOT {e.nba}", f"NOT {e.duck}", NOT, "bool")


def is_null(e: Expr, negated: bool) -> Expr:
    e = _operand(e, e.power <= IS)
    keyword = "IS NOT NULL" if negated else "IS NULL"
    return Expr(f"{e.nba} {keyword}", f"{e.duck} {keyword}", IS, "bool")


def in_list(e: Expr, items: list[Expr], negated: bool) -> Expr:
    e = _operand(e, e.power <= PRED)
    keyword = "NOT IN" if negated else "IN"
    nba = ", ".join(i.nba for i in items)
    duck = ", ".join(i.duck for i in items)
    return Expr(f"{e.nba} {keyword} ({nba})", f"{e.duck} {keyword} ({duck})", PRED, "bool")


def between(e: Expr, low: Expr, high: Expr, negated: bool) -> Expr:
    e, low, high = (_operand(x, x.power <= PRED) for x in (e, low, high))
    keyword = "NOT BETWEEN" if negated else "BETWEEN"
    return Expr(
        f"{e.nba} {keyword} {low.nba} AND {high.nba}",
        f"{e.duck} {keyword} {low.duck} AND {high.duck}",
        PRED,
        "bool",
    )


def like(e: Expr, pattern: str, negated: bool) -> Expr:
    e = _operand(e, e.power <= PRED)
    keyword = "NOT LIKE" if negated else "LIKE"
    quoted = "'" + pattern.replace("'", "''") + "'"
    return Expr(f"{e.nba} {keyword} {quoted}", f"{e.duck} {keyword} {quoted}", PRED, "bool")


def coalesce(args: list[Expr], result: str) -> Expr:
    return Expr(
        f"COALESCE({', '.join(a.nba for a in args)})",
        f"COALESCE({', '.join(a.duck for a in args)})",
        ATOM,
        result,
    )


def literal(value: Any) -> Expr:
    if value is None:
        return Expr("NULL", "NULL", ATOM, "null")
    if isinstance(value, bool):
        text = "TRUE" if value else "FALSE"
        return Expr(text, text, ATOM, "bool")
    if isinstance(value, int):
        return Expr(str(value), str(value), ATOM, "int")
    if isinstance(value, float):
        # DuckDB reads 1.5 as a DECIMAL; nba_fast as a float64: make DuckDB's a DOUBLE too.
        return Expr(repr(value), f"CAST('{value!r}' AS DOUBLE)", ATOM, "float")
    quoted = "'" + value.replace("'", "''") + "'"
    return Expr(quoted, quoted, ATOM, "string")


# The customers' columns rules may read, by SQL type. `nothing` has Arrow type null.
RULE_COLUMNS: dict[str, str] = {
    "age": "int",
    "kids": "int",
    "score": "float",
    "state": "string",
    "city": "string",
    "vip": "bool",
    "signup": "timestamp",
    "last_seen": "timestamp",
}
STRING_ALPHABET = ["a", "b", "C", "ñ", "'"]
PATTERN_ALPHABET = ["a", "b", "C", "ñ", "%", "_", "'"]


@st.composite
def column_ref(draw: st.DrawFn, name: str, *, canonical: bool) -> Expr:
    """A reference to `name`: exact, other case or quoted in nba_fast's dialect."""
    spelling = name
    if not canonical:
        spelling = draw(st.sampled_from([name, name.upper(), name.title(), f'"{name}"']))
    return Expr(spelling, f'"{name}"', ATOM, RULE_COLUMNS[name])


def days_since_expr(name: str, now: datetime, spelling: str) -> Expr:
    now_text = now.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f+00")
    duck = (
        f"(CAST(epoch_us(TIMESTAMPTZ '{now_text}') - epoch_us(\"{name}\") AS DOUBLE)"
        f" / CAST({MICROS_PER_DAY} AS DOUBLE))"
    )
    return Expr(f"{spelling}({name})", duck, ATOM, "float")


class Grammar:
    """Rule strategies over `RULE_COLUMNS`; `canonical` keeps names exact (for DuckDB) and
    leaves out the null-typed column.

    Strategies are built once per (kind, depth) and cached: building them afresh for every
    draw costs far more than drawing from them.
    """

    def __init__(self, now: datetime, canonical: bool = False) -> None:
        self.now = now
        self.canonical = canonical
        self.columns_of: dict[str, list[str]] = {}
        for name, sql_type in RULE_COLUMNS.items():
            self.columns_of.setdefault(sql_type, []).append(name)
        self._cache: dict[tuple[str, int], st.SearchStrategy[Any]] = {}

    def _cached(
        self, kind: str, depth: int, build: Callable[[int], st.SearchStrategy[Any]]
    ) -> st.SearchStrategy[Any]:
        key = (kind, depth)
        if key not in self._cache:
            self._cache[key] = build(depth)
        return self._cache[key]

    def column(self, sql_type: str) -> st.SearchStrategy[Expr]:
        return st.sampled_from(self.columns_of[sql_type]).flatmap(
            lambda name: column_ref(name, canonical=self.canonical)
        )

    def null(self) -> st.SearchStrategy[Expr]:
        if self.canonical:
            return st.just(literal(None))
        nothing = Expr("nothing", '"nothing"', ATOM, "null")
        return st.sampled_from([literal(None), nothing])

    def of_type(self, sql_type: str, depth: int) -> st.SearchStrategy[Expr]:
        expr = {
            "int": self.integer,
            "float": self.floating,
            "string": self.text,
            "bool": self.boolean,
            "timestamp": self.timestamp,
        }[sql_type](depth)
        return expr

    def maybe_null(self, strategy: st.SearchStrategy[Expr]) -> st.SearchStrategy[Expr]:
        return st.one_of(strategy, strategy, strategy, strategy, self.null())

    def integer(self, depth: int) -> st.SearchStrategy[Any]:
        return self._cached("integer", depth, self._integer)

    def _integer(self, depth: int) -> st.SearchStrategy[Expr]:
        depth = min(depth, 2)  # at most 4 factors of <= 120: no overflow anywhere
        leaf = st.one_of(self.column("int"), st.integers(0, 120).map(literal))
        if depth <= 0:
            return leaf
        sub = self.integer(depth - 1)
        return st.one_of(
            leaf,
            st.tuples(st.sampled_from(["+", "-", "*"]), sub, sub).map(
                lambda t: binary(t[0], t[1], t[2], MUL if t[0] == "*" else ADD, "int")
            ),
            sub.map(negate),
            st.lists(self.maybe_null(sub), min_size=1, max_size=3).map(
                lambda args: coalesce(args, "int")
            ),
            sub.map(paren),
        )

    def floating(self, depth: int) -> st.SearchStrategy[Any]:
        return self._cached("floating", depth, self._floating)

    def _floating(self, depth: int) -> st.SearchStrategy[Expr]:
        spellings = ["days_since"] if self.canonical else ["days_since", "DAYS_SINCE"]
        floats = st.sampled_from([0.0, 0.5, 1.5, 2.25, 1e-3, 1e300, 30.0, 0.1])
        leaf = st.one_of(
            self.column("float"),
            floats.map(literal),
            st.tuples(
                st.sampled_from(self.columns_of["timestamp"]), st.sampled_from(spellings)
            ).map(lambda t: days_since_expr(t[0], self.now, t[1])),
        )
        if depth <= 0:
            return leaf
        sub = self.floating(depth - 1)
        number = st.one_of(sub, self.integer(depth - 1))
        return st.one_of(
            leaf,
            st.tuples(st.sampled_from(["+", "-", "*", "/"]), sub, number).map(
                lambda t: binary(t[0], t[1], t[2], MUL if t[0] in "*/" else ADD, "float")
            ),
            st.tuples(st.sampled_from(["+", "*", "/"]), number, sub).map(
                lambda t: binary(t[0], t[1], t[2], MUL if t[0] in "*/" else ADD, "float")
            ),
            st.tuples(self.integer(depth - 1), self.integer(depth - 1)).map(
                lambda t: binary("/", t[0], t[1], MUL, "float")
            ),
            sub.map(negate),
            st.tuples(self.maybe_null(sub), st.lists(self.maybe_null(number), max_size=2)).map(
                lambda t: coalesce([t[0], *t[1]], "float")
            ),
        )

    def text(self, depth: int) -> st.SearchStrategy[Any]:
        return self._cached("text", depth, self._text)

    def _text(self, depth: int) -> st.SearchStrategy[Expr]:
        words = st.lists(st.sampled_from(STRING_ALPHABET), max_size=3).map("".join)
        leaf = st.one_of(self.column("string"), words.map(literal))
        if depth <= 0:
            return leaf
        return st.one_of(
            leaf,
            st.lists(self.maybe_null(self.text(depth - 1)), min_size=1, max_size=3).map(
                lambda args: coalesce(args, "string")
            ),
        )

    def timestamp(self, depth: int) -> st.SearchStrategy[Any]:
        return self._cached("timestamp", depth, self._timestamp)

    def _timestamp(self, depth: int) -> st.SearchStrategy[Expr]:
        leaf = self.column("timestamp")
        if depth <= 0:
            return leaf
        return st.one_of(
            leaf,
            st.lists(self.maybe_null(leaf), min_size=1, max_size=3).map(
                lambda args: coalesce(args, "timestamp")
            ),
        )

    def comparable(self, depth: int) -> st.SearchStrategy[Any]:
        return self._cached("comparable", depth, self._comparable)

    def _comparable(self, depth: int) -> st.SearchStrategy[tuple[Expr, Expr]]:
        """Two operands a comparison accepts: numbers with numbers, else one type."""
        numbers = st.one_of(self.integer(depth), self.floating(depth))
        pairs = [
            st.tuples(numbers, self.maybe_null(numbers)),
            st.tuples(self.text(depth), self.maybe_null(self.text(depth))),
            st.tuples(self.timestamp(depth), self.maybe_null(self.timestamp(depth))),
        ]
        if depth > 0:
            pairs.append(st.tuples(self.boolean(depth - 1), self.boolean(depth - 1)))
        return st.one_of(pairs)

    def boolean(self, depth: int) -> st.SearchStrategy[Any]:
        return self._cached("boolean", depth, self._boolean)

    def _boolean(self, depth: int) -> st.SearchStrategy[Expr]:
        leaf = st.one_of(self.column("bool"), st.sampled_from([True, False]).map(literal))
        if depth <= 0:
            return leaf
        sub = self.boolean(depth - 1)
        operands = self.comparable(depth - 1)
        any_type = st.sampled_from(["int", "float", "string", "bool", "timestamp"]).flatmap(
            lambda t: self.of_type(t, depth - 1)
        )
        numbers = st.one_of(self.integer(depth - 1), self.floating(depth - 1))
        patterns = st.lists(st.sampled_from(PATTERN_ALPHABET), max_size=4).map("".join)
        comparison = st.tuples(
            st.sampled_from(["=", "<>", "!=", "<", "<=", ">", ">="]), operands
        ).map(lambda t: binary(t[0], t[1][0], t[1][1], CMP, "bool"))
        return st.one_of(
            leaf,
            comparison,
            comparison,
            st.tuples(st.sampled_from(["AND", "OR"]), sub, sub).map(
                lambda t: binary(t[0], t[1], t[2], AND if t[0] == "AND" else OR, "bool")
            ),
            st.tuples(st.sampled_from(["AND", "OR"]), sub, self.maybe_null(sub)).map(
                lambda t: binary(t[0], t[1], t[2], AND if t[0] == "AND" else OR, "bool")
            ),
            sub.map(not_),
            st.tuples(self.maybe_null(any_type), st.booleans()).map(lambda t: is_null(*t)),
            st.tuples(
                numbers, st.lists(self.maybe_null(numbers), min_size=1, max_size=3), st.booleans()
            ).map(lambda t: in_list(*t)),
            st.tuples(
                self.text(depth - 1),
                st.lists(self.maybe_null(self.text(0)), min_size=1, max_size=3),
                st.booleans(),
            ).map(lambda t: in_list(*t)),
            st.tuples(numbers, numbers, self.maybe_null(numbers), st.booleans()).map(
                lambda t: between(*t)
            ),
            st.tuples(self.text(depth - 1), self.text(0), self.text(0), st.booleans()).map(
                lambda t: between(*t)
            ),
            st.tuples(self.maybe_null(self.text(depth - 1)), patterns, st.booleans()).map(
                lambda t: like(*t)
            ),
            st.lists(self.maybe_null(sub), min_size=1, max_size=3).map(
                lambda args: coalesce(args, "bool")
            ),
            sub.map(paren),
        )

    def rule(self, depth: int = 3) -> st.SearchStrategy[Expr]:
        """A boolean rule (now and then just NULL, which is allowed and never eligible)."""
        return st.one_of(self.boolean(depth), self.boolean(depth), self.null())


_GRAMMARS: dict[tuple[datetime, bool], Grammar] = {}


def grammar_for(now: datetime, canonical: bool) -> Grammar:
    """The (cached) grammar of rules seen at `now`."""
    key = (now, canonical)
    if key not in _GRAMMARS:
        _GRAMMARS[key] = Grammar(now, canonical)
    return _GRAMMARS[key]


# --- customers ---------------------------------------------------------------------------

INT_TYPES = [pa.int8(), pa.int16(), pa.int32(), pa.int64(), pa.uint8(), pa.uint16(), pa.uint32()]
ID_INT_TYPES = [pa.int64(), pa.int32(), pa.int16(), pa.uint32(), pa.uint8()]
STRING_TYPES = [
    pa.string(),
    pa.large_string(),
    pa.string_view(),
    pa.dictionary(pa.int32(), pa.string()),
]
TIMESTAMP_TYPES = [
    pa.timestamp("us", tz="UTC"),
    pa.timestamp("us"),
    pa.timestamp("ms", tz="UTC"),
    pa.timestamp("s"),
    pa.timestamp("ns", tz="UTC"),
    pa.timestamp("ns", tz="America/New_York"),
    pa.date32(),
]


def text_array(values: list[Any], data_type: pa.DataType) -> pa.Array:
    if pa.types.is_dictionary(data_type):
        return pa.array(values, pa.string()).dictionary_encode()
    return pa.array(values, data_type)


def timestamp_array(micros: list[int | None], data_type: pa.DataType) -> pa.Array:
    """Microsecond instants in `data_type`: whole seconds for `s`, whole days for dates;
    nanosecond columns get a sub-microsecond part that readers must floor away."""
    if pa.types.is_date32(data_type):
        return pa.array(
            [None if m is None else m // MICROS_PER_DAY for m in micros], pa.int32()
        ).cast(data_type)
    unit = data_type.unit
    if unit == "ns":
        raw = [None if m is None else m * 1000 + (m * 7919) % 1000 for m in micros]
    else:
        divisor = {"s": 1_000_000, "ms": 1000, "us": 1}[unit]
        raw = [None if m is None else m // divisor for m in micros]
    return pa.array(raw, pa.int64()).cast(data_type)


@dataclass
class Customers:
    """A random customers table and what tests need to know about it."""

    table: pa.Table
    ids: list[Any]
    kind: str  # "int" or "str"
    emails: list[str | None]
    phones: list[str | None]


@st.composite
def customers(
    draw: st.DrawFn,
    *,
    canonical: bool = False,
    max_rows: int = 12,
    contact_columns: bool = True,
) -> Customers:
    """Customers with unique ids (int or string, any order), every `RULE_COLUMNS` column with
    NULLs, `email` / `phone` and usually `opt_out_email` / `opt_out_sms`.

    `canonical` keeps to the types DuckDB reads as such (int64, float64, string, bool,
    timestamp[us, UTC]); otherwise the Arrow types vary (widths, string kinds, time units).
    """
    n = draw(st.integers(0, max_rows))
    kind = draw(st.sampled_from(["int", "str"]))
    if kind == "int":
        top = 200 + 5 * max_rows
        pool = st.integers(0, top) if canonical else st.integers(-50, top)
        ids: list[Any] = draw(st.lists(pool, min_size=n, max_size=n, unique=True))
        id_type = pa.int64() if canonical else draw(st.sampled_from(ID_INT_TYPES))
        if pa.types.is_unsigned_integer(id_type) or id_type == pa.int8():
            ids = [abs(i) % 100 for i in ids]
            ids = list(dict.fromkeys(ids))  # keep unique after folding
            n = len(ids)
        id_array = pa.array(ids, id_type)
    else:
        words = st.text(alphabet="abAB9é😀_", min_size=0, max_size=4)
        ids = draw(st.lists(words, min_size=n, max_size=n, unique=True))
        id_type = pa.string() if canonical else draw(st.sampled_from(STRING_TYPES))
        id_array = text_array(ids, id_type)

    def values(strategy: st.SearchStrategy[Any], null_rate: int = 5) -> list[Any]:
        return draw(st.lists(st.one_of(st.none(), *[strategy] * null_rate), min_size=n, max_size=n))

    columns: dict[str, pa.Array] = {"customer_id": id_array}
    for name in ("age", "kids"):
        data_type = pa.int64() if canonical else draw(st.sampled_from(INT_TYPES))
        columns[name] = pa.array(values(st.integers(0, 100)), data_type)
    score_type = pa.float64() if canonical else draw(st.sampled_from([pa.float64(), pa.float32()]))
    special = [0.0, -0.0, 0.5, 1.5, 30.0, float("nan"), float("inf"), -float("inf"), 1e300]
    score_pool = st.one_of(st.sampled_from(special), st.floats(-100, 100, width=32))
    columns["score"] = pa.array(values(score_pool), score_type)
    for name in ("state", "city"):
        data_type = pa.string() if canonical else draw(st.sampled_from(STRING_TYPES))
        words = st.lists(st.sampled_from(STRING_ALPHABET), max_size=3).map("".join)
        columns[name] = text_array(values(words), data_type)
    columns["vip"] = pa.array(values(st.booleans()), pa.bool_())
    base = int(NOW.timestamp()) * 1_000_000
    offsets = st.one_of(
        st.integers(-40 * MICROS_PER_DAY, 40 * MICROS_PER_DAY),
        st.sampled_from([0, -1, 1, -MICROS_PER_DAY, -base - 1500]),  # -base-1500: before 1970
    )
    for name in ("signup", "last_seen"):
        data_type = (
            pa.timestamp("us", tz="UTC") if canonical else draw(st.sampled_from(TIMESTAMP_TYPES))
        )
        micros = [None if o is None else base + o for o in values(offsets)]
        columns[name] = timestamp_array(micros, data_type)
    if not canonical:
        columns["nothing"] = pa.nulls(n)

    emails: list[str | None] = [None] * n
    phones: list[str | None] = [None] * n
    if contact_columns:
        # Shared addresses are allowed: only customer_id is unique.
        emails = values(st.sampled_from(["a@x", "b@x", "c@x", "d@x", "e@x"]), 3)
        phones = values(st.sampled_from(["+1", "+2", "+3", "a@x"]), 2)
        email_type = pa.string() if canonical else draw(st.sampled_from(STRING_TYPES))
        columns["email"] = text_array(emails, email_type)
        columns["phone"] = text_array(phones, pa.string())
        for channel in ("email", "sms"):
            if draw(st.integers(0, 3)) > 0:
                columns[f"opt_out_{channel}"] = pa.array(values(st.booleans(), 2), pa.bool_())
    order = list(columns)
    if not canonical:
        order = [order[0], *draw(st.permutations(order[1:]))]
    table = pa.table({name: columns[name] for name in order})
    return Customers(table, ids, kind, emails, phones)


# --- catalogs ----------------------------------------------------------------------------

ACTION_IDS = ["a", "b", "B", "a1", "é", "Z_9", "offer-1", "😀", "ab"]
FACTORS = [0.0, 0.5, 1.0, 2.0, 1.5, 3]


@st.composite
def windows(draw: st.DrawFn, now: datetime) -> dict[str, datetime]:
    """An active window around `now` (either bound may be missing, or on `now` exactly)."""
    tick = timedelta(microseconds=1)
    edges = [now - timedelta(days=1), now - tick, now, now + tick, now + timedelta(days=1)]
    start = draw(st.one_of(st.none(), st.sampled_from(edges)))
    end = draw(st.one_of(st.none(), st.sampled_from(edges)))
    window: dict[str, datetime] = {}
    if start is not None:
        window["active_from"] = start
    if end is not None and (start is None or end > start):
        window["active_until"] = end
    return window


@dataclass
class Catalog:
    """Catalog entries (dicts) and each action's rule in DuckDB's dialect (None = TRUE)."""

    actions: list[dict[str, Any]]
    duck_rules: dict[str, str | None]

    @property
    def ids(self) -> list[str]:
        return [a["id"] for a in self.actions]


@st.composite
def catalogs(
    draw: st.DrawFn,
    grammar: Grammar | None,
    *,
    channels: tuple[str, ...] = ("email", "sms", "push"),
    max_actions: int = 8,
) -> Catalog:
    """1-`max_actions` actions: channels, factors with ties and zeros, default propensities,
    active windows around the grammar's `now`, and rules (when `grammar` is given)."""
    ids = draw(st.lists(st.sampled_from(ACTION_IDS), min_size=1, max_size=max_actions, unique=True))
    actions: list[dict[str, Any]] = []
    duck_rules: dict[str, str | None] = {}
    for action_id in ids:
        action: dict[str, Any] = {
            "id": action_id,
            "issue": draw(st.sampled_from(["Sales", "Retention"])),
            "group": draw(st.sampled_from(["Cards", "Loans"])),
            "channel": draw(st.sampled_from(channels)),
        }
        if draw(st.booleans()):
            action["treatment"] = f"T_{action_id}"
        for name in ("value", "context_weight", "lever"):
            if draw(st.booleans()):
                action[name] = draw(st.one_of(st.sampled_from(FACTORS), st.floats(0, 10)))
        if draw(st.integers(0, 2)) == 0:
            action["default_propensity"] = draw(st.sampled_from([0.0, 0.25, 1.0, 0.3]))
        if grammar is not None:
            action.update(draw(windows(grammar.now)))
            choice = draw(st.integers(0, 9))
            duck_rules[action_id] = None
            if choice == 0:
                action["eligibility"] = draw(st.sampled_from(["", "   ", "TRUE"]))
            elif choice > 3:
                rule = draw(grammar.rule())
                action["eligibility"] = rule.nba
                duck_rules[action_id] = rule.duck
        actions.append(action)
    return Catalog(actions, duck_rules)


# --- propensities and do-not-contact --------------------------------------------------------

PROPENSITIES = [0.0, -0.0, 0.25, 0.5, 1.0, 0.1, 0.3]


def probability() -> st.SearchStrategy[float]:
    return st.one_of(st.sampled_from(PROPENSITIES), st.floats(0.0, 1.0))


@st.composite
def long_propensities(draw: st.DrawFn, people: Customers, catalog: Catalog) -> pa.Table:
    """Some (customer, action) pairs, with NULL propensities (which never clash with a pair),
    rows for customers the table lacks, in random order."""
    action_ids = catalog.ids
    strangers: list[Any] = [10_000, 10_001] if people.kind == "int" else ["zz", "stranger"]
    rows: list[tuple[Any, str, float | None]] = []
    taken: set[tuple[Any, str]] = set()
    for customer_id in [*people.ids, *strangers]:
        for action_id in action_ids:
            roll = draw(st.integers(0, 5))
            if roll == 0:
                continue
            if roll == 1:
                rows.append((customer_id, action_id, None))
            else:
                rows.append((customer_id, action_id, draw(probability())))
                taken.add((customer_id, action_id))
    rows = draw(st.permutations(rows))
    if people.kind == "int":
        id_type = draw(st.sampled_from([pa.int64(), pa.int32()]))
        ids = pa.array([r[0] for r in rows], id_type)
    else:
        ids = text_array([r[0] for r in rows], draw(st.sampled_from(STRING_TYPES)))
    value_type = draw(st.sampled_from([pa.float64(), pa.float32()]))
    values = [r[2] for r in rows]
    if value_type == pa.float32():
        values = [None if v is None else float(np.float32(v)) for v in values]
    return pa.table(
        {
            "customer_id": ids,
            "action_id": pa.array([r[1] for r in rows], pa.string()),
            "propensity": pa.array(values, value_type),
        }
    )


@st.composite
def propensity_matrix(draw: st.DrawFn, people: Customers, catalog: Catalog) -> np.ndarray[Any, Any]:
    shape = (len(people.ids), len(catalog.actions))
    values = draw(
        st.lists(probability(), min_size=shape[0] * shape[1], max_size=shape[0] * shape[1])
    )
    dtype = draw(st.sampled_from([np.float64, np.float32]))
    return np.array(values, dtype=np.float64).reshape(shape).astype(dtype)


@st.composite
def propensities(
    draw: st.DrawFn, people: Customers, catalog: Catalog
) -> pa.Table | np.ndarray[Any, Any] | None:
    form = draw(st.sampled_from(["long", "long", "matrix", "none"]))
    if form == "long":
        return draw(long_propensities(people, catalog))
    if form == "matrix":
        return draw(propensity_matrix(people, catalog))
    return None


@st.composite
def propensity_columns(
    draw: st.DrawFn, people: Customers, catalog: Catalog
) -> tuple[Customers, dict[str, str]]:
    """The customers with a propensity column for some actions (float64, float32 or int8 of
    0 and 1, with NULLs), and the mapping {action_id: column} that names them."""
    table = people.table
    mapping: dict[str, str] = {}
    for number, action_id in enumerate(catalog.ids):
        if draw(st.integers(0, 3)) == 0:
            continue
        data_type = draw(st.sampled_from([pa.float64(), pa.float32(), pa.int8()]))
        value = st.sampled_from([0, 1]) if data_type == pa.int8() else probability()
        values = [draw(st.one_of(st.none(), value)) for _ in people.ids]
        if data_type == pa.float32():
            values = [None if v is None else float(np.float32(v)) for v in values]
        name = f"p {number}"
        table = table.append_column(name, pa.array(values, data_type))
        mapping[action_id] = name
    return replace(people, table=table), mapping


@st.composite
def do_not_contact(draw: st.DrawFn, people: Customers) -> pa.Table | None:
    """A do-not-contact list by id, by address or both, on a channel or `*` (or `fax`, which
    no action uses)."""
    if draw(st.integers(0, 3)) == 0:
        return None
    shape = draw(st.sampled_from(["id", "address", "both"]))
    foreign_id: Any = 9_999 if people.kind == "int" else "nobody"
    known_ids = [*people.ids, foreign_id]
    addresses = [a for a in people.emails + people.phones if a is not None] + ["z@x"]
    rows: list[tuple[str, Any, str | None]] = []
    for _ in range(draw(st.integers(0, 5))):
        channel = draw(st.sampled_from(["email", "sms", "push", "*", "fax"]))
        customer_id = draw(st.sampled_from(known_ids)) if shape != "address" else None
        address = draw(st.sampled_from(addresses)) if shape != "id" else None
        if shape == "both" and draw(st.booleans()):  # one of the two left NULL
            if draw(st.booleans()):
                customer_id = None
            else:
                address = None
        rows.append((channel, customer_id, address))
    columns: dict[str, pa.Array] = {"channel": pa.array([r[0] for r in rows], pa.string())}
    if shape != "address":
        id_type = pa.int64() if people.kind == "int" else pa.string()
        columns["customer_id"] = pa.array([r[1] for r in rows], id_type)
    if shape != "id":
        columns["address"] = pa.array([r[2] for r in rows], pa.string())
    return pa.table(columns)


# --- arbitrate candidates --------------------------------------------------------------------


@st.composite
def candidates(draw: st.DrawFn) -> tuple[pa.Table, list[dict[str, Any]] | None]:
    """A candidates table (Pega's shape) and a catalog (or None) for `arbitrate`.

    Override columns are present or absent and hold NULLs; propensities and factors come from
    small pools so that priorities tie.
    """
    kind = draw(st.sampled_from(["int", "str"]))
    people = (
        draw(st.lists(st.integers(-5, 30), min_size=0, max_size=8, unique=True))
        if kind == "int"
        else draw(st.lists(st.text("abB9é", max_size=3), min_size=0, max_size=8, unique=True))
    )
    pairs = [
        (customer_id, action_id)
        for customer_id in people
        for action_id in draw(st.lists(st.sampled_from(ACTION_IDS), max_size=6, unique=True))
    ]
    pairs = draw(st.permutations(pairs))
    n = len(pairs)

    def column(strategy: st.SearchStrategy[Any], null_weight: int = 1) -> list[Any]:
        return draw(
            st.lists(
                st.one_of(*[st.none()] * null_weight, strategy, strategy), min_size=n, max_size=n
            )
        )

    table: dict[str, pa.Array] = {
        "customer_id": pa.array(
            [p[0] for p in pairs], pa.int64() if kind == "int" else pa.string()
        ),
        "action_id": pa.array([p[1] for p in pairs], pa.string()),
        "propensity": pa.array(column(st.sampled_from(PROPENSITIES)), pa.float64()),
    }
    for name in ("value", "context_weight", "lever"):
        if draw(st.booleans()):
            data_type = draw(st.sampled_from([pa.float64(), pa.float32(), pa.int64()]))
            pool = (
                st.sampled_from([0, 1, 2, 3])
                if data_type == pa.int64()
                else st.sampled_from(FACTORS)
            )
            table[name] = pa.array(column(pool), data_type)
    for name in ("issue", "group", "channel", "treatment"):
        if draw(st.booleans()):
            table[name] = pa.array(column(st.sampled_from(["x", "y", "email"])), pa.string())
    if draw(st.booleans()):
        table["ignored_extra"] = pa.array(list(range(n)), pa.int64())
    catalog = draw(catalogs(None)).actions if draw(st.booleans()) else None
    return pa.table(table), catalog


# --- whole decide scenarios --------------------------------------------------------------------


@dataclass
class Scenario:
    """Everything one `decide` call takes, plus what the checks need to know."""

    people: Customers
    catalog: Catalog
    propensities: pa.Table | np.ndarray[Any, Any] | dict[str, str] | None
    do_not_contact: pa.Table | None
    max_per_customer: int
    now: datetime  # aware UTC: what the rules see
    now_arg: datetime  # the same instant as passed to decide (naive, UTC or another zone)

    def engine(self, engine_cls: Any, **options: Any) -> Any:
        return engine_cls(self.catalog.actions, max_per_customer=self.max_per_customer, **options)

    def decide(self, engine: Any, customers: Any = None) -> Any:
        return engine.decide(
            self.people.table if customers is None else customers,
            propensities=self.propensities,
            do_not_contact=self.do_not_contact,
            now=self.now_arg,
        )


@st.composite
def scenarios(draw: st.DrawFn, *, canonical: bool = False, max_rows: int = 12) -> Scenario:
    now = draw(st.sampled_from([NOW, NOW + timedelta(microseconds=1), NOW - timedelta(days=1)]))
    grammar = grammar_for(now, canonical)
    people = draw(customers(canonical=canonical, max_rows=max_rows))
    catalog = draw(catalogs(grammar))
    now_arg = draw(
        st.sampled_from(
            [now, now.replace(tzinfo=None), now.astimezone(timezone(timedelta(hours=-7)))]
        )
    )
    given: pa.Table | np.ndarray[Any, Any] | dict[str, str] | None
    if draw(st.integers(0, 4)) == 0:
        people, given = draw(propensity_columns(people, catalog))
    else:
        given = draw(propensities(people, catalog))
    return Scenario(
        people=people,
        catalog=catalog,
        propensities=given,
        do_not_contact=draw(do_not_contact(people)),
        max_per_customer=draw(st.integers(1, 3)),
        now=now,
        now_arg=now_arg,
    )


# --- rules with exactly one fault --------------------------------------------------------------

SYNTAX_ERRORS = [
    "age = = 1",
    "age = 1 = 2",
    "age < kids < 3",
    "foo(age) > 1",
    "age ILIKE 'a'",
    "age % 2 = 0",
    "state || 'x' = 'y'",
    "9223372036854775808 > age",
    "days_since(signup + 1) > 1",
    "days_since(signup, last_seen) > 1",
    "COALESCE() IS NULL",
    "age IN ()",
    "(age > 1",
    "age > 1)",
    "state LIKE state",
    "state LIKE 'a' ESCAPE '!'",
    "state = 'unterminated",
    "age BETWEEN 1",
    "NOT",
    "age > 1 AND",
    '"age > 1',
    "age > 1 age",
    "age IN (1, 2",
    "age >",
    "a.b = 1",
]
BIND_ERRORS = [
    "age = 'x'",
    "state + 1 > 0",
    "age + 1",
    "state",
    "vip LIKE 'a'",
    "NOT age",
    "days_since(age) > 1",
    "days_since(state) > 1",
    "state BETWEEN 1 AND 2",
    "COALESCE(age, 'x') IS NULL",
    "COALESCE(vip, 1)",
    "unknown_col > 1",
    '"AGE" > 1',
    "signup > 1",
    "vip = 1",
    "-state = 'a'",
    "-vip",
    "age AND vip",
    "vip OR 1",
    "signup + 1 > signup",
    "age IN (1, 'a')",
    "state IN ('a', 1)",
    "days_since(nope) > 1",
    "score",
    "days_since(signup)",
]
OVERFLOWS = [  # every customer overflows: a DataError whenever there is a customer
    "9223372036854775807 + 1 > 0",
    "-9223372036854775807 - 2 < 0",
    "-(-9223372036854775807 - 1) > 0",
    "4611686018427387904 * 2 > 0",
    "COALESCE(age, 0) + 9223372036854775807 * 2 > 0",
    "COALESCE(1, 9223372036854775807 + 1) > 0",  # COALESCE evaluates every argument
    "COALESCE(kids, age) IS NULL OR 1 IN (1, 9223372036854775807 * 3)",
]
VALID_EDGES = [  # look suspicious, but are fine
    "-9223372036854775808 < COALESCE(age, 0)",
    "age = 1 IS NULL",
    "(age = 1) = (kids = 2)",
    "NOT age = 1",
    "state LIKE 'a' = TRUE",
    "age BETWEEN 1 AND 2 AND vip",
    "NULL",
    "nothing = 1 OR nothing IS NULL",
    "score / 0 > 1",
    "0 / 0 = 0 / 0",
    "-- comment\n age > 1 /* another */",
    '"age" > 1',
    "AGE > 1 and Vip",
    'days_since("signup") > 1e400',
    "age > 1 /* a /* nested */ comment */",  # DuckDB (the arbiter) nests block comments
    "+age = 1",  # DuckDB accepts unary plus
]


RULE_BUGS: dict[str, tuple[str, str]] = {
    # rule: (the engine that gets it wrong, what goes wrong). The property test leaves these
    # out (so that it keeps guarding the rest); test_errors.py marks them xfail(strict=True).
    # Empty: every bug reported here so far is fixed.
}


@st.composite
def faulty_rule(draw: st.DrawFn) -> tuple[str, str]:
    """A rule with one fault and where it must surface: ``build`` (RuleError from Engine()),
    ``bind`` (RuleError from decide), ``overflow`` (DataError from decide, with customers) or
    ``valid``."""
    where = draw(st.sampled_from(["build", "bind", "overflow", "valid"]))
    pool = {
        "build": SYNTAX_ERRORS,
        "bind": BIND_ERRORS,
        "overflow": OVERFLOWS,
        "valid": VALID_EDGES,
    }[where]
    return draw(st.sampled_from([rule for rule in pool if rule not in RULE_BUGS])), where
