"""Treatments: Jinja-syntax templates rendered in bulk into email subject/body and SMS text.

A treatment is the message of an action: for email a ``subject`` and a ``body``, for SMS a
``text``, written by marketing users in Jinja syntax (``Hi {{ first_name }}``) and filled from the
customer's columns. Variants override fields by language and by region (a US state or a country,
for legal text); the most specific variant that matches a customer wins. See docs/treatments.md.

Templates run in Jinja's immutable sandbox (`make_environment`): they are data, not trusted code.
Rendering is bulk, never one Jinja call per row: `nba_fast.templating` renders a template once
per distinct value of what it reads and assembles the rows column-wise; `nba_fast.sms` counts
the SMS parts.

Example:
    >>> import pyarrow as pa
    >>> from nba_fast.render import load_treatments, render
    >>> treatments = load_treatments(
    ...     {"welcome": {"channel": "sms", "text": "Hi {{ first_name }}! Apply: https://u.plus/a"}},
    ...     source="campaign.toml",
    ... )
    >>> decisions = pa.table({"customer_id": [7], "action_id": ["standard_card"],
    ...                       "channel": ["sms"], "treatment": ["welcome"]})
    >>> customers = pa.table({"customer_id": [7], "first_name": ["Stephen"]})
    >>> row = render(decisions, customers, treatments).to_pylist()[0]
    >>> row["sms_text"], row["sms_segments"], row["sms_encoding"]
    ('Hi Stephen! Apply: https://u.plus/a', 1, 'GSM-7')
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jinja2
import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from nba_fast._core import ConfigError, DataError, SchemaError
from nba_fast.sms import sms_layout
from nba_fast.templating import (
    Columns,
    RowError,
    compiled_template,
    is_string_view,
    make_environment,
)

__all__ = [
    "CHANNEL_FIELDS",
    "OUTPUT_SCHEMA",
    "TemplateError",
    "Treatment",
    "Variant",
    "check_columns",
    "load_treatments",
    "make_environment",
    "render",
]

CHANNEL_FIELDS: Mapping[str, tuple[str, ...]] = {"email": ("subject", "body"), "sms": ("text",)}
"""The template fields of a treatment, per channel."""

OUTPUT_SCHEMA = pa.schema(
    [
        pa.field("customer_id", pa.int64()),
        pa.field("action_id", pa.string()),
        pa.field("channel", pa.string()),
        pa.field("treatment", pa.string()),
        pa.field("variant", pa.string()),
        pa.field("subject", pa.string()),
        pa.field("body", pa.string()),
        pa.field("sms_text", pa.string()),
        pa.field("sms_segments", pa.int32()),
        pa.field("sms_encoding", pa.string()),
        pa.field("link_split", pa.bool_()),
    ]
)
"""The columns `render` returns (``customer_id`` keeps the decisions' type)."""

DEFAULT_VARIANT = "default"

# Decisions are rendered this many rows at a time: memory stays bounded and no string column
# chunk nears Arrow's 2 GiB limit (1M email bodies of 2 kB would pass it in one piece).
_BATCH_ROWS = 1 << 18

_Ints = npt.NDArray[np.int64]


class TemplateError(ConfigError):
    """A treatment template that does not parse, or fails or is refused while rendering."""


@dataclass(frozen=True)
class Variant:
    """One version of a treatment's templates.

    Attributes:
        language: the customers' language it is for (matched case-insensitively), or None.
        region: the state or country it is for (matched case-insensitively against each of the
            region columns), or None. Both None: the treatment's default.
        subject: email subject template (email only).
        body: email body template (email only).
        text: SMS text template (SMS only).
    """

    language: str | None = None
    region: str | None = None
    subject: str | None = None
    body: str | None = None
    text: str | None = None

    @property
    def label(self) -> str:
        """``default``, ``language=es``, ``region=CA`` or ``language=es,region=CA``."""
        parts = [f"{key}={value}" for key, value in self._keys() if value is not None]
        return ",".join(parts) or DEFAULT_VARIANT

    def templates(self) -> dict[str, str]:
        """The field → template source of the fields this variant has."""
        found = {"subject": self.subject, "body": self.body, "text": self.text}
        return {name: source for name, source in found.items() if source is not None}

    def _keys(self) -> tuple[tuple[str, str | None], ...]:
        return (("language", self.language), ("region", self.region))


@dataclass(frozen=True)
class Treatment:
    """A message: its channel and its variants (the first is the default).

    Every variant carries all the channel's fields: a variant's own template where it overrides
    one, else the default's.
    """

    name: str
    channel: str
    variants: tuple[Variant, ...]

    @property
    def fields(self) -> frozenset[str]:
        """The customer columns the templates read (Jinja globals such as ``range`` excluded)."""
        return frozenset().union(
            *(
                compiled_template(source).variables
                for v in self.variants
                for source in v.templates().values()
            )
        )


def load_treatments(
    entries: Mapping[str, Mapping[str, Any]], *, source: str
) -> dict[str, Treatment]:
    """Validate the ``[treatment.NAME]`` tables of a campaign file.

    Args:
        entries: treatment name → table with ``channel`` (``email`` or ``sms``), the channel's
            templates (``subject`` and ``body``, or ``text``) and an optional ``variant`` list of
            tables with ``language`` and/or ``region`` and the fields they override.
        source: where the entries come from (a file name), for error messages.

    Returns:
        name → `Treatment`, in the order given.

    Raises:
        ConfigError: a missing, unknown or mistyped field, naming the treatment and field.
        TemplateError: a template that does not parse, naming treatment, variant and field.

    Example:
        >>> t = load_treatments({"offer": {"channel": "email", "subject": "Hi {{ name }}",
        ...     "body": "...", "variant": [{"language": "es", "subject": "Hola {{ name }}"}]}},
        ...     source="campaign.toml")
        >>> [(v.label, v.subject) for v in t["offer"].variants]
        [('default', 'Hi {{ name }}'), ('language=es', 'Hola {{ name }}')]
    """
    if not isinstance(entries, Mapping):
        raise ConfigError(f"{source}: [treatment] must be a table of treatments")
    return {name: _load_treatment(name, entry, source) for name, entry in entries.items()}


def _load_treatment(name: Any, entry: Any, source: str) -> Treatment:
    where = f"{source}: treatment {name!r}"
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{where}: a treatment name must be a non-empty string")
    if not isinstance(entry, Mapping):
        raise ConfigError(f"{where}: expected a table, got {type(entry).__name__}")
    channel = entry.get("channel")
    if not isinstance(channel, str) or channel not in CHANNEL_FIELDS:
        raise ConfigError(f"{where}: field 'channel' must be 'email' or 'sms', got {channel!r}")
    wanted = CHANNEL_FIELDS[channel]
    _check_keys(entry, {"channel", "variant", *wanted}, where)
    default = {}
    for key in wanted:
        if key not in entry:
            raise ConfigError(f"{where}: field {key!r} is required for a {channel} treatment")
        default[key] = _template(entry[key], where, DEFAULT_VARIANT, key)
    raw_variants = entry.get("variant", [])
    if not isinstance(raw_variants, Sequence) or isinstance(raw_variants, str):
        raise ConfigError(f"{where}: field 'variant' must be a list of tables ([[...variant]])")
    variants = [Variant(**default)]
    seen: dict[tuple[str | None, str | None], int] = {}
    for position, raw in enumerate(raw_variants, start=1):
        at = f"{where}: variant #{position}"
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{at}: expected a table, got {type(raw).__name__}")
        _check_keys(raw, {"language", "region", *wanted}, at)
        keys = {key: _key(raw.get(key), at, key) for key in ("language", "region")}
        if keys["language"] is None and keys["region"] is None:
            raise ConfigError(f"{at}: needs 'language' and/or 'region'")
        folded = (_fold(keys["language"]), _fold(keys["region"]))
        if folded in seen:
            raise ConfigError(f"{at}: same language and region as variant #{seen[folded]}")
        seen[folded] = position
        label = Variant(**keys).label
        overrides = {key: _template(raw[key], where, label, key) for key in wanted if key in raw}
        if not overrides:
            raise ConfigError(f"{at}: overrides none of {', '.join(map(repr, wanted))}")
        variants.append(Variant(**keys, **{**default, **overrides}))
    return Treatment(name=name, channel=channel, variants=tuple(variants))


def _check_keys(table: Mapping[str, Any], known: set[str], where: str) -> None:
    unknown = sorted(str(key) for key in table if key not in known)
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {unknown} (known: {sorted(known)})")


def _key(value: Any, where: str, key: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: field {key!r} must be a non-empty string, got {value!r}")
    return value.strip()


def _fold(value: str | None) -> str | None:
    return None if value is None else value.casefold()


def _template(source: Any, where: str, variant: str, key: str) -> str:
    if not isinstance(source, str):
        raise ConfigError(f"{where}: field {key!r} must be a string, got {type(source).__name__}")
    try:
        compiled_template(source)
    except jinja2.TemplateSyntaxError as err:
        raise TemplateError(
            f"{where}, variant {variant}, field {key!r}: line {err.lineno}: {err.message}"
        ) from err
    return source


def check_columns(
    treatments: Mapping[str, Treatment],
    schema: pa.Schema | Iterable[str],
    *,
    language_column: str = "language",
    region_columns: Sequence[str] = ("state", "country"),
) -> None:
    """Check that the customers have every column the treatments need.

    Raises:
        TemplateError: a template reads a column the customers lack (names treatment, variant,
            field and the columns).
        SchemaError: a variant by language or region, with no language or region column.

    Example:
        >>> t = load_treatments({"hi": {"channel": "sms", "text": "Hi {{ first_name }}"}},
        ...                     source="campaign.toml")
        >>> try:
        ...     check_columns(t, ["customer_id", "name"])
        ... except TemplateError as err:
        ...     print(err)
        treatment 'hi', variant default, field 'text': unknown column(s) ['first_name'] ...
    """
    names = set(schema.names if isinstance(schema, pa.Schema) else schema)
    for treatment in treatments.values():
        for variant in treatment.variants:
            for key, source in variant.templates().items():
                missing = sorted(compiled_template(source).variables - names)
                if missing:
                    raise TemplateError(
                        f"treatment {treatment.name!r}, variant {variant.label}, field {key!r}: "
                        f"unknown column(s) {missing} (customers have: {', '.join(sorted(names))})"
                    )
            if variant.language is not None and language_column not in names:
                raise SchemaError(
                    f"customers: no column {language_column!r}, which treatment "
                    f"{treatment.name!r} variant {variant.label} needs"
                )
            if variant.region is not None and not names.intersection(region_columns):
                raise SchemaError(
                    f"customers: none of the region columns {list(region_columns)}, which "
                    f"treatment {treatment.name!r} variant {variant.label} needs"
                )


def render(
    decisions: Any,
    customers: Any,
    treatments: Mapping[str, Treatment],
    *,
    language_column: str = "language",
    region_columns: Sequence[str] = ("state", "country"),
    treatment_of: Mapping[str, str] | None = None,
) -> pa.Table:
    """Render every decision's message from its treatment and its customer's columns.

    Args:
        decisions: the decisions (`Engine.decide`'s ``decisions``): ``customer_id``,
            ``action_id``, ``channel`` and, unless ``treatment_of`` covers every action,
            ``treatment`` (NULL: no message).
        customers: the customers: ``customer_id`` and the columns the templates read.
        treatments: name → `Treatment` (`load_treatments`).
        language_column: the customers' language column, for variants by language.
        region_columns: the customers' region columns (those present are used), for variants
            by region: a variant matches when any of them equals its region.
        treatment_of: action id → treatment name; overrides the decisions' ``treatment``.

    Returns:
        One row per decision, in order, with the columns of `OUTPUT_SCHEMA`: the email rows
        fill ``subject`` and ``body``, the SMS rows ``sms_text``, ``sms_segments``,
        ``sms_encoding`` and ``link_split``; the rest is NULL.

    Raises:
        SchemaError: a missing or mistyped column.
        DataError: a decision whose customer is not in ``customers`` (or is twice).
        ConfigError: an unknown treatment, or one whose channel differs from its decision's.
        TemplateError: a template reads an unknown column, or fails or is refused by the
            sandbox for some customer (named).
    """
    decisions = _table(decisions, "decisions")
    customers = _table(customers, "customers")
    for name in ("customer_id", "action_id", "channel"):
        _need(decisions, name, "decisions")
    _need(customers, "customer_id", "customers")
    names = _treatment_names(decisions, treatment_of)
    used = _used_treatments(decisions, names, treatments)
    check_columns(
        used, customers.schema, language_column=language_column, region_columns=region_columns
    )
    customer_row = _customer_rows(decisions, customers)
    languages = _folded(customers, [language_column])
    regions = _folded(customers, [c for c in region_columns if c in customers.column_names])

    tables = [
        _render_batch(
            decisions.slice(start, _BATCH_ROWS),
            names.slice(start, _BATCH_ROWS),
            customer_row[start : start + _BATCH_ROWS],
            customers,
            used,
            (languages, regions),
        )
        for start in range(0, max(decisions.num_rows, 1), _BATCH_ROWS)
    ]
    return pa.concat_tables(tables)


def _render_batch(
    decisions: pa.Table,
    names: pa.Array,
    customer_row: _Ints,
    customers: pa.Table,
    used: Mapping[str, Treatment],
    keys: tuple[list[pa.Array], list[pa.Array]],
) -> pa.Table:
    """`render` for a slice of the decisions (``customer_row``: their customers' rows)."""
    pieces: dict[str, list[tuple[_Ints, pa.Array]]] = {
        key: [] for key in ("variant", "subject", "body", "text")
    }
    for treatment in used.values():
        selected = np.flatnonzero(_bools(pc.equal(names, treatment.name)))
        if not len(selected):
            continue
        at = customer_row[selected]
        choice = _choose_variants(treatment, at, *keys)
        labels = pa.array([v.label for v in treatment.variants], pa.string())
        pieces["variant"].append((selected, labels.take(pa.array(choice))))
        for number, variant in enumerate(treatment.variants):
            mine = np.flatnonzero(choice == number)
            if not len(mine):
                continue
            context = Columns(customers, at[mine])
            for key, source in variant.templates().items():
                try:
                    values = compiled_template(source).render(context)
                except RowError as err:
                    customer = customers.column("customer_id")[int(at[mine][err.row])].as_py()
                    raise TemplateError(
                        f"treatment {treatment.name!r}, variant {variant.label}, field {key!r}: "
                        f"customer {customer!r}: {type(err.cause).__name__}: {err.cause}"
                    ) from err.cause
                pieces[key].append((selected[mine], values))

    rows = decisions.num_rows
    columns = {key: _scatter(found, rows) for key, found in pieces.items()}
    layout = sms_layout(columns["text"])
    return pa.table(
        {
            "customer_id": decisions.column("customer_id"),
            "action_id": decisions.column("action_id").cast(pa.string()),
            "channel": decisions.column("channel").cast(pa.string()),
            "treatment": names,
            "variant": columns["variant"],
            "subject": columns["subject"],
            "body": columns["body"],
            "sms_text": columns["text"],
            "sms_segments": layout.segments,
            "sms_encoding": layout.encoding,
            "link_split": layout.link_split,
        }
    )


# --- inputs ---------------------------------------------------------------------------------


def _table(data: Any, what: str) -> pa.Table:
    if isinstance(data, pa.Table):
        return data
    if isinstance(data, pa.RecordBatch) or hasattr(data, "__arrow_c_stream__"):
        return pa.table(data)
    raise SchemaError(f"{what}: expected an Arrow table, got {type(data).__name__}")


def _need(table: pa.Table, name: str, what: str) -> None:
    if name not in table.column_names:
        raise SchemaError(f"{what}: missing column {name!r} (has: {', '.join(table.column_names)})")


def _treatment_names(decisions: pa.Table, treatment_of: Mapping[str, str] | None) -> pa.Array:
    """The treatment name of each decision (NULL: none)."""
    if "treatment" in decisions.column_names:
        names = decisions.column("treatment")
        if _id_kind(names.type) != "string" and not pa.types.is_null(names.type):
            raise SchemaError(f"decisions: column 'treatment' must be strings, got {names.type}")
        base = names.cast(pa.string()).combine_chunks()
    elif treatment_of is None:
        raise SchemaError(
            "decisions: no 'treatment' column; give the catalog's actions a treatment "
            "or pass treatment_of={action_id: treatment}"
        )
    else:
        base = pa.nulls(decisions.num_rows, pa.string())
    if treatment_of is None:
        return base
    actions = decisions.column("action_id").cast(pa.string()).combine_chunks()
    keys = pa.array(list(treatment_of), pa.string())
    mapped = pa.array(list(treatment_of.values()), pa.string()).take(
        pc.index_in(actions, value_set=keys)
    )
    return pc.coalesce(mapped, base)


def _used_treatments(
    decisions: pa.Table, names: pa.Array, treatments: Mapping[str, Treatment]
) -> dict[str, Treatment]:
    """The treatments the decisions name, checked against the decisions' channels."""
    pairs = (
        pa.table(
            {
                "treatment": names,
                "channel": decisions.column("channel").cast(pa.string()),
                "action_id": decisions.column("action_id").cast(pa.string()),
            }
        )
        .group_by(["treatment", "channel", "action_id"])
        .aggregate([])
    )
    used: dict[str, Treatment] = {}
    for name, channel, action in zip(
        *(pairs.column(c).to_pylist() for c in pairs.column_names), strict=True
    ):
        if name is None:
            continue
        treatment = treatments.get(name)
        if treatment is None:
            raise ConfigError(
                f"action {action!r}: treatment {name!r} is not defined "
                f"(defined: {', '.join(sorted(treatments)) or 'none'})"
            )
        if channel != treatment.channel:
            raise ConfigError(
                f"action {action!r}: treatment {name!r} is for {treatment.channel}, "
                f"but the action's channel is {channel!r}"
            )
        used[name] = treatment
    return used


def _customer_rows(decisions: pa.Table, customers: pa.Table) -> _Ints:
    """For each decision, the row of its customer in ``customers``."""
    ids = customers.column("customer_id")
    wanted = decisions.column("customer_id")
    kinds = (_id_kind(wanted.type), _id_kind(ids.type))
    if None in kinds or kinds[0] != kinds[1]:
        # index_in would cast "1" to 1 silently; ids of different kinds never match.
        raise SchemaError(
            f"customer_id: decisions have {wanted.type}, customers have {ids.type} "
            "(both must be integers or both strings)"
        )
    common = pa.int64() if kinds[0] == "integer" else pa.large_string()
    try:
        wanted, ids = wanted.cast(common), ids.cast(common)
    except pa.ArrowInvalid as err:
        raise SchemaError(f"customer_id: {err}") from err
    if kinds[0] == "integer" and not ids.null_count and not wanted.null_count:
        rows = _sorted_lookup(
            np.asarray(ids.to_numpy(), dtype=np.int64), np.asarray(wanted.to_numpy(), np.int64)
        )
        if rows is not None:
            return rows
    found = pc.index_in(wanted, value_set=ids.combine_chunks())
    if found.null_count:
        first = pc.index(pc.is_null(found), True).as_py()
        raise DataError(
            f"decisions: customer_id {wanted[first].as_py()!r} (row {first}) is not in customers"
        )
    if pc.count_distinct(ids).as_py() != len(ids) - ids.null_count:
        counts = pc.value_counts(ids)
        twice = counts.filter(pc.greater(counts.field("counts"), 1))[0]["values"].as_py()
        raise DataError(f"customers: customer_id {twice!r} appears more than once")
    return np.asarray(found.to_numpy(zero_copy_only=False), dtype=np.int64)


def _sorted_lookup(ids: _Ints, wanted: _Ints) -> _Ints | None:
    """Rows of ``wanted`` in strictly increasing ``ids`` (then unique) by binary search; None
    when the ids are not sorted (the caller hashes instead)."""
    if len(ids) > 1 and not (ids[1:] > ids[:-1]).all():
        return None
    rows = np.searchsorted(ids, wanted)
    found = (
        ids[np.minimum(rows, len(ids) - 1)] == wanted if len(ids) else np.zeros(len(wanted), bool)
    )
    if not found.all():
        first = int(np.argmin(found))
        raise DataError(
            f"decisions: customer_id {int(wanted[first])!r} (row {first}) is not in customers"
        )
    return rows.astype(np.int64)


def _id_kind(kind: pa.DataType) -> str | None:
    if pa.types.is_integer(kind):
        return "integer"
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or is_string_view(kind):
        return "string"
    if pa.types.is_dictionary(kind):
        return _id_kind(kind.value_type)
    return None


def _folded(customers: pa.Table, names: Sequence[str]) -> list[pa.Array]:
    """The named columns present, as case-folded strings (variant keys match without case)."""
    found = []
    for name in names:
        if name not in customers.column_names:
            continue
        column = customers.column(name)
        if not (
            pa.types.is_string(column.type)
            or pa.types.is_large_string(column.type)
            or is_string_view(column.type)
            or pa.types.is_dictionary(column.type)
            # all NULL (a CSV column with no values): the engine takes it as text too
            or pa.types.is_null(column.type)
        ):
            raise SchemaError(f"customers: column {name!r} must be strings, got {column.type}")
        found.append(pc.utf8_lower(column.cast(pa.string()).combine_chunks()))
    return found


def _choose_variants(
    treatment: Treatment, at: _Ints, languages: list[pa.Array], regions: list[pa.Array]
) -> npt.NDArray[np.int64]:
    """Per row, the variant that applies: language and region, then language, region, default."""
    choice = np.zeros(len(at), dtype=np.int64)
    if len(treatment.variants) == 1:
        return choice
    taken = pa.array(at)
    language = languages[0].take(taken) if languages else None
    region = [column.take(taken) for column in regions]

    def matches(column: pa.Array | None, value: str) -> npt.NDArray[np.bool_]:
        if column is None:
            return np.zeros(len(at), dtype=bool)
        return _bools(pc.equal(column, value.casefold()))

    def in_region(value: str) -> npt.NDArray[np.bool_]:
        hit = np.zeros(len(at), dtype=bool)
        for column in region:
            hit |= matches(column, value)
        return hit

    decided = np.zeros(len(at), dtype=bool)
    # Most specific first: language and region, language only, region only.
    for tier in ((True, True), (True, False), (False, True)):
        for number, variant in enumerate(treatment.variants[1:], start=1):
            if ((variant.language is not None), (variant.region is not None)) != tier:
                continue
            hit = ~decided
            if variant.language is not None:
                hit &= matches(language, variant.language)
            if variant.region is not None:
                hit &= in_region(variant.region)
            choice[hit] = number
            decided |= hit
    return choice


def _bools(mask: Any) -> npt.NDArray[np.bool_]:
    """A boolean Arrow array as numpy, NULL as False."""
    return np.asarray(pc.fill_null(mask, False).to_numpy(zero_copy_only=False), dtype=bool)


def _scatter(found: list[tuple[_Ints, pa.Array]], rows: int) -> pa.Array:
    """Place each (row indices, values) piece at its rows; rows no piece covers are NULL."""
    if not found:
        return pa.nulls(rows, pa.string())
    at = np.concatenate([indices for indices, _ in found])
    values = pa.concat_arrays([v.cast(pa.string()) for _, v in found] + [pa.nulls(1, pa.string())])
    slot = np.full(rows, len(at), dtype=np.int64)
    slot[at] = np.arange(len(at))
    return values.take(pa.array(slot))
