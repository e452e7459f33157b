"""Chunking strategies: heading (default), fixed windows, parent-child; tables never cut at rows."""

from __future__ import annotations

import itertools

import pytest

from retrieval.chunking import STRATEGIES, Chunker, make_chunker
from retrieval.documents import Chunk, Document
from retrieval.embedder import SentenceTransformerEmbedder
from retrieval.formats.tables import table_block

ROWS = [
    [f"Plan {i}", f"${i * 7}", f"{i % 9 + 1} seats", f"Support tier {'gold' if i % 2 else 'silver'}"]
    for i in range(1, 61)
]


def _table_doc() -> Document:
    block = table_block([["Plan", "Price", "Seats", "Support"], *ROWS], caption="Price list")
    text = f"# Pricing\n\nOur plans are simple, billed monthly.\n\n{block}\n\n## Notes\n\nPrices include tax."
    meta = {"format": "markdown", "lang": "en"}
    return Document(doc_id="p.md", title="Pricing", text=text, source="p.md", metadata=meta)


def _row_lines() -> list[str]:
    return [f"Plan: {a}; Price: {b}; Seats: {c}; Support: {d}" for a, b, c, d in ROWS]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_table_rows_are_never_split(strategy: str, embedder: SentenceTransformerEmbedder) -> None:
    # The overlap (24) is larger than a row (~20 tokens): windows must still not repeat rows.
    chunks = make_chunker(strategy, 48, 24, embedder.tokenize).chunk("kb", _table_doc())  # type: ignore[arg-type]
    rows = _row_lines()
    found: list[tuple[int, int]] = []  # (chunk index, offset) of each row
    for row in rows:
        hits = [(i, c.text.find(row)) for i, c in enumerate(chunks) if row in c.text.split("\n")]
        assert len(hits) == 1, (row, hits)
        found.append(hits[0])
    assert found == sorted(found)  # in order
    table_chunks = [c for c in chunks if "Plan: " in c.text]
    assert len(table_chunks) > 3
    if strategy != "fixed":  # fixed windows may start in the prose before the table
        assert all(c.section == "Price list" for c in table_chunks)
    assert all(len(embedder.tokenize(c.text)) <= 48 for c in chunks)


def test_heading_keeps_prose_and_tables_apart(embedder: SentenceTransformerEmbedder) -> None:
    chunks = Chunker(48, 8, embedder.tokenize).chunk("kb", _table_doc())
    assert chunks[0].text == "Our plans are simple, billed monthly." and chunks[0].section == "Pricing"
    assert chunks[-1].text == "Prices include tax." and chunks[-1].section == "Notes"
    assert all(line.startswith("Plan: ") for c in chunks[1:-1] for line in c.text.split("\n"))


def test_an_over_long_row_is_the_only_thing_cut(embedder: SentenceTransformerEmbedder) -> None:
    long_row = ["x", " ".join(f"word{i}" for i in range(120))]
    block = table_block([["Key", "Value"], ["a", "short"], long_row, ["b", "short too"]])
    doc = Document(doc_id="t", title="T", text=block, source="t", metadata={"format": "markdown"})
    chunks = Chunker(40, 8, embedder.tokenize).chunk("kb", doc)
    assert all(len(embedder.tokenize(c.text)) <= 40 for c in chunks)
    assert sum("word" in c.text for c in chunks) >= 3
    assert chunks[0].text.startswith("Key: a; Value: short")
    assert chunks[-1].text.endswith("Key: b; Value: short too")


def test_parent_child_chunks_carry_their_parent(embedder: SentenceTransformerEmbedder) -> None:
    body = " ".join(f"Sentence number {i} talks about bees and hives." for i in range(40))
    doc = Document(
        doc_id="bees.md",
        title="Bees",
        text=f"# Bees\n\nIntro paragraph.\n\n## Hive\n\n{body}",
        source="bees.md",
        metadata={"format": "markdown"},
    )
    parents = Chunker(128, 16, embedder.tokenize).chunk("kb", doc)
    children = make_chunker("parent_child", 128, 16, embedder.tokenize).chunk("kb", doc)
    assert [c.position for c in children] == list(range(len(children)))
    assert len(children) > len(parents)
    assert {c.context for c in children} == {p.text for p in parents}
    for child in children:
        words = child.text.split()
        assert " ".join(words) in " ".join(child.context.split())
        assert len(embedder.tokenize(child.text)) <= 32
    assert {c.section for c in children} == {"Bees", "Hive"}
    assert children[0].context == "Intro paragraph."


def test_fixed_windows_respect_size_and_overlap(embedder: SentenceTransformerEmbedder) -> None:
    text = "# One\n\n" + "Alpha beta gamma delta. " * 30 + "\n\n# Two\n\n" + "Epsilon zeta eta theta. " * 30
    doc = Document(doc_id="d", title="D", text=text, source="d", metadata={"format": "markdown"})
    chunks = make_chunker("fixed", 50, 10, embedder.tokenize).chunk("kb", doc)
    sizes = [len(embedder.tokenize(c.text)) for c in chunks]
    assert all(s <= 50 for s in sizes) and max(sizes) >= 40
    assert chunks[0].section == "One" and chunks[-1].section == "Two"
    assert any("gamma" in c.text and "Epsilon" in c.text for c in chunks)  # ignores the heading
    assert "Two" in " ".join(c.text for c in chunks)  # heading text kept as text
    for a, b in itertools.pairwise(chunks):  # consecutive windows share a few words
        assert b.text.split()[0] in a.text.split()[-10:]


def test_chinese_text_in_every_strategy(embedder: SentenceTransformerEmbedder) -> None:
    sentence = "蜜蜂是一种会飞行的群居昆虫。"
    doc = Document(doc_id="zh", title="蜜蜂", text=sentence * 60, source="zh", metadata={"format": "text"})
    for strategy in STRATEGIES:
        chunks = make_chunker(strategy, 64, 8, embedder.tokenize).chunk("kb", doc)
        assert len(chunks) > 3, strategy
        assert all(len(embedder.tokenize(c.text)) <= 64 for c in chunks)
        assert all(" " not in c.text for c in chunks), strategy  # no spaces inserted
        assert all(c.text in sentence * 60 for c in chunks)


def test_every_strategy_sets_title_section_metadata_positions(embedder: SentenceTransformerEmbedder) -> None:
    for strategy in STRATEGIES:
        chunks = make_chunker(strategy, 48, 8, embedder.tokenize).chunk("kb", _table_doc())
        assert [c.position for c in chunks] == list(range(len(chunks)))
        assert all(isinstance(c, Chunk) and c.title == "Pricing" and c.version == "" for c in chunks)
        assert all(c.metadata == {"lang": "en"} for c in chunks)
        assert all(c.section for c in chunks)
        chunks[0].metadata["lang"] = "fr"
        assert chunks[1].metadata == {"lang": "en"}  # each chunk has its own copy


def test_unknown_strategy_and_bad_sizes(embedder: SentenceTransformerEmbedder) -> None:
    assert STRATEGIES == ("heading", "fixed", "parent_child")
    with pytest.raises(ValueError, match="unknown chunking strategy"):
        make_chunker("semantic", 64, 8, embedder.tokenize)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Chunker(64, 64, embedder.tokenize)
