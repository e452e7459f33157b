"""Character Cards V1/V2/V3 (SillyTavern, chub.ai, RisuAI): read, write, and lorebook activation.

A *character card* is a persona definition shared as JSON or embedded in a PNG avatar:

* **V1** is a flat object ``{name, description, personality, scenario, first_mes, mes_example}``.
* **V2** (``{"spec": "chara_card_v2", "spec_version": "2.0", "data": {...}}``) nests the V1 fields
  in ``data`` and adds ``creator_notes``, ``system_prompt``, ``post_history_instructions``,
  ``alternate_greetings``, ``character_book`` (a lorebook), ``tags``, ``creator``,
  ``character_version`` and ``extensions`` (free-form, namespaced application data).
* **V3** (``"chara_card_v3"``, ``"3.0"``) is a superset of V2: ``assets``, ``nickname``,
  ``creator_notes_multilingual``, ``source``, ``group_only_greetings``, ``creation_date``,
  ``modification_date``, and ``use_regex`` on lorebook entries.

In a PNG the card is a ``tEXt`` chunk whose text is the card JSON, UTF-8 then base64: keyword
``chara`` for V2 (and V1), ``ccv3`` for V3. A V3 writer also writes a V2 ``chara`` chunk for older
readers, and a reader that finds both uses ``ccv3``. This module parses PNG chunks itself
(``struct`` + ``zlib``, no image library) and also reads ``zTXt``/``iTXt`` chunks.

Unknown-field policy (the specs say editors must never destroy data they do not understand):
every key this module does not model is kept, at every level, in an ``extra`` dict -- the card's
envelope (``PersonaCard.top_extra``), its ``data`` object (``PersonaCard.extra``), the lorebook
(``Lorebook.extra``) and each entry (``LoreEntry.extra``) -- and written back unchanged on export,
as are all ``extensions`` objects. Optional fields that were absent stay absent (``None``).

:func:`active_lore` is the lorebook scan the persona graph injects: enabled entries that are
constant or whose keys occur in the recent turns, ordered by ``insertion_order``.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import re
import struct
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, cast

__all__ = [
    "BACKFILL_NOTE",
    "DEFAULT_MAX_BYTES",
    "CardError",
    "LoreEntry",
    "Lorebook",
    "PersonaCard",
    "Spec",
    "active_lore",
    "card_to_json",
    "example_lines",
    "parse_card_json",
    "persona_fields",
    "placeholder_png",
    "read_card_png",
    "write_card_png",
]

Spec = Literal["chara_card_v2", "chara_card_v3"]
Number = int | float

V2: Spec = "chara_card_v2"
V3: Spec = "chara_card_v3"
_SPEC_VERSIONS: dict[str, str] = {V2: "2.0", V3: "3.0"}

#: Inputs larger than this (a PNG, a JSON document, a decompressed text chunk) are refused.
DEFAULT_MAX_BYTES = 20 * 1024 * 1024

#: Prepended to ``creator_notes`` of the V2 ``chara`` chunk written beside a V3 ``ccv3`` chunk (the
#: V3 spec asks for such a warning); stripped again when a card is read from a lone ``chara`` chunk.
BACKFILL_NOTE = (
    "This character card is Character Card V3, but it is loaded as a Character Card V2. "
    "Please use a Character Card V3 compatible application to use this character card properly."
)

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CARD_KEYWORDS = ("ccv3", "chara")  # preference order
_V1_FIELDS = ("name", "description", "personality", "scenario", "first_mes", "mes_example")
_TOP_KEYS = frozenset({"spec", "spec_version", "data"})


class CardError(ValueError):
    """A character card (JSON or PNG) that cannot be read; the message says what is wrong."""


# --------------------------------------------------------------------------- data model


@dataclass
class LoreEntry:
    """One lorebook entry. ``None`` means the optional field was absent from the card."""

    keys: list[str] = field(default_factory=list)
    content: str = ""
    enabled: bool = True
    insertion_order: Number = 0  # lower = earlier in the prompt
    constant: bool | None = None  # always inserted
    case_sensitive: bool | None = None  # None: matched case-insensitively
    secondary_keys: list[str] | None = None
    selective: bool | None = None  # True: a secondary key must match as well
    priority: Number | None = None  # over budget, lower priority is dropped first
    id: int | str | None = None
    comment: str | None = None
    position: str | None = None  # "before_char" | "after_char"
    name: str | None = None
    use_regex: bool = False  # V3: keys are regular expressions
    extensions: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # unknown keys, written back unchanged


@dataclass
class Lorebook:
    """A card's ``character_book``."""

    entries: list[LoreEntry] = field(default_factory=list)
    name: str | None = None
    description: str | None = None
    scan_depth: Number | None = None  # how many recent messages are scanned for keys
    token_budget: Number | None = None
    recursive_scanning: bool | None = None  # activated content may activate other entries
    extensions: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class PersonaCard:
    """A character card, whichever version it was read from."""

    name: str
    description: str = ""
    personality: str = ""
    scenario: str = ""
    first_mes: str = ""  # the greeting
    mes_example: str = ""  # sample dialogue, ``<START>``-separated blocks
    creator_notes: str = ""  # never part of a prompt
    system_prompt: str = ""
    post_history_instructions: str = ""
    alternate_greetings: list[str] = field(default_factory=list)
    character_book: Lorebook | None = None
    tags: list[str] = field(default_factory=list)
    creator: str = ""
    character_version: str = ""
    extensions: dict[str, Any] = field(default_factory=dict)
    # V3 additions
    nickname: str | None = None
    creator_notes_multilingual: dict[str, str] | None = None
    source: list[str] | None = None
    group_only_greetings: list[str] = field(default_factory=list)
    creation_date: Number | None = None
    modification_date: Number | None = None
    assets: list[dict[str, Any]] | None = None  # {type, uri, name, ext, ...}, kept as read
    # envelope
    spec: Spec = V2
    spec_version: str = "2.0"
    #: Unknown keys of the ``data`` object (for a V1 card: of the flat object).
    extra: dict[str, Any] = field(default_factory=dict)
    #: Unknown keys beside ``spec``/``spec_version``/``data`` (e.g. SillyTavern's ``avatar``, ``chat``).
    top_extra: dict[str, Any] = field(default_factory=dict)
    #: V1 fields the source also had at the top level (SillyTavern writes such copies, and a V1 card
    #: is nothing but them); export writes them there again, from the current values.
    v1_mirror: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- JSON -> card


class _Reader:
    """Takes known keys out of one JSON object, type-checked; what is left is ``rest``."""

    def __init__(self, obj: Mapping[str, Any], where: str) -> None:
        self.rest = dict(obj)
        self.where = where

    def _take(self, key: str) -> Any:
        return self.rest.pop(key, None)

    def _fail(self, key: str, what: str) -> CardError:
        return CardError(f"{self.where}.{key} must be {what}")

    def text(self, key: str, default: str = "") -> str:
        value = self._take(key)
        if value is None:
            return default
        if not isinstance(value, str):
            raise self._fail(key, "a string")
        return value

    def opt_text(self, key: str) -> str | None:
        value = self._take(key)
        if value is not None and not isinstance(value, str):
            raise self._fail(key, "a string")
        return value

    def flag(self, key: str) -> bool | None:
        value = self._take(key)
        if value is not None and not isinstance(value, bool):
            raise self._fail(key, "true or false")
        return value

    def number(self, key: str) -> Number | None:
        value = self._take(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise self._fail(key, "a number")
        return cast("Number | None", value)

    def text_list(self, key: str) -> list[str] | None:
        value = self._take(key)
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise self._fail(key, "a list of strings")
        return list(value)

    def obj(self, key: str) -> dict[str, Any] | None:
        value = self._take(key)
        if value is not None and not isinstance(value, dict):
            raise self._fail(key, "an object")
        return value


def _parse_entry(obj: Any, where: str) -> LoreEntry:
    if not isinstance(obj, dict):
        raise CardError(f"{where} must be an object")
    r = _Reader(obj, where)
    entry_id = r._take("id")
    if entry_id is not None and (isinstance(entry_id, bool) or not isinstance(entry_id, int | str)):
        raise r._fail("id", "a number or a string")
    enabled = r.flag("enabled")
    insertion_order = r.number("insertion_order")
    entry = LoreEntry(
        keys=r.text_list("keys") or [],
        content=r.text("content"),
        enabled=True if enabled is None else enabled,
        insertion_order=0 if insertion_order is None else insertion_order,
        constant=r.flag("constant"),
        case_sensitive=r.flag("case_sensitive"),
        secondary_keys=r.text_list("secondary_keys"),
        selective=r.flag("selective"),
        priority=r.number("priority"),
        id=entry_id,
        comment=r.opt_text("comment"),
        position=r.opt_text("position"),
        name=r.opt_text("name"),
        use_regex=bool(r.flag("use_regex")),
        extensions=r.obj("extensions") or {},
    )
    entry.extra = r.rest
    return entry


def _parse_book(obj: Any, where: str) -> Lorebook:
    if not isinstance(obj, dict):
        raise CardError(f"{where} must be an object")
    r = _Reader(obj, where)
    raw_entries = r._take("entries")
    if raw_entries is None:
        raw_entries = []
    if not isinstance(raw_entries, list):
        raise r._fail("entries", "a list")
    book = Lorebook(
        entries=[_parse_entry(item, f"{where}.entries[{i}]") for i, item in enumerate(raw_entries)],
        name=r.opt_text("name"),
        description=r.opt_text("description"),
        scan_depth=r.number("scan_depth"),
        token_budget=r.number("token_budget"),
        recursive_scanning=r.flag("recursive_scanning"),
        extensions=r.obj("extensions") or {},
    )
    book.extra = r.rest
    return book


def _parse_data(obj: Mapping[str, Any], where: str, spec: Spec, spec_version: str) -> PersonaCard:
    r = _Reader(obj, where)
    name = r.text("name")
    if not name.strip():
        raise CardError(f"card has no name ({where}.name is missing or empty)")
    book = r._take("character_book")
    multilingual = r.obj("creator_notes_multilingual")
    if multilingual is not None and not all(isinstance(v, str) for v in multilingual.values()):
        raise r._fail("creator_notes_multilingual", "an object of strings")
    assets = r._take("assets")
    if assets is not None and (
        not isinstance(assets, list) or not all(isinstance(item, dict) for item in assets)
    ):
        raise r._fail("assets", "a list of objects")
    card = PersonaCard(
        name=name,
        description=r.text("description"),
        personality=r.text("personality"),
        scenario=r.text("scenario"),
        first_mes=r.text("first_mes"),
        mes_example=r.text("mes_example"),
        creator_notes=r.text("creator_notes"),
        system_prompt=r.text("system_prompt"),
        post_history_instructions=r.text("post_history_instructions"),
        alternate_greetings=r.text_list("alternate_greetings") or [],
        character_book=None if book is None else _parse_book(book, f"{where}.character_book"),
        tags=r.text_list("tags") or [],
        creator=r.text("creator"),
        character_version=r.text("character_version"),
        extensions=r.obj("extensions") or {},
        nickname=r.opt_text("nickname"),
        creator_notes_multilingual=multilingual,
        source=r.text_list("source"),
        group_only_greetings=r.text_list("group_only_greetings") or [],
        creation_date=r.number("creation_date"),
        modification_date=r.number("modification_date"),
        assets=assets,
        spec=spec,
        spec_version=spec_version,
    )
    card.extra = r.rest
    return card


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _decode_json(data: bytes | str, max_bytes: int) -> Any:
    size = len(data) if isinstance(data, bytes) else len(data.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise CardError(f"card JSON is {size} bytes, over the {max_bytes}-byte limit")
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise CardError(f"card JSON is not valid UTF-8: {exc}") from exc
    try:
        return json.loads(data.lstrip("\ufeff"), parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise CardError(f"card is not valid JSON: {exc}") from exc


def parse_card_json(
    data: bytes | str | Mapping[str, Any], *, max_bytes: int = DEFAULT_MAX_BYTES
) -> PersonaCard:
    """A card from its JSON (text, bytes or an already decoded object): V1, V2 or V3.

    A V1 card is upgraded (``spec`` becomes ``chara_card_v2``); an object without ``spec`` but
    with a ``data`` object is read as V2. Raises :class:`CardError`.
    """
    obj = _decode_json(data, max_bytes) if isinstance(data, bytes | str) else copy.deepcopy(data)
    if not isinstance(obj, Mapping):
        raise CardError(f"card JSON must be an object, not {type(obj).__name__}")
    raw_spec = obj.get("spec")
    if raw_spec is None and not isinstance(obj.get("data"), Mapping):  # V1: a flat object
        card = _parse_data(obj, "card", V2, _SPEC_VERSIONS[V2])
        card.top_extra, card.extra = card.extra, {}
        card.v1_mirror = [key for key in _V1_FIELDS if key in obj]
        return card
    spec = V2 if raw_spec is None else raw_spec
    if spec not in _SPEC_VERSIONS:
        raise CardError(f"unsupported card spec {spec!r} (expected 'chara_card_v2' or 'chara_card_v3')")
    spec = cast(Spec, spec)
    inner = obj.get("data")
    if not isinstance(inner, Mapping):
        raise CardError(f"{spec} card has no 'data' object")
    version = obj.get("spec_version")
    if version is None:
        version = _SPEC_VERSIONS[spec]
    if isinstance(version, int | float) and not isinstance(version, bool):
        version = str(version)
    if not isinstance(version, str):
        raise CardError("card.spec_version must be a string")
    card = _parse_data(inner, "data", spec, version)
    card.top_extra = {k: v for k, v in obj.items() if k not in _TOP_KEYS and k not in _V1_FIELDS}
    card.v1_mirror = [key for key in _V1_FIELDS if key in obj]
    return card


# --------------------------------------------------------------------------- card -> JSON


def _put(out: dict[str, Any], key: str, value: Any) -> None:
    if value is not None:
        out[key] = copy.deepcopy(value)


def _with_extra(known: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    for key, value in extra.items():
        known.setdefault(key, copy.deepcopy(value))
    return known


def _entry_json(entry: LoreEntry, spec: Spec) -> dict[str, Any]:
    out: dict[str, Any] = {
        "keys": list(entry.keys),
        "content": entry.content,
        "extensions": copy.deepcopy(entry.extensions),
        "enabled": entry.enabled,
        "insertion_order": entry.insertion_order,
    }
    if spec == V3 or entry.use_regex:
        out["use_regex"] = entry.use_regex
    for key in ("case_sensitive", "constant", "name", "priority", "id", "comment", "selective"):
        _put(out, key, getattr(entry, key))
    _put(out, "secondary_keys", entry.secondary_keys)
    _put(out, "position", entry.position)
    return _with_extra(out, entry.extra)


def _book_json(book: Lorebook, spec: Spec) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in ("name", "description", "scan_depth", "token_budget", "recursive_scanning"):
        _put(out, key, getattr(book, key))
    out["extensions"] = copy.deepcopy(book.extensions)
    out["entries"] = [_entry_json(entry, spec) for entry in book.entries]
    return _with_extra(out, book.extra)


def card_to_json(card: PersonaCard, spec: Spec | None = None) -> dict[str, Any]:
    """The card as a V2 or V3 JSON object (default: the spec it was read as).

    Unknown keys and ``extensions`` are written back unchanged. V3-only fields that are set are
    written in a V2 export too (V2 readers must keep unknown ``data`` keys), so nothing is lost.
    """
    spec = card.spec if spec is None else spec
    if spec not in _SPEC_VERSIONS:
        raise CardError(f"unsupported card spec {spec!r}")
    data: dict[str, Any] = {
        "name": card.name,
        "description": card.description,
        "personality": card.personality,
        "scenario": card.scenario,
        "first_mes": card.first_mes,
        "mes_example": card.mes_example,
        "creator_notes": card.creator_notes,
        "system_prompt": card.system_prompt,
        "post_history_instructions": card.post_history_instructions,
        "alternate_greetings": list(card.alternate_greetings),
    }
    if card.character_book is not None:
        data["character_book"] = _book_json(card.character_book, spec)
    data["tags"] = list(card.tags)
    data["creator"] = card.creator
    data["character_version"] = card.character_version
    data["extensions"] = copy.deepcopy(card.extensions)
    if spec == V3 or card.group_only_greetings:
        data["group_only_greetings"] = list(card.group_only_greetings)
    for key in ("assets", "nickname", "creator_notes_multilingual", "source"):
        _put(data, key, getattr(card, key))
    _put(data, "creation_date", card.creation_date)
    _put(data, "modification_date", card.modification_date)
    version = card.spec_version if spec == card.spec else _SPEC_VERSIONS[spec]
    out: dict[str, Any] = {key: data[key] for key in card.v1_mirror if key in data}
    out.update({"spec": spec, "spec_version": version, "data": _with_extra(data, card.extra)})
    return _with_extra(out, card.top_extra)


# --------------------------------------------------------------------------- PNG


def _chunks(png: bytes) -> list[tuple[bytes, bytes]]:
    """(type, data) of each chunk up to and including IEND; CRCs are not checked."""
    if not png.startswith(_PNG_SIGNATURE):
        raise CardError("not a PNG file (bad signature)")
    chunks: list[tuple[bytes, bytes]] = []
    pos = len(_PNG_SIGNATURE)
    while True:
        if pos + 8 > len(png):
            raise CardError("truncated PNG (no IEND chunk)")
        (length,) = struct.unpack(">I", png[pos : pos + 4])
        kind = png[pos + 4 : pos + 8]
        end = pos + 8 + length + 4
        if end > len(png):
            raise CardError(f"truncated PNG (chunk {kind!r} runs past the end of the file)")
        chunks.append((kind, png[pos + 8 : pos + 8 + length]))
        pos = end
        if kind == b"IEND":
            return chunks


def _inflate(blob: bytes, limit: int) -> bytes:
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(blob, limit + 1)
    except zlib.error as exc:
        raise CardError(f"corrupt compressed PNG text chunk: {exc}") from exc
    if len(out) > limit:
        raise CardError(f"compressed PNG text chunk inflates past the {limit}-byte limit")
    return out


def _text_chunk(kind: bytes, body: bytes, limit: int) -> tuple[str, str] | None:
    """(keyword, text) of a tEXt/zTXt/iTXt chunk, else None."""
    if kind not in (b"tEXt", b"zTXt", b"iTXt") or b"\x00" not in body:
        return None
    raw_key, rest = body.split(b"\x00", 1)
    keyword = raw_key.decode("latin-1")
    if kind == b"tEXt":
        return keyword, rest.decode("latin-1")
    if kind == b"zTXt":
        return keyword, _inflate(rest[1:], limit).decode("latin-1")
    if len(rest) < 2:
        return None
    compressed, rest = rest[0], rest[2:]
    parts = rest.split(b"\x00", 2)  # language tag, translated keyword, text
    if len(parts) < 3:
        return None
    text = _inflate(parts[2], limit) if compressed else parts[2]
    try:
        return keyword, text.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CardError(f"PNG iTXt chunk {keyword!r} is not valid UTF-8") from exc


def _card_from_text(keyword: str, text: str, max_bytes: int) -> PersonaCard:
    if text.lstrip().startswith("{"):  # a few tools store the JSON itself
        return parse_card_json(text, max_bytes=max_bytes)
    payload = "".join(text.split())
    try:
        raw = base64.b64decode(payload + "=" * (-len(payload) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise CardError(f"PNG {keyword!r} chunk is not valid base64: {exc}") from exc
    return parse_card_json(raw, max_bytes=max_bytes)


def read_card_png(data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> PersonaCard:
    """The card embedded in a PNG: its ``ccv3`` chunk if it has one, else its ``chara`` chunk.

    Raises :class:`CardError` (not a PNG, no card chunk, bad base64/JSON, no name, too large).
    """
    if len(data) > max_bytes:
        raise CardError(f"PNG is {len(data)} bytes, over the {max_bytes}-byte limit")
    found: dict[str, str] = {}
    for kind, body in _chunks(data):
        if kind not in (b"tEXt", b"zTXt", b"iTXt"):
            continue
        keyword = body.split(b"\x00", 1)[0].decode("latin-1").lower()
        if keyword in _CARD_KEYWORDS and keyword not in found:
            text = _text_chunk(kind, body, max_bytes)
            if text is not None:
                found[keyword] = text[1]
    for keyword in _CARD_KEYWORDS:
        if keyword in found:
            card = _card_from_text(keyword, found[keyword], max_bytes)
            if keyword == "chara" and card.creator_notes.startswith(BACKFILL_NOTE):
                card.creator_notes = card.creator_notes[len(BACKFILL_NOTE) :].lstrip("\n")
            return card
    raise CardError("PNG has no character card (no 'chara' or 'ccv3' text chunk)")


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def placeholder_png() -> bytes:
    """A 1x1 transparent RGBA PNG, the image of a card that has none."""
    header = struct.pack(">IIBBBBB", 1, 1, 8, 6, 0, 0, 0)
    pixels = zlib.compress(b"\x00" + b"\x00\x00\x00\x00")
    return _PNG_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", pixels) + _chunk(b"IEND", b"")


def _text_payload(obj: dict[str, Any]) -> bytes:
    return base64.b64encode(json.dumps(obj, ensure_ascii=False).encode("utf-8"))


def write_card_png(
    card: PersonaCard,
    image: bytes | None = None,
    spec: Spec | None = None,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> bytes:
    """``image`` (default: :func:`placeholder_png`) with the card embedded as PNG text chunks.

    Any ``chara``/``ccv3`` chunks already in the image are replaced. A V2 card gets a ``chara``
    chunk; a V3 card gets ``ccv3`` plus a V2 ``chara`` chunk for older readers, whose
    ``creator_notes`` starts with :data:`BACKFILL_NOTE`.
    """
    spec = card.spec if spec is None else spec
    png = placeholder_png() if image is None else image
    if len(png) > max_bytes:
        raise CardError(f"PNG is {len(png)} bytes, over the {max_bytes}-byte limit")
    texts: list[tuple[str, bytes]] = []
    if spec == V3:
        texts.append(("ccv3", _text_payload(card_to_json(card, V3))))
        backfill = card_to_json(card, V2)
        notes = backfill["data"]["creator_notes"]
        backfill["data"]["creator_notes"] = f"{BACKFILL_NOTE}\n\n{notes}" if notes else BACKFILL_NOTE
        texts.append(("chara", _text_payload(backfill)))
    else:
        texts.append(("chara", _text_payload(card_to_json(card, spec))))
    out = bytearray(_PNG_SIGNATURE)
    for kind, body in _chunks(png):
        if kind in (b"tEXt", b"zTXt", b"iTXt"):
            keyword = body.split(b"\x00", 1)[0].decode("latin-1").lower()
            if keyword in _CARD_KEYWORDS:
                continue
        if kind == b"IEND":
            for keyword, payload in texts:
                out += _chunk(b"tEXt", keyword.encode("latin-1") + b"\x00" + payload)
        out += _chunk(kind, body)
    return bytes(out)


# --------------------------------------------------------------------------- lorebook scan


def _regex(key: str, case_sensitive: bool) -> re.Pattern[str] | None:
    """``/pattern/flags`` or a bare pattern; None if it does not compile."""
    flags = 0 if case_sensitive else re.IGNORECASE
    match = re.fullmatch(r"/(.*)/([a-z]*)", key, re.DOTALL)
    pattern = key
    if match:
        pattern = match.group(1)
        for letter, flag in (("i", re.IGNORECASE), ("m", re.MULTILINE), ("s", re.DOTALL)):
            if letter in match.group(2):
                flags |= flag
    try:
        return re.compile(pattern, flags)
    except re.error:
        return None


def _any_key(keys: Sequence[str], text: str, folded: str, entry: LoreEntry) -> bool:
    case_sensitive = bool(entry.case_sensitive)
    for key in keys:
        if not key.strip():
            continue
        if entry.use_regex:
            pattern = _regex(key, case_sensitive)
            if pattern is not None and pattern.search(text):
                return True
        elif (key in text) if case_sensitive else (key.casefold() in folded):
            return True
    return False


def _matches(entry: LoreEntry, text: str, allow_regex: bool) -> bool:
    if entry.use_regex and not allow_regex:
        return False
    if entry.constant and not entry.use_regex:  # V3: constant is ignored on regex entries
        return True
    folded = text.casefold()
    if not _any_key(entry.keys, text, folded, entry):
        return False
    if entry.selective and entry.secondary_keys and not entry.use_regex:
        return _any_key(entry.secondary_keys, text, folded, entry)
    return True


def active_lore(
    card: PersonaCard,
    recent_text: str | Sequence[str],
    *,
    limit: int | None = None,
    token_counter: Callable[[str], int] | None = None,
    allow_regex: bool = False,
) -> list[LoreEntry]:
    """The lorebook entries to inject for the recent turns, in ``insertion_order``.

    An entry is active when it is enabled, has content, and is ``constant`` or has a key occurring
    in ``recent_text`` (substring match, case-insensitive unless ``case_sensitive``); a
    ``selective`` entry with ``secondary_keys`` also needs one of those. ``recent_text`` may be a
    list of turns, oldest first; then only the book's last ``scan_depth`` turns are scanned. With
    ``recursive_scanning`` the content of active entries can activate further entries.

    ``limit`` caps the count and ``token_counter`` (with the book's ``token_budget``) the size;
    entries with lower ``priority`` (absent = 0), then higher ``insertion_order``, go first.
    ``use_regex`` entries are skipped unless ``allow_regex`` (card patterns are untrusted input:
    Python's ``re`` has no timeout).
    """
    book = card.character_book
    if book is None:
        return []
    if isinstance(recent_text, str):
        text = recent_text
    else:
        turns = list(recent_text)
        if book.scan_depth is not None:
            depth = max(int(book.scan_depth), 0)
            turns = turns[len(turns) - depth :] if depth else []
        text = "\n".join(turns)
    candidates = [(i, e) for i, e in enumerate(book.entries) if e.enabled and e.content.strip()]
    active: dict[int, LoreEntry] = {}
    while True:  # one pass, or more while recursive scanning finds new entries
        scanned = "\n".join([text, *(e.content for e in active.values())]) if active else text
        found = {i: e for i, e in candidates if i not in active and _matches(e, scanned, allow_regex)}
        active.update(found)
        if not found or not book.recursive_scanning:
            break
    ranked = sorted(active.items(), key=lambda ie: (-(ie[1].priority or 0), ie[1].insertion_order, ie[0]))
    if limit is not None:
        ranked = ranked[: max(limit, 0)]
    if token_counter is not None and book.token_budget is not None:
        kept: list[tuple[int, LoreEntry]] = []
        used = 0
        for index, entry in ranked:
            cost = token_counter(entry.content)
            if used + cost <= book.token_budget:
                kept.append((index, entry))
                used += cost
        ranked = kept
    return [entry for _, entry in sorted(ranked, key=lambda ie: (ie[1].insertion_order, ie[0]))]


# --------------------------------------------------------------------------- ragnet persona view


def example_lines(mes_example: str) -> list[str]:
    """The sample dialogue as lines: ``<START>`` separators and blank lines dropped."""
    lines = (line.strip() for line in mes_example.splitlines())
    return [line for line in lines if line and line.upper() != "<START>"]


def persona_fields(card: PersonaCard) -> dict[str, Any]:
    """The card in ragnet's persona terms (see docs/persona-cards.md)."""
    return {
        "name": card.name,
        "nickname": card.nickname,
        "profile": card.description,
        "personality": card.personality,
        "scenario": card.scenario,
        "greeting": card.first_mes,
        "alternate_greetings": list(card.alternate_greetings),
        "sample_lines": example_lines(card.mes_example),
        "rules": [rule for rule in (card.system_prompt, card.post_history_instructions) if rule.strip()],
        "system_prompt": card.system_prompt,
        "post_history_instructions": card.post_history_instructions,
        "lorebook": card.character_book,
    }
