"""Inputs in every Arrow shape and type give the same decisions; the output's shape is fixed.

DESIGN.md §2 (any Arrow object through the PyCapsule interface) and docs/semantics.md
("Identifiers and types", "Priority, rank, decisions"): pyarrow, polars, duckdb and pandas
inputs; string kinds and integer widths of ids; timestamp units and zones for `days_since`;
empty input; the decisions schema and order; `now`; and the GIL released while deciding.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import duckdb
import nba_fast
import nba_fast.reference
import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest

from tests.conftest import (
    NOW,
    assert_same_result,
    assert_same_table,
    bank_catalog,
    bank_propensities,
    batches_of,
    funnel_rows,
    make_customers,
    picks,
)

DECISION_COLUMNS = [
    ("action_id", pa.string()),
    ("issue", pa.string()),
    ("group", pa.string()),
    ("channel", pa.string()),
    ("treatment", pa.string()),
    ("propensity", pa.float64()),
    ("value", pa.float64()),
    ("context_weight", pa.float64()),
    ("lever", pa.float64()),
    ("priority", pa.float64()),
    ("rank", pa.int32()),
]


def push_action(action_id: str, **fields: Any) -> dict[str, Any]:
    return {"id": action_id, "issue": "Sales", "group": "Cards", "channel": "push", **fields}


def decide_bank(engine_cls: Any, customers: Any, propensities: pa.Table) -> Any:
    engine = engine_cls(bank_catalog(), max_per_customer=2)
    return engine.decide(customers, propensities=propensities, now=NOW)


# --- any Arrow object ------------------------------------------------------------------------


def as_duckdb_relation(table: pa.Table) -> Any:
    customers_table = table  # noqa: F841 - read by DuckDB's replacement scan below
    return duckdb.sql("SELECT * FROM customers_table")


INPUT_FORMS = {
    "pyarrow.Table": lambda t: t,
    "pyarrow.RecordBatch": lambda t: t.combine_chunks().to_batches()[0],
    "pyarrow.RecordBatchReader": lambda t: batches_of(t, [17, 5, 100]),
    "chunked pyarrow.Table": lambda t: pa.Table.from_batches(
        list(batches_of(t, [3, 40])), schema=t.schema
    ),
    "polars.DataFrame": pl.from_arrow,
    "duckdb relation": as_duckdb_relation,
    "pandas (Arrow dtypes)": lambda t: t.to_pandas(types_mapper=pd.ArrowDtype),
}


@pytest.mark.parametrize("form", sorted(INPUT_FORMS))
@pytest.mark.parametrize("string_ids", [False, True], ids=["int ids", "str ids"])
def test_any_arrow_input_gives_the_same_decisions(
    engine_cls: Any, form: str, string_ids: bool
) -> None:
    customers = make_customers(60, seed=3, string_ids=string_ids)
    propensities = bank_propensities(customers, seed=4)
    expected = decide_bank(engine_cls, customers, propensities)
    assert expected.decisions.num_rows > 10, "the example should decide something"
    converted = INPUT_FORMS[form](customers)
    assert_same_result(decide_bank(engine_cls, converted, propensities), expected)
    # The propensities may come in the same forms.
    again = INPUT_FORMS[form](propensities)
    assert_same_result(decide_bank(engine_cls, customers, again), expected)


def test_plain_pandas_input(engine_cls: Any) -> None:
    """A numpy-backed pandas frame (no NULLs, so no dtype turns into float/object)."""
    frame = pd.DataFrame(
        {"customer_id": [3, 1, 2], "age": [40, 17, 30], "state": ["CA", "NY", "TX"]}
    )
    engine = engine_cls([push_action("a", eligibility="age >= 18", default_propensity=0.5)])
    result = engine.decide(frame, now=NOW)
    assert picks(result) == [(2, "a", 1), (3, "a", 1)]


# --- types of ids and attribute columns ---------------------------------------------------------

STRING_KINDS = {
    "large_string": lambda a: a.cast(pa.large_string()),
    "string_view": lambda a: a.cast(pa.string_view()),
    "dictionary": lambda a: a.dictionary_encode(),
}


@pytest.mark.parametrize("kind", sorted(STRING_KINDS))
def test_string_kinds_of_ids_and_columns(engine_cls: Any, kind: str) -> None:
    customers = make_customers(40, seed=5, string_ids=True)
    propensities = bank_propensities(customers, seed=6)
    expected = decide_bank(engine_cls, customers, propensities)
    convert = STRING_KINDS[kind]
    for column in ("customer_id", "state", "email", "phone"):
        index = customers.schema.get_field_index(column)
        converted = customers.set_column(index, column, convert(customers.column(column)))
        result = decide_bank(engine_cls, converted, propensities)
        assert result.decisions.schema.field("customer_id").type == pa.string()
        assert_same_result(result, expected)
    ids = propensities.column("customer_id")
    converted_props = propensities.set_column(0, "customer_id", convert(ids))
    assert_same_result(decide_bank(engine_cls, customers, converted_props), expected)


@pytest.mark.parametrize(
    "data_type", [pa.int8(), pa.int16(), pa.int32(), pa.uint8(), pa.uint16(), pa.uint32()]
)
def test_integer_ids_normalised_to_int64(engine_cls: Any, data_type: pa.DataType) -> None:
    customers = make_customers(90, seed=7)
    propensities = bank_propensities(customers, seed=8)
    expected = decide_bank(engine_cls, customers, propensities)
    narrow = customers.set_column(0, "customer_id", customers.column(0).cast(data_type))
    result = decide_bank(engine_cls, narrow, propensities)
    assert result.decisions.schema.field("customer_id").type == pa.int64()
    assert_same_result(result, expected)
    narrow_props = propensities.set_column(0, "customer_id", propensities.column(0).cast(data_type))
    assert_same_result(decide_bank(engine_cls, customers, narrow_props), expected)


def test_uint32_ids_above_int32(engine_cls: Any) -> None:
    ids = pa.array([4_000_000_000, 5, 3_000_000_000], pa.uint32())
    engine = engine_cls([push_action("a", default_propensity=0.5)])
    result = engine.decide(pa.table({"customer_id": ids}), now=NOW)
    assert result.decisions.column("customer_id").to_pylist() == [5, 3_000_000_000, 4_000_000_000]


@pytest.mark.parametrize(
    "data_type", [pa.int8(), pa.int32(), pa.uint16(), pa.uint64(), pa.float32(), pa.float16()]
)
def test_numeric_rule_columns_of_any_width(engine_cls: Any, data_type: pa.DataType) -> None:
    values = [None, 0, 17, 18, 100]
    array = pa.array(values, pa.int64()).cast(data_type)
    customers = pa.table({"customer_id": [1, 2, 3, 4, 5], "age": array})
    engine = engine_cls([push_action("a", eligibility="age >= 18", default_propensity=0.5)])
    result = engine.decide(customers, now=NOW)
    assert result.decisions.column("customer_id").to_pylist() == [4, 5]


# --- timestamps ----------------------------------------------------------------------------------

TIMESTAMP_TYPES = [
    pa.timestamp("s"),
    pa.timestamp("ms"),
    pa.timestamp("us"),
    pa.timestamp("ns"),
    pa.timestamp("s", tz="UTC"),
    pa.timestamp("ms", tz="Asia/Kolkata"),
    pa.timestamp("us", tz="America/New_York"),
    pa.timestamp("ns", tz="+05:45"),
]


@pytest.mark.parametrize("data_type", TIMESTAMP_TYPES, ids=str)
def test_days_since_in_any_unit_and_zone(engine_cls: Any, data_type: pa.DataType) -> None:
    """A contact exactly 7 days ago is 7.0 days ago whatever the unit or zone."""
    instants = [
        NOW - timedelta(days=7),  # exactly 7.0
        NOW - timedelta(days=7, seconds=1),
        NOW - timedelta(days=6, hours=23),
        None,
        NOW + timedelta(days=1),  # in the future: -1.0
    ]
    micros = pa.array(instants, pa.timestamp("us", tz="UTC")).cast(pa.int64())
    scale = {"s": 1_000_000, "ms": 1_000, "us": 1, "ns": 1}[data_type.unit]
    raw = [
        None if m is None else (m * 1000 if data_type.unit == "ns" else m // scale)
        for m in micros.to_pylist()
    ]
    column = pa.array(raw, pa.int64()).cast(data_type)
    customers = pa.table({"customer_id": [1, 2, 3, 4, 5], "last_contact": column})
    catalog = [
        push_action(
            "exactly_7", eligibility="days_since(last_contact) = 7", default_propensity=0.5
        ),
        push_action("over_7", eligibility="days_since(last_contact) > 7", default_propensity=0.4),
        push_action("future", eligibility="days_since(last_contact) < 0", default_propensity=0.3),
    ]
    result = engine_cls(catalog, max_per_customer=3).decide(customers, now=NOW)
    assert sorted(picks(result)) == [
        (1, "exactly_7", 1),
        (2, "over_7", 1),
        (5, "future", 1),
    ]


def test_days_since_on_a_date_column(engine_cls: Any) -> None:
    days = pa.array([NOW.date() - timedelta(days=3), NOW.date()], pa.date32())
    customers = pa.table({"customer_id": [1, 2], "born": days})
    rule = "days_since(born) = 3.5"  # NOW is noon; dates are midnight UTC
    engine = engine_cls([push_action("a", eligibility=rule, default_propensity=0.5)])
    assert picks(engine.decide(customers, now=NOW)) == [(1, "a", 1)]


def test_nanoseconds_floor_to_microseconds(engine_cls: Any) -> None:
    """One nanosecond before the epoch is read as one microsecond before it (floored, not
    truncated toward zero), so at `now` = the epoch it lies in the past."""
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    column = pa.array([-1, 1, 999], pa.int64()).cast(pa.timestamp("ns", tz="UTC"))
    customers = pa.table({"customer_id": [1, 2, 3], "t": column})
    engine = engine_cls(
        [push_action("past", eligibility="days_since(t) > 0", default_propensity=0.5)]
    )
    assert picks(engine.decide(customers, now=epoch)) == [(1, "past", 1)]


# --- `now` ---------------------------------------------------------------------------------------


def test_naive_now_is_utc(engine_cls: Any) -> None:
    catalog = [
        push_action("ends_now", active_until=NOW, default_propensity=0.9),
        push_action("starts_now", active_from=NOW, default_propensity=0.1),
        push_action(
            "recent", eligibility="days_since(seen) < 1", default_propensity=0.5, value=0.5
        ),
    ]
    customers = pa.table(
        {"customer_id": [1], "seen": pa.array([NOW - timedelta(hours=23)], pa.timestamp("us"))}
    )
    engine = engine_cls(catalog, max_per_customer=3)
    aware = engine.decide(customers, now=NOW)
    assert [p[1] for p in picks(aware)] == ["recent", "starts_now"]
    elsewhere = NOW.astimezone(timezone(timedelta(hours=9, minutes=30)))
    for same_instant in (NOW.replace(tzinfo=None), elsewhere):
        assert_same_result(engine.decide(customers, now=same_instant), aware)
    earlier = engine.decide(customers, now=NOW - timedelta(microseconds=1))
    assert [p[1] for p in picks(earlier)] == ["ends_now", "recent"]


def test_now_defaults_to_the_current_time(engine_cls: Any) -> None:
    start = datetime.now(UTC)
    catalog = [
        push_action("past", active_until=start - timedelta(minutes=1), default_propensity=0.5),
        push_action("current", active_from=start - timedelta(minutes=1), default_propensity=0.4),
    ]
    result = engine_cls(catalog).decide(pa.table({"customer_id": [1]}))
    assert picks(result) == [(1, "current", 1)]


# --- empty input, output schema and order ---------------------------------------------------


@pytest.mark.parametrize("id_type", [pa.int64(), pa.int32(), pa.string(), pa.large_string()])
def test_empty_customers(engine_cls: Any, id_type: pa.DataType) -> None:
    customers = make_customers(0).cast(
        make_customers(0).schema.set(0, pa.field("customer_id", id_type))
    )
    engine = engine_cls(bank_catalog())
    result = engine.decide(customers, propensities=None, now=NOW)
    assert result.decisions.num_rows == 0
    expected_id = pa.int64() if pa.types.is_integer(id_type) else pa.string()
    assert decision_columns(result) == [("customer_id", expected_id), *DECISION_COLUMNS]
    ids = sorted(a["id"] for a in bank_catalog())
    keep = ["candidate", "eligible", "contactable", "not_suppressed", "top_choice", "selected"]
    assert funnel_rows(result) == [(stage, a, 0) for stage in keep for a in ids]
    empty_stream = pa.RecordBatchReader.from_batches(customers.schema, [])
    assert_same_result(engine.decide(empty_stream, now=NOW), result)


def decision_columns(result: Any) -> list[tuple[str, pa.DataType]]:
    return [(field.name, field.type) for field in result.decisions.schema]


@pytest.mark.parametrize("string_ids", [False, True], ids=["int ids", "str ids"])
def test_decisions_schema(engine_cls: Any, string_ids: bool) -> None:
    customers = make_customers(30, seed=9, string_ids=string_ids)
    result = decide_bank(engine_cls, customers, bank_propensities(customers))
    expected_id = pa.string() if string_ids else pa.int64()
    assert decision_columns(result) == [("customer_id", expected_id), *DECISION_COLUMNS]
    assert [(f.name, f.type) for f in result.funnel.schema] == [
        ("stage", pa.string()),
        ("action_id", pa.string()),
        ("count", pa.int64()),
    ]


def test_ordered_by_integer_id_then_rank(engine_cls: Any) -> None:
    ids = [5, -3, 2**40, 0, -(2**40), 7]
    catalog = [
        push_action(a, default_propensity=p) for a, p in (("x", 0.2), ("y", 0.9), ("z", 0.5))
    ]
    result = engine_cls(catalog, max_per_customer=2).decide(pa.table({"customer_id": ids}), now=NOW)
    assert picks(result) == [
        (customer, action, rank)
        for customer in sorted(ids)
        for action, rank in (("y", 1), ("z", 2))
    ]


def test_ordered_by_string_id_in_byte_order(engine_cls: Any) -> None:
    """UTF-8 byte order: 'B' < 'a' < 'z' < 'é' < U+FF5E < U+1F600 (UTF-16 would put the
    emoji's surrogates before U+FF5E)."""
    ids = ["😀", "z", "\uff5e", "a", "é", "B", "", "a\x00"]
    engine = engine_cls([push_action("x", default_propensity=0.5)])
    result = engine.decide(pa.table({"customer_id": ids}), now=NOW)
    expected = sorted(ids, key=lambda s: s.encode())
    assert result.decisions.column("customer_id").to_pylist() == expected
    assert expected[:4] == ["", "B", "a", "a\x00"]


def test_ties_rank_by_action_id_bytes(engine_cls: Any) -> None:
    ids = ["b", "😀", "a", "B", "\uff5e", "é", "z"]
    catalog = [push_action(i, default_propensity=0.5) for i in ids]
    result = engine_cls(catalog, max_per_customer=7).decide(pa.table({"customer_id": [1]}), now=NOW)
    assert [p[1] for p in picks(result)] == sorted(ids, key=lambda s: s.encode())


def test_negative_zero_priority_ties_with_zero(engine_cls: Any) -> None:
    """-0.0 and 0.0 are equal priorities, so the tie breaks by action_id; signs are kept."""
    catalog = [push_action("b"), push_action("a")]
    propensities = pa.table(
        {"customer_id": [1, 1], "action_id": ["b", "a"], "propensity": [0.0, -0.0]}
    )
    result = engine_cls(catalog, max_per_customer=2).decide(
        pa.table({"customer_id": [1]}), propensities=propensities, now=NOW
    )
    assert [p[1] for p in picks(result)] == ["a", "b"]
    signs = np.signbit(result.decisions.column("priority").to_numpy()).tolist()
    assert signs == [True, False]


def test_stream_and_table_agree(engine_cls: Any) -> None:
    customers = make_customers(200, seed=10)
    propensities = bank_propensities(customers, seed=11)
    expected = decide_bank(engine_cls, customers, propensities)
    for sizes in ([1], [7], [64, 1, 1000]):
        stream = batches_of(customers, sizes)
        assert_same_result(decide_bank(engine_cls, stream, propensities), expected)


def test_dictionary_with_unused_and_null_entries(engine_cls: Any) -> None:
    dictionary = pa.DictionaryArray.from_arrays(
        pa.array([2, None, 0, 2], pa.int8()), pa.array(["CA", "unused", "NY"])
    )
    customers = pa.table({"customer_id": [1, 2, 3, 4], "state": dictionary})
    engine = engine_cls(
        [push_action("a", eligibility="state = 'NY' OR state IS NULL", default_propensity=0.5)]
    )
    assert [p[0] for p in picks(engine.decide(customers, now=NOW))] == [1, 2, 4]


def test_null_typed_columns_read_as_null(engine_cls: Any) -> None:
    """A column of Arrow type null is all NULL (docs/semantics.md): no email address to
    write to, no opt-out, a NULL rule operand."""
    customers = pa.table(
        {
            "customer_id": [1, 2, 3],
            "email": pa.nulls(3),
            "phone": pa.array(["1", "2", None]),
            "opt_out_sms": pa.nulls(3),
            "nothing": pa.nulls(3),
        }
    )
    catalog = [
        {**push_action("mail", default_propensity=0.9), "channel": "email"},
        {**push_action("text", default_propensity=0.5), "channel": "sms"},
        push_action("never", eligibility="nothing = 1", default_propensity=1.0),
        push_action("always", eligibility="nothing IS NULL", default_propensity=0.1),
    ]
    result = engine_cls(catalog, max_per_customer=4).decide(customers, now=NOW)
    assert sorted(picks(result)) == [
        (1, "always", 2),
        (1, "text", 1),
        (2, "always", 2),
        (2, "text", 1),
        (3, "always", 1),
    ]
    drops = [row for row in funnel_rows(result) if row[0] in ("no_address", "ineligible")]
    assert drops == [
        ("ineligible", "never", 3),
        ("no_address", "mail", 3),
        ("no_address", "text", 1),
    ]


def test_rust_output_tables_match_reference_on_bank_data() -> None:
    customers = make_customers(500, seed=12, string_ids=True)
    propensities = bank_propensities(customers, seed=13)
    rust = decide_bank(nba_fast.Engine, customers, propensities)
    reference = decide_bank(nba_fast.reference.Engine, customers, propensities)
    assert_same_table(rust.decisions, reference.decisions, "decisions")
    assert_same_table(rust.funnel, reference.funnel, "funnel")


# --- the GIL ---------------------------------------------------------------------------


def test_decide_releases_the_gil() -> None:
    """While a big decide runs in another thread, this thread keeps running Python.

    The decide thread notes when it enters and leaves `decide`; this thread notes (about every
    millisecond) when it ran. With the GIL held by Rust, this thread could only run around the
    call's Python edges, never in the middle half of it.
    """
    n = 300_000
    rng = np.random.default_rng(0)
    customers = pa.table(
        {
            "customer_id": np.arange(n, dtype=np.int64)[::-1].copy(),
            "age": rng.integers(10, 90, n),
            "score": rng.random(n),
            "state": pa.array(rng.choice(["CA", "NY", "TX"], n)),
        }
    )
    rules = [
        "age >= 18 AND score > 0.25",
        "state IN ('CA', 'NY') AND age * 2 + 3 > 40",
        "state LIKE '%X' OR score / 2 < 0.3",
        "COALESCE(age, 0) BETWEEN 20 AND 70",
    ]
    catalog = [
        push_action(f"a{i}", eligibility=rule, default_propensity=0.1 * (i + 1))
        for i, rule in enumerate(rules)
    ]
    engine = nba_fast.Engine(catalog, max_per_customer=2, threads=1)
    window: dict[str, float] = {}

    def decide() -> None:
        window["start"] = time.perf_counter()
        engine.decide(customers, now=NOW)
        window["end"] = time.perf_counter()

    worker = threading.Thread(target=decide)
    ticks: list[float] = []
    worker.start()
    last = 0.0
    while worker.is_alive():
        now = time.perf_counter()
        if now - last >= 0.001:
            ticks.append(now)
            last = now
    worker.join()
    start, end = window["start"], window["end"]
    quarter = (end - start) / 4
    inside = [t for t in ticks if start + quarter < t < end - quarter]
    assert inside, f"no Python ran during the middle of a {end - start:.3f}s decide"


# --- memory ---------------------------------------------------------------------------


def _glibc_bytes_in_use() -> int | None:
    """Bytes glibc's malloc has handed out and not had back (arenas and mmapped chunks), or
    None where the C library is not glibc >= 2.33."""
    import ctypes
    import ctypes.util

    class Mallinfo2(ctypes.Structure):
        _fields_ = [
            (name, ctypes.c_size_t)
            for name in [
                *("arena", "ordblks", "smblks", "hblks", "hblkhd"),
                *("usmblks", "fsmblks", "uordblks", "fordblks", "keepcost"),
            ]
        ]

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallinfo2 = libc.mallinfo2
    except (OSError, AttributeError):
        return None
    mallinfo2.restype = Mallinfo2
    info = mallinfo2()
    return int(info.hblkhd + info.uordblks)


def test_a_kept_column_does_not_keep_the_whole_decisions_table() -> None:
    """The result's columns are freed one by one: narrowing the decisions to one column frees
    the rest (exported as one record batch, every column lived as long as any one of them).
    Measured with glibc's own count of the bytes it has handed out (the engine allocates with
    the system allocator), which is exact, so the margins can be wide."""
    if _glibc_bytes_in_use() is None:
        pytest.skip("needs glibc's mallinfo2 to count the engine's allocations")
    rows = 20_000
    treatment = "t" * 1_000  # 20 MB of treatment text in the decisions
    engine = nba_fast.Engine([push_action("a", treatment=treatment, default_propensity=0.5)])
    customers = pa.table({"customer_id": np.arange(rows, dtype=np.int64)})
    before = _glibc_bytes_in_use()
    result = engine.decide(customers, now=NOW)
    kept = result.decisions.column("priority")
    held = _glibc_bytes_in_use()
    assert before is not None and held is not None
    assert held - before >= rows * len(treatment)
    del result
    after = _glibc_bytes_in_use()
    assert after is not None
    assert after - before < rows * len(treatment) // 4, "the treatment column outlived its table"
    assert kept.to_pylist() == [0.5] * rows
