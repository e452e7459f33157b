"""Training the support GNN: labelled graphs in, a calibrated model out (CPU, seconds to minutes).

Loss: binary cross-entropy on every candidate node (1 = the cluster holds a gold answer), so a
question whose candidates are all wrong still teaches the model what a wrong answer looks like,
and the best candidate's logit can be calibrated into a probability of being right (Platt
scaling on a held-out share of the training questions). Seeds are fixed: the same graphs give
the same weights.
"""

from __future__ import annotations

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


def split(examples: Sequence[Example], share: float, seed: int) -> tuple[list[Example], list[Example]]:
    """(train, held out) by group, ``share`` of the groups held out."""
    groups = sorted({e.group or str(id(e)) for e in examples})
    random.Random(seed).shuffle(groups)
    held = set(groups[: int(len(groups) * share)])
    train = [e for e in examples if (e.group or str(id(e))) not in held]
    return train, [e for e in examples if (e.group or str(id(e))) in held]


def train(
    examples: Sequence[Example],
    config: GnnConfig | None = None,
    *,
    epochs: int = 80,
    lr: float = 3e-3,
    batch_size: int = 32,
    seed: int = 13,
    calibration_share: float = 0.2,
    log: Log | None = None,
) -> tuple[SupportGNN, TrainReport]:
    """A model trained on the examples that have candidates, calibrated on a held-out share."""
    usable = [e for e in examples if e.graph.clusters]
    fit, held = split(usable, calibration_share, seed) if calibration_share > 0 else (list(usable), [])
    seed_everything(seed)
    model = SupportGNN(config or GnnConfig())
    report = TrainReport(epochs, train_questions=len(fit), calibration_questions=len(held))
    if not fit:
        return model, report
    optimiser = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=1e-4)
    data = [_labelled(e) for e in fit]
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
        report.losses.append(total / max(1, count))
        if log and (epoch + 1) % 20 == 0:
            log(f"  epoch {epoch + 1}/{epochs}: loss {report.losses[-1]:.4f}")
    model.eval()
    if held:
        a, b = calibrate(model, held)
        with_calibration(model, a, b)
        report.calib_a, report.calib_b = a, b
    return model, report


def calibrate(model: SupportGNN, examples: Sequence[Example], steps: int = 300) -> tuple[float, float]:
    """Platt scaling of each question's best logit against whether that candidate is right."""
    logits, right = [], []
    for e in examples:
        scores = candidate_logits(model, e.graph)
        if scores:
            best = max(range(len(scores)), key=scores.__getitem__)
            logits.append(scores[best])
            right.append(float(e.labels[best]))
    if len(set(right)) < 2:
        return 1.0, 0.0
    x, y = torch.tensor(logits), torch.tensor(right)
    a = torch.ones(1, requires_grad=True)
    b = torch.zeros(1, requires_grad=True)
    optimiser = torch.optim.LBFGS([a, b], lr=0.1, max_iter=steps)

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(a * x + b, y)
        loss.backward()
        return loss

    optimiser.step(closure)
    return round(float(a), 5), round(float(b), 5)
