"""Many contacts for one flow: rows from a command's list or from a CSV file. Pure: no I/O.

A CSV file is read from its bytes, whole, by the csv module (a quoted cell keeps its
line breaks exactly). Its encoding is found in this order: a byte-order mark (UTF-8,
UTF-16, UTF-32: Excel's *Unicode text*), then strict UTF-8, then Windows-1252 (Excel's
default *CSV* on Windows); the preview says which was read.

The contact column is found by its header (``to``, ``phone``, ``number``,
``contact``, any case) or, failing that, by its content (the column whose cells are
mostly phone numbers). Every other column becomes a parameter under
``bot.domain.parameters``' rules, a dotted header nesting as in the grammar
(``customer.name`` → ``{"customer": {"name": …}}``). Excel's exports (``;`` or a tab
as the delimiter) and blank lines are read as people expect.
"""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from bot.domain import parameters
from bot.domain.errors import CsvError, ParameterError, PhoneError, TooManyRows
from bot.domain.phone import looks_like_phone, read_address
from bot.domain.phone_facts import NumberFacts

CONTACT_HEADERS = ("to", "phone", "number", "contact")
DEFAULT_MAX_ROWS = 5000


@dataclass(frozen=True, slots=True)  # slots: a 100,000-row preview holds them all
class Row:
    """One contact of a bulk run: its number (1-based, as people count rows), what was
    typed, the address (None if it is not one) and its own parameters."""

    number: int
    typed: str
    to: str | None
    parameters: dict[str, Any] = field(default_factory=dict)
    problem: str | None = None  # why it cannot be sent
    # what libphonenumber knew of ``to`` when it was read (shared; not kept with the run)
    facts: NumberFacts | None = field(default=None, compare=False, repr=False)

    def kept(self) -> dict[str, Any]:
        """The row as a run keeps it (``Row(**kept)`` reads it back; facts are not kept)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "facts"}


def row_for(number: int, typed: str, region: str | None, parameters: Mapping[str, Any]) -> Row:
    """A row for ``typed``, normalised by libphonenumber (its facts read in the same
    pass), or with the reason it is not."""
    try:
        to, known = read_address(typed, region)
    except PhoneError as exc:
        return Row(number, typed, None, dict(parameters), str(exc))
    return Row(number, typed, to, dict(parameters), facts=known)


# Byte-order marks, longest first (UTF-32 LE begins with UTF-16 LE's).
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
ENCODING_NAMES = {
    "utf-8": "UTF-8",
    "utf-8-sig": "UTF-8 (with a byte-order mark)",
    "utf-16": "UTF-16 (Excel's Unicode text)",
    "utf-32": "UTF-32",
    "cp1252": "Windows-1252 (Excel's CSV on Windows)",
}


def decode(data: bytes) -> tuple[str, str]:
    """The text of a file and the encoding it was read with (a key of ``ENCODING_NAMES``).
    Raises ``CsvError`` for a file no encoding here can read."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                return data.decode(encoding).lstrip("\ufeff"), encoding
            except UnicodeDecodeError:
                raise CsvError(f"the file starts as {encoding} but is not") from None
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("cp1252"), "cp1252"
    except UnicodeDecodeError:
        raise CsvError(
            "the file is neither UTF-8 nor Windows-1252 text; save it as CSV UTF-8"
        ) from None


@dataclass(frozen=True)
class Sheet:
    """The rows of a CSV file, and the encoding they were read in."""

    rows: list[Row]
    encoding: str = "utf-8"

    @property
    def encoding_name(self) -> str:
        return ENCODING_NAMES.get(self.encoding, self.encoding)


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


def _records(text: str, max_rows: int) -> list[list[str]]:
    """The non-blank records of ``text``, parsed whole (quoted line breaks kept); raises
    ``TooManyRows`` as soon as there are more than ``max_rows`` after the header."""
    sample = text[:8192]
    table: list[list[str]] = []
    try:
        for record in csv.reader(io.StringIO(text, newline=""), _dialect(sample)):
            if not any(cell.strip() for cell in record):
                continue
            table.append(record)
            if len(table) - 1 > max_rows:
                rest = sum(
                    1
                    for r in csv.reader(io.StringIO(text, newline=""), _dialect(sample))
                    if any(c.strip() for c in r)
                )
                raise TooManyRows(rest - 1, max_rows)
    except csv.Error as exc:
        raise CsvError(f"the file is not CSV the bot can read ({exc})") from None
    return table


def _columns(header: list[str], column: int) -> dict[int, str]:
    """The parameter columns (index -> key), checked once under the parameter rules."""
    keys = {i: title.strip() for i, title in enumerate(header) if i != column and title.strip()}
    try:
        parameters.nest((key, "") for key in keys.values())
    except ParameterError as exc:
        raise CsvError(f"the header cannot name parameters: {exc.problem}") from None
    return keys


def read_csv(
    data: bytes | str, *, region: str | None = None, max_rows: int = DEFAULT_MAX_ROWS
) -> Sheet:
    """The rows of a CSV file (numbered as in a spreadsheet, header = 1). Raises
    ``CsvError`` for a file that is no list of contacts, ``TooManyRows`` past
    ``max_rows``."""
    text, encoding = decode(data) if isinstance(data, bytes) else (data.lstrip("\ufeff"), "utf-8")
    table = _records(text, max_rows)
    if not table:
        raise CsvError("the file is empty")
    header, body = table[0], table[1:]
    if not body:
        raise CsvError("the file has a header and no rows")
    column = _contact_column(header, body)
    if column is None:
        raise CsvError(
            "no contact column: name one to, phone, number or contact, or put the numbers"
            " in a column of their own"
        )
    keys = _columns(header, column)
    # checked once in the header: without dots, a row's parameters are its cells as given
    nest = parameters.nest if any("." in key for key in keys.values()) else dict
    rows = []
    for number, cells in enumerate(body, start=2):
        typed = cells[column].strip() if column < len(cells) else ""
        given = [(keys[i], cells[i].strip()) for i in keys if i < len(cells) and cells[i].strip()]
        if typed:
            rows.append(row_for(number, typed, region, nest(given)))
        else:
            rows.append(Row(number, typed, None, nest(given), "no contact in this row"))
    return Sheet(rows, encoding)
