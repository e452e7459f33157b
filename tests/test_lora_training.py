"""LoRA training on the tiny model: the loss falls, the folder is a valid adapter, a run resumes
to the same weights, bad data is refused with the line named, and the CLI trains and measures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agents.adapters import check_adapter
from agents.lora_data import TrainingDataError, balanced, held_out, read_examples
from agents.lora_training import LoraTrainConfig, train_lora
from api.cli import main
from api.settings import Settings

INTENTS = [
    ("I am still waiting on my card", "card_arrival"),
    ("My card has not come yet", "card_arrival"),
    ("How do I top up by bank transfer", "top_up"),
    ("Can I add money with a transfer", "top_up"),
    ("The exchange rate looks wrong", "exchange_rate"),
    ("Which rate do you use to exchange", "exchange_rate"),
]


def _intents_file(path: Path, copies: int = 2) -> Path:
    rows = [
        {"id": f"t{n}-{k}", "text": text, "label": label}
        for k in range(copies)
        for n, (text, label) in enumerate(INTENTS)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _general_file(path: Path) -> Path:
    rows = [
        {"prompt": "When did Apollo 11 land?", "completion": "20 July 1969"},
        {"messages": [{"role": "user", "content": "Which fox?"}, {"role": "assistant", "content": "quick"}]},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _config(**kw: object) -> LoraTrainConfig:
    base = {"r": 4, "lr": 2e-2, "epochs": 4, "batch_size": 4, "max_len": 320, "save_every": 2, "warmup": 1}
    return LoraTrainConfig(**{**base, **kw})  # type: ignore[arg-type]


def test_a_few_steps_lower_the_loss(tiny_model_dir: Path, tmp_path: Path) -> None:
    domain = read_examples(_intents_file(tmp_path / "d.jsonl"))
    lines: list[str] = []
    result = train_lora(tiny_model_dir, domain, [], tmp_path / "a", _config(epochs=6), lines.append)
    assert result["complete"] and result["steps"] == 18
    assert result["last_loss"] < result["first_loss"]
    assert any("nothing general is mixed in" in line for line in lines)
    assert any("examples/s" in line and "ETA" in line for line in lines)


def test_folder_is_a_peft_adapter_that_fits_the_base(tiny_model_dir: Path, tmp_path: Path) -> None:
    import torch
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    domain = read_examples(_intents_file(tmp_path / "d.jsonl"))
    general = read_examples(_general_file(tmp_path / "g.jsonl"))
    out = tmp_path / "bank"
    cfg = _config(epochs=1, layers=1)
    train_lora(tiny_model_dir, domain, general, out, cfg, lambda _: None, name="bank", domains=["banking"])
    assert check_adapter(out, tiny_model_dir)["r"] == 4
    assert not (out / ".partial").exists()
    assert {p.name for p in out.iterdir()} >= {
        "adapter_config.json",
        "adapter_model.safetensors",
        "DATA_CARD.md",
    }
    meta = json.loads((out / "ragnet_adapter.json").read_text())
    assert meta["name"] == "bank" and meta["domains"] == ["banking"]
    assert meta["base_model"]["num_hidden_layers"] == 2 and meta["base_model"]["hidden_size"] == 64
    assert meta["data"][-1]["examples"] == len(domain) + 2  # both general examples mixed in
    weights = load_file(str(out / "adapter_model.safetensors"))
    assert {t.dtype for t in weights.values()} == {torch.float16}
    assert all(".layers.1." in k for k in weights)  # only the top layer adapted
    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.float32)
    PeftModel.from_pretrained(model, str(out))


def test_resume_after_interruption_ends_at_the_same_weights(tiny_model_dir: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    domain = read_examples(_intents_file(tmp_path / "d.jsonl"))
    cfg = _config(dropout=0.1)  # dropout draws random numbers: the RNG state must resume too
    whole = train_lora(tiny_model_dir, domain, [], tmp_path / "whole", cfg, lambda _: None)
    part = tmp_path / "part"
    stopped = train_lora(tiny_model_dir, domain, [], part, cfg, lambda _: None, max_steps=5)
    assert stopped == {**stopped, "complete": False, "steps": 5}
    assert (part / ".partial" / "state.pt").is_file() and not (part / "adapter_model.safetensors").exists()
    lines: list[str] = []
    resumed = train_lora(tiny_model_dir, domain, [], part, cfg, lines.append)
    assert resumed["resumed_from"] == 5 and resumed["steps"] == whole["steps"]
    assert any("resuming from step 5" in line for line in lines)
    a, b = (
        load_file(str(tmp_path / "whole" / "adapter_model.safetensors")),
        load_file(str(part / "adapter_model.safetensors")),
    )
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
    again = train_lora(tiny_model_dir, domain, [], part, cfg, lines.append)  # finished: nothing to do
    assert again["steps"] == whole["steps"] and "nothing to do" in lines[-1]


def test_other_settings_discard_the_snapshot(tiny_model_dir: Path, tmp_path: Path) -> None:
    domain = read_examples(_intents_file(tmp_path / "d.jsonl"))
    train_lora(tiny_model_dir, domain, [], tmp_path / "o", _config(), lambda _: None, max_steps=2)
    lines: list[str] = []
    result = train_lora(tiny_model_dir, domain, [], tmp_path / "o", _config(lr=1e-2), lines.append)
    assert result["resumed_from"] == 0 and any("discarding" in line for line in lines)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "holds no examples"),
        ('{"text": "a", "label": "x"}\n{"text": "b", "label"\n', "line 2: not valid JSON"),
        ('{"text": "a", "label": "x"}\n{"foo": 1}\n', "line 2: unknown record"),
        ('{"messages": [{"role": "user", "content": "hi"}]}\n', "line 1: 'messages' must be"),
        ('{"text": "a", "label": 3}\n', "line 1: 'text' and 'label' must be strings"),
        ('["a"]\n', "line 1: expected a JSON object"),
    ],
)
def test_bad_data_files_are_refused(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(TrainingDataError, match=message):
        read_examples(path)


def test_unreadable_files_and_bad_names_are_refused(tiny_model_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(TrainingDataError, match="no such file"):
        read_examples(tmp_path / "missing.jsonl")
    binary = tmp_path / "bin.jsonl"
    binary.write_bytes(b"\xff\xfe\x00\x01")
    with pytest.raises(TrainingDataError, match="not UTF-8"):
        read_examples(binary)
    domain = read_examples(_intents_file(tmp_path / "d.jsonl"))
    with pytest.raises(TrainingDataError, match="must match"):
        train_lora(tiny_model_dir, domain, [], tmp_path / "x", _config(), lambda _: None, name="Bad Name")


def test_split_is_fixed_disjoint_and_balanced_draws_cover_labels(tmp_path: Path) -> None:
    path = _intents_file(tmp_path / "d.jsonl", copies=20)
    train = read_examples(path, holdout=0.25)
    held = read_examples(path, holdout=0.25, side="held")
    assert len(train) + len(held) == 120 and not {e.key for e in train} & {e.key for e in held}
    assert [e.key for e in held] == [e.key for e in read_examples(path, holdout=0.25, side="held")]
    assert held_out("x", 1.0) and not held_out("x", 0.0)
    picked = balanced(train, 6, seed=1)
    assert sorted(e.label or "" for e in picked) == sorted(2 * ["card_arrival", "top_up", "exchange_rate"])


def test_question_records_read_their_context(tmp_path: Path) -> None:
    (tmp_path / "corpus.jsonl").write_text(
        json.dumps({"id": "d1", "title": "A", "text": "Tea is old. Apollo 11 landed in 1969. Bees dance."})
        + "\n"
    )
    q = {"id": "q1", "question": "When did Apollo 11 land?", "answers": ["1969"], "supporting_ids": ["d1"]}
    (tmp_path / "questions.jsonl").write_text(json.dumps(q) + "\n")
    (example,) = read_examples(tmp_path / "questions.jsonl")
    user = example.prompt()[-1]["content"]
    assert "Apollo 11 landed in 1969." in user and "Bees" not in user and example.reply == "1969"
    assert example.key == "d1"  # a passage's questions stay on one side of the split


@pytest.fixture
def env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("RAGNET_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("RAGNET_GENERATOR_PATH", str(settings.generator_path))
    monkeypatch.setenv("RAGNET_ROUTER", "off")
    return settings


def test_cli_trains_and_measures_an_adapter(
    env: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = _intents_file(tmp_path / "intents.jsonl", copies=6)
    general = _general_file(tmp_path / "general.jsonl")
    args = ["train", "lora", "--data", str(data), "--name", "tiny-bank", "--domains", "banking"]
    assert main([*args, "--general", str(general), "--epochs", "1", "--holdout", "0.2", "--r", "4"]) == 0
    out, err = capsys.readouterr()
    result = json.loads(out.strip().splitlines()[-1])
    folder = env.data_dir / "adapters" / "tiny-bank"
    assert result["complete"] and result["out"] == str(folder) and "RAGNET_ADAPTERS=" in err
    assert json.loads((folder / "ragnet_adapter.json").read_text())["holdout"] == 0.2

    monkeypatch.setenv("RAGNET_GENERATOR_PREFILL", "bf16")
    assert main(["eval", "adapter", "--adapter", str(folder), "--data", str(data), "--limit", "4"]) == 0
    out, err = capsys.readouterr()
    report = json.loads(out.strip().splitlines()[-1])
    assert "held-out 20%" in err  # the file it was trained on: only its held-out side is scored
    assert 0 < report["n"] <= 4 and report["metric"] == "exact label match"
    assert {"base_acc", "adapter_acc", "routed_acc"} <= report.keys()
    assert report["base_prompt_tokens"] > report["adapter_prompt_tokens"]  # the base model gets the labels
    assert report["router"].startswith("off")
    assert report["quantize"] == "int8-weights"  # the generator as served (the default here)
    assert report["prefill"] == "bf16"  # RAGNET_GENERATOR_PREFILL reaches it (set below)


def test_cli_refuses_bad_input(env: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "a", "label": "x"}\nnot json\n')
    assert main(["train", "lora", "--data", str(bad), "--name", "x"]) == 1
    assert "line 2: not valid JSON" in capsys.readouterr().err
    assert main(["train", "lora", "--data", str(bad)]) == 1
    assert "--name" in capsys.readouterr().err
    assert main(["eval", "adapter", "--data", str(bad)]) == 2


def test_training_further_starts_from_an_adapter(tiny_model_dir: Path, tmp_path: Path) -> None:
    domain = read_examples(_intents_file(tmp_path / "d.jsonl"))
    first = train_lora(tiny_model_dir, domain, [], tmp_path / "s1", _config(epochs=6), lambda _: None)
    lines: list[str] = []
    cfg = _config(epochs=2, seed=14)
    second = train_lora(
        tiny_model_dir, domain, [], tmp_path / "s2", cfg, lines.append, init_adapter=tmp_path / "s1"
    )
    assert any("starting from the weights" in line for line in lines)
    assert second["first_loss"] < first["first_loss"]  # it starts where the first stage ended
    meta = json.loads((tmp_path / "s2" / "ragnet_adapter.json").read_text())
    assert meta["init_adapter"]["steps"] == first["steps"]
    assert "Continued from adapter" in (tmp_path / "s2" / "DATA_CARD.md").read_text()
    with pytest.raises(TrainingDataError, match="does not fit"):
        train_lora(
            tiny_model_dir,
            domain,
            [],
            tmp_path / "s3",
            _config(r=2),
            lambda _: None,
            init_adapter=tmp_path / "s1",
        )
