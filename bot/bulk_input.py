"""Many contacts for one flow: rows from a command's list or from a CSV file. Pure: no I/O.

A CSV file's contact column is found by its header (``to``, ``phone``, ``number``,
``contact``, any case) or, failing that, by its content (the column whose cells are
mostly phone numbers). Every other column becomes a parameter, a dotted header
nesting as in the grammar (``customer.name`` → ``{"customer": {"name": …}}``).
Excel's exports (``;`` as the delimiter, a byte-order mark) and blank lines are
read as people expect.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bot.errors import PhoneError
from bot.phone import looks_like_phone, parse_address

CONTACT_HEADERS = ("to", "phone", "number", "contact")
DEFAULT_MAX_ROWS = 5000


@dataclass(frozen=True)
class Row:
    """One contact of a bulk run: its number (1-based, as people count rows), what was
    typed, the address (None if it is not one) and its own parameters."""

    number: int
    typed: str
    to: str | None
    parameters: dict[str, Any] = field(default_factory=dict)
    problem: str | None = None  # why it cannot be sent


class TooManyRows(ValueError):
    """More rows than BULK_MAX_ROWS: nothing is read further, nothing is sent."""

    def __init__(self, count: int, limit: int) -> None:
        super().__init__(f"{count} rows is more than BULK_MAX_ROWS={limit}")
        self.count = count
        self.limit = limit


def row_for(number: int, typed: str, region: str | None, parameters: Mapping[str, Any]) -> Row:
    """A row for ``typed``, normalised by libphonenumber, or with the reason it is not."""
    try:
        return Row(number, typed, parse_address(typed, region), dict(parameters))
    except PhoneError as exc:
        return Row(number, typed, None, dict(parameters), str(exc))


def nest(flat: Mapping[str, str]) -> tuple[dict[str, Any], str | None]:
    """Dotted keys nested (``a.b`` → ``{"a": {"b": …}}``); (parameters, a conflict or None)."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        parts = [p for p in key.split(".")]
        if not all(parts):
            return out, f"column {key!r} has an empty part"
        node = out
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                return out, f"columns {part!r} and {key!r} conflict"
            node = child
        if parts[-1] in node:
            return out, f"column {key!r} is given twice"
        node[parts[-1]] = value
    return out, None


def _dialect(sample: str) -> type[csv.Dialect] | csv.Dialect:
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t")
    except csv.Error:
        return csv.excel


def _contact_column(header: list[str], rows: list[list[str]]) -> int | None:
    for name in CONTACT_HEADERS:
        for index, title in enumerate(header):
            if title.strip().lower() == name:
                return index
    best, best_share = None, 0.5  # by content: most cells look like phone numbers
    for index in range(len(header)):
        cells = [r[index] for r in rows[:50] if index < len(r) and r[index].strip()]
        share = sum(looks_like_phone(c) for c in cells) / len(cells) if cells else 0
        if share > best_share:
            best, best_share = index, share
    return best


def read_csv(
    text: str, *, region: str | None = None, max_rows: int = DEFAULT_MAX_ROWS
) -> tuple[list[Row], str | None]:
    """The rows of a CSV file (rows numbered as in a spreadsheet, header = 1); or ([], why
    not). Raises ``TooManyRows`` past ``max_rows`` (counted before anything is parsed)."""
    text = text.lstrip("\ufeff")
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) - 1 > max_rows:
        raise TooManyRows(len(lines) - 1, max_rows)
    if not lines:
        return [], "the file is empty"
    table = list(csv.reader(io.StringIO("\n".join(lines)), _dialect("\n".join(lines[:20]))))
    header, body = table[0], table[1:]
    if not body:
        return [], "the file has a header and no rows"
    column = _contact_column(header, body)
    if column is None:
        return [], (
            "no contact column: name one to, phone, number or contact, or put the numbers"
            " in a column of their own"
        )
    rows = []
    for offset, cells in enumerate(body, start=2):
        typed = cells[column].strip() if column < len(cells) else ""
        flat = {
            header[i].strip(): cells[i].strip()
            for i in range(min(len(header), len(cells)))
            if i != column and header[i].strip() and cells[i].strip()
        }
        parameters, conflict = nest(flat)
        row = row_for(offset, typed, region, parameters)
        if conflict:
            row = Row(row.number, typed, None, parameters, conflict)
        elif not typed:
            row = Row(row.number, typed, None, parameters, "no contact in this row")
        rows.append(row)
    return rows, None
