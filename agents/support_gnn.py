"""The support GNN: which candidate answer do the retrieved documents, taken together, back?

A two-layer GATv2 network (torch-geometric) over the support graph (agents/support_graph.py)
gives every candidate node a logit; the answer is the candidate (cluster) with the highest, and a
Platt-calibrated sigmoid of that logit is the confidence the search-QA graph's decide step uses.
``GnnSupportScorer`` is the ``SupportScorer`` the graph uses by default; its checkpoint ships in
``agents/models/support_gnn`` (weights, config, data card) and is rebuilt by ``ragnet train gnn``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch_geometric.nn import GATv2Conv

from agents.errors import CheckpointError
from agents.reading import Candidate, LinkedSpans, OtherSpans, ScoredCandidate
from agents.support_graph import (
    EDGE_DIM,
    NO_ANSWER_CLIP,
    NODE_DIM,
    NODE_DIM_BEFORE_LINKS,
    EmbedFn,
    LinkedReading,
    SupportGraph,
    build_graph,
    doc_of,
)
from retrieval.documents import Hit

#: The shipped checkpoints, one per reader (the reader's confidence is one of the graph's features,
#: and the generator's and the span reader's are on different scales).
DEFAULT_CHECKPOINT = Path(__file__).parent / "models" / "support_gnn"
EXTRACTIVE_CHECKPOINT = Path(__file__).parent / "models" / "support_gnn_extractive"


def default_checkpoint(reader: str) -> Path:
    """The shipped checkpoint trained on graphs from ``reader`` ("generator" or "extractive")."""
    return EXTRACTIVE_CHECKPOINT if reader == "extractive" else DEFAULT_CHECKPOINT


WEIGHTS, CONFIG, CARD = "model.pt", "config.json", "DATA_CARD.md"


@dataclass(frozen=True)
class GnnConfig:
    hidden: int = 16
    heads: int = 2
    layers: int = 2
    dropout: float = 0.2
    node_dim: int = NODE_DIM
    edge_dim: int = EDGE_DIM
    #: Platt calibration of the best candidate's logit: confidence = sigmoid(a * logit + b).
    calib_a: float = 1.0
    calib_b: float = 0.0

    def confidence(self, logit: float) -> float:
        return 1.0 / (1.0 + math.exp(-(self.calib_a * logit + self.calib_b)))


class SupportGNN(nn.Module):
    """Node logits; only the candidate nodes' logits mean anything."""

    def __init__(self, config: GnnConfig) -> None:
        super().__init__()
        self.config = config
        h = config.hidden
        self.encode = nn.Linear(config.node_dim, h)
        self.convs = nn.ModuleList(
            GATv2Conv(h, h // config.heads, heads=config.heads, edge_dim=config.edge_dim)
            for _ in range(config.layers)
        )
        self.dropout = nn.Dropout(config.dropout)
        # the raw features go to the head too: what a baseline sees, the GNN sees directly
        self.head = nn.Sequential(nn.Linear(h + config.node_dim, h), nn.ReLU(), nn.Linear(h, 1))

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor, edge_attr: torch.Tensor) -> torch.Tensor:
        x = x[:, : self.config.node_dim]  # a checkpoint from before linked reads: the features it knows
        h = torch.relu(self.encode(x))
        for conv in self.convs:
            h = h + torch.relu(conv(self.dropout(h), edge_index, edge_attr))
        out: torch.Tensor = self.head(torch.cat([h, x], dim=-1)).squeeze(-1)
        return out


def candidate_logits(model: SupportGNN, graph: SupportGraph) -> list[float]:
    """Each candidate cluster's logit, in ``graph.clusters`` order."""
    if not graph.clusters:
        return []
    model.eval()
    with torch.inference_mode():
        logits = model(graph.data.x, graph.data.edge_index, graph.data.edge_attr)
    return logits[graph.first_candidate :].tolist()


def save(model: SupportGNN, folder: Path, card: str) -> None:
    """Weights, config and data card, each written whole (temp file, then rename)."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f"{WEIGHTS}.tmp"
    torch.save(model.state_dict(), tmp)
    tmp.replace(folder / WEIGHTS)
    for name, text in ((CONFIG, json.dumps(asdict(model.config), indent=2) + "\n"), (CARD, card)):
        part = folder / f"{name}.tmp"
        part.write_text(text, encoding="utf-8")
        part.replace(folder / name)


def load(folder: Path = DEFAULT_CHECKPOINT) -> SupportGNN:
    try:
        raw: dict[str, Any] = json.loads((folder / CONFIG).read_text(encoding="utf-8"))
        config = GnnConfig(**raw)
        state = torch.load(folder / WEIGHTS, map_location="cpu", weights_only=True)
    except (OSError, ValueError, TypeError) as exc:
        raise CheckpointError(f"cannot load the support GNN from {folder}: {exc}") from exc
    if config.node_dim not in (NODE_DIM, NODE_DIM_BEFORE_LINKS) or config.edge_dim != EDGE_DIM:
        raise CheckpointError(
            f"the support GNN in {folder} was trained on {config.node_dim}/{config.edge_dim} features, "
            f"this version builds {NODE_DIM}/{EDGE_DIM}: run `ragnet train gnn`"
        )
    model = SupportGNN(config)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(f"the support GNN weights in {folder} do not fit its config: {exc}") from exc
    model.eval()
    return model


def with_calibration(model: SupportGNN, a: float, b: float) -> SupportGNN:
    model.config = replace(model.config, calib_a=a, calib_b=b)
    return model


class GnnSupportScorer:
    """Scores a step's candidates with the support GNN; best-supported cluster first."""

    def __init__(self, model: SupportGNN, embed: EmbedFn) -> None:
        self._model = model
        self._embed = embed

    def graph(
        self,
        question: str,
        candidates: Sequence[Candidate],
        hits: Sequence[Hit],
        other_spans: OtherSpans | None = None,
        linked: LinkedSpans = (),
    ) -> tuple[SupportGraph, list[Hit]]:
        """The support graph of the retrieved hits (retrieval order) and the readings of them; a
        candidate read from a hit not among ``hits`` (a FAQ's answer) becomes one more document."""
        by_chunk = {c.hit.chunk_id: c for c in candidates}
        nodes = list(hits) + [c.hit for c in candidates if c.hit.chunk_id not in {h.chunk_id for h in hits}]
        docs = [doc_of(h, i) for i, h in enumerate(nodes)]
        read = [by_chunk.get(h.chunk_id) for h in nodes]
        answers = [c.answer if c else None for c in read]
        logprobs = [c.logprob if c else 0.0 for c in read]
        spans = other_spans or {}
        alternatives = [[(a, lp) for a, lp in spans.get(h.chunk_id, ())] for h in nodes]
        no_answer = None
        if any(c.no_answer is not None for c in candidates):  # the span reader read them
            # a FAQ's answer is certain; a document without a candidate is neither way
            no_answer = [
                (c.no_answer if c.no_answer is not None else c.logprob - NO_ANSWER_CLIP) if c else 0.0
                for c in read
            ]
        index = {h.chunk_id: i for i, h in enumerate(nodes)}
        links = [
            LinkedReading(index[a], index[b], span, lp, none)
            for a, b, span, lp, none in linked
            if a in index and b in index
        ]
        graph = build_graph(question, docs, answers, logprobs, self._embed, alternatives, no_answer, links)
        return graph, nodes

    def score(
        self,
        question: str,
        candidates: Sequence[Candidate],
        hits: Sequence[Hit],
        *,
        other_spans: OtherSpans | None = None,
        linked: LinkedSpans = (),
    ) -> list[ScoredCandidate]:
        if not candidates:
            return []
        graph, nodes = self.graph(question, candidates, hits, other_spans, linked)
        logits = candidate_logits(self._model, graph)
        scored: list[ScoredCandidate] = []
        for c, supporting, logit in zip(graph.clusters, graph.supporting, logits, strict=True):
            best = min(c.members)  # the best-ranked document that read it
            supporters = {nodes[m].doc_id for m in (*c.members, *supporting)} - {nodes[best].doc_id}
            confidence = self._model.config.confidence(logit)
            scored.append(
                ScoredCandidate(
                    graph.answers[best] or c.answer,
                    nodes[best],
                    confidence,
                    tuple(sorted(supporters)),
                    confidence,
                )
            )
        return sorted(scored, key=lambda s: -s.score)
