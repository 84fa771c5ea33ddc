"""Deterministic synthetic data: a retail bank's customer segment and its outbound catalog.

`bank_segment` is shared by `examples/quickstart.py` and the benchmarks, so the demo and the
figures run on the same kind of data: U+ Bank's customers (ages, credit scores, incomes, states,
contact points, opt-outs), credit-card and loan offers on email and SMS with SQL eligibility
rules, a do-not-contact list, and a propensity matrix as a predictive model would score it.

The same `(n_customers, n_actions, seed)` always gives the same data (NumPy's PCG64 generator),
and every time in it is relative to `NOW`, the decision time to pass to `decide`.

Example:
    >>> customers, catalog, propensities, do_not_contact = bank_segment(1_000, n_actions=6)
    >>> customers.num_rows, len(catalog), propensities.shape
    (1000, 6, (1000, 6))
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Final, NamedTuple

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["NOW", "NOW_MICROS", "OFFERS", "Offer", "bank_segment", "catalog"]

NOW: Final = datetime(2025, 6, 2, 8, 0, tzinfo=UTC)
"""The decision time the data is made for (a Monday-morning outbound run)."""

NOW_MICROS: Final = (NOW - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
"""`NOW` in microseconds since the Unix epoch."""

_MICROS_PER_DAY: Final = 86_400_000_000

# Weights roughly follow population; AK and HI are there for the mortgage rule that excludes them.
_STATES: Final = ("CA", "TX", "FL", "NY", "PA", "IL", "OH", "GA", "NC", "MI", "WA", "AK", "HI")
_STATE_WEIGHTS: Final = (12.0, 9.0, 6.5, 6.0, 4.0, 3.8, 3.5, 3.2, 3.2, 3.0, 2.3, 0.2, 0.4)
# Staff (uplusbank.com) are excluded from some offers by a LIKE rule.
_DOMAINS: Final = ("gmail.com", "yahoo.com", "outlook.com", "icloud.com", "uplusbank.com")
_DOMAIN_WEIGHTS: Final = (0.45, 0.2, 0.2, 0.145, 0.005)


class Offer(NamedTuple):
    """One template of the catalog, with the mean propensity the synthetic model gives it."""

    id: str
    issue: str
    group: str
    channel: str
    treatment: str
    value: float
    eligibility: str
    mean_propensity: float
    lever: float = 1.0
    context_weight: float = 1.0
    active_from: datetime | None = None
    active_until: datetime | None = None
    default_propensity: float | None = None


# The first six cover every rule construct (BETWEEN, IN, IS NULL, days_since, COALESCE, LIKE)
# and both channels, so the quickstart's 6-action catalog shows them all.
OFFERS: Final[tuple[Offer, ...]] = (
    Offer(
        "card_standard_email", "Sales", "CreditCards", "email", "StandardCardEmail", 120.0,
        "age >= 18 AND credit_score BETWEEN 600 AND 719 AND NOT has_credit_card",
        0.08,
    ),
    Offer(
        "card_gold_email", "Sales", "CreditCards", "email", "GoldCardEmail", 250.0,
        "age >= 21 AND credit_score >= 700 AND income >= 60000 AND NOT has_credit_card",
        0.05,
    ),
    Offer(
        "card_platinum_sms", "Sales", "CreditCards", "sms", "PlatinumCardSms", 400.0,
        "age >= 25 AND credit_score >= 760 AND income >= 120000"
        " AND state IN ('CA', 'NY', 'TX', 'FL', 'WA')",
        0.03,
    ),
    Offer(
        "card_student_sms", "Sales", "CreditCards", "sms", "StudentCardSms", 60.0,
        "age BETWEEN 18 AND 25 AND NOT has_credit_card"
        " AND (last_contact IS NULL OR days_since(last_contact) >= 30)",
        0.10,
    ),
    Offer(
        "loan_personal_email", "Sales", "Loans", "email", "PersonalLoanEmail", 300.0,
        "age >= 18 AND COALESCE(credit_score, 0) >= 640 AND income / 12 >= 3000",
        0.04,
        lever=1.2,  # this quarter's push on personal loans
    ),
    Offer(
        "loan_auto_sms", "Sales", "Loans", "sms", "AutoLoanSms", 350.0,
        "age BETWEEN 21 AND 70 AND credit_score >= 620"
        " AND COALESCE(email, '') NOT LIKE '%@uplusbank.com'",
        0.03,
    ),
    Offer(
        "loan_mortgage_refi_email", "Sales", "Loans", "email", "MortgageRefiEmail", 900.0,
        "age BETWEEN 30 AND 65 AND income >= 85000 AND credit_score >= 680"
        " AND state NOT IN ('AK', 'HI')",
        0.015,
    ),
    Offer(
        "card_balance_transfer_email", "Sales", "CreditCards", "email", "BalanceTransferEmail",
        180.0,
        "has_credit_card AND credit_score >= 680",
        0.06,
        active_from=datetime(2025, 5, 1, tzinfo=UTC),
        active_until=datetime(2025, 7, 1, tzinfo=UTC),
    ),
    Offer(
        "card_spring_promo_sms", "Sales", "CreditCards", "sms", "SpringPromoSms", 150.0,
        "age >= 18 AND NOT has_credit_card",
        0.07,
        # Ended before NOW: the funnel shows it as `inactive`.
        active_from=datetime(2025, 3, 1, tzinfo=UTC),
        active_until=datetime(2025, 6, 1, tzinfo=UTC),
    ),
    Offer(
        "retention_fee_waiver_email", "Retention", "CreditCards", "email", "FeeWaiverEmail",
        200.0,
        "has_credit_card AND (credit_score < 640 OR days_since(last_contact) > 180)",
        0.12,
        context_weight=1.5,  # at-risk customers: retention weighs more
        default_propensity=0.05,
    ),
)  # fmt: skip


def catalog(n_actions: int = len(OFFERS)) -> list[dict[str, Any]]:
    """The first `n_actions` actions of the catalog, as `nba_fast.Engine` takes them.

    Past the templates, variants (``<id>_v2``, ``<id>_v3``, …) repeat them with slightly
    different values, so any number of actions can be benchmarked.

    Args:
        n_actions: number of actions, at least 1.

    Returns:
        One dict per action with every catalog field (absent optional fields are None).
    """
    if n_actions < 1:
        raise ValueError(f"n_actions must be >= 1, got {n_actions}")
    actions: list[dict[str, Any]] = []
    for index in range(n_actions):
        offer = OFFERS[index % len(OFFERS)]
        variant = index // len(OFFERS)
        actions.append(
            {
                "id": offer.id if variant == 0 else f"{offer.id}_v{variant + 1}",
                "issue": offer.issue,
                "group": offer.group,
                "channel": offer.channel,
                "treatment": offer.treatment,
                "value": offer.value * (1.0 + 0.05 * variant),
                "lever": offer.lever,
                "context_weight": offer.context_weight,
                "eligibility": offer.eligibility,
                "active_from": offer.active_from,
                "active_until": offer.active_until,
                "default_propensity": offer.default_propensity,
            }
        )
    return actions


def bank_segment(
    n_customers: int, n_actions: int = 10, seed: int = 0
) -> tuple[pa.Table, list[dict[str, Any]], npt.NDArray[np.float64], pa.Table]:
    """A synthetic customer segment of U+ Bank, its catalog, propensities and do-not-contact list.

    Args:
        n_customers: number of customers (rows), at least 1.
        n_actions: number of catalog actions (see `catalog`).
        seed: the random seed; equal arguments give equal data.

    Returns:
        ``(customers, catalog, propensities, do_not_contact)``: the customers table
        (``customer_id`` int64 1..n, ``age``, ``credit_score`` (some NULL: thin files),
        ``income``, ``state``, ``has_credit_card``, ``last_contact`` (UTC timestamp, NULL if
        never contacted), ``email`` and ``phone`` (some NULL), ``opt_out_email``,
        ``opt_out_sms``); the catalog as a list of dicts; a float64 array of shape
        ``(n_customers, n_actions)`` in catalog order; and a do-not-contact table (``channel``,
        ``customer_id``, ``address``).
    """
    if n_customers < 1:
        raise ValueError(f"n_customers must be >= 1, got {n_customers}")
    rng = np.random.default_rng(seed)
    customers = _customers(rng, n_customers)
    actions = catalog(n_actions)
    propensities = _propensities(rng, customers, actions)
    do_not_contact = _do_not_contact(rng, customers)
    return customers, actions, propensities, do_not_contact


def _customers(rng: np.random.Generator, n: int, first_id: int = 1) -> pa.Table:
    ids = np.arange(first_id, first_id + n, dtype=np.int64)
    ages = np.clip(rng.normal(44.0, 17.0, n), 16, 95).astype(np.int32)
    scores = np.clip(rng.normal(690.0, 70.0, n), 300, 850).astype(np.int32)
    no_score = rng.random(n) < 0.03
    incomes = np.round(rng.lognormal(np.log(58_000.0), 0.6, n), -2)
    states = pa.array(_STATES).take(
        pa.array(rng.choice(len(_STATES), n, p=_normalised(_STATE_WEIGHTS)))
    )
    has_card = rng.random(n) < 0.35 + 0.004 * (ages - 40)
    days_ago = rng.uniform(0.0, 365.0, n)
    never_contacted = rng.random(n) < 0.25
    last_contact = NOW_MICROS - (days_ago * _MICROS_PER_DAY).astype(np.int64)
    id_text = pc.cast(pa.array(ids), pa.string())
    domains = pa.array(_DOMAINS).take(
        pa.array(rng.choice(len(_DOMAINS), n, p=_normalised(_DOMAIN_WEIGHTS)))
    )
    emails = pc.binary_join_element_wise("customer.", id_text, "@", domains, "")
    phones = pc.binary_join_element_wise(
        "+1", pc.cast(pa.array(ids + 2_010_000_000), pa.string()), ""
    )
    return pa.table(
        {
            "customer_id": pa.array(ids),
            "age": pa.array(ages),
            "credit_score": pa.array(scores, mask=no_score),
            "income": pa.array(incomes),
            "state": states,
            "has_credit_card": pa.array(has_card),
            "last_contact": pa.array(
                last_contact, type=pa.timestamp("us", tz="UTC"), mask=never_contacted
            ),
            "email": _with_nulls(emails, rng.random(n) < 0.08),
            "phone": _with_nulls(phones, rng.random(n) < 0.30),
            "opt_out_email": pa.array(rng.random(n) < 0.04),
            "opt_out_sms": pa.array(rng.random(n) < 0.10),
        }
    )


def _propensities(
    rng: np.random.Generator, customers: pa.Table, actions: list[dict[str, Any]]
) -> npt.NDArray[np.float64]:
    """Scores in [0, 1]: each action's mean, scaled by a per-customer affinity and noise."""
    n = customers.num_rows
    means = np.array([OFFERS[index % len(OFFERS)].mean_propensity for index in range(len(actions))])
    affinity = rng.gamma(4.0, 0.25, n)  # mean 1: some customers respond more than others
    noise = rng.uniform(0.5, 1.5, (n, len(actions)))
    scores = np.clip(means[np.newaxis, :] * affinity[:, np.newaxis] * noise, 0.0, 1.0)
    return np.ascontiguousarray(scores, dtype=np.float64)


def _do_not_contact(rng: np.random.Generator, customers: pa.Table) -> pa.Table:
    """Customers who asked never to be contacted, and bounced or complained addresses."""
    n = customers.num_rows
    ids = customers.column("customer_id").to_numpy()
    blocked_ids = rng.choice(ids, max(1, n // 500), replace=False)
    emails = customers.column("email").drop_null()
    phones = customers.column("phone").drop_null()
    blocked_emails = emails.take(rng.choice(len(emails), min(len(emails), n // 400), False))
    blocked_phones = phones.take(rng.choice(len(phones), min(len(phones), n // 1000), False))
    n_ids, n_emails, n_phones = len(blocked_ids), len(blocked_emails), len(blocked_phones)
    return pa.table(
        {
            "channel": pa.array(["*"] * n_ids + ["email"] * n_emails + ["sms"] * n_phones),
            "customer_id": pa.array(
                np.concatenate([blocked_ids, np.zeros(n_emails + n_phones, dtype=np.int64)]),
                mask=np.arange(n_ids + n_emails + n_phones) >= n_ids,
            ),
            "address": pa.concat_arrays(
                [
                    pa.nulls(n_ids, pa.string()),
                    blocked_emails.combine_chunks(),
                    blocked_phones.combine_chunks(),
                ]
            ),
        }
    )


def _with_nulls(values: pa.Array, null: npt.NDArray[np.bool_]) -> pa.Array:
    return pc.if_else(pa.array(null), pa.scalar(None, pa.string()), values)


def _normalised(weights: tuple[float, ...]) -> npt.NDArray[np.float64]:
    array = np.asarray(weights, dtype=np.float64)
    return array / float(array.sum())
