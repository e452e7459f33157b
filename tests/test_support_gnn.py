"""Candidate answers, the support graph and the support GNN: shapes, training, checkpoints,
determinism, batched reading with confidences, and the CLI that trains and evaluates it."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from agents import support_gnn
from agents.candidates import answer_key, cluster, matches
from agents.generation.base import GenerationRequest
from agents.generation.transformers_backend import TransformersGenerator
from agents.gnn_training import Example, train
from agents.reading import Candidate
from agents.support_gnn import CheckpointError, GnnConfig, GnnSupportScorer, SupportGNN, candidate_logits
from agents.support_graph import (
    CAND_FEATURES,
    CAND_OFFSET,
    DOC_FEATURES,
    DOC_OFFSET,
    EDGE_DIM,
    NODE_DIM,
    NODE_DIM_BEFORE_LINKS,
    RELATIONS,
    Doc,
    LinkedReading,
    build_graph,
    likeliest_linked,
    linked_pairs,
    linked_text,
)
from api.cli import main
from api.evaluation.aggregate import gap_closed, pick_top_answered, pick_top_doc
from api.settings import Settings
from retrieval.documents import Hit
from tests.conftest import AskWith


def embed(texts: Sequence[str]) -> np.ndarray:
    """A stand-in for the embedder: character trigram counts hashed into 32 dimensions."""
    out = np.zeros((len(texts), 32), dtype=np.float32)
    for i, text in enumerate(texts):
        t = f"  {text.lower()} "
        for j in range(len(t) - 2):
            out[i, sum(map(ord, t[j : j + 3])) % 32] += 1
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


DOCS = [
    Doc("c0", "d0", "Super Bowl 50 was won by the Denver Broncos, who beat the Carolina Panthers.", 0, 0.91),
    Doc("c1", "d1", "The Denver Broncos won their third Super Bowl title in 2016.", 1, 0.88),
    Doc("c2", "d2", "The Carolina Panthers lost; the Denver Broncos defense was the best.", 2, 0.84),
]


def six_node_graph():  # type: ignore[no-untyped-def]
    # question + 3 documents + 2 candidate clusters ("Denver Broncos" read twice)
    return build_graph(
        "Who won Super Bowl 50?", DOCS, ["Denver Broncos", "the Denver Broncos", "Carolina Panthers"],
        [-0.1, -0.3, -1.6], embed,
    )  # fmt: skip


# --- candidates ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("308 points", "308"),
        ("May 7, 2023", "7 May 2023"),
        ("the U.S.", "United States"),
        ("three", "3"),
        ("in 1990", "1990"),
        ("1,000", "1000"),
        ("The Denver Broncos.", "denver broncos"),
    ],
)
def test_equivalent_spellings_share_a_key(a: str, b: str) -> None:
    assert answer_key(a) == answer_key(b)


def test_clusters_and_gold_matching() -> None:
    clusters = cluster(["308", "308 points", "11", "unknown words", "three", "3"])
    assert [(c.answer, c.members) for c in clusters] == [
        ("308", (0, 1)),
        ("11", (2,)),
        ("unknown words", (3,)),
        ("three", (4, 5)),
    ]
    assert matches("Stanley Hall", ["G. Stanley Hall"])  # token F1 0.8
    assert not matches("Hall", ["G. Stanley Hall"])  # 0.5
    assert matches("4分钟", ["4分钟"]) and not matches("", ["x"])


# --- the graph ----------------------------------------------------------------------------------
def test_six_node_graph_has_known_shapes() -> None:
    g = six_node_graph()
    data = g.data
    assert data.x.shape == (6, NODE_DIM)
    assert [c.answer for c in g.clusters] == ["Denver Broncos", "Carolina Panthers"]
    assert g.first_candidate == 4 and data.candidate_mask.tolist() == [False] * 4 + [True] * 2
    relations = [RELATIONS[int(a[: len(RELATIONS)].argmax())] for a in data.edge_attr]
    counts = {r: relations.count(r) for r in set(relations)}
    # 3 retrieved, 3 extracted, doc 2 contains "Denver Broncos" (supports), doc 0 "Carolina Panthers"
    assert counts == {
        "retrieved": 3, "retrieved_rev": 3, "extracted": 3, "extracted_rev": 3,
        "supports": 2, "supports_rev": 2,
    }  # fmt: skip
    assert data.edge_index.shape == (2, 16) and data.edge_attr.shape == (16, EDGE_DIM)
    assert g.supporting == [(2,), (0,)]
    assert g.labels(["Denver Broncos"]).tolist() == [1.0, 0.0]


def test_bridges_other_spans_and_no_answer_margins_are_in_the_graph() -> None:
    docs = [
        Doc("c0", "d0", "Kerry Saxby-Junna (born 1961) is a race walker born in Young, New South Wales.", 0,
            0.9, "Kerry Saxby-Junna"),
        Doc("c1", "d1", "Young is a town in New South Wales. At the 2011 census it had 6,960 people.", 1, 0.8,
            "Young, New South Wales"),
        Doc("c2", "d2", "Blennerville is a village; about 6,960 or 141 people live there.", 2, 0.7,
            "Blennerville"),
    ]  # fmt: skip
    g = build_graph(
        "What was the population of the town where Kerry Saxby-Junna was born?",
        docs,
        ["Young, New South Wales", "6,960", "141"],
        [-0.5, -0.4, -3.0],
        embed,
        alternatives=[[], [("Young", -6.0)], [("6,960", -2.0)]],
        no_answer=[-5.0, -4.0, 0.0],
    )
    relations = [RELATIONS[int(a[: len(RELATIONS)].argmax())] for a in g.data.edge_attr]
    assert relations.count("names") == 1 and relations.count("names_rev") == 1  # Young... names d1
    assert relations.count("read_support") == 1  # d2's reader also found "6,960"
    named = next(i for i, r in enumerate(relations) if r == "names")
    assert g.data.edge_index[:, named].tolist() == [g.first_candidate, 2]  # candidate 0 -> document d1

    def doc(i: int, name: str) -> float:
        return float(g.data.x[1 + i, DOC_OFFSET + DOC_FEATURES.index(name)])

    def cand(i: int, name: str) -> float:
        return _cand(g, i, name)

    assert [doc(i, "named") for i in range(3)] == [0.0, 1.0, 0.0]
    assert [doc(i, "title_in_question") for i in range(3)] == [1.0, 0.0, 0.0]
    assert [doc(i, "says_no_answer") for i in range(3)] == [0.0, 0.0, 1.0]
    assert doc(2, "no_answer_margin") == pytest.approx(0.3) and doc(0, "no_answer_margin") == pytest.approx(
        -0.45
    )
    assert cand(0, "names_other") == 1.0 and cand(1, "names_other") == 0.0
    assert cand(1, "from_named_document") == 1.0 and cand(0, "from_question_document") == 1.0
    assert cand(1, "read_support_mass") == pytest.approx(np.exp(-2.0), abs=1e-6)
    assert cand(1, "read_support_share") == pytest.approx(1 / 3) and cand(2, "read_support_share") == 0.0
    assert g.supporting[1] == (2,)  # d2 holds "6,960" too
    # what the simple aggregators pick, flagged: the first document that answers, the likeliest
    assert [cand(i, "first_answered") for i in range(3)] == [1.0, 0.0, 0.0]
    assert [cand(i, "most_likely") for i in range(3)] == [0.0, 1.0, 0.0]
    assert g.says_none == [False, False, True]
    assert pick_top_answered(g) == 0 and pick_top_doc(g) == 0
    unsure_top = build_graph(g.question, docs, g.answers, g.logprobs, embed, no_answer=[0.0, -4.0, 0.0])
    assert unsure_top.says_none == [True, False, True]
    assert pick_top_answered(unsure_top) == 1 and pick_top_doc(unsure_top) == 0
    # without titles, other spans or margins, none of that is claimed
    bare = build_graph(g.question, [replace(d, title="") for d in docs], g.answers, g.logprobs, embed)
    assert bare.data.x.shape == g.data.x.shape
    assert bare.data.edge_index.shape[1] < g.data.edge_index.shape[1]


BRIDGE_DOCS = [
    Doc("c0", "d0", "Diamond Cut is the third album by Welsh singer Bonnie Tyler, out in 1979.", 0, 0.9,
        "Diamond Cut"),
    Doc("c1", "d1", "Bonnie Tyler (born 8 June 1951) is a Welsh singer with a husky voice.", 1, 0.8,
        "Bonnie Tyler"),
    Doc("c2", "d2", "Susanna Dalton sang in 1972 on the album Diamond Cut's B-side.", 2, 0.7,
        "Susanna Dalton"),
    Doc("c3", "d3", "Diamond Cut is also a jewellery term; Bonnie Tyler wore one.", 3, 0.6, "Diamond Cut"),
]  # fmt: skip
BRIDGE_Q = "When was the Welsh singer born whose third album is Diamond Cut?"


def _cand(g, i: int, name: str) -> float:  # type: ignore[no-untyped-def]
    return float(g.data.x[g.first_candidate + i, CAND_OFFSET + CAND_FEATURES.index(name)])


def test_linked_pairs_are_documents_that_name_another_documents_title() -> None:
    # d0 and d3 name "Bonnie Tyler", d2 names "Diamond Cut" (twice: d0 and d3); d0 and d3 share a
    # title, so neither links to the other; titles of under 4 characters link nothing
    assert linked_pairs(BRIDGE_DOCS) == [(0, 1), (2, 0), (2, 3), (3, 1)]
    assert linked_pairs(BRIDGE_DOCS, limit=2) == [(0, 1), (2, 0)]
    assert linked_pairs([replace(d, title="Tyl") for d in BRIDGE_DOCS]) == []
    assert linked_pairs([replace(d, title="") for d in BRIDGE_DOCS]) == []
    text = linked_text(BRIDGE_DOCS[0], BRIDGE_DOCS[1])
    assert text.startswith("Diamond Cut. Diamond Cut is") and "\n\nBonnie Tyler. Bonnie Tyler (born" in text


def test_linked_reads_are_candidate_features_an_older_checkpoint_ignores(tmp_path: Path) -> None:
    answers = ["Bonnie Tyler", "8 June 1951", "1972", "Bonnie Tyler"]
    linked = [
        LinkedReading(0, 1, "8 June 1951", -0.4, -9.0),
        LinkedReading(3, 1, "born 8 June 1951", -1.2, -8.0),
        LinkedReading(2, 0, "1979", -2.0, -3.0),  # matches no candidate: adds none
    ]
    g = build_graph(BRIDGE_Q, BRIDGE_DOCS, answers, [-0.1, -1.5, -3.0, -0.2], embed, linked=linked)
    plain = build_graph(BRIDGE_Q, BRIDGE_DOCS, answers, [-0.1, -1.5, -3.0, -0.2], embed)
    keys = [c.answer for c in g.clusters]
    date, tyler = keys.index("8 June 1951"), keys.index("Bonnie Tyler")
    assert len(g.clusters) == len(plain.clusters) == 3
    assert _cand(g, date, "linked_read") == 1.0 and _cand(g, tyler, "linked_read") == 0.0
    assert _cand(g, date, "linked_read_prob") == pytest.approx(np.exp(-0.4), abs=1e-6)
    assert _cand(g, date, "linked_most_likely") == 1.0
    assert all(_cand(plain, i, "linked_read") == 0.0 for i in range(3))
    assert likeliest_linked(g) == date and likeliest_linked(plain) is None
    # everything else is the graph without linked reads
    before = torch.arange(NODE_DIM) < NODE_DIM_BEFORE_LINKS
    assert torch.equal(g.data.x[:, before], plain.data.x[:, before])
    assert torch.equal(g.data.edge_attr, plain.data.edge_attr)

    # a checkpoint trained before linked reads loads and reads the features it was trained on
    old = SupportGNN(GnnConfig(node_dim=NODE_DIM_BEFORE_LINKS))
    support_gnn.save(old, tmp_path / "old", "# card\n")
    loaded = support_gnn.load(tmp_path / "old")
    assert candidate_logits(loaded, g) == candidate_logits(loaded, plain) == candidate_logits(old, plain)
    new = SupportGNN(GnnConfig())
    assert candidate_logits(new, g) != candidate_logits(new, plain)

    # the scorer takes linked reads by chunk id (an unknown chunk's read is dropped)
    hits = [Hit(d.chunk_id, d.doc_id, d.title, d.text, "s", 0, d.relevance, relevance=d.relevance)
            for d in BRIDGE_DOCS]  # fmt: skip
    cands = [Candidate(a, h, lp) for a, h, lp in zip(answers, hits, [-0.1, -1.5, -3.0, -0.2], strict=True)]
    scorer = GnnSupportScorer(new, embed)
    by_chunk = [("c0", "c1", "8 June 1951", -0.4, -9.0), ("c9", "c1", "1972", -0.1, -9.0)]
    graph, _ = scorer.graph(BRIDGE_Q, cands, hits, linked=by_chunk)
    keys = [c.answer for c in graph.clusters]
    assert _cand(graph, keys.index("8 June 1951"), "linked_read") == 1.0
    assert _cand(graph, keys.index("1972"), "linked_read") == 0.0
    assert {s.answer for s in scorer.score(BRIDGE_Q, cands, hits, linked=by_chunk)} == set(keys)


def test_a_question_without_candidates_is_a_graph_of_documents_only() -> None:
    g = build_graph("Who?", DOCS, [None, None, None], [0.0, 0.0, 0.0], embed)
    assert g.data.x.shape == (4, NODE_DIM) and not g.clusters
    assert candidate_logits(SupportGNN(GnnConfig()), g) == []


# --- training -----------------------------------------------------------------------------------
def _examples(n: int = 24) -> list[Example]:
    """Questions where the answer several documents read is right and a lone top reading is wrong,
    and the other way round, so the right answer depends on the pattern, not on one feature."""
    out = []
    for i in range(n):
        many_right = i % 3 != 0
        answers = ["Alpha", "Beta", "Beta"] if many_right else ["Alpha", "Beta", "Gamma"]
        logprobs = [-1.5, -0.4, -0.5] if many_right else [-0.05, -1.9, -2.0]
        g = build_graph(f"Question {i}?", DOCS, answers, logprobs, embed)
        gold = "Beta" if many_right else "Alpha"
        out.append(Example(g, g.labels([gold]), str(i)))
    return out


def test_training_lowers_the_loss_and_learns_the_pattern() -> None:
    examples = _examples()
    model, report = train(examples, epochs=60, folds=0)
    assert report.losses[-1] < report.losses[0] * 0.5
    right = 0
    for e in examples:
        logits = candidate_logits(model, e.graph)
        right += int(e.labels[int(np.argmax(logits))] > 0)
    assert right == len(examples)


def test_same_seed_same_weights_and_calibration() -> None:
    examples = _examples(12)
    a, ra = train(examples, epochs=5, seed=3)
    b, rb = train(examples, epochs=5, seed=3)
    c, _ = train(examples, epochs=5, seed=4)
    for (name, wa), wb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(wa, wb), name
    assert ra.losses == rb.losses and (ra.calib_a, ra.calib_b) == (rb.calib_a, rb.calib_b)
    assert any(
        not torch.equal(x, y) for x, y in zip(a.state_dict().values(), c.state_dict().values(), strict=True)
    )


def test_checkpoint_round_trip_and_refusals(tmp_path: Path) -> None:
    model, _ = train(_examples(12), epochs=3)
    support_gnn.with_calibration(model, 1.7, -0.4)
    support_gnn.save(model, tmp_path / "gnn", "# card\n")
    loaded = support_gnn.load(tmp_path / "gnn")
    g = six_node_graph()
    assert candidate_logits(loaded, g) == candidate_logits(model, g)
    assert (loaded.config.calib_a, loaded.config.calib_b) == (1.7, -0.4)
    assert sorted(p.name for p in (tmp_path / "gnn").iterdir()) == ["DATA_CARD.md", "config.json", "model.pt"]

    with pytest.raises(CheckpointError, match="cannot load"):
        support_gnn.load(tmp_path / "missing")
    config = json.loads((tmp_path / "gnn" / "config.json").read_text())
    (tmp_path / "gnn" / "config.json").write_text(json.dumps({**config, "node_dim": 7}))
    with pytest.raises(CheckpointError, match="ragnet train gnn"):
        support_gnn.load(tmp_path / "gnn")
    (tmp_path / "gnn" / "config.json").write_text(json.dumps({**config, "hidden": 24}))
    with pytest.raises(CheckpointError, match="do not fit"):
        support_gnn.load(tmp_path / "gnn")


def test_the_shipped_checkpoint_scores_candidates_as_a_support_scorer() -> None:
    card = (support_gnn.DEFAULT_CHECKPOINT / "DATA_CARD.md").read_text()
    assert "data card" in card.lower() and "musique" in card.lower()
    scorer = GnnSupportScorer(support_gnn.load(), embed)
    hits = [
        Hit(d.chunk_id, d.doc_id, d.doc_id, d.text, "s", 0, d.relevance, relevance=d.relevance) for d in DOCS
    ]
    cands = [
        Candidate("Denver Broncos", hits[0], -0.1),
        Candidate("the Denver Broncos", hits[1], -0.2),
        Candidate("Carolina Panthers", hits[2], -2.5),
    ]
    scored = scorer.score("Who won Super Bowl 50?", cands, hits)
    assert [s.answer for s in scored] == ["Denver Broncos", "Carolina Panthers"]
    assert scored[0].hit.doc_id == "d0" and scored[0].supporters == ("d1", "d2")
    assert all(s.confidence is not None and 0 < s.confidence < 1 for s in scored)
    assert scored[0].confidence > scored[1].confidence  # type: ignore[operator]
    assert scorer.score("Who won?", [], hits) == []


# --- batched reading ----------------------------------------------------------------------------
def test_batched_generation_matches_one_at_a_time(tiny_generator: TransformersGenerator) -> None:
    requests = [
        GenerationRequest([{"role": "user", "content": text}], max_tokens=6, repetition_penalty=1.0)
        for text in ("Short.", "A much longer prompt, so the batch needs left padding to line up.")
    ]
    batch = tiny_generator.generate_batch(requests)
    single = [tiny_generator.generate(r) for r in requests]
    assert [b.text for b in batch] == [s.text for s in single]
    assert all(b.logprob is not None and b.logprob <= 0 for b in batch)
    assert tiny_generator.generate_batch([]) == []


# --- the CLI ------------------------------------------------------------------------------------
@pytest.fixture
def env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("RAGNET_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("RAGNET_GENERATOR_PATH", str(settings.generator_path))
    monkeypatch.setenv("RAGNET_GENERATOR_QUANTIZE", "none")
    return settings


def _write_set(folder: Path) -> Path:
    folder.mkdir(parents=True)
    docs = [
        ("d1", "Apollo 11", "Apollo 11 landed on the Moon on 20 July 1969."),
        ("d2", "Tea", "Black tea is fully oxidised; green tea is not oxidised."),
    ]
    (folder / "corpus.jsonl").write_text(
        "".join(json.dumps({"id": i, "title": t, "text": x}) + "\n" for i, t, x in docs)
    )
    qs = [
        {"id": "q1", "question": "When did Apollo 11 land?", "answers": ["20 July 1969"]},
        {
            "id": "q2",
            "question": "Which tea is fully oxidised and when did Apollo 11 land?",
            "answers": ["1969"],
            "decomposition": [
                {"question": "Which tea is fully oxidised?", "answer": "black tea"},
                {"question": "When did Apollo 11 land? (#1)", "answer": "1969"},
            ],
        },
    ]
    (folder / "questions.jsonl").write_text("".join(json.dumps(q) + "\n" for q in qs))
    return folder


def test_train_gnn_then_eval_aggregate(
    env: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "shared"
    _write_set(data / "rc" / "tiny")
    out = tmp_path / "gnn"
    args = ["train", "gnn", "--data", str(data), "--sets", "rc/tiny", "--epochs", "3", "--out", str(out)]
    assert main(args) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out.strip().splitlines()[-1])
    assert result["graphs"] == 4  # q1, and q2 read whole and step by step
    assert (out / "model.pt").is_file() and "rc/tiny" in (out / "DATA_CARD.md").read_text()
    caches = list((env.data_dir / "cache" / "readings").glob("*.jsonl"))
    steps = [json.loads(line) for line in caches[0].read_text().splitlines()]
    assert [s["question"] for s in steps][1:] == [
        "Which tea is fully oxidised and when did Apollo 11 land?",
        "Which tea is fully oxidised?",
        "When did Apollo 11 land? (black tea)",
    ]

    corpus, questions = data / "rc" / "tiny" / "corpus.jsonl", data / "rc" / "tiny" / "questions.jsonl"
    base = ["eval", "aggregate", "--kb", "tiny", "--corpus", str(corpus), "--questions", str(questions)]
    assert main([*base, "--gnn", str(out)]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out.strip().splitlines()[-1])
    assert {"n", "gnn_acc", "vote_acc", "max_reader_acc", "top_doc_acc", "oracle_acc"} <= set(result)
    assert result["n"] == 2 and result["answered"] <= 2
    assert result["best_baseline"] in {"vote", "max_reader", "top_doc", "top_answered"}
    assert result["linked_graphs"] == 0 and result["linked_read_acc"] == 0.0  # no titled documents
    # a second run reads nothing again (the readings are cached), and a line a crash cut short is skipped
    cache = caches[0]
    cache.write_text(cache.read_text() + '{"id": "q9", "question": "cut sh')
    assert main([*base, "--limit", "1"]) == 0
    assert "1/1 questions already read" in capsys.readouterr().err


def test_gap_closed_is_measured_against_the_strongest_baseline() -> None:
    acc = {
        "vote_acc": 0.6,
        "max_reader_acc": 0.7,
        "top_doc_acc": 0.65,
        "top_answered_acc": 0.72,
        "oracle_acc": 0.8,
    }
    assert gap_closed({**acc, "gnn_acc": 0.76}) == {"best_baseline": "top_answered", "gap_closed": 0.5}
    assert gap_closed({**acc, "gnn_acc": 0.7})["gap_closed"] == -0.25
    assert gap_closed({**acc, "oracle_acc": 0.72, "gnn_acc": 0.72})["gap_closed"] is None


def test_train_gnn_refuses_bad_sets(
    env: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train", "gnn", "--data", str(tmp_path), "--sets", "rc/none"]) == 2
    assert "holds no corpus.jsonl" in capsys.readouterr().err
    _write_set(tmp_path / "rc" / "tiny")
    assert main(["train", "gnn", "--data", str(tmp_path), "--sets", "rc/tiny:0"]) == 2
    assert "positive number" in capsys.readouterr().err
    # train reader checks its sets the same way, before any model is loaded
    assert (
        main(["train", "reader", "--data", str(tmp_path), "--sets", "rc/none", "--out", str(tmp_path / "r")])
        != 0
    )
    assert "holds no corpus.jsonl" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
    # and the checkpoint it is asked to train further
    init = ["--init", str(tmp_path / "rc"), "--lr", "1e-4"]
    assert main(["train", "reader", "--data", str(tmp_path), "--sets", "rc/tiny", *init]) != 0
    assert "is not a reader checkpoint" in capsys.readouterr().err
    for rate in ("-1e-4", "0", "2"):  # a learning rate that cannot train: refused by the parser
        with pytest.raises(SystemExit) as exited:
            main(["train", "reader", "--data", str(tmp_path), "--sets", "rc/tiny", f"--lr={rate}"])
        assert exited.value.code == 2 and "learning rate is between 0 and 1" in capsys.readouterr().err


def test_a_missing_support_gnn_checkpoint_is_a_503_that_says_so(
    agentic_answer_with: AskWith, tmp_path: Path
) -> None:
    status, body = agentic_answer_with(support_gnn=tmp_path / "no-gnn")
    assert status == 503, body
    assert body["error"]["code"] == "support_model_unavailable"
    assert "no-gnn" in body["error"]["message"]
