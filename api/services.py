"""The composition root: builds every client once from Settings and hands them out.

Parts are built on first use (so `ragnet ingest` never loads the generator) and can be passed
in ready-made (tests pass a tiny generator). ``close()`` flushes the index and releases its lock.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from agents.adapters import AdapterRegistry, AdapterSpec, shipped_specs
from agents.errors import ModelNotPrepared, UnknownAdapter
from agents.extractive_reader import SpanReader
from agents.faq_match import CosineScorer, FaqScorer
from agents.generation.base import ChatMessage, GenerationRequest, Generator
from agents.generation.routed import RoutedGenerator
from agents.model_prep import generator_dir, is_prepared
from agents.query_rewrite import QueryRewriter
from agents.reading import OverlapSupportScorer, SupportScorer
from agents.routing import BaseOnlyRouter, Route, Router, route_request
from api.jobs import JobRunner
from api.settings import Settings
from api.webhooks import WebhookSender
from graph.copilot import CopilotContext, build_copilot_graph
from graph.search_qa import AgenticContext, build_agentic_graph
from retrieval.chunking import Chunker
from retrieval.copilot_store import CopilotStore
from retrieval.documents import EMBED_FORMAT
from retrieval.embedder import Embedder, SentenceTransformerEmbedder, default_embedder_path
from retrieval.ingest import Ingestor
from retrieval.knowledge import KnowledgeAdmin
from retrieval.metadata import MetadataStore
from retrieval.search import Retriever
from retrieval.sparse import Bm25Encoder, SparseEncoder
from retrieval.vectorstores import EdgeVectorStore, QdrantClientVectorStore, VectorStore

T = TypeVar("T")
log = logging.getLogger("ragnet.services")


def embedder_dir(settings: Settings) -> Path:
    """The embedder folder: MiniLM from its package, or e5 converted on first use (~6 s)."""
    if settings.embedder == "all-MiniLM-L6-v2":
        return default_embedder_path()
    return e5_encoder_dir(settings)


def e5_encoder_dir(settings: Settings) -> Path:
    """multilingual-e5-small as a transformers folder (the e5 embedder's and the extractive reader's
    encoder), converted from its package on first use."""
    from retrieval.e5_import import e5_dir, is_e5_prepared, prepare_multilingual_e5

    path = e5_dir(settings.models_dir)
    if not is_e5_prepared(path):
        prepare_multilingual_e5(settings.models_dir, log=lambda m: log.info("%s", m))
    return path


class Services:
    def __init__(
        self,
        settings: Settings,
        *,
        embedder: Embedder | None = None,
        generator: Generator | None = None,
        store: VectorStore | None = None,
    ) -> None:
        self.settings = settings
        self._lock = threading.RLock()
        given = {"embedder": embedder, "generator": generator, "store": store}
        self._parts: dict[str, Any] = {k: v for k, v in given.items() if v is not None}

    # Built on first use, under a lock so two requests never load a model twice.
    def _once(self, name: str, build: Callable[[], T]) -> T:
        with self._lock:
            if name not in self._parts:
                self._parts[name] = build()
            return self._parts[name]

    @property
    def metadata(self) -> MetadataStore:
        def build() -> MetadataStore:
            self.settings.data_dir.mkdir(parents=True, exist_ok=True)
            return MetadataStore(self.settings.sqlalchemy_url)

        return self._once("metadata", build)

    @property
    def embedder(self) -> Embedder:
        s = self.settings

        def build() -> Embedder:
            path = s.embedder_path or embedder_dir(s)
            return SentenceTransformerEmbedder(path, batch_size=s.embed_batch, quantize=s.embedder_quantize)

        return self._once("embedder", build)

    @property
    def store(self) -> VectorStore:
        return self._once("store", self._build_store)

    def _build_store(self) -> VectorStore:
        s = self.settings
        dim = self.embedder.dim
        if s.vector_store == "edge":
            return EdgeVectorStore(s.data_dir / "qdrant-edge", dim)
        if s.qdrant_url:
            key = s.qdrant_api_key.get_secret_value() if s.qdrant_api_key else None
            return QdrantClientVectorStore(s.collection, dim, url=s.qdrant_url, api_key=key)
        return QdrantClientVectorStore(s.collection, dim, path=s.data_dir / "qdrant-local")

    @property
    def generator(self) -> Generator:
        return self._once("generator", self._build_generator)

    def _build_generator(self) -> Generator:
        s = self.settings
        specs = self.adapter_registry.specs
        if s.generator_backend == "openai":
            from agents.generation.openai_backend import OpenAIGenerator

            assert s.openai_base_url  # the settings validator requires it for this backend
            key = s.openai_api_key.get_secret_value() if s.openai_api_key else None
            return OpenAIGenerator(
                s.openai_base_url,
                model=s.openai_model,
                api_key=key,
                timeout_s=s.openai_timeout_s,
                retries=s.openai_retries,
                max_prompt_tokens=s.max_prompt_tokens,
            )
        path = self.generator_path
        if not is_prepared(path):
            raise ModelNotPrepared(
                f"the generator is not prepared in {path}; run `ragnet models prepare` (or `make run`)"
            )
        if s.generator_backend == "vllm":
            from agents.generation.vllm_backend import VLLMGenerator

            return VLLMGenerator(path, adapters=specs, max_prompt_tokens=s.max_prompt_tokens)
        from agents.generation.transformers_backend import TransformersGenerator, configure_torch

        configure_torch(s.torch_threads)
        return TransformersGenerator(
            path,
            quantize=s.generator_quantize,
            prefill=s.generator_prefill,
            adapters=specs,
            max_prompt_tokens=s.max_prompt_tokens,
        )

    @property
    def generator_path(self) -> Path:
        return self.settings.generator_path or generator_dir(self.settings.models_dir)

    @property
    def adapter_registry(self) -> AdapterRegistry:
        """RAGNET_ADAPTERS: each entry a PEFT folder, or (no path) the shipped adapter of that name.
        Empty by default: an adapter is a skill the operator chooses to route to (the shipped
        ``banking`` one answers with an intent label). One that does not fit the base model is
        refused when the generator loads."""
        return self._once("adapter_registry", self._build_registry)

    def _build_registry(self) -> AdapterRegistry:
        shipped = {spec.name: spec for spec in shipped_specs()}
        specs = []
        for e in self.settings.adapters or []:
            if e.path is None:
                if e.name not in shipped:
                    raise UnknownAdapter(e.name, sorted(shipped))
                base = shipped[e.name]
                domains = tuple(e.domains) if e.domains is not None else base.domains
                specs.append(AdapterSpec(e.name, base.path, domains, e.description or base.description))
            else:
                specs.append(AdapterSpec(e.name, e.path, tuple(e.domains or ()), e.description))
        return AdapterRegistry(tuple(specs))

    @property
    def router(self) -> Router:
        """The classifier router over the embedder when there are adapters to route to; otherwise
        (or RAGNET_ROUTER=off) every request goes to the base model."""
        return self._once("router", lambda: self.router_for(self.adapter_registry))

    def router_for(self, registry: AdapterRegistry) -> Router:
        """A router over ``registry`` built from the settings (``ragnet eval adapter`` routes to the
        adapter it measures). The shipped router that does not fit the embedder turns routing off
        with a warning; a configured one that does not fit is an error."""
        s = self.settings
        if s.router == "off":
            return BaseOnlyRouter()
        if not registry.specs:
            return BaseOnlyRouter("no adapters")
        from agents.routing import DEFAULT_ROUTER, ClassifierRouter, RouterCheckpointError, RouterModel

        embedder = self.embedder
        try:
            model = RouterModel.load(
                s.router_model or DEFAULT_ROUTER, embedder=embedder.name, dim=embedder.dim
            )
        except RouterCheckpointError as exc:
            if s.router_model is not None:
                raise
            log.warning("routing is off: %s", exc)
            return BaseOnlyRouter()
        return ClassifierRouter(model, self.embed_queries, registry, s.router_threshold)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Query vectors of the configured embedder (router, support GNN, evaluations)."""
        return self.embedder.embed(texts, kind="query")

    def route(self, text: str, requested: str | None = None) -> Route:
        """Where one user request is generated: the adapter it names, or the router's choice."""
        return route_request(self.router, text, requested, self.adapter_registry)

    @property
    def sparse(self) -> SparseEncoder:
        return self._once("sparse", Bm25Encoder)

    def chunker(self, strategy: str = "heading") -> Chunker:
        """The chunker of one strategy (a knowledge base chooses its own), built once each."""
        from retrieval.chunking import make_chunker

        s = self.settings
        return self._once(
            f"chunker:{strategy}",
            lambda: make_chunker(strategy, s.chunk_tokens, s.chunk_overlap, self.embedder.tokenize),  # type: ignore[arg-type]
        )

    @property
    def retriever(self) -> Retriever:
        s = self.settings
        return self._once(
            "retriever",
            lambda: Retriever(
                self.store,
                self.embedder,
                self.sparse,
                self.metadata,
                default_mode=s.search_mode,
                faq_mode=s.faq_search_mode,
            ),
        )

    @property
    def ingestor(self) -> Ingestor:
        s, e = self.settings, self.embedder
        chunks = f"chunks {s.chunk_tokens}/{s.chunk_overlap}"
        signature = f"{e.name}/{e.dim}|{self.sparse.name}|{chunks}|format {EMBED_FORMAT}"
        build = lambda: Ingestor(self.store, e, self.sparse, self.chunker, self.metadata, signature)  # noqa: E731
        return self._once("ingestor", build)

    @property
    def checkpointer(self) -> Any:
        """LangGraph's SQLite checkpointer (data_dir/traces.db): every step of an agentic answer."""

        def build() -> Any:
            import sqlite3

            from langgraph.checkpoint.sqlite import SqliteSaver

            self.settings.data_dir.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.settings.data_dir / "traces.db", check_same_thread=False)
            return SqliteSaver(conn)

        return self._once("checkpointer", build)

    @property
    def agentic_graph(self) -> Any:
        return self._once("agentic_graph", lambda: build_agentic_graph(self.checkpointer))

    @property
    def support_scorer(self) -> SupportScorer:
        def build() -> SupportScorer:
            if self.settings.support_scorer == "overlap":
                return OverlapSupportScorer()
            from agents import support_gnn

            s = self.settings
            model = support_gnn.load(s.support_gnn or support_gnn.default_checkpoint(s.reader))
            return support_gnn.GnnSupportScorer(model, self.embed_queries)

        return self._once("support_scorer", build)

    @property
    def span_reader(self) -> SpanReader | None:
        """The extractive reader when ``reader`` is "extractive" (loaded once), else None."""

        def build() -> SpanReader | None:
            if self.settings.reader != "extractive":
                return None
            from agents.extractive_reader import DEFAULT_READER, ExtractiveReader, load_config

            checkpoint = self.settings.reader_model or DEFAULT_READER
            load_config(checkpoint)  # a missing or broken checkpoint fails before the encoder loads
            return ExtractiveReader(checkpoint, e5_encoder_dir(self.settings))

        return self._once("span_reader", build)

    def agentic_context(self, route: Route | None = None) -> AgenticContext:
        """The graph's context for one request; every generator call runs on ``route``'s adapters."""
        s = self.settings
        generator = self.generator
        if route is not None and route.adapters:
            generator = RoutedGenerator(generator, route.adapters)
        return AgenticContext(
            search=self.retriever.search,
            search_faqs=self.retriever.search_faqs,
            generator=generator,
            score_threshold=s.evidence_threshold(self.embedder.name),
            scorer=self.support_scorer,
            span_reader=self.span_reader,
            min_confidence=s.min_confidence,
            read_k=s.documents_read,
            max_tokens=s.max_new_tokens,
            temperature=s.temperature,
            repetition_penalty=s.repetition_penalty,
        )

    @property
    def faq_scorer(self) -> FaqScorer:
        """How a question's FAQ candidates are scored for a verbatim answer (agents/faq_match.py)."""

        def build() -> FaqScorer:
            if self.settings.faq_scorer == "cosine":
                return CosineScorer()
            from agents.faq_reranker import DEFAULT_RERANKER, BlendScorer

            return BlendScorer(
                self.settings.faq_reranker or DEFAULT_RERANKER,
                encoder=self.faq_encoder,
                dense=self.embedder.name.startswith("multilingual-e5-small"),
            )

        return self._once("faq_scorer", build)

    @property
    def faq_encoder(self) -> Any:
        """all-MiniLM-L6-v2 (unquantised) for the blend FAQ scorer: the embedder when it is that
        model, else its own copy, loaded on first use."""
        from agents.faq_reranker import lazy, minilm_encoder

        if "embedder" in self._parts and self._parts["embedder"].name == "all-MiniLM-L6-v2":
            embedder = self._parts["embedder"]
            return lambda texts: embedder.embed(list(texts), kind="query")
        return lazy(lambda: self._once("faq_minilm", minilm_encoder))

    @property
    def copilot_store(self) -> CopilotStore:
        """Assistants, sessions, messages, handoffs and feedback, in the metadata database."""
        return self._once("copilot_store", lambda: CopilotStore(self.metadata.engine))

    @property
    def copilot_graph(self) -> Any:
        return self._once("copilot_graph", build_copilot_graph)

    @property
    def rewriter(self) -> QueryRewriter:
        """The copilot's follow-up rewriter: rules, and the generator (base model) where they do not fit."""

        def build() -> QueryRewriter:
            def generate(messages: Sequence[ChatMessage], max_tokens: int) -> str:
                request = GenerationRequest(messages=messages, max_tokens=max_tokens, temperature=0.0)
                return self.generator.generate(request).text

            return QueryRewriter(generate, use_model=self.settings.copilot_rewrite_model)

        return self._once("rewriter", build)

    def copilot_context(
        self, route: Route | None = None, stopped: Callable[[], bool] | None = None
    ) -> CopilotContext:
        """The copilot graph's context for one turn, generating on ``route``'s adapters."""
        s = self.settings
        generator = self.generator
        if route is not None and route.adapters:
            generator = RoutedGenerator(generator, route.adapters)
        return CopilotContext(
            search=self.retriever.search,
            search_faqs=self.retriever.search_faqs,
            faq_scorer=self.faq_scorer,
            generator=generator,
            rewriter=self.rewriter,
            score_threshold=s.evidence_threshold(self.embedder.name),
            max_tokens=s.max_new_tokens,
            temperature=s.temperature,
            repetition_penalty=s.repetition_penalty,
            history_tokens=s.copilot_history_tokens,
            stopped=stopped or (lambda: False),
        )

    @property
    def webhooks(self) -> WebhookSender:
        """Handoff webhooks, POSTed off the reply path with a timeout and retries."""
        s = self.settings
        build = lambda: WebhookSender(self.copilot_store, s.webhook_timeout_s, s.webhook_retries)  # noqa: E731
        return self._once("webhooks", build)

    @property
    def knowledge(self) -> KnowledgeAdmin:
        build = lambda: KnowledgeAdmin(self.store, self.metadata, self.ingestor, self.ingestor.locks)  # noqa: E731
        return self._once("knowledge", build)

    @property
    def jobs(self) -> JobRunner:
        s = self.settings

        def build() -> JobRunner:
            return JobRunner(self.metadata, lambda: self.ingestor, s.data_dir / "uploads", s.max_file_bytes)

        return self._once("jobs", build)

    def close(self) -> None:
        with self._lock:
            runner = self._parts.pop("jobs", None)
            if runner is not None:
                runner.stop()
            sender = self._parts.pop("webhooks", None)
            if sender is not None:
                sender.stop()
            for name in ("store", "metadata"):
                part = self._parts.pop(name, None)
                if part is not None:
                    part.close()
            saver = self._parts.pop("checkpointer", None)
            if saver is not None:
                saver.conn.close()
            self._parts.pop("agentic_graph", None)
            for name in ("retriever", "ingestor", "knowledge", "copilot_store"):  # they hold the closed parts
                self._parts.pop(name, None)

    def is_loaded(self, name: str) -> bool:
        return name in self._parts
