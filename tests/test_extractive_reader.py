"""The extractive reader: span decoding, training (loss falls, resumable, deterministic), loading,
reading, the examples built from a set, and the graph reading with it (no model call)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from agents.errors import ReaderError, TrainingDiverged
from agents.extractive_reader import CONFIG_NAME, ExtractiveReader, best_span, top_spans
from agents.reader_training import ReaderTrainConfig, SpanExample, locate, train_reader
from api.evaluation.reader_data import span_examples, titles_of
from tests.conftest import AskWith
from tests.tiny_encoder import build_tiny_encoder

FACTS = [
    ("what is the capital of france ?", "paris is the capital of france .", "paris"),
    ("what is the capital of germany ?", "berlin is the capital of germany .", "berlin"),
    ("what is the capital of spain ?", "the capital of spain is madrid .", "madrid"),
    ("what is the capital of italy ?", "rome is the capital city of italy .", "rome"),
    ("when was apollo landed on the moon ?", "apollo landed on the moon in 1969 .", "1969"),
    ("who won the super bowl ?", "the broncos won the super bowl .", "broncos"),
]


def _examples() -> list[SpanExample]:
    out = []
    for i, (q, ctx, answer) in enumerate(FACTS):
        out.append(SpanExample(f"q{i}", q, ctx, ctx.index(answer), answer))
        other = FACTS[(i + 1) % len(FACTS)][1]
        out.append(SpanExample(f"q{i}/none", q, other, -1))
    return out


@pytest.fixture(scope="module")
def encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_encoder(tmp_path_factory.mktemp("models"))


def _config(**kw: object) -> ReaderTrainConfig:
    base = dict(epochs=30, lr=1e-2, batch_size=4, max_length=64, stride=16, rank=4, snapshot_every=2)
    return ReaderTrainConfig(**(base | kw))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def trained(encoder: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[float]]:
    out = tmp_path_factory.mktemp("reader") / "reader"
    report = train_reader(
        _examples(), encoder, out, _config(), work_dir=out.parent / "work", data_card="# card\n"
    )
    return out, report.losses


def test_best_span_picks_the_likeliest_span_inside_the_context() -> None:
    start = torch.tensor([0.0, 9.0, 0.0, 5.0, 0.0, 0.0])
    end = torch.tensor([0.0, 0.0, 0.0, 0.0, 6.0, 0.0])
    context = torch.tensor([False, False, True, True, True, True])  # token 1 is the question's
    s, e, span_lp, none_lp = best_span(start, end, context, max_tokens=3)
    assert (s, e) == (3, 4)  # the question token's high start logit is not a span
    assert span_lp > none_lp
    assert best_span(start, end, torch.zeros(6, dtype=torch.bool), 3) is None
    s, e, *_ = best_span(start, torch.tensor([0.0, 0.0, 0.0, 0.0, 0.0, 9.0]), context, max_tokens=2)
    assert e - s < 2  # answers are capped in length


def test_top_spans_are_the_next_best_spans_that_do_not_overlap() -> None:
    start = torch.tensor([0.0, 9.0, 0.0, 5.0, 0.0, 0.0, 4.0, 0.0])
    end = torch.tensor([0.0, 0.0, 0.0, 0.0, 6.0, 0.0, 0.0, 5.0])
    context = torch.tensor([False, False, True, True, True, True, True, True])
    found = top_spans(start, end, context, max_tokens=3, k=3)
    assert [(s, e) for s, e, *_ in found][:2] == [(3, 4), (6, 7)]  # best first; (3, 5), (4, 4)... overlap
    assert found[0] == best_span(start, end, context, 3)
    assert [lp for _, _, lp, _ in found] == sorted((lp for _, _, lp, _ in found), reverse=True)
    spans = {(s, e) for s, e, *_ in found}
    for s, e in spans:  # no two spans share a token
        assert all(e < s2 or e2 < s for s2, e2 in spans - {(s, e)})
    assert top_spans(start, end, torch.zeros(8, dtype=torch.bool), 3, 2) == []


def test_training_lowers_the_loss_and_writes_a_loadable_checkpoint(
    trained: tuple[Path, list[float]], encoder: Path
) -> None:
    out, losses = trained
    assert losses[-1] < losses[0]
    assert {"adapter_model.safetensors", "adapter_config.json", CONFIG_NAME, "DATA_CARD.md"} <= {
        p.name for p in out.iterdir()
    }
    assert json.loads((out / CONFIG_NAME).read_text())["encoder"] == encoder.name
    reader = ExtractiveReader(out, encoder)
    texts = [FACTS[0][1], FACTS[4][1], ""]
    read = reader.read(FACTS[0][0], texts)
    assert len(read) == 3
    for extraction, text in zip(read, texts, strict=True):
        if extraction.answer:
            assert extraction.answer in text  # always words of the document
            assert extraction.logprob <= 0.0
    assert read[2].answer is None  # an empty document answers nothing
    for extraction, text in zip(read[:2], texts[:2], strict=True):  # the next-best spans, best first
        assert len(extraction.alternatives) <= 2
        assert all(a in text and lp <= extraction.logprob for a, lp in extraction.alternatives)
        assert extraction.span in text and extraction.none_logprob <= 0.0
        assert extraction.span not in [a for a, _ in extraction.alternatives]
    assert reader.read("anything", []) == []


def test_the_trained_reader_finds_the_answers_it_was_taught(
    trained: tuple[Path, list[float]], encoder: Path
) -> None:
    reader = ExtractiveReader(trained[0], encoder)
    right = sum((reader.read(q, [ctx])[0].span or "") == answer for q, ctx, answer in FACTS)
    assert right >= 4, right


def test_training_is_deterministic_and_resumes_where_it_stopped(
    trained: tuple[Path, list[float]], encoder: Path, tmp_path: Path
) -> None:
    class Stop(Exception):
        pass

    def stop_at_step_4(message: str) -> None:
        if "step 4/" in message:
            raise Stop

    out = tmp_path / "reader"
    with pytest.raises(Stop):
        train_reader(_examples(), encoder, out, _config(), work_dir=tmp_path / "work", log=stop_at_step_4)
    assert not out.exists()  # nothing half-written
    logged: list[str] = []
    train_reader(_examples(), encoder, out, _config(), work_dir=tmp_path / "work", log=logged.append)
    assert any("resumed at step 4" in m for m in logged)
    from safetensors.torch import load_file

    resumed = load_file(str(out / "adapter_model.safetensors"))
    straight = load_file(str(trained[0] / "adapter_model.safetensors"))
    assert resumed.keys() == straight.keys()
    for key in straight:
        assert torch.equal(resumed[key], straight[key]), key
    assert not (tmp_path / "work" / "snapshot.pt").exists()


def test_a_run_that_diverges_stops_early_and_keeps_the_checkpoint_it_would_replace(
    trained: tuple[Path, list[float]], encoder: Path, tmp_path: Path
) -> None:
    out = tmp_path / "reader"
    shutil.copytree(trained[0], out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    logged: list[str] = []
    collapsed = r"diverged at step 9/90: .* uniform guess's \(4\.16\)"  # ln 64
    with pytest.raises(TrainingDiverged, match=collapsed) as info:
        train_reader(_examples(), encoder, out, _config(lr=0.5), work_dir=tmp_path / "w", log=logged.append)
    assert "--lr" in str(info.value)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # the good checkpoint stays
    assert not (tmp_path / "w" / "snapshot.pt").exists()  # nothing to resume into the same collapse
    assert not any("step 10/" in m for m in logged)  # stopped early, not after the whole run


def test_training_further_starts_from_the_checkpoint_and_records_where_it_started(
    trained: tuple[Path, list[float]], encoder: Path, tmp_path: Path
) -> None:
    out = tmp_path / "further"
    examples = _examples()[:4]
    config = _config(epochs=1, lr=1e-3, rank=8)  # the checkpoint's rank (4) wins
    further = train_reader(examples, encoder, out, config, work_dir=tmp_path / "w1", init=trained[0])
    fresh = train_reader(examples, encoder, tmp_path / "fresh", config, work_dir=tmp_path / "w2")
    assert further.losses[0] < fresh.losses[0] / 2  # it already knows these answers
    meta = json.loads((out / CONFIG_NAME).read_text())
    assert meta["training"]["rank"] == 4 and json.loads((out / "adapter_config.json").read_text())["r"] == 4
    assert meta["training"]["init"] == json.loads((trained[0] / CONFIG_NAME).read_text())["training"]
    reader = ExtractiveReader(out, encoder)
    right = sum((reader.read(q, [ctx])[0].span or "") == answer for q, ctx, answer in FACTS)
    assert right >= 4, right
    other = build_tiny_encoder(tmp_path / "models", name="all-MiniLM-L6-v2")
    with pytest.raises(ReaderError, match="trained on multilingual-e5-small"):
        train_reader(examples, other, tmp_path / "x", config, work_dir=tmp_path / "w3", init=trained[0])
    with pytest.raises(ReaderError, match="not a reader checkpoint"):
        train_reader(examples, encoder, tmp_path / "y", config, work_dir=tmp_path / "w4", init=tmp_path)


def test_a_folder_that_is_no_reader_or_for_another_encoder_is_refused(
    trained: tuple[Path, list[float]], encoder: Path, tmp_path: Path
) -> None:
    with pytest.raises(ReaderError, match="not a reader checkpoint"):
        ExtractiveReader(tmp_path, encoder)
    other = build_tiny_encoder(tmp_path / "models", name="all-MiniLM-L6-v2")
    with pytest.raises(ReaderError, match="trained on multilingual-e5-small"):
        ExtractiveReader(trained[0], other)


def test_locate_finds_the_first_gold_answer_verbatim() -> None:
    assert locate("The Denver Broncos won.", ["Panthers", "denver broncos"]) == (4, "Denver Broncos")
    assert locate("nothing here", ["x y"]) is None


def _write_set(folder: Path) -> Path:
    folder.mkdir(parents=True)
    corpus = [
        {"id": "d1", "title": "France", "text": "Paris is the capital of France."},
        {"id": "d2", "title": "France", "text": "France borders Spain."},
        {"id": "d3", "title": "Moon", "text": "Apollo 11 landed in 1969."},
        {"id": "d4", "title": "Moon", "text": "The Moon has no air."},
    ]
    questions = [
        {
            "id": "q1",
            "question": "What is the capital of France?",
            "answers": ["Paris"],
            "supporting_ids": ["d1"],
        },
        {"id": "q2", "question": "When did Apollo 11 land?", "answers": ["1969"], "supporting_ids": ["d3"]},
        {"id": "q3", "question": "Who?", "answers": ["nobody"], "supporting_ids": ["d4"]},
    ]
    (folder / "corpus.jsonl").write_text("\n".join(json.dumps(c) for c in corpus) + "\n")
    (folder / "questions.jsonl").write_text("\n".join(json.dumps(q) for q in questions) + "\n")
    return folder


def test_span_examples_pair_each_answer_with_a_related_passage_without_it(tmp_path: Path) -> None:
    folder = _write_set(tmp_path / "set")
    examples = span_examples(folder)
    positives = [e for e in examples if e.answer_start >= 0]
    assert [(e.id, e.answer) for e in positives] == [("q1", "Paris"), ("q2", "1969")]  # q3: not verbatim
    for e in positives:
        assert e.context[e.answer_start : e.answer_start + len(e.answer)] == e.answer
    negatives = {e.id: e.context for e in examples if e.answer_start < 0}
    assert negatives == {"q1/none": "France borders Spain.", "q2/none": "The Moon has no air."}
    assert titles_of(folder, 1) == {"France"}
    held = span_examples(folder, hold_out_titles={"France"})
    assert {e.id for e in held} == {"q2", "q2/none"}


def test_the_graph_reads_with_the_span_reader_and_spends_no_model_call(
    trained: tuple[Path, list[float]], encoder: Path, tiny_generator: object
) -> None:
    from langgraph.runtime import Runtime

    from graph.search_qa import AgenticContext, hit_to_dict, read
    from retrieval.documents import Hit

    reader = ExtractiveReader(trained[0], encoder)
    hits = [
        Hit(chunk_id=f"c{i}", doc_id=f"d{i}", title=title, text=text, source="", position=0, score=0.9)
        for i, (title, text) in enumerate([("", FACTS[0][1]), ("paris", FACTS[1][1]), ("", FACTS[4][1])])
    ]  # d0's text names d1's title: a linked pair, read as one text
    ctx = AgenticContext(
        search=lambda *_: [],
        search_faqs=lambda *_: [],
        generator=tiny_generator,  # type: ignore[arg-type]
        score_threshold=0.0,
        read_k=2,
        span_reader=reader,
    )
    state = {
        "sub_question": FACTS[0][0],
        "hits": [hit_to_dict(h) for h in hits],
        "faqs": [],
        "plan": [{"id": 1, "question": FACTS[0][0]}],
        "step": 0,
        "budgets": {"max_llm_calls": 2},
        "llm_calls": 2,  # the call budget is spent: the generator could not read any more
    }
    out = read(state, Runtime(context=ctx))  # type: ignore[arg-type]
    assert out["llm_calls"] == 0
    read_docs = {c["hit"]["doc_id"] for c in out["candidates"]}
    assert read_docs <= {"d0", "d1"}  # read_k documents at most
    for cand in out["candidates"]:
        assert cand["answer"] in cand["hit"]["text"]
    assert out["trace"][0]["event"] == "read"
    [(first, second, span, logprob, none)] = out["linked_spans"]
    assert (first, second) == ("c0", "c1")
    assert span in f"{FACTS[0][1]}\n\nparis. {FACTS[1][1]}" and logprob <= 0.0 and none <= 0.0


def test_a_missing_reader_checkpoint_is_a_503_that_says_so(
    agentic_answer_with: AskWith, tmp_path: Path
) -> None:
    status, body = agentic_answer_with(reader="extractive", reader_model=tmp_path / "no-reader")
    assert status == 503, body
    assert body["error"]["code"] == "reader_unavailable"
    assert "no-reader" in body["error"]["message"]
