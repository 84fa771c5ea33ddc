"""Golden tests on Pega's own decision extracts (/work/shared/data/pega, see its NOTICE.md).

`arbitrate` on Pega's already-expanded candidates must reproduce Pega's `Priority` bit for bit
(P·V·C·L multiplied left to right) and its `pxRank`, with either engine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from tests.conftest import NOW

PEGA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "pega"
EXPLAINABILITY = PEGA / "sample_explainability_extract.parquet"
EEV2 = PEGA / "eev2_day0_priority.parquet"

pytestmark = pytest.mark.skipif(
    not EXPLAINABILITY.exists() or not EEV2.exists(),
    reason=f"Pega sample data not found in {PEGA} (see shared/data/pega/NOTICE.md)",
)

EVERY_CANDIDATE = 1000  # more than any interaction's 88 candidates: nothing is cut


def as_candidates(extract: pa.Table, customer_id: pa.Array | pa.ChunkedArray) -> pa.Table:
    return pa.table(
        {
            "customer_id": customer_id,
            "action_id": extract.column("pyName"),
            "propensity": extract.column("FinalPropensity"),
            "value": extract.column("Value"),
            "context_weight": extract.column("ContextWeight"),
            "lever": extract.column("Weight"),
        }
    )


def bits(values: Any) -> np.ndarray[Any, np.dtype[np.int64]]:
    """float64 values as their IEEE-754 bit patterns."""
    return np.ascontiguousarray(np.asarray(values, dtype=np.float64)).view(np.int64)


def joined(decisions: pa.Table, extract: pa.Table, id_column: str) -> pa.Table:
    """Each decision beside its extract row (matched on customer and action)."""
    expected = extract.select([id_column, "pyName", "Priority", "pxRank"]).rename_columns(
        ["customer_id", "action_id", "Priority", "pxRank"]
    )
    expected = expected.cast(
        pa.schema(
            [
                pa.field("customer_id", decisions.schema.field("customer_id").type),
                pa.field("action_id", pa.string()),
                pa.field("Priority", pa.float64()),
                pa.field("pxRank", pa.int32()),
            ]
        )
    )
    return decisions.join(expected, ["customer_id", "action_id"], join_type="inner")


def test_explainability_priority_and_rank_bit_for_bit(engine_cls: Any) -> None:
    extract = pq.read_table(EXPLAINABILITY)
    assert extract.num_rows == 7_297
    engine = engine_cls(None, max_per_customer=EVERY_CANDIDATE)
    result = engine.arbitrate(as_candidates(extract, extract.column("pxInteractionID")), now=NOW)
    decisions = result.decisions
    assert decisions.num_rows == 7_297, "every candidate comes back"
    both = joined(decisions, extract, "pxInteractionID")
    assert both.num_rows == 7_297
    ours, pegas = bits(both.column("priority")), bits(both.column("Priority"))
    mismatches = int(np.count_nonzero(ours != pegas))
    assert mismatches == 0, f"{mismatches} of 7297 priorities differ from Pega's in some bit"
    rank_mismatches = pc.sum(pc.not_equal(both.column("rank"), both.column("pxRank"))).as_py()
    assert rank_mismatches == 0, f"{rank_mismatches} ranks differ from pxRank"
    funnel = {
        (stage, action): count
        for stage, action, count in zip(*result.funnel.to_pydict().values(), strict=True)
    }
    assert sum(c for (stage, _), c in funnel.items() if stage == "candidate") == 7_297
    assert sum(c for (stage, _), c in funnel.items() if stage == "selected") == 7_297


def test_explainability_top_one(engine_cls: Any) -> None:
    """With max_per_customer=1, each interaction gets its pxRank 1 action."""
    extract = pq.read_table(EXPLAINABILITY)
    result = engine_cls(None).arbitrate(
        as_candidates(extract, extract.column("pxInteractionID")), now=NOW
    )
    best = extract.filter(pc.equal(extract.column("pxRank"), 1))
    expected = sorted(
        zip(
            best.column("pxInteractionID").to_pylist(),
            best.column("pyName").to_pylist(),
            strict=True,
        )
    )
    decisions = result.decisions
    got = list(
        zip(
            decisions.column("customer_id").to_pylist(),
            decisions.column("action_id").to_pylist(),
            strict=True,
        )
    )
    assert got == expected  # also ordered by customer_id (byte order)
    assert set(decisions.column("rank").to_pylist()) == {1}


def test_eev2_priority_within_1e_12(engine_cls: Any) -> None:
    """A real single-day export: (interaction, action) repeats, so each row is its own
    customer; Pega's Priority agrees with the product within 1e-15 (NOTICE.md)."""
    extract = pq.read_table(EEV2)
    row_ids = pa.array(np.arange(extract.num_rows, dtype=np.int64))
    engine = engine_cls(None, max_per_customer=EVERY_CANDIDATE)
    decisions = engine.arbitrate(as_candidates(extract, row_ids), now=NOW).decisions
    assert decisions.num_rows == extract.num_rows
    assert decisions.column("customer_id").to_pylist() == list(range(extract.num_rows))
    ours = decisions.column("priority").to_numpy()
    pegas = extract.column("Priority").to_numpy()
    relative = np.abs(ours - pegas) / np.maximum(np.abs(pegas), np.finfo(np.float64).tiny)
    worst = int(np.argmax(relative))
    assert relative[worst] <= 1e-12, (
        f"row {worst}: priority {ours[worst]!r} vs Pega's {pegas[worst]!r}"
    )
    assert (decisions.column("rank").to_numpy() == 1).all()
