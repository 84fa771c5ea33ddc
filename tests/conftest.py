"""Shared fixtures and helpers of the test suite.

Test modules import the helpers as ``from tests.conftest import ...`` (the module name pytest
gives this file under ``--import-mode=importlib``, as polars' suite does).

- `ENGINES` / the ``engine_cls`` fixture: the Rust-backed `nba_fast.Engine` and the pure-Python
  oracle `nba_fast.reference.Engine`, which must behave the same.
- `bank_catalog` and `make_customers`: a small U+ Bank catalog and a customers-table factory.
- `assert_same_result`: two results are identical (schemas, values, floats bit for bit).
- `guarded`: runs a call and lets only `NbaFastError` escape as a value; anything else (a
  pyo3 ``PanicException``, which is a ``BaseException``, or a stray ``TypeError``) fails.
- The hypothesis profile ``ci`` (loaded by default): no deadline, derandomized, 200 examples
  (``NBA_FAST_HYPOTHESIS_EXAMPLES`` raises it).
"""

from __future__ import annotations

import os
import random
import warnings
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, settings

# A debug build of the extension warns at import (meant for users running real work); the
# suite runs fine on one, and `filterwarnings = error` would otherwise fail every collection.
with warnings.catch_warnings():
    warnings.filterwarnings(
        "ignore", message="nba_fast was built without optimisations", category=RuntimeWarning
    )
    import nba_fast
    import nba_fast.reference

from nba_fast import NbaFastError

__all__ = [
    "ENGINES",
    "NOW",
    "assert_same_result",
    "bank_catalog",
    "funnel_rows",
    "guarded",
    "known_bug",
    "make_customers",
    "picks",
]

settings.register_profile(
    "ci",
    deadline=None,
    max_examples=max(200, int(os.environ.get("NBA_FAST_HYPOTHESIS_EXAMPLES", "200"))),
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
"""The decision time of every test that does not say otherwise."""

ENGINES: dict[str, Callable[..., Any]] = {
    "rust": nba_fast.Engine,
    "reference": nba_fast.reference.Engine,
}


@pytest.fixture(params=sorted(ENGINES), scope="session")
def engine_cls(request: pytest.FixtureRequest) -> Callable[..., Any]:
    """Each engine class in turn: the Rust one and the reference."""
    return ENGINES[request.param]


def known_bug(request: pytest.FixtureRequest, engine: str, reason: str) -> None:
    """Marks the running test ``xfail(strict=True)`` when it runs on `engine` (``"rust"`` or
    ``"reference"``, the ``engine_cls`` parameter): a reported bug, to unmark once fixed."""
    callspec = getattr(request.node, "callspec", None)
    if callspec is not None and callspec.params.get("engine_cls") == engine:
        request.applymarker(pytest.mark.xfail(strict=True, reason=reason))


# --- data --------------------------------------------------------------------------------


def bank_catalog() -> list[dict[str, Any]]:
    """U+ Bank's small catalog: cards by email, a loan by SMS, an app nudge by push."""
    return [
        {
            "id": "gold_card",
            "issue": "Sales",
            "group": "CreditCards",
            "channel": "email",
            "treatment": "GoldMail",
            "value": 3.0,
            "eligibility": "age >= 18 AND credit_score >= 700 AND NOT has_credit_card",
        },
        {
            "id": "standard_card",
            "issue": "Sales",
            "group": "CreditCards",
            "channel": "email",
            "treatment": "StandardMail",
            "value": 1.5,
            "eligibility": "age >= 18 AND credit_score BETWEEN 600 AND 699",
        },
        {
            "id": "loan_sms",
            "issue": "Sales",
            "group": "Loans",
            "channel": "sms",
            "context_weight": 0.8,
            "eligibility": "state IN ('CA', 'NY') AND days_since(last_contact) > 7",
        },
        {
            "id": "app_push",
            "issue": "Service",
            "group": "App",
            "channel": "push",
            "lever": 0.5,
            "default_propensity": 0.02,
        },
        {
            "id": "winter_promo",
            "issue": "Sales",
            "group": "Promos",
            "channel": "email",
            "active_until": datetime(2024, 3, 1, tzinfo=UTC),
            "default_propensity": 0.5,
        },
    ]


STATES = ["CA", "NY", "TX", "WA", None]


def make_customers(
    n: int, *, seed: int = 0, string_ids: bool = False, shuffle: bool = True
) -> pa.Table:
    """`n` customers with every column `bank_catalog` reads, NULLs sprinkled in.

    Ids are ``1..n`` (or ``"c00001"``...), in random order when `shuffle`.
    """
    rng = random.Random(seed)
    numbers = list(range(1, n + 1))
    if shuffle:
        rng.shuffle(numbers)
    ids: list[Any] = [f"c{i:05d}" for i in numbers] if string_ids else numbers

    def maybe(value: Any, null_rate: float = 0.1) -> Any:
        return None if rng.random() < null_rate else value

    return pa.table(
        {
            "customer_id": pa.array(ids, pa.string() if string_ids else pa.int64()),
            "age": pa.array([maybe(rng.randint(14, 90)) for _ in ids], pa.int64()),
            "credit_score": pa.array([maybe(rng.randint(450, 850)) for _ in ids], pa.int32()),
            "has_credit_card": pa.array([maybe(rng.random() < 0.3) for _ in ids], pa.bool_()),
            "state": pa.array([rng.choice(STATES) for _ in ids], pa.string()),
            "last_contact": pa.array(
                [maybe(NOW - timedelta(days=rng.uniform(0, 30))) for _ in ids],
                pa.timestamp("us", tz="UTC"),
            ),
            "email": pa.array([maybe(f"u{i}@example.com") for i in numbers], pa.string()),
            "phone": pa.array([maybe(f"+1555{i:07d}", 0.3) for i in numbers], pa.string()),
            "opt_out_email": pa.array([maybe(rng.random() < 0.1) for _ in ids], pa.bool_()),
            "opt_out_sms": pa.array([maybe(rng.random() < 0.1) for _ in ids], pa.bool_()),
        }
    )


def bank_propensities(customers: pa.Table, *, seed: int = 0) -> pa.Table:
    """A long propensity table over `customers` and `bank_catalog`, a few pairs left out."""
    rng = random.Random(seed)
    rows: list[tuple[Any, str, float]] = []
    for customer_id in customers.column("customer_id").to_pylist():
        for action in ("gold_card", "standard_card", "loan_sms", "app_push"):
            if rng.random() < 0.85:
                rows.append((customer_id, action, round(rng.random(), 3)))
    return pa.table(
        {
            "customer_id": pa.array([r[0] for r in rows], customers.schema.field(0).type),
            "action_id": [r[1] for r in rows],
            "propensity": pa.array([r[2] for r in rows], pa.float64()),
        }
    )


# --- comparing results ---------------------------------------------------------------------


def _column_values(table: pa.Table, name: str) -> list[Any]:
    """A column as Python values, float64 columns as their IEEE bit patterns (int64)."""
    column = table.column(name)
    if pa.types.is_floating(column.type):
        array = column.combine_chunks().cast(pa.float64())
        bits = np.asarray(array.fill_null(0.0).to_numpy(zero_copy_only=False)).view(np.int64)
        valid = array.is_valid().to_pylist()
        return [int(b) if ok else None for b, ok in zip(bits.tolist(), valid, strict=True)]
    values: list[Any] = column.to_pylist()
    return values


def _first_difference(left: list[Any], right: list[Any]) -> str:
    for row, (a, b) in enumerate(zip(left, right, strict=False)):
        if a != b:
            return f"row {row}: {a!r} != {b!r}"
    return f"lengths {len(left)} != {len(right)}"


def assert_same_table(a: pa.Table, b: pa.Table, what: str) -> None:
    """`a` and `b` have the same schema (names, types, nullability) and the same values, floats
    compared bit for bit (so 0.0 and -0.0 differ)."""
    assert a.schema == b.schema, f"{what}: schemas differ:\n{a.schema}\n---\n{b.schema}"
    for name in a.schema.names:
        left, right = _column_values(a, name), _column_values(b, name)
        assert left == right, f"{what}.{name}: {_first_difference(left, right)}"


def assert_same_result(a: Any, b: Any) -> None:
    """Two engine results carry identical decisions and funnels."""
    assert_same_table(a.decisions, b.decisions, "decisions")
    assert_same_table(a.funnel, b.funnel, "funnel")


def picks(result: Any) -> list[tuple[Any, str, int]]:
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


def funnel_rows(result: Any) -> list[tuple[str, str, int]]:
    """The funnel as (stage, action_id, count) tuples, in output order."""
    f = result.funnel
    return list(
        zip(
            f.column("stage").to_pylist(),
            f.column("action_id").to_pylist(),
            f.column("count").to_pylist(),
            strict=True,
        )
    )


# --- errors ----------------------------------------------------------------------------------


def guarded(call: Callable[[], Any]) -> Any:
    """The result of `call()`, or the `NbaFastError` it raised (returned, not raised).

    Any other exception fails the test: a pyo3 ``PanicException`` (a ``BaseException``) means
    Rust panicked, and a plain ``TypeError`` / ``ValueError`` means an input escaped the typed
    errors of DESIGN.md §2.
    """
    try:
        return call()
    except NbaFastError as err:
        return err
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as err:
        pytest.fail(f"{type(err).__module__}.{type(err).__qualname__} escaped: {err}")


def expect_error(
    call: Callable[[], Any], error: type[NbaFastError], *culprits: str
) -> NbaFastError:
    """Asserts `call()` raises exactly `error` (not a sibling) whose message names every one
    of `culprits`; returns the exception."""
    outcome = guarded(call)
    assert isinstance(outcome, NbaFastError), f"expected {error.__name__}, got a result"
    assert type(outcome) is error, (
        f"expected {error.__name__}, got {type(outcome).__name__}: {outcome}"
    )
    message = str(outcome)
    for culprit in culprits:
        assert culprit in message, f"{error.__name__} message does not name {culprit!r}: {message}"
    return outcome


def batches_of(table: pa.Table, sizes: Sequence[int]) -> pa.RecordBatchReader:
    """`table` as a stream of record batches of the given sizes (the last size repeats)."""
    batches: list[pa.RecordBatch] = []
    offset, i = 0, 0
    while offset < table.num_rows:
        size = sizes[min(i, len(sizes) - 1)]
        chunk = table.slice(offset, size)
        batches.extend(chunk.to_batches())
        offset += size
        i += 1
    return pa.RecordBatchReader.from_batches(table.schema, batches)
