"""Training the support GNN: labelled graphs in, a calibrated model out (CPU, seconds to minutes).

Loss: binary cross-entropy on every candidate node (1 = the cluster holds a gold answer), so a
question whose candidates are all wrong still teaches the model what a wrong answer looks like,
and the best candidate's logit can be calibrated into a probability of being right (Platt
scaling on a held-out share of the training questions). Seeds are fixed: the same graphs give
the same weights.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch_geometric.data import Batch, Data

from agents.support_gnn import GnnConfig, SupportGNN, candidate_logits, with_calibration
from agents.support_graph import SupportGraph

Log = Callable[[str], None]


@dataclass
class Example:
    graph: SupportGraph
    labels: torch.Tensor  # per candidate cluster
    group: str = ""  # questions of one group (a multi-hop question's steps) stay on one side of a split


@dataclass
class TrainReport:
    epochs: int
    losses: list[float] = field(default_factory=list)  # mean training loss per epoch
    calib_a: float = 1.0
    calib_b: float = 0.0
    train_questions: int = 0
    calibration_questions: int = 0


def _labelled(example: Example) -> Data:
    data = example.graph.data.clone()
    y = torch.zeros(data.num_nodes)
    y[example.graph.first_candidate :] = example.labels
    data.y = y
    return data


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def _fit(
    examples: Sequence[Example], config: GnnConfig, epochs: int, lr: float, batch_size: int, seed: int,
    log: Log | None = None,
) -> tuple[SupportGNN, list[float]]:  # fmt: skip
    seed_everything(seed)
    model = SupportGNN(config)
    losses: list[float] = []
    if not examples:
        return model, losses
    optimiser = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=1e-4)
    data = [_labelled(e) for e in examples]
    order = random.Random(seed)
    for epoch in range(epochs):
        model.train()
        order.shuffle(data)
        total, count = 0.0, 0
        for start in range(0, len(data), batch_size):
            batch = Batch.from_data_list(data[start : start + batch_size])
            optimiser.zero_grad()
            logits = model(batch.x, batch.edge_index, batch.edge_attr)
            mask = batch.candidate_mask
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits[mask], batch.y[mask])
            loss.backward()
            optimiser.step()
            total += float(loss.detach()) * int(mask.sum())
            count += int(mask.sum())
        losses.append(total / max(1, count))
        if log and (epoch + 1) % 20 == 0:
            log(f"  epoch {epoch + 1}/{epochs}: loss {losses[-1]:.4f}")
    model.eval()
    return model, losses


def train(
    examples: Sequence[Example],
    config: GnnConfig | None = None,
    *,
    epochs: int = 40,
    lr: float = 3e-3,
    batch_size: int = 32,
    seed: int = 13,
    folds: int = 5,
    log: Log | None = None,
) -> tuple[SupportGNN, TrainReport]:
    """A model trained on every example that has candidates. Its confidence is calibrated on
    out-of-fold logits: ``folds`` models, each trained without one fold of the questions (split by
    group), score that fold; Platt scaling is fitted to those scores (``folds`` < 2: none)."""
    config = config or GnnConfig()
    usable = [e for e in examples if e.graph.clusters]
    model, losses = _fit(usable, config, epochs, lr, batch_size, seed, log)
    report = TrainReport(epochs, losses, train_questions=len(usable))
    if folds < 2 or len(usable) < folds:
        return model, report
    groups = sorted({e.group or str(i) for i, e in enumerate(usable)})
    random.Random(seed).shuffle(groups)
    fold_of = {g: i % folds for i, g in enumerate(groups)}
    scored: list[tuple[float, float]] = []
    for k in range(folds):
        held = [e for i, e in enumerate(usable) if fold_of[e.group or str(i)] == k]
        rest = [e for i, e in enumerate(usable) if fold_of[e.group or str(i)] != k]
        fold_model, _ = _fit(rest, config, epochs, lr, batch_size, seed)
        scored.extend(best_logits(fold_model, held))
    a, b = calibrate(scored)
    with_calibration(model, a, b)
    report.calib_a, report.calib_b, report.calibration_questions = a, b, len(scored)
    return model, report


def best_logits(model: SupportGNN, examples: Sequence[Example]) -> list[tuple[float, float]]:
    """(best candidate's logit, 1.0 if that candidate is right) per example."""
    out = []
    for e in examples:
        scores = candidate_logits(model, e.graph)
        if scores:
            best = max(range(len(scores)), key=scores.__getitem__)
            out.append((scores[best], float(e.labels[best])))
    return out


def calibrate(scored: Sequence[tuple[float, float]], steps: int = 300) -> tuple[float, float]:
    """Platt scaling (a, b) of best logits against whether the best candidate was right."""
    if len({right for _, right in scored}) < 2:
        return 1.0, 0.0
    x = torch.tensor([logit for logit, _ in scored])
    y = torch.tensor([right for _, right in scored])
    a = torch.ones(1, requires_grad=True)
    b = torch.zeros(1, requires_grad=True)
    optimiser = torch.optim.LBFGS([a, b], lr=0.1, max_iter=steps)

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(a * x + b, y)
        loss.backward()
        return loss

    optimiser.step(closure)
    if float(a.detach()) <= 0:  # the logit does not rank right above wrong here: say the base rate
        rate = min(max(float(y.mean()), 1e-3), 1 - 1e-3)
        return 0.0, round(math.log(rate / (1 - rate)), 5)
    return round(float(a.detach()), 5), round(float(b.detach()), 5)
