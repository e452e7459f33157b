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
    from api.settings import LOOPBACK

    settings = _settings(args)
    host = args.host or settings.host
    port = args.port or settings.port
    if settings.auth == "none" and host not in LOOPBACK:
        _err(f"error: RAGNET_AUTH=none serves without API keys and binds to loopback only, not {host}")
        return 2
    app = create_app(settings, warm=True)
    _err(f"ragnet: serving on http://{host}:{port}  (API docs: /docs, admin page: /admin)")
    if settings.auth == "none":
        _err("ragnet: local no-auth mode (RAGNET_AUTH=none): every request acts as admin; loopback only")
    else:
        from api.auth import active_keys
        from retrieval.metadata import MetadataStore

        settings.data_dir.mkdir(parents=True, exist_ok=True)
        store = MetadataStore(settings.sqlalchemy_url)
        if active_keys(store) == 0:
            _err("ragnet: no API keys yet; create one with: ragnet keys create --name admin --role admin")
        store.close()
    uvicorn.run(app, host=host, port=port, log_level="info")
    return 0


def _is_faq_file(path: Path) -> bool:
    """A ``faqs.jsonl`` (shared/data FAQ format): by name, or a first record with question + answer."""
    if path.suffix.lower() != ".jsonl" or not path.is_file():
        return False
    if path.name.lower().startswith("faqs"):
        return True
    with path.open(encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if line.strip():
                try:
                    first = json.loads(line)
                except json.JSONDecodeError:
                    return False
                return (
                    isinstance(first, dict)
                    and "question" in first
                    and "answer" in first
                    and "text" not in first
                )
    return False


def cmd_ingest(args: argparse.Namespace, services: Any) -> int:
    from retrieval.faq_records import read_faqs
    from retrieval.ingest import IngestReport
    from retrieval.knowledge import check_name
    from retrieval.loaders import iter_documents

    check_name(args.kb)
    kb = services.metadata.ensure_kb(args.kb)
    max_bytes = services.settings.max_file_bytes

    def progress(r: Any) -> None:
        rate = f"{r.chunks_per_second:.1f} chunks/s"
        _err(f"ingest {args.kb}: {r.documents} items, {r.chunks} new chunks, {rate}")

    paths = [Path(p) for p in args.paths]
    faq_files = [p for p in paths if _is_faq_file(p)]
    doc_paths = [p for p in paths if p not in faq_files]
    reports: list[IngestReport] = []
    if doc_paths:
        reports.append(services.ingestor.ingest(kb, iter_documents(doc_paths, max_bytes=max_bytes), progress))
    for path in faq_files:
        _err(f"{path}: FAQ file")
        reports.append(services.ingestor.ingest_faqs(kb, read_faqs(path, max_bytes=max_bytes), progress))
    failures = [f for r in reports for f in r.failures]
    for failure in failures:
        _err(f"skipped {failure.source}: {failure.reason}")
    for r in reports:
        for doc_id, same in r.duplicates:
            _err(f"skipped {doc_id}: same content as {same}")
    out = (
        reports[0].as_dict()
        if len(reports) == 1
        else {"kb": args.kb, "parts": [r.as_dict() for r in reports]}
    )
    print(json.dumps(out, ensure_ascii=False))
    # Some files failed but the rest went in: exit 2 so scripts notice.
    return 2 if failures else 0


def cmd_keys(args: argparse.Namespace, services: Any) -> int:
    from api import auth

    if args.action == "create":
        kbs = [k.strip() for k in args.kb.split(",") if k.strip()] if args.kb else ["*"]
        try:
            import time

            name = args.name or f"{args.role}-{int(time.time())}"
            record, secret = auth.create_key(services.metadata, name, args.role, kbs)
        except ValueError as exc:
            _err(f"error: {exc}")
            return 2
        _err("the key is shown once; store it now (only its hash is kept)")
        print(json.dumps({**record, "key": secret}))
    elif args.action == "revoke":
        if not args.name:
            _err("error: --name NAME (or the key id) is required")
            return 2
        if not auth.revoke_key(services.metadata, args.name):
            _err(f"error: no active key named {args.name!r}")
            return 1
        print(json.dumps({"revoked": args.name}))
    else:
        print(json.dumps(auth.list_keys(services.metadata)))
    return 0


def cmd_ask(args: argparse.Namespace, services: Any) -> int:
    from api import qa

    if not args.question.strip():
        _err("error: the question is empty")
        return 2
    result = qa.answer(
        services, args.kb, args.question.strip(), args.top_k, mode=args.mode, strict=args.strict
    )
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
    from agents.generation.cpu_features import prompt_precision
    from agents.model_prep import (
        DEFAULT_GENERATOR,
        folder_bytes,
        generator_dir,
        is_prepared,
        prepare_generator,
    )
    from retrieval.e5_import import e5_dir, is_e5_prepared, prepare_multilingual_e5
    from retrieval.embedder import default_embedder_path

    e5_embeds = settings.embedder_path is None and settings.embedder != "all-MiniLM-L6-v2"
    if args.action == "prepare" and (e5_embeds or settings.reader == "extractive"):
        # e5 is the default embedder and, always, the extractive reader's encoder
        path = prepare_multilingual_e5(settings.models_dir, log=_err)
        _err(f"{'embedder' if e5_embeds else 'reader encoder'} ready: {path}")
    if args.action == "prepare":
        if settings.generator_path is None:
            model = prepare_generator(settings.models_dir, log=_err)
            verb = "prepared in" if model.seconds else "already prepared:"
            _err(f"generator {verb} {model.path}" + (f" ({model.seconds:.0f} s)" if model.seconds else ""))
        else:
            _err(f"generator comes from RAGNET_GENERATOR_PATH={settings.generator_path}; nothing to prepare")
    gen_path = settings.generator_path or generator_dir(settings.models_dir)
    if settings.embedder_path is not None:
        emb_path = settings.embedder_path
    elif settings.embedder == "all-MiniLM-L6-v2":
        emb_path = default_embedder_path()
    else:
        emb_path = e5_dir(settings.models_dir)
    rows = [
        {
            "role": "generator",
            "name": gen_path.name if settings.generator_path else DEFAULT_GENERATOR,
            "path": str(gen_path),
            "prepared": is_prepared(gen_path),
            "bytes": folder_bytes(gen_path) if gen_path.exists() else 0,
            "quantize": settings.generator_quantize,
            "prefill": prompt_precision(settings.generator_quantize, settings.generator_prefill),
        },
        {
            "role": "embedder",
            "name": settings.embedder if settings.embedder_path is None else emb_path.name,
            "path": str(emb_path),
            "prepared": is_e5_prepared(emb_path)
            if emb_path == e5_dir(settings.models_dir)
            else emb_path.exists(),
            "quantize": settings.embedder_quantize,
            "bytes": folder_bytes(emb_path) if emb_path.exists() else 0,
        },
    ]
    if settings.reader == "extractive":
        from agents.extractive_reader import CONFIG_NAME, DEFAULT_READER

        reader_path = settings.reader_model or DEFAULT_READER
        rows.append(
            {
                "role": "reader",
                "name": "extractive span reader"
                + ("" if settings.reader_model is None else f" ({reader_path.name})"),
                "path": str(reader_path),
                "prepared": (reader_path / CONFIG_NAME).is_file()
                and is_e5_prepared(e5_dir(settings.models_dir)),
                "encoder": str(e5_dir(settings.models_dir)),
                "bytes": folder_bytes(reader_path) if reader_path.exists() else 0,
            }
        )
    if args.json:
        print(json.dumps(rows))
    else:
        for r in rows:
            state = "ready" if r["prepared"] else "NOT PREPARED (ragnet models prepare)"
            print(
                f"{r['role']:<10} {r['name']:<30} {r['bytes'] / 1e6:9.1f} MB  {state}\n{'':<10} {r['path']}"
            )
            if "prefill" in r:
                print(f"{'':<10} weights {r['quantize']}, prompts {r['prefill']}")
    return 0


def cmd_adapters(args: argparse.Namespace, services: Any) -> int:
    from api.adapter_listing import adapter_report

    report = adapter_report(services)
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"backend {report['backend']}  base {report['base_model']}  router {report['router']['mode']}")
    if not any(r["in_registry"] for r in report["adapters"]):
        print("no adapters registered: every request goes to the base model (RAGNET_ADAPTERS)")
    for row in report["adapters"]:
        fits = {True: "fits the base model", False: "DOES NOT FIT", None: "checked by the server"}
        hint = f"""RAGNET_ADAPTERS='[{{"name": "{row["name"]}"}}]'"""
        state = "registered" if row["in_registry"] else f"available: {hint}"
        domains = ",".join(row["domains"]) or "-"
        print(f"{row['name']:<16} domains {domains:<20} {fits[row['fits_base']]}, {state}")
        print(f"{'':<16} {row['description']}\n{'':<16} {row['path']}")
        if row.get("problem"):
            print(f"{'':<16} {row['problem']}")
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

    if args.what == "router":
        return _eval_router(args, services)
    if args.what == "adapter":
        return _eval_adapter(args, services)
    if args.what == "reader":
        return _eval_reader(args, services)
    if not args.kb:
        _err(f"error: eval {args.what} needs --kb")
        return 2
    if args.what == "retrieval":
        if args.corpus is None or args.questions is None:
            _err("error: eval retrieval needs --corpus and --questions")
            return 2
        result = runs.eval_retrieval(
            services, args.kb, args.corpus, args.questions, args.limit, args.k, mode=args.mode
        )
    elif args.what == "faq":
        if args.faqs is None or args.queries is None:
            _err("error: eval faq needs --faqs and --queries")
            return 2
        from api.evaluation.faq_eval import eval_faq_scored

        result = eval_faq_scored(
            services, args.kb, args.faqs, args.queries, args.limit,
            scorer=_faq_scorer(args, services), unmatched=args.unmatched,
            candidates=args.candidates, mode=args.mode, log=_err,
        )  # fmt: skip
    elif args.what == "aggregate":
        from api.evaluation.aggregate import eval_aggregate

        if args.corpus is None or args.questions is None:
            _err("error: eval aggregate needs --corpus and --questions")
            return 2
        result = eval_aggregate(
            services, args.kb, args.corpus, args.questions, args.limit, gnn=args.gnn, log=_err
        )
    else:
        if args.corpus is None or args.questions is None:
            _err("error: eval qa needs --corpus and --questions")
            return 2
        result = runs.eval_qa(
            services, args.kb, args.corpus, args.questions, args.limit, pipeline=args.pipeline
        )
    print(json.dumps(result))
    return 0


def _faq_scorer(args: argparse.Namespace, services: Any) -> Any:
    """``--scorer NAME`` (blend, cosine) for one evaluation; default: RAGNET_FAQ_SCORER."""
    if not getattr(args, "scorer", None) or args.scorer == services.settings.faq_scorer:
        return services.faq_scorer
    from agents.faq_match import CosineScorer

    if args.scorer == "cosine":
        return CosineScorer()
    from agents.faq_reranker import DEFAULT_RERANKER, BlendScorer

    return BlendScorer(
        services.settings.faq_reranker or DEFAULT_RERANKER,
        encoder=services.faq_encoder,
        dense=services.embedder.name.startswith("multilingual-e5-small"),
    )


def _router_threshold(args: argparse.Namespace, services: Any) -> float | None:
    threshold = services.settings.router_threshold if args.threshold is None else args.threshold
    if not 0.0 <= threshold <= 1.0:
        _err(f"error: --threshold must be within [0, 1], got {threshold}")
        return None
    return float(threshold)


def _eval_router(args: argparse.Namespace, services: Any) -> int:
    from api.evaluation.router_eval import eval_router

    if not args.train or not args.test:
        _err("error: eval router needs --train and --test (FILE[=LABEL], comma-separated)")
        return 2
    threshold = _router_threshold(args, services)
    if threshold is None:
        return 2
    result = eval_router(
        services.embed_queries,
        services.embedder.name,
        args.train,
        args.test,
        threshold,
        seed=13,
        log=_err,
    )
    print(json.dumps(result))
    return 0


def _train_router(args: argparse.Namespace, services: Any) -> int:
    from api.evaluation.router_eval import train_router_files

    if not args.train:
        _err("error: train router needs --train (FILE[=LABEL], comma-separated)")
        return 2
    threshold = _router_threshold(args, services)
    if threshold is None:
        return 2
    out = args.out or services.settings.data_dir / "models" / "router"
    result = train_router_files(
        services.embed_queries,
        services.embedder.name,
        args.train,
        out,
        test_spec=args.test,
        threshold=threshold,
        seed=args.seed,
        log=_err,
    )
    _err(f"to use it: RAGNET_ROUTER_MODEL={out} (default: the router shipped in the package)")
    print(json.dumps(result))
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    from api.evaluation.router_eval import write_split

    if args.what == "faq-banking":
        from api.evaluation.faq_data import write_faq_banking

        summary = write_faq_banking(args.data, args.out, seed=args.seed)
        _err(
            f"wrote {args.out}/dev and {args.out}/test (faqs.jsonl, queries.jsonl, unmatched.jsonl); "
            f"evaluate with: ragnet eval faq --kb banking-dev --faqs {args.out}/dev/faqs.jsonl "
            f"--queries {args.out}/dev/queries.jsonl --unmatched {args.out}/dev/unmatched.jsonl"
        )
        print(json.dumps(summary))
        return 0

    result = write_split(args.data, args.out)
    _err(
        f"wrote {args.out}/train.jsonl and test.jsonl; evaluate with: ragnet eval router "
        f"--train {args.out}/train.jsonl --test {args.out}/test.jsonl"
    )
    print(json.dumps(result))
    return 0


#: The sets the shipped support GNNs were trained on (folder under --data, and how many questions):
#: the generator reads ~10 s a question, the span reader ~0.2 s, so it reads them whole.
GNN_SETS = "rc/cmrc2018_trial:40,multihop/musique_train100:65"
GNN_SETS_EXTRACTIVE = "rc/cmrc2018_trial,multihop/musique_train100"


def _training_sets(data: Path, spec: str) -> list[Any]:
    from api.evaluation.aggregate import TrainingSet
    from api.evaluation.data import set_folder
    from retrieval.errors import IngestError

    sets = []
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, limit = item.partition(":")
        try:
            folder = set_folder(data, name)
        except IngestError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from exc
        if limit and (not limit.isdigit() or int(limit) < 1):
            raise argparse.ArgumentTypeError(f"{item}: the limit after ':' must be a positive number")
        sets.append(TrainingSet(folder, int(limit) if limit else None))
    if not sets:
        raise argparse.ArgumentTypeError("no training sets given")
    return sets


def cmd_train(args: argparse.Namespace, services: Any) -> int:
    if args.what == "router":
        return _train_router(args, services)
    if args.what == "lora":
        from api.evaluation.adapter_eval import train_lora_command

        print(json.dumps(train_lora_command(services.settings, args, log=_err)))
        return 0
    if args.what == "reader":
        return _train_reader(args, services)
    if args.what == "reranker":
        from api.evaluation.faq_eval import train_reranker_command

        out = args.out or services.settings.data_dir / "models" / "faq_reranker"
        result = train_reranker_command(services, args.data, out, seed=args.seed, log=_err)
        _err(f"to use it: RAGNET_FAQ_RERANKER={out} (default: the checkpoint shipped in the package)")
        print(json.dumps(result))
        return 0
    from api.evaluation.aggregate import train_gnn

    try:
        default_sets = GNN_SETS_EXTRACTIVE if services.settings.reader == "extractive" else GNN_SETS
        sets = _training_sets(args.data, args.sets or default_sets)
    except argparse.ArgumentTypeError as exc:
        _err(f"error: {exc}")
        return 2
    out = args.out or services.settings.data_dir / "models" / "support_gnn"
    result = train_gnn(services, sets, out, epochs=args.epochs or 40, seed=args.seed, log=_err)
    _err(f"to use it: RAGNET_SUPPORT_GNN={out} (default: the checkpoint shipped in the package)")
    print(json.dumps(result))
    return 0


def _eval_reader(args: argparse.Namespace, services: Any) -> int:
    from api.evaluation.reader_eval import eval_reader

    if args.corpus is None or args.questions is None:
        _err("error: eval reader needs --corpus and --questions")
        return 2
    result = eval_reader(
        services, args.corpus, args.questions, args.limit,
        reader_dir=args.reader, generator=args.generator, log=_err,
    )  # fmt: skip
    print(json.dumps(result))
    return 0


def _train_reader(args: argparse.Namespace, services: Any) -> int:
    from agents.reader_training import ReaderTrainConfig
    from api.evaluation.reader_eval import READER_SETS, train_reader_command

    out = args.out or services.settings.data_dir / "models" / "reader"
    config = ReaderTrainConfig(epochs=args.epochs or 2, seed=args.seed)
    if args.lr is not None:
        config.lr = args.lr
    sets = args.sets or READER_SETS
    result = train_reader_command(
        services, args.data, sets, args.hold_out, out, config, init=args.init, log=_err
    )
    _err(f"to use it: RAGNET_READER=extractive RAGNET_READER_MODEL={out}")
    print(json.dumps(result))
    return 0


def _eval_adapter(args: argparse.Namespace, services: Any) -> int:
    from api.evaluation.adapter_eval import eval_adapter

    if args.adapter is None or args.data is None:
        _err("error: eval adapter needs --adapter DIR and --data FILE")
        return 2
    result = eval_adapter(
        services.settings, services, args.adapter, args.data, args.general,
        limit=args.limit, holdout=args.holdout, log=_err,
    )  # fmt: skip
    print(json.dumps(result))
    return 0


def _lora_arguments(p: argparse.ArgumentParser) -> None:
    """`train lora` options (agents/lora_data.py documents the data formats and the mixing rule)."""
    p.add_argument("--name", help="lora: the adapter's name (lower case, digits, - and _)")
    p.add_argument("--general", type=Path, help="lora: general data FILE mixed in (any --data format)")
    p.add_argument("--domains", help="lora: comma-separated router labels the adapter serves (default: NAME)")
    p.add_argument("--description", default="", help="lora: one line for the registry")
    p.add_argument("--r", type=_positive, default=8, help="lora: rank (alpha = 2r)")
    p.add_argument("--layers", type=_positive, help="lora: adapt only the top N layers (default: all)")
    p.add_argument("--lr", type=_rate, help="peak learning rate (default: lora 3e-4, reader 1e-3)")
    p.add_argument("--batch-size", type=_positive, default=8)
    p.add_argument("--max-len", type=_positive, default=192, help="lora: longer examples are skipped")
    p.add_argument("--general-share", type=float, default=0.3, help="lora: share of general examples")
    p.add_argument("--holdout", type=float, default=0.1, help="lora: share of each file held out (id hash)")
    p.add_argument("--limit", type=_positive, help="lora: at most N domain examples (balanced by label)")
    p.add_argument("--save-every", type=_positive, default=20, help="lora: steps between snapshots")
    p.add_argument(
        "--init",
        type=Path,
        help="lora: start from this adapter's weights; reader: from this reader checkpoint (trained further)",
    )


def _rate(text: str) -> float:
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"a learning rate is between 0 and 1, got {value}")
    return value


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
    p.add_argument("--mode", choices=["auto", "single", "agentic"], help="default RAGNET_ANSWER_MODE (auto)")
    p.add_argument("--strict", action="store_true", default=None, help="no base-model fallback")
    p.add_argument("question")

    p = sub.add_parser("models", help="list (or prepare) the models")
    p.add_argument("action", nargs="?", choices=["list", "prepare"], default="list")
    p.add_argument("--json", action="store_true")

    sub.add_parser("kbs", help="list knowledge bases")

    p = sub.add_parser("adapters", help="the LoRA adapter registry (RAGNET_ADAPTERS, or the shipped ones)")
    p.add_argument("action", nargs="?", choices=["list"], default="list")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("keys", help="API keys: create (printed once), list, revoke")
    p.add_argument("action", nargs="?", choices=["create", "list", "revoke"], default="list")
    p.add_argument("--name", help="a label for the key (unique)")
    p.add_argument("--role", choices=["admin", "reader"], default="reader")
    p.add_argument("--kb", help="comma-separated knowledge bases the key may use (default: all, '*')")

    p = sub.add_parser("eval", help="evaluation over shared/data formats; last line is one JSON object")
    p.add_argument("what", choices=["retrieval", "qa", "faq", "aggregate", "router", "adapter", "reader"])
    p.add_argument("--kb", help="the knowledge base (every evaluation but router)")
    p.add_argument("--train", help="router: labelled files FILE[=LABEL],... to train on")
    p.add_argument("--test", help="router: labelled files FILE[=LABEL],... to evaluate on")
    p.add_argument("--threshold", type=float, help="router: confidence below which it is the base model")
    p.add_argument("--corpus", type=Path, help="corpus.jsonl (retrieval, qa)")
    p.add_argument("--questions", type=Path, help="questions.jsonl (retrieval, qa)")
    p.add_argument("--faqs", type=Path, help="faqs.jsonl (faq)")
    p.add_argument("--queries", type=Path, help="queries.jsonl (faq)")
    p.add_argument("--unmatched", type=Path, help="faq: queries no FAQ answers (counted against precision)")
    p.add_argument("--scorer", choices=["blend", "cosine"], help="faq: the FAQ scorer (RAGNET_FAQ_SCORER)")
    p.add_argument("--candidates", type=_positive, default=20, help="faq: FAQ hits the scorer re-scores")
    p.add_argument("--mode", choices=["dense", "sparse", "hybrid"], help="default RAGNET_SEARCH_MODE")
    p.add_argument(
        "--pipeline",
        choices=["auto", "single", "agentic"],
        help="qa: answer mode (default RAGNET_ANSWER_MODE)",
    )
    p.add_argument("--gnn", type=Path, help="aggregate: a support-GNN checkpoint folder (default: shipped)")
    p.add_argument("--json", action="store_true", help="accepted for compatibility; output is always JSON")
    p.add_argument("--limit", type=_positive)
    p.add_argument("--k", type=_positive, default=10)
    p.add_argument("--adapter", type=Path, help="adapter: the PEFT adapter folder to measure")
    p.add_argument("--data", type=Path, help="adapter: domain data FILE (its held-out side is scored)")
    p.add_argument("--general", type=Path, help="adapter: general questions FILE (base vs adapter vs routed)")
    p.add_argument("--holdout", type=float, help="adapter: share scored (default: as trained, or all)")
    p.add_argument("--reader", type=Path, help="reader: an extractive reader checkpoint (default: shipped)")
    p.add_argument(
        "--generator", action="store_true", help="reader: also read the same passages with the generator"
    )

    p = sub.add_parser(
        "train",
        help="train a small model (gnn, router, lora, reader: the extractive reader); last line is JSON",
    )
    p.add_argument("what", choices=["gnn", "router", "lora", "reader", "reranker"])
    p.add_argument("--train", help="router: labelled files FILE[=LABEL],... (see `ragnet data router-split`)")
    p.add_argument("--test", help="router: held-out files FILE[=LABEL],...; the numbers go in the data card")
    p.add_argument("--threshold", type=float, help="router: threshold for the held-out numbers")
    p.add_argument("--data", type=Path, default=Path("../shared/data"), help="evaluation data folder")
    p.add_argument(
        "--sets",
        help="comma-separated set folders under --data, each with an optional :limit (default: gnn "
        f"{GNN_SETS_EXTRACTIVE} with the span reader, {GNN_SETS} with the generator; reader "
        "rc/cmrc2018_trial,rc/xquad_en,rc/xquad_zh,multihop/musique_train100)",
    )
    p.add_argument(
        "--hold-out",
        default="rc/xquad_en:100",
        help="reader: SET:N — the articles of the first N questions of SET are not trained on",
    )
    p.add_argument("--epochs", type=_positive, help="default: gnn 40, lora 1, reader 2")
    p.add_argument("--seed", type=int, default=13)
    _lora_arguments(p)
    p.add_argument(
        "--out", type=Path, help="checkpoint folder (default DATA_DIR/models/support_gnn|router|reader)"
    )

    p = sub.add_parser(
        "data", help="build evaluation splits (router-split: banking vs general; faq-banking: FAQ dev/test)"
    )
    p.add_argument("what", choices=["router-split", "faq-banking"])
    p.add_argument("--seed", type=int, default=13, help="faq-banking: the intent split's seed")
    p.add_argument("--data", type=Path, default=Path("../shared/data"), help="the shared/data folder")
    p.add_argument("--out", type=Path, required=True, help="folder for train.jsonl, test.jsonl, split.json")
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
        if args.command == "data":
            return cmd_data(args)
        from api.services import Services

        services = Services(settings)
        try:
            handlers = {
                "ingest": cmd_ingest,
                "ask": cmd_ask,
                "kbs": cmd_kbs,
                "adapters": cmd_adapters,
                "eval": cmd_eval,
                "keys": cmd_keys,
                "train": cmd_train,
            }
            handler = handlers[args.command]
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
