"""U+ Bank's generated data for ``nba-fast demo``: customers and a model's propensities.

Deterministic: the same ``(n, seed)`` gives the same tables (NumPy's PCG64). Customer 1 is
always Stephen John of Sacramento, CA: 34, a credit score of 668, no credit card yet, so he is
eligible for the Standard Card, the hero of the demo's first phase.

Example:
    >>> customers = uplus_customers(100)
    >>> customers.slice(0, 1).select(["customer_id", "first_name", "last_name"]).to_pylist()
    [{'customer_id': 1, 'first_name': 'Stephen', 'last_name': 'John'}]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["MEAN_PROPENSITY", "uplus_customers", "uplus_propensities"]

_FIRST: Final = (
    "James", "Mary", "Robert", "Patricia", "John", "Jennifer", "Michael", "Linda", "David",
    "Elizabeth", "William", "Barbara", "Richard", "Susan", "Joseph", "Jessica", "Thomas",
    "Sarah", "Carlos", "Maria", "Luis", "Ana", "Jose", "Sofia", "Wei", "Mei", "Amir", "Leila",
)  # fmt: skip
_LAST: Final = (
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez",
    "Martinez", "Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson", "Thomas", "Taylor",
    "Moore", "Jackson", "Martin", "Lee", "Perez", "Thompson", "White", "Harris", "Chen",
)  # fmt: skip
# (state, country, weight): mostly US states, some Canadian provinces for the legal-text variant.
_REGIONS: Final = (
    ("CA", "US", 12.0), ("TX", "US", 9.0), ("FL", "US", 6.5), ("NY", "US", 6.0),
    ("PA", "US", 4.0), ("IL", "US", 3.8), ("WA", "US", 2.3), ("QC", "CA", 1.5),
    ("ON", "CA", 2.0),
)  # fmt: skip

MEAN_PROPENSITY: Final = {
    "card_standard_email": 0.08,
    "card_gold_email": 0.05,
    "card_platinum_email": 0.03,
    "card_student_sms": 0.10,
    "card_cashback_sms": 0.04,
}
"""The synthetic model's mean propensity per action of the demo's catalog."""


def uplus_customers(n: int, seed: int = 0) -> pa.Table:
    """U+ Bank's customers: ``customer_id`` 1..n, names, ``age``, ``credit_score``, ``income``,
    ``state``, ``country``, ``language`` (``en``/``es``/``fr``), ``has_credit_card``, ``email``
    and ``phone`` (some NULL), ``opt_out_email``, ``opt_out_sms``."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    rng = np.random.default_rng(seed)
    ids = np.arange(1, n + 1, dtype=np.int64)
    first = pa.array(_FIRST).take(pa.array(rng.integers(0, len(_FIRST), n)))
    last = pa.array(_LAST).take(pa.array(rng.integers(0, len(_LAST), n)))
    ages = np.clip(rng.normal(42.0, 15.0, n), 18, 90).astype(np.int32)
    scores = np.clip(rng.normal(690.0, 65.0, n), 300, 850).astype(np.int32)
    incomes = np.round(rng.lognormal(np.log(62_000.0), 0.6, n), -2)
    weights = np.array([w for _, _, w in _REGIONS])
    region = pa.array(rng.choice(len(_REGIONS), n, p=weights / weights.sum()))
    states = pa.array([s for s, _, _ in _REGIONS]).take(region)
    countries = pa.array([c for _, c, _ in _REGIONS]).take(region)
    is_quebec = pc.equal(states, "QC").to_numpy(zero_copy_only=False)
    language_roll = rng.random(n)
    language = np.where(is_quebec, "fr", np.where(language_roll < 0.15, "es", "en"))
    has_card = rng.random(n) < 0.30 + 0.004 * (ages - 40)
    handle = pc.utf8_lower(pc.binary_join_element_wise(first, last, "."))
    emails = pc.binary_join_element_wise(
        handle, pc.cast(pa.array(ids), pa.string()), "@example.com", ""
    )
    phones = pc.binary_join_element_wise(
        "+1", pc.cast(pa.array(ids + 2_025_550_000), pa.string()), ""
    )
    no_email = rng.random(n) < 0.06
    no_phone = rng.random(n) < 0.25
    opt_out_email = rng.random(n) < 0.03
    opt_out_sms = rng.random(n) < 0.08
    table = pa.table(
        {
            "customer_id": pa.array(ids),
            "first_name": first,
            "last_name": last,
            "age": pa.array(ages),
            "credit_score": pa.array(scores),
            "income": pa.array(incomes),
            "state": states,
            "country": countries,
            "language": pa.array(language),
            "has_credit_card": pa.array(has_card),
            "email": pc.if_else(pa.array(no_email), None, emails),
            "phone": pc.if_else(pa.array(no_phone), None, phones),
            "opt_out_email": pa.array(opt_out_email),
            "opt_out_sms": pa.array(opt_out_sms),
        }
    )
    stephen = {
        "customer_id": 1,
        "first_name": "Stephen",
        "last_name": "John",
        "age": 34,
        "credit_score": 668,
        "income": 52_000.0,
        "state": "CA",
        "country": "US",
        "language": "en",
        "has_credit_card": False,
        "email": "stephen.john@example.com",
        "phone": "+12025550101",
        "opt_out_email": False,
        "opt_out_sms": False,
    }
    first_row = pa.Table.from_pylist([stephen], schema=table.schema)
    return pa.concat_tables([first_row, table.slice(1)])


def uplus_propensities(customers: pa.Table, action_ids: Sequence[str], seed: int = 0) -> pa.Table:
    """A model's scores, long form (``customer_id``, ``action_id``, ``propensity``): each
    action's mean (`MEAN_PROPENSITY`, else 0.05) scaled by a per-customer affinity and noise."""
    rng = np.random.default_rng(seed + 1)
    n, k = customers.num_rows, len(action_ids)
    means = np.array([MEAN_PROPENSITY.get(a, 0.05) for a in action_ids])
    affinity = rng.gamma(4.0, 0.25, n)
    scores = np.clip(means[None, :] * affinity[:, None] * rng.uniform(0.5, 1.5, (n, k)), 0, 1)
    ids = customers.column("customer_id").to_numpy()
    return pa.table(
        {
            "customer_id": pa.array(np.repeat(ids, k)),
            "action_id": pa.array(np.tile(np.array(action_ids, dtype=object), n), pa.string()),
            "propensity": pa.array(scores.reshape(-1)),
        }
    )
