"""Training the router: class-balanced multinomial logistic regression with L2, on embedder vectors.

Full-batch L-BFGS from zero weights: no sampling anywhere, so the same texts give the same model.
Features are standardised first (the stored mean and scale go with the weights): multilingual-e5's
vectors all sit in a narrow cone (cosines ~0.7-0.9), so raw coordinates differ by a few hundredths and
one L2 strength would not suit both e5 and MiniLM.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np
import torch

from agents.routing import EmbedFn, RouterConfig, RouterModel

#: Why 1e-3: best of 1e-4 .. 1e-1 in 5-fold cross-validation on the banking-vs-general training split
#: (e5: 1e-4 .. 1e-2 within 0.1 points of accuracy at threshold 0.7; 1e-1 loses 0.6: too soft).
L2 = 1e-3
#: Texts per embedder call while training (progress is logged per batch).
EMBED_BATCH = 256


def embed_all(texts: Sequence[str], embed: EmbedFn, log: Callable[[str], None] | None = None) -> np.ndarray:
    parts = []
    for start in range(0, len(texts), EMBED_BATCH):
        parts.append(np.asarray(embed(list(texts[start : start + EMBED_BATCH])), dtype=np.float32))
        if log is not None and (start // EMBED_BATCH) % 8 == 7:
            log(f"router: embedded {min(start + EMBED_BATCH, len(texts))}/{len(texts)} texts")
    return np.concatenate(parts) if parts else np.zeros((0, 0), dtype=np.float32)


def fit(
    vectors: np.ndarray, targets: np.ndarray, n_labels: int, *, l2: float = L2, max_iter: int = 200
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(weights (dim, labels), bias (labels,), mean (dim,), scale (dim,)) minimising the class-balanced
    mean cross-entropy + l2 * ||weights||^2 over standardised ``vectors`` (n, dim)."""
    mean = vectors.mean(axis=0)
    scale = vectors.std(axis=0) + 1e-6
    x = torch.from_numpy(((vectors - mean) / scale).astype(np.float32))  # (n, dim)
    y = torch.from_numpy(targets.astype(np.int64))  # (n,)
    counts = torch.bincount(y, minlength=n_labels).clamp(min=1).float()
    class_weight = len(y) / (n_labels * counts)  # each label weighs as much as the others in total
    w = torch.zeros(x.shape[1], n_labels, requires_grad=True)
    b = torch.zeros(n_labels, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(x @ w + b, y, weight=class_weight) + l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach().numpy(), b.detach().numpy(), mean.astype(np.float32), scale.astype(np.float32)


def train_router(
    texts: Sequence[str],
    labels: Sequence[str],
    embed: EmbedFn,
    *,
    embedder: str,
    l2: float = L2,
    seed: int = 13,
    vectors: np.ndarray | None = None,
    log: Callable[[str], None] | None = None,
) -> RouterModel:
    """A router for the labels seen in ``labels`` (sorted), trained on ``embed(texts)`` (or on the
    given ``vectors`` of those texts). ``embedder`` is the embedder's name, kept in the config."""
    if len(texts) != len(labels) or not texts:
        raise ValueError("train_router needs as many labels as texts, and at least one of each")
    names = tuple(sorted(set(labels)))
    if len(names) < 2:
        raise ValueError(f"a router needs at least two labels, got {list(names)}")
    torch.manual_seed(seed)  # nothing here samples; kept so that any later change stays reproducible
    started = time.perf_counter()
    x = embed_all(texts, embed, log) if vectors is None else vectors
    index = {name: i for i, name in enumerate(names)}
    y = np.array([index[label] for label in labels])
    weights, bias, mean, scale = fit(x, y, len(names), l2=l2)
    if log is not None:
        seconds = time.perf_counter() - started
        log(f"router: trained on {len(texts)} texts, {len(names)} labels in {seconds:.1f} s")
    config = RouterConfig(names, embedder, int(x.shape[1]), l2=l2, seed=seed, train_examples=len(texts))
    return RouterModel(config, weights, bias, mean, scale)
