"""The blend FAQ scorer (agents/faq_reranker.py), its training, `ragnet eval faq` and
`ragnet data faq-banking`. Hermetic: the shipped MiniLM and blend checkpoint, temp folders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from agents.faq_match import CosineScorer, rank_matches
from agents.faq_reranker import (
    DEFAULT_RERANKER,
    FEATURES,
    BlendScorer,
    BlendWeights,
    RerankerCheckpointError,
    lazy,
    load_weights,
)
from agents.reranker_training import Example, pick_threshold, precision_curve, train_blend
from api.cli import main
from api.evaluation.faq_data import write_faq_banking
from api.services import Services
from api.settings import Settings
from retrieval.documents import Hit
from retrieval.embedder import SentenceTransformerEmbedder

FAQS = [
    ("faq-card", "My card has not arrived yet, where is it?", "Cards arrive within 5 working days."),
    ("faq-pin", "How do I change my PIN?", "Change your PIN at any ATM."),
    ("faq-fee", "Why was I charged a fee for a transfer?", "International transfers cost 1 EUR."),
]


@pytest.fixture(scope="module")
def encode(embedder: SentenceTransformerEmbedder):
    return lambda texts: embedder.embed(list(texts), kind="query")


def _hits(query: str, encode, faqs=FAQS) -> list[Hit]:
    q = encode([query])[0]
    vectors = encode([f[1] for f in faqs])
    hits = [
        Hit(f"c-{i}", fid, question, question, "faq", 0, float(v @ q), relevance=float(v @ q), answer=answer)
        for i, ((fid, question, answer), v) in enumerate(zip(faqs, vectors, strict=True))
    ]
    return sorted(hits, key=lambda h: -h.score)


def test_shipped_checkpoint_loads_and_is_small() -> None:
    weights = load_weights(DEFAULT_RERANKER)
    assert set(weights.features) <= set(FEATURES) and 0.0 < weights.threshold < 1.0
    assert (DEFAULT_RERANKER / "DATA_CARD.md").is_file()
    assert sum(p.stat().st_size for p in DEFAULT_RERANKER.iterdir()) < 30_000_000


def test_bad_checkpoint_is_refused(tmp_path: Path) -> None:
    (tmp_path / "weights.json").write_text('{"format": "other"}')
    with pytest.raises(RerankerCheckpointError):
        load_weights(tmp_path)


def test_paraphrase_ranks_above_distractor(encode) -> None:
    scorer = BlendScorer(encoder=encode)
    query = "I am still waiting for my new card to come"
    hits = _hits(query, encode)
    matches = rank_matches(query, [("kb", h) for h in hits], scorer)
    assert matches[0].faq_id == "faq-card"
    assert matches[0].score > matches[1].score
    assert all(0.0 <= m.score <= 1.0 for m in matches)
    assert scorer.score(query, hits) == scorer.score(query, hits)  # deterministic (and cached)
    assert scorer.score(query, []) == []


def test_threshold_semantics(encode) -> None:
    scorer = BlendScorer(encoder=encode)
    assert scorer.default_threshold == load_weights(DEFAULT_RERANKER).threshold
    assert BlendScorer(encoder=encode, default_threshold=0.5).default_threshold == 0.5
    # A question no FAQ covers stays under the verbatim threshold.
    unrelated = "What is the boiling point of water on Mount Everest?"
    assert max(scorer.score(unrelated, _hits(unrelated, encode))) < scorer.default_threshold
    # The same question, asked again, clears it.
    same = "How do I change my PIN?"
    scores = scorer.score(same, _hits(same, encode))
    assert max(scores) >= scorer.default_threshold


def test_lazy_encoder_loads_on_first_score(encode) -> None:
    calls = []

    def factory():
        calls.append(1)
        return encode

    scorer = BlendScorer(encoder=lazy(factory))
    assert calls == []
    scorer.score("How do I change my PIN?", _hits("How do I change my PIN?", encode))
    assert calls == [1]


def test_services_pick_the_scorer(settings: Settings, embedder: SentenceTransformerEmbedder) -> None:
    assert isinstance(Services(settings, embedder=embedder).faq_scorer, BlendScorer)
    cosine = Services(settings.model_copy(update={"faq_scorer": "cosine"}), embedder=embedder)
    assert isinstance(cosine.faq_scorer, CosineScorer)


def test_training_fits_and_saves(encode, tmp_path: Path) -> None:
    queries = [
        ("my card still has not come", "faq-card"),
        ("where is my card, it has not arrived", "faq-card"),
        ("I want a new PIN number", "faq-pin"),
        ("how can I reset my pin", "faq-pin"),
        ("there is an extra charge on my transfer", "faq-fee"),
        ("why did the transfer cost me money", "faq-fee"),
        ("what time is it in Tokyo", ""),
    ]
    examples = [Example(q, gold, tuple(_hits(q, encode))) for q, gold in queries]
    blank = BlendWeights(FEATURES, (0.0,) * len(FEATURES), 0.0, 0.5)
    weights, report = train_blend(examples, BlendScorer(weights=blank, encoder=encode))
    assert report["examples"] == 21 and report["positives"] == 6
    weights.save(tmp_path)
    loaded = BlendScorer(tmp_path, encoder=encode)
    assert loaded.default_threshold == pytest.approx(weights.threshold, abs=1e-4)


def test_threshold_pick_ignores_noise_at_the_top() -> None:
    best = list(np.linspace(0.99, 0.01, 100))
    correct = [i != 2 for i in range(100)]  # one error among the top scores: noise
    correct[60:] = [i % 2 == 0 for i in range(40)]  # the bottom is a coin toss
    curve = precision_curve(best, correct, [True] * 100)
    t = pick_threshold(curve, 0.95, min_answered=20)
    assert 0.3 < t < 0.5
    assert curve[0]["coverage"] <= curve[-1]["coverage"] + 1  # well-formed points


def _tiny_banking(folder: Path) -> Path:
    rows = []
    texts = {
        "card_arrival": [
            "My new card has still not arrived in the post",
            "where is my card",
            "card not here yet",
        ],
        "change_pin": ["How can I change the PIN of my card please", "new pin please", "reset my pin"],
        "transfer_fee": ["Why did I pay a fee for my bank transfer", "transfer fee?", "charged for transfer"],
        "lost_card": ["I have lost my card somewhere in town today", "card lost", "cannot find my card"],
    }
    for label, messages in texts.items():
        rows += [{"id": f"{label}-{i}", "text": t, "label": label} for i, t in enumerate(messages)]
    path = folder / "intents" / "banking77" / "train.jsonl"
    path.parent.mkdir(parents=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def test_data_command_writes_dev_and_test(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _tiny_banking(tmp_path / "shared")
    out = tmp_path / "faq"
    assert main(["data", "faq-banking", "--data", str(data), "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["dev"]["faqs"] == 2 and summary["test"]["faqs"] == 2
    dev = [json.loads(x) for x in (out / "dev" / "faqs.jsonl").read_text().splitlines()]
    test = [json.loads(x) for x in (out / "test" / "faqs.jsonl").read_text().splitlines()]
    assert not {f["id"] for f in dev} & {f["id"] for f in test}  # intents split, not messages
    assert all(f["question"] and f["metadata"]["intent"] in f["answer"] for f in dev)
    queries = [json.loads(x) for x in (out / "dev" / "queries.jsonl").read_text().splitlines()]
    assert queries and {q["faq_id"] for q in queries} <= {f["id"] for f in dev}
    assert not {q["query"] for q in queries} & {f["question"] for f in dev}
    assert json.loads((out / "split.json").read_text())["seed"] == 13
    again = write_faq_banking(data, tmp_path / "again")  # deterministic
    assert (tmp_path / "again" / "dev" / "queries.jsonl").read_text() == (
        out / "dev" / "queries.jsonl"
    ).read_text() and again["dev"] == summary["dev"]


def test_eval_faq_json(settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setenv("RAGNET_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("RAGNET_EMBEDDER", "all-MiniLM-L6-v2")
    monkeypatch.setenv("RAGNET_AUTH", "none")
    faqs, queries, unmatched = tmp_path / "faqs.jsonl", tmp_path / "queries.jsonl", tmp_path / "none.jsonl"
    faqs.write_text("".join(json.dumps({"id": i, "question": q, "answer": a}) + "\n" for i, q, a in FAQS))
    qs = [("where is my card? it never came", "faq-card"), ("I need to change my pin", "faq-pin")]
    queries.write_text("".join(json.dumps({"query": q, "faq_id": f}) + "\n" for q, f in qs))
    unmatched.write_text(json.dumps({"query": "what is the weather in Paris", "faq_id": ""}) + "\n")
    for scorer in ("blend", "cosine"):
        argv = ["eval", "faq", "--kb", "faqs", "--faqs", str(faqs), "--queries", str(queries)]
        assert main([*argv, "--unmatched", str(unmatched), "--scorer", scorer, "--json"]) == 0
        r = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        for key in ("n", "mode", "top1", "recall@5", "mrr", "p50_ms"):  # the fields eval faq always had
            assert key in r
        assert r["n"] == 2 and r["scorer"] == scorer and r["unmatched"] == 1
        for key in ("scorer_top1", "threshold", "precision", "coverage", "scoring_p50_ms", "scoring_p95_ms"):
            assert isinstance(r[key], float)
        assert r["curve"] and set(r["curve"][0]) >= {"threshold", "precision", "coverage"}
    assert r["scorer_top1"] == r["top1"]  # cosine keeps the search's order
