"""The extractive reader: a span of each document that answers the question, or none.

multilingual-e5-small (the embedder's own encoder) with a span head, fine-tuned with LoRA on public
reading-comprehension sets (``ragnet train reader``, agents/reader_training.py). It reads the five
documents of a step in ~0.1-0.3 s on 2 CPU cores where prompting the 0.5B generator takes ~10 s, and
its answers are always words of the document.

A checkpoint folder holds ``adapter_model.safetensors`` + ``adapter_config.json`` (PEFT: the LoRA
factors and the span head) and ``ragnet_reader.json`` (the encoder it was trained on, window sizes);
the encoder's weights are the prepared embedder's (``ragnet models prepare``), so the shipped reader
is a few MB. Each document is read in windows of ``max_length`` tokens (``stride`` shared); the
answer is the best span of at most ``max_answer_tokens`` over every window, kept when it is more
likely than "no answer" (the first token's start/end probability, SQuAD 2.0 style).
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from agents.errors import ModelNotPrepared, ReaderError

#: The reader shipped in the package (trained by `ragnet train reader`, see its DATA_CARD.md).
DEFAULT_READER = Path(__file__).parent / "models" / "reader"
CONFIG_NAME = "ragnet_reader.json"


@dataclass(frozen=True)
class ReaderConfig:
    encoder: str = "multilingual-e5-small"  # the base model folder's name under models_dir
    max_length: int = 384
    stride: int = 128
    max_answer_tokens: int = 30
    batch_size: int = 16
    #: Next-best spans kept per document (non-overlapping; the support graph uses them as support).
    alternatives: int = 2

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ReaderConfig:
        known = {k: data[k] for k in cls().to_json() if k in data}
        return cls(**known)


@dataclass(frozen=True)
class Extraction:
    """What one document says: ``answer`` (None: it does not answer) and its log-probability."""

    answer: str | None
    logprob: float  # log P(best span); 0 would be certain
    none_logprob: float  # log P(no answer) in the window the span came from
    span: str = ""  # the best span, also when "no answer" is likelier
    #: The next-best spans after ``span``, (text, log P), best first, none overlapping another.
    alternatives: tuple[tuple[str, float], ...] = ()


class SpanReader(Protocol):
    """Reads documents for a question: one extraction per text, same order (no model call)."""

    name: str
    fingerprint: str  # changes with the weights (readings caches are keyed by it)

    def read(self, question: str, texts: Sequence[str]) -> list[Extraction]: ...


#: log P of a document with no readable token (empty text): as good as never.
NEVER = -30.0


def load_config(path: Path) -> ReaderConfig:
    file = path / CONFIG_NAME
    if not file.is_file():
        raise ReaderError(
            f"{path} is not a reader checkpoint (no {CONFIG_NAME}); train one with `ragnet train reader`"
        )
    try:
        return ReaderConfig.from_json(json.loads(file.read_text(encoding="utf-8")))
    except (ValueError, TypeError) as exc:
        raise ReaderError(f"{file}: unreadable reader config ({exc})") from exc


def bf16_fast() -> bool:
    """True where the CPU multiplies bf16 in hardware (AMX / AVX512-BF16): autocast then halves time."""
    import torch

    try:
        return torch.backends.cpu.get_cpu_capability() in {"AVX512_BF16", "AMX"} or bool(
            torch.ops.mkldnn._is_mkldnn_bf16_supported()
        )
    except (AttributeError, RuntimeError):
        return False


def load_encoder_qa(encoder_dir: Path) -> tuple[Any, Any]:
    """The encoder with a fresh span head, and its tokenizer (the start of training and of loading)."""
    import logging

    from transformers import AutoModelForQuestionAnswering, AutoTokenizer
    from transformers.utils import logging as hf_logging

    if not (encoder_dir / "config.json").is_file():
        raise ModelNotPrepared(f"no encoder in {encoder_dir}; run `ragnet models prepare` first")
    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity(logging.ERROR)  # the new span head is "missing" from the encoder: expected
    try:
        model = AutoModelForQuestionAnswering.from_pretrained(str(encoder_dir), local_files_only=True)
    finally:
        hf_logging.set_verbosity(level)
    tokenizer = AutoTokenizer.from_pretrained(str(encoder_dir), local_files_only=True)
    return model, tokenizer


class ExtractiveReader:
    """Reads documents for a question in batched encoder passes. Reads are serialised: a fast
    tokenizer's truncation settings are shared state ("Already borrowed" under concurrent calls),
    and one read already uses every core."""

    def __init__(self, checkpoint: Path, encoder_dir: Path, *, bf16: bool | None = None) -> None:
        import torch
        from peft import PeftModel

        self.config = load_config(checkpoint)
        if encoder_dir.name != self.config.encoder:
            raise ReaderError(
                f"reader {checkpoint} was trained on {self.config.encoder}, not {encoder_dir.name}"
            )
        base, self._tokenizer = load_encoder_qa(encoder_dir)
        try:
            model = PeftModel.from_pretrained(base, str(checkpoint)).merge_and_unload()
        except (ValueError, RuntimeError, OSError) as exc:
            raise ReaderError(f"cannot load reader {checkpoint}: {exc}") from exc
        model.eval()
        self._model: Any = model
        self._torch = torch
        self._lock = threading.Lock()
        self._bf16 = bf16_fast() if bf16 is None else bf16
        self.name = checkpoint.name
        self.fingerprint = _fingerprint(checkpoint)

    def read(self, question: str, texts: Sequence[str]) -> list[Extraction]:
        """One extraction per text, same order."""
        if not texts:
            return []
        with self._lock:
            return read_spans(self._model, self._tokenizer, self.config, question, texts, bf16=self._bf16)


def _fingerprint(checkpoint: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    for name in ("adapter_model.safetensors", CONFIG_NAME):
        file = checkpoint / name
        if file.is_file():
            digest.update(file.read_bytes())
    return digest.hexdigest()[:12]


def read_spans(
    model: Any, tokenizer: Any, config: ReaderConfig, question: str, texts: Sequence[str], *, bf16: bool
) -> list[Extraction]:
    import torch

    enc = tokenizer(
        [question] * len(texts),
        list(texts),
        truncation="only_second",
        max_length=config.max_length,
        stride=config.stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        padding=True,
        return_tensors="pt",
    )
    owners = enc.pop("overflow_to_sample_mapping").tolist()
    offsets = enc.pop("offset_mapping").tolist()
    n = len(owners)
    starts, ends = [], []
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        for i in range(0, n, config.batch_size):
            logits = model(
                input_ids=enc["input_ids"][i : i + config.batch_size],
                attention_mask=enc["attention_mask"][i : i + config.batch_size],
            )
            starts.append(logits.start_logits.float())
            ends.append(logits.end_logits.float())
    start_logits = torch.cat(starts)
    end_logits = torch.cat(ends)
    keep = 1 + config.alternatives
    # per text: a span's text (case and spacing folded) -> (answer, log P, log P(no answer) in its window)
    spans: list[dict[str, tuple[str, float, float]]] = [{} for _ in texts]
    for w in range(n):
        context = torch.tensor([s == 1 for s in enc.sequence_ids(w)])
        owner, text = owners[w], texts[owners[w]]
        for s, e, span_lp, none_lp in top_spans(
            start_logits[w], end_logits[w], context, config.max_answer_tokens, keep
        ):
            answer = text[offsets[w][s][0] : offsets[w][e][1]].strip()
            key = " ".join(answer.lower().split())
            if answer and (key not in spans[owner] or span_lp > spans[owner][key][1]):
                spans[owner][key] = (answer, span_lp, none_lp)
    out: list[Extraction] = []
    for t in range(len(texts)):
        ranked = sorted(spans[t].values(), key=lambda a: -a[1])[:keep]
        if not ranked:
            out.append(Extraction(None, NEVER, 0.0))
            continue
        answer, span_lp, none_lp = ranked[0]
        rest = tuple((a, round(lp, 5)) for a, lp, _ in ranked[1:])
        if none_lp > span_lp:  # "no answer" is the likelier reading
            out.append(Extraction(None, span_lp, none_lp, answer, rest))
        else:
            out.append(Extraction(answer, span_lp, none_lp, answer, rest))
    return out


def best_span(
    start_logits: Any, end_logits: Any, context: Any, max_tokens: int
) -> tuple[int, int, float, float] | None:
    """(start, end, log P(span), log P(no answer)) of the best span inside ``context``; the first
    token stands for "no answer"; None when the window holds no context token."""
    found = top_spans(start_logits, end_logits, context, max_tokens, 1)
    return found[0] if found else None


def top_spans(
    start_logits: Any, end_logits: Any, context: Any, max_tokens: int, k: int
) -> list[tuple[int, int, float, float]]:
    """The ``k`` best non-overlapping spans inside ``context``, best first: (start, end,
    log P(span), log P(no answer)), the first token standing for "no answer"."""
    import torch

    if not bool(context.any()):
        return []
    allowed = context.clone()
    allowed[0] = True
    ls = torch.log_softmax(start_logits.masked_fill(~allowed, -1e4), dim=-1)
    le = torch.log_softmax(end_logits.masked_fill(~allowed, -1e4), dim=-1)
    scores = ls[:, None] + le[None, :]
    length = len(ls)
    idx = torch.arange(length)
    band = (idx[None, :] >= idx[:, None]) & (idx[None, :] - idx[:, None] < max_tokens)
    scores = scores.masked_fill(~(band & context[:, None] & context[None, :]), -math.inf)
    none_lp = float(ls[0] + le[0])
    out: list[tuple[int, int, float, float]] = []
    for _ in range(k):
        flat = int(torch.argmax(scores))
        s, e = divmod(flat, length)
        score = float(scores[s, e])
        if score == -math.inf:
            break
        out.append((s, e, score, none_lp))
        scores[: e + 1, s:] = -math.inf  # every span that overlaps this one
    return out
