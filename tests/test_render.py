"""Treatments: bulk rendering against one sandboxed Jinja render per row, variants, errors."""

from __future__ import annotations

import sys
from typing import Any

import nba_fast
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st
from nba_fast import ConfigError, DataError, SchemaError, TemplateError, load_treatments, render
from nba_fast.render import OUTPUT_SCHEMA, check_columns, make_environment
from nba_fast.sms import sms_layout

SOURCE = "campaign.toml"


def customers_table(rows: list[dict[str, Any]]) -> pa.Table:
    schema = pa.schema(
        [
            ("customer_id", pa.int64()),
            ("s1", pa.string()),
            ("s2", pa.string()),
            ("n", pa.int64()),
            ("f", pa.float64()),
            ("b", pa.bool_()),
        ]
    )
    return pa.Table.from_pylist(rows, schema=schema)


def decisions_for(customer_ids: list[int], treatment: str, channel: str) -> pa.Table:
    return pa.table(
        {
            "customer_id": pa.array(customer_ids, pa.int64()),
            "action_id": ["offer"] * len(customer_ids),
            "channel": [channel] * len(customer_ids),
            "treatment": [treatment] * len(customer_ids),
        }
    )


def expected_renders(template: str, customers: pa.Table, ids: list[int]) -> list[str] | None:
    """One render per row, the obvious way; None when any row fails."""
    rows = {row["customer_id"]: row for row in customers.to_pylist()}
    compiled = make_environment().from_string(template)
    try:
        return [compiled.render(**rows[i]) for i in ids]
    except Exception:
        return None


# Template pieces: plain slots, filters and expressions (evaluated per distinct value), control
# flow over columns (rendered per distinct combination), loops printing data (the sentinel check),
# blocks that capture output, and literal private-use characters (the sentinels avoid them).
PIECES = [
    "Hi ",
    ", ",
    "\n",
    "\ue000",
    "\ue001!",
    "{{ s1 }}",
    "{{ s2 }}",
    "{{ n }}",
    "{{ f }}",
    "{{ b }}",
    "{{ customer_id }}",
    "{{ s1|upper }}",
    "{{ s2|default('nobody', true) }}",
    "{{ s1 ~ '-' ~ s2 }}",
    "{{ n + 1 }}",
    "{% if n is not none %}{{ n + 1 }}{% endif %}",
    "{% if s1 is not none %}{{ s1 ~ '!' }}{{ s1 + '?' }}{% endif %}",
    "{{ f|round(1) if f is not none else 'no f' }}",
    "{% if b %}yes {{ s2 }}{% else %}no{% endif %}",
    "{% if n is not none and n > 2 %}big {{ s1 }}{% elif s1 %}[{{ s1 }}]{% endif %}",
    "{% for ch in (s1 or '')[:3] %}<{{ ch }}>{% endfor %}",
    "{% for i in range(2) %}{{ s2 }}{{ i }}{% endfor %}",
    "{% set x = s1 %}{{ x }}",
    "{% filter upper %}{{ s2 }}{% endfilter %}",
    "{% macro m(v) %}({{ v }}){% endmacro %}{{ m(s2) }}",
    "{{ '%s' % s2 }}",
    "{{ '%c' % 57344 }}{{ '\\ue001' }}",
]

TEXTS = st.sampled_from(["ann", "Bo", "", "\ue000x", "\ue002", "ш😀", "a b"]) | st.none()
ROWS = st.fixed_dictionaries(
    {
        "s1": TEXTS,
        "s2": TEXTS,
        "n": st.sampled_from([0, 3, -7, 2**40]) | st.none(),
        "f": st.sampled_from([0.0, -0.0, 0.1, 1e20, 2.5, float("nan")]) | st.none(),
        "b": st.booleans() | st.none(),
    }
)


@given(
    pieces=st.lists(st.sampled_from(PIECES), max_size=6),
    rows=st.lists(ROWS, min_size=1, max_size=25),
    picks=st.lists(st.integers(0, 24), min_size=1, max_size=30),
    channel=st.sampled_from(["email", "sms"]),
    reverse=st.booleans(),
)
def test_bulk_render_matches_one_render_per_row(
    pieces: list[str], rows: list[dict[str, Any]], picks: list[int], channel: str, reverse: bool
) -> None:
    template = "".join(pieces)
    customers = customers_table([{"customer_id": 10 + i, **row} for i, row in enumerate(rows)])
    if reverse:  # unsorted ids take the hash lookup, sorted ones a binary search
        customers = customers.take(list(range(len(rows) - 1, -1, -1)))
    ids = [10 + pick % len(rows) for pick in picks]
    fields = {"text": template} if channel == "sms" else {"subject": "S", "body": template}
    treatments = load_treatments({"t": {"channel": channel, **fields}}, source=SOURCE)
    expected = expected_renders(template, customers, ids)
    decisions = decisions_for(ids, "t", channel)
    if expected is None:
        with pytest.raises(TemplateError, match=r"treatment 't', variant default, field"):
            render(decisions, customers, treatments)
        return
    out = render(decisions, customers, treatments)
    assert out.column("customer_id").to_pylist() == ids
    if channel == "email":
        assert out.column("body").to_pylist() == expected
        assert out.column("subject").to_pylist() == ["S"] * len(ids)
        assert out.column("sms_text").null_count == len(ids)
    else:
        assert out.column("sms_text").to_pylist() == expected
        layout = sms_layout(pa.array(expected, pa.string()))
        assert out.column("sms_segments").to_pylist() == layout.segments.to_pylist()
        assert out.column("sms_encoding").to_pylist() == layout.encoding.to_pylist()
        assert out.column("link_split").to_pylist() == layout.link_split.to_pylist()
        assert out.column("body").null_count == len(ids)


def test_null_prints_empty_and_schema() -> None:
    customers = customers_table([{"customer_id": 1, "s1": None, "n": None}])
    treatments = load_treatments(
        {"t": {"channel": "sms", "text": "[{{ s1 }}|{{ n }}|{{ f }}]"}}, source=SOURCE
    )
    out = render(decisions_for([1], "t", "sms"), customers, treatments)
    assert out.column("sms_text").to_pylist() == ["[||]"]
    assert out.schema.names == OUTPUT_SCHEMA.names
    assert out.schema == OUTPUT_SCHEMA


VARIANTS = {
    "offer": {
        "channel": "email",
        "subject": "Your card",
        "body": "Apply today",
        "variant": [
            {"region": "CA", "body": "Apply today. CA legal text"},
            {"language": "es", "subject": "Tu tarjeta", "body": "Solicítala hoy"},
            {"language": "es", "region": "CA", "body": "Solicítala hoy. Texto legal CA"},
            {"region": "MX", "body": "Apply today. MX legal text"},
        ],
    }
}


@pytest.mark.parametrize(
    ("language", "state", "country", "variant", "subject", "body"),
    [
        ("en", "NY", "US", "default", "Your card", "Apply today"),
        (None, None, None, "default", "Your card", "Apply today"),
        ("en", "CA", "US", "region=CA", "Your card", "Apply today. CA legal text"),
        ("ES", "NY", "US", "language=es", "Tu tarjeta", "Solicítala hoy"),
        ("es", "ca", "US", "language=es,region=CA", "Your card", "Solicítala hoy. Texto legal CA"),
        ("es", None, "MX", "language=es", "Tu tarjeta", "Solicítala hoy"),
        ("fr", None, "MX", "region=MX", "Your card", "Apply today. MX legal text"),
    ],
)
def test_variant_precedence(
    language: str | None,
    state: str | None,
    country: str | None,
    variant: str,
    subject: str,
    body: str,
) -> None:
    customers = pa.table(
        {
            "customer_id": [5],
            "language": pa.array([language], pa.string()),
            "state": pa.array([state], pa.string()),
            "country": pa.array([country], pa.string()),
        }
    )
    treatments = load_treatments(VARIANTS, source=SOURCE)
    [row] = render(decisions_for([5], "offer", "email"), customers, treatments).to_pylist()
    assert (row["variant"], row["subject"], row["body"]) == (variant, subject, body)


def test_an_all_null_language_column_picks_the_default_variant() -> None:
    # A CSV column with no values reads as type null: no language, as the engine takes it.
    customers = pa.table(
        {"customer_id": [5, 6], "language": pa.nulls(2), "state": pa.array(["CA", "NY"])}
    )
    treatments = load_treatments(VARIANTS, source=SOURCE)
    rows = render(decisions_for([5, 6], "offer", "email"), customers, treatments).to_pylist()
    assert [(row["variant"], row["body"]) for row in rows] == [
        ("region=CA", "Apply today. CA legal text"),
        ("default", "Apply today"),
    ]


def test_sandbox_refuses_python_internals() -> None:
    customers = customers_table([{"customer_id": 1, "s1": "x"}])
    for template in (
        "{{ ''.__class__ }}",
        "{{ s1.__class__.__mro__ }}",
        "{{ cycler.__init__.__globals__ }}",
    ):
        treatments = load_treatments({"t": {"channel": "sms", "text": template}}, source=SOURCE)
        with pytest.raises(TemplateError, match=r"customer 1: SecurityError"):
            render(decisions_for([1], "t", "sms"), customers, treatments)


@pytest.mark.parametrize(
    ("template", "cause"),
    [
        ("{% include 'secrets.txt' %}", "no loader"),
        ("{% extends 'base.html' %}", "no loader"),
        ("{{ range(10**6)|length }}", "MAX_RANGE"),
        # One typo'd count must not take the run's memory (10**9 would: tested at 10**6).
        ("{{ '=' * 1000001 }}", "MAX_REPEAT"),
        ("{{ 1000001 * 'ab' }}", "MAX_REPEAT"),
        ("{{ ([0] * 1000001)|length }}", "MAX_REPEAT"),
        ("{{ (7 ** 1000000) > 0 }}", "MAX_POWER_BITS"),
        ("{{ lipsum() }}", "lipsum"),
    ],
)
def test_sandbox_has_no_files_and_bounded_ranges(template: str, cause: str) -> None:
    customers = customers_table([{"customer_id": 1}])
    treatments = load_treatments({"t": {"channel": "sms", "text": template}}, source=SOURCE)
    with pytest.raises(TemplateError, match=cause):
        render(decisions_for([1], "t", "sms"), customers, treatments)


# Widths and counts past MAX_REPEAT (10**6 here: fast to build when the bound is missing, and
# a failure rather than a hang); each would take the run's memory at 10**9.
@pytest.mark.parametrize(
    "template",
    [
        "{{ '%1000001s' % 'x' }}",
        "{{ '%-1000001d' % 7 }}",
        "{{ '%.1000001f' % 1.5 }}",
        "{{ '%*s' % (1000001, 'x') }}",
        "{{ '%(a)1000001s' % {'a': 'x'} }}",
        "{{ ('%60000s' * 2) % ('x', 'y') }}",
        "{{ '{:1000001}'.format('x') }}",
        "{{ '{:>{w}}'.format('x', w=1000001) }}",
        "{{ '{a:^1000001}'.format_map({'a': 'x'}) }}",
        "{{ 'x'|center(1000001) }}",
        "{{ 'a\\nb'|indent(1000001) }}",
        "{{ ('a\\n' * 50000)|indent(100) }}",
        "{{ ('ab ' * 1000)|wordwrap(2, wrapstring='-' * 1000) }}",
        "{{ 'x'.ljust(1000001) }}",
        "{{ 'x'.rjust(1000001) }}",
        "{{ 'x'.center(1000001) }}",
        "{{ '7'.zfill(1000001) }}",
        "{{ ('\\t' * 1000).expandtabs(1001) }}",
        "{{ ('y' * 1000).join('x' * 1001) }}",
        "{{ ('x' * 1000).replace('x', 'y' * 1001) }}",
        "{{ ('x' * 1000)|replace('x', 'y' * 1001) }}",
        "{{ (['ab' * 1000] * 51)|join }}",
        "{{ (['a'] * 3)|join('-' * 99999) }}",
        "{{ '%1000001s'|format('x') }}",
    ],
)
def test_sandbox_bounds_widths_and_counts(template: str) -> None:
    customers = customers_table([{"customer_id": 1}])
    treatments = load_treatments({"t": {"channel": "sms", "text": template}}, source=SOURCE)
    with pytest.raises(TemplateError, match=r"customer 1: SecurityError.*MAX_REPEAT"):
        render(decisions_for([1], "t", "sms"), customers, treatments)


@pytest.mark.parametrize(
    ("template", "text"),
    [
        ("{{ '%5s|%-3d|%.2f|%%' % ('ab', 7, 1.5) }}", "   ab|7  |1.50|%"),
        ("{{ '%*d' % (4, 7) }}", "   7"),
        ("{{ '{:>5}|{:{w}}|'.format('ab', 'c', w=3) }}", "   ab|c  |"),
        ("{{ 'ab'|center(6) }}|{{ 'a\\nb'|indent(2) }}", "  ab  |a\n  b"),
        ("{{ 'aa bb cc'|wordwrap(5) }}", "aa bb\ncc"),
        ("{{ 'x'.ljust(3, '.') }}{{ '7'.zfill(3) }}{{ '-'.join(['a', 'b']) }}", "x..007a-b"),
        ("{{ 'abc'|replace('b', 'BB') }}{{ '%s!'|format('hi') }}{{ 7 % 4 }}", "aBBchi!3"),
        ("{{ ['a', 'b']|join('-') }}{{ [{'n': 'c'}, {'n': 'd'}]|join(attribute='n') }}", "a-bcd"),
        # truncate never lengthens its input: a huge length is harmless.
        ("{{ 'a b c'|truncate(1000000000) }}", "a b c"),
    ],
)
def test_sandbox_bounds_leave_normal_formatting_alone(template: str, text: str) -> None:
    customers = customers_table([{"customer_id": 1}])
    treatments = load_treatments({"t": {"channel": "sms", "text": template}}, source=SOURCE)
    [row] = render(decisions_for([1], "t", "sms"), customers, treatments).to_pylist()
    assert row["sms_text"] == text


def test_sandbox_is_immutable() -> None:
    customers = pa.table({"customer_id": [1], "items": pa.array([[1, 2]], pa.list_(pa.int64()))})
    treatments = load_treatments(
        {"t": {"channel": "sms", "text": "{{ items.append(3) }}{{ items }}"}}, source=SOURCE
    )
    with pytest.raises(TemplateError, match="SecurityError"):
        render(decisions_for([1], "t", "sms"), customers, treatments)


def test_runtime_error_names_treatment_variant_field_and_customer() -> None:
    customers = customers_table([{"customer_id": 1, "n": 1}, {"customer_id": 2, "n": None}])
    treatments = load_treatments(
        {"t": {"channel": "email", "subject": "s", "body": "{{ n + 1 }}"}}, source=SOURCE
    )
    with pytest.raises(TemplateError, match=r"'t', variant default, field 'body': customer 2"):
        render(decisions_for([1, 2], "t", "email"), customers, treatments)


def test_missing_column_is_named() -> None:
    treatments = load_treatments(
        {"t": {"channel": "sms", "text": "Hi {{ first_name }} {{ range(2)|list }}"}}, source=SOURCE
    )
    assert treatments["t"].fields == frozenset({"first_name"})
    customers = pa.table({"customer_id": [1], "name": ["x"]})
    with pytest.raises(TemplateError, match=r"field 'text': unknown column\(s\) \['first_name'\]"):
        check_columns(treatments, customers.schema)
    with pytest.raises(TemplateError, match="first_name"):
        render(decisions_for([1], "t", "sms"), customers, treatments)


def test_variant_columns_are_checked() -> None:
    treatments = load_treatments(VARIANTS, source=SOURCE)
    with pytest.raises(SchemaError, match="'language'"):
        check_columns(treatments, ["customer_id", "state"])
    with pytest.raises(SchemaError, match="region"):
        check_columns(treatments, ["customer_id", "language"])
    check_columns(treatments, ["customer_id", "language", "country"])


@pytest.mark.parametrize(
    ("entry", "error", "match"),
    [
        ({"channel": "fax", "text": "x"}, ConfigError, "'channel' must be 'email' or 'sms'"),
        ({"channel": "email", "subject": "x"}, ConfigError, "'body' is required"),
        ({"channel": "sms", "text": "x", "subject": "y"}, ConfigError, r"unknown field.*subject"),
        ({"channel": "sms", "text": 3}, ConfigError, "'text' must be a string"),
        (
            {"channel": "sms", "text": "{{ x "},
            TemplateError,
            "variant default, field 'text': line 1",
        ),
        (
            {"channel": "sms", "text": "x", "variant": [{"language": "es", "text": "{% if %}"}]},
            TemplateError,
            "variant language=es, field 'text'",
        ),
        ({"channel": "sms", "text": "x", "variant": [{"text": "y"}]}, ConfigError, "needs"),
        (
            {"channel": "sms", "text": "x", "variant": [{"region": "CA"}]},
            ConfigError,
            "overrides none",
        ),
        (
            {
                "channel": "sms",
                "text": "x",
                "variant": [{"region": "CA", "text": "a"}, {"region": "ca", "text": "b"}],
            },
            ConfigError,
            "same language and region as variant #1",
        ),
        ({"channel": "sms", "text": "x", "variant": {"region": "CA"}}, ConfigError, "list"),
        ({"channel": "sms", "text": "{{ ['A', 'B']|random }}"}, TemplateError, "random"),
    ],
)
def test_load_errors_name_the_culprit(entry: dict[str, Any], error: type, match: str) -> None:
    with pytest.raises(error, match=match) as caught:
        load_treatments({"welcome": entry}, source=SOURCE)
    assert "campaign.toml: treatment 'welcome'" in str(caught.value)


def test_decision_errors() -> None:
    treatments = load_treatments({"t": {"channel": "sms", "text": "x"}}, source=SOURCE)
    customers = customers_table([{"customer_id": 1}])
    with pytest.raises(ConfigError, match=r"action 'offer': treatment 'nope' is not defined"):
        render(decisions_for([1], "nope", "sms"), customers, treatments)
    with pytest.raises(ConfigError, match=r"treatment 't' is for sms, but the action's channel"):
        render(decisions_for([1], "t", "email"), customers, treatments)
    with pytest.raises(DataError, match=r"customer_id 9 \(row 0\) is not in customers"):
        render(decisions_for([9], "t", "sms"), customers, treatments)
    twice = customers_table([{"customer_id": 1}, {"customer_id": 1}])
    with pytest.raises(DataError, match="customer_id 1 appears more than once"):
        render(decisions_for([1], "t", "sms"), twice, treatments)
    with pytest.raises(SchemaError, match="customer_id"):
        render(decisions_for([1], "t", "sms"), pa.table({"id": [1]}), treatments)
    as_text = pa.table({"customer_id": ["1"]})
    with pytest.raises(SchemaError, match="both must be integers or both strings"):
        render(decisions_for([1], "t", "sms"), as_text, treatments)
    narrow = pa.table({"customer_id": pa.array([1], pa.int32())})
    assert render(decisions_for([1], "t", "sms"), narrow, treatments).num_rows == 1
    no_treatment = decisions_for([1], "t", "sms").drop_columns(["treatment"])
    with pytest.raises(SchemaError, match="treatment_of"):
        render(no_treatment, customers, treatments)


def test_treatment_of_and_rows_without_treatment() -> None:
    treatments = load_treatments(
        {"t": {"channel": "sms", "text": "hi {{ s1 }}"}, "u": {"channel": "sms", "text": "yo"}},
        source=SOURCE,
    )
    customers = customers_table([{"customer_id": 1, "s1": "ann"}, {"customer_id": 2, "s1": "bo"}])
    decisions = pa.table(
        {
            "customer_id": [1, 2, 2],
            "action_id": ["a", "b", "c"],
            "channel": ["sms"] * 3,
            "treatment": pa.array([None, "u", None], pa.string()),
        }
    )
    out = render(decisions, customers, treatments, treatment_of={"a": "t"})
    assert out.column("treatment").to_pylist() == ["t", "u", None]
    assert out.column("sms_text").to_pylist() == ["hi ann", "yo", None]
    assert out.column("sms_segments").to_pylist() == [1, 1, None]
    assert out.column("variant").to_pylist() == ["default", "default", None]


@pytest.mark.parametrize(
    "column",
    [
        pa.array(["t", None]).dictionary_encode(),
        pa.array(["t", None], pa.large_string()),
        pa.nulls(2),
    ],
)
def test_treatment_column_forms(column: pa.Array) -> None:
    treatments = load_treatments({"t": {"channel": "sms", "text": "hi"}}, source=SOURCE)
    decisions = decisions_for([1, 2], "t", "sms").set_column(3, "treatment", column)
    out = render(decisions, customers_table([{"customer_id": 1}, {"customer_id": 2}]), treatments)
    expected = ["hi", None] if column.null_count < 2 else [None, None]
    assert out.column("sms_text").to_pylist() == expected


def test_renders_engine_decisions() -> None:
    catalog = [
        {"id": "standard_card", "issue": "Sales", "group": "Cards", "channel": "email",
         "treatment": "card_email", "eligibility": "age >= 18"},
        {"id": "reminder", "issue": "Service", "group": "Notices", "channel": "sms",
         "treatment": "reminder_sms", "value": 0.5},
    ]  # fmt: skip
    customers = pa.table(
        {
            "customer_id": pa.array([1, 2], pa.int64()),
            "first_name": ["Stephen", "María"],
            "age": [40, 16],
            "email": ["s@example.com", "m@example.com"],
            "phone": ["+1555", "+1556"],
            "language": ["en", "es"],
        }
    )
    treatments = load_treatments(
        {
            "card_email": {
                "channel": "email",
                "subject": "{{ first_name }}, the Standard Card",
                "body": "APPLY TODAY: https://u.plus/apply?c={{ customer_id }}",
            },
            "reminder_sms": {
                "channel": "sms",
                "text": "Hi {{ first_name }}, see https://u.plus/r",
                "variant": [{"language": "es", "text": "Hola {{ first_name }} 👋"}],
            },
        },
        source=SOURCE,
    )
    engine = nba_fast.Engine(catalog)
    result = engine.decide(customers, propensities=pa.table({
        "customer_id": [1, 1, 2], "action_id": ["standard_card", "reminder", "reminder"],
        "propensity": [0.5, 0.1, 0.3]}))  # fmt: skip
    out = render(result.decisions, customers, treatments).to_pylist()
    assert [(r["customer_id"], r["action_id"], r["variant"]) for r in out] == [
        (1, "standard_card", "default"),
        (2, "reminder", "language=es"),
    ]
    assert out[0]["body"] == "APPLY TODAY: https://u.plus/apply?c=1"
    assert (out[1]["sms_text"], out[1]["sms_encoding"]) == ("Hola María 👋", "UCS-2")


def test_many_distinct_values_and_shared_templates() -> None:
    count = 5000
    customers = pa.table(
        {
            "customer_id": pa.array(range(count), pa.int64()),
            "name": [f"n{i % 97}" for i in range(count)],
            "score": [i / 7 for i in range(count)],
            "tier": [("gold", "silver", None)[i % 3] for i in range(count)],
        }
    )
    template = (
        "{% if tier == 'gold' %}Gold {% endif %}{{ name|title }} {{ score }} {{ customer_id }}"
    )
    treatments = load_treatments({"t": {"channel": "sms", "text": template}}, source=SOURCE)
    ids = list(range(count - 1, -1, -2))
    out = render(decisions_for(ids, "t", "sms"), customers, treatments)
    assert out.column("sms_text").to_pylist() == expected_renders(template, customers, ids)


def test_batches_give_the_same_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    customers = customers_table(
        [{"customer_id": i, "s1": f"c{i % 13}", "n": i, "b": i % 3 == 0} for i in range(500)]
    )
    template = "{% if b %}B {% endif %}{{ s1|upper }} {{ n }}"
    treatments = load_treatments({"t": {"channel": "sms", "text": template}}, source=SOURCE)
    decisions = decisions_for([i % 500 for i in range(0, 1500, 7)], "t", "sms")
    whole = render(decisions, customers, treatments)
    # nba_fast.render is the function; the module is in sys.modules.
    monkeypatch.setattr(sys.modules["nba_fast.render"], "_BATCH_ROWS", 16)
    batched = render(decisions, customers, treatments)
    assert batched.column("sms_text").num_chunks > 1
    assert batched.equals(whole)
    empty = render(decisions.slice(0, 0), customers, treatments)
    assert empty.num_rows == 0
    assert empty.schema == OUTPUT_SCHEMA


def test_guarded_expression_fails_only_where_printed() -> None:
    customers = customers_table([{"customer_id": 1, "n": 4}, {"customer_id": 2, "n": None}])
    guarded = "{% if n is not none %}{{ n + 1 }}{% endif %}."
    treatments = load_treatments({"t": {"channel": "sms", "text": guarded}}, source=SOURCE)
    out = render(decisions_for([1, 2], "t", "sms"), customers, treatments)
    assert out.column("sms_text").to_pylist() == ["5.", "."]
    unguarded = load_treatments({"t": {"channel": "sms", "text": "{{ n + 1 }}."}}, source=SOURCE)
    with pytest.raises(TemplateError, match="customer 2: TypeError"):
        render(decisions_for([1, 2], "t", "sms"), customers, unguarded)


def test_view_and_dictionary_columns() -> None:
    names = pa.array(["ann", "bo", None, "ann"])
    customers = pa.table(
        {
            "customer_id": [1, 2, 3, 4],
            "first_name": names.cast(pa.string_view()),
            "tier": names.dictionary_encode(),
            "language": pa.array(["es", "en", "es", None]).cast(pa.string_view()),
        }
    )
    template = "{{ first_name }} {{ first_name|upper }} {% if tier %}{{ tier }}{% endif %}."
    treatments = load_treatments(
        {
            "t": {
                "channel": "sms",
                "text": template,
                "variant": [{"language": "ES", "text": "hola {{ first_name }}"}],
            }
        },
        source=SOURCE,
    )
    out = render(decisions_for([1, 2, 3, 4], "t", "sms"), customers, treatments)
    assert out.column("sms_text").to_pylist() == ["hola ann", "bo BO bo.", "hola ", "ann ANN ann."]


def chosen_variant(variants: list[dict[str, str]], customer: dict[str, str | None]) -> str:
    """The reference: most specific matching variant, first listed within a level."""

    def same(a: str | None, b: str | None) -> bool:
        return a is not None and b is not None and a.casefold() == b.casefold()

    for shape in (("language", "region"), ("language",), ("region",)):
        for variant in variants:
            if tuple(k for k in ("language", "region") if k in variant) != shape:
                continue
            language_ok = "language" not in variant or same(
                variant["language"], customer["language"]
            )
            region_ok = "region" not in variant or any(
                same(variant["region"], customer[column]) for column in ("state", "country")
            )
            if language_ok and region_ok:
                return ",".join(f"{k}={variant[k]}" for k in shape)
    return "default"


KEYS = st.sampled_from(["es", "EN", "CA", "ca", "US", "fr"])


@given(
    variants=st.lists(
        st.fixed_dictionaries({}, optional={"language": KEYS, "region": KEYS}).filter(bool),
        max_size=5,
        unique_by=lambda v: (v.get("language", "").casefold(), v.get("region", "").casefold()),
    ),
    people=st.lists(
        st.fixed_dictionaries(
            {"language": KEYS | st.none(), "state": KEYS | st.none(), "country": KEYS | st.none()}
        ),
        min_size=1,
        max_size=20,
    ),
)
def test_variant_choice_matches_reference(
    variants: list[dict[str, str]], people: list[dict[str, str | None]]
) -> None:
    entry = {"channel": "sms", "text": "default", "variant": [{**v, "text": "v"} for v in variants]}
    treatments = load_treatments({"t": entry}, source=SOURCE)
    customers = pa.Table.from_pylist(
        [{"customer_id": i, **person} for i, person in enumerate(people)],
        schema=pa.schema(
            [("customer_id", pa.int64())]
            + [(c, pa.string()) for c in ("language", "state", "country")]
        ),
    )
    out = render(decisions_for(list(range(len(people))), "t", "sms"), customers, treatments)
    assert out.column("variant").to_pylist() == [chosen_variant(variants, p) for p in people]
