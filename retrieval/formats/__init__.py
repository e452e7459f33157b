"""File formats turned into the Markdown-ish text that the chunker reads.

Each module converts one family of files (PDF, Office, CSV, HTML) or does one shared job
(cleaning, tables, boilerplate, ZIP safety). Converters raise :class:`FormatError` with a reason a
user can act on; :mod:`retrieval.loaders` turns it into a ``LoadFailure``.
"""

from retrieval.formats.errors import FormatError

__all__ = ["FormatError"]
