"""Character Card V1/V2/V3 codec (agents/character_card.py): hermetic, PNGs built in code."""

from __future__ import annotations

import base64
import io
import json
import struct
import zlib
from typing import Any

import pytest

from agents.character_card import (
    BACKFILL_NOTE,
    CardError,
    Lorebook,
    LoreEntry,
    PersonaCard,
    active_lore,
    card_to_json,
    example_lines,
    parse_card_json,
    persona_fields,
    placeholder_png,
    read_card_png,
    write_card_png,
)

# --------------------------------------------------------------------------- fixtures

V1_CARD = {
    "name": "Aria",
    "description": "A lighthouse keeper.",
    "personality": "calm, dry humour",
    "scenario": "A stormy night.",
    "first_mes": "Come in out of the rain.",
    "mes_example": "<START>\n{{user}}: Who are you?\n{{char}}: The keeper.\n",
    "avatar": "none",  # unknown V1-era key
}


def v2_card() -> dict[str, Any]:
    return {
        "spec": "chara_card_v2",
        "spec_version": "2.0",
        "x_top_level": {"kept": True},
        "data": {
            "name": "Aria",
            "description": "A lighthouse keeper.",
            "personality": "calm",
            "scenario": "A stormy night.",
            "first_mes": "Come in.",
            "mes_example": "<START>\n{{user}}: Hi\n{{char}}: Hello.",
            "creator_notes": "Made for testing.",
            "system_prompt": "{{original}} Stay in character.",
            "post_history_instructions": "Be brief.",
            "alternate_greetings": ["Oh, a visitor.", "Shut the door!"],
            "tags": ["fantasy", "sea"],
            "creator": "tester",
            "character_version": "1.2",
            "extensions": {
                "depth_prompt": {"prompt": "Aria smells of salt.", "depth": 4, "role": "system"},
                "talkativeness": "0.5",
            },
            "x_data_level": [1, 2, 3],
            "character_book": {
                "name": "Coast",
                "scan_depth": 3,
                "token_budget": 500,
                "recursive_scanning": False,
                "extensions": {"world": "coast"},
                "x_book_level": "kept",
                "entries": [
                    {
                        "keys": ["lighthouse", "lamp"],
                        "content": "The lamp is whale-oil.",
                        "extensions": {"probability": 100},
                        "enabled": True,
                        "insertion_order": 10,
                        "case_sensitive": False,
                        "id": 1,
                        "comment": "lamp",
                        "position": "before_char",
                        "x_entry_level": {"sticky": 2},
                    },
                    {
                        "keys": ["storm"],
                        "content": "Storms come from the west.",
                        "extensions": {},
                        "enabled": True,
                        "insertion_order": 5,
                        "constant": True,
                        "priority": 3,
                        "name": "weather",
                    },
                ],
            },
        },
    }


def v3_card() -> dict[str, Any]:
    card = v2_card()
    card["spec"] = "chara_card_v3"
    card["spec_version"] = "3.0"
    data = card["data"]
    data["nickname"] = "Ari"
    data["creator_notes_multilingual"] = {"en": "Made for testing.", "fr": "Pour les tests."}
    data["source"] = ["https://example.invalid/aria"]
    data["group_only_greetings"] = ["Hello, all of you."]
    data["creation_date"] = 1_700_000_000
    data["modification_date"] = 1_700_000_500
    data["assets"] = [{"type": "icon", "uri": "ccdefault:", "name": "main", "ext": "png", "x": 1}]
    for entry in data["character_book"]["entries"]:
        entry["use_regex"] = False
    return card


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def build_png(*text_chunks: tuple[bytes, bytes], width: int = 2, height: int = 2) -> bytes:
    """A small RGB PNG with the given (chunk type, body) text chunks before IDAT."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    raw = b"".join(b"\x00" + b"\x10\x20\x30" * width for _ in range(height))
    chunks = [_chunk(b"IHDR", ihdr)]
    chunks += [_chunk(kind, body) for kind, body in text_chunks]
    chunks += [_chunk(b"IDAT", zlib.compress(raw)), _chunk(b"IEND", b"")]
    return b"\x89PNG\r\n\x1a\n" + b"".join(chunks)


def b64(obj: Any) -> bytes:
    return base64.b64encode(json.dumps(obj).encode("utf-8"))


def text_chunk(keyword: str, obj: Any) -> tuple[bytes, bytes]:
    return b"tEXt", keyword.encode() + b"\x00" + b64(obj)


def chunk_keywords(png: bytes) -> list[str]:
    out, pos = [], 8
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos : pos + 4])
        kind, body = png[pos + 4 : pos + 8], png[pos + 8 : pos + 8 + length]
        if kind == b"tEXt":
            out.append(body.split(b"\x00", 1)[0].decode())
        pos += 12 + length
    return out


# --------------------------------------------------------------------------- JSON


def test_v1_is_upgraded() -> None:
    card = parse_card_json(json.dumps(V1_CARD))
    assert card.name == "Aria" and card.first_mes == "Come in out of the rain."
    assert card.spec == "chara_card_v2" and card.spec_version == "2.0"
    assert card.top_extra == {"avatar": "none"} and card.extra == {}
    assert card.alternate_greetings == [] and card.extensions == {} and card.character_book is None
    out = card_to_json(card)
    assert out["spec"] == "chara_card_v2" and out["data"]["name"] == "Aria"
    assert out["name"] == "Aria" and out["avatar"] == "none"  # V1 readers still find their fields
    assert parse_card_json(out) == card


def test_v2_fields() -> None:
    card = parse_card_json(json.dumps(v2_card()).encode())
    assert card.spec == "chara_card_v2"
    assert card.system_prompt.startswith("{{original}}")
    assert card.alternate_greetings == ["Oh, a visitor.", "Shut the door!"]
    assert card.tags == ["fantasy", "sea"] and card.creator == "tester" and card.character_version == "1.2"
    assert card.extensions["depth_prompt"]["depth"] == 4
    book = card.character_book
    assert book is not None and book.name == "Coast" and book.scan_depth == 3 and book.token_budget == 500
    lamp, storm = book.entries
    assert lamp.keys == ["lighthouse", "lamp"] and lamp.id == 1 and lamp.position == "before_char"
    assert lamp.constant is None and lamp.selective is None and lamp.secondary_keys is None
    assert storm.constant is True and storm.priority == 3 and storm.name == "weather"
    assert card.nickname is None and card.assets is None and card.group_only_greetings == []


def test_v3_fields() -> None:
    card = parse_card_json(v3_card())
    assert card.spec == "chara_card_v3" and card.spec_version == "3.0"
    assert card.nickname == "Ari" and card.source == ["https://example.invalid/aria"]
    assert card.creator_notes_multilingual == {"en": "Made for testing.", "fr": "Pour les tests."}
    assert card.group_only_greetings == ["Hello, all of you."]
    assert card.creation_date == 1_700_000_000 and card.modification_date == 1_700_000_500
    assert card.assets == [{"type": "icon", "uri": "ccdefault:", "name": "main", "ext": "png", "x": 1}]
    assert card.character_book is not None and card.character_book.entries[0].use_regex is False


def test_spec_without_data_field_defaults() -> None:
    card = parse_card_json({"data": {"name": "Bo"}})  # no spec: read as V2
    assert card.spec == "chara_card_v2" and card.name == "Bo"
    v3 = parse_card_json({"spec": "chara_card_v3", "data": {"name": "Bo"}})
    assert v3.spec_version == "3.0"
    assert (
        parse_card_json({"spec": "chara_card_v2", "spec_version": None, "data": {"name": "Bo"}}).spec_version
        == "2.0"
    )
    future = parse_card_json({"spec": "chara_card_v3", "spec_version": "3.1", "data": {"name": "Bo"}})
    assert future.spec_version == "3.1" and card_to_json(future)["spec_version"] == "3.1"


@pytest.mark.parametrize("make", [v2_card, v3_card])
def test_round_trip_keeps_unknown_fields_at_every_level(make: Any) -> None:
    source = make()
    card = parse_card_json(source)
    assert card.top_extra == {"x_top_level": {"kept": True}}
    assert card.extra == {"x_data_level": [1, 2, 3]}
    assert card.character_book is not None
    assert card.character_book.extra == {"x_book_level": "kept"}
    assert card.character_book.entries[0].extra == {"x_entry_level": {"sticky": 2}}
    out = card_to_json(card)
    assert out["x_top_level"] == {"kept": True}
    assert out["data"]["x_data_level"] == [1, 2, 3]
    assert out["data"]["extensions"]["depth_prompt"] == source["data"]["extensions"]["depth_prompt"]
    assert out["data"]["character_book"]["x_book_level"] == "kept"
    assert out["data"]["character_book"]["entries"][0]["x_entry_level"] == {"sticky": 2}
    assert out == source  # nothing added, nothing lost
    assert parse_card_json(json.dumps(out)) == card


def test_export_does_not_alias_the_card() -> None:
    card = parse_card_json(v2_card())
    out = card_to_json(card)
    out["data"]["extensions"]["depth_prompt"]["depth"] = 99
    out["data"]["x_data_level"].append(4)
    assert card.extensions["depth_prompt"]["depth"] == 4 and card.extra["x_data_level"] == [1, 2, 3]


def test_v3_card_exported_as_v2_loses_nothing() -> None:
    card = parse_card_json(v3_card())
    v2 = card_to_json(card, "chara_card_v2")
    assert v2["spec"] == "chara_card_v2" and v2["spec_version"] == "2.0"
    assert v2["data"]["nickname"] == "Ari"
    again = parse_card_json(v2)
    assert again.nickname == "Ari" and again.assets == card.assets
    assert again.group_only_greetings == card.group_only_greetings


def test_v2_card_exported_as_v3_has_required_fields() -> None:
    out = card_to_json(parse_card_json(v2_card()), "chara_card_v3")
    assert out["spec"] == "chara_card_v3" and out["spec_version"] == "3.0"
    assert out["data"]["group_only_greetings"] == []
    assert all(entry["use_regex"] is False for entry in out["data"]["character_book"]["entries"])


def test_sillytavern_top_level_copies_follow_edits() -> None:
    source = v2_card()
    source.update({"name": "Aria", "description": "stale", "chat": "Aria - 2024", "create_date": "x"})
    card = parse_card_json(source)
    assert card.v1_mirror == ["name", "description"]
    assert card.top_extra == {"x_top_level": {"kept": True}, "chat": "Aria - 2024", "create_date": "x"}
    card.name = "Aria II"
    out = card_to_json(card)
    assert (
        out["name"] == "Aria II" and out["description"] == card.description and out["chat"] == "Aria - 2024"
    )
    assert parse_card_json(out) == card


# --------------------------------------------------------------------------- PNG


def test_read_v2_png() -> None:
    card = read_card_png(build_png(text_chunk("chara", v2_card())))
    assert card == parse_card_json(v2_card())


def test_v3_chunk_is_preferred_over_v2() -> None:
    v2 = v2_card()
    v2["data"]["name"] = "Old Aria"
    png = build_png(text_chunk("chara", v2), text_chunk("ccv3", v3_card()))
    card = read_card_png(png)
    assert card.spec == "chara_card_v3" and card.name == "Aria" and card.nickname == "Ari"


def test_ztxt_and_itxt_chunks_are_read() -> None:
    payload = b64(v2_card())
    ztxt = (b"zTXt", b"chara\x00\x00" + zlib.compress(payload))
    assert read_card_png(build_png(ztxt)).name == "Aria"
    itxt = (b"iTXt", b"ccv3\x00\x01\x00en\x00\x00" + zlib.compress(b64(v3_card())))
    assert read_card_png(build_png(itxt)).spec == "chara_card_v3"
    plain = (b"iTXt", b"chara\x00\x00\x00\x00\x00" + payload)
    assert read_card_png(build_png(plain)).name == "Aria"


def test_write_v2_png_round_trip() -> None:
    card = parse_card_json(v2_card())
    png = write_card_png(card)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert chunk_keywords(png) == ["chara"]
    assert read_card_png(png) == card


def test_write_v3_png_writes_both_chunks() -> None:
    card = parse_card_json(v3_card())
    png = write_card_png(card, spec="chara_card_v3")
    assert sorted(chunk_keywords(png)) == ["ccv3", "chara"]
    assert read_card_png(png) == card
    only_v2 = build_png((b"tEXt", _text_body(png, "chara")))
    backfilled = read_card_png(only_v2)  # what a V2-only reader would get, note trimmed on import
    assert backfilled.spec == "chara_card_v2" and backfilled.creator_notes == card.creator_notes
    raw = json.loads(base64.b64decode(_text_body(png, "chara").split(b"\x00", 1)[1]))
    assert raw["data"]["creator_notes"].startswith(BACKFILL_NOTE)


def _text_body(png: bytes, keyword: str) -> bytes:
    pos = 8
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos : pos + 4])
        kind, body = png[pos + 4 : pos + 8], png[pos + 8 : pos + 8 + length]
        if kind == b"tEXt" and body.startswith(keyword.encode() + b"\x00"):
            return body
        pos += 12 + length
    raise AssertionError(keyword)


def test_write_replaces_existing_card_chunks_and_keeps_the_image() -> None:
    old = v3_card()
    old["data"]["name"] = "Stale"
    image = build_png(text_chunk("ccv3", old), text_chunk("chara", old), (b"tEXt", b"Comment\x00hello"))
    card = parse_card_json(v2_card())
    png = write_card_png(card, image)
    assert chunk_keywords(png) == ["Comment", "chara"]  # the stale ccv3 would otherwise win
    assert read_card_png(png) == card
    assert b"IDAT" in png and png.endswith(_chunk(b"IEND", b""))


def test_pillow_opens_written_png() -> None:
    image_module = pytest.importorskip("PIL.Image")
    card = parse_card_json(v3_card())
    for png in (write_card_png(card, spec="chara_card_v3"), placeholder_png()):
        with image_module.open(io.BytesIO(png)) as image:
            image.load()
            assert image.size == (1, 1)
            if "ccv3" in image.info:
                assert json.loads(base64.b64decode(image.info["ccv3"]))["data"]["name"] == "Aria"
    buffer = io.BytesIO()
    image_module.new("RGB", (8, 8), "teal").save(buffer, format="PNG")
    assert read_card_png(write_card_png(card, buffer.getvalue())) == card


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"GIF89a not a png", "not a PNG"),
        (build_png((b"tEXt", b"Comment\x00hi")), "no character card"),
        (build_png((b"tEXt", b"chara\x00@@not base64!!")), "not valid base64"),
        (build_png((b"tEXt", b"chara\x00" + base64.b64encode(b"{not json"))), "not valid JSON"),
        (build_png(text_chunk("chara", {"spec": "chara_card_v2", "data": {"name": ""}})), "no name"),
        (build_png(text_chunk("chara", ["a", "list"])), "must be an object"),
        (build_png(text_chunk("chara", {"spec": "lorebook_v3", "data": {}})), "unsupported card spec"),
        (build_png()[:-20], "truncated PNG"),
    ],
)
def test_png_errors(data: bytes, message: str) -> None:
    with pytest.raises(CardError, match=message):
        read_card_png(data)


def test_size_limits() -> None:
    png = build_png(text_chunk("chara", v2_card()))
    with pytest.raises(CardError, match="over the 100-byte limit"):
        read_card_png(png, max_bytes=100)
    with pytest.raises(CardError, match="over the 10-byte limit"):
        parse_card_json(json.dumps(v2_card()), max_bytes=10)
    bomb = (b"zTXt", b"chara\x00\x00" + zlib.compress(b"A" * 5000))
    with pytest.raises(CardError, match="inflates past"):
        read_card_png(build_png(bomb), max_bytes=1000)
    with pytest.raises(CardError, match="over the 10-byte limit"):
        write_card_png(parse_card_json(v2_card()), png, max_bytes=10)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("[1, 2]", "must be an object, not list"),
        ('"text"', "must be an object, not str"),
        ("{", "not valid JSON"),
        ('{"name": "A", "x": NaN}', "NaN is not a JSON number"),
        (b"\xff\xfe{}", "not valid UTF-8"),
        ({"description": "no name"}, "no name"),
        ({"spec": "chara_card_v2"}, "has no 'data' object"),
        (
            {"spec": "chara_card_v2", "data": {"name": "A", "tags": "x"}},
            r"data\.tags must be a list of strings",
        ),
        ({"spec": "chara_card_v2", "data": {"name": 5}}, r"data\.name must be a string"),
        (
            {"data": {"name": "A", "character_book": {"entries": [{"keys": ["k"], "enabled": "yes"}]}}},
            r"data\.character_book\.entries\[0\]\.enabled must be true or false",
        ),
        ({"data": {"name": "A", "character_book": {"entries": {}}}}, r"entries must be a list"),
    ],
)
def test_json_errors(data: Any, message: str) -> None:
    with pytest.raises(CardError, match=message):
        parse_card_json(data)


def test_card_error_is_a_value_error() -> None:
    assert issubclass(CardError, ValueError)
    with pytest.raises(ValueError):
        write_card_png(PersonaCard(name="A"), b"not a png")


# --------------------------------------------------------------------------- lorebook


def book_card(*entries: LoreEntry, **book: Any) -> PersonaCard:
    return PersonaCard(name="Aria", character_book=Lorebook(entries=list(entries), **book))


def test_lore_constant_and_keys_in_insertion_order() -> None:
    card = parse_card_json(v2_card())
    assert [e.comment or e.name for e in active_lore(card, "Nothing relevant")] == ["weather"]
    hits = active_lore(card, "Is the LAMP lit?")
    assert [e.content for e in hits] == ["Storms come from the west.", "The lamp is whale-oil."]


def test_lore_disabled_and_empty_entries_never_match() -> None:
    card = book_card(
        LoreEntry(keys=["ship"], content="A ship.", enabled=False),
        LoreEntry(keys=["ship"], content="", constant=True),
        LoreEntry(content="Always.", constant=True, enabled=False),
    )
    assert active_lore(card, "a ship!") == []


def test_lore_case_sensitivity() -> None:
    card = book_card(LoreEntry(keys=["Mara"], content="Mara is the cook.", case_sensitive=True))
    assert active_lore(card, "where is mara") == []
    assert len(active_lore(card, "where is Mara")) == 1
    insensitive = book_card(LoreEntry(keys=["Mara"], content="Mara is the cook."))
    assert len(active_lore(insensitive, "WHERE IS MARA")) == 1


def test_lore_selective_needs_a_secondary_key() -> None:
    entry = LoreEntry(keys=["key"], content="The brass key.", selective=True, secondary_keys=["door", "lock"])
    card = book_card(entry)
    assert active_lore(card, "I found a key") == []
    assert active_lore(card, "a key for the LOCK") == [entry]
    ignored = LoreEntry(keys=["key"], content="x", selective=False, secondary_keys=["door"])
    assert active_lore(book_card(ignored), "a key") == [ignored]
    no_secondary = LoreEntry(keys=["key"], content="x", selective=True, secondary_keys=[])
    assert active_lore(book_card(no_secondary), "a key") == [no_secondary]


def test_lore_scan_depth_limit_budget_and_recursion() -> None:
    old = LoreEntry(keys=["harbour"], content="The harbour froze.", insertion_order=1)
    new = LoreEntry(keys=["bell"], content="The bell rings at dawn.", insertion_order=2, priority=5)
    card = book_card(old, new, scan_depth=1)
    turns = ["We sailed from the harbour.", "Hear the bell?"]
    assert active_lore(card, turns) == [new]  # only the last turn is scanned
    assert active_lore(card, "harbour bell") == [old, new]
    assert active_lore(card, "harbour bell", limit=1) == [new]  # higher priority kept
    card.character_book.token_budget = 5  # type: ignore[union-attr]
    assert active_lore(card, "harbour bell", token_counter=lambda s: len(s.split())) == [new]
    chain = book_card(
        LoreEntry(keys=["dawn"], content="Dawn brings the gulls.", insertion_order=2),
        LoreEntry(keys=["bell"], content="The bell rings at dawn.", insertion_order=1),
        recursive_scanning=True,
    )
    assert [e.insertion_order for e in active_lore(chain, "the bell")] == [1, 2]
    chain.character_book.recursive_scanning = False  # type: ignore[union-attr]
    assert [e.insertion_order for e in active_lore(chain, "the bell")] == [1]


def test_lore_regex_entries_are_opt_in() -> None:
    entry = LoreEntry(keys=["/ma+ra/i"], content="Mara.", use_regex=True, constant=True)
    bad = LoreEntry(keys=["(unclosed"], content="never", use_regex=True)
    card = book_card(entry, bad)
    assert active_lore(card, "MAAARA") == []
    assert active_lore(card, "MAAARA", allow_regex=True) == [entry]
    assert active_lore(card, "nothing", allow_regex=True) == []  # constant is ignored on regex entries


def test_no_book_means_no_lore() -> None:
    assert active_lore(PersonaCard(name="A"), "anything") == []


# --------------------------------------------------------------------------- persona view


def test_persona_fields() -> None:
    card = parse_card_json(v2_card())
    fields = persona_fields(card)
    assert fields["profile"] == "A lighthouse keeper." and fields["greeting"] == "Come in."
    assert fields["sample_lines"] == ["{{user}}: Hi", "{{char}}: Hello."]
    assert fields["rules"] == ["{{original}} Stay in character.", "Be brief."]
    assert fields["lorebook"] is card.character_book
    assert example_lines("<start>\n\nA: x\n<START>\nB: y") == ["A: x", "B: y"]
