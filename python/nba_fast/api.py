"""The public `Engine`: a thin, typed layer over the Rust core (`nba_fast._core`).

It normalises arguments (catalog forms, `now`, propensity forms), hands Arrow objects to Rust
through the PyCapsule interface and returns pyarrow tables. It never loops over rows.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa

from nba_fast import _core
from nba_fast._core import ConfigError, SchemaError
from nba_fast.config import (
    ContactPolicy,
    VolumeCap,
    catalog_to_arrow,
    load_caps,
    load_catalog,
    load_policies,
    to_epoch_micros,
)

__all__ = ["ALLOCATIONS", "AllocationReport", "DecisionResult", "Engine"]

ALLOCATIONS: tuple[str, ...] = ("greedy", "optimal")
"""How decisions are allocated under volume caps."""


@dataclass(frozen=True)
class AllocationReport:
    """How the volume caps were settled.

    Attributes:
        method: ``greedy`` or ``optimal``.
        objective: total priority (expected value) of the decisions.
        greedy_objective: the total the plain greedy reaches on the same candidates.
        dual_bound: for ``optimal``, an upper bound on the total of any allocation within the
            caps (the Lagrangian dual); None for ``greedy``.
        gap: for ``optimal``, ``(dual_bound - objective) / dual_bound``: the certified
            distance from the optimum; None for ``greedy``.
        passes: passes over the candidates the price search made.
        usage: (``scope``, ``max``, ``used``) per cap, in the caps' order.
    """

    method: str
    objective: float
    greedy_objective: float
    dual_bound: float | None
    gap: float | None
    passes: int
    usage: pa.Table


@dataclass(frozen=True)
class DecisionResult:
    """What a run decided.

    Attributes:
        decisions: one row per accepted (customer, action), ordered by customer then rank.
        funnel: (stage, action_id, count) rows: what each stage kept and why the rest dropped.
        allocation: how the volume caps were settled; None without caps.
        timings: wall-clock seconds per stage of the Rust engine, in order (empty where the
            engine does not time stages, as in `arbitrate` and `nba_fast.reference`).
    """

    decisions: pa.Table
    funnel: pa.Table
    allocation: AllocationReport | None = None
    timings: Mapping[str, float] = field(default_factory=dict)


def _propensity_columns(mapping: Mapping[Any, Any]) -> list[tuple[str, str]]:
    """``{action_id: column}`` as pairs; a key or value that is not a string is a
    `SchemaError`."""
    pairs: list[tuple[str, str]] = []
    for action, column in mapping.items():
        if not isinstance(action, str) or not isinstance(column, str):
            raise SchemaError(
                "propensities: a mapping must map action ids to column names (strings), got "
                f"{action!r}: {column!r}"
            )
        pairs.append((action, column))
    return pairs


def _result(raw: Mapping[str, Any]) -> DecisionResult:
    """The `DecisionResult` of the dict `_core.Engine` returns."""
    report = raw.get("allocation")
    allocation = None if report is None else AllocationReport(**report)
    return DecisionResult(
        decisions=raw["decisions"],
        funnel=raw["funnel"],
        allocation=allocation,
        timings=dict(raw.get("timings", {})),
    )


def _arrow(obj: Any, name: str) -> Any:
    """Returns `obj` as something the Rust side reads through the Arrow PyCapsule interface."""
    if hasattr(obj, "__arrow_c_stream__") or hasattr(obj, "__arrow_c_array__"):
        return obj
    for method in ("to_arrow", "arrow"):  # older duckdb relations, pandas-like wrappers
        convert = getattr(obj, method, None)
        if callable(convert):
            return convert()
    if type(obj).__name__ == "DataFrame" and hasattr(obj, "columns"):  # pandas
        return pa.Table.from_pandas(obj, preserve_index=False)
    raise SchemaError(
        f"{name}: expected an Arrow table, record batch or stream "
        f"(pyarrow, polars, duckdb, …), got {type(obj).__name__}"
    )


class Engine:
    """The next-best-action engine: a catalog compiled once, then `decide` per run.

    Args:
        catalog: a TOML file path, an Arrow table with the action fields, or a list of dicts.
        policies: contact policies (dicts with the keys of docs/semantics.md, or
            `ContactPolicy`), applied in order over the interaction history.
        caps: volume caps (dicts with ``scope`` and ``max``, or `VolumeCap`): per-run limits
            on ``all``, ``channel:NAME``, ``action:ID``, ``group:NAME``, ``issue:NAME``.
        allocation: ``greedy`` (DESIGN.md §3: candidates by priority, each customer falling
            back to their next best with room) or ``optimal`` (the most total priority within
            the caps, by Lagrangian prices; never below greedy; see `AllocationReport`).
        max_per_customer: actions selected per customer (rank <= this).
        threads: worker threads (default: ``NBA_FAST_THREADS`` or the number of cores).
        batch_rows: largest slice of customers decided as one task (a tuning knob; the output
            does not depend on it).

    Example:
        >>> import pyarrow as pa
        >>> import nba_fast as nba
        >>> engine = nba.Engine([
        ...     {"id": "gold", "issue": "Sales", "group": "Cards", "channel": "email",
        ...      "value": 2.0, "eligibility": "age >= 18"},
        ...     {"id": "loan", "issue": "Sales", "group": "Loans", "channel": "email"},
        ... ])
        >>> customers = pa.table({"customer_id": [1, 2], "age": [30, 16],
        ...                       "email": ["a@x.com", "b@x.com"]})
        >>> result = engine.decide(customers, propensities=pa.table({
        ...     "customer_id": [1, 1, 2], "action_id": ["gold", "loan", "loan"],
        ...     "propensity": [0.1, 0.15, 0.3]}))
        >>> result.decisions.column("action_id").to_pylist()
        ['gold', 'loan']
        >>> result.decisions.column("priority").to_pylist()
        [0.2, 0.3]
    """

    def __init__(
        self,
        catalog: str | os.PathLike[str] | pa.Table | Sequence[Mapping[str, Any]] | None,
        *,
        policies: Sequence[Mapping[str, Any] | ContactPolicy] | None = None,
        caps: Sequence[Mapping[str, Any] | VolumeCap] | None = None,
        allocation: str = "greedy",
        max_per_customer: int = 1,
        threads: int | None = None,
        batch_rows: int = 32_768,
    ) -> None:
        if allocation not in ALLOCATIONS:
            raise ConfigError(f"allocation must be 'greedy' or 'optimal', got {allocation!r}")
        for name, value in (("max_per_customer", max_per_customer), ("batch_rows", batch_rows)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")
        if threads is not None and (
            isinstance(threads, bool) or not isinstance(threads, int) or threads < 1
        ):
            raise ConfigError(f"threads must be an integer >= 1 or None, got {threads!r}")
        self.actions = load_catalog(catalog) if catalog is not None else []
        self.policies = load_policies(policies)
        self.caps = load_caps(caps)
        self.allocation = allocation
        self.max_per_customer = max_per_customer
        self._engine = _core.Engine(
            catalog_to_arrow(self.actions),
            policies=self.policies,
            caps=[(cap.scope, cap.max) for cap in self.caps],
            allocation=allocation,
            max_per_customer=max_per_customer,
            batch_rows=batch_rows,
            threads=threads,
        )

    def decide(
        self,
        customers: Any,
        *,
        propensities: Any = None,
        history: Any = None,
        do_not_contact: Any = None,
        now: datetime | None = None,
    ) -> DecisionResult:
        """Decides the next-best action(s) for every customer.

        Args:
            customers: one row per customer (any Arrow table or stream): ``customer_id`` plus
                the columns the rules and channels need.
            propensities: a long table (``customer_id``, ``action_id``, ``propensity``), a
                2-D array (customers x actions, catalog order), or a mapping
                ``{action_id: column}`` naming columns of ``customers`` that hold each
                action's propensity (read batch by batch as the customers stream, so a scoring
                job's wide output needs no second copy; an action left out, or a null, takes
                the default propensity); ``None`` uses default propensities.
            history: interaction history (``customer_id``, ``action_id``, ``issue``,
                ``group``, ``channel``, ``outcome``, ``timestamp``) read by the contact policies:
                any Arrow table or stream, read batch by batch and keeping only the events some
                policy counts (a stream, e.g. Parquet row groups, need not fit in memory).
            do_not_contact: ``channel`` with ``customer_id`` and/or ``address``.
            now: the decision time (naive = UTC); default: the current time.

        Returns:
            The decisions and the funnel.
        """
        if not self.actions:
            raise ConfigError("decide needs a catalog with at least one action")
        table: Any = None
        matrix: np.ndarray[Any, np.dtype[np.float64]] | None = None
        columns: list[tuple[str, str]] | None = None
        if isinstance(propensities, Mapping):
            columns = _propensity_columns(propensities)
        elif isinstance(propensities, np.ndarray):
            if propensities.ndim != 2:
                raise SchemaError(
                    f"propensities: a propensity array must be 2-D, got {propensities.ndim}-D"
                )
            if propensities.dtype.kind not in "iuf":
                raise SchemaError(
                    f"propensities: array must be numeric, got dtype {propensities.dtype}"
                )
            matrix = np.ascontiguousarray(propensities, dtype=np.float64)
        elif propensities is not None:
            table = _arrow(propensities, "propensities")
        raw = self._engine.decide(
            _arrow(customers, "customers"),
            now_us=to_epoch_micros(now),
            propensities=table,
            propensity_matrix=matrix,
            propensity_columns=columns,
            do_not_contact=None
            if do_not_contact is None
            else _arrow(do_not_contact, "do_not_contact"),
            history=None if history is None else _arrow(history, "history"),
        )
        return _result(raw)

    def arbitrate(
        self, candidates: Any, *, history: Any = None, now: datetime | None = None
    ) -> DecisionResult:
        """Ranks already-expanded candidates (Pega's shape) and selects per customer.

        Args:
            candidates: ``customer_id``, ``action_id``, ``propensity`` and optional ``value``,
                ``context_weight``, ``lever``, ``issue``, ``group``, ``channel``, ``treatment``
                overriding the catalog.
            history: interaction history read by the contact policies (any Arrow table or
                stream, read batch by batch, as in `decide`).
            now: the decision time (naive = UTC); default: the current time.

        Returns:
            The decisions and the funnel.
        """
        raw = self._engine.arbitrate(
            _arrow(candidates, "candidates"),
            now_us=to_epoch_micros(now),
            history=None if history is None else _arrow(history, "history"),
        )
        return _result(raw)
