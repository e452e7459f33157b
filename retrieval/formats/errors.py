"""The one error a format converter raises: a file that cannot be turned into text."""

from __future__ import annotations


class FormatError(Exception):
    """``str(exc)`` is the reason shown to the user (e.g. "not a readable PDF: ...")."""

    @property
    def reason(self) -> str:
        return str(self)
