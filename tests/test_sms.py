"""SMS segment counting: the vectorised `nba_fast.sms` against a plain per-text reference."""

from __future__ import annotations

import re

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st
from nba_fast import SchemaError, sms_segments
from nba_fast.sms import GSM7_BASIC, GSM7_EXTENSION, link_split, sms_layout

_URL = re.compile(r"https?://\S+")


def reference(text: str) -> tuple[int, str, bool]:
    """Parts, encoding and link flag of one text, the obvious way: one character at a time."""
    gsm = all(c in GSM7_BASIC or c in GSM7_EXTENSION for c in text)
    if gsm:
        units = [2 if c in GSM7_EXTENSION else 1 for c in text]
        single, part = 160, 153
    else:
        units = [2 if ord(c) > 0xFFFF else 1 for c in text]
        single, part = 70, 67
    encoding = "GSM-7" if gsm else "UCS-2"
    if not units:
        return 0, encoding, False
    if sum(units) <= single:
        return 1, encoding, False
    part_of, current, used = [], 0, 0
    for size in units:
        if used + size > part:
            current, used = current + 1, 0
        used += size
        part_of.append(current)
    split = any(part_of[m.start()] != part_of[m.end() - 1] for m in _URL.finditer(text))
    return current + 1, encoding, split


def layout_rows(texts: list[str | None]) -> list[tuple[int, str, bool] | None]:
    layout = sms_layout(pa.array(texts, pa.string()))
    rows = zip(
        layout.segments.to_pylist(),
        layout.encoding.to_pylist(),
        layout.link_split.to_pylist(),
        strict=True,
    )
    return [None if segments is None else (segments, enc, split) for segments, enc, split in rows]


EDGES = {
    "empty": ("", (0, "GSM-7", False)),
    "160 GSM": ("a" * 160, (1, "GSM-7", False)),
    "161 GSM": ("a" * 161, (2, "GSM-7", False)),
    "306 GSM": ("a" * 306, (2, "GSM-7", False)),
    "307 GSM": ("a" * 307, (3, "GSM-7", False)),
    "80 euro = 160 septets": ("€" * 80, (1, "GSM-7", False)),
    "81 euro": ("€" * 81, (2, "GSM-7", False)),
    # 152 + 2 does not fit part 1's 153 septets: the escape pair moves whole, so 306 septets
    # need three parts where ceil(306 / 153) says two.
    "extension at 153": ("a" * 152 + "€" + "a" * 152, (3, "GSM-7", False)),
    "extension ends part 1": ("a" * 151 + "€" + "a" * 153, (2, "GSM-7", False)),
    "basic non-ASCII is GSM": ("é" * 160, (1, "GSM-7", False)),
    "70 UCS-2": ("ш" * 70, (1, "UCS-2", False)),
    "71 UCS-2": ("ш" * 71, (2, "UCS-2", False)),
    "134 UCS-2": ("ш" * 134, (2, "UCS-2", False)),
    "35 emoji = 70 units": ("😀" * 35, (1, "UCS-2", False)),
    "36 emoji": ("😀" * 36, (2, "UCS-2", False)),
    # 66 + 2 does not fit part 1's 67 units: the surrogate pair moves whole.
    "emoji at 67": ("ш" * 66 + "😀" + "ш" * 66, (3, "UCS-2", False)),
    "backtick is not GSM": ("`", (1, "UCS-2", False)),
    "escape code is not a character": ("\x1b", (1, "UCS-2", False)),
    "link across parts": ("a" * 150 + " https://u.plus/apply", (2, "GSM-7", True)),
    "link in part 2": ("a" * 153 + "https://u.plus/apply", (2, "GSM-7", False)),
    "link ends part 1": ("a" * 133 + "https://u.plus/apply" + " " + "b" * 30, (2, "GSM-7", False)),
    "link short of one char": ("a" * 134 + "https://u.plus/apply" + " " * 30, (2, "GSM-7", True)),
    "nbsp ends a link": ("a" * 125 + "http://x\u00a0" + "y" * 50, (3, "UCS-2", False)),
    "no link without a host": ("a" * 150 + " https:// " + "b" * 20, (2, "GSM-7", False)),
}


@pytest.mark.parametrize("name", list(EDGES))
def test_edge_cases(name: str) -> None:
    text, expected = EDGES[name]
    assert reference(text) == expected
    assert layout_rows([text]) == [expected]


def test_segments_and_encoding_arrays() -> None:
    segments, encoding = sms_segments(pa.array(["Hi", None, "ш" * 71]))
    assert segments.type == pa.int32()
    assert segments.to_pylist() == [1, None, 2]
    assert encoding.to_pylist() == ["GSM-7", None, "UCS-2"]


def test_array_forms() -> None:
    texts = ["a" * 200, "Olá 👋", "", "x https://u.plus/" + "y" * 150]
    expected = layout_rows(texts)  # type: ignore[arg-type]
    chunked = pa.chunked_array([pa.array(texts[:2]), pa.array(texts[2:])])
    assert sms_segments(chunked)[0].to_pylist() == [e[0] for e in expected if e]
    large = pa.array(texts, pa.large_string())
    assert link_split(large).to_pylist() == [e[2] for e in expected if e]
    sliced = pa.array(["zz", *texts, "zz"]).slice(1, len(texts))
    assert sms_segments(sliced)[0].to_pylist() == [e[0] for e in expected if e]
    dictionary = pa.array(texts).dictionary_encode()
    assert sms_segments(dictionary)[0].to_pylist() == [e[0] for e in expected if e]
    assert sms_segments(pa.array([], pa.string()))[0].to_pylist() == []


def test_not_strings() -> None:
    with pytest.raises(SchemaError, match="string"):
        sms_segments(pa.array([1, 2]))


PIECES = [
    "a",
    "Hello ",
    " ",
    "\n",
    "é",
    "€",
    "{",
    "ш",
    "😀",
    "`",
    "\u00a0",
    "\u3000",
    "https://",
    "http://",
    "u.plus/x",
    "http",
    ":",
    "/",
    "x" * 40,
    "€" * 10,
    "ш" * 25,
]


@given(st.lists(st.lists(st.sampled_from(PIECES), max_size=40).map("".join), max_size=30))
def test_matches_reference(texts: list[str]) -> None:
    assert layout_rows(texts) == [reference(t) for t in texts]  # type: ignore[arg-type]


@given(st.lists(st.text(max_size=400) | st.none(), max_size=20))
def test_matches_reference_any_text(texts: list[str | None]) -> None:
    expected = [None if t is None else reference(t) for t in texts]
    assert layout_rows(texts) == expected
