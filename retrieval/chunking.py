"""Chunking by headings and paragraphs with overlap, on llama-index's node parsers.

Markdown (and HTML, which the loaders turn into Markdown) is first cut at headings by
``MarkdownNodeParser``; each section is then cut by ``SentenceSplitter`` at paragraph, then
sentence boundaries into chunks of at most ``chunk_tokens`` embedder tokens, consecutive chunks
sharing ``chunk_overlap`` tokens. Defaults (200/32) keep a chunk inside all-MiniLM-L6-v2's
256-token window with room for the title line.
"""

from __future__ import annotations

from collections.abc import Callable

from llama_index.core import Document as LlamaDocument
from llama_index.core.node_parser import MarkdownNodeParser, SentenceSplitter

from retrieval.documents import Chunk, Document


class Chunker:
    def __init__(self, chunk_tokens: int, chunk_overlap: int, tokenize: Callable[[str], list[str]]) -> None:
        self._splitter = SentenceSplitter(
            chunk_size=chunk_tokens,
            chunk_overlap=chunk_overlap,
            tokenizer=tokenize,
            paragraph_separator="\n\n",
        )
        self._sections = MarkdownNodeParser()

    def chunk(self, kb: str, doc: Document) -> list[Chunk]:
        chunks: list[Chunk] = []
        for section, body in self._split_sections(doc):
            for piece in self._splitter.split_text(body):
                text = piece.strip()
                if not text:
                    continue
                chunks.append(
                    Chunk(
                        kb=kb,
                        doc_id=doc.doc_id,
                        position=len(chunks),
                        title=doc.title,
                        text=text,
                        source=doc.source,
                        section=section,
                    )
                )
        return chunks

    def _split_sections(self, doc: Document) -> list[tuple[str, str]]:
        if doc.metadata.get("format") != "markdown":
            return [("", doc.text)]
        nodes = self._sections.get_nodes_from_documents([LlamaDocument(text=doc.text)])
        sections: list[tuple[str, str]] = []
        for node in nodes:
            text = node.get_content()
            first, _, rest = text.partition("\n")
            if first.lstrip().startswith("#"):
                if rest.strip():  # a heading with nothing under it is not a chunk
                    sections.append((first.lstrip("#").strip(), rest))
            else:
                sections.append(("", text))
        return sections
