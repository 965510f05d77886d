"""CSV files the bot writes, safe to open in a spreadsheet. Pure: no I/O of its own
(``csv_writer`` writes to the file it is given).

Contacts, parameters, Twilio's messages and people's answers come from outside; a cell
that begins with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return would be read by
Excel, Sheets or LibreOffice as a formula (CSV injection). As OWASP advises, such a
cell is written with a leading apostrophe, which spreadsheets show as text and do not
display. A phone number (``+16175551212``) gets one too: it stays text, exactly as
written, instead of becoming the number 16175551212.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from typing import IO, Any

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> str:
    """``value`` as a cell no spreadsheet evaluates."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


class SafeWriter:
    """Rows written to ``out`` as CSV (RFC 4180 quoting, ``\\r\\n`` line ends), every
    cell made safe: a file written a page at a time."""

    def __init__(self, out: IO[str]) -> None:
        self._writer = csv.writer(out)

    def writerow(self, row: Iterable[Any]) -> None:
        self._writer.writerow([safe_cell(c) for c in row])

    def writerows(self, rows: Iterable[Iterable[Any]]) -> None:
        for row in rows:
            self.writerow(row)


def csv_writer(out: IO[str]) -> SafeWriter:
    """A ``SafeWriter`` on ``out`` (a file opened with ``newline=""``)."""
    return SafeWriter(out)


def csv_text(header: Iterable[Any], rows: Iterable[Iterable[Any]]) -> str:
    """A whole CSV file (RFC 4180 quoting, ``\\r\\n`` line ends), every cell made safe."""
    buffer = io.StringIO()
    writer = csv_writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()
