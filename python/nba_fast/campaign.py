"""The campaign file: one TOML file that says everything an outbound run needs.

A campaign names its database, where its customers and propensities come from, its actions with
their rules and treatments, its contact policies and volume caps (docs/campaign.md)::

    [campaign]
    name = "uplus-cards"
    database = "sqlite:///nba_demo.db"     # default; or postgresql://user@host/db
    channels = ["email", "sms"]

    [inputs]
    customers = "customers.parquet"        # Parquet, CSV or Arrow IPC, relative to this file
    propensities = { sql = "SELECT customer_id, action_id, propensity FROM scores" }

    [[action]]
    id = "card_standard_email"
    ...
    treatment = "StandardCardEmail"

    [treatment.StandardCardEmail]
    ...

`load_campaign` checks the whole file before anything runs. A mistake raises `CampaignError`
naming the file, the field and what was expected, e.g.
``campaign.toml: field 'inputs.customers': expected a file path or { sql = "..." }, got 42``.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nba_fast._core import ConfigError
from nba_fast.config import (
    Action,
    ContactPolicy,
    VolumeCap,
    load_caps,
    load_catalog,
    load_policies,
)

__all__ = [
    "CHANNELS",
    "DEFAULT_DATABASE",
    "INPUT_FORMATS",
    "Campaign",
    "CampaignError",
    "InputSource",
    "load_campaign",
]

DEFAULT_DATABASE = "sqlite:///nba_demo.db"
"""The database of a campaign that names none: an SQLite file in the working directory."""

CHANNELS: tuple[str, ...] = ("email", "sms")
"""The channels a campaign can send on (the renderer knows how to write these)."""

INPUT_FORMATS: Mapping[str, str] = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".arrow": "ipc",
    ".feather": "ipc",
    ".ipc": "ipc",
}
"""Input file suffixes and the format each is read as."""

_TOP_LEVEL = ("campaign", "inputs", "action", "policy", "cap", "treatment")
_CAMPAIGN_KEYS = ("name", "database", "channels", "max_per_customer", "allocation")
_INPUT_KEYS = ("customers", "propensities", "do_not_contact")


class CampaignError(ConfigError):
    """A campaign file that cannot be run: the message names the file and the field."""


@dataclass(frozen=True)
class InputSource:
    """Where one input table comes from: a file (`path`, read as `format`) or a SQL query
    against the campaign's database (`sql`)."""

    field: str
    path: Path | None = None
    format: str | None = None
    sql: str | None = None

    def describe(self) -> str:
        """The source in words, for messages."""
        return str(self.path) if self.path is not None else f"SQL query ({self.field})"


@dataclass(frozen=True)
class Campaign:
    """A validated campaign file.

    Attributes:
        path: the campaign file.
        name: the campaign's name; default run ids are ``NAME-YYYY-MM-DD``.
        database: the database URL (``sqlite:///PATH`` or ``postgresql://...``).
        channels: the channels this campaign sends on.
        customers: where the customers come from.
        propensities: where the propensities come from (None: default propensities only).
        do_not_contact: where the do-not-contact list comes from, if any.
        actions: the catalog, in file order.
        policies: contact policies, in file order.
        caps: volume caps per run, in file order.
        treatments: the ``[treatment.NAME]`` tables, unchecked here: the renderer checks them.
        max_per_customer: actions selected per customer per run.
        allocation: ``greedy`` or ``optimal`` (see `nba_fast.Engine`).
    """

    path: Path
    name: str
    database: str
    channels: tuple[str, ...]
    customers: InputSource
    propensities: InputSource | None
    do_not_contact: InputSource | None
    actions: list[Action]
    policies: list[ContactPolicy]
    caps: list[VolumeCap]
    treatments: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    max_per_customer: int = 1
    allocation: str = "greedy"

    def history_horizon_days(self) -> float:
        """How far back the contact policies look: events older than this cannot count."""
        spans = [p.window_days + (p.suppress_days or 0.0) for p in self.policies]
        return max(spans, default=0.0)


def _type_name(value: Any) -> str:
    names = {str: "a string", int: "an integer", float: "a number", bool: "a boolean"}
    names |= {list: "an array", dict: "a table"}
    return names.get(type(value), type(value).__name__)


def load_campaign(path: str | os.PathLike[str]) -> Campaign:
    """Reads and checks a campaign file.

    Args:
        path: the TOML file.

    Returns:
        The campaign, every part validated; input paths resolved against the file's folder.

    Raises:
        CampaignError: the file cannot be read, is not TOML, has an unknown key, or a field is
            missing or wrong; the message names the file and the field.

    Example:
        >>> import tempfile, pathlib
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (folder / "c.toml").write_text('''
        ... [campaign]
        ... name = "demo"
        ... [inputs]
        ... customers = { sql = "SELECT * FROM customers" }
        ... [[action]]
        ... id = "gold"
        ... issue = "Sales"
        ... group = "Cards"
        ... channel = "email"
        ... ''')
        >>> campaign = load_campaign(folder / "c.toml")
        >>> campaign.name, campaign.database, campaign.channels, campaign.customers.sql
        ('demo', 'sqlite:///nba_demo.db', ('email', 'sms'), 'SELECT * FROM customers')
    """
    path = Path(path)
    where = str(path)

    def fail(field_name: str, expected: str, got: Any) -> CampaignError:
        shown = repr(got)
        if isinstance(got, dict) or len(shown) > 60:
            shown = _type_name(got)
        return CampaignError(f"{where}: field {field_name!r}: expected {expected}, got {shown}")

    try:
        with open(path, "rb") as file:
            document = tomllib.load(file)
    except OSError as err:
        raise CampaignError(f"{where}: cannot read the campaign file: {err.strerror}") from err
    except tomllib.TOMLDecodeError as err:
        raise CampaignError(f"{where}: not valid TOML: {err}") from err

    for key in document:
        if key not in _TOP_LEVEL:
            raise CampaignError(
                f"{where}: unknown top-level key {key!r} (known: {', '.join(_TOP_LEVEL)})"
            )

    def table(key: str) -> Mapping[str, Any]:
        value = document.get(key, {})
        if not isinstance(value, dict):
            raise fail(key, f"a table [{key}]", value)
        return value

    def check_keys(section: str, entries: Mapping[str, Any], known: tuple[str, ...]) -> None:
        for key in entries:
            if key not in known:
                raise CampaignError(
                    f"{where}: field '{section}.{key}': unknown key (known: {', '.join(known)})"
                )

    head = table("campaign")
    check_keys("campaign", head, _CAMPAIGN_KEYS)
    name = head.get("name")
    if not isinstance(name, str) or not name.strip():
        raise fail("campaign.name", "a non-empty string", name)
    database = head.get("database", DEFAULT_DATABASE)
    if not isinstance(database, str) or not database.startswith(("sqlite:///", "postgresql://")):
        raise fail(
            "campaign.database", "a URL sqlite:///PATH or postgresql://USER@HOST/DB", database
        )
    channels_value = head.get("channels", list(CHANNELS))
    if (
        not isinstance(channels_value, list)
        or not channels_value
        or any(c not in CHANNELS for c in channels_value)
    ):
        raise fail("campaign.channels", f"a non-empty array of {list(CHANNELS)}", channels_value)
    channels = tuple(channels_value)
    max_per_customer = head.get("max_per_customer", 1)
    if isinstance(max_per_customer, bool) or not isinstance(max_per_customer, int):
        raise fail("campaign.max_per_customer", "an integer >= 1", max_per_customer)
    if max_per_customer < 1:
        raise fail("campaign.max_per_customer", "an integer >= 1", max_per_customer)
    allocation = head.get("allocation", "greedy")
    if allocation not in ("greedy", "optimal"):
        raise fail("campaign.allocation", "'greedy' or 'optimal'", allocation)

    inputs = table("inputs")
    check_keys("inputs", inputs, _INPUT_KEYS)
    if "customers" not in inputs:
        raise CampaignError(f"{where}: field 'inputs.customers': missing (required)")
    sources = {
        key: _input_source(path, f"inputs.{key}", inputs[key], fail)
        for key in _INPUT_KEYS
        if key in inputs
    }

    actions = _section_list(document, "action", fail)
    if not actions:
        raise CampaignError(f"{where}: field 'action': missing: a campaign needs [[action]] tables")
    catalog: list[Action] = []
    for position, entry in enumerate(actions):
        label = f"action[{position + 1}]"
        try:
            [action] = load_catalog([entry])
        except ConfigError as err:
            raise CampaignError(f"{where}: field {label!r}: {err}") from err
        if action.channel not in channels:
            raise fail(
                f"{label}.channel", f"one of campaign.channels {list(channels)}", action.channel
            )
        catalog.append(action)
    try:
        catalog = load_catalog(catalog)  # duplicate ids
    except ConfigError as err:
        raise CampaignError(f"{where}: field 'action': {err}") from err

    policies_raw = _section_list(document, "policy", fail)
    try:
        policies = load_policies(policies_raw)
    except ConfigError as err:
        raise CampaignError(f"{where}: field 'policy': {err}") from err
    caps_raw = _section_list(document, "cap", fail)
    try:
        caps = load_caps(caps_raw)
    except ConfigError as err:
        raise CampaignError(f"{where}: field 'cap': {err}") from err

    treatments = table("treatment")
    for treatment_name, entry in treatments.items():
        if not isinstance(entry, dict):
            raise fail(f"treatment.{treatment_name}", "a table [treatment.NAME]", entry)
    for position, action in enumerate(catalog):
        if action.treatment is not None and action.treatment not in treatments:
            raise fail(
                f"action[{position + 1}].treatment",
                f"the name of a [treatment.NAME] table (have: {sorted(treatments)})",
                action.treatment,
            )
    return Campaign(
        path=path,
        name=name,
        database=database,
        channels=channels,
        customers=sources["customers"],
        propensities=sources.get("propensities"),
        do_not_contact=sources.get("do_not_contact"),
        actions=catalog,
        policies=policies,
        caps=caps,
        treatments=treatments,
        max_per_customer=max_per_customer,
        allocation=allocation,
    )


def _section_list(document: Mapping[str, Any], key: str, fail: Any) -> list[Any]:
    """The ``[[key]]`` tables of the document (an empty list if absent)."""
    value = document.get(key, [])
    if not isinstance(value, list) or any(not isinstance(entry, dict) for entry in value):
        raise fail(key, f"[[{key}]] tables", value)
    return value


def _input_source(campaign_path: Path, field_name: str, value: Any, fail: Any) -> InputSource:
    """One ``[inputs]`` entry: a file path (relative to the campaign file) or ``{ sql = ... }``."""
    if isinstance(value, dict):
        unknown = sorted(set(value) - {"sql"})
        if unknown:
            raise CampaignError(
                f"{campaign_path}: field '{field_name}.{unknown[0]}': unknown key (known: sql)"
            )
        sql = value.get("sql")
        if not isinstance(sql, str) or not sql.strip():
            raise fail(f"{field_name}.sql", "a non-empty SQL query string", sql)
        return InputSource(field=field_name, sql=sql)
    if not isinstance(value, str) or not value:
        raise fail(field_name, 'a file path or { sql = "..." }', value)
    file_path = Path(value)
    if not file_path.is_absolute():
        file_path = campaign_path.parent / file_path
    suffix = file_path.suffix.lower()
    if suffix not in INPUT_FORMATS:
        raise fail(field_name, f"a file ending in {', '.join(INPUT_FORMATS)}", value)
    if not file_path.is_file():
        raise fail(field_name, "an existing file (relative to the campaign file)", value)
    return InputSource(field=field_name, path=file_path, format=INPUT_FORMATS[suffix])
