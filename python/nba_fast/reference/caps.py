"""Volume caps in plain Python: the global greedy of DESIGN.md §3, stated as written.

Every surviving candidate of every customer is sorted by (priority desc, customer_id asc,
action_id asc) and taken in that order: accepted while its customer has fewer than
``max_per_customer`` accepted actions and every cap whose scope contains it has room. The Rust
engine reaches the same answer without the global sort; the property tests compare the two.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from nba_fast.config import VolumeCap
from nba_fast.reference.inputs import CustomerId

__all__ = ["Capped", "Ranked", "capped_stage", "greedy", "in_scope"]


class Ranked(Protocol):
    """What the caps read of a ranked candidate."""

    @property
    def action_id(self) -> str: ...
    @property
    def issue(self) -> str | None: ...
    @property
    def group(self) -> str | None: ...
    @property
    def channel(self) -> str | None: ...
    @property
    def priority(self) -> float: ...


def capped_stage(scope: str) -> str:
    """The funnel stage of the candidates cap `scope` turned down."""
    return f"capped:{scope}"


def in_scope(scope: str, candidate: Ranked) -> bool:
    """Whether `candidate` counts against a cap on `scope` (a NULL field matches nothing)."""
    if scope == "all":
        return True
    kind, _, name = scope.partition(":")
    field: Mapping[str, str | None] = {
        "channel": candidate.channel,
        "action": candidate.action_id,
        "group": candidate.group,
        "issue": candidate.issue,
    }
    return field[kind] == name


class Capped:
    """The outcome of the greedy: accepted (customer, rank) pairs and who turned down what.

    Attributes:
        accepted: the (customer_id, rank) of every accepted candidate.
        turned_down: (customer_id, rank) → the first cap, in the caps' order, that was full
            when the candidate came up.
        used: decisions per cap scope.
    """

    def __init__(self) -> None:
        self.accepted: set[tuple[Any, int]] = set()
        self.turned_down: dict[tuple[Any, int], str] = {}
        self.used: dict[str, int] = {}


def greedy(
    ranked: Mapping[CustomerId, Sequence[Ranked]],
    caps: Sequence[VolumeCap],
    max_per_customer: int,
    sort_key: Callable[[CustomerId], Any] = lambda c: c,
) -> Capped:
    """The global greedy over every customer's ranked candidates (rank = position + 1)."""
    everything = [
        (candidate, customer_id, rank)
        for customer_id, candidates in ranked.items()
        for rank, candidate in enumerate(candidates, start=1)
    ]
    # -0.0 and 0.0 compare equal, so they tie and fall to the customer and action ids.
    everything.sort(key=lambda t: (-t[0].priority, sort_key(t[1]), t[0].action_id))
    out = Capped()
    out.used = {cap.scope: 0 for cap in caps}
    taken: dict[CustomerId, int] = {}
    for candidate, customer_id, rank in everything:
        if taken.get(customer_id, 0) >= max_per_customer:
            continue
        mine = [cap for cap in caps if in_scope(cap.scope, candidate)]
        full = [cap.scope for cap in mine if out.used[cap.scope] >= cap.max]
        if full:
            out.turned_down[(customer_id, rank)] = full[0]
            continue
        out.accepted.add((customer_id, rank))
        taken[customer_id] = taken.get(customer_id, 0) + 1
        for cap in mine:
            out.used[cap.scope] += 1
    return out
