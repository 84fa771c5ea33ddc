"""The benchmark scenarios of issue 6, generated deterministically and cached as Parquet.

``bank-2m``: 2,000,000 customers x 10 actions (SQL eligibility rules, email and SMS), 2,000,000
interaction-history events over the 90 days before `generate.NOW`, 3 contact policies, a cap
on every action and on each channel. ``bank-10m``: 10,000,000 customers x 20 actions and
20,000,000 events, the same policies and caps scaled. ``bank-20k`` is the small one the
correctness test uses.

Each scenario is written once under ``bench/data/<name>/`` (git-ignored):

- ``customers.parquet``: `generate.bank_segment`'s customer columns plus one propensity column
  ``p_<action id>`` per action (a model's scores, as a scoring job would write them);
- ``history.parquet``: ``customer_id``, ``action_id``, ``issue``, ``group``, ``channel``,
  ``outcome`` (dictionary-encoded), ``timestamp`` (UTC, all before `NOW`);
- ``do_not_contact.parquet``: ``channel``, ``customer_id``, ``address``;
- ``scenario.json``: the sizes, the catalog, the policies and the caps.

Customers are generated in chunks of `CHUNK` rows, each from its own seeded PCG64 stream, so a
scenario never needs more than a chunk in memory and the same name always gives the same bytes.

Example (a tiny scenario, written to a temporary folder):
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as root:
    ...     data = ensure(Scenario("tiny", 1_000, 4, 500), Path(root))
    ...     pq.ParquetFile(data.customers).metadata.num_rows, len(data.catalog)
    (1000, 4)
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from generate import (
    NOW,
    NOW_MICROS,
    _customers,
    _do_not_contact,
    _propensities,
    catalog,
)

__all__ = [
    "CHUNK",
    "DATA",
    "NOW",
    "SCENARIOS",
    "Data",
    "Scenario",
    "caps_for",
    "ensure",
    "policies",
    "propensity_column",
]

DATA: Final = Path(__file__).resolve().parent / "data"
"""Where generated scenarios are cached (git-ignored)."""

CHUNK: Final = 1_000_000
"""Customers (and history events) generated per seeded chunk."""

ROW_GROUP: Final = 131_072
"""Rows per Parquet row group: the unit a streaming reader decodes at a time."""

FORMAT: Final = 1
"""Bumped when the generator changes, so stale caches are rebuilt."""

_OUTCOMES: Final = ("pending", "sent", "delivered", "clicked", "failed")
_OUTCOME_WEIGHTS: Final = (0.1, 0.5, 0.3, 0.05, 0.05)
_MICROS_PER_DAY: Final = 86_400_000_000


@dataclass(frozen=True)
class Scenario:
    """The sizes of one scenario.

    Attributes:
        name: the folder under `DATA`.
        customers: customers (ids 1..customers).
        actions: catalog actions (`generate.catalog`).
        events: interaction-history events.
        seed: the root seed.
    """

    name: str
    customers: int
    actions: int
    events: int
    seed: int = 0

    @property
    def candidates(self) -> int:
        """Customer x action pairs: the rows every engine starts from."""
        return self.customers * self.actions


SCENARIOS: Final[dict[str, Scenario]] = {
    "bank-20k": Scenario("bank-20k", 20_000, 10, 20_000),
    "bank-2m": Scenario("bank-2m", 2_000_000, 10, 2_000_000),
    "bank-10m": Scenario("bank-10m", 10_000_000, 20, 20_000_000),
}


def policies() -> list[dict[str, Any]]:
    """The three contact policies: an email cool-down by group, a fortnightly limit across
    channels, and no repeat of an action clicked in the last two weeks."""
    return [
        {"name": "email_cooldown", "kind": "suppress", "level": "group", "channel": "email",
         "outcomes": ["pending", "sent"], "threshold": 1, "window_days": 30,
         "suppress_days": 60},
        {"name": "fortnight_limit", "kind": "limit", "level": "customer", "channel": "*",
         "outcomes": ["sent", "delivered"], "threshold": 2, "window_days": 14},
        {"name": "clicked_recently", "kind": "suppress", "level": "action", "channel": "*",
         "outcomes": ["clicked"], "threshold": 1, "window_days": 14, "suppress_days": 14},
    ]  # fmt: skip


def caps_for(actions: list[dict[str, Any]], customers: int) -> list[dict[str, Any]]:
    """A cap on every action (4% of the customers), on email (25%) and on SMS (8%)."""
    caps = [{"scope": f"action:{a['id']}", "max": customers * 4 // 100} for a in actions]
    caps.append({"scope": "channel:email", "max": customers * 25 // 100})
    caps.append({"scope": "channel:sms", "max": customers * 8 // 100})
    return caps


def propensity_column(action_id: str) -> str:
    """The customers' column holding the propensities of `action_id`."""
    return f"p_{action_id}"


@dataclass(frozen=True)
class Data:
    """A generated scenario on disk."""

    scenario: Scenario
    folder: Path
    catalog: list[dict[str, Any]]
    policies: list[dict[str, Any]]
    caps: list[dict[str, Any]]
    now: datetime

    @property
    def customers(self) -> Path:
        return self.folder / "customers.parquet"

    @property
    def history(self) -> Path:
        return self.folder / "history.parquet"

    @property
    def do_not_contact(self) -> Path:
        return self.folder / "do_not_contact.parquet"

    @property
    def propensity_columns(self) -> list[str]:
        return [propensity_column(a["id"]) for a in self.catalog]

    def customer_columns(self) -> list[str]:
        """The customers' columns other than the propensities."""
        skip = set(self.propensity_columns)
        return [name for name in pq.read_schema(self.customers).names if name not in skip]

    def file_bytes(self) -> dict[str, int]:
        """Size on disk of each input file (Parquet, snappy)."""
        return {
            name: path.stat().st_size
            for name, path in (
                ("customers", self.customers),
                ("history", self.history),
                ("do_not_contact", self.do_not_contact),
            )
        }


def _catalog_json(actions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {k: v.isoformat() if isinstance(v, datetime) else v for k, v in a.items()} for a in actions
    ]


def _catalog_from_json(actions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    times = ("active_from", "active_until")
    return [
        {k: datetime.fromisoformat(v) if k in times and v is not None else v for k, v in a.items()}
        for a in actions
    ]


def ensure(scenario: Scenario, root: Path = DATA) -> Data:
    """The scenario's data, generated under ``root / scenario.name`` unless already there.

    Args:
        scenario: the sizes.
        root: the cache folder.

    Returns:
        Where the files are, with the catalog, policies and caps.
    """
    folder = root / scenario.name
    meta_path = folder / "scenario.json"
    meta = {"format": FORMAT, "scenario": asdict(scenario), "now": NOW.isoformat()}
    if meta_path.exists():
        stored = json.loads(meta_path.read_text())
        if all(stored.get(key) == value for key, value in meta.items()):
            return Data(
                scenario,
                folder,
                _catalog_from_json(stored["catalog"]),
                stored["policies"],
                stored["caps"],
                NOW,
            )
    actions = catalog(scenario.actions)
    data = Data(scenario, folder, actions, policies(), caps_for(actions, scenario.customers), NOW)
    staging = root / f".{scenario.name}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    _write_customers(scenario, actions, staging)
    _write_history(scenario, actions, staging / "history.parquet")
    meta |= {
        "catalog": _catalog_json(actions),
        "policies": data.policies,
        "caps": data.caps,
    }
    (staging / "scenario.json").write_text(json.dumps(meta, indent=1) + "\n")
    shutil.rmtree(folder, ignore_errors=True)
    staging.rename(folder)
    return data


def _chunks(total: int) -> Iterator[tuple[int, int, int]]:
    """(index, first, size) of the chunks of `total` rows."""
    for index, first in enumerate(range(0, total, CHUNK)):
        yield index, first, min(CHUNK, total - first)


def _write_customers(scenario: Scenario, actions: list[dict[str, Any]], folder: Path) -> None:
    writer: pq.ParquetWriter | None = None
    blocked: list[pa.Table] = []
    try:
        for index, first, size in _chunks(scenario.customers):
            rng = np.random.default_rng([scenario.seed, 1, index])
            customers = _customers(rng, size, first_id=first + 1)
            scores = _propensities(rng, customers, actions)
            for j, action in enumerate(actions):
                customers = customers.append_column(
                    propensity_column(action["id"]), pa.array(scores[:, j])
                )
            blocked.append(_do_not_contact(rng, customers))
            if writer is None:
                writer = pq.ParquetWriter(folder / "customers.parquet", customers.schema)
            writer.write_table(customers, row_group_size=ROW_GROUP)
    finally:
        if writer is not None:
            writer.close()
    pq.write_table(pa.concat_tables(blocked), folder / "do_not_contact.parquet")


def _dictionary(codes: np.ndarray[Any, Any], values: list[str]) -> pa.DictionaryArray:
    return pa.DictionaryArray.from_arrays(pa.array(codes, pa.int32()), pa.array(values))


def _write_history(scenario: Scenario, actions: list[dict[str, Any]], path: Path) -> None:
    """Events of random customers over the 90 days before `NOW`; two retired actions too."""
    ids = [a["id"] for a in actions] + ["retired_offer_a", "retired_offer_b"]
    groups = sorted({a["group"] for a in actions} | {"Retired"})
    issues = sorted({a["issue"] for a in actions})
    channels = ["email", "sms"]
    group_of = np.array([groups.index(a["group"]) for a in actions] + [groups.index("Retired")] * 2)
    issue_of = np.array([issues.index(a["issue"]) for a in actions] + [0, 0])
    channel_of = np.array([channels.index(a["channel"]) for a in actions] + [0, 1])
    weights = np.asarray(_OUTCOME_WEIGHTS) / sum(_OUTCOME_WEIGHTS)
    with pq.ParquetWriter(path, _history_schema()) as writer:
        for index, _first, size in _chunks(scenario.events):
            rng = np.random.default_rng([scenario.seed, 2, index])
            action = rng.integers(0, len(ids), size)
            ago = rng.integers(0, 90 * _MICROS_PER_DAY, size)
            table = pa.table(
                {
                    "customer_id": pa.array(
                        rng.integers(1, scenario.customers + 1, size), pa.int64()
                    ),
                    "action_id": _dictionary(action, ids),
                    "issue": _dictionary(issue_of[action], issues),
                    "group": _dictionary(group_of[action], groups),
                    "channel": _dictionary(channel_of[action], channels),
                    "outcome": _dictionary(
                        rng.choice(len(_OUTCOMES), size, p=weights), list(_OUTCOMES)
                    ),
                    "timestamp": pa.array(NOW_MICROS - ago, pa.timestamp("us", tz="UTC")),
                },
                schema=_history_schema(),
            )
            writer.write_table(table, row_group_size=ROW_GROUP)


def _history_schema() -> pa.Schema:
    text = pa.dictionary(pa.int32(), pa.string())
    return pa.schema(
        [
            ("customer_id", pa.int64()),
            ("action_id", text),
            ("issue", text),
            ("group", text),
            ("channel", text),
            ("outcome", text),
            ("timestamp", pa.timestamp("us", tz="UTC")),
        ]
    )


if __name__ == "__main__":
    import sys

    for name in sys.argv[1:] or ["bank-2m"]:
        generated = ensure(SCENARIOS[name])
        print(name, generated.folder, generated.file_bytes())
