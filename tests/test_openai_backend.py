"""OpenAIGenerator against a small OpenAI-compatible stand-in server on 127.0.0.1.

The stand-in is a scripted ``http.server`` (an external system's stand-in, not a mock of our code):
it answers 500s, stalls past the timeout, hangs up, streams server-sent events, so every failure path
of the client runs over real sockets. The real vLLM server is exercised in test_vllm_server.py.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from agents.errors import BackendUnavailable, GenerationError, InvalidPrompt, UnknownAdapter
from agents.generation.base import GenerationRequest
from agents.generation.openai_backend import OpenAIGenerator, estimate_tokens

# Loopback only: the stand-in listens on 127.0.0.1 and every other host stays blocked.
pytestmark = pytest.mark.allow_hosts(["127.0.0.1"])

Answer = Callable[["_Handler", dict[str, Any]], None]


def _models(*ids: str, owned_by: str = "vllm") -> dict[str, Any]:
    return {"object": "list", "data": [{"id": i, "object": "model", "owned_by": owned_by} for i in ids]}


def _completion(text: str, *, finish: str = "stop", logprobs: list[float] | None = None) -> dict[str, Any]:
    choice: dict[str, Any] = {
        "index": 0,
        "message": {"role": "assistant", "content": text},
        "finish_reason": finish,
    }
    if logprobs is not None:
        choice["logprobs"] = {"content": [{"token": "t", "logprob": v} for v in logprobs]}
    return {"choices": [choice], "usage": {"prompt_tokens": 7, "completion_tokens": 3}}


def status(code: int, payload: Any, headers: dict[str, str] | None = None) -> Answer:
    def answer(h: _Handler, body: dict[str, Any]) -> None:
        h.send_json(code, payload, headers)

    return answer


def echo(h: _Handler, body: dict[str, Any]) -> None:
    """A completion naming the model it was asked for (so routing is visible in the text)."""
    h.send_json(200, _completion(f"from {body['model']}"))


def stall(seconds: float) -> Answer:
    def answer(h: _Handler, body: dict[str, Any]) -> None:
        time.sleep(seconds)
        h.send_json(200, _completion("late"))

    return answer


def hang_up(h: _Handler, body: dict[str, Any]) -> None:
    h.close_connection = True
    h.connection.shutdown(socket.SHUT_RDWR)


def sse(events: list[str], *, chunked_break: bool = False) -> Answer:
    """Server-sent events, one ``data:`` line each; ``chunked_break`` cuts the connection mid-chunk."""

    def answer(h: _Handler, body: dict[str, Any]) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "text/event-stream")
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        for event in events:
            data = f"data: {event}\n\n".encode()
            h.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            h.wfile.flush()
        if chunked_break:
            h.wfile.write(b'40\r\ndata: {"choi')  # promises 64 bytes, sends 15, hangs up
            h.wfile.flush()
            h.close_connection = True
            h.connection.shutdown(socket.SHUT_RDWR)
            return
        h.wfile.write(b"0\r\n\r\n")

    return answer


def _delta(text: str | None = None, finish: str | None = None, role: str | None = None) -> str:
    delta: dict[str, Any] = {}
    if role:
        delta["role"] = role
    if text is not None:
        delta["content"] = text
    return json.dumps({"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet test output
        pass

    def send_json(self, code: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        raw = json.dumps(payload).encode()
        self.send_response(code)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else {}
        key = f"{self.command} {self.path}"
        self.server.seen.append((key, body, dict(self.headers)))
        script = self.server.script[key]
        answer = script.popleft() if len(script) > 1 else (script[0] if script else None)
        if answer is None:
            self.send_json(404, {"error": {"message": f"no route {key}"}})
        else:
            answer(self, body)

    do_GET = do_POST = _serve


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        #: "METHOD /path" -> answers; each is used once except the last, which repeats.
        self.script: dict[str, deque[Answer]] = defaultdict(deque)
        self.seen: list[tuple[str, dict[str, Any], dict[str, str]]] = []

    def on(self, key: str, *answers: Answer) -> None:
        self.script[key] = deque(answers)

    def calls(self, key: str) -> list[dict[str, Any]]:
        return [body for k, body, _ in self.seen if k == key]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


@pytest.fixture
def server() -> Iterator[_Server]:
    srv = _Server()
    srv.on("GET /v1/models", status(200, _models("base", "a", "b")))
    srv.on("POST /v1/chat/completions", echo)
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _gen(server: _Server, **kwargs: Any) -> OpenAIGenerator:
    kwargs.setdefault("sleep", lambda s: None)
    return OpenAIGenerator(server.url, **kwargs)


def _ask(text: str = "hello", **kwargs: Any) -> GenerationRequest:
    return GenerationRequest(messages=[{"role": "user", "content": text}], **kwargs)


def test_routes_base_adapter_and_mix_by_model_name(server: _Server) -> None:
    gen = _gen(server)
    assert gen.generate(_ask()).text == "from base"
    assert gen.generate(_ask(adapter="a")).text == "from a"
    assert gen.generate(_ask(adapter="a", mix={"a": 0.3, "b": 0.7})).text == "from b"
    result = gen.generate(_ask())
    assert (result.prompt_tokens, result.completion_tokens, result.finish_reason) == (7, 3, "stop")
    body = server.calls("POST /v1/chat/completions")[0]
    assert body["messages"] == [{"role": "user", "content": "hello"}]
    assert body["stream"] is False and body["repetition_penalty"] == 1.05  # a vLLM server


def test_adapters_are_the_listed_models_but_the_base_and_are_cached(server: _Server) -> None:
    gen = _gen(server)
    assert list(gen.adapters) == ["a", "b"]
    assert gen.base_model == "base"
    assert list(gen.adapters) == ["a", "b"]
    assert len(server.calls("GET /v1/models")) == 1  # within the TTL
    assert list(_gen(server, model="a").adapters) == ["base", "b"]  # an explicit base model


def test_base_url_without_path_gets_v1(server: _Server) -> None:
    gen = OpenAIGenerator(server.url.removesuffix("/v1"))
    assert gen.base_url == server.url
    with pytest.raises(ValueError, match="http"):
        OpenAIGenerator("127.0.0.1:8000")


def test_api_key_is_sent_as_bearer(server: _Server) -> None:
    _gen(server, api_key="sk-test").generate(_ask())
    assert all(headers.get("Authorization") == "Bearer sk-test" for _, _, headers in server.seen)


def test_non_vllm_servers_get_no_vllm_fields(server: _Server) -> None:
    server.on("GET /v1/models", status(200, _models("gpt", owned_by="openai")))
    _gen(server).generate(_ask())
    assert "repetition_penalty" not in server.calls("POST /v1/chat/completions")[0]


def test_retries_5xx_and_429_with_backoff_then_succeeds(server: _Server) -> None:
    server.on(
        "POST /v1/chat/completions",
        status(500, {"error": {"message": "boom"}}),
        status(429, {"error": {"message": "slow down"}}),
        status(503, {"error": {"message": "loading"}}),
        echo,
    )
    waits: list[float] = []
    gen = _gen(server, retries=3, sleep=waits.append)
    assert gen.generate(_ask()).text == "from base"
    assert waits == [0.5, 1.0, 2.0]
    assert len(server.calls("POST /v1/chat/completions")) == 4


def test_retry_after_is_honoured_and_capped(server: _Server) -> None:
    server.on(
        "POST /v1/chat/completions",
        status(429, {"error": {"message": "slow down"}}, {"Retry-After": "3"}),
        status(503, {"error": {"message": "loading"}}, {"Retry-After": "120"}),
        status(503, {"error": {"message": "loading"}}, {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}),
        echo,
    )
    waits: list[float] = []
    gen = _gen(server, retries=3, sleep=waits.append)
    assert gen.generate(_ask()).text == "from base"
    assert waits == [3.0, 8.0, 2.0]  # the server's wait; capped at BACKOFF_MAX_S; a date: our backoff


def test_retries_exhausted_raise_backend_unavailable_naming_the_url(server: _Server) -> None:
    server.on("POST /v1/chat/completions", status(502, {"error": {"message": "bad gateway"}}))
    gen = _gen(server, retries=2)
    with pytest.raises(BackendUnavailable) as err:
        gen.generate(_ask())
    message = str(err.value)
    assert f"the generation server at {server.url}/chat/completions" in message
    assert "did not answer after 3 attempts" in message and "HTTP 502: bad gateway" in message
    assert len(server.calls("POST /v1/chat/completions")) == 3


def test_a_stalled_server_times_out_into_backend_unavailable(server: _Server) -> None:
    server.on("POST /v1/chat/completions", stall(2.0))
    gen = _gen(server, timeout_s=0.3, retries=1)
    started = time.perf_counter()
    with pytest.raises(BackendUnavailable, match=r"after 2 attempts: timed out after 0\.3s"):
        gen.generate(_ask())
    assert time.perf_counter() - started < 1.8  # two attempts of 0.3 s, not the server's 2 s


def test_a_hang_up_is_retried(server: _Server) -> None:
    server.on("POST /v1/chat/completions", hang_up, echo)
    assert _gen(server, retries=1).generate(_ask()).text == "from base"


def test_a_server_that_is_down_is_backend_unavailable() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    gen = OpenAIGenerator(f"http://127.0.0.1:{port}/v1", model="base", retries=1, sleep=lambda s: None)
    with pytest.raises(BackendUnavailable, match=rf"127\.0\.0\.1:{port}.*after 2 attempts: ConnectError"):
        gen.generate(_ask())


def test_client_errors_are_not_retried(server: _Server) -> None:
    server.on("POST /v1/chat/completions", status(400, {"error": {"message": "top_p must be in (0, 1]"}}))
    gen = _gen(server, retries=3)
    with pytest.raises(GenerationError, match=r"HTTP 400: top_p must be") as err:
        gen.generate(_ask())
    assert not isinstance(err.value, BackendUnavailable)
    server.on("POST /v1/chat/completions", status(401, {"error": {"message": "no key"}}))
    with pytest.raises(GenerationError, match="API key"):
        gen.generate(_ask())
    assert len(server.calls("POST /v1/chat/completions")) == 2


def test_the_servers_context_limit_is_an_invalid_prompt(server: _Server) -> None:
    message = "This model's maximum context length is 512 tokens. However, you requested 900 tokens."
    server.on("POST /v1/chat/completions", status(400, {"error": {"message": message}}))
    with pytest.raises(InvalidPrompt, match="maximum context length"):
        _gen(server).generate(_ask())


def test_unknown_adapter_is_refused_before_sending(server: _Server) -> None:
    gen = _gen(server)
    with pytest.raises(UnknownAdapter, match=r"'legal'; known adapters: a, b"):
        gen.generate(_ask(adapter="legal"))
    with pytest.raises(UnknownAdapter):
        list(gen.stream(_ask(mix={"legal": 1.0})))
    assert server.calls("POST /v1/chat/completions") == []
    assert len(server.calls("GET /v1/models")) == 3  # a refresh per refusal: it may have just loaded


def test_an_adapter_loaded_since_the_last_look_is_found(server: _Server) -> None:
    gen = _gen(server)
    assert list(gen.adapters) == ["a", "b"]
    server.on("GET /v1/models", status(200, _models("base", "a", "b", "c")))
    assert gen.generate(_ask(adapter="c")).text == "from c"


def test_a_model_the_server_no_longer_has_is_unknown_adapter(server: _Server) -> None:
    gone = {"error": {"message": "The model `a` does not exist.", "code": 404}}
    server.on("POST /v1/chat/completions", status(404, gone))
    with pytest.raises(UnknownAdapter, match="'a'"):
        _gen(server).generate(_ask(adapter="a"))


@pytest.mark.parametrize(
    "messages",
    [
        [],
        [{"role": "user", "content": ""}],
        [{"role": "system", "content": " "}, {"role": "user", "content": "\n"}],
    ],
)
def test_empty_prompts_are_invalid(server: _Server, messages: list[Any]) -> None:
    with pytest.raises(InvalidPrompt, match="empty"):
        _gen(server).generate(GenerationRequest(messages=messages))
    assert server.seen == []


def test_overlong_prompts_are_invalid_by_the_servers_tokenizer(server: _Server) -> None:
    server.on("POST /tokenize", lambda h, body: h.send_json(200, {"count": len(body["prompt"].split())}))
    gen = _gen(server, max_prompt_tokens=16)
    assert gen.generate(_ask("word " * 16)).text == "from base"  # 80 bytes, 16 tokens: fits
    with pytest.raises(InvalidPrompt, match="17 tokens; at most 16"):
        gen.generate(_ask("word " * 17))
    assert server.calls("POST /tokenize")[0] == {
        "model": "base",
        "prompt": "word " * 16,
        "add_special_tokens": False,
    }
    assert len(server.calls("POST /v1/chat/completions")) == 1


def test_count_tokens_prefers_a_local_tokenizer_then_tokenize_then_an_estimate(server: _Server) -> None:
    class Words:
        def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
            return [0] * len(text.split())

    assert _gen(server, tokenizer=Words()).count_tokens("one two three") == 3
    server.on("POST /tokenize", status(200, {"count": 5, "tokens": [1, 2, 3, 4, 5], "max_model_len": 512}))
    assert _gen(server).count_tokens("one two three") == 5
    server.on("POST /tokenize", status(404, {"detail": "Not Found"}))
    gen = _gen(server)
    assert gen.count_tokens("one two three") == estimate_tokens("one two three") == 4
    gen.count_tokens("again")
    assert len(server.calls("POST /tokenize")) == 2  # a missing endpoint is not asked again
    assert estimate_tokens("知识库") == 3


def test_stream_parses_server_sent_events(server: _Server) -> None:
    events = [
        _delta(role="assistant", text=""),
        _delta("Hel"),
        _delta("lo"),
        _delta(" world", "stop"),
        "[DONE]",
    ]
    server.on("POST /v1/chat/completions", sse(events))
    gen = _gen(server)
    assert list(gen.stream(_ask(adapter="b"))) == ["Hel", "lo", " world"]
    body = server.calls("POST /v1/chat/completions")[0]
    assert body["stream"] is True and body["model"] == "b"


def test_a_stream_that_breaks_midway_is_a_generation_error(server: _Server) -> None:
    server.on("POST /v1/chat/completions", sse([_delta("Hel"), _delta("lo")], chunked_break=True))
    pieces: list[str] = []
    with pytest.raises(GenerationError, match="broke after 2 pieces"):
        pieces.extend(_gen(server).stream(_ask()))
    assert pieces == ["Hel", "lo"]


def test_a_stream_that_ends_unfinished_or_with_an_error_is_a_generation_error(server: _Server) -> None:
    server.on("POST /v1/chat/completions", sse([_delta("Hel")]))
    with pytest.raises(GenerationError, match="ended without finishing"):
        list(_gen(server).stream(_ask()))
    error = json.dumps({"error": {"message": "engine dead", "code": 500}})
    server.on("POST /v1/chat/completions", sse([_delta("Hel"), error]))
    with pytest.raises(GenerationError, match="engine dead"):
        list(_gen(server).stream(_ask()))


def test_stream_retries_before_the_first_byte(server: _Server) -> None:
    server.on("POST /v1/chat/completions", status(503, {}), sse([_delta("ok", "stop"), "[DONE]"]))
    assert "".join(_gen(server).stream(_ask())) == "ok"


def test_generate_batch_keeps_order_and_fills_logprob(server: _Server) -> None:
    def answer(h: _Handler, body: dict[str, Any]) -> None:
        n = int(body["messages"][0]["content"])
        time.sleep(0.05 * (4 - n))  # the first request answers last
        h.send_json(200, _completion(f"#{n}", logprobs=[-0.5, -1.5] if n else None))

    server.on("POST /v1/chat/completions", answer)
    requests = [_ask(str(n), temperature=0.8) for n in range(4)]
    results = _gen(server).generate_batch(requests)
    assert [r.text for r in results] == ["#0", "#1", "#2", "#3"]
    assert results[0].logprob is None and results[1].logprob == pytest.approx(-1.0)
    bodies = server.calls("POST /v1/chat/completions")
    assert all(b["logprobs"] is True and b["temperature"] == 0.0 for b in bodies)
    assert _gen(server).generate_batch([]) == []


def test_generate_batch_refuses_a_bad_request_before_sending_any(server: _Server) -> None:
    with pytest.raises(UnknownAdapter):
        _gen(server).generate_batch([_ask("1"), _ask("2", adapter="nope")])
    assert server.calls("POST /v1/chat/completions") == []
