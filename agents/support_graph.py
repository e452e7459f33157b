"""The support graph of one question: the question, its retrieved documents and the candidate
answers read from them, as one small graph a GNN scores.

Nodes: 0 is the question, then one node per document (retrieval order), then one node per
candidate cluster (equivalent readings merged, agents/candidates.py). Edges, each with an
attribute vector (relation one-hot, weight, embedding cosine):

- question -> document  ``retrieved``  (weight: relevance)
- document -> candidate ``extracted``  (the reader read it there; weight: reader probability)
- document -> candidate ``supports``   (the document contains the answer; weight: overlap)
- candidate <-> candidate ``similar``  (overlapping answers, "Broncos" / "Denver Broncos")

and the reverse of the first three, so documents hear from candidates and the question from
documents. Features are numbers a reader of the graph can explain (relevance, rank, reader
probability, agreement and support counts, question-answer embedding cosine, answer shape), so a
small model trained on a few hundred questions carries over to other sets and languages.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch_geometric.data import Data

from agents.answer_text import coverage, tokens
from agents.candidates import Cluster, answer_key, cluster, matches, similarity


@dataclass(frozen=True)
class Doc:
    """A retrieved document as the graph sees it."""

    chunk_id: str
    doc_id: str
    text: str
    rank: int  # 0 = best
    relevance: float  # the evidence score (dense cosine scale)


@dataclass(frozen=True)
class Reading:
    """The reader's raw reply for one document and its mean token log-probability."""

    reply: str
    logprob: float


#: Embeds texts as queries: (n, dim) L2-normalised. The embedder of the knowledge base.
EmbedFn = Callable[[Sequence[str]], np.ndarray]

RELATIONS = (
    "retrieved",
    "extracted",
    "supports",
    "similar",
    "retrieved_rev",
    "extracted_rev",
    "supports_rev",
)
NODE_TYPES = ("question", "document", "candidate")
DOC_FEATURES = (
    "relevance", "relevance_gap", "inv_rank", "answered", "reader_prob", "supports_share",
    "question_coverage",
)  # fmt: skip
CAND_FEATURES = (
    "reader_prob_max",
    "reader_logprob_mean",
    "extracted_count",
    "extracted_share",
    "supported_share",
    "inv_best_rank",
    "best_relevance",
    "extracted_relevance_sum",
    "question_cosine",
    "echo_share",
    "log_length",
    "numeric",
    "in_own_document",
    "max_similar",
    "capitalised_share",
    "has_year",
    *(f"asks_{kind}" for kind in ("who", "when", "where", "number", "what", "yes_no")),
    "question_coverage_max",
    "question_coverage_gap",
)
#: Words that say nothing about what a question is about (for question coverage).
_FUNCTION_WORDS = frozenset(
    [
        "a",
        "an",
        "the",
        "of",
        "in",
        "on",
        "at",
        "to",
        "for",
        "by",
        "with",
        "from",
        "and",
        "or",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "did",
        "do",
        "does",
        "what",
        "which",
        "who",
        "whom",
        "whose",
        "when",
        "where",
        "why",
        "how",
        "many",
        "much",
        "that",
        "this",
        "it",
        "its",
        "as",
        "into",
        "than",
        "his",
        "her",
        "their",
        "he",
        "she",
        "they",
    ]
)
QUESTION_FEATURES = ("answered_share", "clusters_share", "top_relevance")
NODE_DIM = len(NODE_TYPES) + len(QUESTION_FEATURES) + len(DOC_FEATURES) + len(CAND_FEATURES)
EDGE_DIM = len(RELATIONS) + 2
#: Share of an answer's words a document must hold to support it.
SUPPORT_OVERLAP = 0.8


@dataclass
class SupportGraph:
    """One question's graph (``data``) and what its candidate nodes stand for."""

    question: str
    docs: list[Doc]
    answers: list[str | None]  # the reader's answer per document (None: the document has none)
    logprobs: list[float]
    clusters: list[Cluster]  # cluster i is node 1 + len(docs) + i; members index docs
    supporting: list[tuple[int, ...]]  # per cluster: the other documents that contain it
    data: Data

    @property
    def first_candidate(self) -> int:
        return 1 + len(self.docs)

    def labels(self, golds: Sequence[str]) -> torch.Tensor:
        """1.0 for a cluster that holds a correct answer."""
        return torch.tensor(
            [float(any(matches(self.answers[m] or "", golds) for m in c.members)) for c in self.clusters]
        )


#: What a question asks for, by its wh-word (English and Chinese): the answer's shape should fit.
_ASKS = (
    ("number", re.compile(r"\bhow (many|much|long|old|far|tall|large|big)\b|多少|几")),
    ("when", re.compile(r"\bwhen\b|\bwhat (year|date|day|month|time)\b|\bwhich year\b|什么时候|哪一年|何时")),
    ("who", re.compile(r"\bwho(m|se)?\b|谁")),
    ("where", re.compile(r"\bwhere\b|哪里|在哪")),
    ("yes_no", re.compile(r"^(is|are|was|were|do|does|did|can|has|have)\b")),
    ("what", re.compile(r"\bwhat\b|\bwhich\b|什么|哪")),
)


def asks(question: str) -> str:
    """The kind of answer a question asks for: who, when, where, number, what, yes_no or other."""
    text = question.lower().strip()
    return next((kind for kind, pattern in _ASKS if pattern.search(text)), "other")


def _numeric(answer: str) -> bool:
    return bool(re.search(r"\d", answer)) or answer_key(answer).isdigit()


def build_graph(
    question: str,
    docs: Sequence[Doc],
    answers: Sequence[str | None],
    logprobs: Sequence[float],
    embed: EmbedFn,
) -> SupportGraph:
    """The support graph for ``question``: ``answers[i]`` is what the reader read in ``docs[i]``."""
    docs = list(docs)
    n_docs = len(docs)
    clusters = cluster([a or "" for a in answers])
    n_c = len(clusters)
    first = 1 + n_docs
    x = torch.zeros(first + n_c, NODE_DIM)
    q_off = len(NODE_TYPES)
    d_off = q_off + len(QUESTION_FEATURES)
    c_off = d_off + len(DOC_FEATURES)
    probs = [math.exp(min(0.0, lp)) for lp in logprobs]
    doc_tokens = [set(tokens(d.text)) for d in docs]
    asked = set(tokens(question))
    top = max((d.relevance for d in docs), default=0.0)
    wants = asks(question)
    content = {t for t in tokens(question) if t not in _FUNCTION_WORDS}
    asked_share = [len(content & dt) / max(1, len(content)) for dt in doc_tokens]
    best_coverage = max(asked_share, default=0.0)

    if n_c:
        vectors = embed([question] + [c.answer for c in clusters])
        cosines = (vectors[1:] @ vectors[0]).tolist()
    else:
        vectors, cosines = np.zeros((0, 1), dtype=np.float32), []

    src: list[int] = []
    dst: list[int] = []
    attrs: list[list[float]] = []

    def edge(a: int, b: int, relation: str, weight: float, cosine: float = 0.0) -> None:
        onehot = [0.0] * len(RELATIONS)
        onehot[RELATIONS.index(relation)] = 1.0
        src.append(a)
        dst.append(b)
        attrs.append([*onehot, weight, cosine])

    supports: list[list[tuple[int, float]]] = [[] for _ in clusters]  # (doc, overlap)
    for ci, c in enumerate(clusters):
        words = tokens(c.answer)
        for di in range(n_docs):
            if di in c.members:
                continue
            overlap = coverage(doc_tokens[di], words)
            if overlap >= SUPPORT_OVERLAP:
                supports[ci].append((di, overlap))

    # question node
    x[0, 0] = 1.0
    answered = sum(a is not None for a in answers)
    x[0, q_off : q_off + 3] = torch.tensor([answered / max(1, n_docs), n_c / max(1, n_docs), top])
    # document nodes
    for di, d in enumerate(docs):
        node = 1 + di
        x[node, 1] = 1.0
        n_supported = sum(any(s[0] == di for s in sup) for sup in supports)
        x[node, d_off : d_off + len(DOC_FEATURES)] = torch.tensor(
            [
                d.relevance,
                d.relevance - top,
                1.0 / (d.rank + 1),
                float(answers[di] is not None),
                probs[di] if answers[di] is not None else 0.0,
                n_supported / max(1, n_c),
                asked_share[di],
            ]
        )
        edge(0, node, "retrieved", d.relevance)
        edge(node, 0, "retrieved_rev", d.relevance)
    # candidate nodes
    for ci, c in enumerate(clusters):
        node = first + ci
        x[node, 2] = 1.0
        members = list(c.members)
        member_probs = [probs[m] for m in members]
        words = tokens(c.answer)
        sims = [similarity(c.answer, o.answer) for o in clusters if o is not c]
        x[node, c_off : c_off + len(CAND_FEATURES)] = torch.tensor(
            [
                max(member_probs),
                sum(logprobs[m] for m in members) / len(members),
                float(len(members)),
                len(members) / max(1, n_docs),
                len(supports[ci]) / max(1, n_docs),
                1.0 / (min(docs[m].rank for m in members) + 1),
                max(docs[m].relevance for m in members),
                sum(docs[m].relevance for m in members),
                cosines[ci],
                sum(w in asked for w in words) / max(1, len(words)),
                math.log1p(len(words)),
                float(_numeric(c.answer)),
                float(any(coverage(doc_tokens[m], words) >= 0.99 for m in members)),
                max(sims, default=0.0),
                sum(w[:1].isupper() for w in c.answer.split()) / max(1, len(c.answer.split())),
                float(bool(re.search(r"\b(1\d{3}|20\d{2})\b", c.answer))),
                *(float(kind == wants) for kind in ("who", "when", "where", "number", "what", "yes_no")),
                max(asked_share[m] for m in members),
                max(asked_share[m] for m in members) - best_coverage,
            ]
        )
        for m in members:
            edge(1 + m, node, "extracted", probs[m], cosines[ci])
            edge(node, 1 + m, "extracted_rev", probs[m], cosines[ci])
        for di, overlap in supports[ci]:
            edge(1 + di, node, "supports", overlap)
            edge(node, 1 + di, "supports_rev", overlap)
        for cj, other in enumerate(clusters):
            if cj != ci:
                sim = similarity(c.answer, other.answer)
                if sim > 0:
                    edge(node, first + cj, "similar", sim, float(vectors[1 + ci] @ vectors[1 + cj]))

    data = Data(
        x=x,
        edge_index=torch.tensor([src, dst], dtype=torch.long).reshape(2, -1),
        edge_attr=torch.tensor(attrs, dtype=torch.float).reshape(-1, EDGE_DIM),
    )
    data.candidate_mask = torch.zeros(first + n_c, dtype=torch.bool)
    data.candidate_mask[first:] = True
    supporting = [tuple(di for di, _ in sup) for sup in supports]
    return SupportGraph(question, docs, list(answers), list(logprobs), clusters, supporting, data)
