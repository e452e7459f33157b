"""Training the extractive reader: labelled spans in, a LoRA checkpoint out (CPU, minutes).

Examples come from reading-comprehension and multi-hop sets in ragnet's formats: a question, a
passage and the character offset of a gold answer in it (the first gold answer found verbatim),
or no answer. Passages are cut into windows of ``max_length`` tokens (``stride`` shared) as at
reading time; a window without the whole answer teaches "no answer", and so does a related passage
that lacks it (another paragraph of the same article, another paragraph of a multi-hop question).

The encoder (multilingual-e5-small) is frozen; LoRA factors on every attention and feed-forward
projection and the span head are trained (AdamW, linear decay, fixed seeds; bf16 autocast where the
CPU has it). A run snapshots its state after every ``snapshot_every`` steps and resumes from it.

A run that stops learning is stopped: once a tenth of the steps are done, a stretch of
``snapshot_every`` steps whose mean loss is within a tenth of a uniform guess over the window
(ln ``max_length`` for the start and for the end) raises ``TrainingDiverged`` and writes nothing, so
an hour of training that went wrong does not replace a good checkpoint (measured: a run at lr 1e-3
whose data order made it diverge sat at ~5.5 = ln 256 from step 150 on; a learning one is at 3.4 by
then).
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from agents.errors import ReaderError, TrainingDiverged
from agents.extractive_reader import CONFIG_NAME, ReaderConfig, bf16_fast, load_config, load_encoder_qa

Log = Callable[[str], None]

LORA_TARGETS = ["query", "key", "value", "dense"]
SNAPSHOT = "snapshot.pt"
DIVERGED_SHARE = 0.9  # of the uniform guess's loss: a stretch at or above it has learned nothing


@dataclass(frozen=True)
class SpanExample:
    id: str
    question: str
    context: str
    answer_start: int  # character offset in context; -1: the context does not answer
    answer: str = ""
    source: str = ""


@dataclass
class ReaderTrainConfig:
    epochs: int = 2
    lr: float = 1e-3
    batch_size: int = 16
    max_length: int = 256  # training windows (reading uses ReaderConfig.max_length)
    stride: int = 96
    rank: int = 16
    negatives_per_positive: float = 1.0  # cap on "no answer" windows
    seed: int = 13
    snapshot_every: int = 50


@dataclass
class ReaderTrainReport:
    examples: int
    windows: int
    positives: int
    steps: int
    seconds: float
    losses: list[float] = field(default_factory=list)  # mean loss per epoch


def locate(context: str, answers: Iterable[str]) -> tuple[int, str] | None:
    """Offset and text of the first gold answer found verbatim in the context (case-insensitive)."""
    low = context.lower()
    for answer in answers:
        a = answer.strip()
        if not a:
            continue
        at = context.find(a)
        if at < 0:
            at = low.find(a.lower())
        if at >= 0:
            return at, context[at : at + len(a)]
    return None


def encode_windows(
    tokenizer: Any, examples: Sequence[SpanExample], max_length: int, stride: int
) -> list[tuple[list[int], int, int]]:
    """(input ids, start token, end token) per window; 0/0 (the first token) = no answer."""
    windows: list[tuple[list[int], int, int]] = []
    for i in range(0, len(examples), 64):
        part = examples[i : i + 64]
        enc = tokenizer(
            [e.question for e in part],
            [e.context for e in part],
            truncation="only_second",
            max_length=max_length,
            stride=stride,
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
        )
        for w, owner in enumerate(enc["overflow_to_sample_mapping"]):
            ex = part[owner]
            seq = enc.sequence_ids(w)
            offsets = enc["offset_mapping"][w]
            start_tok = end_tok = 0
            if ex.answer_start >= 0:
                a0, a1 = ex.answer_start, ex.answer_start + len(ex.answer)
                ctx = [t for t, s in enumerate(seq) if s == 1]
                if ctx and offsets[ctx[0]][0] <= a0 and offsets[ctx[-1]][1] >= a1:
                    start_tok = next(t for t in ctx if offsets[t][1] > a0)
                    end_tok = next(t for t in reversed(ctx) if offsets[t][0] < a1)
            windows.append((list(enc["input_ids"][w]), start_tok, end_tok))
    return windows


def balance(
    windows: list[tuple[list[int], int, int]], ratio: float, seed: int
) -> list[tuple[list[int], int, int]]:
    """Every answer window and at most ``ratio`` x as many no-answer windows (a seeded sample)."""
    pos = [w for w in windows if w[1] > 0]
    neg = [w for w in windows if w[1] == 0]
    rng = random.Random(seed)
    rng.shuffle(neg)
    return pos + neg[: int(len(pos) * ratio)]


def _batches(
    windows: list[tuple[list[int], int, int]], size: int, pad: int, width: int
) -> Iterable[dict[str, Any]]:
    """Batches padded to one fixed ``width``: a new shape per batch costs oneDNN a new kernel (~2x)."""
    import torch

    for i in range(0, len(windows), size):
        part = windows[i : i + size]
        ids = torch.full((len(part), width), pad, dtype=torch.long)
        mask = torch.zeros((len(part), width), dtype=torch.long)
        for r, (tokens, _, _) in enumerate(part):
            ids[r, : len(tokens)] = torch.tensor(tokens)
            mask[r, : len(tokens)] = 1
        yield {
            "input_ids": ids,
            "attention_mask": mask,
            "start_positions": torch.tensor([w[1] for w in part]),
            "end_positions": torch.tensor([w[2] for w in part]),
        }


def train_reader(
    examples: Sequence[SpanExample],
    encoder_dir: Path,
    out: Path,
    config: ReaderTrainConfig,
    *,
    work_dir: Path,
    data_card: str = "",
    init: Path | None = None,
    log: Log = lambda _m: None,
) -> ReaderTrainReport:
    """Train and write the checkpoint atomically to ``out``; ``work_dir`` keeps the resumable snapshot.
    ``init``: a reader checkpoint to train further (its LoRA rank, not ``config.rank``)."""
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model

    random.seed(config.seed)
    torch.manual_seed(config.seed)
    model, tokenizer = load_encoder_qa(encoder_dir)
    if init is not None:
        trained_on = load_config(init).encoder
        if trained_on != encoder_dir.name:
            raise ReaderError(f"{init} was trained on {trained_on}, not {encoder_dir.name}")
        try:
            model = PeftModel.from_pretrained(model, str(init), is_trainable=True)
        except (ValueError, RuntimeError, OSError) as exc:
            raise ReaderError(f"cannot start from reader {init}: {exc}") from exc
        for param in model.parameters():  # stored in fp16: trained in fp32
            if param.requires_grad:
                param.data = param.data.float()
        config = replace(config, rank=init_rank(init))  # what the checkpoint records is what it has
    else:
        lora = LoraConfig(
            r=config.rank,
            lora_alpha=2 * config.rank,
            lora_dropout=0.0,  # dropout on every projection input doubles the step time
            target_modules=LORA_TARGETS,
            modules_to_save=["qa_outputs"],
        )
        model = get_peft_model(model, lora)
    windows = balance(
        encode_windows(tokenizer, examples, config.max_length, config.stride),
        config.negatives_per_positive,
        config.seed,
    )
    positives = sum(1 for w in windows if w[1] > 0)
    log(f"  {len(examples)} examples -> {len(windows)} windows ({positives} with an answer)")
    steps_per_epoch = math.ceil(len(windows) / config.batch_size)
    total = steps_per_epoch * config.epochs
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=0.01)
    warmup = max(1, total // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, max(0.0, (total - s) / max(1, total - warmup)))
    )
    work_dir.mkdir(parents=True, exist_ok=True)
    snapshot = work_dir / SNAPSHOT
    step, losses, epoch_loss = 0, [], 0.0
    fingerprint = _fingerprint(windows, config, init)
    if snapshot.is_file():
        state = torch.load(snapshot, weights_only=False)
        if state.get("fingerprint") == fingerprint:
            model.load_state_dict(state["model"], strict=False)
            optimizer.load_state_dict(state["optimizer"])
            schedule.load_state_dict(state["schedule"])
            step, losses, epoch_loss = state["step"], state["losses"], state["epoch_loss"]
            torch.set_rng_state(state["rng"])
            log(f"  resumed at step {step}/{total}")
        else:
            log("  a snapshot of another run is there: starting over")
    bf16 = bf16_fast()
    pad = tokenizer.pad_token_id or 0
    started = time.perf_counter()
    # the encoder's own dropout stays off (eval mode): on CPU it makes attention take the slow
    # path and doubles the step; the low-rank factors are the regulariser
    model.eval()
    chance = math.log(config.max_length)  # the span head's loss for a uniform guess over the window
    recent: list[float] = []
    for epoch in range(step // steps_per_epoch, config.epochs):
        order = list(windows)
        random.Random(config.seed + epoch).shuffle(order)
        for n, batch in enumerate(_batches(order, config.batch_size, pad, config.max_length)):
            if epoch * steps_per_epoch + n < step:
                continue
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = model(**batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
            value = float(loss.detach())
            epoch_loss += value
            recent = [*recent, value][-config.snapshot_every :]
            step += 1
            stretch = sum(recent) / len(recent)  # the last snapshot_every steps' mean loss
            full = len(recent) == config.snapshot_every
            if step >= total / 10 and full and stretch >= DIVERGED_SHARE * chance:
                snapshot.unlink(missing_ok=True)  # a diverged state is not worth resuming
                raise TrainingDiverged(
                    f"training diverged at step {step}/{total}: the last {len(recent)} steps' mean loss "
                    f"{stretch:.2f} is a uniform guess's ({chance:.2f}); nothing "
                    f"written to {out}. Try a lower --lr (this run: {config.lr:g}) or another --seed"
                )
            if step % config.snapshot_every == 0 or step == total:
                _save_snapshot(snapshot, model, optimizer, schedule, step, losses, epoch_loss, fingerprint)
                rate = (time.perf_counter() - started) / max(1, step)
                left = rate * (total - step)
                log(f"  step {step}/{total}, loss {epoch_loss / (n + 1):.3f}, ~{left:.0f} s left")
        losses.append(round(epoch_loss / steps_per_epoch, 4))
        epoch_loss = 0.0
    reader_config = ReaderConfig(encoder=encoder_dir.name)
    for peft_config in model.peft_config.values():  # a name, not this machine's path
        peft_config.base_model_name_or_path = encoder_dir.name
    _write_checkpoint(model, out, reader_config, config, data_card, init)
    snapshot.unlink(missing_ok=True)
    return ReaderTrainReport(
        len(examples), len(windows), positives, step, time.perf_counter() - started, losses
    )


def init_rank(init: Path) -> int:
    """The LoRA rank of a reader checkpoint (training it further keeps it)."""
    try:
        return int(json.loads((init / "adapter_config.json").read_text(encoding="utf-8"))["r"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ReaderError(
            f"cannot start from reader {init}: no adapter_config.json with its rank ({exc})"
        ) from exc


def _fingerprint(
    windows: list[tuple[list[int], int, int]], config: ReaderTrainConfig, init: Path | None = None
) -> str:
    import hashlib

    start = None if init is None else str(init.resolve())
    digest = hashlib.sha256(json.dumps([config.__dict__, len(windows), start], sort_keys=True).encode())
    for ids, s, e in windows:
        digest.update(f"{len(ids)}:{sum(ids)}:{s}:{e};".encode())
    return digest.hexdigest()


def _save_snapshot(
    path: Path, model: Any, optimizer: Any, schedule: Any, step: int, losses: list[float],
    epoch_loss: float, fingerprint: str,
) -> None:  # fmt: skip
    import torch

    trainable = {k: v for k, v in model.state_dict().items() if "lora_" in k or "qa_outputs" in k}
    state = {
        "model": trainable,
        "optimizer": optimizer.state_dict(),
        "schedule": schedule.state_dict(),
        "step": step,
        "losses": losses,
        "epoch_loss": epoch_loss,
        "rng": torch.get_rng_state(),
        "fingerprint": fingerprint,
    }
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def _to_fp16(file: Path) -> None:
    """Halve the checkpoint (fp32 -> fp16: 5.3 -> 2.7 MB shipped); loading casts back to fp32."""
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(file))
    save_file({k: v.half().contiguous() for k, v in tensors.items()}, str(file), metadata={"format": "pt"})


def _write_checkpoint(
    model: Any, out: Path, reader: ReaderConfig, config: ReaderTrainConfig, data_card: str, init: Path | None
) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        model.save_pretrained(str(tmp))
        (tmp / "README.md").unlink(missing_ok=True)  # PEFT's blank model card; DATA_CARD.md is ours
        _to_fp16(tmp / "adapter_model.safetensors")
        training: dict[str, Any] = dict(config.__dict__)
        if init is not None:  # the recipe it was trained further from, as that checkpoint records it
            training["init"] = json.loads((init / CONFIG_NAME).read_text(encoding="utf-8")).get("training")
        meta = reader.to_json() | {"training": training}
        (tmp / CONFIG_NAME).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        if data_card:
            (tmp / "DATA_CARD.md").write_text(data_card, encoding="utf-8")
        if out.exists():
            old = out.with_name(f".{out.name}-old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
