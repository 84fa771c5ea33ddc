"""Contact policies (issue 3): both engines on the seed example, the window edges, and random
histories and policies, where the Rust engine must say exactly what the reference says."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import nba_fast
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import ENGINES, NOW, assert_same_result, guarded

US = timedelta(microseconds=1)
CATALOG = [
    {"id": "std_card", "issue": "Sales", "group": "Cards", "channel": "email",
     "default_propensity": 0.5},
    {"id": "gold_card", "issue": "Sales", "group": "Cards", "channel": "email",
     "default_propensity": 0.4},
    {"id": "loan", "issue": "Sales", "group": "Loans", "channel": "email",
     "default_propensity": 0.3},
    {"id": "bill_sms", "issue": "Service", "group": "Billing", "channel": "sms",
     "default_propensity": 0.2},
]  # fmt: skip
COOLDOWN = {
    "name": "cooldown", "kind": "suppress", "level": "group", "channel": "email",
    "outcomes": ["pending", "sent"], "threshold": 1, "window_days": 30, "suppress_days": 60,
}  # fmt: skip
HISTORY_SCHEMA = pa.schema(
    [
        ("customer_id", pa.int64()),
        ("action_id", pa.string()),
        ("issue", pa.string()),
        ("group", pa.string()),
        ("channel", pa.string()),
        ("outcome", pa.string()),
        ("timestamp", pa.timestamp("us", tz="UTC")),
    ]
)


def customers(n: int, **columns: list[Any]) -> pa.Table:
    return pa.table(
        {"customer_id": list(range(1, n + 1)), "email": ["x@y.z"] * n, "phone": ["+1"] * n}
        | columns
    )


def history(rows: list[tuple[int, str, str, str, str, str, Any]]) -> pa.Table:
    names = HISTORY_SCHEMA.names
    return pa.Table.from_pylist([dict(zip(names, row, strict=True)) for row in rows],
                                schema=HISTORY_SCHEMA)  # fmt: skip


def selected(result: Any) -> dict[int, str]:
    return {row["customer_id"]: row["action_id"] for row in result.decisions.to_pylist()}


@pytest.fixture(params=sorted(ENGINES))
def engine(request: pytest.FixtureRequest) -> Any:
    return ENGINES[request.param]


def test_seed_example_sixty_days_after_one_within_thirty(engine: Any) -> None:
    """Emailed 1, 29 and 59.99 days ago: suppressed; 60 and 61 days ago: not."""
    days = [1, 29, 59.99, 60, 61]
    events = [
        (i + 1, "old_offer", "Sales", "Cards", "email", "sent", NOW - timedelta(days=d))
        for i, d in enumerate(days)
    ]
    result = engine(CATALOG[:2], policies=[COOLDOWN]).decide(
        customers(len(days)), history=history(events), now=NOW
    )
    assert sorted(selected(result)) == [4, 5]
    funnel = {(r["stage"], r["action_id"]): r["count"] for r in result.funnel.to_pylist()}
    assert funnel[("suppressed:cooldown", "std_card")] == 3
    assert funnel[("not_suppressed", "std_card")] == 2


@pytest.mark.parametrize(
    ("offset", "dropped"),
    [(-US, True), (timedelta(0), False), (US, False)],
    ids=["inside", "on-the-edge", "outside"],
)
def test_limit_window_is_half_open(engine: Any, offset: timedelta, dropped: bool) -> None:
    """(now - W, now]: an event exactly W ago no longer counts."""
    policy = {"name": "weekly", "kind": "limit", "level": "customer", "outcomes": ["sent"],
              "threshold": 1, "window_days": 7}  # fmt: skip
    event = (1, "x", "Sales", "Cards", "email", "sent", NOW - timedelta(days=7) + -offset)
    result = engine(CATALOG, policies=[policy]).decide(
        customers(1), history=history([event]), now=NOW
    )
    assert (selected(result) == {}) is dropped


@pytest.mark.parametrize(
    ("offset", "dropped"),
    [(-US, False), (timedelta(0), False), (US, True)],
    ids=["ended", "ends-now", "still-on"],
)
def test_suppression_ends_exactly_at_t_plus_s(
    engine: Any, offset: timedelta, dropped: bool
) -> None:
    """now < t + S: at t + S = now the suppression is over."""
    event = (1, "x", "Sales", "Cards", "email", "sent", NOW - timedelta(days=60) + offset)
    result = engine(CATALOG[:1], policies=[COOLDOWN]).decide(
        customers(1), history=history([event]), now=NOW
    )
    assert (selected(result) == {}) is dropped


def test_events_after_now_and_other_outcomes_are_ignored(engine: Any) -> None:
    events = [
        (1, "x", "Sales", "Cards", "email", "sent", NOW + US),
        (1, "x", "Sales", "Cards", "email", "clicked", NOW - US),
        (2, "x", "Sales", "Cards", "email", "sent", NOW),
    ]
    result = engine(CATALOG[:1], policies=[COOLDOWN]).decide(
        customers(2), history=history(events), now=NOW
    )
    assert selected(result) == {1: "std_card"}


def test_threshold_column_per_customer(engine: Any) -> None:
    """NULL: the policy's threshold; 0: nothing at all; 2: two sends allowed in the window."""
    policy = {"name": "cap", "kind": "limit", "level": "customer", "outcomes": ["sent"],
              "threshold": 1, "window_days": 7, "threshold_column": "max_per_week"}  # fmt: skip
    sent = [(c, "x", "Sales", "Cards", "sms", "sent", NOW - timedelta(days=1)) for c in (1, 3)]
    table = customers(3, max_per_week=pa.array([None, 0, 2], pa.int64()))
    result = engine(CATALOG, policies=[policy]).decide(table, history=history(sent), now=NOW)
    assert selected(result) == {3: "std_card"}


def test_negative_threshold_column_names_the_customer(engine: Any) -> None:
    policy = {"name": "cap", "kind": "limit", "level": "customer", "outcomes": ["sent"],
              "threshold": 1, "window_days": 7, "threshold_column": "max_per_week"}  # fmt: skip
    table = customers(2, max_per_week=pa.array([1, -1], pa.int64()))
    with pytest.raises(nba_fast.DataError, match="2"):
        engine(CATALOG, policies=[policy]).decide(table, history=history([]), now=NOW)


@pytest.mark.parametrize(
    "bad",
    [
        {"threshold": 0},
        {"kind": "mute"},
        {"level": "planet"},
        {"window_days": -1},
        {"suppress_days": -1},
    ],
)
def test_bad_policies_are_config_errors_naming_the_policy(engine: Any, bad: dict[str, Any]) -> None:
    with pytest.raises(nba_fast.ConfigError, match="cooldown"):
        engine(CATALOG, policies=[COOLDOWN | bad])


@pytest.mark.parametrize(
    ("change", "error"),
    [
        (lambda h: h.drop_columns(["outcome"]), nba_fast.SchemaError),
        (lambda h: h.set_column(6, "timestamp", pa.array(["2024-01-01"] * len(h))),
         nba_fast.SchemaError),
        (lambda h: h.set_column(0, "customer_id", pa.array([None] * len(h), pa.int64())),
         nba_fast.DataError),
    ],
    ids=["missing-column", "string-timestamps", "null-id"],
)  # fmt: skip
def test_bad_history_is_a_typed_error(engine: Any, change: Any, error: type[Exception]) -> None:
    events = history([(1, "x", "Sales", "Cards", "email", "sent", NOW - US)])
    with pytest.raises(error):
        engine(CATALOG, policies=[COOLDOWN]).decide(customers(1), history=change(events), now=NOW)


# --- random histories and policies: Rust = reference -------------------------------------

GROUPS = ["Cards", "Loans", "Billing", "Gone"]  # "Gone": history of a retired action's group


@st.composite
def policies(draw: st.DrawFn) -> list[dict[str, Any]]:
    out = []
    for i in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["suppress", "limit"]))
        policy: dict[str, Any] = {
            "name": f"p{i}",
            "kind": kind,
            "level": draw(st.sampled_from(["action", "group", "issue", "channel", "customer"])),
            "channel": draw(st.sampled_from(["*", "email", "sms"])),
            "outcomes": draw(st.lists(st.sampled_from(["sent", "pending", "clicked"]),
                                      min_size=1, max_size=3, unique=True)),
            "threshold": draw(st.integers(1, 3)),
            "window_days": draw(st.sampled_from([0.5, 1, 7, 30, 1 / 3])),
        }  # fmt: skip
        if kind == "suppress":
            policy["suppress_days"] = draw(st.sampled_from([0, 1, 2.5, 60]))
        elif draw(st.booleans()):
            policy["threshold_column"] = "cap"
        out.append(policy)
    return out


@st.composite
def events(draw: st.DrawFn, n_customers: int) -> pa.Table:
    rows = []
    for _ in range(draw(st.integers(0, 25))):
        group = draw(st.sampled_from(GROUPS))
        action = {"Cards": "std_card", "Loans": "loan", "Billing": "bill_sms"}.get(group, "old")
        rows.append((
            draw(st.integers(1, n_customers + 1)),  # + 1: someone not being decided
            draw(st.sampled_from([action, "gold_card"])),
            draw(st.sampled_from(["Sales", "Service", None])),
            group,
            draw(st.sampled_from(["email", "sms", None])),
            draw(st.sampled_from(["sent", "pending", "clicked", "failed"])),
            NOW - timedelta(microseconds=draw(st.integers(-86_400_000_000, 40 * 86_400_000_000))),
        ))  # fmt: skip
    return history(rows)


def stream(table: pa.Table, rows: int) -> pa.RecordBatchReader:
    """`table` as a one-pass stream of batches of at most `rows` rows."""
    return pa.RecordBatchReader.from_batches(table.schema, table.to_batches(max_chunksize=rows))


def relabel(table: pa.Table, scale: int) -> pa.Table:
    """`table` with every customer_id multiplied by `scale`."""
    ids = pa.array([c * scale for c in table["customer_id"].to_pylist()], pa.int64())
    return table.set_column(table.schema.get_field_index("customer_id"), "customer_id", ids)


# How customer ids are spread: a compact range (the engine's dense history index), negative
# ids, and ids too far apart for it (the hashed index).
ID_SCALES = [1, -1, 10**15]


@given(data=st.data())
def test_rust_matches_reference_on_random_histories(data: st.DataObject) -> None:
    n = data.draw(st.integers(1, 6))
    caps = data.draw(st.lists(st.one_of(st.none(), st.integers(0, 3)), min_size=n, max_size=n))
    scale = data.draw(st.sampled_from(ID_SCALES))
    table = relabel(customers(n, cap=pa.array(caps, pa.int64())), scale)
    chosen = data.draw(policies())
    hist = relabel(data.draw(events(n)), scale)
    max_per_customer = data.draw(st.integers(1, 3))
    results = [
        guarded(
            lambda cls=cls: cls(CATALOG, policies=chosen, max_per_customer=max_per_customer).decide(
                table, history=hist, now=NOW
            )
        )
        for cls in (ENGINES["rust"], ENGINES["reference"])
    ]
    rust, reference = results
    # The same history as a stream of small batches says the same.
    size = data.draw(st.integers(1, 4))
    streamed = guarded(
        lambda: ENGINES["rust"](CATALOG, policies=chosen, max_per_customer=max_per_customer).decide(
            table, history=stream(hist, size), now=NOW
        )
    )
    if isinstance(rust, Exception):
        assert type(streamed) is type(rust) and str(streamed) == str(rust), (streamed, rust)
    else:
        assert_same_result(streamed, rust)
    if isinstance(reference, Exception):
        assert type(rust) is type(reference), (rust, reference)
    else:
        assert_same_result(rust, reference)
    # And arbitrate over the same expanded candidates agrees too.
    candidates = pa.table({
        "customer_id": [c * scale for c in range(1, n + 1) for _ in CATALOG],
        "action_id": [a["id"] for _ in range(n) for a in CATALOG],
        "propensity": [a["default_propensity"] for _ in range(n) for a in CATALOG],
        "cap": [caps[c] for c in range(n) for _ in CATALOG],
    })  # fmt: skip
    arbitrated = [
        guarded(
            lambda cls=cls: cls(CATALOG, policies=chosen).arbitrate(
                candidates, history=hist, now=NOW
            )
        )
        for cls in (ENGINES["rust"], ENGINES["reference"])
    ]
    if isinstance(arbitrated[1], Exception):
        assert type(arbitrated[0]) is type(arbitrated[1]), arbitrated
    else:
        assert_same_result(arbitrated[0], arbitrated[1])


# --- the history as a stream --------------------------------------------------------------


def big_history(rows: int, null_time_at: int | None = None) -> pa.Table:
    """`rows` sent emails of customers 1..1000, a day old (one NULL timestamp if asked)."""
    import numpy as np

    ids = np.arange(rows, dtype=np.int64) % 1000 + 1
    times = np.full(rows, int((NOW - timedelta(days=1)).timestamp() * 1_000_000), np.int64)
    mask = None
    if null_time_at is not None:
        mask = np.zeros(rows, dtype=bool)
        mask[null_time_at] = True
    return pa.table({
        "customer_id": ids,
        "action_id": pa.array(["std_card"] * rows).dictionary_encode(),
        "issue": pa.array(["Sales"] * rows).dictionary_encode(),
        "group": pa.array(["Cards"] * rows).dictionary_encode(),
        "channel": pa.array(["email"] * rows).dictionary_encode(),
        "outcome": pa.array(["sent"] * rows).dictionary_encode(),
        "timestamp": pa.array(times, pa.timestamp("us", tz="UTC"), mask=mask),
    })  # fmt: skip


def test_a_long_stream_equals_the_table() -> None:
    # 1.2M rows over several read groups (a group is 2^19 rows per worker thread).
    table = big_history(1_200_000)
    engine = nba_fast.Engine(CATALOG, policies=[COOLDOWN], threads=1)
    whole = engine.decide(customers(1200), history=table, now=NOW)
    streamed = engine.decide(customers(1200), history=stream(table, 100_000), now=NOW)
    assert_same_result(streamed, whole)
    # Customers 1..1000 had a Cards email: only loan and bill_sms are left for them.
    assert selected(whole)[1] == "loan" and selected(whole)[1001] == "std_card"


def test_a_fault_late_in_a_stream_names_its_row_in_the_whole_history() -> None:
    bad = big_history(1_200_000, null_time_at=1_150_001)
    engine = nba_fast.Engine(CATALOG, policies=[COOLDOWN], threads=1)
    for history in (bad, stream(bad, 70_000)):
        with pytest.raises(nba_fast.DataError, match=r"timestamp is null in row 1150001\b"):
            engine.decide(customers(3), history=history, now=NOW)


def test_an_empty_stream_still_has_its_schema_checked() -> None:
    schema = HISTORY_SCHEMA.remove(HISTORY_SCHEMA.get_field_index("outcome"))
    empty = pa.RecordBatchReader.from_batches(schema, [])
    with pytest.raises(nba_fast.SchemaError, match=r"history: column .outcome. is missing"):
        nba_fast.Engine(CATALOG, policies=[COOLDOWN]).decide(customers(1), history=empty, now=NOW)
    fine = pa.RecordBatchReader.from_batches(HISTORY_SCHEMA, [])
    engine = nba_fast.Engine(CATALOG, policies=[COOLDOWN])
    result = engine.decide(customers(1), history=fine, now=NOW)
    assert selected(result) == {1: "std_card"}


def test_a_stream_that_fails_part_way_is_an_error_and_decides_nothing() -> None:
    good = history([(1, "std_card", "Sales", "Cards", "email", "sent", NOW - US)])

    def batches() -> Any:
        yield from good.to_batches()
        raise OSError("disk gone while reading history")

    broken = pa.RecordBatchReader.from_batches(HISTORY_SCHEMA, batches())
    message = r"history: the stream failed after 1 rows: .*disk gone while reading history"
    with pytest.raises(nba_fast.DataError, match=message):
        nba_fast.Engine(CATALOG, policies=[COOLDOWN]).decide(customers(1), history=broken, now=NOW)


def test_a_stream_of_tiny_batches_equals_the_table() -> None:
    # A database cursor may hand over one row at a time: 30,000 one-row batches of 30,000
    # customers are read as a few chunks, not 30,000 (each chunk costs a routing table).
    table = big_history(30_000).set_column(0, "customer_id", pa.array(range(1, 30_001), pa.int64()))
    engine = nba_fast.Engine(CATALOG, policies=[COOLDOWN])
    whole = engine.decide(customers(30_001), history=table, now=NOW)
    streamed = engine.decide(customers(30_001), history=stream(table, 1), now=NOW)
    assert_same_result(streamed, whole)
    assert selected(whole)[30_000] == "loan" and selected(whole)[30_001] == "std_card"
