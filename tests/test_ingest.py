from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from api.services import Services
from api.settings import Settings
from retrieval.documents import Document
from retrieval.loaders import LoadFailure, iter_documents
from retrieval.metadata import INDEXED

REPO = Path(__file__).resolve().parents[1]


def _doc(doc_id: str, text: str) -> Document:
    return Document(
        doc_id=doc_id, title=doc_id.upper(), text=text, source=doc_id, metadata={"format": "text"}
    )


def test_ingest_then_search(services: Services, demo_kb_dir: Path) -> None:
    report = services.ingestor.ingest("demo", iter_documents([demo_kb_dir], max_bytes=10**6))
    assert report.indexed == report.documents >= 6 and not report.failures
    assert services.store.count("demo") == report.chunks
    hits = services.retriever.search("demo", "When did Apollo 11 land on the Moon?", 3)
    assert hits[0].doc_id == "apollo-11.html"
    assert hits[0].score > 0.5


def test_reingest_skips_unchanged_and_update_shrinks(services: Services) -> None:
    long_text = "\n\n".join(f"Paragraph {i}. " + "Bees make honey in hives. " * 30 for i in range(6))
    first = services.ingestor.ingest("kb", [_doc("a", long_text), _doc("b", "Short text about tea.")])
    assert first.indexed == 2
    n_a = services.store.count("kb", "a")
    assert n_a > 2
    again = services.ingestor.ingest("kb", [_doc("a", long_text), _doc("b", "Short text about tea.")])
    assert (again.indexed, again.unchanged, again.chunks) == (0, 2, 0)
    updated = services.ingestor.ingest("kb", [_doc("a", "Now a single short paragraph.")])
    assert updated.indexed == 1
    assert services.store.count("kb", "a") == 1  # the old tail chunks are gone
    assert services.store.count("kb") == 1 + services.store.count("kb", "b")


def test_failures_are_reported_and_the_rest_continue(services: Services) -> None:
    items: list[Document | LoadFailure] = [LoadFailure("x.txt", "not UTF-8 text"), _doc("ok", "Fine text.")]
    report = services.ingestor.ingest("kb", items)
    assert report.indexed == 1 and report.failures == [LoadFailure("x.txt", "not UTF-8 text")]


def test_kb_isolation(services: Services) -> None:
    services.ingestor.ingest("one", [_doc("d", "Lighthouses use Fresnel lenses.")])
    services.ingestor.ingest("two", [_doc("d", "Tea leaves oxidise.")])
    assert [h.text for h in services.retriever.search("two", "lens", 5)] == ["Tea leaves oxidise."]


def _indexed(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=1) as conn:
            return int(
                conn.execute("select count(*) from documents where status=?", (INDEXED,)).fetchone()[0]
            )
    except sqlite3.OperationalError:
        return 0


def test_kill_9_mid_ingest_then_rerun_has_no_duplicates(tmp_path: Path, services: Services) -> None:
    corpus = tmp_path / "corpus.jsonl"
    with corpus.open("w") as fh:
        for i in range(320):
            text = f"Document {i} is about topic {i % 17}. " + " ".join(f"word{i}_{j}" for j in range(60))
            fh.write(json.dumps({"id": f"d{i}", "title": f"Doc {i}", "text": text}) + "\n")
    data = tmp_path / "killed"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAGNET_")}
    cmd = [sys.executable, "-m", "api.cli", "--data-dir", str(data), "ingest", "--kb", "k", str(corpus)]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while _indexed(data / "ragnet.db") < 32 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "ingest finished before it could be killed; make the corpus larger"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 0 < _indexed(data / "ragnet.db") < 320

    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1])["unchanged"] >= 32

    expected = sum(
        len(services.chunker.chunk("k", d))
        for d in iter_documents([corpus], max_bytes=10**8)
        if isinstance(d, Document)
    )
    resumed = Services(Settings(data_dir=data), embedder=services.embedder)
    try:
        assert resumed.metadata.count_documents("k", INDEXED) == 320
        assert resumed.store.count("k") == expected
    finally:
        resumed.close()


@pytest.mark.parametrize("vector_store", ["qdrant"])
def test_ingest_over_qdrant_client_backend(tmp_path: Path, services: Services, vector_store: str) -> None:
    svc = Services(Settings(data_dir=tmp_path / "q", vector_store=vector_store), embedder=services.embedder)
    try:
        svc.ingestor.ingest("kb", [_doc("a", "Honeybees dance to share where flowers are.")])
        assert svc.retriever.search("kb", "bee dance", 1)[0].doc_id == "a"
    finally:
        svc.close()


def test_changing_chunk_settings_reindexes(tmp_path: Path, services: Services) -> None:
    doc = _doc("a", "\n\n".join("Bees make honey in hives. " * 12 for _ in range(4)))
    first = Services(Settings(data_dir=tmp_path / "s", chunk_tokens=200), embedder=services.embedder)
    try:
        assert first.ingestor.ingest("kb", [doc]).indexed == 1
        assert first.ingestor.ingest("kb", [doc]).unchanged == 1
        before = first.store.count("kb")
    finally:
        first.close()
    second = Services(
        Settings(data_dir=tmp_path / "s", chunk_tokens=64, chunk_overlap=8), embedder=services.embedder
    )
    try:
        assert second.ingestor.ingest("kb", [doc]).indexed == 1  # new settings: not "unchanged"
        assert second.store.count("kb") > before
    finally:
        second.close()
