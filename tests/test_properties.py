"""Properties: the Rust engine against the reference, DuckDB and the invariants of DESIGN.md.

- `nba_fast.Engine` and `nba_fast.reference.Engine` return identical results (or raise the same
  exception class) on random customers, catalogs, rules, propensities and do-not-contact lists,
  and on random `arbitrate` candidates.
- Rule evaluation agrees with DuckDB (the arbiter of docs/semantics.md) on random rules.
- Whatever the engine: at most `max_per_customer` decisions per customer, every decision active,
  eligible (by DuckDB) and contactable, ranks in order, a consistent funnel.
- The Rust engine's output does not depend on threads, batch size or how customers are batched.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from datetime import timedelta
from typing import Any

import duckdb
import nba_fast
import nba_fast.reference
import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, note
from hypothesis import strategies as st
from nba_fast import DataError, NbaFastError, RuleError

from tests.conftest import NOW, assert_same_result, batches_of, funnel_rows, guarded
from tests.strategies import (
    Scenario,
    candidates,
    customers,
    faulty_rule,
    grammar_for,
    scenarios,
)

RUST = nba_fast.Engine
REFERENCE = nba_fast.reference.Engine

KEEP_STAGES = ["candidate", "eligible", "contactable", "not_suppressed", "top_choice", "selected"]
STAGE_ORDER = [
    "candidate",
    "inactive",
    "ineligible",
    "eligible",
    "no_address",
    "opted_out",
    "do_not_contact",
    "contactable",
    "not_suppressed",
    "no_propensity",
    "top_choice",
    "selected",
]
ADDRESS_COLUMN = {"email": "email", "sms": "phone"}


def describe(outcome: Any) -> str:
    if isinstance(outcome, NbaFastError):
        return f"{type(outcome).__name__}: {outcome}"
    return f"a result with {outcome.decisions.num_rows} decisions"


def assert_same_outcome(rust: Any, reference: Any) -> None:
    """Identical results, or errors of the same class."""
    rust_failed = isinstance(rust, NbaFastError)
    reference_failed = isinstance(reference, NbaFastError)
    if rust_failed or reference_failed:
        assert type(rust) is type(reference), (
            f"rust gave {describe(rust)}; reference gave {describe(reference)}"
        )
    else:
        assert_same_result(rust, reference)


def run(scenario: Scenario, engine_cls: Any, **options: Any) -> Any:
    """The scenario's decide on `engine_cls`, or the NbaFastError it raised (Engine() too)."""
    return guarded(lambda: scenario.decide(scenario.engine(engine_cls, **options)))


def show(scenario: Scenario) -> None:
    note(f"customers:\n{scenario.people.table}")
    note(f"catalog: {scenario.catalog.actions}")
    props = scenario.propensities
    note(
        "propensities:\n"
        f"{props if isinstance(props, (np.ndarray, dict)) else props and props.to_pylist()}"
    )
    dnc = scenario.do_not_contact
    note(f"do_not_contact: {None if dnc is None else dnc.to_pylist()}")
    note(f"max_per_customer={scenario.max_per_customer} now={scenario.now_arg!r}")


# --- the Rust engine agrees with the reference ---------------------------------------------


@given(scenarios())
def test_decide_matches_reference(scenario: Scenario) -> None:
    show(scenario)
    assert_same_outcome(run(scenario, RUST), run(scenario, REFERENCE))


@given(scenarios(), faulty_rule(), st.data())
def test_faulty_rules_fail_alike(scenario: Scenario, fault: tuple[str, str], data: Any) -> None:
    """One action's rule has one fault; both engines raise the class its kind calls for, at
    the same step (building the Engine, or deciding) — also when that action is inactive."""
    text, where = fault
    victim = data.draw(st.sampled_from(scenario.catalog.actions))
    victim["eligibility"] = text
    show(scenario)
    outcomes = {}
    for name, engine_cls in (("rust", RUST), ("reference", REFERENCE)):
        built = guarded(lambda engine_cls=engine_cls: scenario.engine(engine_cls))
        if where == "build":
            assert type(built) is RuleError, f"{name}: Engine() gave {built!r} for {text!r}"
            assert victim["id"] in str(built), f"{name}: the error does not name the action"
            continue
        assert not isinstance(built, NbaFastError), f"{name}: Engine() raised {built!r}"
        outcomes[name] = guarded(lambda built=built: scenario.decide(built))
    if where == "build":
        return
    assert_same_outcome(outcomes["rust"], outcomes["reference"])
    for name, outcome in outcomes.items():
        if where == "bind":
            # Unless an earlier fault of docs/semantics.md "Which error first" fires.
            assert type(outcome) is RuleError, f"{name}: {describe(outcome)} for {text!r}"
            assert victim["id"] in str(outcome), f"{name}: the error does not name the action"
        elif where == "overflow" and scenario.people.ids:
            assert type(outcome) is DataError, f"{name}: {describe(outcome)} for {text!r}"


@given(candidates(), st.sampled_from([1, 2, 3, 1000]))
def test_arbitrate_matches_reference(case: tuple[pa.Table, Any], max_per_customer: int) -> None:
    table, catalog = case
    note(f"candidates: {table.to_pylist()}\ncatalog: {catalog}")
    outcomes = [
        guarded(
            lambda engine_cls=engine_cls: engine_cls(
                catalog, max_per_customer=max_per_customer
            ).arbitrate(table, now=NOW)
        )
        for engine_cls in (RUST, REFERENCE)
    ]
    assert_same_outcome(*outcomes)
    for outcome in outcomes:
        if not isinstance(outcome, NbaFastError):
            check_decisions_order(outcome, max_per_customer)
            check_funnel(outcome, sorted(set(table.column("action_id").to_pylist())), None)


# --- rules against DuckDB ------------------------------------------------------------------------


DUCKDB = duckdb.connect()


def duckdb_selects(table: pa.Table, rule_sql: str) -> list[Any]:
    """The customer_id of each row of `table` for which DuckDB finds `rule_sql` TRUE."""
    DUCKDB.register("t", table)
    try:
        rows = DUCKDB.sql(f"SELECT customer_id FROM t WHERE ({rule_sql})").fetchall()
    finally:
        DUCKDB.unregister("t")
    return [row[0] for row in rows]


@st.composite
def rule_cases(draw: st.DrawFn) -> tuple[pa.Table, Any, Any]:
    now = draw(st.sampled_from([NOW, NOW.replace(microsecond=123_457)]))
    people = draw(customers(canonical=True, max_rows=15, contact_columns=False))
    rule = draw(grammar_for(now, True).rule(depth=3))
    return people.table, rule, now


@given(rule_cases())
def test_rules_agree_with_duckdb(engine_cls: Any, case: tuple[pa.Table, Any, Any]) -> None:
    """A single action with rule R and propensity 1 selects exactly the customers for which
    DuckDB's ``WHERE (R)`` holds."""
    table, rule, now = case
    note(f"rule: {rule.nba}\nduckdb: {rule.duck}\ncustomers:\n{table}")
    expected = sorted(duckdb_selects(table, rule.duck))
    action = {"id": "x", "issue": "I", "group": "G", "channel": "push", "default_propensity": 1.0}
    engine = engine_cls([{**action, "eligibility": rule.nba}])
    result = guarded(lambda: engine.decide(table, now=now))
    assert not isinstance(result, NbaFastError), f"{describe(result)}"
    assert sorted(result.decisions.column("customer_id").to_pylist()) == expected


# --- invariants, whichever the engine ---------------------------------------------------------


def check_decisions_order(result: Any, max_per_customer: int) -> None:
    """Rows by customer then rank; ranks 1..k with k <= max_per_customer; priority
    descending within a customer, ties by action_id in byte order; priority = P·V·C·L."""
    rows = result.decisions.to_pylist()
    keys = [(r["customer_id"], r["rank"]) for r in rows]
    if rows and isinstance(rows[0]["customer_id"], str):
        keys = [(c.encode(), rank) for c, rank in keys]
    assert keys == sorted(keys), "decisions are not ordered by customer_id, then rank"
    by_customer: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_customer[row["customer_id"]].append(row)
        product = ((row["propensity"] * row["value"]) * row["context_weight"]) * row["lever"]
        assert math.isfinite(row["priority"])
        assert np.float64(row["priority"]).tobytes() == np.float64(product).tobytes(), row
        assert 0.0 <= row["propensity"] <= 1.0
    for customer_id, mine in by_customer.items():
        assert len(mine) <= max_per_customer, f"customer {customer_id!r}: {len(mine)} decisions"
        assert [r["rank"] for r in mine] == list(range(1, len(mine) + 1))
        order = [(-r["priority"], r["action_id"].encode()) for r in mine]
        assert order == sorted(order), f"customer {customer_id!r}: ranks out of order"
        assert len({r["action_id"] for r in mine}) == len(mine)


def check_funnel(result: Any, action_ids: list[str], customers: int | None) -> None:
    """Stage order, a row per action on every keep stage, drops only when > 0, and per action
    every keep stage = the next keep stage + the drops between them."""
    rows = funnel_rows(result)
    for stage, _, count in rows:
        assert stage in STAGE_ORDER, f"unknown funnel stage {stage!r}"
        assert count >= 0
    keys = [(STAGE_ORDER.index(stage), action.encode()) for stage, action, _ in rows]
    assert keys == sorted(keys), "funnel rows out of order"
    assert len(set(keys)) == len(keys), "a funnel row appears twice"
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for stage, action, count in rows:
        counts[stage][action] = count
        if stage not in KEEP_STAGES:
            assert count > 0, f"drop row {stage}/{action} with count 0"
    selected = Counter(result.decisions.column("action_id").to_pylist())
    for stage in KEEP_STAGES:
        assert sorted(counts[stage]) == sorted(action_ids), f"{stage}: not one row per action"
    for a in action_ids:
        c = {stage: counts[stage][a] for stage in STAGE_ORDER}
        if customers is not None:
            assert c["candidate"] == customers
        assert c["candidate"] == c["inactive"] + c["ineligible"] + c["eligible"], a
        assert c["eligible"] == (
            c["no_address"] + c["opted_out"] + c["do_not_contact"] + c["contactable"]
        ), a
        assert c["contactable"] == c["not_suppressed"], a
        assert c["top_choice"] <= c["not_suppressed"] - c["no_propensity"], a
        assert c["selected"] == c["top_choice"] == selected[a], a
    assert sum(selected.values()) == result.decisions.num_rows


def blocked(scenario: Scenario, row: int, channel: str) -> bool:
    """Whether the do-not-contact list blocks customer `row` on `channel` (DESIGN.md §2)."""
    if scenario.do_not_contact is None:
        return False
    people = scenario.people
    customer_id = people.ids[row]
    mine = {"email": people.emails[row], "sms": people.phones[row]}.get(channel)
    for entry in scenario.do_not_contact.to_pylist():
        listed_channel, listed_id, address = (
            entry["channel"],
            entry.get("customer_id"),
            entry.get("address"),
        )
        if listed_channel not in (channel, "*"):
            continue
        if listed_id is not None and listed_id == customer_id:
            return True
        if address is not None and listed_channel == channel and address == mine:
            return True
        if (
            listed_channel == "*"
            and address is not None
            and (address in (people.emails[row], people.phones[row]))
        ):
            return True
    return False


def is_active(action: dict[str, Any], scenario: Scenario) -> bool:
    start, end = action.get("active_from"), action.get("active_until")
    return (start is None or start <= scenario.now) and (end is None or scenario.now < end)


@given(scenarios(canonical=True))
def test_decide_invariants(engine_cls: Any, scenario: Scenario) -> None:
    show(scenario)
    result = run(scenario, engine_cls)
    assert not isinstance(result, NbaFastError), describe(result)
    check_decisions_order(result, scenario.max_per_customer)
    check_funnel(result, scenario.catalog.ids, len(scenario.people.ids))
    table = scenario.people.table
    rows_of = {customer_id: row for row, customer_id in enumerate(scenario.people.ids)}
    actions = {a["id"]: a for a in scenario.catalog.actions}
    eligible = {
        action_id: set(duckdb_selects(table, rule)) if rule else set(scenario.people.ids)
        for action_id, rule in scenario.catalog.duck_rules.items()
    }
    ineligible = dict(funnel_rows_by(result, "ineligible"))
    for action_id, action in actions.items():
        expected = len(scenario.people.ids) - len(eligible[action_id])
        assert ineligible.get(action_id, 0) == (expected if is_active(action, scenario) else 0)
    for decision in result.decisions.to_pylist():
        customer_id, action_id = decision["customer_id"], decision["action_id"]
        action, row = actions[action_id], rows_of[customer_id]
        assert is_active(action, scenario), f"{action_id} is inactive"
        assert customer_id in eligible[action_id], f"{action_id} is not eligible: {customer_id!r}"
        channel = action["channel"]
        assert decision["channel"] == channel
        if channel in ADDRESS_COLUMN:
            column = ADDRESS_COLUMN[channel]
            assert table.column(column)[row].as_py() is not None, f"{customer_id!r}: no {column}"
            opt_out = f"opt_out_{channel}"
            if opt_out in table.schema.names:
                assert table.column(opt_out)[row].as_py() is not True, "opted out"
        assert not blocked(scenario, row, channel), f"{customer_id!r} is on the list for {channel}"


def funnel_rows_by(result: Any, stage: str) -> list[tuple[str, int]]:
    return [(action, count) for s, action, count in funnel_rows(result) if s == stage]


# --- the Rust engine: threads, batch sizes and streams do not change the answer --------------


@given(scenarios(max_rows=24), st.data())
def test_threads_and_batches_do_not_matter(scenario: Scenario, data: Any) -> None:
    show(scenario)
    baseline = run(scenario, RUST, threads=1)
    table = scenario.people.table
    sizes = data.draw(st.lists(st.integers(1, 9), min_size=1, max_size=4), label="stream sizes")
    variants: dict[str, Any] = {
        "threads=4": run(scenario, RUST, threads=4),
        "threads=4 batch_rows=1": run(scenario, RUST, threads=4, batch_rows=1),
        "threads=2 batch_rows=7": run(scenario, RUST, threads=2, batch_rows=7),
        "batch_rows=32768": run(scenario, RUST, threads=1, batch_rows=32_768),
    }
    engine = scenario.engine(RUST, threads=4, batch_rows=3)
    variants["stream"] = guarded(lambda: scenario.decide(engine, batches_of(table, sizes)))
    variants["record batches"] = guarded(
        lambda: scenario.decide(
            engine, pa.Table.from_batches(list(batches_of(table, sizes)), schema=table.schema)
        )
    )
    for name, outcome in variants.items():
        note(f"variant {name}")
        assert_same_outcome(outcome, baseline)


@given(candidates())
def test_arbitrate_threads_do_not_matter(case: tuple[pa.Table, Any]) -> None:
    table, catalog = case
    one = guarded(lambda: RUST(catalog, threads=1, max_per_customer=2).arbitrate(table, now=NOW))
    four = guarded(
        lambda: RUST(catalog, threads=4, batch_rows=1, max_per_customer=2).arbitrate(table, now=NOW)
    )
    assert_same_outcome(four, one)


@pytest.mark.slow
@given(scenarios(max_rows=400))
def test_decide_matches_reference_on_larger_inputs(scenario: Scenario) -> None:
    show(scenario)
    assert_same_outcome(run(scenario, RUST, batch_rows=16), run(scenario, REFERENCE))


@pytest.mark.parametrize("seed", [0, 1])
def test_decide_matches_reference_past_a_word_of_actions_and_rows(seed: int) -> None:
    """The engine keeps each stage's survivors as 64-bit words (rows of a batch, actions of a
    catalog): 70 actions and batches of 150 rows cross both word boundaries, with every drop
    reason, contact policies and a history in play."""
    rng = np.random.default_rng(seed)
    n, actions = 500, 70
    channels = ["email", "sms"]
    catalog = []
    for a in range(actions):
        action: dict[str, Any] = {
            "id": f"offer_{a:02d}",
            "issue": ["Sales", "Retention"][a % 2],
            "group": ["Cards", "Loans", "Savings"][a % 3],
            "channel": channels[int(rng.integers(2))],
            "value": float(rng.choice([0.5, 1.0, 2.0])),
        }
        if a % 7 == 3:
            action["active_until"] = (NOW - timedelta(days=1)).isoformat()  # inactive
        if a % 3:
            action["eligibility"] = f"age >= {int(rng.integers(18, 70))}"
        if a % 5 == 0:
            action["default_propensity"] = 0.2
        catalog.append(action)
    ids = np.arange(n) * 3 + 1
    ages = pa.array(
        [None if k % 11 == 0 else int(x) for k, x in enumerate(rng.integers(18, 80, n))]
    )
    customers = pa.table(
        {
            "customer_id": pa.array(ids, pa.int64()),
            "age": ages,
            "email": pa.array(
                [None if x < 0.15 else f"c{k}@example.com" for k, x in enumerate(rng.random(n))]
            ),
            "phone": pa.array(
                [None if x < 0.3 else f"+4479{k:08d}" for k, x in enumerate(rng.random(n))]
            ),
            "opt_out_email": pa.array(rng.random(n) < 0.1),
            "opt_out_sms": pa.array([None if x < 0.05 else bool(x > 0.9) for x in rng.random(n)]),
        }
    )
    dnc = pa.table(
        {
            "channel": pa.array(["*", "email", "sms"] * 10),
            "customer_id": pa.array([int(x) for x in rng.choice(ids, 30)], pa.int64()),
        }
    )
    # Propensities for about half of the pairs; the rest fall back to a default or drop.
    pairs = [(int(c), f"offer_{a:02d}") for c in ids for a in range(actions) if rng.random() < 0.5]
    propensities = pa.table(
        {
            "customer_id": pa.array([c for c, _ in pairs], pa.int64()),
            "action_id": [a for _, a in pairs],
            "propensity": rng.random(len(pairs)),
        }
    )
    events = 2_000
    picked = rng.integers(0, actions, events)
    history = pa.table(
        {
            "customer_id": pa.array(rng.choice(ids, events), pa.int64()),
            "action_id": [catalog[int(a)]["id"] for a in picked],
            "issue": [catalog[int(a)]["issue"] for a in picked],
            "group": [catalog[int(a)]["group"] for a in picked],
            "channel": [catalog[int(a)]["channel"] for a in picked],
            "outcome": rng.choice(["pending", "sent", "delivered", "clicked"], events).tolist(),
            "timestamp": pa.array(
                [NOW - timedelta(hours=int(h)) for h in rng.integers(1, 24 * 40, events)],
                pa.timestamp("us", tz="UTC"),
            ),
        }
    )
    policies = [
        {"name": "cooldown", "kind": "suppress", "level": "group", "channel": "email",
         "outcomes": ["pending", "sent"], "threshold": 1, "window_days": 30, "suppress_days": 60},
        {"name": "limit", "kind": "limit", "level": "customer", "channel": "*",
         "outcomes": ["sent", "delivered"], "threshold": 3, "window_days": 14},
        {"name": "clicked", "kind": "suppress", "level": "action", "channel": "*",
         "outcomes": ["clicked"], "threshold": 1, "window_days": 14, "suppress_days": 14},
    ]  # fmt: skip
    results = []
    for engine_cls, options in ((RUST, {"batch_rows": 150, "threads": 2}), (REFERENCE, {})):
        engine = engine_cls(catalog, policies=policies, max_per_customer=3, **options)
        results.append(
            engine.decide(
                customers,
                propensities=propensities,
                history=history,
                do_not_contact=dnc,
                now=NOW,
            )
        )
    rust, reference = results
    stages = {stage for stage, _, count in funnel_rows(rust) if count}
    for stage in ("inactive", "ineligible", "no_address", "opted_out", "do_not_contact"):
        assert stage in stages, f"the data exercised no {stage!r} drop"
    assert_same_result(rust, reference)
