"""SMS segment counting over Arrow string arrays, vectorised with numpy.

A text goes out in GSM-7 when every character is in the GSM 03.38 basic set or its extension
table (an extension character costs two septets: escape + character); otherwise in UCS-2, where a
character outside the Basic Multilingual Plane (an emoji) costs two 16-bit code units (a surrogate
pair). A single-part message holds 160 septets (GSM-7) or 70 code units (UCS-2); a longer text is
split into parts of 153 septets or 67 code units (the rest of each part carries the concatenation
header). A part never splits an escape + extension character nor a surrogate pair: such a
character moves whole to the next part, so the count is not always ``ceil(units / 153)``.

`link_split` flags texts whose link (a match of ``https?://\\S+``) would be cut by a part boundary:
the phone of a recipient may show it as two broken halves.

Nothing here loops over rows in Python. Per-row totals come from sparse positions (extension
characters, non-GSM characters, emoji are rare) counted with `numpy.bincount`; only multi-part texts
whose parts are not uniform (an extension character or an emoji among the units) or that hold a
link are laid out character by character, in bounded chunks, by a vectorised greedy packing: every
multi-part row advances one part per step via `numpy.searchsorted` over cumulative unit counts.

Example:
    >>> import pyarrow as pa
    >>> from nba_fast.sms import sms_segments
    >>> segments, encoding = sms_segments(pa.array(["Hi!", "x" * 161, "Olá 👋", ""]))
    >>> segments.to_pylist(), encoding.to_pylist()
    ([1, 2, 1, 0], ['GSM-7', 'GSM-7', 'UCS-2', 'GSM-7'])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from nba_fast._core import SchemaError

__all__ = [
    "GSM7_BASIC",
    "GSM7_EXTENSION",
    "GSM7_PART",
    "GSM7_SINGLE",
    "UCS2_PART",
    "UCS2_SINGLE",
    "SmsLayout",
    "link_split",
    "sms_layout",
    "sms_segments",
]

GSM7_BASIC: str = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
"""The GSM 03.38 basic character set (one septet each; the escape code 0x1B is not a character)."""

GSM7_EXTENSION: str = "\f^{}\\[~]|€"
"""The GSM 03.38 extension table (two septets each: escape + character)."""

GSM7_SINGLE = 160
"""Septets in a single-part GSM-7 message."""
GSM7_PART = 153
"""Septets per part of a multi-part GSM-7 message."""
UCS2_SINGLE = 70
"""Code units in a single-part UCS-2 message."""
UCS2_PART = 67
"""Code units per part of a multi-part UCS-2 message."""

GSM7 = "GSM-7"
UCS2 = "UCS-2"

# Character classes, indexed by code point (astral code points are clipped to 0xFFFF, which is
# neither GSM nor whitespace): 0 basic, 1 extension, 2 not GSM.
_BMP = 0x10000
_CLASS = np.full(_BMP, 2, dtype=np.uint8)
_CLASS[[ord(c) for c in GSM7_BASIC]] = 0
_CLASS[[ord(c) for c in GSM7_EXTENSION]] = 1
# What Python's re calls \s in a str pattern: str.isspace() (all such code points are in the BMP).
_SPACE = np.array([chr(code).isspace() for code in range(_BMP)], dtype=bool)
_SPACE[0xFFFF] = False
# Per UTF-8 byte: 0 an ASCII basic character or a continuation byte, 1 an ASCII extension
# character, 2 an ASCII character outside GSM-7, 3 the lead byte of a non-ASCII character, 4 a
# colon (where links are looked for). A `bytes.translate` table: it classifies several times
# faster than numpy's fancy indexing.
_BYTE_CLASS = np.zeros(256, dtype=np.uint8)
_BYTE_CLASS[:128] = _CLASS[:128]
_BYTE_CLASS[0xC0:] = 3
_BYTE_CLASS[ord(":")] = 4
_BYTE_TABLE = _BYTE_CLASS.tobytes()
_SCAN_BYTES = 1 << 22
_ASCII_SPACE = np.zeros(256, dtype=bool)
_ASCII_SPACE[:128] = _SPACE[:128]
_SPACE_TABLE = _ASCII_SPACE.astype(np.uint8).tobytes()
_WINDOW = 32


_Ints = npt.NDArray[np.int64]
_Bools = npt.NDArray[np.bool_]
_Bytes = npt.NDArray[np.uint8]


@dataclass(frozen=True)
class SmsLayout:
    """How a batch of texts would be sent.

    Attributes:
        segments: int32, parts per text (0 for an empty text; null for a null text).
        encoding: ``GSM-7`` or ``UCS-2`` (null for a null text).
        link_split: True when a link (``https?://\\S+``) would cross a part boundary.
    """

    segments: pa.Array
    encoding: pa.Array
    link_split: pa.Array


def sms_segments(texts: Any) -> tuple[pa.Array, pa.Array]:
    """Count the SMS parts of each text and name its encoding.

    Args:
        texts: an Arrow string array (``string``, ``large_string`` or ``string_view``, chunked or
            not); nulls stay null.

    Returns:
        ``(segments, encoding)``: an int32 array of part counts and a string array of
        ``GSM-7`` / ``UCS-2``.

    Raises:
        SchemaError: when ``texts`` is not an array of strings.

    Example:
        >>> import pyarrow as pa
        >>> segments, _ = sms_segments(pa.array(["€" * 80, "€" * 81]))
        >>> segments.to_pylist()
        [1, 2]
    """
    layout = sms_layout(texts)
    return layout.segments, layout.encoding


def link_split(texts: Any) -> pa.Array:
    """Flag the texts whose link would be split across two SMS parts.

    Example:
        >>> import pyarrow as pa
        >>> link_split(pa.array(["x" * 150 + " https://u.plus/apply", "see https://u.plus"]))
        <pyarrow.lib.BooleanArray object at ...>
        [
          true,
          false
        ]
    """
    return sms_layout(texts).link_split


def sms_layout(texts: Any) -> SmsLayout:
    """Segments, encoding and link flag of each text in one pass (see the module docs)."""
    array = _large_strings(texts)
    rows = len(array)
    offsets = _offsets(array)
    data = _data(array, offsets)
    offsets = offsets - offsets[0]
    valid = _valid(array)
    chars = np.asarray(pc.fill_null(pc.utf8_length(array), 0), dtype=np.int64)
    text = _Text(data, offsets)

    # Per-row totals from the rare characters: extension, not GSM, astral (two UCS-2 units).
    extension = _per_row(text.special[text.special_class == 1], offsets)
    not_gsm = _per_row(text.special[text.special_class >= 2], offsets)
    astral = _per_row(text.special[text.special_class == 3], offsets)
    gsm = not_gsm == 0
    units = np.where(gsm, chars + extension, chars + astral)
    single = np.where(gsm, GSM7_SINGLE, UCS2_SINGLE)
    part = np.where(gsm, GSM7_PART, UCS2_PART)
    multi = valid & (units > single)
    segments = np.where(units == 0, 0, np.where(multi, -(-units // part), 1))

    # A wide character (two units: escape + extension in GSM-7, a surrogate pair in UCS-2) is
    # rare; the parts are packed from their positions alone.
    in_gsm_row = _in_rows(text.special, offsets, gsm)
    wide = text.special_char[np.where(in_gsm_row, text.special_class == 1, text.special_class == 3)]
    char_starts = np.zeros(rows + 1, dtype=np.int64)
    np.cumsum(chars, out=char_starts[1:])
    parts, boundaries = _pack(wide, char_starts, np.flatnonzero(multi), part)
    segments[multi] = parts
    split = _links_split(text, multi, boundaries)

    mask = None if valid.all() else ~valid
    encodings = pa.array([GSM7, UCS2], pa.string())
    return SmsLayout(
        segments=pa.array(segments.astype(np.int32), mask=mask),
        encoding=encodings.take(pa.array((~gsm).astype(np.int8), mask=mask)),
        link_split=pa.array(split, mask=mask),
    )


def _in_rows(positions: _Ints, offsets: _Ints, flagged: _Bools) -> _Bools:
    """For each sorted byte position, whether its row is ``flagged``.

    Marks the byte ranges of the minority kind of row (usually none) rather than searching the
    row of every position.
    """
    if flagged.all() or not flagged.any():
        return np.full(len(positions), bool(flagged.all()))
    minority = np.flatnonzero(~flagged if flagged.mean() >= 0.5 else flagged)
    low = np.searchsorted(positions, offsets[minority])
    high = np.searchsorted(positions, offsets[minority + 1])
    depth = np.bincount(low, minlength=len(positions) + 1)
    depth -= np.bincount(high, minlength=len(positions) + 1)
    inside = np.cumsum(depth)[:-1] > 0
    return ~inside if flagged.mean() >= 0.5 else inside


def _per_row(positions: _Ints, offsets: _Ints) -> _Ints:
    """How many of the sorted byte ``positions`` fall in each row."""
    return np.diff(np.searchsorted(positions, offsets)).astype(np.int64)


class _Text:
    """The UTF-8 bytes of all rows, with their rare characters located and decoded.

    ``special`` holds the byte positions of the characters other than an ASCII GSM-7 basic one
    and ``special_class`` their kind: 1 extension, 2 not GSM-7 (in the BMP), 3 astral;
    ``special_char`` their character indices; ``colons`` the positions of the colons.
    """

    def __init__(self, data: _Bytes, offsets: _Ints) -> None:
        self.data = data
        self.offsets = offsets
        found, kinds = [np.zeros(0, np.int64)], [np.zeros(0, np.uint8)]
        for start in range(0, len(data), _SCAN_BYTES):
            chunk = data[start : start + _SCAN_BYTES].tobytes().translate(_BYTE_TABLE)
            byte_class = np.frombuffer(chunk, dtype=np.uint8)
            at = np.flatnonzero(byte_class)
            found.append(at + start)
            kinds.append(byte_class[at])
        special = np.concatenate(found)
        kind = np.concatenate(kinds).astype(np.int8)
        self.colons = special[kind == 4]
        special, kind = special[kind != 4], kind[kind != 4]
        kind_is_lead = kind == 3
        leads = special[kind_is_lead]
        codes, widths = _decode_at(data, leads)
        decoded = np.where(codes >= _BMP, 3, _CLASS[np.minimum(codes, _BMP - 1)])
        kind[kind == 3] = decoded
        # Character index = byte position - continuation bytes before it, summed along the
        # specials (every multi-byte character is one of them) rather than searched.
        extra = np.zeros(len(special) + 1, dtype=np.int64)
        extra[1:][kind_is_lead] = widths - 1
        np.cumsum(extra, out=extra)
        # A non-ASCII basic character (é, Δ, ...) is not rare enough to keep.
        keep = kind > 0
        self.special, self.special_class = special[keep], kind[keep]
        self.special_char = (special - extra[:-1])[keep]
        self.leads = leads
        self.unicode_spaces = leads[_SPACE[np.minimum(codes, _BMP - 1)]]
        self.continuations = np.zeros(len(leads) + 1, dtype=np.int64)
        np.cumsum(widths - 1, out=self.continuations[1:])

    def char_index(self, at: _Ints) -> _Ints:
        """Character index (over all rows) of byte positions ``at`` on character boundaries."""
        return at - self.continuations[np.searchsorted(self.leads, at)]


def _decode_at(data: _Bytes, leads: _Ints) -> tuple[_Ints, _Ints]:
    """Code points and byte widths of the valid UTF-8 multi-byte characters starting at ``leads``
    (lead bytes >= 0xC0)."""
    first = data[leads].astype(np.int32)
    widths = 2 + (first >= 0xE0).astype(np.int32) + (first >= 0xF0)
    # The lead keeps 7 - width bits: 0x1F, 0x0F, 0x07 for widths 2, 3, 4.
    codes = first & (0x7F >> widths)
    last = len(data) - 1
    for step in (1, 2, 3):
        more = widths > step
        if not more.any():
            break
        follow = data[np.minimum(leads[more] + step, last)].astype(np.int32) & 0x3F
        codes[more] = (codes[more] << 6) | follow
    return codes.astype(np.int64), widths.astype(np.int64)


def _large_strings(texts: Any) -> pa.Array:
    """``texts`` as one contiguous ``large_string`` array."""
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks() if texts.num_chunks else pa.array([], texts.type)
    elif not isinstance(texts, pa.Array):
        try:
            texts = pa.array(texts)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError) as err:
            raise SchemaError(f"sms texts: expected an Arrow string array: {err}") from err
    kind = texts.type
    if isinstance(kind, pa.DictionaryType):
        texts, kind = texts.dictionary_decode(), kind.value_type
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind) or _is_view(kind)):
        raise SchemaError(f"sms texts: expected an Arrow string array, got {kind}")
    return texts.cast(pa.large_string())


def _is_view(kind: pa.DataType) -> bool:
    return bool(getattr(pa.types, "is_string_view", lambda _: False)(kind))


def _offsets(array: pa.Array) -> _Ints:
    """The row offsets (``len + 1``) of a ``large_string`` array, honouring its slice offset."""
    buffer = array.buffers()[1]
    raw = np.frombuffer(buffer, dtype=np.int64) if buffer is not None else np.zeros(1, np.int64)
    return raw[array.offset : array.offset + len(array) + 1].astype(np.int64, copy=False)


def _data(array: pa.Array, offsets: _Ints) -> npt.NDArray[np.uint8]:
    """The UTF-8 bytes of the rows of ``array`` (from the first row's start to the last's end)."""
    buffer = array.buffers()[2]
    if buffer is None or offsets[-1] == offsets[0]:
        return np.zeros(0, dtype=np.uint8)
    return np.frombuffer(buffer, dtype=np.uint8)[offsets[0] : offsets[-1]]


def _valid(array: pa.Array) -> _Bools:
    if array.null_count == 0:
        return np.ones(len(array), dtype=bool)
    return np.asarray(array.is_valid(), dtype=bool)


def _pack(wide: _Ints, char_starts: _Ints, rows: _Ints, part: _Ints) -> tuple[_Ints, _Ints]:
    """Greedy packing of the multi-part ``rows`` into parts of ``part`` units, all rows at once.

    ``wide`` holds the (sorted) character indices, over all rows, of the two-unit characters; a
    character index ``x`` then starts at unit ``x + #(wide < x)``. A part starting at unit ``u``
    ends before the first character that would pass ``u + part``: with ``k`` wide characters
    ending by then, that is character ``min(u + part - k, wide[k])`` (a wide character that
    does not fit moves whole to the next part). Every row advances one part per step.

    Returns the parts per row and the sorted character indices where a new part starts.
    """
    wide_ends = wide + np.arange(len(wide)) + 2
    padded = np.append(wide, np.iinfo(np.int64).max)
    ends = char_starts[rows + 1]
    position = char_starts[rows]
    parts = np.zeros(len(rows), dtype=np.int64)
    boundaries = [np.zeros(0, np.int64)]
    active = np.arange(len(rows))
    while len(active):
        at = position[active]
        target = at + np.searchsorted(wide, at) + part[rows[active]]
        fitting = np.searchsorted(wide_ends, target, side="right")
        reach = np.minimum(np.minimum(target - fitting, padded[fitting]), ends[active])
        parts[active] += 1
        position[active] = reach
        more = reach < ends[active]
        active = active[more]
        boundaries.append(reach[more])
    return parts, np.sort(np.concatenate(boundaries))


def _links_split(text: _Text, multi: _Bools, boundaries: _Ints) -> _Bools:
    """Per row: does a match of ``https?://\\S+`` span two parts?

    Links are found on the bytes (from each ``://``), then placed in characters and compared with
    the sorted character indices where parts start (``boundaries``, over all rows).
    """
    data, offsets = text.data, text.offsets
    rows = len(offsets) - 1
    split = np.zeros(rows, dtype=bool)
    size = len(data)
    colons = text.colons
    colons = colons[(data[np.minimum(colons + 1, size - 1)] == ord("/")) & (colons + 2 < size)]
    colons = colons[data[colons + 2] == ord("/")]
    row = np.searchsorted(offsets, colons, side="right") - 1
    keep = multi[row]
    colons, row = colons[keep], row[keep]
    if not len(colons):
        return split
    row_start, row_end = offsets[row], offsets[row + 1]

    def spells(at: _Ints, word: bytes) -> _Bools:
        ok: _Bools = (at >= row_start) & (at + len(word) <= row_end)
        for shift, byte in enumerate(word):
            ok &= data[np.clip(at + shift, 0, size - 1)] == byte
        return ok

    secure = spells(colons - 5, b"https://")
    plain = spells(colons - 4, b"http://")
    keep = secure | plain
    start = np.where(secure, colons - 5, colons - 4)[keep]
    row, row_start, row_end = row[keep], row_start[keep], row_end[keep]
    after = colons[keep] + 3
    end = _next_space(text, after, row_end)
    # ``\S+`` needs one character; matches do not overlap: a later "http://" inside the same run
    # of non-space characters belongs to the first match (they share its end).
    keep = end > after
    keep[1:] &= end[1:] != end[:-1]
    start, end, row, row_start = start[keep], end[keep], row[keep], row_start[keep]
    first, last = text.char_index(start), text.char_index(end) - 1
    crossing = np.searchsorted(boundaries, first, side="right") != np.searchsorted(
        boundaries, last, side="right"
    )
    split[row[crossing]] = True
    return split


def _next_space(text: _Text, start: _Ints, limit: _Ints) -> _Ints:
    """The first whitespace byte at or after ``start`` and before ``limit``, else ``limit``.

    ASCII whitespace is found by scanning windows of bytes for all positions together;
    non-ASCII whitespace (U+00A0, U+3000, ...) comes from its known positions.
    """
    data, size = text.data, len(text.data)
    found = limit.copy()
    spaces = text.unicode_spaces
    if len(spaces):
        following = np.searchsorted(spaces, start)
        exists = following < len(spaces)
        nearest = spaces[np.minimum(following, len(spaces) - 1)]
        found = np.where(exists & (nearest < limit), nearest, found)
    # Every open link's next `_WINDOW` bytes, gathered as rows of a sliding-window view and
    # classified at once; the few links near the very end of the data go one byte at a time.
    todo = np.flatnonzero(start < found)
    cursor = start[todo]
    windows = np.lib.stride_tricks.sliding_window_view(data, _WINDOW) if size >= _WINDOW else None
    while len(todo):
        fits = cursor <= size - _WINDOW
        if windows is not None and fits.any():
            block = windows[cursor[fits]].tobytes().translate(_SPACE_TABLE)
            space = np.frombuffer(block, dtype=np.bool_).reshape(-1, _WINDOW)
            first = np.where(space.any(axis=1), space.argmax(axis=1), _WINDOW)
            ahead = np.full(len(todo), 1, dtype=np.int64)
            ahead[fits] = first
            hit = np.zeros(len(todo), dtype=bool)
            hit[fits] = first < _WINDOW
            ahead[fits & ~hit] = _WINDOW
        else:
            hit = _ASCII_SPACE[data[np.minimum(cursor, size - 1)]]
            ahead = np.where(hit, 0, 1)
        end = cursor + ahead
        found[todo[hit]] = np.minimum(end[hit], found[todo[hit]])
        open_ = ~hit & (end < found[todo])
        todo, cursor = todo[open_], end[open_]
    return found
