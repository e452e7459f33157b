"""The self-service admin page: static HTML, CSS and ES modules served by the app itself.

Nothing is fetched from a CDN; the page talks only to this server's ``/v1`` API. ``/admin`` is the
page (never cached, so an upgrade shows at once); ``/admin/static/{path}`` serves the files next to
it, refusing any path that leaves the folder.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import FileResponse

router = APIRouter(tags=["admin"], include_in_schema=False)

#: The page's files (package data: api/static/admin/*).
STATIC_DIR = Path(__file__).parent.parent / "static" / "admin"

# Explicit types: the system's mimetypes table varies, and browsers refuse an ES module served
# as anything but JavaScript.
_CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".txt": "text/plain; charset=utf-8",
}

# The page loads only its own files and calls only this origin.
_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)


def resolve_static(path: str, root: Path = STATIC_DIR) -> Path | None:
    """The file ``path`` names inside ``root``, or None when it is missing or outside the folder."""
    if not path or "\x00" in path or "\\" in path:
        return None
    base = root.resolve()
    try:
        target = (base / path).resolve()
    except (OSError, RuntimeError):  # a symlink loop, a name too long
        return None
    if not target.is_relative_to(base) or not target.is_file():
        return None
    if target.suffix.lower() not in _CONTENT_TYPES:
        return None
    return target


@router.get("/admin")
def admin_index() -> FileResponse:
    """The admin page."""
    index = resolve_static("index.html")
    if index is None:
        raise HTTPException(404, "the admin page is not installed (api/static/admin/index.html)")
    return FileResponse(
        index,
        media_type=_CONTENT_TYPES[".html"],
        headers={
            "Cache-Control": "no-store",
            "Content-Security-Policy": _CSP,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
        },
    )


@router.get("/admin/static/{path:path}")
def admin_static(path: str, request: Request) -> Response:
    """One of the page's files: scripts, styles, icons."""
    target = resolve_static(path)
    if target is None:
        raise HTTPException(404, f"no such admin file: {path}")
    stat = target.stat()
    etag = f'"{stat.st_mtime_ns:x}-{stat.st_size:x}"'
    # Revalidated on every load (no-cache + ETag): an upgrade never mixes old and new modules,
    # and an unchanged file costs a 304.
    headers = {"Cache-Control": "no-cache", "ETag": etag, "X-Content-Type-Options": "nosniff"}
    if etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    return FileResponse(target, media_type=_CONTENT_TYPES[target.suffix.lower()], headers=headers)
