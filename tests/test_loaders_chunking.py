from __future__ import annotations

import itertools
import json
from pathlib import Path

from retrieval.chunking import Chunker
from retrieval.documents import Document
from retrieval.embedder import SentenceTransformerEmbedder
from retrieval.loaders import LoadFailure, html_to_markdown, iter_documents


def _docs(items: list[Document | LoadFailure]) -> list[Document]:
    return [d for d in items if isinstance(d, Document)]


def test_folder_walk_formats_titles_and_ids(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.md").write_text("# Alpha\n\nSome text.\n")
    (tmp_path / "sub" / "b.txt").write_text("Beta title\n\nBody.\n")
    (tmp_path / "c.html").write_text("<html><head><title>Gamma</title></head><body><p>Hi</p></body></html>")
    (tmp_path / ".hidden.md").write_text("# Hidden\n\nx")
    (tmp_path / "image.png").write_bytes(b"\x89PNG")
    docs = _docs(list(iter_documents([tmp_path], max_bytes=10_000)))
    assert [(d.doc_id, d.title) for d in docs] == [
        ("a.md", "Alpha"),
        ("c.html", "Gamma"),
        ("sub/b.txt", "Beta title"),
    ]


def test_unreadable_files_are_reported_and_the_rest_continue(tmp_path: Path) -> None:
    (tmp_path / "good.txt").write_text("Good\n\ntext")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    (tmp_path / "empty.md").write_text("   \n")
    (tmp_path / "big.txt").write_text("x" * 200)
    items = list(iter_documents([tmp_path, tmp_path / "missing.txt"], max_bytes=100))
    failures = {Path(f.source).name: f.reason for f in items if isinstance(f, LoadFailure)}
    assert failures["latin1.txt"] == "not UTF-8 text"
    assert failures["empty.md"] == "file has no text"
    assert "limit" in failures["big.txt"]
    assert failures["missing.txt"] == "no such file or folder"
    assert [d.doc_id for d in _docs(items)] == ["good.txt"]


def test_corpus_jsonl_with_a_bad_line(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.jsonl"
    lines = [
        json.dumps({"id": "d1", "title": "T", "text": "hello"}),
        "{not json",
        json.dumps({"title": "no id"}),
    ]
    corpus.write_text("\n".join(lines) + "\n")
    items = list(iter_documents([corpus], max_bytes=10_000))
    assert [d.doc_id for d in _docs(items)] == ["d1"]
    assert [f.source.rsplit(":", 1)[1] for f in items if isinstance(f, LoadFailure)] == ["2", "3"]


def test_html_keeps_headings_drops_chrome() -> None:
    title, md = html_to_markdown(
        "<html><head><title>T</title><script>var x=1</script></head><body><nav>Home | About</nav>"
        "<h1>Main</h1><p>First <b>para</b>.</p><h2>Sub</h2><ul><li>one</li><li>two</li></ul>"
        "<footer>(c) 2026</footer></body></html>"
    )
    assert title == "T"
    assert md == "# Main\n\nFirst para .\n\n## Sub\n\n- one\n\n- two"


def test_chunks_follow_headings_and_respect_size(embedder: SentenceTransformerEmbedder) -> None:
    body = " ".join(f"Sentence number {i} talks about bees and hives." for i in range(60))
    text = f"# Bees\n\nIntro paragraph.\n\n## Hive\n\n{body}\n\n## Dance\n\nThe waggle dance."
    doc = Document(
        doc_id="bees.md", title="Bees", text=text, source="bees.md", metadata={"format": "markdown"}
    )
    chunker = Chunker(64, 16, embedder.tokenize)
    chunks = chunker.chunk("kb", doc)
    assert [c.position for c in chunks] == list(range(len(chunks)))
    sections = [c.section for c in chunks]
    assert sections[0] == "Bees" and sections[-1] == "Dance" and sections.count("Hive") >= 3
    assert all(len(embedder.tokenize(c.text)) <= 64 for c in chunks)
    hive = [c.text for c in chunks if c.section == "Hive"]
    # Overlap: consecutive chunks of a section share text.
    assert any(a.split()[-1] in b.split()[:20] for a, b in itertools.pairwise(hive))
    assert chunks[-1].embed_text.startswith("title: Bees\nsection: Dance\n\n")


def test_chinese_text_is_chunked(embedder: SentenceTransformerEmbedder) -> None:
    text = "蜜蜂是一种会飞行的群居昆虫。" * 80
    doc = Document(doc_id="zh", title="蜜蜂", text=text, source="zh", metadata={"format": "text"})
    chunks = Chunker(64, 8, embedder.tokenize).chunk("kb", doc)
    assert len(chunks) > 3
    assert all(len(embedder.tokenize(c.text)) <= 64 for c in chunks)
