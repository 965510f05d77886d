"""CSV files the bot writes, safe to open in a spreadsheet. Pure: no I/O.

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
from typing import Any

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> str:
    """``value`` as a cell no spreadsheet evaluates."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def csv_text(header: Iterable[Any], rows: Iterable[Iterable[Any]]) -> str:
    """A whole CSV file (RFC 4180 quoting, ``\\r\\n`` line ends), every cell made safe."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([safe_cell(c) for c in header])
    for row in rows:
        writer.writerow([safe_cell(c) for c in row])
    return buffer.getvalue()
