"""The reference engine's edge: Arrow inputs read into plain Python values, and checked.

Everything here turns an Arrow object (pyarrow, polars, duckdb, ... through the PyCapsule
interface) into lists and dicts, raising the typed errors of DESIGN.md §2 and
docs/semantics.md. A column of Arrow type ``null`` reads as all NULL wherever a column is read.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.types as pat

from nba_fast._core import DataError, SchemaError
from nba_fast.config import Action
from nba_fast.reference.evaluate import MICROS_PER_DAY, Value
from nba_fast.reference.rules import INT64_MAX

__all__ = [
    "ALL_CHANNELS",
    "CandidateRow",
    "CustomerId",
    "DoNotContact",
    "check_propensity_array",
    "column_values",
    "customer_id_kind",
    "customer_ids",
    "id_kind",
    "is_text",
    "read_candidates",
    "read_do_not_contact",
    "read_long_propensities",
    "read_propensity_matrix",
    "read_table",
    "show_id",
]

CustomerId = int | str
ALL_CHANNELS = "*"


def read_table(obj: Any, what: str) -> pa.Table:
    """Any Arrow tabular object as a pyarrow Table; `what` names the input in errors."""
    if isinstance(obj, pa.Table):
        return obj
    if isinstance(obj, pa.RecordBatch):
        return pa.Table.from_batches([obj])
    if isinstance(obj, pa.RecordBatchReader):
        return _read_stream(obj, what)
    if hasattr(obj, "__arrow_c_stream__") or hasattr(obj, "__arrow_c_array__"):
        return pa.table(obj)
    raise SchemaError(
        f"{what}: expected an Arrow table, record batch or stream (pyarrow, polars, duckdb, "
        f"...), got {type(obj).__name__}"
    )


def _read_stream(reader: pa.RecordBatchReader, what: str) -> pa.Table:
    """A stream read whole; one that fails part-way is a `DataError` naming where."""
    batches: list[pa.RecordBatch] = []
    rows = 0
    while True:
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            return pa.Table.from_batches(batches, schema=reader.schema)
        except Exception as err:  # whatever the stream's source raised
            raise DataError(f"{what}: the stream failed after {rows} rows: {err}") from err
        batches.append(batch)
        rows += batch.num_rows


def show_id(customer_id: CustomerId) -> str:
    """A customer id as error messages write it."""
    return repr(customer_id) if isinstance(customer_id, str) else str(customer_id)


def is_text(data_type: pa.DataType) -> bool:
    if pat.is_dictionary(data_type):
        return is_text(data_type.value_type)
    return bool(
        pat.is_string(data_type) or pat.is_large_string(data_type) or pat.is_string_view(data_type)
    )


def _is_number(data_type: pa.DataType) -> bool:
    return bool(pat.is_integer(data_type) or pat.is_floating(data_type))


def id_kind(data_type: pa.DataType) -> str | None:
    """``"int"`` or ``"str"``: the kind of a customer_id column type, or None if unusable."""
    if is_text(data_type):
        return "str"
    if pat.is_signed_integer(data_type) or data_type in (pa.uint8(), pa.uint16(), pa.uint32()):
        return "int"
    return None


def _required(table: pa.Table, name: str, what: str) -> pa.ChunkedArray:
    if name not in table.schema.names:
        raise SchemaError(f"{what}: column {name!r} is missing")
    return table.column(name)


def _optional(table: pa.Table, name: str) -> pa.ChunkedArray | None:
    return table.column(name) if name in table.schema.names else None


def column_values(column: pa.ChunkedArray) -> list[Value]:
    """A column as Python values: ints, floats, strs, bools; timestamps and dates as integer
    microseconds since the epoch (nanoseconds floored); NULL as None."""
    data_type = column.type
    if pat.is_null(data_type):
        return [None] * len(column)
    if pat.is_dictionary(data_type):
        return column_values(column.cast(data_type.value_type))
    if is_text(data_type):
        return list(column.cast(pa.string()).to_pylist())
    if pat.is_floating(data_type):  # float16/32 widen exactly
        return list(column.cast(pa.float64()).to_pylist())
    if pat.is_date32(data_type):
        days: list[int | None] = column.cast(pa.int32()).to_pylist()
        return [None if d is None else d * MICROS_PER_DAY for d in days]
    if pat.is_timestamp(data_type) or pat.is_date64(data_type):
        raw: list[int | None] = column.cast(pa.int64()).to_pylist()
        unit = "ms" if pat.is_date64(data_type) else data_type.unit
        if unit == "ns":
            return [None if v is None else v // 1_000 for v in raw]
        scale = {"s": 1_000_000, "ms": 1_000, "us": 1}[unit]
        return [None if v is None else v * scale for v in raw]
    values: list[Value] = column.to_pylist()
    if pat.is_uint64(data_type):
        too_big = next((v for v in values if isinstance(v, int) and v > INT64_MAX), None)
        if too_big is not None:
            raise DataError(f"value {too_big} does not fit in int64")
    return values


def customer_id_kind(table: pa.Table, what: str) -> str:
    """The kind (``"int"`` or ``"str"``) of the customer_id column of `table`.

    Raises:
        SchemaError: the column is missing or of another type.
    """
    column = _required(table, "customer_id", what)
    found = id_kind(column.type)
    if found is None:
        raise SchemaError(
            f"{what}: column 'customer_id' must be an integer (int8..int64, uint8..uint32) or a "
            f"string, got {column.type}"
        )
    return found


def customer_ids(table: pa.Table, what: str, kind: str | None = None) -> list[CustomerId]:
    """The customer_id column of `table`, checked: an int or string type (the same kind as the
    customers' when `kind` is given) and no NULL."""
    column = _required(table, "customer_id", what)
    found = customer_id_kind(table, what)
    if kind is not None and found != kind:
        raise SchemaError(
            f"{what}: customer_id is {column.type} but the customers' customer_id is "
            f"{'an integer' if kind == 'int' else 'a string'}"
        )
    ids: list[Any] = column_values(column)
    for row, customer_id in enumerate(ids):
        if customer_id is None:
            raise DataError(f"{what}: customer_id is null in row {row}")
    return ids


def _action_ids(table: pa.Table, what: str) -> list[str]:
    """The action_id column as strings (integers read as their decimal text), no NULL."""
    column = _required(table, "action_id", what)
    if not (is_text(column.type) or pat.is_integer(column.type) or pat.is_null(column.type)):
        raise SchemaError(f"{what}: column 'action_id' must be strings, got {column.type}")
    ids: list[str] = []
    for row, value in enumerate(column_values(column)):
        if value is None:
            raise DataError(f"{what}: action_id is null in row {row}")
        ids.append(str(value))
    return ids


def _numbers(table: pa.Table, name: str, what: str, *, required: bool) -> list[float | None]:
    """A numeric column as floats (ints converted, correctly rounded); None if absent."""
    column = _required(table, name, what) if required else _optional(table, name)
    if column is None:
        return [None] * table.num_rows
    if not (_is_number(column.type) or pat.is_null(column.type)):
        raise SchemaError(f"{what}: column {name!r} must be numeric, got {column.type}")
    return [None if v is None else float(v) for v in column_values(column)]


def _texts(table: pa.Table, name: str, what: str) -> list[str | None]:
    column = _optional(table, name)
    if column is None:
        return [None] * table.num_rows
    if not (is_text(column.type) or pat.is_null(column.type)):
        raise SchemaError(f"{what}: column {name!r} must be strings, got {column.type}")
    return column_values(column)  # type: ignore[return-value]


def _probability_error(what: str, customer_id: CustomerId, action_id: str, p: float) -> DataError:
    return DataError(
        f"{what}: propensity {p} for customer {show_id(customer_id)} and action {action_id!r} "
        "is not a probability in [0, 1]"
    )


def read_long_propensities(
    obj: Any, catalog: Sequence[Action], kind: str
) -> dict[tuple[CustomerId, str], float]:
    """The long table (customer_id, action_id, propensity) as {(customer, action): p}.

    NULL propensities are left out (missing). Every row is checked, also those of customers
    the customers table lacks.
    """
    what = "propensities"
    table = read_table(obj, what)
    ids = customer_ids(table, what, kind)
    actions = _action_ids(table, what)
    values = _numbers(table, "propensity", what, required=True)
    known = {action.id for action in catalog}
    pairs: dict[tuple[CustomerId, str], float] = {}
    for customer_id, action_id, p in zip(ids, actions, values, strict=True):
        if action_id not in known:
            raise DataError(f"{what}: action {action_id!r} is not in the catalog")
        if p is None:
            continue
        if not 0.0 <= p <= 1.0:  # also NaN
            raise _probability_error(what, customer_id, action_id, p)
        if (customer_id, action_id) in pairs:
            raise DataError(
                f"{what}: customer {show_id(customer_id)} has more than one propensity for "
                f"action {action_id!r}"
            )
        pairs[(customer_id, action_id)] = p
    return pairs


def check_propensity_array(array: np.ndarray[Any, Any]) -> None:
    """A propensity array must be 2-D and of an integer or float dtype (`SchemaError`)."""
    if array.ndim != 2:
        raise SchemaError(f"propensities: a propensity array must be 2-D, got {array.ndim}-D")
    if array.dtype.kind not in "iuf":
        raise SchemaError(f"propensities: the array must be numeric, got dtype {array.dtype}")


def read_propensity_matrix(
    array: np.ndarray[Any, Any], catalog: Sequence[Action], ids: Sequence[CustomerId]
) -> dict[tuple[CustomerId, str], float]:
    """A (customers x actions) array, rows in the customers' order and columns in catalog
    order, as {(customer, action): p}."""
    what = "propensities"
    check_propensity_array(array)
    if array.shape != (len(ids), len(catalog)):
        raise DataError(
            f"{what}: the array has shape {array.shape}, but there are {len(ids)} customers "
            f"and {len(catalog)} catalog actions"
        )
    rows: list[list[float]] = np.asarray(array, dtype=np.float64).tolist()
    pairs: dict[tuple[CustomerId, str], float] = {}
    for customer_id, row in zip(ids, rows, strict=True):
        for action, p in zip(catalog, row, strict=True):
            if not 0.0 <= p <= 1.0:
                raise _probability_error(what, customer_id, action.id, p)
            pairs[(customer_id, action.id)] = p
    return pairs


def bind_propensity_columns(
    table: pa.Table, mapping: Mapping[Any, Any], catalog: Sequence[Action]
) -> dict[str, list[float | None]]:
    """``{action_id: column}`` naming numeric columns of the customers table, checked and read:
    {action_id: the column's values as floats (None for NULL)}."""
    what = "propensities"
    known = {action.id for action in catalog}
    columns: dict[str, list[float | None]] = {}
    for action_id, name in mapping.items():
        if not isinstance(action_id, str) or not isinstance(name, str):
            raise SchemaError(
                f"{what}: a mapping must map action ids to column names (strings), got "
                f"{action_id!r}: {name!r}"
            )
        if action_id not in known:
            raise DataError(f"{what}: action {action_id!r} is not in the catalog")
        if name not in table.column_names:
            raise SchemaError(
                f"{what}: column {name!r} (action {action_id!r}) is not a column of customers"
            )
        column = table.column(name)
        if not (_is_number(column.type) or pat.is_null(column.type)):
            raise SchemaError(
                f"{what}: column {name!r} (action {action_id!r}) must be numeric, got {column.type}"
            )
        columns[action_id] = [None if v is None else float(v) for v in column_values(column)]
    return columns


def read_propensity_columns(
    columns: Mapping[str, list[float | None]],
    catalog: Sequence[Action],
    ids: Sequence[CustomerId],
) -> dict[tuple[CustomerId, str], float]:
    """Bound propensity columns (`bind_propensity_columns`) as {(customer, action): p}. NULLs
    are left out (missing); customers are checked in row order, each one's actions in catalog
    order."""
    pairs: dict[tuple[CustomerId, str], float] = {}
    for row, customer_id in enumerate(ids):
        for action in catalog:
            column = columns.get(action.id)
            p = None if column is None else column[row]
            if p is None:
                continue
            if not 0.0 <= p <= 1.0:  # also NaN
                raise _probability_error("propensities", customer_id, action.id, p)
            pairs[(customer_id, action.id)] = p
    return pairs


@dataclass
class DoNotContact:
    """The do-not-contact list: the channels (or ``*``) each customer id / address is
    blocked on."""

    by_id: dict[CustomerId, set[str]] = field(default_factory=dict)
    by_address: dict[str, set[str]] = field(default_factory=dict)


def read_do_not_contact(obj: Any, kind: str) -> DoNotContact:
    """Reads and checks the do-not-contact table (channel; customer_id and/or address)."""
    what = "do_not_contact"
    table = read_table(obj, what)
    channel_column = _required(table, "channel", what)
    if not (is_text(channel_column.type) or pat.is_null(channel_column.type)):
        raise SchemaError(f"{what}: column 'channel' must be strings, got {channel_column.type}")
    names = table.schema.names
    if "customer_id" not in names and "address" not in names:
        raise SchemaError(f"{what}: needs a 'customer_id' or an 'address' column")
    ids: list[Any] = [None] * table.num_rows
    id_column = _optional(table, "customer_id")
    if id_column is not None and not pat.is_null(id_column.type):
        found = id_kind(id_column.type)
        if found != kind:
            raise SchemaError(
                f"{what}: customer_id is {id_column.type} but the customers' customer_id is "
                f"{'an integer' if kind == 'int' else 'a string'}"
            )
        ids = column_values(id_column)
    addresses = _texts(table, "address", what)
    blocked = DoNotContact()
    for row, (channel, customer_id, address) in enumerate(
        zip(column_values(channel_column), ids, addresses, strict=True)
    ):
        if channel is None:
            raise DataError(f"{what}: channel is null in row {row}")
        if customer_id is None and address is None:
            raise DataError(f"{what}: row {row} has neither a customer_id nor an address")
        assert isinstance(channel, str)
        if customer_id is not None:
            blocked.by_id.setdefault(customer_id, set()).add(channel)
        if address is not None:
            blocked.by_address.setdefault(address, set()).add(channel)
    return blocked


@dataclass(frozen=True)
class CandidateRow:
    """One row of `arbitrate`'s candidates; None where the row gives no value."""

    customer_id: CustomerId
    action_id: str
    propensity: float | None
    value: float | None
    context_weight: float | None
    lever: float | None
    issue: str | None
    group: str | None
    channel: str | None
    treatment: str | None


def read_candidates(obj: Any) -> tuple[list[CandidateRow], str]:
    """The candidate rows of `arbitrate`, checked, and the kind of their customer ids."""
    what = "candidates"
    table = read_table(obj, what)
    ids = customer_ids(table, what)
    kind = id_kind(table.schema.field("customer_id").type) or "int"
    actions = _action_ids(table, what)
    propensities = _numbers(table, "propensity", what, required=True)
    factors = {
        name: _numbers(table, name, what, required=False)
        for name in ("value", "context_weight", "lever")
    }
    texts = {name: _texts(table, name, what) for name in ("issue", "group", "channel", "treatment")}
    rows: list[CandidateRow] = []
    seen: set[tuple[CustomerId, str]] = set()
    for row, (customer_id, action_id) in enumerate(zip(ids, actions, strict=True)):
        p = propensities[row]
        if p is not None and not 0.0 <= p <= 1.0:
            raise _probability_error(what, customer_id, action_id, p)
        for name, values in factors.items():
            factor = values[row]
            if factor is not None and not (math.isfinite(factor) and factor >= 0.0):
                raise DataError(
                    f"{what}: {name} {factor} for customer {show_id(customer_id)} and action "
                    f"{action_id!r} must be finite and >= 0"
                )
        if (customer_id, action_id) in seen:
            raise DataError(
                f"{what}: customer {show_id(customer_id)} has action {action_id!r} more than once"
            )
        seen.add((customer_id, action_id))
        rows.append(
            CandidateRow(
                customer_id,
                action_id,
                p,
                factors["value"][row],
                factors["context_weight"][row],
                factors["lever"][row],
                texts["issue"][row],
                texts["group"][row],
                texts["channel"][row],
                texts["treatment"][row],
            )
        )
    return rows, kind
