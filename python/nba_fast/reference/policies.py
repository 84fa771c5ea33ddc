"""Contact policies (docs/semantics.md, "Contact policies"), read literally.

`read_history` checks the interaction history and groups its events by customer. `PolicyStage`
holds the policies of one call with their durations in whole microseconds; `first_drop` names
the first policy that drops a candidate. For each policy in order it gathers the events the
policy counts for the candidate, sorts their times and applies the definition as written:

- ``suppress``: dropped if some event t_j has at least N counted events in (t_j - W, t_j] and
  now < t_j + S;
- ``limit``: dropped if at least N' counted events lie in (now - W, now], N' being the
  customer's ``threshold_column`` value (N where that is NULL or there is no such column).

Nothing clever: quadratic loops over a customer's events are fine for an oracle.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.types as pat

from nba_fast._core import DataError, SchemaError
from nba_fast.config import ContactPolicy, duration_micros
from nba_fast.reference.inputs import (
    ALL_CHANNELS,
    CustomerId,
    column_values,
    customer_id_kind,
    customer_ids,
    is_text,
    read_table,
    show_id,
)

__all__ = [
    "HISTORY_TEXT_COLUMNS",
    "Event",
    "PolicyStage",
    "Target",
    "counted_times",
    "limit_drops",
    "read_history",
    "show_who",
    "suppress_drops",
]

HISTORY_TEXT_COLUMNS = ("action_id", "issue", "group", "channel", "outcome")
"""The history's string columns (NULL allowed: a NULL never matches)."""

_LEVEL_FIELDS = {"action": "action_id", "group": "group", "issue": "issue", "channel": "channel"}
"""The field an event must share with the candidate, per level (``customer``: none)."""


@dataclass(frozen=True)
class Event:
    """One history row: when, what, and the outcome (strings None where NULL)."""

    time: int
    action_id: str | None
    issue: str | None
    group: str | None
    channel: str | None
    outcome: str | None


@dataclass(frozen=True)
class Target:
    """What the policies see of a candidate: its action's id, group, issue and channel (None
    where an `arbitrate` row and the catalog both lack it)."""

    action_id: str
    group: str | None
    issue: str | None
    channel: str | None


def read_history(obj: Any, kind: str) -> dict[CustomerId, list[Event]]:
    """The interaction history, checked, as each customer's events (in input order).

    Every row is checked, also those after `now` and those of customers not being decided.

    Args:
        obj: any Arrow table or stream with customer_id, action_id, issue, group, channel,
            outcome and timestamp.
        kind: the kind (``"int"`` or ``"str"``) of the customers' ids.

    Raises:
        SchemaError: a column is missing; customer_id is not of the customers' kind; a string
            column is not strings; timestamp is not a timestamp type.
        DataError: a NULL customer_id or timestamp (naming the row, counted from 0).
    """
    what = "history"
    table = read_table(obj, what)
    names = table.schema.names
    for name in ("customer_id", "timestamp", *HISTORY_TEXT_COLUMNS):
        if name not in names:
            raise SchemaError(f"{what}: column {name!r} is missing")
    found = customer_id_kind(table, what)
    if found != kind:
        raise SchemaError(
            f"{what}: customer_id is {table.schema.field('customer_id').type} but the "
            f"customers' customer_id is {'an integer' if kind == 'int' else 'a string'}"
        )
    time_type = table.schema.field("timestamp").type
    if not pat.is_timestamp(time_type):
        raise SchemaError(f"{what}: column 'timestamp' must be a timestamp, got {time_type}")
    texts: dict[str, list[Any]] = {}
    for name in HISTORY_TEXT_COLUMNS:
        data_type = table.schema.field(name).type
        if not (is_text(data_type) or pat.is_null(data_type)):
            raise SchemaError(f"{what}: column {name!r} must be strings, got {data_type}")
        texts[name] = column_values(table.column(name))
    ids = customer_ids(table, what, kind)  # a NULL id is a DataError naming the row
    times = column_values(table.column("timestamp"))
    events: dict[CustomerId, list[Event]] = {}
    for row, (customer_id, time) in enumerate(zip(ids, times, strict=True)):
        if time is None:
            raise DataError(f"{what}: timestamp is null in row {row}")
        assert isinstance(time, int)
        event = Event(
            time=time,
            action_id=texts["action_id"][row],
            issue=texts["issue"][row],
            group=texts["group"][row],
            channel=texts["channel"][row],
            outcome=texts["outcome"][row],
        )
        events.setdefault(customer_id, []).append(event)
    return events


def _applies(policy: ContactPolicy, target: Target) -> bool:
    """A policy applies to candidates on its channel (all of them for ``*``)."""
    return policy.channel == ALL_CHANNELS or target.channel == policy.channel


def _shares(policy: ContactPolicy, event: Event, target: Target) -> bool:
    """Whether `event` shares the policy level's field with `target` (NULL matches nothing)."""
    if policy.level == "customer":
        return True
    field = _LEVEL_FIELDS[policy.level]
    mine, theirs = getattr(target, field), getattr(event, field)
    return mine is not None and theirs is not None and mine == theirs


def counted_times(
    policy: ContactPolicy, target: Target, events: Sequence[Event], now_us: int
) -> list[int]:
    """The sorted times of the events `policy` counts for a candidate showing `target`."""
    return sorted(
        event.time
        for event in events
        if event.time <= now_us
        and event.outcome is not None
        and event.outcome in policy.outcomes
        and (policy.channel == ALL_CHANNELS or event.channel == policy.channel)
        and _shares(policy, event, target)
    )


def suppress_drops(
    times: Sequence[int], threshold: int, window_us: int, suppress_us: int, now_us: int
) -> bool:
    """Some t_j with at least `threshold` times in (t_j - W, t_j] and now < t_j + S."""
    for t_j in times:
        within = sum(1 for t_i in times if t_j - window_us < t_i <= t_j)
        if within >= threshold and now_us < t_j + suppress_us:
            return True
    return False


def limit_drops(times: Sequence[int], threshold: int, window_us: int, now_us: int) -> bool:
    """At least `threshold` times in (now - W, now] (a threshold of 0 always drops)."""
    return sum(1 for t in times if now_us - window_us < t <= now_us) >= threshold


class PolicyStage:
    """The contact-policy stage of one `decide` or `arbitrate` call.

    Args:
        policies: validated policies, in the order they apply.
        history: the interaction history (any Arrow object), or None (no events). Validated
            whenever given, policies or not.
        kind: the kind of the customers' (or candidates') ids.
        now_us: the decision time; events after it are ignored.
    """

    def __init__(
        self, policies: Sequence[ContactPolicy], history: Any, kind: str, now_us: int
    ) -> None:
        self.policies = list(policies)
        self.now_us = now_us
        self.window_us = [duration_micros(p.window_days) for p in self.policies]
        self.suppress_us = [
            0 if p.suppress_days is None else duration_micros(p.suppress_days)
            for p in self.policies
        ]
        self.events: dict[CustomerId, list[Event]] = (
            {} if history is None else read_history(history, kind)
        )

    def threshold_columns(self, table: pa.Table, what: str) -> list[list[Any] | None]:
        """Per policy, the values of its ``threshold_column`` in `table` (None without one).

        Raises:
            SchemaError: the column is missing or not integers.
            DataError: a uint64 value above the int64 maximum.
        """
        columns: list[list[Any] | None] = []
        for policy in self.policies:
            name = policy.threshold_column
            if name is None:
                columns.append(None)
                continue
            about = f"column {name!r} (threshold_column of policy {policy.name!r})"
            if name not in table.schema.names:
                raise SchemaError(f"{what}: {about} is missing")
            data_type = table.schema.field(name).type
            value_type = data_type.value_type if pat.is_dictionary(data_type) else data_type
            if not (pat.is_integer(value_type) or pat.is_null(value_type)):
                raise SchemaError(f"{what}: {about} must be integers, got {data_type}")
            try:
                columns.append(column_values(table.column(name)))
            except DataError as err:
                raise DataError(f"{what}: {about}: {err}") from err
        return columns

    def thresholds(
        self, columns: Sequence[list[Any] | None], row: int, who: str, what: str
    ) -> list[int]:
        """Each policy's N for table row `row`; `who` names the customer (and action).

        Raises:
            DataError: a threshold_column value below 0.
        """
        found: list[int] = []
        for policy, column in zip(self.policies, columns, strict=True):
            value = None if column is None else column[row]
            if value is None:
                found.append(policy.threshold)
                continue
            assert isinstance(value, int)
            if value < 0:
                raise DataError(
                    f"{what}: {who}: column {policy.threshold_column!r} (threshold_column of "
                    f"policy {policy.name!r}) is {value}, which must be >= 0"
                )
            found.append(value)
        return found

    def first_drop(
        self, customer_id: CustomerId, target: Target, thresholds: Sequence[int]
    ) -> str | None:
        """The name of the first policy that drops this candidate, or None."""
        events = self.events.get(customer_id, [])
        for p, policy in enumerate(self.policies):
            if not _applies(policy, target):
                continue
            times = counted_times(policy, target, events, self.now_us)
            if policy.kind == "suppress":
                dropped = suppress_drops(
                    times, policy.threshold, self.window_us[p], self.suppress_us[p], self.now_us
                )
            else:
                dropped = limit_drops(times, thresholds[p], self.window_us[p], self.now_us)
            if dropped:
                return policy.name
        return None


def show_who(customer_id: CustomerId, action_id: str | None = None) -> str:
    """``customer 7`` or ``customer 7, action 'gold'``, as error messages write it."""
    who = f"customer {show_id(customer_id)}"
    return who if action_id is None else f"{who}, action {action_id!r}"
