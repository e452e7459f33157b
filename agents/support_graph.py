"""The support graph of one question: the question, its retrieved documents and the candidate
answers read from them, as one small graph a GNN scores.

Nodes: 0 is the question, then one node per document (retrieval order), then one node per
candidate cluster (equivalent readings merged, agents/candidates.py). Edges, each with an
attribute vector (relation one-hot, weight, embedding cosine):

- question -> document  ``retrieved``  (weight: relevance)
- document -> candidate ``extracted``  (the reader read it there; weight: reader probability)
- document -> candidate ``supports``   (the document contains the answer; weight: overlap)
- document -> candidate ``read_support`` (the span reader found it among the document's next-best
  spans; weight: probability)
- candidate -> document ``names``      (the answer is the document's title: in a two-hop question
  that is the bridge entity, and the answer lies in the document it names)
- candidate <-> candidate ``similar``  (overlapping answers, "Broncos" / "Denver Broncos")

and the reverse of the others, so documents hear from candidates and the question from
documents. Features are numbers a reader of the graph can explain (relevance, rank, reader
probability, agreement and support counts, question-answer embedding cosine, answer shape), so a
small model trained on a few hundred questions carries over to other sets and languages.

Linked reads (the span reader reading a document together with a document whose title it names)
are candidate features: a two-hop answer the single reads find but cannot rank is often the one a
linked read picks.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch_geometric.data import Data

from agents.answer_text import coverage, tokens
from agents.candidates import Cluster, answer_key, cluster, matches, similarity
from retrieval.documents import Hit


@dataclass(frozen=True)
class Doc:
    """A retrieved document as the graph sees it."""

    chunk_id: str
    doc_id: str
    text: str
    rank: int  # 0 = best
    relevance: float  # the evidence score (dense cosine scale)
    title: str = ""  # what the document is about (its title): a candidate naming it is a bridge


@dataclass(frozen=True)
class Reading:
    """The reader's raw reply for one document and its log-probability (the generator's: mean per
    token; the span reader's: of its best span)."""

    reply: str
    logprob: float
    #: The span reader's next-best spans in this document, (answer, log P), best first: a
    #: document whose reader also found a candidate there backs it (the generator has none).
    alternatives: tuple[tuple[str, float], ...] = ()
    #: The span reader's log P("no answer"): its reply is its best span even where "no answer" is
    #: likelier, and the graph weighs the two. None for the generator, whose "unknown" is final.
    no_answer: float | None = None


@dataclass(frozen=True)
class LinkedReading:
    """The span reader's best span over two documents read as one text, the first (``first``,
    a document index) naming the second's title: a two-hop question's chain in one reading (the
    first hop's document says who or what, the second what the question asks of it)."""

    first: int
    second: int
    span: str
    logprob: float
    no_answer: float


def doc_of(hit: Hit, rank: int) -> Doc:
    """A retrieved hit as the graph sees it (its reader text, evidence score and title)."""
    return Doc(hit.chunk_id, hit.doc_id, hit.reader_text, rank, hit.evidence_score, hit.title)


#: Linked pairs read per question at most (best-ranked first documents first).
MAX_LINKED = 6


def linked_pairs(docs: Sequence[Doc], limit: int = MAX_LINKED) -> list[tuple[int, int]]:
    """(i, j) for every document i whose text names document j's title (a link, as in a
    hyperlinked encyclopedia); titles shorter than 4 characters and a document's own title (or a
    shared one) are no link."""
    titles = [_title(d) for d in docs]
    out: list[tuple[int, int]] = []
    for i, d in enumerate(docs):
        text = d.text.lower()
        for j, title in enumerate(titles):
            if i != j and len(title) >= 4 and title.lower() != titles[i].lower() and title.lower() in text:
                out.append((i, j))
    return out[:limit]


def linked_text(first: Doc, second: Doc) -> str:
    """The text a linked pair is read as: both documents, each under its title."""
    return "\n\n".join(f"{_title(d)}. {d.text}" if _title(d) else d.text for d in (first, second))


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
    "read_support",
    "read_support_rev",
    "names",
    "names_rev",
)
NODE_TYPES = ("question", "document", "candidate")
DOC_FEATURES = (
    "relevance", "relevance_gap", "inv_rank", "answered", "reader_prob", "supports_share",
    "question_coverage", "named", "titled_answer", "says_no_answer", "no_answer_margin",
    "title_in_question",
)  # fmt: skip
#: A linked read (two documents read together, the first naming the second's title) found the
#: candidate; its probability; it is the likeliest linked read's answer.
LINKED_FEATURES = ("linked_read", "linked_read_prob", "linked_most_likely")
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
    "read_support_mass",
    "read_support_share",
    "names_other",
    "own_title",
    "from_named_document",
    "says_no_answer_share",
    "no_answer_margin_min",
    "question_length",
    "asks_choice",
    "from_question_document",
    "first_answered",
    "most_read",
    "most_likely",
    # linked reads (appended last: a checkpoint trained before them reads the features before these)
    *LINKED_FEATURES,
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
QUESTION_FEATURES = (
    "answered_share",
    "clusters_share",
    "top_relevance",
    "question_length",
    "titles_in_question",
)
#: The first document-feature and candidate-feature columns of a node's features.
DOC_OFFSET = len(NODE_TYPES) + len(QUESTION_FEATURES)
CAND_OFFSET = DOC_OFFSET + len(DOC_FEATURES)
NODE_DIM = CAND_OFFSET + len(CAND_FEATURES)
#: The node features of graphs built before linked reads (checkpoints trained on them still load).
NODE_DIM_BEFORE_LINKS = NODE_DIM - len(LINKED_FEATURES)
EDGE_DIM = len(RELATIONS) + 2
#: Share of an answer's words a document must hold to support it.
SUPPORT_OVERLAP = 0.8
#: log P(no answer) - log P(answer) is clipped to +-this and scaled to [-1, 1].
NO_ANSWER_CLIP = 10.0
#: Token F1 at which a candidate names a document's title (a bridge to that document).
NAMES_F1 = 0.6


@dataclass
class SupportGraph:
    """One question's graph (``data``) and what its candidate nodes stand for."""

    question: str
    docs: list[Doc]
    answers: list[str | None]  # the reader's answer per document (None: the document has none)
    logprobs: list[float]
    clusters: list[Cluster]  # cluster i is node 1 + len(docs) + i; members index docs
    supporting: list[tuple[int, ...]]  # per cluster: the other documents that contain it or read it
    data: Data
    #: Per document: the span reader found "no answer" likelier than its answer (all False for
    #: readers that give none).
    says_none: list[bool] = field(default_factory=list)

    @property
    def first_candidate(self) -> int:
        return 1 + len(self.docs)

    def labels(self, golds: Sequence[str]) -> torch.Tensor:
        """1.0 for a cluster that holds a correct answer."""
        return torch.tensor(
            [float(any(matches(self.answers[m] or "", golds) for m in c.members)) for c in self.clusters]
        )


def likeliest_linked(graph: SupportGraph) -> int | None:
    """The cluster the likeliest linked read's span is (None: no linked read names a candidate)."""
    column = CAND_OFFSET + CAND_FEATURES.index("linked_most_likely")
    flags = graph.data.x[graph.first_candidate :, column].tolist()
    return next((i for i, flag in enumerate(flags) if flag > 0), None)


#: What a question asks for, by its wh-word (English and Chinese): the answer's shape should fit.
_ASKS = (
    ("number", re.compile(r"\bhow (many|much|long|old|far|tall|large|big)\b|多少|几")),
    ("when", re.compile(r"\bwhen\b|\bwhat (year|date|day|month|time)\b|\bwhich year\b|什么时候|哪一年|何时")),
    ("who", re.compile(r"\bwho(m|se)?\b|谁")),
    ("where", re.compile(r"\bwhere\b|哪里|在哪")),
    ("yes_no", re.compile(r"^(is|are|was|were|do|does|did|can|has|have)\b")),
    ("what", re.compile(r"\bwhat\b|\bwhich\b|什么|哪")),
)


#: A question that names its options: "Which band was formed first, The Exies or Circus Diablo?"
_CHOICE = re.compile(r"\bor\b[^?]*\?\s*$|还是", re.IGNORECASE)


def asks(question: str) -> str:
    """The kind of answer a question asks for: who, when, where, number, what, yes_no or other."""
    text = question.lower().strip()
    return next((kind for kind, pattern in _ASKS if pattern.search(text)), "other")


def _numeric(answer: str) -> bool:
    return bool(re.search(r"\d", answer)) or answer_key(answer).isdigit()


def _is_answer(span: str, c: Cluster) -> bool:
    """Another reading's span says the cluster's answer (same key, or close enough in words)."""
    return answer_key(span) == c.key or similarity(span, c.answer) >= NAMES_F1


def _read_support(
    clusters: Sequence[Cluster], others: Sequence[Sequence[tuple[str, float]]]
) -> list[list[tuple[int, float]]]:
    """Per cluster: (document, probability) for every document that did not give it as its answer
    but whose reader found it among its other spans (best match per document)."""
    out: list[list[tuple[int, float]]] = []
    for c in clusters:
        found: dict[int, float] = {}
        for di, spans in enumerate(others):
            if di in c.members:
                continue
            for span, lp in spans:
                if _is_answer(span, c):
                    found[di] = max(found.get(di, 0.0), math.exp(min(0.0, lp)))
        out.append(sorted(found.items()))
    return out


def _linked_support(
    clusters: Sequence[Cluster], linked: Sequence[LinkedReading]
) -> list[tuple[float, float, float]]:
    """Per cluster: (1.0 if a linked read's span is it, the best such span's probability, 1.0 if
    the likeliest linked read's span is it); zeros without linked reads."""
    likeliest = max(linked, key=lambda r: r.logprob, default=None)
    out: list[tuple[float, float, float]] = []
    for c in clusters:
        found = [r for r in linked if r.span and _is_answer(r.span, c)]
        best = max((math.exp(min(0.0, r.logprob)) for r in found), default=0.0)
        out.append((float(bool(found)), best, float(likeliest is not None and likeliest in found)))
    return out


def _title(doc: Doc) -> str:
    return doc.title.replace("_", " ").strip()


def _names(
    clusters: Sequence[Cluster], docs: Sequence[Doc]
) -> tuple[list[list[tuple[int, float]]], list[float]]:
    """Per cluster: the other documents whose title it names (document, similarity), and how
    closely it names its own documents' title (an answer that is its document's subject)."""
    names: list[list[tuple[int, float]]] = []
    own: list[float] = []
    for c in clusters:
        sims = [similarity(c.answer, _title(d)) if _title(d) else 0.0 for d in docs]
        names.append([(di, sim) for di, sim in enumerate(sims) if di not in c.members and sim >= NAMES_F1])
        own.append(max(sims[m] for m in c.members))
    return names, own


def first_answering(clusters: Sequence[Cluster], says_none: Sequence[bool]) -> int:
    """The cluster read from the best-ranked document whose reader prefers its answer to "no
    answer" (the top document's cluster if none does; -1 without clusters)."""

    def rank(i: int) -> tuple[int, int]:
        members = clusters[i].members
        return min((m for m in members if not says_none[m]), default=len(says_none)), min(members)

    return min(range(len(clusters)), key=rank, default=-1)


@dataclass(frozen=True)
class _Facts:
    """What one question's readings say, computed once; the feature groups and edges read it."""

    question: str
    docs: list[Doc]
    answers: list[str | None]
    logprobs: list[float]
    clusters: list[Cluster]
    probs: list[float]  # per document: P(its answer)
    margin: list[float]  # per document: log P(no answer) - log P(answer), clipped and scaled
    in_question: list[bool]  # per document: its title is named in the question (a first hop)
    named: list[bool]  # per document: some candidate names its title
    asked_share: list[float]  # per document: share of the question's content words it holds
    doc_tokens: list[set[str]]
    supports: list[list[tuple[int, float]]]  # per cluster: (document, overlap) of documents holding it
    read_support: list[list[tuple[int, float]]]  # per cluster: (document, P) of other spans matching it
    names: list[list[tuple[int, float]]]  # per cluster: (document, similarity) of titles it names
    own_title: list[float]  # per cluster: how closely it names its own documents' title
    #: per cluster: (linked reads that found it?, best P of those, the likeliest linked read found it?)
    linked: list[tuple[float, float, float]]
    vectors: np.ndarray  # the question's embedding, then each cluster's
    cosines: list[float]  # per cluster: cosine to the question

    @property
    def says_none(self) -> list[bool]:
        """Per document: the reader finds "no answer" likelier than its answer."""
        return [m > 0 for m in self.margin]

    @property
    def top(self) -> float:
        return max((d.relevance for d in self.docs), default=0.0)


def _facts(
    question: str,
    docs: list[Doc],
    answers: Sequence[str | None],
    logprobs: Sequence[float],
    embed: EmbedFn,
    alternatives: Sequence[Sequence[tuple[str, float]]] | None,
    no_answer: Sequence[float] | None,
    linked: Sequence[LinkedReading],
) -> _Facts:
    clusters = cluster([a or "" for a in answers])
    others = [list(a) for a in alternatives] if alternatives is not None else [[] for _ in docs]
    names, own_title = _names(clusters, docs)
    # how much likelier "no answer" is than the document's answer (log odds, clipped); 0 if unknown
    margin = [
        max(-NO_ANSWER_CLIP, min(NO_ANSWER_CLIP, none - lp)) / NO_ANSWER_CLIP
        if no_answer is not None
        else 0.0
        for none, lp in zip(no_answer or [0.0] * len(docs), logprobs, strict=True)
    ]
    doc_tokens = [set(tokens(d.text)) for d in docs]
    content = {t for t in tokens(question) if t not in _FUNCTION_WORDS}
    supports: list[list[tuple[int, float]]] = []
    for c in clusters:
        words = tokens(c.answer)
        overlaps = [(di, coverage(dt, words)) for di, dt in enumerate(doc_tokens) if di not in c.members]
        supports.append([(di, overlap) for di, overlap in overlaps if overlap >= SUPPORT_OVERLAP])
    if clusters:
        vectors = embed([question] + [c.answer for c in clusters])
        cosines = (vectors[1:] @ vectors[0]).tolist()
    else:
        vectors, cosines = np.zeros((0, 1), dtype=np.float32), []
    return _Facts(
        question=question,
        docs=docs,
        answers=list(answers),
        logprobs=list(logprobs),
        clusters=clusters,
        probs=[math.exp(min(0.0, lp)) for lp in logprobs],
        margin=margin,
        in_question=[
            bool(_title(d)) and coverage(set(tokens(question)), tokens(_title(d))) >= 0.8 for d in docs
        ],
        named=[any(di in dict(n) for n in names) for di in range(len(docs))],
        asked_share=[len(content & dt) / max(1, len(content)) for dt in doc_tokens],
        doc_tokens=doc_tokens,
        supports=supports,
        read_support=_read_support(clusters, others),
        linked=_linked_support(clusters, linked),
        names=names,
        own_title=own_title,
        vectors=vectors,
        cosines=cosines,
    )


def _question_length(question: str) -> float:
    return math.log1p(len(tokens(question))) / 4


def _question_features(f: _Facts) -> list[float]:
    n_docs = len(f.docs)
    answered = sum(a is not None for a in f.answers)
    return [
        answered / max(1, n_docs),
        len(f.clusters) / max(1, n_docs),
        f.top,
        _question_length(f.question),
        sum(f.in_question) / max(1, n_docs),
    ]


def _document_features(f: _Facts, di: int) -> list[float]:
    d = f.docs[di]
    n_supported = sum(any(s[0] == di for s in sup) for sup in f.supports)
    return [
        d.relevance,
        d.relevance - f.top,
        1.0 / (d.rank + 1),
        float(f.answers[di] is not None),
        f.probs[di] if f.answers[di] is not None else 0.0,
        n_supported / max(1, len(f.clusters)),
        f.asked_share[di],
        float(f.named[di]),
        float(any(f.own_title[ci] >= NAMES_F1 and di in c.members for ci, c in enumerate(f.clusters))),
        float(f.says_none[di]),
        f.margin[di],
        float(f.in_question[di]),
    ]


def _candidate_features(f: _Facts, ci: int, picks: tuple[int, int, int]) -> list[float]:
    """``picks``: the clusters the first answering document, the vote and the most confident
    reading would choose (-1 / the largest cluster size / -1 where there is none)."""
    first_answered, most_read, most_likely = picks
    c = f.clusters[ci]
    members = list(c.members)
    n_docs = len(f.docs)
    words = tokens(c.answer)
    sims = [similarity(c.answer, o.answer) for o in f.clusters if o is not c]
    best_coverage = max(f.asked_share, default=0.0)
    asked, wants = set(tokens(f.question)), asks(f.question)
    return [
        max(f.probs[m] for m in members),
        sum(f.logprobs[m] for m in members) / len(members),
        float(len(members)),
        len(members) / max(1, n_docs),
        len(f.supports[ci]) / max(1, n_docs),
        1.0 / (min(f.docs[m].rank for m in members) + 1),
        max(f.docs[m].relevance for m in members),
        sum(f.docs[m].relevance for m in members),
        f.cosines[ci],
        sum(w in asked for w in words) / max(1, len(words)),
        math.log1p(len(words)),
        float(_numeric(c.answer)),
        float(any(coverage(f.doc_tokens[m], words) >= 0.99 for m in members)),
        max(sims, default=0.0),
        sum(w[:1].isupper() for w in c.answer.split()) / max(1, len(c.answer.split())),
        float(bool(re.search(r"\b(1\d{3}|20\d{2})\b", c.answer))),
        *(float(kind == wants) for kind in ("who", "when", "where", "number", "what", "yes_no")),
        max(f.asked_share[m] for m in members),
        max(f.asked_share[m] for m in members) - best_coverage,
        sum(p for _, p in f.read_support[ci]),
        len(f.read_support[ci]) / max(1, n_docs),
        max((sim for _, sim in f.names[ci]), default=0.0),
        f.own_title[ci],
        float(any(f.named[m] for m in members)),
        sum(f.says_none[m] for m in members) / len(members),
        min(f.margin[m] for m in members),
        _question_length(f.question),
        float(bool(_CHOICE.search(f.question))),
        float(any(f.in_question[m] for m in members)),
        float(ci == first_answered),
        float(len(members) == most_read),
        float(ci == most_likely),
        *f.linked[ci],
    ]


def _edges(f: _Facts) -> tuple[list[int], list[int], list[list[float]]]:
    """(sources, targets, attributes): every relation and its reverse (``similar`` both ways)."""
    src: list[int] = []
    dst: list[int] = []
    attrs: list[list[float]] = []
    first = 1 + len(f.docs)

    def edge(a: int, b: int, relation: str, weight: float, cosine: float = 0.0) -> None:
        onehot = [0.0] * len(RELATIONS)
        onehot[RELATIONS.index(relation)] = 1.0
        src.append(a)
        dst.append(b)
        attrs.append([*onehot, weight, cosine])

    for di, d in enumerate(f.docs):
        edge(0, 1 + di, "retrieved", d.relevance)
        edge(1 + di, 0, "retrieved_rev", d.relevance)
    for ci, c in enumerate(f.clusters):
        node = first + ci
        for m in c.members:
            edge(1 + m, node, "extracted", f.probs[m], f.cosines[ci])
            edge(node, 1 + m, "extracted_rev", f.probs[m], f.cosines[ci])
        for di, overlap in f.supports[ci]:
            edge(1 + di, node, "supports", overlap)
            edge(node, 1 + di, "supports_rev", overlap)
        for di, prob in f.read_support[ci]:
            edge(1 + di, node, "read_support", prob)
            edge(node, 1 + di, "read_support_rev", prob)
        for di, sim in f.names[ci]:
            edge(node, 1 + di, "names", sim)
            edge(1 + di, node, "names_rev", sim)
        for cj, other in enumerate(f.clusters):
            if cj != ci:
                sim = similarity(c.answer, other.answer)
                if sim > 0:
                    edge(node, first + cj, "similar", sim, float(f.vectors[1 + ci] @ f.vectors[1 + cj]))
    return src, dst, attrs


def build_graph(
    question: str,
    docs: Sequence[Doc],
    answers: Sequence[str | None],
    logprobs: Sequence[float],
    embed: EmbedFn,
    alternatives: Sequence[Sequence[tuple[str, float]]] | None = None,
    no_answer: Sequence[float] | None = None,
    linked: Sequence[LinkedReading] = (),
) -> SupportGraph:
    """The support graph for ``question``: ``answers[i]`` is what the reader read in ``docs[i]``
    (log P ``logprobs[i]``); the span reader also gives ``alternatives[i]``, its other spans there
    (answer, log P), ``no_answer[i]``, its log P("no answer"), and ``linked``, its readings of
    linked pairs of the documents (see ``linked_pairs``)."""
    f = _facts(question, list(docs), answers, logprobs, embed, alternatives, no_answer, linked)
    n_docs, clusters = len(f.docs), f.clusters
    first = 1 + n_docs
    # what the simple aggregators would pick, as flags: the GNN starts from what a baseline sees
    picks = (
        first_answering(clusters, f.says_none),
        max((len(c.members) for c in clusters), default=0),
        max(range(len(clusters)), key=lambda i: max(f.logprobs[m] for m in clusters[i].members), default=-1),
    )
    x = torch.zeros(first + len(clusters), NODE_DIM)
    q_off, d_off = len(NODE_TYPES), DOC_OFFSET
    c_off = CAND_OFFSET
    x[0, 0] = 1.0
    x[0, q_off:d_off] = torch.tensor(_question_features(f))
    for di in range(n_docs):
        x[1 + di, 1] = 1.0
        x[1 + di, d_off:c_off] = torch.tensor(_document_features(f, di))
    for ci in range(len(clusters)):
        x[first + ci, 2] = 1.0
        x[first + ci, c_off:] = torch.tensor(_candidate_features(f, ci, picks))
    src, dst, attrs = _edges(f)
    data = Data(
        x=x,
        edge_index=torch.tensor([src, dst], dtype=torch.long).reshape(2, -1),
        edge_attr=torch.tensor(attrs, dtype=torch.float).reshape(-1, EDGE_DIM),
    )
    data.candidate_mask = torch.zeros(first + len(clusters), dtype=torch.bool)
    data.candidate_mask[first:] = True
    # the documents that back a cluster: they contain it, or their reader found it there too
    supporting = [
        tuple(sorted({di for di, _ in sup} | {di for di, _ in read}))
        for sup, read in zip(f.supports, f.read_support, strict=True)
    ]
    return SupportGraph(question, f.docs, f.answers, f.logprobs, clusters, supporting, data, f.says_none)
