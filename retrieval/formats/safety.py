"""Checks run before a ZIP-based Office file (DOCX, XLSX) is opened: refuse ZIP bombs.

Only the central directory is read (``infolist()``), nothing is decompressed. Declared sizes are
upper bounds: Python's ``zipfile`` never returns more bytes than a member declares.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

#: Uncompressed total allowed: this many times the file's size limit, and never above the cap.
EXPANSION_FACTOR = 20
MAX_TOTAL_UNCOMPRESSED = 200 * 1024 * 1024
MAX_MEMBERS = 10_000
#: A member this many times larger than its compressed form is a bomb...
MAX_RATIO = 100
#: ...when it is also at least this big (tiny members compress absurdly well and are harmless).
RATIO_FLOOR = 1024 * 1024


def zip_problem(path: Path, *, max_bytes: int, kind: str) -> str | None:
    """Why ``path`` must not be opened as a ``kind`` (e.g. "DOCX") file, or None when it is safe."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
        return (
            f"not a valid {kind} file (not a ZIP archive: {exc}); "
            "password-protected Office files are not supported"
        )
    if len(members) > MAX_MEMBERS:
        return f"refused: the {kind} archive has {len(members)} members (limit {MAX_MEMBERS})"
    limit = min(EXPANSION_FACTOR * max_bytes, MAX_TOTAL_UNCOMPRESSED)
    total = sum(m.file_size for m in members)
    if total > limit:
        return f"refused: the {kind} archive expands to {total} bytes (limit {limit}); possible ZIP bomb"
    for m in members:
        ratio = m.file_size / max(m.compress_size, 1)
        if m.file_size >= RATIO_FLOOR and ratio > MAX_RATIO:
            return (
                f"refused: member {m.filename!r} compresses {ratio:.0f}:1 (limit {MAX_RATIO}:1); "
                "possible ZIP bomb"
            )
        if m.flag_bits & 0x1:
            return f"refused: the {kind} archive has encrypted members"
    return None
