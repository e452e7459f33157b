"""The `ragnet` command line. Results go to stdout (JSON commands print one object on their last
line); progress and messages go to stderr."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from api import runtime_env


def _err(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _settings(args: argparse.Namespace) -> Any:
    from api.settings import Settings

    overrides: dict[str, Any] = {}
    if getattr(args, "data_dir", None):
        overrides["data_dir"] = args.data_dir
    return Settings(**overrides)


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from api.app import create_app

    settings = _settings(args)
    host = args.host or settings.host
    port = args.port or settings.port
    app = create_app(settings, warm=True)
    _err(f"ragnet: serving on http://{host}:{port}  (API docs: http://{host}:{port}/docs)")
    uvicorn.run(app, host=host, port=port, log_level="info")
    return 0


def cmd_ingest(args: argparse.Namespace, services: Any) -> int:
    from retrieval.loaders import iter_documents

    def progress(r: Any) -> None:
        rate = f"{r.chunks_per_second:.1f} chunks/s"
        _err(f"ingest {args.kb}: {r.documents} documents, {r.chunks} new chunks, {rate}")

    report = services.ingestor.ingest(
        args.kb,
        iter_documents([Path(p) for p in args.paths], max_bytes=services.settings.max_file_bytes),
        progress,
    )
    for failure in report.failures:
        _err(f"skipped {failure.source}: {failure.reason}")
    print(json.dumps(report.as_dict(), ensure_ascii=False))
    # Some files failed but the rest went in: exit 2 so scripts notice.
    return 2 if report.failures else 0


def cmd_ask(args: argparse.Namespace, services: Any) -> int:
    from api import qa

    if not args.question.strip():
        _err("error: the question is empty")
        return 2
    result = qa.answer(services, args.kb, args.question.strip(), args.top_k)
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
        return 0
    print(result["answer"])
    if result["citations"]:
        print()
        for c in result["citations"]:
            mark = "*" if c["cited"] else " "
            print(f"{mark}[{c['n']}] {c['title'] or c['doc_id']}  ({c['doc_id']}, score {c['score']:.3f})")
    else:
        print("\n(not grounded: the knowledge base had nothing relevant; the base model answered)")
    return 0


def cmd_models(args: argparse.Namespace, settings: Any) -> int:
    from agents.model_prep import (
        DEFAULT_GENERATOR,
        folder_bytes,
        generator_dir,
        is_prepared,
        prepare_generator,
    )
    from retrieval.embedder import default_embedder_path

    if args.action == "prepare":
        if settings.generator_path is None:
            model = prepare_generator(settings.models_dir, log=_err)
            verb = "prepared in" if model.seconds else "already prepared:"
            _err(f"generator {verb} {model.path}" + (f" ({model.seconds:.0f} s)" if model.seconds else ""))
        else:
            _err(f"generator comes from RAGNET_GENERATOR_PATH={settings.generator_path}; nothing to prepare")
    gen_path = settings.generator_path or generator_dir(settings.models_dir)
    emb_path = settings.embedder_path or default_embedder_path()
    rows = [
        {
            "role": "generator",
            "name": gen_path.name if settings.generator_path else DEFAULT_GENERATOR,
            "path": str(gen_path),
            "prepared": is_prepared(gen_path),
            "bytes": folder_bytes(gen_path) if gen_path.exists() else 0,
            "quantize": settings.generator_quantize,
        },
        {
            "role": "embedder",
            "name": "all-MiniLM-L6-v2" if settings.embedder_path is None else emb_path.name,
            "path": str(emb_path),
            "prepared": emb_path.exists(),
            "bytes": folder_bytes(emb_path) if emb_path.exists() else 0,
        },
    ]
    if args.json:
        print(json.dumps(rows))
    else:
        for r in rows:
            state = "ready" if r["prepared"] else "NOT PREPARED (ragnet models prepare)"
            print(
                f"{r['role']:<10} {r['name']:<30} {r['bytes'] / 1e6:9.1f} MB  {state}\n{'':<10} {r['path']}"
            )
    return 0


def cmd_kbs(args: argparse.Namespace, services: Any) -> int:
    rows = [
        {"name": k.name, "documents": k.documents, "chunks": k.chunks, "created_at": k.created_at.isoformat()}
        for k in services.metadata.list_kbs()
    ]
    print(json.dumps(rows))
    return 0


def cmd_eval(args: argparse.Namespace, services: Any) -> int:
    from api.evaluation import runs

    if args.what == "retrieval":
        result = runs.eval_retrieval(services, args.kb, args.corpus, args.questions, args.limit, args.k)
    else:
        result = runs.eval_qa(services, args.kb, args.corpus, args.questions, args.limit)
    print(json.dumps(result))
    return 0


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ragnet", description="Agentic RAG search-answer service.")
    parser.add_argument("--data-dir", type=Path, help="override RAGNET_DATA_DIR")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="start the HTTP service")
    p.add_argument("--host")
    p.add_argument("--port", type=int)

    p = sub.add_parser("ingest", help="ingest files, folders or corpus.jsonl into a knowledge base")
    p.add_argument("--kb", required=True)
    p.add_argument("paths", nargs="+")

    p = sub.add_parser("ask", help="answer a question from a knowledge base")
    p.add_argument("--kb", required=True)
    p.add_argument("--json", action="store_true")
    p.add_argument("--top-k", type=int)
    p.add_argument("question")

    p = sub.add_parser("models", help="list (or prepare) the models")
    p.add_argument("action", nargs="?", choices=["list", "prepare"], default="list")
    p.add_argument("--json", action="store_true")

    sub.add_parser("kbs", help="list knowledge bases")

    p = sub.add_parser("eval", help="evaluation over shared/data formats; last line is one JSON object")
    p.add_argument("what", choices=["retrieval", "qa"])
    p.add_argument("--kb", required=True)
    p.add_argument("--corpus", type=Path, required=True)
    p.add_argument("--questions", type=Path, required=True)
    p.add_argument("--limit", type=_positive)
    p.add_argument("--k", type=_positive, default=10)
    return parser


def main(argv: list[str] | None = None) -> int:
    runtime_env.apply()
    args = build_parser().parse_args(argv)
    from pydantic import ValidationError

    from retrieval.errors import RagnetError

    try:
        if args.command == "serve":
            return cmd_serve(args)
        settings = _settings(args)
        if args.command == "models":
            return cmd_models(args, settings)
        from api.services import Services

        services = Services(settings)
        try:
            handler = {"ingest": cmd_ingest, "ask": cmd_ask, "kbs": cmd_kbs, "eval": cmd_eval}[args.command]
            return handler(args, services)
        finally:
            services.close()
    except ValidationError as exc:
        _err(f"error: invalid settings: {exc}")
        return 2
    except RagnetError as exc:
        _err(f"error: {exc}")
        return 1
    except KeyboardInterrupt:
        _err("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
