"""Treatments: Jinja-syntax templates rendered in bulk into email subject/body and SMS text.

A treatment is the message of an action: for email a ``subject`` and a ``body``, for SMS a
``text``, written by marketing users in Jinja syntax (``Hi {{ first_name }}``) and filled from the
customer's columns. Variants override fields by language and by region (a US state or a country,
for legal text); the most specific variant that matches a customer wins. See docs/treatments.md.

Templates run in Jinja's immutable sandbox (`make_environment`): they are data, not trusted code.

Rendering is bulk, never one Jinja call per row. Each template is compiled once and split:

- every output ``{{ expression }}`` over customer columns that sits in plain text or in ``if`` /
  ``for`` blocks becomes a *slot*, evaluated once per distinct value (combination) of its
  columns; a bare ``{{ column }}`` of strings or integers is just that column, as text;
- what remains is rendered once per distinct combination of the columns that control flow still
  reads (once in all when none does), with each slot replaced by a private-use sentinel
  character; splitting that output at the sentinels gives literal pieces;
- each row is then the concatenation of its pieces and slot values, assembled by
  `pyarrow.compute.binary_join_element_wise` over whole columns.

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

import functools
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import jinja2
import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
from jinja2 import StrictUndefined, meta, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

from nba_fast._core import ConfigError, DataError, SchemaError
from nba_fast.sms import sms_layout

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

# Private-use code points stand in for slots while a template renders (U+E000..U+F8FF).
_SENTINEL_FIRST, _SENTINEL_LAST = 0xE000, 0xF8FF
_SLOT_PREFIX = "__nba_fast_slot_"
# Block types whose output reaches the message unchanged: a slot may sit inside them. Anything
# else (macros, call and filter blocks, {% set %} blocks, template blocks) may transform or
# capture its output, so the expressions in it stay in the template.
_TRANSPARENT = (nodes.Template, nodes.Output, nodes.If)
# A bare column of these types prints as Arrow's cast to string prints it.
_CASTS_LIKE_PYTHON = (pa.types.is_string, pa.types.is_large_string, pa.types.is_integer)

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
                _compiled(source).variables
                for v in self.variants
                for source in v.templates().values()
            )
        )


def make_environment() -> jinja2.Environment:
    """The Jinja environment treatments render in.

    Immutable sandbox (templates cannot reach Python internals nor mutate values); an unknown
    variable is an error, not an empty string; a NULL (None) prints as an empty string; no HTML
    autoescaping (the sender's own templating escapes if it needs to); ``trim_blocks`` and
    ``lstrip_blocks`` so that ``{% if %}`` lines leave no blank lines. The ``random`` filter and
    the ``lipsum`` global are removed: a run repeated after a crash must render the same
    messages (an A/B split belongs in a customer column).

    Example:
        >>> make_environment().from_string("Hi {{ name }}!").render(name=None)
        'Hi !'
    """
    environment = ImmutableSandboxedEnvironment(
        undefined=StrictUndefined,
        finalize=_finalize,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    del environment.filters["random"]
    del environment.globals["lipsum"]
    return environment


def _finalize(value: Any) -> Any:
    return "" if value is None else value


_ENVIRONMENT = make_environment()


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
        _compiled(source)
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
                missing = sorted(_compiled(source).variables - names)
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
            context = _Context(customers, at[mine])
            for key, source in variant.templates().items():
                try:
                    values = _compiled(source).render(context)
                except _RowError as err:
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
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or _is_string_view(kind):
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
            or _is_string_view(column.type)
            or pa.types.is_dictionary(column.type)
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


# --- bulk rendering ------------------------------------------------------------------------


def _is_view(kind: pa.DataType) -> bool:
    """A string_view / binary_view column (pyarrow >= 16), which few kernels take yet."""
    return _is_string_view(kind) or bool(getattr(pa.types, "is_binary_view", lambda _: False)(kind))


def _is_string_view(kind: pa.DataType) -> bool:
    return bool(getattr(pa.types, "is_string_view", lambda _: False)(kind))


class _RowError(Exception):
    """A template failed for the row ``row`` of the rows being rendered."""

    def __init__(self, row: int, cause: Exception) -> None:
        super().__init__(str(cause))
        self.row = row
        self.cause = cause


class _Context:
    """The customer columns, taken lazily at the rows being rendered."""

    def __init__(self, customers: pa.Table, at: _Ints) -> None:
        self.customers = customers
        self.at = pa.array(at)
        self.rows = len(at)
        self._cache: dict[str, pa.Array] = {}

    def column(self, name: str) -> pa.Array:
        if name not in self._cache:
            whole = self.customers.column(name)
            if _is_view(whole.type):  # no take kernel for views yet
                whole = whole.cast(
                    pa.large_string() if _is_string_view(whole.type) else pa.large_binary()
                )
            column = whole.take(self.at).combine_chunks()
            if pa.types.is_dictionary(column.type):
                column = column.dictionary_decode()
            self._cache[name] = column
        return self._cache[name]


@dataclass(frozen=True)
class _Slot:
    """An output expression over customer columns, evaluated per distinct value combination."""

    variables: tuple[str, ...]
    template: jinja2.Template
    column: str | None  # a bare ``{{ column }}``


@dataclass
class _Compiled:
    """A template, analysed once: its columns, slots and the residual template."""

    source: str
    template: jinja2.Template
    variables: frozenset[str]
    slots: list[_Slot] = field(default_factory=list)
    residual: jinja2.Template | None = None
    residual_variables: tuple[str, ...] = ()
    sentinels: str = ""

    def render(self, context: _Context) -> pa.Array:
        """The template rendered for every row of ``context`` (a string array)."""
        if self.residual is None:
            return _per_distinct(self.template, sorted(self.variables), context)
        groups, first = _groups([context.column(n) for n in self.residual_variables], context.rows)
        # Each group renders twice, with two disjoint sets of sentinels: a private-use character
        # that the template makes itself ("%c" % 57344, a "\\ue000" escape) or that the data
        # it prints holds cannot sit where both sets' sentinels do, so the splits differ and the
        # template falls back to whole renders.
        count = len(self.slots)
        twins = (self.sentinels[:count], self.sentinels[count:])
        layouts = []
        for row in first:
            values = {
                name: context.column(name)[int(row)].as_py() for name in self.residual_variables
            }
            splits = []
            for sentinels in twins:
                values.update({f"{_SLOT_PREFIX}{k}": s for k, s in enumerate(sentinels)})
                try:
                    output = self.residual.render(values)
                except Exception as err:
                    raise _RowError(int(row), err) from err
                splits.append(_split(output, sentinels))
            if splits[0] != splits[1]:
                return _per_distinct(self.template, sorted(self.variables), context)
            layouts.append(splits[0])
        slot_values = [_slot_values(slot, context) for slot in self.slots]
        return _assemble(layouts, groups, slot_values, context.rows)


@functools.lru_cache(maxsize=512)
def _compiled(source: str) -> _Compiled:
    """Parse and analyse a template (cached by its source). Raises TemplateSyntaxError."""
    env = _ENVIRONMENT
    tree = env.parse(source)
    variables = frozenset(meta.find_undeclared_variables(tree))
    compiled = _Compiled(source=source, template=env.from_string(tree), variables=variables)
    residual = env.parse(source)
    bound = {n.name for n in residual.find_all(nodes.Name) if n.ctx != "load"}
    free = set(variables) - bound
    used = set(source)
    sentinels = [chr(c) for c in range(_SENTINEL_FIRST, _SENTINEL_LAST + 1) if chr(c) not in used]
    slots: list[_Slot] = []
    for output in _transparent_outputs(residual):
        for position, expression in enumerate(output.nodes):
            if isinstance(expression, nodes.TemplateData):
                continue
            names = list(expression.find_all(nodes.Name))
            if isinstance(expression, nodes.Name):
                names = [expression]
            if not names or any(n.ctx != "load" or n.name not in free for n in names):
                continue
            if 2 * (len(slots) + 1) > len(sentinels):
                return compiled
            slot_tree = nodes.Template([nodes.Output([expression], lineno=1)], lineno=1)
            slot_tree.set_environment(env)
            slots.append(
                _Slot(
                    variables=tuple(sorted({n.name for n in names})),
                    template=env.from_string(slot_tree),
                    column=expression.name if isinstance(expression, nodes.Name) else None,
                )
            )
            replacement = nodes.Name(
                f"{_SLOT_PREFIX}{len(slots) - 1}", "load", lineno=expression.lineno
            )
            replacement.set_environment(env)
            output.nodes[position] = replacement
    compiled.slots = slots
    compiled.residual = env.from_string(residual)
    compiled.residual_variables = tuple(
        sorted(
            n for n in meta.find_undeclared_variables(residual) if not n.startswith(_SLOT_PREFIX)
        )
    )
    compiled.sentinels = "".join(sentinels[: 2 * len(slots)])
    return compiled


def _transparent_outputs(tree: nodes.Template) -> Iterator[nodes.Output]:
    """The output nodes whose text reaches the message as is (see `_TRANSPARENT`)."""

    def walk(node: nodes.Node) -> Iterator[nodes.Output]:
        if isinstance(node, nodes.Output):
            yield node
            return
        if isinstance(node, nodes.For) and not node.recursive:
            for child in (*node.body, *node.else_):
                yield from walk(child)
            return
        if not isinstance(node, _TRANSPARENT):
            return
        for child in node.iter_child_nodes():
            yield from walk(child)

    yield from walk(tree)


@dataclass(frozen=True)
class _SlotValues:
    """A slot's printed value per row, and the rows where evaluating it failed.

    A failure only matters where the row's output uses the slot: ``{% if n is not none %}{{ n + 1
    }}{% endif %}`` evaluates ``n + 1`` for every distinct ``n``, None included.
    """

    values: pa.Array
    failed: npt.NDArray[np.bool_] | None = None
    groups: _Ints | None = None  # distinct combination per row
    errors: Mapping[int, Exception] = field(default_factory=dict)  # by combination

    def error(self, row: int) -> Exception:
        assert self.groups is not None
        return self.errors[int(self.groups[row])]


def _slot_values(slot: _Slot, context: _Context) -> _SlotValues:
    """One slot's printed value per row: a cast for a bare text or integer column, else one
    Jinja render per distinct combination of the slot's columns."""
    if slot.column is not None:
        column = context.column(slot.column)
        if any(check(column.type) for check in _CASTS_LIKE_PYTHON):
            return _SlotValues(pc.fill_null(column.cast(pa.string()), ""))
    groups, first = _groups([context.column(n) for n in slot.variables], context.rows)
    outputs, failed_groups, errors = [], [], {}
    for group, row in enumerate(first):
        values = {name: context.column(name)[int(row)].as_py() for name in slot.variables}
        try:
            outputs.append(slot.template.render(values))
        except Exception as err:
            outputs.append("")
            failed_groups.append(group)
            errors[group] = err
    values = pa.array(outputs, pa.string()).take(pa.array(groups))
    if not failed_groups:
        return _SlotValues(values)
    return _SlotValues(values, np.isin(groups, failed_groups), groups, errors)


def _per_distinct(template: jinja2.Template, variables: list[str], context: _Context) -> pa.Array:
    """Render ``template`` once per distinct combination of ``variables`` and spread it."""
    groups, first = _groups([context.column(n) for n in variables], context.rows)
    outputs = []
    for row in first:
        values = {name: context.column(name)[int(row)].as_py() for name in variables}
        try:
            outputs.append(template.render(values))
        except Exception as err:
            raise _RowError(int(row), err) from err
    return pa.array(outputs, pa.string()).take(pa.array(groups))


def _groups(columns: list[pa.Array], rows: int) -> tuple[_Ints, _Ints]:
    """Group id per row (dense, in order of first appearance) and each group's first row."""
    key = np.zeros(rows, dtype=np.int64)
    for column in columns:
        try:
            encoded = pc.dictionary_encode(column, null_encoding="encode")
            codes = np.asarray(encoded.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
            size = len(encoded.dictionary)
        except (pa.ArrowNotImplementedError, pa.ArrowInvalid, pa.ArrowTypeError):
            codes, size = np.arange(rows, dtype=np.int64), max(rows, 1)
        key = key * size + codes
        key = np.asarray(
            pc.dictionary_encode(pa.array(key)).indices.to_numpy(zero_copy_only=False), np.int64
        )
    if not rows:
        return key, np.zeros(0, dtype=np.int64)
    seen = np.maximum.accumulate(key)
    new = np.ones(rows, dtype=bool)
    new[1:] = key[1:] > seen[:-1]
    return key, np.flatnonzero(new)


def _split(output: str, sentinels: str) -> tuple[list[str], list[int]]:
    """Literal pieces and slot numbers of a residual output (pieces = slots + 1)."""
    pieces, slots, last = [], [], 0
    if not sentinels:
        return [output], []
    for match in re.finditer(f"[{re.escape(sentinels)}]", output):
        pieces.append(output[last : match.start()])
        slots.append(sentinels.index(match.group()))
        last = match.end()
    pieces.append(output[last:])
    return pieces, slots


def _assemble(
    layouts: list[tuple[list[str], list[int]]],
    groups: _Ints,
    slot_values: list[_SlotValues],
    rows: int,
) -> pa.Array:
    """Each row's pieces and slot values, joined column-wise."""
    _raise_used_failures(layouts, groups, slot_values)
    width = max(len(slots) for _, slots in layouts) if layouts else 0
    if not rows:
        return pa.array([], pa.string())
    empty = pa.array([""], pa.string())
    arrays = [slot.values for slot in slot_values]
    pool = pa.concat_arrays([*arrays, empty])
    parts: list[Any] = []
    for position in range(width + 1):
        pieces = [p[position] if position < len(p) else "" for p, _ in layouts]
        parts.append(_per_group(pieces, groups))
        if position == width:
            break
        numbers = [s[position] if position < len(s) else -1 for _, s in layouts]
        if len(set(numbers)) == 1 and numbers[0] >= 0:
            parts.append(arrays[numbers[0]])
            continue
        index = np.asarray(numbers, dtype=np.int64)[groups]
        flat = np.where(index >= 0, index * rows + np.arange(rows), len(pool) - 1)
        parts.append(pool.take(pa.array(flat)))
    if len(parts) == 1 and isinstance(parts[0], str):
        return pa.repeat(pa.scalar(parts[0], pa.string()), rows)
    return pc.binary_join_element_wise(*parts, "")


def _raise_used_failures(
    layouts: list[tuple[list[str], list[int]]], groups: _Ints, slot_values: list[_SlotValues]
) -> None:
    """Raise the first failure of a slot that a row's output prints."""
    bad_rows = []
    for number, slot in enumerate(slot_values):
        if slot.failed is None:
            continue
        printing = [group for group, (_, slots) in enumerate(layouts) if number in slots]
        bad = np.flatnonzero(slot.failed & np.isin(groups, printing))
        if len(bad):
            bad_rows.append((int(bad[0]), number))
    if bad_rows:
        row, number = min(bad_rows)
        raise _RowError(row, slot_values[number].error(row))


def _per_group(pieces: list[str], groups: _Ints) -> Any:
    """One literal per group as a scalar (all equal) or a per-row array."""
    if len(set(pieces)) == 1:
        return pieces[0]
    return pa.array(pieces, pa.string()).take(pa.array(groups))
