"""Fitting :class:`agents.faq_reranker.BlendScorer`: a logistic model over pair features, and its
threshold for verbatim precision.

Input: for each dev query its candidate FAQ hits (from the FAQ search) and the gold FAQ id (empty for
a question no FAQ covers). Each (query, candidate) is one example, labelled 1 when the candidate is
the gold FAQ. The fit is L2-regularised logistic regression by Newton's method (numpy, deterministic,
seconds on CPU) on features clipped to their 0.5-99.5 percentile range, which the scorer keeps
applying (no extrapolation on candidate lists unlike the training ones). The threshold is the lowest
score at which the best match of every query scoring at or above it is right at least
``target_precision`` of the time (unmatched queries answered count as wrong), scanning from the top
so one lucky band low down cannot pick it; the top of the curve, where fewer than 50 queries clear
the threshold, is not held to the target (a single error there is noise).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from agents.faq_reranker import FEATURES, BlendScorer, BlendWeights
from retrieval.documents import Hit


@dataclass(frozen=True)
class Example:
    query: str
    gold: str  # "" = no FAQ answers it
    hits: tuple[Hit, ...]


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1.0, iters: int = 50) -> tuple[np.ndarray, float]:
    """Coefficients and intercept (the intercept is not regularised)."""
    n, d = x.shape
    xb = np.hstack([x, np.ones((n, 1))])
    w = np.zeros(d + 1)
    reg = np.full(d + 1, l2)
    reg[-1] = 0.0
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-(xb @ w)))
        grad = xb.T @ (p - y) + reg * w
        hess = (xb * (p * (1 - p))[:, None]).T @ xb + np.diag(reg) + 1e-9 * np.eye(d + 1)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.max(np.abs(step)) < 1e-8:
            break
    return w[:-1], float(w[-1])


def precision_curve(
    best: Sequence[float], correct: Sequence[bool], matched: Sequence[bool]
) -> list[dict[str, float]]:
    """{threshold, precision, coverage} at each distinct best score (coverage over matched queries)."""
    b = np.asarray(best, dtype=float)
    c = np.asarray(correct, dtype=bool)
    m = np.asarray(matched, dtype=bool)
    n_matched = max(1, int(m.sum()))
    out = []
    for t in sorted(set(np.round(b, 4).tolist())):
        accepted = b >= t - 1e-12
        out.append(
            {
                "threshold": float(t),
                "precision": round(float(c[accepted].mean()), 4) if accepted.any() else 1.0,
                "coverage": round(float((c & accepted).sum() / n_matched), 4),
                "answered": int(accepted.sum()),
            }
        )
    return out


def pick_threshold(curve: list[dict[str, float]], target: float, min_answered: int = 50) -> float:
    """Lowest threshold such that every threshold at or above it is precise, ignoring the top of
    the curve where fewer than ``min_answered`` queries clear it (one error there is noise)."""
    chosen = curve[-1]["threshold"] if curve else 1.0
    for point in sorted(curve, key=lambda p: -p["threshold"]):
        if point["answered"] >= min_answered and point["precision"] < target:
            break
        chosen = point["threshold"]
    return float(chosen)


def train_blend(
    examples: Sequence[Example],
    scorer: BlendScorer,
    *,
    target_precision: float = 0.98,
    l2: float = 1.0,
    features: Sequence[str] = FEATURES,
    meta: dict[str, Any] | None = None,
) -> tuple[BlendWeights, dict[str, Any]]:
    """Fit the blend on ``examples`` (features from ``scorer``'s encoder) and pick its threshold."""
    rows, labels, groups = [], [], []
    per_query: list[tuple[np.ndarray, np.ndarray]] = []
    for qi, ex in enumerate(examples):
        if not ex.hits:
            continue
        feats = scorer.features(ex.query, ex.hits)
        x = np.stack([feats[f] for f in features], axis=1)
        y = np.array([h.doc_id == ex.gold for h in ex.hits], dtype=float)
        rows.append(x)
        labels.append(y)
        groups.extend([qi] * len(y))
        per_query.append((x, y))
    x_all, y_all = np.vstack(rows), np.concatenate(labels)
    lo, hi = np.percentile(x_all, 0.5, axis=0), np.percentile(x_all, 99.5, axis=0)
    x_all = np.clip(x_all, lo, hi)
    per_query = [(np.clip(x, lo, hi), y) for x, y in per_query]
    coef, intercept = fit_logistic(x_all, y_all, l2=l2)
    best, correct, matched = [], [], []
    top1 = []
    kept = [ex for ex in examples if ex.hits]
    for ex, (x, y) in zip(kept, per_query, strict=True):
        s = 1.0 / (1.0 + np.exp(-(x @ coef + intercept)))
        i = int(np.argmax(s))
        best.append(float(s[i]))
        correct.append(bool(ex.gold) and bool(y[i]))
        matched.append(bool(ex.gold))
        if ex.gold:
            top1.append(float(y[i]))
    curve = precision_curve(best, correct, matched)
    threshold = pick_threshold(curve, target_precision)
    at = next(p for p in curve if p["threshold"] >= threshold)
    report = {
        "examples": len(y_all),
        "queries": len(kept),
        "positives": int(y_all.sum()),
        "train_top1": round(float(np.mean(top1)) if top1 else 0.0, 4),
        "threshold": round(threshold, 4),
        "train_precision": at["precision"],
        "train_coverage": at["coverage"],
        "coef": dict(zip(features, [round(float(c), 4) for c in coef], strict=True)),
        "intercept": round(intercept, 4),
    }
    weights = BlendWeights(
        features=tuple(features),
        coef=tuple(float(c) for c in coef),
        intercept=intercept,
        threshold=threshold,
        meta={**(meta or {}), "fit": report},
        clip=tuple((float(a), float(b)) for a, b in zip(lo, hi, strict=True)),
    )
    return weights, report
