"""The reference `Engine`: DESIGN.md §3-4 and docs/semantics.md in plain Python.

`decide` walks every customer x catalog action through the stages in order (activity,
eligibility, contactability, contact policies, propensity); the first stage that rejects a
candidate is its one drop reason. The survivors are scored by
``((propensity * value) * context_weight) * lever``, ranked within the customer by priority
descending and action_id ascending, and the top ``max_per_customer`` are selected.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa

from nba_fast._core import ConfigError, DataError, RuleError
from nba_fast.config import (
    Action,
    ContactPolicy,
    VolumeCap,
    load_caps,
    load_catalog,
    load_policies,
    to_epoch_micros,
)
from nba_fast.reference.bind import bind_rule
from nba_fast.reference.caps import capped_stage, greedy
from nba_fast.reference.contact import Contactability
from nba_fast.reference.evaluate import Value, evaluate
from nba_fast.reference.inputs import (
    CandidateRow,
    CustomerId,
    bind_propensity_columns,
    check_propensity_array,
    column_values,
    customer_id_kind,
    customer_ids,
    read_candidates,
    read_long_propensities,
    read_propensity_columns,
    read_propensity_matrix,
    read_table,
    show_id,
)
from nba_fast.reference.output import Decision, Funnel, decisions_table, suppressed_stage
from nba_fast.reference.policies import PolicyStage, Target, show_who
from nba_fast.reference.rules import Expr, RuleSyntaxError, parse_rule

__all__ = ["Engine", "Result"]


@dataclass(frozen=True)
class Result:
    """What a run decided.

    Attributes:
        decisions: one row per accepted (customer, action), ordered by customer_id, then rank.
        funnel: (stage, action_id, count) rows.
    """

    decisions: pa.Table
    funnel: pa.Table


@dataclass(frozen=True)
class _Scored:
    """A candidate that reached ranking, with everything its decision row shows."""

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

    def accept(self, customer_id: CustomerId, rank: int) -> Decision:
        """The decision row of this candidate at `rank` for `customer_id`."""
        return Decision(
            customer_id=customer_id,
            action_id=self.action_id,
            issue=self.issue,
            group=self.group,
            channel=self.channel,
            treatment=self.treatment,
            propensity=self.propensity,
            value=self.value,
            context_weight=self.context_weight,
            lever=self.lever,
            priority=self.priority,
            rank=rank,
        )


def priority(propensity: float, value: float, context_weight: float, lever: float) -> float:
    """Pega's priority, multiplied in exactly this order (IEEE-754 doubles)."""
    return ((propensity * value) * context_weight) * lever


def _ranked(scored: Sequence[_Scored]) -> list[_Scored]:
    """Priority descending, ties by action_id ascending (code point order = UTF-8 bytes)."""
    return sorted(scored, key=lambda s: (-s.priority, s.action_id))


def _rule_context(action: Action) -> str:
    return f"action {action.id!r}: eligibility rule {action.eligibility!r}"


class Engine:
    """The next-best-action engine in plain Python: the oracle of the Rust engine.

    Args:
        catalog: a TOML file path, an Arrow table with the action fields, a list of dicts
            (see `nba_fast.config.load_catalog`), or None (only for `arbitrate`).
        policies: contact policies, dicts or `ContactPolicy` objects (see
            `nba_fast.config.load_policies`), applied in order.
        caps: volume caps, dicts or `VolumeCap` objects (see `nba_fast.config.load_caps`),
            settled by the global greedy (`nba_fast.reference.caps`).
        allocation: ``greedy`` only: the optimal allocation of the Rust engine is checked
            against an exact MIP solver instead.
        max_per_customer: actions selected per customer (rank <= this), at least 1.

    Raises:
        ConfigError: a bad policy or cap, allocation other than greedy, max_per_customer < 1,
            or a bad catalog.
        RuleError: an eligibility rule does not parse.

    Example:
        >>> import pyarrow as pa
        >>> engine = Engine([
        ...     {"id": "gold", "issue": "Sales", "group": "Cards", "channel": "email",
        ...      "value": 2.0, "eligibility": "age >= 18"},
        ...     {"id": "loan", "issue": "Sales", "group": "Loans", "channel": "email"},
        ... ])
        >>> customers = pa.table({"customer_id": [1, 2], "age": [30, 16],
        ...                       "email": ["a@x.com", "b@x.com"]})
        >>> result = engine.decide(customers, propensities=pa.table({
        ...     "customer_id": [1, 1, 2], "action_id": ["gold", "loan", "loan"],
        ...     "propensity": [0.1, 0.15, 0.3]}))
        >>> result.decisions.select(["customer_id", "action_id", "priority"]).to_pylist()
        [{'customer_id': 1, 'action_id': 'gold', 'priority': 0.2}, \
{'customer_id': 2, 'action_id': 'loan', 'priority': 0.3}]
    """

    def __init__(
        self,
        catalog: Any,
        *,
        policies: Sequence[Mapping[str, Any] | ContactPolicy] | None = None,
        caps: Sequence[Mapping[str, Any] | VolumeCap] | None = None,
        allocation: str = "greedy",
        max_per_customer: int = 1,
    ) -> None:
        self.policies: list[ContactPolicy] = load_policies(policies)
        self.caps: list[VolumeCap] = load_caps(caps)
        if allocation != "greedy":
            raise ConfigError(
                f"allocation {allocation!r}: the reference implements the greedy only"
            )
        if (
            isinstance(max_per_customer, bool)
            or not isinstance(max_per_customer, int)
            or max_per_customer < 1
        ):
            raise ConfigError(f"max_per_customer must be an integer >= 1, got {max_per_customer!r}")
        self.max_per_customer = max_per_customer
        self.actions: list[Action] = load_catalog(catalog) if catalog is not None else []
        self.catalog: dict[str, Action] = {action.id: action for action in self.actions}
        # None stands for TRUE (no rule, or an empty one).
        self.rules: list[Expr | None] = [self._parse(action) for action in self.actions]
        known = {action.id for action in self.actions}
        for cap in self.caps:
            kind, _, name = cap.scope.partition(":")
            if self.actions and kind == "action" and name not in known:
                raise ConfigError(f"caps: scope {cap.scope!r} names no action of the catalog")

    def _select(
        self,
        ranked: Mapping[CustomerId, list[_Scored]],
        funnel: Funnel,
        sort_key: Callable[[CustomerId], Any] = lambda c: c,
    ) -> list[Decision]:
        """Top `max_per_customer` per customer, or without caps the global greedy."""
        decisions: list[Decision] = []
        top = self.max_per_customer
        if not self.caps:
            for customer_id, scored in ranked.items():
                for rank, best in enumerate(scored[:top], start=1):
                    funnel.count("top_choice", best.action_id)
                    funnel.count("selected", best.action_id)
                    decisions.append(best.accept(customer_id, rank))
            return decisions
        capped = greedy(ranked, self.caps, top, sort_key)
        for customer_id, scored in ranked.items():
            for rank, candidate in enumerate(scored, start=1):
                action_id = candidate.action_id
                if rank <= top:
                    funnel.count("top_choice", action_id)
                scope = capped.turned_down.get((customer_id, rank))
                if scope is not None:
                    funnel.count(capped_stage(scope), action_id)
                if (customer_id, rank) in capped.accepted:
                    funnel.count("selected", action_id)
                    if rank > top:
                        funnel.count("fallback", action_id)
                    decisions.append(candidate.accept(customer_id, rank))
                elif rank <= top:
                    funnel.count("capped_out", action_id)
        return decisions

    @staticmethod
    def _parse(action: Action) -> Expr | None:
        source = action.eligibility
        if source is None or not source.strip():
            return None
        try:
            return parse_rule(source)
        except RuleSyntaxError as err:
            raise RuleError(f"{_rule_context(action)} does not parse: {err}") from err

    def decide(
        self,
        customers: Any,
        *,
        propensities: Any = None,
        history: Any = None,
        do_not_contact: Any = None,
        now: datetime | None = None,
    ) -> Result:
        """Decides the next-best action(s) for every customer.

        Args:
            customers: one row per customer (any Arrow table or stream).
            propensities: a long table (customer_id, action_id, propensity), a 2-D array
                (customers x catalog actions), a mapping {action_id: column} naming numeric
                columns of `customers`, or None (default propensities only).
            history: interaction history (customer_id, action_id, issue, group, channel,
                outcome, timestamp) that the contact policies count; checked whenever given.
            do_not_contact: a table of channel with customer_id and/or address.
            now: the decision time (naive = UTC); default: the current time.

        Returns:
            The decisions and the funnel.

        Raises:
            ConfigError: the engine has no catalog.
            SchemaError: a missing or mistyped column.
            RuleError: a rule names an unknown column or mixes types.
            DataError: a bad value (null or duplicate customer_id, a propensity outside
                [0, 1], an int64 overflow in a rule, a negative threshold_column value, a
                non-finite priority, a NULL history customer_id or timestamp, ...).
        """
        if not self.actions:
            raise ConfigError("decide needs a catalog with at least one action")
        if isinstance(propensities, np.ndarray):
            check_propensity_array(propensities)
        now_us = to_epoch_micros(now)
        table = read_table(customers, "customers")
        kind = customer_id_kind(table, "customers")
        bound: list[Expr | None] = []
        read_columns: set[str] = set()
        for action, rule in zip(self.actions, self.rules, strict=True):
            if rule is None:
                bound.append(None)
                continue
            bound_rule, rule_columns = bind_rule(rule, table.schema, _rule_context(action))
            bound.append(bound_rule)
            read_columns |= rule_columns
        contact = Contactability(self.actions, table, do_not_contact, kind)
        policies = PolicyStage(self.policies, history, kind, now_us)
        threshold_columns = policies.threshold_columns(table, "customers")
        given: dict[tuple[CustomerId, str], float] = {}
        if propensities is not None and not isinstance(propensities, (np.ndarray, Mapping)):
            given = read_long_propensities(propensities, self.actions, kind)
        bound_columns = None
        if isinstance(propensities, Mapping):
            bound_columns = bind_propensity_columns(table, propensities, self.actions)
        ids = customer_ids(table, "customers")
        if isinstance(propensities, np.ndarray):
            given = read_propensity_matrix(propensities, self.actions, ids)
        if bound_columns is not None:
            given = read_propensity_columns(bound_columns, self.actions, ids)
        _check_unique(ids)
        try:
            columns = {name: column_values(table.column(name)) for name in sorted(read_columns)}
        except DataError as err:
            raise DataError(f"customers: {err}") from err

        funnel = Funnel([policy.name for policy in self.policies], [c.scope for c in self.caps])
        ranked: dict[CustomerId, list[_Scored]] = {}
        active = [_is_active(action, now_us) for action in self.actions]
        for row, customer_id in enumerate(ids):
            values = {name: column[row] for name, column in columns.items()}
            # Every rule is evaluated for every customer, so an overflow raises whatever `now`.
            outcomes = [
                self._eligible(action, rule, values, now_us, customer_id)
                for action, rule in zip(self.actions, bound, strict=True)
            ]
            thresholds = policies.thresholds(
                threshold_columns, row, show_who(customer_id), "customers"
            )
            scored: list[_Scored] = []
            for a, action in enumerate(self.actions):
                funnel.count("candidate", action.id)
                if not active[a]:
                    funnel.count("inactive", action.id)
                    continue
                if outcomes[a] is not True:  # FALSE or NULL
                    funnel.count("ineligible", action.id)
                    continue
                funnel.count("eligible", action.id)
                reason = contact.drop_reason(row, customer_id, action.channel)
                if reason is not None:
                    funnel.count(reason, action.id)
                    continue
                funnel.count("contactable", action.id)
                target = Target(action.id, action.group, action.issue, action.channel)
                dropped_by = policies.first_drop(customer_id, target, thresholds)
                if dropped_by is not None:
                    funnel.count(suppressed_stage(dropped_by), action.id)
                    continue
                funnel.count("not_suppressed", action.id)
                p = given.get((customer_id, action.id), action.default_propensity)
                if p is None:
                    funnel.count("no_propensity", action.id)
                    continue
                texts = (action.issue, action.group, action.channel, action.treatment)
                factors = (action.value, action.context_weight, action.lever)
                scored.append(_score(customer_id, action.id, texts, p, factors, "customers"))
            ranked[customer_id] = _ranked(scored)
        decisions = self._select(ranked, funnel, _id_key)
        return Result(
            decisions=decisions_table(decisions, kind),
            funnel=funnel.table([action.id for action in self.actions]),
        )

    @staticmethod
    def _eligible(
        action: Action,
        rule: Expr | None,
        values: Mapping[str, Value],
        now_us: int,
        customer_id: CustomerId,
    ) -> Value:
        if rule is None:
            return True
        try:
            return evaluate(rule, values, now_us)
        except DataError as err:
            raise DataError(
                f"{_rule_context(action)}, customer {show_id(customer_id)}: {err}"
            ) from err

    def arbitrate(
        self, candidates: Any, *, history: Any = None, now: datetime | None = None
    ) -> Result:
        """Applies the contact policies to already-expanded candidates (Pega's shape), ranks
        the rest and selects per customer.

        The candidates are taken as eligible and contactable; the catalog only supplies what a
        row leaves NULL or out (factors default to 1.0, strings to NULL without it). A
        policy's ``threshold_column`` is read from each candidate row.

        Args:
            candidates: customer_id, action_id, propensity, and optional value,
                context_weight, lever, issue, group, channel, treatment.
            history: interaction history that the contact policies count (see `decide`).
            now: the decision time (naive = UTC); default: the current time.

        Returns:
            The decisions and the funnel (over the actions the candidates name).

        Raises:
            SchemaError: a missing or mistyped column.
            DataError: a null customer_id or action_id, a duplicate pair, a propensity outside
                [0, 1], a negative or non-finite factor, a negative threshold_column value, a
                non-finite priority, a NULL history customer_id or timestamp.
        """
        now_us = to_epoch_micros(now)
        table = read_table(candidates, "candidates")
        rows, kind = read_candidates(table)
        policies = PolicyStage(self.policies, history, kind, now_us)
        threshold_columns = policies.threshold_columns(table, "candidates")
        by_customer: dict[CustomerId, list[tuple[int, CandidateRow]]] = {}
        for row, candidate in enumerate(rows):
            by_customer.setdefault(candidate.customer_id, []).append((row, candidate))
        funnel = Funnel([policy.name for policy in self.policies], [c.scope for c in self.caps])
        ranked: dict[CustomerId, list[_Scored]] = {}
        for customer_id, customer_rows in by_customer.items():
            scored: list[_Scored] = []
            for row, candidate in customer_rows:
                action_id = candidate.action_id
                for stage in ("candidate", "eligible", "contactable"):
                    funnel.count(stage, action_id)
                action = self.catalog.get(action_id)
                thresholds = policies.thresholds(
                    threshold_columns, row, show_who(customer_id, action_id), "candidates"
                )
                # The row's own group / issue / channel, else the catalog action's, else NULL.
                target = Target(
                    action_id,
                    candidate.group if candidate.group is not None else _field(action, "group"),
                    candidate.issue if candidate.issue is not None else _field(action, "issue"),
                    candidate.channel
                    if candidate.channel is not None
                    else _field(action, "channel"),
                )
                dropped_by = policies.first_drop(customer_id, target, thresholds)
                if dropped_by is not None:
                    funnel.count(suppressed_stage(dropped_by), action_id)
                    continue
                funnel.count("not_suppressed", action_id)
                p = candidate.propensity
                if p is None and action is not None:
                    p = action.default_propensity
                if p is None:
                    funnel.count("no_propensity", action_id)
                    continue
                # A row's own value wins; else the catalog action's; else 1.0 / NULL.
                row_factors = (candidate.value, candidate.context_weight, candidate.lever)
                row_texts = (
                    candidate.issue,
                    candidate.group,
                    candidate.channel,
                    candidate.treatment,
                )
                if action is None:
                    catalog_factors: tuple[float, ...] = (1.0, 1.0, 1.0)
                    catalog_texts: tuple[str | None, ...] = (None, None, None, None)
                else:
                    catalog_factors = (action.value, action.context_weight, action.lever)
                    catalog_texts = (action.issue, action.group, action.channel, action.treatment)
                factors = [
                    mine if mine is not None else default
                    for mine, default in zip(row_factors, catalog_factors, strict=True)
                ]
                texts = [
                    mine if mine is not None else default
                    for mine, default in zip(row_texts, catalog_texts, strict=True)
                ]
                scored.append(_score(customer_id, action_id, texts, p, factors, "candidates"))
            ranked[customer_id] = _ranked(scored)
        decisions = self._select(ranked, funnel, _id_key)
        action_ids = sorted({candidate.action_id for candidate in rows})
        return Result(decisions=decisions_table(decisions, kind), funnel=funnel.table(action_ids))


def _id_key(customer_id: CustomerId) -> Any:
    """Customer ids in output order: numbers numerically, strings by UTF-8 bytes."""
    return customer_id.encode() if isinstance(customer_id, str) else customer_id


def _field(action: Action | None, name: str) -> str | None:
    """A catalog action's group, issue or channel; None without the action."""
    return None if action is None else str(getattr(action, name))


def _is_active(action: Action, now_us: int) -> bool:
    """``active_from <= now < active_until``, a missing bound being open."""
    if action.active_from is not None and now_us < to_epoch_micros(action.active_from):
        return False
    return action.active_until is None or now_us < to_epoch_micros(action.active_until)


def _score(
    customer_id: CustomerId,
    action_id: str,
    texts: Sequence[str | None],
    propensity: float,
    factors: Sequence[float],
    what: str,
) -> _Scored:
    """Scores a candidate: ((propensity * value) * context_weight) * lever, finite."""
    issue, group, channel, treatment = texts
    value, context_weight, lever = factors
    product = priority(propensity, value, context_weight, lever)
    if not math.isfinite(product):
        raise DataError(
            f"{what}: customer {show_id(customer_id)}, action {action_id!r}: priority "
            f"(({propensity} * {value}) * {context_weight}) * {lever} is not finite"
        )
    return _Scored(
        action_id,
        issue,
        group,
        channel,
        treatment,
        propensity,
        value,
        context_weight,
        lever,
        product,
    )


def _check_unique(ids: Sequence[CustomerId]) -> None:
    seen: set[CustomerId] = set()
    for customer_id in ids:
        if customer_id in seen:
            raise DataError(f"customers: customer_id {show_id(customer_id)} appears more than once")
        seen.add(customer_id)
