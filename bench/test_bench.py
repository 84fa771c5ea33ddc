"""The benchmark jobs of `peers`: a fast correctness check, and the pytest-benchmark timings.

`test_peers_agree_with_nba_fast` runs in ``make test`` (bank-20k, a few seconds): without caps
nba_fast, DuckDB and Polars must give every customer the same action with the same priority,
and the reference must agree with nba_fast on a sample with caps. It is skipped when duckdb or
polars is missing.

The ``benchmark``-marked tests time each engine on ``NBA_BENCH_SCENARIO`` (default bank-2m)
with pytest-benchmark: ``pytest bench -m benchmark`` (part of ``make bench``).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from scenarios import SCENARIOS, Data, Scenario, ensure

with warnings.catch_warnings():  # a dev build warns at import; the suite runs on one
    warnings.filterwarnings(
        "ignore", message="nba_fast was built without optimisations", category=RuntimeWarning
    )
    import nba_fast  # noqa: F401

import peers

SMALL = Scenario("bank-20k", 20_000, 10, 20_000)


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Data:
    return ensure(SMALL, tmp_path_factory.mktemp("scenarios"))


def _require_peers() -> None:
    pytest.importorskip("duckdb")
    pytest.importorskip("polars")


def test_peers_agree_with_nba_fast(small: Data) -> None:
    _require_peers()
    ours = peers.nba_fast_job(small, caps=False)
    assert ours.num_rows > SMALL.customers // 2  # most customers get an action
    for name, job in peers.PEERS.items():
        theirs = job(small, caps=False)
        found = peers.agreement(ours, theirs)
        assert found.compared == ours.num_rows, name
        assert found.exact, (name, found.examples)


def test_capped_peers_agree_and_respect_caps(small: Data) -> None:
    _require_peers()
    duck = peers.duckdb_job(small, caps=True)
    polar = peers.polars_job(small, caps=True)
    assert peers.agreement(duck, polar).exact
    uncapped = peers.duckdb_job(small, caps=False)
    assert 0 < duck.num_rows < uncapped.num_rows  # the caps bind, and drop whole decisions
    assert peers.agreement(duck, uncapped).same == duck.num_rows  # a cut, never a fallback
    channel = {a["id"]: a["channel"] for a in small.catalog}
    for cap in small.caps:
        kind, _, name = cap["scope"].partition(":")
        actions = duck.column("action_id").to_pylist()
        inside = [a for a in actions if (a if kind == "action" else channel[a]) == name]
        assert len(inside) <= cap["max"], cap


def test_reference_agrees_with_nba_fast_on_a_sample(small: Data) -> None:
    sample = 2_000
    expected = peers.reference_job(small, caps=True, sample=sample)
    got = peers.reference_sample_for_nba_fast(small, caps=True, sample=sample)
    found = peers.agreement(got, expected)
    assert found.compared > sample // 2
    assert found.exact, found.examples


def test_nba_fast_stages_count_what_was_read(small: Data) -> None:
    stages = peers.Stages()
    decisions = peers.nba_fast_job(small, caps=True, stages=stages)
    assert set(pc.unique(decisions.column("customer_id")).to_pylist()) <= set(
        range(1, SMALL.customers + 1)
    )
    assert stages.bytes_read > SMALL.customers * SMALL.actions * 8  # the propensities alone
    assert {"read_inputs", "engine"} <= set(stages.seconds)


# --- pytest-benchmark ----------------------------------------------------------------------

BENCH_SCENARIO = os.environ.get("NBA_BENCH_SCENARIO", "bank-2m")


@pytest.fixture(scope="module")
def scenario() -> Data:
    return ensure(SCENARIOS[BENCH_SCENARIO])


def _time(benchmark: Any, job: Callable[..., pa.Table], data: Data, caps: bool) -> pa.Table:
    result: pa.Table = benchmark.pedantic(
        job, args=(data,), kwargs={"caps": caps}, rounds=3, iterations=1, warmup_rounds=1
    )
    return result


@pytest.mark.benchmark(group=f"{BENCH_SCENARIO} full pipeline")
@pytest.mark.parametrize("engine", ["nba_fast", "duckdb", "polars"])
def test_bench_with_caps(benchmark: Any, scenario: Data, engine: str) -> None:
    if engine != "nba_fast":
        pytest.importorskip(engine)
    decisions = _time(benchmark, peers.ENGINES[engine], scenario, caps=True)
    assert 0 < decisions.num_rows <= scenario.scenario.customers


@pytest.mark.benchmark(group=f"{BENCH_SCENARIO} without caps")
@pytest.mark.parametrize("engine", ["nba_fast", "duckdb", "polars"])
def test_bench_without_caps(benchmark: Any, scenario: Data, engine: str) -> None:
    if engine != "nba_fast":
        pytest.importorskip(engine)
    decisions = _time(benchmark, peers.ENGINES[engine], scenario, caps=False)
    assert 0 < decisions.num_rows <= scenario.scenario.customers
