from __future__ import annotations

import socket
from pathlib import Path

import pytest
from pydantic import ValidationError

from agents import model_prep
from agents.errors import MissingExtra, ModelPreparationError
from agents.optional import require
from api.settings import Settings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("RAGNET_"):
            monkeypatch.delenv(key)


def test_env_and_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "ragnet.toml"
    config.write_text('top_k = 7\nscore_threshold = 0.5\ndata_dir = "/srv/ragnet"\n')
    monkeypatch.setenv("RAGNET_CONFIG", str(config))
    monkeypatch.setenv("RAGNET_TOP_K", "3")  # the environment wins over the file
    s = Settings()
    assert (s.top_k, s.score_threshold, s.data_dir) == (3, 0.5, Path("/srv/ragnet"))
    assert s.sqlalchemy_url == "sqlite:////srv/ragnet/ragnet.db"


def test_evidence_threshold_follows_the_embedder_unless_set() -> None:
    # multilingual-e5-small scores everything high, MiniLM does not; an unknown model gets the lower one
    assert Settings().evidence_threshold("multilingual-e5-small-int8") == 0.80
    assert Settings().evidence_threshold("all-MiniLM-L6-v2") == 0.30
    assert Settings().evidence_threshold("my-finetuned-bge") == 0.30
    assert Settings(score_threshold=0.5).evidence_threshold("multilingual-e5-small") == 0.5
    with pytest.raises(ValidationError):
        Settings(score_threshold=1.5)


def test_documents_read_per_hop_follow_the_reader_unless_set() -> None:
    # the span reader costs no LLM call per document and the support GNN was trained on 5
    assert Settings(reader="extractive").documents_read == 5
    assert Settings(reader="generator").documents_read == 3
    assert Settings(reader="extractive", read_k=2).documents_read == 2
    with pytest.raises(ValidationError):
        Settings(read_k=0)


def test_contradictions_and_typos_fail_early(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError, match="RAGNET_VECTOR_STORE=qdrant"):
        Settings(qdrant_url="http://localhost:6333")
    with pytest.raises(ValidationError, match="chunk_overlap"):
        Settings(chunk_tokens=64, chunk_overlap=64)
    with pytest.raises(ValidationError):
        Settings(top_k=0)
    monkeypatch.setenv("RAGNET_CONFIG", "/nonexistent.toml")
    with pytest.raises(ValueError, match="RAGNET_CONFIG"):
        Settings()


def test_optional_dependency_error_names_the_extra() -> None:
    with pytest.raises(MissingExtra, match=r"pip install 'ragnet\[vllm\]'"):
        require("surely_not_installed_module_xyz", "vllm")


def test_gguf_assembly_checks_sha256(tmp_path: Path) -> None:
    dest = tmp_path / "model.gguf"
    model_prep.assemble_gguf(dest)
    assert dest.stat().st_size == model_prep.GGUF_BYTES


def test_corrupt_gguf_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(model_prep, "GGUF_SHA256", "0" * 64)
    with pytest.raises(ModelPreparationError, match="corrupt"):
        model_prep.assemble_gguf(tmp_path / "model.gguf")


def test_crash_during_conversion_leaves_no_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def crash(gguf: Path, out: Path) -> None:
        out.mkdir()
        (out / "config.json").write_text("{}")  # a half-written model
        raise KeyboardInterrupt

    monkeypatch.setattr(model_prep, "convert_gguf", crash)
    with pytest.raises(KeyboardInterrupt):
        model_prep.prepare_generator(tmp_path)
    assert list(tmp_path.iterdir()) == []  # neither the target nor the temp folder remains
    assert not model_prep.is_prepared(model_prep.generator_dir(tmp_path))


def test_outbound_network_is_blocked_in_tests() -> None:
    with pytest.raises(Exception, match=r"(?i)socket"):
        socket.create_connection(("192.0.2.1", 80), timeout=1)
