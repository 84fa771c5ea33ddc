"""Bulk rendering of one Jinja template over Arrow columns: the engine behind `nba_fast.render`.

Rendering never calls Jinja once per row. `compiled_template` parses a template once and splits
it:

- every output ``{{ expression }}`` over columns that sits in plain text or in ``if`` / ``for``
  blocks becomes a *slot*, evaluated once per distinct value (combination) of its columns; a bare
  ``{{ column }}`` of strings or integers is just that column, cast to text;
- what remains (the *residual* template) is rendered once per distinct combination of the columns
  that control flow still reads (once in all when none does), with each slot replaced by a
  private-use sentinel character; splitting that output at the sentinels gives literal pieces;
- each row is then the concatenation of its pieces and slot values, assembled by
  `pyarrow.compute.binary_join_element_wise` over whole columns.

When that is not safe (a sentinel collision, too many slots), the whole template renders once
per distinct combination of all its columns: still exact, slower with many distinct values.

Example:
    >>> import pyarrow as pa
    >>> from nba_fast.templating import Columns, compiled_template
    >>> people = pa.table({"name": ["ann", "bo", "ann"], "tier": ["gold", None, "gold"]})
    >>> template = compiled_template("{% if tier %}[{{ tier }}] {% endif %}{{ name|title }}")
    >>> template.render(Columns(people, [0, 1, 2])).to_pylist()
    ['[gold] Ann', 'Bo', '[gold] Ann']
"""

from __future__ import annotations

import functools
import re
import types
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import jinja2
import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
from jinja2 import StrictUndefined, meta, nodes
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import (
    ImmutableSandboxedEnvironment,
    SandboxedEscapeFormatter,
    SandboxedFormatter,
)
from markupsafe import Markup

__all__ = [
    "MAX_POWER_BITS",
    "MAX_REPEAT",
    "Columns",
    "CompiledTemplate",
    "RowError",
    "compiled_template",
    "is_string_view",
    "is_view",
    "make_environment",
]

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


MAX_REPEAT = 100_000
"""The longest string or list a template may build by repetition (``'=' * 40``), and the most
characters one formatting or padding operation may produce or add: ``'%40s' % x``,
``'{:40}'.format(x)``, ``x.ljust(40)`` (also ``rjust``, ``center``, ``zfill``, ``expandtabs``,
``join``, ``replace``) and the filters ``center``, ``indent``, ``wordwrap``, ``format``,
``join`` and ``replace``. Jinja's sandbox bounds ``range`` (MAX_RANGE) but none of these: a
typo'd count would take the run's memory."""

MAX_POWER_BITS = 100_000
"""The largest integer, in bits, a template may compute with ``**`` (a huge power takes CPU)."""


class _Sandbox(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox, with ``*``, ``**`` and ``%`` bounded (`MAX_REPEAT`,
    `MAX_POWER_BITS`), and the widening string methods (``format``, ``ljust``, ...) too.

    Intercepted operators are also never folded at compile time (Jinja's optimizer skips them).
    """

    intercepted_binops = frozenset({"*", "**", "%"})

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for items, count in ((left, right), (right, left)):
                if (
                    isinstance(items, str | list | tuple)
                    and isinstance(count, int)
                    and len(items) * count > MAX_REPEAT
                ):
                    raise SecurityError(
                        f"the sandbox blocks repetitions longer than MAX_REPEAT ({MAX_REPEAT}): "
                        f"{len(items)} x {count}"
                    )
        elif operator == "**" and _power_too_large(left, right):
            raise SecurityError(
                f"the sandbox blocks powers larger than MAX_POWER_BITS ({MAX_POWER_BITS} "
                f"bits): {left} ** {right}"
            )
        elif operator == "%" and isinstance(left, str):
            _check_percent(left, right)
        return super().call_binop(context, operator, left, right)

    def wrap_str_format(self, value: Any) -> Any:
        """Jinja wraps ``str.format`` / ``format_map`` when a template reads them; this wraps
        them with bounded widths, and the other widening ``str`` methods with a bound too."""
        if not isinstance(value, types.BuiltinMethodType | types.MethodType):
            return None
        text = getattr(value, "__self__", None)
        if not isinstance(text, str):
            return None
        name = value.__name__
        if name in ("format", "format_map"):
            return _bounded_format(self, text, value)
        check = _WIDENING.get(name)
        if check is None:
            return None

        def bounded(*args: Any, **kwargs: Any) -> Any:
            check(text, *args, **kwargs)
            return value(*args, **kwargs)

        return functools.update_wrapper(bounded, value)


def _refuse(what: str, size: int) -> SecurityError:
    return SecurityError(
        f"the sandbox blocks {what} longer than MAX_REPEAT ({MAX_REPEAT}) characters: {size}"
    )


def _check_width(what: str, width: Any) -> None:
    if isinstance(width, int) and width > MAX_REPEAT:
        raise _refuse(what, width)


def _check_added(what: str, added: int) -> None:
    if added > MAX_REPEAT:
        raise _refuse(what, added)


def _check_pad(text: str, width: Any = 0, *_: Any) -> None:
    _check_width("a padding", width)


def _check_expandtabs(text: str, tabsize: Any = 8, **_: Any) -> None:
    if isinstance(tabsize, int):
        _check_added("expanded tabs", tabsize * text.count("\t"))


def _check_join(text: str, items: Any = (), *_: Any) -> None:
    if isinstance(items, str):  # joins its characters
        sizes = len(items)
    elif isinstance(items, list | tuple):  # other iterables are not measured
        sizes = sum(len(item) for item in items if isinstance(item, str))
    else:
        return
    _check_added("a join", sizes + len(text) * max(len(items) - 1, 0))


def _check_replace(text: str, old: Any = "", new: Any = "", count: Any = -1, **_: Any) -> None:
    if isinstance(old, str) and isinstance(new, str) and len(new) > len(old):
        found = text.count(old) if old else len(text) + 1
        if isinstance(count, int) and count >= 0:
            found = min(found, count)
        _check_added("a replacement", found * (len(new) - len(old)))


_WIDENING: dict[str, Callable[..., None]] = {
    "ljust": _check_pad,
    "rjust": _check_pad,
    "center": _check_pad,
    "zfill": _check_pad,
    "expandtabs": _check_expandtabs,
    "join": _check_join,
    "replace": _check_replace,
}
"""The ``str`` methods whose output may be much longer than their inputs, and their bounds."""


# A printf-style conversion: mapping key (parentheses nest), flags, width, precision.
_PERCENT_FLAGS = frozenset("#0- +")


def _check_percent(template: str, values: Any) -> None:
    """Refuse ``template % values`` when its widths and precisions add up past `MAX_REPEAT`."""
    total, at, position = 0, 0, 0
    size = len(template)
    while (at := template.find("%", at) + 1) > 0:
        if at < size and template[at] == "%":
            at += 1
            continue
        if at < size and template[at] == "(":
            depth, at = 1, at + 1
            while at < size and depth:
                depth += {"(": 1, ")": -1}.get(template[at], 0)
                at += 1
        while at < size and template[at] in _PERCENT_FLAGS:
            at += 1
        for part in range(2):  # width, then precision
            if part == 1:
                if at >= size or template[at] != ".":
                    break
                at += 1
            if at < size and template[at] == "*":
                at += 1
                if isinstance(values, tuple) and position < len(values):
                    star = values[position]
                    total += star if isinstance(star, int) and star > 0 else 0
                position += 1
                continue
            digits = at
            while at < size and template[at].isdigit():
                at += 1
            if at > digits:
                total += int(template[digits:at])
        position += 1
    if total > MAX_REPEAT:
        raise _refuse("a % format's widths", total)


class _BoundedWidths:
    """A mixin for Jinja's sandboxed formatters: the widths and precisions of one
    ``str.format`` call may not add up past `MAX_REPEAT` (nested ``{:{width}}`` included)."""

    _widths = 0

    def format_field(self, value: Any, format_spec: str) -> Any:
        if any(c.isdigit() for c in format_spec):
            self._widths += sum(int(d) for d in re.findall(r"\d+", format_spec))
            if self._widths > MAX_REPEAT:
                raise _refuse("a str.format's widths", self._widths)
        return super().format_field(value, format_spec)  # type: ignore[misc]


class _BoundedFormatter(_BoundedWidths, SandboxedFormatter):
    pass


class _BoundedEscapeFormatter(_BoundedWidths, SandboxedEscapeFormatter):
    pass


def _bounded_format(environment: jinja2.Environment, text: str, method: Any) -> Any:
    """``text.format`` / ``text.format_map`` in the sandbox, as Jinja's `wrap_str_format`."""
    is_format_map = method.__name__ == "format_map"

    def wrapper(*args: Any, **kwargs: Any) -> str:
        formatter: SandboxedFormatter
        if isinstance(text, Markup):
            formatter = _BoundedEscapeFormatter(environment, escape=text.escape)
        else:
            formatter = _BoundedFormatter(environment)
        if is_format_map:
            if kwargs:
                raise TypeError("format_map() takes no keyword arguments")
            if len(args) != 1:
                raise TypeError(f"format_map() takes exactly one argument ({len(args)} given)")
            kwargs, args = args[0], ()
        return type(text)(formatter.vformat(text, args, kwargs))

    return functools.update_wrapper(wrapper, method)


def _do_center(value: Any, width: int = 80) -> str:
    _check_width("a padding", width)
    return str(value).center(width)


def _do_indent(s: str, width: int | str = 4, first: bool = False, blank: bool = False) -> str:
    indention = len(width) if isinstance(width, str) else width
    if isinstance(indention, int) and indention > 0:
        _check_added("an indentation", indention * (str(s).count("\n") + 1))
    result: str = jinja2.filters.do_indent(s, width, first, blank)
    return result


@jinja2.pass_environment
def _do_wordwrap(
    environment: jinja2.Environment,
    s: str,
    width: int = 79,
    break_long_words: bool = True,
    wrapstring: str | None = None,
    break_on_hyphens: bool = True,
) -> str:
    import textwrap

    if wrapstring is None:
        wrapstring = environment.newline_sequence
    paragraphs = [
        textwrap.wrap(
            line,
            width=width,
            expand_tabs=False,
            replace_whitespace=False,
            break_long_words=break_long_words,
            break_on_hyphens=break_on_hyphens,
        )
        for line in str(s).splitlines()
    ]
    _check_added("a word wrap", len(wrapstring) * sum(len(lines) for lines in paragraphs))
    return wrapstring.join([wrapstring.join(lines) for lines in paragraphs])


def _do_format(value: str, *args: Any, **kwargs: Any) -> str:
    _check_percent(str(value), kwargs or args)
    result: str = jinja2.filters.do_format(value, *args, **kwargs)
    return result


@jinja2.pass_eval_context
def _do_join(
    eval_ctx: jinja2.nodes.EvalContext, value: Any, d: str = "", attribute: Any = None
) -> str:
    items = list(value)
    if attribute is not None:
        items = list(map(jinja2.filters.make_attrgetter(eval_ctx.environment, attribute), items))
    _check_join(str(d), items)  # the string items (others are not measured)
    result: str = jinja2.filters.sync_do_join(eval_ctx, items, d)
    return result


@jinja2.pass_eval_context
def _do_replace(
    eval_ctx: jinja2.nodes.EvalContext, s: str, old: str, new: str, count: int | None = None
) -> str:
    _check_replace(str(s), str(old), str(new), -1 if count is None else count)
    result: str = jinja2.filters.do_replace(eval_ctx, s, old, new, count)
    return result


def _power_too_large(base: Any, exponent: Any) -> bool:
    if not (isinstance(base, int) and isinstance(exponent, int)) or exponent <= 0:
        return False
    # log2|base| >= bit_length - 1: this refuses only results that long for sure.
    return (abs(base).bit_length() - 1) * exponent > MAX_POWER_BITS


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
    environment = _Sandbox(
        undefined=StrictUndefined,
        finalize=_finalize,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    del environment.filters["random"]
    environment.filters.update(
        center=_do_center,
        indent=_do_indent,
        wordwrap=_do_wordwrap,
        format=_do_format,
        join=_do_join,
        replace=_do_replace,
    )
    del environment.globals["lipsum"]
    return environment


def _finalize(value: Any) -> Any:
    return "" if value is None else value


_ENVIRONMENT = make_environment()


def is_view(kind: pa.DataType) -> bool:
    """A string_view / binary_view column (pyarrow >= 16), which few kernels take yet."""
    return is_string_view(kind) or bool(getattr(pa.types, "is_binary_view", lambda _: False)(kind))


def is_string_view(kind: pa.DataType) -> bool:
    return bool(getattr(pa.types, "is_string_view", lambda _: False)(kind))


class RowError(Exception):
    """A template failed for the row ``row`` of the rows being rendered."""

    def __init__(self, row: int, cause: Exception) -> None:
        super().__init__(str(cause))
        self.row = row
        self.cause = cause


class Columns:
    """The customer columns, taken lazily at the rows being rendered."""

    def __init__(self, customers: pa.Table, at: _Ints) -> None:
        self.customers = customers
        self.at = pa.array(at)
        self.rows = len(at)
        self._cache: dict[str, pa.Array] = {}

    def column(self, name: str) -> pa.Array:
        if name not in self._cache:
            whole = self.customers.column(name)
            if is_view(whole.type):  # no take kernel for views yet
                whole = whole.cast(
                    pa.large_string() if is_string_view(whole.type) else pa.large_binary()
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
class CompiledTemplate:
    """A template, analysed once: its columns, slots and the residual template."""

    source: str
    template: jinja2.Template
    variables: frozenset[str]
    slots: list[_Slot] = field(default_factory=list)
    residual: jinja2.Template | None = None
    residual_variables: tuple[str, ...] = ()
    sentinels: str = ""

    def render(self, context: Columns) -> pa.Array:
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
                    raise RowError(int(row), err) from err
                splits.append(_split(output, sentinels))
            if splits[0] != splits[1]:
                return _per_distinct(self.template, sorted(self.variables), context)
            layouts.append(splits[0])
        slot_values = [_slot_values(slot, context) for slot in self.slots]
        return _assemble(layouts, groups, slot_values, context.rows)


@functools.lru_cache(maxsize=512)
def compiled_template(source: str) -> CompiledTemplate:
    """Parse and analyse a template (cached by its source). Raises TemplateSyntaxError."""
    env = _ENVIRONMENT
    tree = env.parse(source)
    variables = frozenset(meta.find_undeclared_variables(tree))
    compiled = CompiledTemplate(source=source, template=env.from_string(tree), variables=variables)
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


def _slot_values(slot: _Slot, context: Columns) -> _SlotValues:
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


def _per_distinct(template: jinja2.Template, variables: list[str], context: Columns) -> pa.Array:
    """Render ``template`` once per distinct combination of ``variables`` and spread it."""
    groups, first = _groups([context.column(n) for n in variables], context.rows)
    outputs = []
    for row in first:
        values = {name: context.column(name)[int(row)].as_py() for name in variables}
        try:
            outputs.append(template.render(values))
        except Exception as err:
            raise RowError(int(row), err) from err
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
        raise RowError(row, slot_values[number].error(row))


def _per_group(pieces: list[str], groups: _Ints) -> Any:
    """One literal per group as a scalar (all equal) or a per-row array."""
    if len(set(pieces)) == 1:
        return pieces[0]
    return pa.array(pieces, pa.string()).take(pa.array(groups))
