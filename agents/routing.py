"""The LoRA router: per request, the base model or a domain adapter (or a weighted mix of two).

A multinomial logistic regression over the embedder's query vectors (``RouterModel``, trained by
agents/router_training.py) gives every domain label a probability; ``ClassifierRouter`` turns them
into a :class:`Route` with this rule (``p`` = the probabilities, ``t`` = the threshold, ``f`` = the
mix floor, default 0.25):

1. the top label clears ``t`` but no adapter serves it: the base model ("general" is the base
   model's own label, reason 'classifier'; any other label, reason 'no adapter for domain');
2. every adapter gets the summed probability of the labels it serves; the (at most) two adapters
   whose share clears ``f`` are the candidates; when their shares together clear ``t`` the request
   goes to them, weights = their shares normalised to 1 (one adapter: weight 1.0), reason 'classifier';
3. otherwise the base model, reason 'below threshold'.

So a single adapter needs ``p >= t`` for its labels, and a mix happens only when two domains that
both have adapters are likely (each ``>= f``) and together confident (``>= t``) while neither alone is.
``Route.confidence`` is the top label's probability, or for an adapter route the share sent to it.

The shipped checkpoint (``DEFAULT_ROUTER``, labels "banking" and "general") is built by
``ragnet train router`` on multilingual-e5-small (int8) vectors; its data card has the held-out numbers.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from agents.adapters import AdapterRegistry
from agents.errors import AgentError

#: The router shipped in the package.
DEFAULT_ROUTER = Path(__file__).parent / "models" / "router"
WEIGHTS, CONFIG, CARD = "weights.npz", "config.json", "DATA_CARD.md"
#: The base model's own label: a request classified as "general" needs no adapter.
GENERAL = "general"
#: Why the share of a second domain may pull a request into a mix (rule 2 above): below a quarter the
#: second domain is more likely noise than a real second topic.
MIX_FLOOR = 0.25

Reason = Literal[
    "classifier", "below threshold", "no adapter for domain", "requested", "router off", "no adapters"
]
EmbedFn = Callable[[Sequence[str]], np.ndarray]


class RouterCheckpointError(AgentError):
    """A router checkpoint that is missing, unreadable or built for another embedder."""


@dataclass(frozen=True)
class Route:
    #: The classifier's top label (for a requested adapter: the adapter's first domain, or its name).
    label: str
    confidence: float
    #: Adapter name -> weight, weights summing to 1; {} = the base model.
    adapters: dict[str, float]
    reason: Reason
    #: Every label's probability ({} when no classifier ran).
    scores: dict[str, float] = field(default_factory=dict)
    ms: float = 0.0

    @property
    def base(self) -> bool:
        return not self.adapters

    def as_dict(self) -> dict[str, Any]:
        """For responses and traces (JSON-safe, rounded)."""
        return {
            "label": self.label,
            "confidence": round(self.confidence, 4),
            "adapters": {k: round(v, 4) for k, v in self.adapters.items()},
            "reason": self.reason,
            "scores": {k: round(v, 4) for k, v in self.scores.items()},
            "ms": round(self.ms, 2),
        }


class Router(Protocol):
    def route(self, text: str) -> Route:
        """Where a request's text should be generated."""


@dataclass(frozen=True)
class RouterConfig:
    labels: tuple[str, ...]
    #: The embedder whose vectors it was trained on (``Embedder.name``; a "-int8" suffix is ignored
    #: when checking: the quantised vectors are close enough) and their dimension.
    embedder: str
    dim: int
    l2: float = 1e-3
    seed: int = 13
    train_examples: int = 0

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "labels": list(self.labels)}, indent=2) + "\n"


def _base_name(embedder: str) -> str:
    return embedder.removesuffix("-int8")


class RouterModel:
    """Standardised vectors -> softmax over the labels. Inference is numpy only (no torch import)."""

    def __init__(
        self, config: RouterConfig, weights: np.ndarray, bias: np.ndarray, mean: np.ndarray, scale: np.ndarray
    ) -> None:
        c, d = len(config.labels), config.dim
        if weights.shape != (d, c) or bias.shape != (c,) or mean.shape != (d,) or scale.shape != (d,):
            raise RouterCheckpointError(
                f"router weights {weights.shape}/{bias.shape} do not fit {d} dimensions and {c} labels"
            )
        self.config = config
        self.weights = weights.astype(np.float32)  # (dim, labels)
        self.bias = bias.astype(np.float32)  # (labels,)
        self.mean = mean.astype(np.float32)  # (dim,)
        self.scale = scale.astype(np.float32)  # (dim,)

    @property
    def labels(self) -> tuple[str, ...]:
        return self.config.labels

    def predict_proba(self, vectors: np.ndarray) -> np.ndarray:
        """(n, dim) vectors -> (n, labels) probabilities."""
        if vectors.ndim != 2 or vectors.shape[1] != self.config.dim:
            raise RouterCheckpointError(
                f"the router expects {self.config.dim}-dimensional vectors, got shape {vectors.shape}"
            )
        logits = ((vectors - self.mean) / self.scale) @ self.weights + self.bias  # (n, labels)
        logits -= logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        return np.asarray(exp / exp.sum(axis=1, keepdims=True), dtype=np.float32)

    def save(self, folder: Path, card: str | None = None) -> None:
        """Weights, config (and a data card), each written whole: temp file, then rename."""
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f"{WEIGHTS}.tmp"
        with tmp.open("wb") as fh:
            np.savez(fh, weights=self.weights, bias=self.bias, mean=self.mean, scale=self.scale)
        tmp.replace(folder / WEIGHTS)
        texts = [(CONFIG, self.config.to_json())] + ([(CARD, card)] if card is not None else [])
        for name, text in texts:
            part = folder / f"{name}.tmp"
            part.write_text(text, encoding="utf-8")
            part.replace(folder / name)

    @classmethod
    def load(
        cls, folder: Path = DEFAULT_ROUTER, *, embedder: str | None = None, dim: int | None = None
    ) -> RouterModel:
        """Refuses (RouterCheckpointError) a missing or broken folder, and one trained on another
        embedder than ``embedder`` (its name) or for vectors of another ``dim``."""
        hint = "rebuild it with `ragnet train router`"
        try:
            raw: dict[str, Any] = json.loads((folder / CONFIG).read_text(encoding="utf-8"))
            config = RouterConfig(**{**raw, "labels": tuple(raw["labels"])})
            with np.load(folder / WEIGHTS, allow_pickle=False) as arrays:
                parts = {k: np.asarray(arrays[k]) for k in ("weights", "bias", "mean", "scale")}
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise RouterCheckpointError(f"cannot load the router from {folder}: {exc}; {hint}") from exc
        if dim is not None and dim != config.dim:
            raise RouterCheckpointError(
                f"the router in {folder} was trained on {config.dim}-dimensional vectors "
                f"({config.embedder}); "
                f"the embedder in use gives {dim}: {hint}, or set RAGNET_ROUTER=off"
            )
        if embedder is not None and _base_name(embedder) != _base_name(config.embedder):
            raise RouterCheckpointError(
                f"the router in {folder} was trained on {config.embedder} vectors, not {embedder}: "
                f"{hint}, or set RAGNET_ROUTER=off"
            )
        return cls(config, **parts)


class ClassifierRouter:
    """Routes with a :class:`RouterModel` over the embedder's query vectors (rule: module docstring)."""

    def __init__(
        self,
        model: RouterModel,
        embed: EmbedFn,
        registry: AdapterRegistry,
        threshold: float = 0.7,
        *,
        mix_floor: float = MIX_FLOOR,
    ) -> None:
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"the router threshold must be within [0, 1], got {threshold}")
        self.model = model
        self._embed = embed
        self.registry = registry
        self.threshold = threshold
        self.mix_floor = min(mix_floor, threshold)

    def scores(self, text: str) -> dict[str, float]:
        probs = self.model.predict_proba(self._embed([text]))[0]
        return {label: float(p) for label, p in zip(self.model.labels, probs, strict=True)}

    def route(self, text: str) -> Route:
        started = time.perf_counter()
        scores = self.scores(text)
        route = self.decide(scores)
        return replace(route, ms=(time.perf_counter() - started) * 1000)

    def decide(self, scores: dict[str, float]) -> Route:
        """The rule of the module docstring, on given label probabilities."""
        top = max(scores, key=lambda k: scores[k])
        p_top = scores[top]
        if p_top >= self.threshold and self.registry.for_domain(top) is None:
            reason: Reason = "classifier" if top == GENERAL else "no adapter for domain"
            return Route(top, p_top, {}, reason, scores)
        shares: dict[str, float] = {}
        for label, p in scores.items():
            spec = self.registry.for_domain(label)
            if spec is not None:
                shares[spec.name] = shares.get(spec.name, 0.0) + p
        picked = sorted((n for n in shares if shares[n] >= self.mix_floor), key=lambda n: -shares[n])[:2]
        total = sum(shares[n] for n in picked)
        if picked and total >= self.threshold:
            return Route(top, total, {n: shares[n] / total for n in picked}, "classifier", scores)
        return Route(top, p_top, {}, "below threshold", scores)


class BaseOnlyRouter:
    """router='off' (or no adapter to route to): every request goes to the base model (unless it
    names an adapter)."""

    def __init__(self, reason: Reason = "router off") -> None:
        self.reason: Reason = reason

    def route(self, text: str) -> Route:
        return Route(GENERAL, 1.0, {}, self.reason)


def route_request(router: Router, text: str, requested: str | None, registry: AdapterRegistry) -> Route:
    """The route of one request: the adapter it names (UnknownAdapter when none has that name),
    else the router's decision."""
    if requested:
        spec = registry.get(requested)
        return Route(spec.domains[0] if spec.domains else spec.name, 1.0, {spec.name: 1.0}, "requested")
    return router.route(text)
