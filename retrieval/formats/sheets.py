"""CSV/TSV to a marked table block: delimiter sniffed, first non-empty row is the header."""

from __future__ import annotations

import csv
import io

from retrieval.formats.errors import FormatError
from retrieval.formats.tables import table_block

_DELIMITERS = ",;\t|"
_SNIFF_BYTES = 64 * 1024


def sniff_delimiter(text: str, default: str = ",") -> str:
    sample = text[:_SNIFF_BYTES]
    try:
        return csv.Sniffer().sniff(sample, delimiters=_DELIMITERS).delimiter
    except csv.Error:
        first = sample.split("\n", 1)[0]
        counts = {d: first.count(d) for d in _DELIMITERS}
        best = max(counts, key=lambda d: counts[d])
        return best if counts[best] else default


def csv_to_markdown(text: str, *, caption: str, delimiter: str | None = None) -> str:
    """The rows of CSV ``text`` as one marked table block ("" when there are no data rows)."""
    delim = delimiter or sniff_delimiter(text)
    try:
        rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=delim))
    except csv.Error as exc:
        raise FormatError(f"not a readable CSV file: {exc}") from exc
    return table_block(rows, caption=caption, header=True)
