"""Contact policies in the reference engine, on small hand-checked examples.

Every expected answer is worked out by hand from docs/semantics.md ("Contact policies"), never
taken from an engine. Times are integer microseconds; DAY is one day of them.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pytest
from nba_fast._core import ConfigError, DataError, SchemaError
from nba_fast.config import (
    MAX_POLICIES,
    ContactPolicy,
    duration_micros,
    load_policies,
    to_epoch_micros,
)
from nba_fast.reference import Engine, Result

NOW = datetime(2024, 6, 1, tzinfo=UTC)
NOW_US = to_epoch_micros(NOW)
DAY = 86_400_000_000
US = pa.timestamp("us", tz="UTC")
INT64 = pa.int64()


def act(action_id: str, channel: str, group: str, issue: str) -> dict[str, Any]:
    return {
        "id": action_id,
        "issue": issue,
        "group": group,
        "channel": channel,
        "default_propensity": 0.5,
    }


CATALOG = [
    act("gold", "email", "Cards", "Sales"),
    act("plat", "email", "Cards", "Sales"),
    act("loan", "email", "Loans", "Sales"),
    act("care", "email", "Care", "Service"),
    act("gold_sms", "sms", "Cards", "Sales"),
]
ACTIONS = sorted(a["id"] for a in CATALOG)
ONE = pa.table({"customer_id": [1], "email": ["a@x"], "phone": ["555"]})


def ago(days: float) -> int:
    """The instant `days` days before NOW, to the microsecond."""
    return NOW_US - round(days * DAY)


def event(
    time: int,
    action: str | None = "gold",
    *,
    customer: Any = 1,
    group: str | None = "Cards",
    issue: str | None = "Sales",
    channel: str | None = "email",
    outcome: str | None = "sent",
) -> dict[str, Any]:
    return {
        "customer_id": customer,
        "action_id": action,
        "issue": issue,
        "group": group,
        "channel": channel,
        "outcome": outcome,
        "timestamp": time,
    }


def history(*events: dict[str, Any], id_type: pa.DataType = INT64) -> pa.Table:
    columns = ["customer_id", "action_id", "issue", "group", "channel", "outcome", "timestamp"]
    types = [id_type, *[pa.string()] * 5, US]
    return pa.table(
        {
            name: pa.array([e[name] for e in events], data_type)
            for name, data_type in zip(columns, types, strict=True)
        }
    )


def suppress(name: str = "cooldown", **keys: Any) -> dict[str, Any]:
    """The seed policy: no offer email for 60 days after one within 30 days (group level)."""
    return {
        "name": name,
        "kind": "suppress",
        "level": "group",
        "channel": "email",
        "outcomes": ["sent"],
        "threshold": 1,
        "window_days": 30,
        "suppress_days": 60,
        **keys,
    }


def limit(name: str = "cap", **keys: Any) -> dict[str, Any]:
    """At most 1 email-channel message per customer within 7 days (customer level, `*`)."""
    return {
        "name": name,
        "kind": "limit",
        "level": "customer",
        "outcomes": ["sent"],
        "threshold": 1,
        "window_days": 7,
        **keys,
    }


def run(
    policies: list[Any],
    *events: dict[str, Any],
    customers: pa.Table = ONE,
    now: datetime = NOW,
) -> Result:
    engine = Engine(CATALOG, policies=policies, max_per_customer=len(CATALOG))
    return engine.decide(customers, history=history(*events) if events else None, now=now)


def kept(result: Result, customer: Any = 1) -> set[str]:
    """The actions selected for `customer` (every survivor: max_per_customer is the catalog)."""
    return {
        row["action_id"] for row in result.decisions.to_pylist() if row["customer_id"] == customer
    }


def stages(result: Result) -> list[tuple[str, str, int]]:
    f = result.funnel
    return list(
        zip(
            f.column("stage").to_pylist(),
            f.column("action_id").to_pylist(),
            f.column("count").to_pylist(),
            strict=True,
        )
    )


def dropped(result: Result) -> list[tuple[str, str, int]]:
    return [row for row in stages(result) if row[0].startswith("suppressed:")]


def gold_dropped(policy: dict[str, Any], *events: dict[str, Any]) -> bool:
    return "gold" not in kept(run([policy], *events))


# --- the seed example: no offer email for 60 days after one within 30 days ------------------


@pytest.mark.parametrize("level", ["group", "issue"])
@pytest.mark.parametrize(
    ("days_ago", "suppressed"), [(1, True), (29, True), (59.99, True), (60, False), (61, False)]
)
def test_seed_example(level: str, days_ago: float, suppressed: bool) -> None:
    # One email of "plat" (group Cards, issue Sales) at t: within (t - 30d, t] there is 1 >= 1
    # event, so every email of the group / issue is suppressed while now < t + 60 days.
    result = run([suppress(level=level)], event(ago(days_ago), "plat"))
    email_cards = {"gold", "plat"} if level == "group" else {"gold", "plat", "loan"}
    expected_kept = set(ACTIONS) - email_cards if suppressed else set(ACTIONS)
    assert kept(result) == expected_kept
    if suppressed:
        assert dropped(result) == [("suppressed:cooldown", a, 1) for a in sorted(email_cards)]
    else:
        assert dropped(result) == []


# --- window edges, to the microsecond -------------------------------------------------------


@pytest.mark.parametrize(
    ("time", "expected"),
    [
        (NOW_US - 7 * DAY - 1, False),
        (NOW_US - 7 * DAY, False),  # the window is (now - W, now]: now - W is outside
        (NOW_US - 7 * DAY + 1, True),
        (NOW_US - 1, True),
        (NOW_US, True),  # an event at now counts
        (NOW_US + 1, False),  # events after now are ignored
    ],
)
def test_limit_window_is_half_open(time: int, expected: bool) -> None:
    assert gold_dropped(limit(), event(time)) is expected


@pytest.mark.parametrize(
    ("time", "expected"),
    [
        (NOW_US - 10 * DAY - 1, False),
        (NOW_US - 10 * DAY, False),  # t + S = now: now < t + S is false
        (NOW_US - 10 * DAY + 1, True),
        (NOW_US, True),
        (NOW_US + 1, False),  # after now: ignored, though now < t + S
    ],
)
def test_suppression_ends_at_t_plus_s(time: int, expected: bool) -> None:
    policy = suppress(level="customer", channel="*", window_days=1, suppress_days=10)
    assert gold_dropped(policy, event(time)) is expected


@pytest.mark.parametrize(
    ("gap", "expected"),
    [
        (DAY - 1, True),  # t1 in (t2 - W, t2]: two events within W of t2
        (DAY, False),  # t1 = t2 - W: outside (t2 - W, t2], and each alone is 1 < 2
        (DAY + 1, False),
    ],
)
def test_suppress_window_edge_with_threshold_two(gap: int, expected: bool) -> None:
    policy = suppress(level="customer", threshold=2, window_days=1, suppress_days=10)
    t2 = NOW_US - 5 * DAY
    assert gold_dropped(policy, event(t2 - gap), event(t2)) is expected


def test_suppress_threshold_three() -> None:
    policy = suppress(level="customer", threshold=3, window_days=2, suppress_days=30)
    t = NOW_US - 20 * DAY
    # Three events within 2 days of the last: suppressed until t + 30 days (after now).
    assert gold_dropped(policy, event(t - 2 * DAY + 1), event(t - DAY), event(t))
    # The first is exactly 2 days before the last: only 2 within any window.
    assert not gold_dropped(policy, event(t - 2 * DAY), event(t - DAY), event(t))
    # Three within 2 days, but the suppression (30 days from the latest of them) is over.
    old = NOW_US - 31 * DAY
    assert not gold_dropped(policy, event(old - DAY), event(old - 1), event(old))
    # A later lone event does not renew it: at t_j = now - 1d only 1 event lies in its window.
    assert not gold_dropped(policy, event(old - DAY), event(old - 1), event(old), event(ago(1)))
    # Events in input order do not matter: the times are sorted.
    assert gold_dropped(policy, event(t), event(t - 2 * DAY + 1), event(t - DAY))


def test_suppress_days_zero_never_suppresses() -> None:
    policy = suppress(level="customer", suppress_days=0)
    assert not gold_dropped(policy, event(NOW_US))  # now < now + 0 is false


def test_a_window_shorter_than_half_a_microsecond_counts_nothing() -> None:
    # W = 1e-12 days = 0.0864 us rounds to 0: (t - 0, t] and (now - 0, now] are empty.
    assert duration_micros(1e-12) == 0
    assert not gold_dropped(limit(window_days=1e-12), event(NOW_US))
    assert not gold_dropped(suppress(level="customer", window_days=1e-12), event(NOW_US))


def test_duration_micros() -> None:
    assert duration_micros(30) == 30 * DAY
    assert duration_micros(59.99) == round(59.99 * 86_400_000_000.0)
    assert [duration_micros(x / 86_400_000_000) for x in (0.5, 1.5, 2.5, 3.5)] == [0, 2, 2, 4]
    assert duration_micros(1e300) == duration_micros(math.inf) == 2**63 - 1
    assert duration_micros(0) == 0
    with pytest.raises(ValueError, match="NaN"):
        duration_micros(math.nan)


def test_window_days_round_to_whole_microseconds() -> None:
    # W = 1.5 us rounds (half to even) to 2 us: an event 1 us inside counts, 2 us does not.
    policy = limit(window_days=1.5 / 86_400_000_000)
    assert gold_dropped(policy, event(NOW_US - 1))
    assert not gold_dropped(policy, event(NOW_US - 2))


def test_nanosecond_timestamps_floor_to_the_microsecond() -> None:
    start_ns = (NOW_US - 7 * DAY) * 1_000
    for offset_ns, expected in [(999, False), (1_000, True)]:
        events = pa.table(
            {
                **{k: [v] for k, v in event(0).items() if k != "timestamp"},
                "timestamp": pa.array([start_ns + offset_ns], pa.timestamp("ns")),  # no tz: UTC
            }
        )
        result = Engine(CATALOG, policies=[limit()]).decide(ONE, history=events, now=NOW)
        assert (("suppressed:cap", "gold", 1) in dropped(result)) is expected


# --- what a policy counts --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("level", "expected"),
    [
        # events of:       gold   plat   loan   care   gold_sms
        ("action", [True, False, False, False, False]),
        ("group", [True, True, False, False, True]),
        ("issue", [True, True, True, False, True]),
        ("channel", [True, True, True, True, False]),
        ("customer", [True, True, True, True, True]),
    ],
)
def test_levels(level: str, expected: list[bool]) -> None:
    sources = [
        ("gold", "Cards", "Sales", "email"),
        ("plat", "Cards", "Sales", "email"),
        ("loan", "Loans", "Sales", "email"),
        ("care", "Care", "Service", "email"),
        ("gold_sms", "Cards", "Sales", "sms"),
    ]
    policy = limit(level=level)  # channel '*': events on any channel count
    for (action, group, issue, channel), drops in zip(sources, expected, strict=True):
        one = event(ago(1), action, group=group, issue=issue, channel=channel)
        assert gold_dropped(policy, one) is drops, (level, action)


def test_policy_channel() -> None:
    sms_event = event(ago(1), "gold_sms", channel="sms")
    # '*': applies to every candidate and counts events of every channel.
    assert kept(run([limit()], sms_event)) == set()
    # 'sms': applies to SMS candidates only, and counts only SMS events.
    assert kept(run([limit(channel="sms")], sms_event)) == set(ACTIONS) - {"gold_sms"}
    assert kept(run([limit(channel="sms")], event(ago(1)))) == set(ACTIONS)
    # 'email': the SMS event does not count, and the SMS candidate is never touched.
    assert kept(run([limit(channel="email")], sms_event)) == set(ACTIONS)
    assert kept(run([limit(channel="email")], event(ago(1)))) == {"gold_sms"}
    # A channel nothing uses: applies to nothing.
    assert kept(run([limit(channel="push")], event(ago(1), channel="push"))) == set(ACTIONS)


def test_outcomes_filter() -> None:
    policy = limit(outcomes=["sent", "delivered"])
    assert gold_dropped(policy, event(ago(1), outcome="delivered"))
    for outcome in ("clicked", "Sent", "", None):
        assert not gold_dropped(policy, event(ago(1), outcome=outcome)), outcome


def test_history_actions_not_in_the_catalog_count_by_their_own_fields() -> None:
    retired = event(ago(1), "retired_card", group="Cards", issue="Sales")
    assert gold_dropped(limit(level="group"), retired)
    assert gold_dropped(limit(level="issue"), retired)
    assert not gold_dropped(limit(level="action"), retired)
    moved = event(ago(1), "gold", group="OldCards")  # the row's own group, not the catalog's
    assert not gold_dropped(limit(level="group"), moved)
    assert gold_dropped(limit(level="action"), moved)


def test_null_fields_never_match() -> None:
    assert not gold_dropped(limit(level="group"), event(ago(1), group=None))
    assert not gold_dropped(limit(level="issue"), event(ago(1), issue=None))
    assert not gold_dropped(limit(level="action"), event(ago(1), None))
    no_channel = event(ago(1), channel=None)
    assert not gold_dropped(limit(level="channel"), no_channel)
    assert not gold_dropped(limit(channel="email"), no_channel)
    # A '*' policy does not compare channels: at customer level the event counts.
    assert gold_dropped(limit(), no_channel)


def test_only_the_customers_own_events_count() -> None:
    customers = pa.table({"customer_id": [1, 2], "email": ["a@x", "b@x"], "phone": ["1", "2"]})
    result = run(
        [limit()], event(ago(1), customer=2), event(ago(1), customer=99), customers=customers
    )
    assert kept(result, 1) == set(ACTIONS)
    assert kept(result, 2) == set()


def test_no_history_means_no_events() -> None:
    assert kept(run([limit(), suppress()])) == set(ACTIONS)


# --- limit with threshold_column -----------------------------------------------------------


def test_limit_threshold_column() -> None:
    customers = pa.table(
        {
            "customer_id": [1, 2, 3, 4, 5],
            "email": ["a", "b", "c", "d", "e"],
            "phone": ["1", "2", "3", "4", "5"],
            "max_msgs": pa.array([None, 0, 1, 3, 2], pa.int8()),
        }
    )
    two_each = [event(ago(d), customer=c) for c in (1, 3, 4) for d in (1, 2)]
    policy = limit(threshold=2, threshold_column="max_msgs")
    result = run([policy], *two_each, customers=customers)
    assert kept(result, 1) == set()  # NULL -> the policy's 2; 2 events >= 2
    assert kept(result, 2) == set()  # 0: never contacted, even with no events
    assert kept(result, 3) == set()  # 2 >= 1
    assert kept(result, 4) == set(ACTIONS)  # 2 < 3
    assert kept(result, 5) == set(ACTIONS)  # no events: 0 < 2
    assert dropped(result) == [("suppressed:cap", a, 3) for a in ACTIONS]


def test_threshold_column_zero_without_history() -> None:
    customers = ONE.append_column("n", pa.array([0], pa.int64()))
    assert kept(run([limit(threshold_column="n")], customers=customers)) == set()
    # Also the integer column types and a dictionary-encoded one.
    for column in (pa.array([0], pa.uint64()), pa.array([0]).dictionary_encode()):
        customers = ONE.append_column("n", column)
        assert kept(run([limit(threshold_column="n")], customers=customers)) == set()
    all_null = ONE.append_column("n", pa.nulls(1))  # NULL: the policy's threshold
    assert kept(run([limit(threshold_column="n")], customers=all_null)) == set(ACTIONS)


@pytest.mark.parametrize(
    ("column", "error", "message"),
    [
        (
            None,
            SchemaError,
            r"customers: column 'n' \(threshold_column of policy 'cap'\) is missing",
        ),
        (
            pa.array([1.0]),
            SchemaError,
            r"column 'n' \(threshold_column of policy 'cap'\) must be integers, got double",
        ),
        (pa.array(["1"]), SchemaError, r"must be integers, got string"),
        (
            pa.array([-1]),
            DataError,
            r"customers: customer 1: column 'n' \(threshold_column of policy 'cap'\) is -1, "
            r"which must be >= 0",
        ),
        (
            pa.array([2**63], pa.uint64()),
            DataError,
            r"threshold_column of policy 'cap'\).*does not fit in int64",
        ),
    ],
)
def test_threshold_column_errors(column: pa.Array | None, error: type, message: str) -> None:
    customers = ONE if column is None else ONE.append_column("n", column)
    with pytest.raises(error, match=message):
        run([limit(threshold_column="n")], customers=customers)


def test_negative_threshold_is_an_error_even_where_the_policy_never_applies() -> None:
    customers = ONE.append_column("n", pa.array([-5]))
    with pytest.raises(DataError, match=r"customer 1: .* is -5"):
        run([limit(channel="push", threshold_column="n")], customers=customers)


# --- the funnel ------------------------------------------------------------------------------


def test_first_policy_wins_and_funnel_layout() -> None:
    customers = pa.table({"customer_id": [1, 2], "email": ["a", "b"], "phone": ["1", None]})
    # "zeta" (first, group level) drops customer 1's Cards emails (gold, plat) and customer
    # 2's Care email (care); "alpha" drops what is left of their emails: loan and care of 1,
    # gold, plat and loan of 2. Customer 1's SMS is under neither; customer 2 has no phone.
    zeta = suppress("zeta", level="group")
    alpha = limit("alpha", channel="email")
    events = [event(ago(1), "plat"), event(ago(3), "care", customer=2, group="Care")]
    result = run([zeta, alpha], *events, customers=customers)
    assert kept(result, 1) == {"gold_sms"}
    assert kept(result, 2) == set()  # gold_sms: no phone
    every = dict.fromkeys(ACTIONS, 2)
    not_suppressed = {**dict.fromkeys(ACTIONS, 0), "gold_sms": 1}
    assert stages(result) == [
        *[("candidate", a, 2) for a in ACTIONS],
        *[("eligible", a, 2) for a in ACTIONS],
        ("no_address", "gold_sms", 1),
        *[("contactable", a, every[a] - (a == "gold_sms")) for a in ACTIONS],
        ("suppressed:zeta", "care", 1),
        ("suppressed:zeta", "gold", 1),
        ("suppressed:zeta", "plat", 1),
        ("suppressed:alpha", "care", 1),
        ("suppressed:alpha", "gold", 1),
        ("suppressed:alpha", "loan", 2),
        ("suppressed:alpha", "plat", 1),
        *[("not_suppressed", a, not_suppressed[a]) for a in ACTIONS],
        *[("top_choice", a, not_suppressed[a]) for a in ACTIONS],
        *[("selected", a, not_suppressed[a]) for a in ACTIONS],
    ]


def test_policies_come_after_contactability_and_before_no_propensity() -> None:
    catalog = [
        {"id": "a", "issue": "S", "group": "G", "channel": "email"},  # no default propensity
        {"id": "b", "issue": "S", "group": "G", "channel": "sms", "default_propensity": 0.5},
    ]
    customers = pa.table(
        {"customer_id": [1], "email": ["x"], "phone": pa.array([None], pa.string())}
    )
    engine = Engine(catalog, policies=[limit()])
    result = engine.decide(customers, history=history(event(ago(1), "z")), now=NOW)
    # b: no phone (dropped before the policy); a: dropped by the policy, not as no_propensity.
    assert [
        row for row in stages(result) if row[2] and row[0] not in {"candidate", "eligible"}
    ] == [
        ("no_address", "b", 1),
        ("contactable", "a", 1),
        ("suppressed:cap", "a", 1),
    ]


# --- arbitrate -------------------------------------------------------------------------------


def test_arbitrate_applies_policies() -> None:
    engine = Engine(
        CATALOG,
        policies=[limit("cards", level="group"), limit("sms", channel="sms", level="customer")],
    )
    candidates = pa.table(
        {
            "customer_id": [1, 1, 1, 1, 1, 2, 2],
            "action_id": ["gold", "loan", "new", "new2", "gold_sms", "gold", "plat"],
            "propensity": [0.5] * 7,
            "group": [None, "Cards", "Cards", None, None, None, "Other"],
            "channel": [None, None, None, None, None, None, None],
        }
    )
    events = history(
        event(ago(1), "x", group="Cards"),
        event(ago(1), "x", customer=2, group="Cards", channel="sms"),
    )
    result = engine.arbitrate(candidates, history=events, now=NOW)
    # 1: gold (catalog group Cards), loan (row group Cards) and new (row group) are dropped by
    #    "cards"; new2 has no group (not in the catalog): NULL matches nothing; gold_sms is in
    #    group Cards too. "sms" applies to gold_sms only (channel from the catalog), but
    #    "cards" drops it first.
    # 2: gold is dropped by "cards" (an SMS event counts: the policy is '*'); plat's row says
    #    group Other.
    assert [(r["customer_id"], r["action_id"]) for r in result.decisions.to_pylist()] == [
        (1, "new2"),
        (2, "plat"),
    ]
    assert dropped(result) == [
        ("suppressed:cards", "gold", 2),
        ("suppressed:cards", "gold_sms", 1),
        ("suppressed:cards", "loan", 1),
        ("suppressed:cards", "new", 1),
    ]


def test_arbitrate_null_channel_matches_only_star_policies() -> None:
    candidates = pa.table({"customer_id": [1], "action_id": ["new"], "propensity": [0.5]})
    events = history(event(ago(1), "x"))
    for policy, is_dropped in [(limit(), True), (limit(channel="email"), False)]:
        result = Engine(None, policies=[policy]).arbitrate(candidates, history=events, now=NOW)
        assert (result.decisions.num_rows == 0) is is_dropped


def test_arbitrate_null_never_matches_null() -> None:
    # "new" has no catalog action and its row no group, issue or channel; the event has NULL
    # group, issue and channel too: NULL = NULL is not a match.
    candidates = pa.table({"customer_id": [1], "action_id": ["new"], "propensity": [0.5]})
    events = history(event(ago(1), "other", group=None, issue=None, channel=None))
    for level in ("group", "issue", "channel"):
        engine = Engine(None, policies=[limit(level=level)])
        result = engine.arbitrate(candidates, history=events, now=NOW)
        assert result.decisions.num_rows == 1, level


def test_arbitrate_threshold_column_is_read_per_row() -> None:
    candidates = pa.table(
        {
            "customer_id": ["c", "c", "c"],
            "action_id": ["gold", "plat", "loan"],
            "propensity": [0.5, 0.5, 0.5],
            "n": [0, None, 2],
        }
    )
    engine = Engine(CATALOG, policies=[limit(threshold_column="n")], max_per_customer=3)
    events = history(event(ago(1), customer="c"), id_type=pa.string())
    result = engine.arbitrate(candidates, history=events, now=NOW)
    # gold: N' = 0 -> dropped; plat: NULL -> N = 1, 1 event -> dropped; loan: 1 < 2 -> kept.
    assert result.decisions.column("action_id").to_pylist() == ["loan"]
    bad = candidates.set_column(3, "n", pa.array([1, -1, 1]))
    with pytest.raises(DataError, match=r"candidates: customer 'c', action 'plat': .* is -1"):
        engine.arbitrate(bad, history=events, now=NOW)
    with pytest.raises(SchemaError, match=r"candidates: column 'n' .* is missing"):
        engine.arbitrate(candidates.drop_columns(["n"]), history=events, now=NOW)


def test_arbitrate_history_kind_must_match_the_candidates() -> None:
    candidates = pa.table({"customer_id": [1], "action_id": ["gold"], "propensity": [0.5]})
    events = history(event(ago(1), customer="1"), id_type=pa.string())
    with pytest.raises(SchemaError, match=r"history: customer_id is string"):
        Engine(CATALOG, policies=[limit()]).arbitrate(candidates, history=events, now=NOW)


# --- history errors --------------------------------------------------------------------------


GOOD = history(event(ago(1)))


def replaced(name: str, column: pa.Array) -> pa.Table:
    return GOOD.set_column(GOOD.schema.get_field_index(name), name, column)


@pytest.mark.parametrize(
    ("table", "error", "message"),
    [
        *[
            (GOOD.drop_columns([name]), SchemaError, rf"history: column '{name}' is missing")
            for name in GOOD.schema.names
        ],
        (
            replaced("customer_id", pa.array(["1"])),
            SchemaError,
            r"history: customer_id is string but the customers' customer_id is an integer",
        ),
        (
            replaced("customer_id", pa.array([1.0])),
            SchemaError,
            r"history: column 'customer_id' must be an integer",
        ),
        (
            replaced("customer_id", pa.nulls(1)),
            SchemaError,
            r"history: column 'customer_id' must be an integer",
        ),
        (
            replaced("outcome", pa.array([1])),
            SchemaError,
            r"history: column 'outcome' must be strings, got int64",
        ),
        (
            replaced("action_id", pa.array([1])),
            SchemaError,
            r"history: column 'action_id' must be strings",
        ),
        (
            replaced("timestamp", pa.array([NOW.date()])),
            SchemaError,
            r"history: column 'timestamp' must be a timestamp, got date32",
        ),
        (
            replaced("timestamp", pa.array([ago(1)])),
            SchemaError,
            r"column 'timestamp' must be a timestamp, got int64",
        ),
        (
            replaced("timestamp", pa.nulls(1)),
            SchemaError,
            r"column 'timestamp' must be a timestamp, got null",
        ),
        (
            history(event(ago(1)), event(ago(1), customer=None)),
            DataError,
            r"history: customer_id is null in row 1",
        ),
        (
            replaced("timestamp", pa.array([None], US)),
            DataError,
            r"history: timestamp is null in row 0",
        ),
    ],
)
def test_history_errors(table: pa.Table, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        Engine(CATALOG, policies=[limit()]).decide(ONE, history=table, now=NOW)


def test_history_is_checked_in_full() -> None:
    # A NULL timestamp of a customer not being decided, and one after now, are still errors;
    # the history is checked even without policies.
    late = history(event(ago(1)), event(NOW_US + DAY, customer=99))
    bad = late.set_column(6, "timestamp", pa.array([ago(1), None], US))
    for policies in ([limit()], []):
        with pytest.raises(DataError, match=r"timestamp is null in row 1"):
            Engine(CATALOG, policies=policies).decide(ONE, history=bad, now=NOW)
    with pytest.raises(SchemaError, match=r"history: expected an Arrow table"):
        Engine(CATALOG).decide(ONE, history=[{"customer_id": 1}], now=NOW)


def test_history_column_forms() -> None:
    # Null-typed string columns read as all NULL; dictionary strings and any time zone work.
    table = pa.table(
        {
            "customer_id": pa.array([1], pa.int32()),
            "action_id": pa.array(["gold"]).dictionary_encode(),
            "issue": pa.nulls(1),
            "group": pa.nulls(1),
            "channel": pa.array(["email"], pa.large_string()),
            "outcome": ["sent"],
            "timestamp": pa.array([ago(1) // 1000], pa.timestamp("ms", tz="America/New_York")),
        }
    )
    engine = Engine(CATALOG, policies=[limit("a", level="action"), limit("g", level="group")])
    result = engine.decide(ONE, history=table, now=NOW)
    assert dropped(result) == [("suppressed:a", "gold", 1)]


# --- policy configuration ---------------------------------------------------------------------


def test_policy_forms() -> None:
    typed = ContactPolicy(
        "cooldown",
        "suppress",
        "group",
        channel="email",
        outcomes=("sent",),
        threshold=1,
        window_days=30,
        suppress_days=60,
    )
    assert load_policies([suppress()]) == [
        ContactPolicy(
            "cooldown",
            "suppress",
            "group",
            channel="email",
            outcomes=("sent",),
            threshold=1,
            window_days=30.0,
            suppress_days=60.0,
        )
    ]
    assert load_policies([typed]) == load_policies([suppress()])
    [loaded] = load_policies([limit(channel=None, suppress_days=None, threshold_column=None)])
    assert (loaded.channel, loaded.suppress_days, loaded.threshold_column) == ("*", None, None)
    assert isinstance(loaded.window_days, float) and loaded.outcomes == ("sent",)
    assert load_policies(None) == [] and load_policies(()) == []
    # Engine accepts both forms and validates a ContactPolicy built with bad values.
    assert Engine(CATALOG, policies=[typed, limit()]).policies[0] == load_policies([typed])[0]
    with pytest.raises(ConfigError, match=r"policy 'x': key 'threshold' must be an integer in"):
        Engine(CATALOG, policies=[ContactPolicy("x", "limit", "action", outcomes=("s",),
                                                threshold=0, window_days=1)])  # fmt: skip
    assert len(load_policies([limit(f"p{i}") for i in range(MAX_POLICIES)])) == MAX_POLICIES


@pytest.mark.parametrize(
    ("policies", "message"),
    [
        ({"name": "x"}, r"policies: expected a list of dicts or ContactPolicy objects, got dict"),
        ("cap", r"policies: expected a list .* got str"),
        ([limit(), 3], r"policy #2: expected a dict of keys or a ContactPolicy, got int"),
        ([limit(), limit()], r"policy 'cap': key 'name': duplicate name \(policies #1 and #2"),
        (
            [limit(f"p{i}") for i in range(MAX_POLICIES + 1)],
            r"policies: at most 64 contact policies, got 65",
        ),
        ([limit(colour="red")], r"policy 'cap': unknown key 'colour'"),
        (
            [{k: v for k, v in limit().items() if k != "name"}],
            r"policy #1: missing required key 'name'",
        ),
        ([limit(name="")], r"policy #1: key 'name' must not be empty"),
        ([limit(name=7)], r"policy #1: key 'name' must be a string, got int"),
        ([limit(kind=None)], r"policy 'cap': missing required key 'kind'"),
        (
            [limit(kind="Limit")],
            r"policy 'cap': key 'kind' must be one of 'suppress', 'limit', got 'Limit'",
        ),
        (
            [limit(level="segment")],
            r"policy 'cap': key 'level' must be one of 'action', 'group', 'issue', 'channel', "
            r"'customer', got 'segment'",
        ),
        ([limit(level=None)], r"policy 'cap': missing required key 'level'"),
        ([limit(channel=1)], r"policy 'cap': key 'channel' must be a string, got int"),
        ([limit(outcomes=None)], r"policy 'cap': missing required key 'outcomes'"),
        ([limit(outcomes=[])], r"policy 'cap': key 'outcomes' must not be empty"),
        (
            [limit(outcomes="sent")],
            r"policy 'cap': key 'outcomes' must be a list of strings, got str",
        ),
        (
            [limit(outcomes={"sent"})],
            r"policy 'cap': key 'outcomes' must be a list of strings, got set",
        ),
        (
            [limit(outcomes=["sent", 1])],
            r"policy 'cap': key 'outcomes' must be a list of strings, got int 1 in it",
        ),
        ([limit(threshold=None)], r"policy 'cap': missing required key 'threshold'"),
        (
            [limit(threshold=0)],
            r"policy 'cap': key 'threshold' must be an integer in \[1, 4294967295\], got 0",
        ),
        ([limit(threshold=-1)], r"key 'threshold' must be an integer in \[1, 4294967295\], got -1"),
        (
            [limit(threshold=2**32)],
            r"key 'threshold' must be an integer in \[1, 4294967295\], got 4294967296",
        ),
        ([limit(threshold=True)], r"policy 'cap': key 'threshold' must be an integer, got bool"),
        ([limit(threshold=1.0)], r"policy 'cap': key 'threshold' must be an integer, got float"),
        ([limit(window_days=None)], r"policy 'cap': missing required key 'window_days'"),
        ([limit(window_days=0)], r"policy 'cap': key 'window_days' must be finite and > 0, got 0"),
        ([limit(window_days=-1.5)], r"key 'window_days' must be finite and > 0, got -1.5"),
        ([limit(window_days=math.inf)], r"key 'window_days' must be finite and > 0, got inf"),
        ([limit(window_days=math.nan)], r"key 'window_days' must be finite and > 0, got nan"),
        ([limit(window_days=10**400)], r"key 'window_days' must be finite and > 0"),
        ([limit(window_days="7")], r"policy 'cap': key 'window_days' must be a number, got str"),
        ([limit(window_days=True)], r"policy 'cap': key 'window_days' must be a number, got bool"),
        (
            [suppress(suppress_days=None)],
            r"policy 'cooldown': missing required key 'suppress_days' \(kind 'suppress'\)",
        ),
        (
            [suppress(suppress_days=-1)],
            r"policy 'cooldown': key 'suppress_days' must be finite and >= 0, got -1",
        ),
        (
            [suppress(suppress_days=math.inf)],
            r"key 'suppress_days' must be finite and >= 0, got inf",
        ),
        (
            [suppress(suppress_days="60")],
            r"policy 'cooldown': key 'suppress_days' must be a number, got str",
        ),
        (
            [limit(suppress_days=3)],
            r"policy 'cap': key 'suppress_days' is only for kind 'suppress'",
        ),
        (
            [suppress(threshold_column="n")],
            r"policy 'cooldown': key 'threshold_column' is only for kind 'limit'",
        ),
        (
            [limit(threshold_column=3)],
            r"policy 'cap': key 'threshold_column' must be a string, got int",
        ),
    ],
)
def test_policy_config_errors(policies: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_policies(policies)
    with pytest.raises(ConfigError, match=message):
        Engine(CATALOG, policies=policies)
