"""Multi-hop QA in one run: ragnet single-shot, ragnet agentic, and LlamaIndex's default pipeline.

All three use the same corpus, the same embedder (the configured one, multilingual-e5-small by
default) and the same generator (the prepared Qwen2.5-Coder-0.5B-Instruct, fp32, greedy). LlamaIndex
is its documented default: ``VectorStoreIndex.from_documents(docs).as_query_engine()`` (in-memory
vector store, SentenceSplitter 1024/200, top-2, compact response mode), with our embedder and
generator wrapped as its ``BaseEmbedding`` and ``CustomLLM``.

    RAGNET_DATA_DIR=… .venv/bin/python bench/multihop.py --data ../shared/data [--limit 30] \
        [--sets multihop/musique_train100,multihop/hotpotqa_train100] [--pipelines single,agentic,llamaindex]

Prints one JSON object per (set, pipeline) as it finishes, then a summary object on the last line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from api import runtime_env

runtime_env.apply()

from agents.generation.base import GenerationRequest, Generator  # noqa: E402
from api.evaluation import metrics, runs  # noqa: E402
from api.evaluation.data import read_questions  # noqa: E402
from api.services import Services  # noqa: E402
from api.settings import Settings  # noqa: E402
from retrieval.embedder import Embedder  # noqa: E402


def llamaindex_engine(corpus: Path, embedder: Embedder, generator: Generator, max_tokens: int) -> Any:
    from llama_index.core import Document, VectorStoreIndex
    from llama_index.core.base.embeddings.base import BaseEmbedding
    from llama_index.core.llms import CompletionResponse, CustomLLM, LLMMetadata
    from llama_index.core.llms.callbacks import llm_completion_callback
    from pydantic import PrivateAttr

    class Embedding(BaseEmbedding):
        _e: Any = PrivateAttr()

        def __init__(self, e: Embedder) -> None:
            super().__init__(model_name=e.name, embed_batch_size=16)
            self._e = e

        def _get_query_embedding(self, query: str) -> list[float]:
            return [float(x) for x in self._e.embed([query], kind="query")[0]]

        async def _aget_query_embedding(self, query: str) -> list[float]:
            return self._get_query_embedding(query)

        def _get_text_embedding(self, text: str) -> list[float]:
            return self._get_text_embeddings([text])[0]

        def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
            return [[float(x) for x in v] for v in self._e.embed(texts, kind="document")]

    class LLM(CustomLLM):
        _g: Any = PrivateAttr()

        def __init__(self, g: Generator) -> None:
            super().__init__()
            self._g = g

        @property
        def metadata(self) -> LLMMetadata:
            return LLMMetadata(context_window=8192, num_output=max_tokens, model_name=self._g.name)

        @llm_completion_callback()
        def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
            request = GenerationRequest([{"role": "user", "content": prompt}], max_tokens=max_tokens)
            return CompletionResponse(text=self._g.generate(request).text)

        @llm_completion_callback()
        def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> Any:
            response = self.complete(prompt)
            yield response

    rows = [json.loads(line) for line in corpus.read_text(encoding="utf-8").splitlines() if line.strip()]
    docs = [Document(text=f"{r['title']}\n{r['text']}", metadata={"id": r["id"]}) for r in rows]
    index = VectorStoreIndex.from_documents(docs, embed_model=Embedding(embedder))
    return index.as_query_engine(llm=LLM(generator))


def eval_llamaindex(engine: Any, questions: Path, limit: int | None) -> dict[str, Any]:
    items = read_questions(questions, limit)
    totals = {"em": 0.0, "f1": 0.0, "support_recall": 0.0}
    seconds: list[float] = []
    for q in items:
        t0 = time.perf_counter()
        response = engine.query(q.question)
        seconds.append(time.perf_counter() - t0)
        prediction = str(response).strip()
        sources = [n.node.metadata.get("id") for n in response.source_nodes]
        totals["em"] += metrics.exact_match(prediction, q.answers)
        totals["f1"] += metrics.f1(prediction, q.answers)
        totals["support_recall"] += (
            metrics.recall_at(sources, q.supporting_ids, len(sources)) if sources else 0.0
        )
    n = len(items) or 1
    return {
        "n": len(items),
        **{k: round(v / n, 4) for k, v in totals.items()},
        "p50_s": round(metrics.percentile(seconds, 50), 3),
        "p95_s": round(metrics.percentile(seconds, 95), 3),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, required=True, help="the shared/data folder")
    parser.add_argument("--sets", default="multihop/musique_train100,multihop/hotpotqa_train100")
    parser.add_argument("--pipelines", default="single,agentic,llamaindex")
    parser.add_argument("--limit", type=int)
    args = parser.parse_args(argv)
    services = Services(Settings())
    summary: dict[str, Any] = {}
    try:
        for name in args.sets.split(","):
            corpus, questions = args.data / name / "corpus.jsonl", args.data / name / "questions.jsonl"
            kb = name.split("/")[-1]
            for pipeline in args.pipelines.split(","):
                t0 = time.perf_counter()
                if pipeline == "llamaindex":
                    engine = llamaindex_engine(
                        corpus, services.embedder, services.generator, services.settings.max_new_tokens
                    )
                    result = eval_llamaindex(engine, questions, args.limit)
                else:
                    result = runs.eval_qa(services, kb, corpus, questions, args.limit, pipeline=pipeline)  # type: ignore[arg-type]
                result = {
                    "set": name,
                    "pipeline": pipeline,
                    **result,
                    "wall_s": round(time.perf_counter() - t0),
                }
                print(json.dumps(result), flush=True)
                summary[f"{kb}/{pipeline}"] = {
                    k: result.get(k) for k in ("n", "em", "f1", "support_recall", "p50_s")
                }
    finally:
        services.close()
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
