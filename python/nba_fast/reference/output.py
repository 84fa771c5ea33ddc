"""The two result tables: `decisions` and the `funnel`.

`Decision` is one accepted (customer, action); `decisions_table` orders them by customer_id,
then rank. `Funnel` counts, per action, what each keep stage kept and each drop stage dropped;
`Funnel.table` lays the counts out in the order of docs/semantics.md, with one drop stage
``suppressed:NAME`` per contact policy, in policy order, between ``contactable`` and
``not_suppressed``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import pyarrow as pa

from nba_fast.reference.inputs import CustomerId

__all__ = [
    "FUNNEL_SCHEMA",
    "STAGES",
    "Decision",
    "Funnel",
    "decisions_schema",
    "decisions_table",
    "suppressed_stage",
]

STAGES: tuple[tuple[str, bool], ...] = (
    ("candidate", True),
    ("inactive", False),
    ("ineligible", False),
    ("eligible", True),
    ("no_address", False),
    ("opted_out", False),
    ("do_not_contact", False),
    ("contactable", True),
    # Each contact policy's drop stage ``suppressed:NAME`` comes here (see `Funnel`).
    ("not_suppressed", True),
    ("no_propensity", False),
    ("top_choice", True),
    ("selected", True),
)
"""Every funnel stage in pipeline order, with True for keep stages (a row for every action,
zeros included) and False for drop reasons (rows only where the count is above zero)."""

FUNNEL_SCHEMA = pa.schema(
    [
        pa.field("stage", pa.string(), nullable=False),
        pa.field("action_id", pa.string(), nullable=False),
        pa.field("count", pa.int64(), nullable=False),
    ]
)


def decisions_schema(kind: str) -> pa.Schema:
    """The decisions schema for customer ids of `kind` (``"int"`` or ``"str"``)."""
    text = [pa.field(name, pa.string()) for name in ("issue", "group", "channel", "treatment")]
    floats = [
        pa.field(name, pa.float64(), nullable=False)
        for name in ("propensity", "value", "context_weight", "lever", "priority")
    ]
    id_type = pa.int64() if kind == "int" else pa.string()
    return pa.schema(
        [
            pa.field("customer_id", id_type, nullable=False),
            pa.field("action_id", pa.string(), nullable=False),
            *text,
            *floats,
            pa.field("rank", pa.int32(), nullable=False),
        ]
    )


@dataclass(frozen=True)
class Decision:
    """One accepted (customer, action) with everything the decisions table shows."""

    customer_id: CustomerId
    action_id: str
    issue: str | None
    group: str | None
    channel: str | None
    treatment: str | None
    propensity: float
    value: float
    context_weight: float
    lever: float
    priority: float
    rank: int


def decisions_table(decisions: Iterable[Decision], kind: str) -> pa.Table:
    """The decisions ordered by customer_id (numeric or byte order), then rank."""
    ordered = sorted(decisions, key=lambda d: (d.customer_id, d.rank))
    schema = decisions_schema(kind)
    columns = {name: [getattr(d, name) for d in ordered] for name in schema.names}
    return pa.Table.from_pydict(columns, schema=schema)


def suppressed_stage(policy_name: str) -> str:
    """The funnel stage of the candidates contact policy `policy_name` dropped."""
    return f"suppressed:{policy_name}"


class Funnel:
    """Per stage, per action, how many candidates it kept or dropped.

    Args:
        policy_names: the contact policies in order; each adds the drop stage
            ``suppressed:NAME`` right after ``contactable``.
        cap_scopes: the volume caps in order; with any, ``capped:SCOPE`` (drops), then
            ``capped_out`` (top choices turned down) and ``fallback`` (accepted below the top
            choices) come between ``top_choice`` and ``selected``.
    """

    def __init__(self, policy_names: Sequence[str] = (), cap_scopes: Sequence[str] = ()) -> None:
        self.stages: list[tuple[str, bool]] = []
        for stage, is_keep in STAGES:
            self.stages.append((stage, is_keep))
            if stage == "contactable":
                self.stages.extend((suppressed_stage(name), False) for name in policy_names)
            if stage == "top_choice" and cap_scopes:
                self.stages.extend((f"capped:{scope}", False) for scope in cap_scopes)
                self.stages.extend([("capped_out", True), ("fallback", True)])
        self.counts: dict[str, Counter[str]] = {stage: Counter() for stage, _ in self.stages}

    def count(self, stage: str, action_id: str) -> None:
        """Counts one candidate of `action_id` at `stage`."""
        self.counts[stage][action_id] += 1

    def table(self, action_ids: Sequence[str]) -> pa.Table:
        """The funnel rows: stages in pipeline order, then action ids in byte order."""
        rows: list[tuple[str, str, int]] = []
        for stage, is_keep in self.stages:
            for action_id in sorted(action_ids):  # str order is code point = UTF-8 byte order
                count = self.counts[stage][action_id]
                if is_keep or count > 0:
                    rows.append((stage, action_id, count))
        columns = {
            "stage": [r[0] for r in rows],
            "action_id": [r[1] for r in rows],
            "count": [r[2] for r in rows],
        }
        return pa.Table.from_pydict(columns, schema=FUNNEL_SCHEMA)
