"""Contactability: has the address the channel needs, not opted out, not on the list.

The checks run in this order and the first that fails is the drop reason (docs/semantics.md):
``no_address`` (an ``email`` action needs a non-NULL ``email``, an ``sms`` action a ``phone``),
``opted_out`` (``opt_out_<channel>`` is TRUE), ``do_not_contact`` (listed for the channel or
``*`` by customer_id, or by the address the channel uses; a ``*`` row's address matches the
customer's email or phone and blocks every channel).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.types as pat

from nba_fast._core import SchemaError
from nba_fast.config import Action
from nba_fast.reference.evaluate import Value
from nba_fast.reference.inputs import (
    ALL_CHANNELS,
    CustomerId,
    DoNotContact,
    column_values,
    is_text,
    read_do_not_contact,
)

__all__ = ["ADDRESS_COLUMNS", "Contactability"]

ADDRESS_COLUMNS = {"email": "email", "sms": "phone"}
"""The customers' column holding the address each channel needs (other channels need none)."""


class Contactability:
    """The customers' address and opt-out columns, read once, and the do-not-contact list."""

    def __init__(
        self, catalog: Sequence[Action], customers: pa.Table, do_not_contact: Any, kind: str
    ) -> None:
        """Checks and reads the columns the catalog's channels need, then the list.

        Args:
            catalog: the actions.
            customers: the customers table.
            do_not_contact: the do-not-contact table (any Arrow object), or None.
            kind: the kind of the customers' ids (``"int"`` or ``"str"``).

        Raises:
            SchemaError: a channel's address column is missing; ``email`` or ``phone`` is not
                strings; an ``opt_out_<channel>`` column is not boolean; a bad list column.
            DataError: a list row without channel, or with neither customer_id nor address.
        """
        schema = customers.schema
        for action in catalog:
            column = ADDRESS_COLUMNS.get(action.channel)
            if column is not None and column not in schema.names:
                raise SchemaError(
                    f"customers: column {column!r} is missing; action {action.id!r} on channel "
                    f"{action.channel!r} needs it"
                )
        self.addresses: dict[str, list[Value]] = {}
        for column in ADDRESS_COLUMNS.values():
            if column in schema.names:
                data_type = schema.field(column).type
                if not (is_text(data_type) or pat.is_null(data_type)):
                    raise SchemaError(
                        f"customers: column {column!r} must be strings, got {data_type}"
                    )
                self.addresses[column] = column_values(customers.column(column))
        self.opt_outs: dict[str, list[Value]] = {}
        for channel in sorted({action.channel for action in catalog}):
            column = f"opt_out_{channel}"
            if column in schema.names:
                data_type = schema.field(column).type
                if not (pat.is_boolean(data_type) or pat.is_null(data_type)):
                    raise SchemaError(
                        f"customers: column {column!r} must be boolean, got {data_type}"
                    )
                self.opt_outs[channel] = column_values(customers.column(column))
        self.blocked = (
            DoNotContact() if do_not_contact is None else read_do_not_contact(do_not_contact, kind)
        )

    def drop_reason(self, row: int, customer_id: CustomerId, channel: str) -> str | None:
        """Why customer `row` cannot be contacted on `channel`, or None if they can."""
        address_column = ADDRESS_COLUMNS.get(channel)
        address = None if address_column is None else self.addresses[address_column][row]
        if address_column is not None and address is None:
            return "no_address"
        if channel in self.opt_outs and self.opt_outs[channel][row] is True:
            return "opted_out"
        if self.blocked.by_id.get(customer_id, set()) & {channel, ALL_CHANNELS}:
            return "do_not_contact"
        if address is not None and channel in self.blocked.by_address.get(str(address), set()):
            return "do_not_contact"
        for column in self.addresses.values():
            value = column[row]
            if value is not None and ALL_CHANNELS in self.blocked.by_address.get(str(value), set()):
                return "do_not_contact"
        return None
