"""The action catalog and the contact policies: loading, validation and conversion, shared by
every engine.

A catalog comes from a TOML file of ``[[action]]`` tables, an Arrow table whose columns are the
action fields, or a list of dicts (or `Action` objects). Whatever the source, it ends up as a
validated ``list[Action]`` in catalog order; `catalog_to_arrow` turns that into the one Arrow
layout (`CATALOG_SCHEMA`) that the Rust engine reads. Eligibility rules are kept as text here:
the engines parse them.

Contact policies (a list of dicts or `ContactPolicy` objects) are validated by `load_policies`
into a ``list[ContactPolicy]`` in the order given.

Example:
    >>> from nba_fast.config import load_catalog
    >>> [action] = load_catalog([{"id": "gold", "issue": "Sales", "group": "Cards",
    ...                           "channel": "email", "value": 2}])
    >>> action.value, action.lever, action.eligibility
    (2.0, 1.0, None)
"""

from __future__ import annotations

import math
import numbers
import os
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, fields
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.types as pat

from nba_fast._core import ConfigError

__all__ = [
    "CAP_SCOPE_KINDS",
    "CATALOG_SCHEMA",
    "MAX_POLICIES",
    "MAX_THRESHOLD",
    "POLICY_KINDS",
    "POLICY_LEVELS",
    "Action",
    "ContactPolicy",
    "VolumeCap",
    "catalog_to_arrow",
    "duration_micros",
    "load_caps",
    "load_catalog",
    "load_policies",
    "to_epoch_micros",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Action:
    """One action of the catalog: an offer or message on one channel (DESIGN.md §2).

    Attributes:
        id: unique, non-empty; ties in ranking break by it in byte order.
        issue: Pega's business issue (e.g. ``Sales``).
        group: Pega's group (e.g. ``CreditCards``).
        channel: channel name; ``email`` needs an ``email`` column, ``sms`` a ``phone``.
        treatment: template name for the renderer, if any.
        value: business value V of P·V·C·L (finite, >= 0).
        lever: business lever L (finite, >= 0).
        context_weight: context weight C (finite, >= 0).
        eligibility: SQL rule over customer columns; ``None`` or ``""`` means TRUE.
        active_from: active from this instant on (inclusive), timezone-aware UTC.
        active_until: active before this instant (exclusive), timezone-aware UTC.
        default_propensity: used for pairs the propensities do not give, in [0, 1].
    """

    id: str
    issue: str
    group: str
    channel: str
    treatment: str | None = None
    value: float = 1.0
    lever: float = 1.0
    context_weight: float = 1.0
    eligibility: str | None = None
    active_from: datetime | None = None
    active_until: datetime | None = None
    default_propensity: float | None = None


CATALOG_SCHEMA: pa.Schema = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("issue", pa.string()),
        pa.field("group", pa.string()),
        pa.field("channel", pa.string()),
        pa.field("treatment", pa.string()),
        pa.field("value", pa.float64()),
        pa.field("lever", pa.float64()),
        pa.field("context_weight", pa.float64()),
        pa.field("eligibility", pa.string()),
        pa.field("active_from", pa.timestamp("us", tz="UTC")),
        pa.field("active_until", pa.timestamp("us", tz="UTC")),
        pa.field("default_propensity", pa.float64()),
    ]
)
"""The Arrow layout of a catalog, one row per action in catalog order."""

_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Action))
_REQUIRED = ("id", "issue", "group", "channel")
_OPTIONAL_STRINGS = ("treatment", "eligibility")
_FACTORS = ("value", "lever", "context_weight")
_TIMES = ("active_from", "active_until")


def to_epoch_micros(now: datetime | None) -> int:
    """Microseconds since the Unix epoch of `now`, in exact integer arithmetic.

    Args:
        now: an instant; a naive datetime means UTC; ``None`` means the current time.

    Returns:
        The instant as integer microseconds since 1970-01-01T00:00:00Z.

    Raises:
        TypeError: `now` is neither a datetime nor None.

    Example:
        >>> from datetime import datetime
        >>> to_epoch_micros(datetime(1970, 1, 2, 0, 0, 0, 5))
        86400000005
    """
    if now is None:
        now = datetime.now(UTC)
    if not isinstance(now, datetime):
        raise TypeError(f"now must be a datetime or None, got {type(now).__name__}")
    if now.tzinfo is None or now.utcoffset() is None:
        now = now.replace(tzinfo=UTC)
    delta = now - _EPOCH
    # timedelta normalises to (days, seconds < 86400, microseconds < 10**6): exact integers.
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _from_epoch_micros(micros: int) -> datetime:
    """The timezone-aware UTC datetime of `micros` microseconds since the epoch."""
    return _EPOCH + timedelta(microseconds=micros)


def load_catalog(catalog: Any) -> list[Action]:
    """Loads and validates a catalog.

    Args:
        catalog: a path to a TOML file of ``[[action]]`` tables; an Arrow table (pyarrow Table,
            RecordBatch or RecordBatchReader, or any object with ``__arrow_c_stream__`` /
            ``__arrow_c_array__`` such as a polars DataFrame) whose columns are action fields;
            or a sequence of mappings (or `Action` objects) with those keys.

    Returns:
        The actions in catalog order.

    Raises:
        ConfigError: the catalog cannot be read, or an action is invalid: a missing required
            field, an unknown field, a wrong type, a duplicate or empty id, a negative or
            non-finite factor, a default propensity outside [0, 1], an empty active window,
            or no action at all. The message names the action and the field.
    """
    if isinstance(catalog, str | os.PathLike):
        entries = _read_toml(os.fspath(catalog))
    elif _is_arrow(catalog):
        entries = _read_arrow(catalog)
    elif isinstance(catalog, Sequence) and not isinstance(catalog, bytes | bytearray):
        entries = list(catalog)
    else:
        raise ConfigError(
            "catalog: expected a TOML file path, an Arrow table or a list of dicts, "
            f"got {type(catalog).__name__}"
        )
    if not entries:
        raise ConfigError("catalog: no actions (a catalog needs at least one)")
    actions = [_validate_entry(entry, position) for position, entry in enumerate(entries)]
    first_seen: dict[str, int] = {}
    for position, action in enumerate(actions):
        if action.id in first_seen:
            raise ConfigError(
                f"action {action.id!r}: duplicate id (actions #{first_seen[action.id] + 1} "
                f"and #{position + 1} share it)"
            )
        first_seen[action.id] = position
    return actions


def catalog_to_arrow(actions: Sequence[Action]) -> pa.Table:
    """The catalog as an Arrow table with `CATALOG_SCHEMA`, one row per action in order.

    Args:
        actions: validated actions, e.g. from `load_catalog`.

    Returns:
        A pyarrow Table.

    Example:
        >>> table = catalog_to_arrow([Action("a", "Sales", "Cards", "email")])
        >>> table.column("value").to_pylist(), table.schema == CATALOG_SCHEMA
        ([1.0], True)
    """
    columns: dict[str, pa.Array] = {}
    for field in CATALOG_SCHEMA:
        values = [getattr(action, field.name) for action in actions]
        if field.name in _TIMES:
            micros = [None if v is None else to_epoch_micros(v) for v in values]
            columns[field.name] = pa.array(micros, pa.int64()).cast(field.type)
        else:
            columns[field.name] = pa.array(values, field.type)
    return pa.Table.from_pydict(columns, schema=CATALOG_SCHEMA)


# --- sources -------------------------------------------------------------------------------


def _read_toml(path: str) -> list[Any]:
    """The ``[[action]]`` tables of a TOML file."""
    try:
        with open(path, "rb") as file:
            document = tomllib.load(file)
    except OSError as err:
        raise ConfigError(f"catalog: cannot read {path!r}: {err}") from err
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"catalog: {path!r} is not valid TOML: {err}") from err
    unknown = sorted(set(document) - {"action"})
    if unknown:
        raise ConfigError(
            f"catalog: {path!r} has unknown top-level key(s) {unknown}; "
            "a catalog file holds only [[action]] tables"
        )
    entries = document.get("action", [])
    if not isinstance(entries, list):
        raise ConfigError(f"catalog: {path!r}: write actions as [[action]] tables")
    return entries


def _is_arrow(obj: Any) -> bool:
    return isinstance(obj, pa.Table | pa.RecordBatch | pa.RecordBatchReader) or any(
        hasattr(obj, name) for name in ("__arrow_c_stream__", "__arrow_c_array__")
    )


def _read_arrow(obj: Any) -> list[dict[str, Any]]:
    """The rows of an Arrow catalog as dicts, NULLs left out (so they take the defaults)."""
    table = obj.read_all() if isinstance(obj, pa.RecordBatchReader) else pa.table(obj)
    columns: dict[str, list[Any]] = {}
    for field, column in zip(table.schema, table.columns, strict=True):
        name = field.name
        if name not in _FIELDS:
            raise ConfigError(f"catalog: unknown field {name!r} (known: {', '.join(_FIELDS)})")
        columns[name] = _arrow_values(name, field.type, column)
    return [
        {name: values[row] for name, values in columns.items() if values[row] is not None}
        for row in range(table.num_rows)
    ]


def _arrow_values(name: str, data_type: pa.DataType, column: pa.ChunkedArray) -> list[Any]:
    """One catalog column as Python values, checking its Arrow type fits the field."""
    if pat.is_null(data_type):
        return [None] * len(column)
    if pat.is_dictionary(data_type):
        data_type = data_type.value_type
        column = column.cast(data_type)
    is_text = pat.is_string(data_type) or pat.is_large_string(data_type)
    is_text = is_text or pat.is_string_view(data_type)
    if name in _TIMES:
        if pat.is_timestamp(data_type) or pat.is_date(data_type):
            return [None if us is None else _from_epoch_micros(us) for us in _micros(column)]
        if is_text:  # ISO 8601 strings, parsed like those of a list of dicts
            return list(column.cast(pa.string()).to_pylist())
        expected = "a timestamp, a date or ISO 8601 strings"
    elif name in _FACTORS or name == "default_propensity":
        if pat.is_integer(data_type) or pat.is_floating(data_type):
            return list(column.to_pylist())
        expected = "integers or floats"
    else:
        if is_text:
            return list(column.cast(pa.string()).to_pylist())
        expected = "strings"
    raise ConfigError(f"catalog: field {name!r} must be {expected}, got Arrow type {data_type}")


def _micros(column: pa.ChunkedArray) -> list[int | None]:
    """A timestamp or date column as integer microseconds (nanoseconds floored)."""
    data_type = column.type
    if pat.is_date32(data_type):  # days
        days: list[int | None] = column.cast(pa.int32()).to_pylist()
        return [None if d is None else d * 86_400_000_000 for d in days]
    raw: list[int | None] = column.cast(pa.int64()).to_pylist()
    unit = "ms" if pat.is_date64(data_type) else data_type.unit
    if unit == "ns":
        return [None if v is None else v // 1_000 for v in raw]
    scale = {"s": 1_000_000, "ms": 1_000, "us": 1}[unit]
    return [None if v is None else v * scale for v in raw]


# --- validation ----------------------------------------------------------------------------


def _validate_entry(entry: Any, position: int) -> Action:
    """One catalog entry (a mapping or an `Action`) checked and converted to an `Action`."""
    if isinstance(entry, Action):
        entry = {name: getattr(entry, name) for name in _FIELDS}
    if not isinstance(entry, Mapping):
        raise ConfigError(
            f"action #{position + 1}: expected a table/dict of fields, got {type(entry).__name__}"
        )
    raw_id = entry.get("id")
    label = (
        f"action {raw_id!r}" if isinstance(raw_id, str) and raw_id else f"action #{position + 1}"
    )
    for key in entry:
        if key not in _FIELDS:
            raise ConfigError(f"{label}: unknown field {key!r} (known: {', '.join(_FIELDS)})")
    values: dict[str, Any] = {}
    for name in _REQUIRED:
        value = entry.get(name)
        if value is None:
            raise ConfigError(f"{label}: missing required field {name!r}")
        values[name] = _string(label, name, value)
    if values["id"] == "":
        raise ConfigError(f"{label}: field 'id' must not be empty")
    for name in _OPTIONAL_STRINGS:
        value = entry.get(name)
        values[name] = None if value is None else _string(label, name, value)
    for name in _FACTORS:
        value = entry.get(name)
        factor = 1.0 if value is None else _number(label, name, value)
        if not (math.isfinite(factor) and factor >= 0.0):
            raise ConfigError(f"{label}: field {name!r} must be finite and >= 0, got {value!r}")
        values[name] = factor
    value = entry.get("default_propensity")
    if value is None:
        values["default_propensity"] = None
    else:
        propensity = _number(label, "default_propensity", value)
        if not 0.0 <= propensity <= 1.0:  # also rejects NaN
            raise ConfigError(
                f"{label}: field 'default_propensity' must be in [0, 1], got {value!r}"
            )
        values["default_propensity"] = propensity
    for name in _TIMES:
        value = entry.get(name)
        values[name] = None if value is None else _instant(label, name, value)
    start, end = values["active_from"], values["active_until"]
    if start is not None and end is not None and start >= end:
        raise ConfigError(
            f"{label}: field 'active_from' ({start.isoformat()}) must be before "
            f"'active_until' ({end.isoformat()})"
        )
    return Action(**values)


def _string(label: str, name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{label}: field {name!r} must be a string, got {type(value).__name__}")
    return value


def _number(label: str, name: str, value: Any) -> float:
    """A real number as a float; ints are fine, booleans are not."""
    is_bool = isinstance(value, bool) or type(value).__name__ == "bool_"  # numpy.bool_ too
    if is_bool or not isinstance(value, numbers.Real):
        raise ConfigError(f"{label}: field {name!r} must be a number, got {type(value).__name__}")
    try:
        return float(value)
    except OverflowError:  # an int too large for a double: certainly not a finite factor
        return math.inf


def _instant(label: str, name: str, value: Any) -> datetime:
    """A timezone-aware UTC datetime from a datetime, a date or an ISO 8601 string."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError as err:
            raise ConfigError(
                f"{label}: field {name!r} is not an ISO 8601 date-time: {value!r}"
            ) from err
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)
    if isinstance(value, date):
        return datetime.combine(value, time(), tzinfo=UTC)
    raise ConfigError(
        f"{label}: field {name!r} must be a date-time (TOML datetime or ISO 8601 string), "
        f"got {type(value).__name__}"
    )


# --- contact policies ----------------------------------------------------------------------

POLICY_KINDS: tuple[str, ...] = ("suppress", "limit")
"""``suppress``: "if N outcomes within W days, suppress for S days"; ``limit``: "at most N
within the last W days"."""

POLICY_LEVELS: tuple[str, ...] = ("action", "group", "issue", "channel", "customer")
"""What a history event must share with a candidate's action to count (``customer``: nothing)."""

MAX_POLICIES = 64
"""The most contact policies one engine takes (the Rust engine keeps one bit per policy)."""

MAX_THRESHOLD = 2**32 - 1
"""The largest `ContactPolicy.threshold` (an unsigned 32-bit integer in the Rust engine)."""

_MICROS_PER_DAY = 86_400_000_000.0
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


@dataclass(frozen=True, slots=True)
class ContactPolicy:
    """One contact policy (docs/semantics.md, "Contact policies"); fields after `level` are
    keyword-only.

    Attributes:
        name: unique among the engine's policies; its drops count as ``suppressed:NAME``.
        kind: ``suppress`` or ``limit``.
        level: ``action``, ``group``, ``issue``, ``channel`` or ``customer``: what a history
            event must share with the candidate's action to count.
        channel: the channel it applies to and counts events on; ``*`` for all.
        outcomes: the history outcomes it counts.
        threshold: N >= 1.
        window_days: W > 0 (finite).
        suppress_days: S >= 0 (finite); required for ``suppress``, None for ``limit``.
        threshold_column: an integer column giving N per customer (``limit`` only).

    Constructing one checks nothing; `load_policies` (which every `Engine` calls) does.

    Example:
        >>> policy = ContactPolicy("cooldown", "suppress", "group", channel="email",
        ...                        outcomes=("sent",), threshold=1, window_days=30,
        ...                        suppress_days=60)
        >>> load_policies([policy])[0].window_days
        30.0
    """

    name: str
    kind: str
    level: str
    _: KW_ONLY
    channel: str = "*"
    outcomes: tuple[str, ...]
    threshold: int
    window_days: float
    suppress_days: float | None = None
    threshold_column: str | None = None


_POLICY_KEYS: tuple[str, ...] = tuple(f.name for f in fields(ContactPolicy))


def duration_micros(days: float) -> int:
    """A duration of `days` days in whole microseconds: the float product
    ``days * 86_400_000_000.0`` rounded half to even, saturated to the int64 range (as Rust's
    ``as i64`` does).

    Raises:
        ValueError: `days` is NaN.

    Example:
        >>> duration_micros(30)
        2592000000000
        >>> [duration_micros(us / 86_400_000_000) for us in (0.5, 1.5, 2.5)]  # ties to even
        [0, 2, 2]
    """
    product = float(days) * _MICROS_PER_DAY
    if math.isnan(product):
        raise ValueError("a duration must not be NaN")
    if math.isinf(product):
        return _INT64_MAX if product > 0 else _INT64_MIN
    return max(_INT64_MIN, min(_INT64_MAX, round(product)))


def load_policies(
    policies: Sequence[Mapping[str, Any] | ContactPolicy] | None,
) -> list[ContactPolicy]:
    """Validates contact policies.

    Args:
        policies: a list of dicts with the keys of `ContactPolicy` (a key set to None counts as
            absent), or `ContactPolicy` objects; None means none.

    Returns:
        The policies in the order given, with `outcomes` as a tuple and durations as floats.

    Raises:
        ConfigError: an unknown or missing key, a wrong type, an empty name, an unknown kind or
            level, empty outcomes, a threshold outside [1, 2**32 - 1], W <= 0, S < 0 or a
            non-finite duration, ``suppress_days`` on a ``limit``, ``threshold_column`` on a
            ``suppress``, a duplicate name, or more than `MAX_POLICIES` policies. The message
            names the policy and the key.

    Example:
        >>> [p] = load_policies([{"name": "weekly", "kind": "limit", "level": "customer",
        ...                       "outcomes": ["sent"], "threshold": 2, "window_days": 7}])
        >>> p.channel, p.outcomes, p.suppress_days
        ('*', ('sent',), None)
    """
    if policies is None:
        return []
    if not isinstance(policies, Sequence) or isinstance(policies, str | bytes | bytearray):
        raise ConfigError(
            "policies: expected a list of dicts or ContactPolicy objects, "
            f"got {type(policies).__name__}"
        )
    if len(policies) > MAX_POLICIES:
        raise ConfigError(f"policies: at most {MAX_POLICIES} contact policies, got {len(policies)}")
    loaded = [_validate_policy(entry, position) for position, entry in enumerate(policies)]
    first_seen: dict[str, int] = {}
    for position, policy in enumerate(loaded):
        if policy.name in first_seen:
            raise ConfigError(
                f"policy {policy.name!r}: key 'name': duplicate name (policies "
                f"#{first_seen[policy.name] + 1} and #{position + 1} share it)"
            )
        first_seen[policy.name] = position
    return loaded


def _validate_policy(entry: Any, position: int) -> ContactPolicy:
    """One policy (a mapping or a `ContactPolicy`) checked and converted."""
    if isinstance(entry, ContactPolicy):
        entry = {name: getattr(entry, name) for name in _POLICY_KEYS}
    if not isinstance(entry, Mapping):
        raise ConfigError(
            f"policy #{position + 1}: expected a dict of keys or a ContactPolicy, "
            f"got {type(entry).__name__}"
        )
    raw_name = entry.get("name")
    label = (
        f"policy {raw_name!r}"
        if isinstance(raw_name, str) and raw_name
        else f"policy #{position + 1}"
    )
    for key in entry:
        if key not in _POLICY_KEYS:
            raise ConfigError(f"{label}: unknown key {key!r} (known: {', '.join(_POLICY_KEYS)})")

    def required(key: str) -> Any:
        value = entry.get(key)
        if value is None:
            raise ConfigError(f"{label}: missing required key {key!r}")
        return value

    def text(key: str, value: Any) -> str:
        if not isinstance(value, str):
            raise ConfigError(f"{label}: key {key!r} must be a string, got {type(value).__name__}")
        return value

    def choice(key: str, allowed: tuple[str, ...]) -> str:
        value = text(key, required(key))
        if value not in allowed:
            options = ", ".join(repr(a) for a in allowed)
            raise ConfigError(f"{label}: key {key!r} must be one of {options}, got {value!r}")
        return value

    def days(key: str, value: Any, *, positive: bool) -> float:
        is_bool = isinstance(value, bool) or type(value).__name__ == "bool_"
        if is_bool or not isinstance(value, numbers.Real):
            raise ConfigError(f"{label}: key {key!r} must be a number, got {type(value).__name__}")
        try:
            result = float(value)
        except OverflowError:  # an int too large for a double
            result = math.inf
        ok = math.isfinite(result) and (result > 0.0 if positive else result >= 0.0)
        if not ok:
            bound = "> 0" if positive else ">= 0"
            raise ConfigError(f"{label}: key {key!r} must be finite and {bound}, got {value!r}")
        return result

    name = text("name", required("name"))
    if name == "":
        raise ConfigError(f"{label}: key 'name' must not be empty")
    kind = choice("kind", POLICY_KINDS)
    level = choice("level", POLICY_LEVELS)
    channel_value = entry.get("channel")
    channel = "*" if channel_value is None else text("channel", channel_value)

    raw_outcomes = required("outcomes")
    if not isinstance(raw_outcomes, Sequence) or isinstance(raw_outcomes, str | bytes | bytearray):
        raise ConfigError(
            f"{label}: key 'outcomes' must be a list of strings, got {type(raw_outcomes).__name__}"
        )
    for outcome in raw_outcomes:
        if not isinstance(outcome, str):
            raise ConfigError(
                f"{label}: key 'outcomes' must be a list of strings, "
                f"got {type(outcome).__name__} {outcome!r} in it"
            )
    outcomes = tuple(raw_outcomes)
    if not outcomes:
        raise ConfigError(f"{label}: key 'outcomes' must not be empty")

    raw_threshold = required("threshold")
    is_bool = isinstance(raw_threshold, bool) or type(raw_threshold).__name__ == "bool_"
    if is_bool or not isinstance(raw_threshold, numbers.Integral):
        raise ConfigError(
            f"{label}: key 'threshold' must be an integer, got {type(raw_threshold).__name__}"
        )
    threshold = int(raw_threshold)
    if not 1 <= threshold <= MAX_THRESHOLD:
        raise ConfigError(
            f"{label}: key 'threshold' must be an integer in [1, {MAX_THRESHOLD}], got {threshold}"
        )

    window_days = days("window_days", required("window_days"), positive=True)
    raw_suppress = entry.get("suppress_days")
    suppress_days: float | None = None
    if kind == "suppress":
        if raw_suppress is None:
            raise ConfigError(f"{label}: missing required key 'suppress_days' (kind 'suppress')")
        suppress_days = days("suppress_days", raw_suppress, positive=False)
    elif raw_suppress is not None:
        raise ConfigError(f"{label}: key 'suppress_days' is only for kind 'suppress'")
    raw_column = entry.get("threshold_column")
    threshold_column = None if raw_column is None else text("threshold_column", raw_column)
    if threshold_column is not None and kind != "limit":
        raise ConfigError(f"{label}: key 'threshold_column' is only for kind 'limit'")
    return ContactPolicy(
        name,
        kind,
        level,
        channel=channel,
        outcomes=outcomes,
        threshold=threshold,
        window_days=window_days,
        suppress_days=suppress_days,
        threshold_column=threshold_column,
    )


CAP_SCOPE_KINDS: tuple[str, ...] = ("channel", "action", "group", "issue")
"""The kinds of cap scope besides ``all``: ``KIND:NAME``."""


@dataclass(frozen=True)
class VolumeCap:
    """One volume cap (DESIGN.md §3, "Volume caps"): at most `max` decisions per run in `scope`.

    Attributes:
        scope: ``all``, ``channel:NAME``, ``action:ID``, ``group:NAME`` or ``issue:NAME``.
        max: the most decisions the scope may take (0 allows none).

    Example:
        >>> load_caps([VolumeCap("channel:email", 50_000), {"scope": "all", "max": 80_000}])
        [VolumeCap(scope='channel:email', max=50000), VolumeCap(scope='all', max=80000)]
    """

    scope: str
    max: int


def load_caps(caps: Sequence[Mapping[str, Any] | VolumeCap] | None) -> list[VolumeCap]:
    """Validates volume caps.

    Args:
        caps: a list of dicts with keys ``scope`` and ``max``, or `VolumeCap` objects; None
            means none.

    Returns:
        The caps in the order given (the order in which the funnel reports them).

    Raises:
        ConfigError: an unknown or missing key, an unknown scope, a negative or non-integer
            max, or a scope capped twice; the message names the cap.
    """
    if caps is None:
        return []
    if not isinstance(caps, Sequence) or isinstance(caps, str | bytes | bytearray):
        raise ConfigError(
            f"caps: expected a list of dicts or VolumeCap objects, got {type(caps).__name__}"
        )
    loaded: list[VolumeCap] = []
    seen: set[str] = set()
    for position, entry in enumerate(caps):
        where = f"caps #{position + 1}"
        if isinstance(entry, VolumeCap):
            scope, maximum = entry.scope, entry.max
        elif isinstance(entry, Mapping):
            unknown = sorted(set(entry) - {"scope", "max"})
            if unknown:
                raise ConfigError(f"{where}: unknown key {unknown[0]!r} (expected scope, max)")
            missing = [key for key in ("scope", "max") if entry.get(key) is None]
            if missing:
                raise ConfigError(f"{where}: key {missing[0]!r} is required")
            scope, maximum = entry["scope"], entry["max"]
        else:
            raise ConfigError(f"{where}: expected a dict or VolumeCap, got {type(entry).__name__}")
        if not isinstance(scope, str):
            raise ConfigError(f"{where}: key 'scope' must be a string, got {scope!r}")
        where = f"cap {scope!r}"
        kind, colon, name = scope.partition(":")
        if scope != "all" and not (colon and kind in CAP_SCOPE_KINDS and name):
            raise ConfigError(
                f"{where}: unknown scope: expected 'all', 'channel:NAME', 'action:ID', "
                "'group:NAME' or 'issue:NAME'"
            )
        if isinstance(maximum, bool) or not isinstance(maximum, numbers.Integral):
            raise ConfigError(f"{where}: key 'max' must be an integer, got {maximum!r}")
        if maximum < 0:
            raise ConfigError(f"{where}: key 'max' must be >= 0, got {maximum}")
        if maximum > _INT64_MAX:
            raise ConfigError(f"{where}: key 'max' must be at most {_INT64_MAX}, got {maximum}")
        if scope in seen:
            raise ConfigError(f"{where}: scope capped twice")
        seen.add(scope)
        loaded.append(VolumeCap(scope, int(maximum)))
    return loaded
