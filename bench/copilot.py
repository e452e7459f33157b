"""Copilot latency on the embedded defaults: verbatim FAQ turns, and grounded follow-up turns
streamed (time to the first token, with the follow-up rewrite in the path).

- FAQ: a FAQ set (``--faqs``, ``--queries``; default ``faq/covid_faq_en``) is ingested into a temp
  data folder and an assistant asks each query once (``--faq-turns``). Reported: latency p50/p95 of
  the turns answered verbatim, how many were, and that none made an LLM call.
- Grounded: two-turn conversations over the demo knowledge base, the second a pronoun follow-up;
  each turn streamed over SSE (the real app in-process). Reported per turn position: time to the
  first ``token`` event p50/p95 (the rewrite, FAQ match, retrieval and prefill), the rewrite's own
  ms, and the whole turn.

    .venv/bin/python bench/copilot.py [--faq-turns 100] [--conversations 6] [--json]

The generator is the prepared default (RAGNET_GENERATOR_*, see `ragnet models prepare`); on 2 cores
any other load shifts the numbers. Prints progress to stderr and one JSON object on its last line.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from api import runtime_env

runtime_env.apply()

from fastapi.testclient import TestClient  # noqa: E402

from agents.model_prep import generator_dir  # noqa: E402
from api.app import create_app  # noqa: E402
from api.services import Services  # noqa: E402
from api.settings import Settings  # noqa: E402
from retrieval.faq_records import read_faqs  # noqa: E402
from retrieval.loaders import iter_documents  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "faq" / "covid_faq_en"
CONVERSATIONS = [
    ("Who carved the Rosetta Stone?", "When was it found?"),
    ("What is the Rosetta Stone?", "Where is it kept today?"),
    ("Who invented the printing press?", "When did he build it?"),
    ("How do honeybees make honey?", "How long do they live?"),
    ("What was Apollo 11?", "Who commanded it?"),
    ("How is green tea processed?", "How does it differ from black tea?"),
    ("What is the water cycle?", "What drives it?"),
    ("What is compound interest?", "How is it calculated?"),
]


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)


def _summary(values: list[float]) -> dict[str, Any]:
    return {"n": len(values), "p50_ms": _pct(values, 0.5), "p95_ms": _pct(values, 0.95)}


def _log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def bench_faq(client: TestClient, queries: list[dict[str, Any]]) -> dict[str, Any]:
    verbatim: list[float] = []
    calls = 0
    for i, q in enumerate(queries):
        t0 = time.perf_counter()
        r = client.post(
            "/v1/assistants/faq-bench/completions",
            json={"messages": [{"role": "user", "content": q["query"]}]},
        )
        took = (time.perf_counter() - t0) * 1000
        r.raise_for_status()
        out = r.json()
        if out["answer_source"] == "faq":
            verbatim.append(took)
            calls += out["trace"]["llm_calls"]
        if (i + 1) % 20 == 0:
            _log(f"faq: {i + 1}/{len(queries)} turns")
    return {
        **_summary(verbatim),
        "turns": len(queries),
        "verbatim": len(verbatim),
        "llm_calls_on_verbatim": calls,
    }


def _stream_turn(client: TestClient, sid: str, text: str) -> dict[str, Any]:
    t0 = time.perf_counter()
    first: float | None = None
    done: dict[str, Any] = {}
    event = ""
    body = {"content": text, "stream": True}
    with client.stream("POST", f"/v1/assistants/demo-bench/sessions/{sid}/messages", json=body) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                if event == "token" and first is None:
                    first = (time.perf_counter() - t0) * 1000
                elif event == "done":
                    done = json.loads(line[5:])
    total = (time.perf_counter() - t0) * 1000
    return {"ttft": first if first is not None else total, "total": total, "done": done}


def bench_grounded(client: TestClient, n: int) -> dict[str, Any]:
    per_turn: dict[int, dict[str, list[float]]] = {1: {}, 2: {}}
    methods: dict[str, int] = {}
    for i, turns in enumerate(CONVERSATIONS[:n]):
        sid = client.post("/v1/assistants/demo-bench/sessions", json={}).json()["id"]
        for pos, text in enumerate(turns, start=1):
            out = _stream_turn(client, sid, text)
            rewrite = out["done"].get("rewrite", {})
            methods[rewrite.get("method", "?")] = methods.get(rewrite.get("method", "?"), 0) + 1
            slot = per_turn[pos]
            slot.setdefault("ttft", []).append(out["ttft"])
            slot.setdefault("total", []).append(out["total"])
            slot.setdefault("rewrite", []).append(
                float(out["done"].get("timings", {}).get("rewrite_ms", 0.0))
            )
        _log(f"grounded: {i + 1}/{n} conversations")
    report: dict[str, Any] = {"rewrite_methods": methods}
    for pos, slot in per_turn.items():
        report[f"turn{pos}"] = {
            "ttft": _summary(slot.get("ttft", [])),
            "total": _summary(slot.get("total", [])),
            "rewrite_p50_ms": _pct(slot.get("rewrite", []), 0.5),
        }
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--faqs", type=Path, default=SHARED / "faqs.jsonl")
    p.add_argument("--queries", type=Path, default=SHARED / "queries.jsonl")
    p.add_argument("--faq-turns", type=int, default=100)
    p.add_argument("--conversations", type=int, default=6)
    args = p.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        # the models prepared in the usual data folder (RAGNET_DATA_DIR, default ./data), a fresh index
        prepared = Settings()
        settings = prepared.model_copy(
            update={
                "data_dir": Path(tmp) / "data",
                "auth": "none",
                "generator_path": prepared.generator_path or generator_dir(prepared.models_dir),
            }
        )
        services = Services(settings)
        _log("ingesting the FAQ set and the demo knowledge base…")
        services.ingestor.ingest_faqs(
            services.metadata.ensure_kb("faqs"), read_faqs(args.faqs, max_bytes=10**8)
        )
        services.ingestor.ingest("demo", iter_documents([ROOT / "demo" / "kb"], max_bytes=10**7))
        queries = [json.loads(line) for line in args.queries.read_text().splitlines() if line.strip()]
        with TestClient(create_app(services=services)) as client:
            client.post("/v1/assistants", json={"name": "faq-bench", "kbs": ["faqs"]}).raise_for_status()
            client.post(
                "/v1/assistants", json={"name": "demo-bench", "kbs": ["demo"], "strict": False}
            ).raise_for_status()
            client.post(
                "/v1/assistants/demo-bench/completions",
                json={"messages": [{"role": "user", "content": "warm up"}]},
            )
            faq = bench_faq(client, queries[: args.faq_turns])
            grounded = bench_grounded(client, min(args.conversations, len(CONVERSATIONS)))
        services.close()
    result = {
        "generator": settings.generator_quantize,
        "faq_scorer": getattr(settings, "faq_scorer", "cosine"),
        "faq": faq,
        "grounded": grounded,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
