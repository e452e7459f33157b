"""Generation on an OpenAI-compatible server: above all a ``vllm serve --enable-lora`` fleet.

vLLM serves each LoRA adapter under its own model name (``--lora-modules name=path``), so routing is
the request's ``model`` field: the base model's name for no adapter, the adapter's name otherwise
(a weighted ``mix`` goes to its heaviest adapter; a server runs one adapter per request).

Failure policy: each attempt has ``timeout_s`` (httpx's connect/read/write timeouts, so a streamed
answer may run longer as long as tokens keep coming); connection errors, timeouts, 5xx and 429 are
retried ``retries`` times with exponential backoff (or the server's ``Retry-After``, capped at
BACKOFF_MAX_S), then :class:`BackendUnavailable` names the URL.
An adapter the server does not list is refused before anything is sent (:class:`UnknownAdapter`).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

import httpx

from agents.errors import BackendUnavailable, GenerationError, InvalidPrompt, UnknownAdapter
from agents.generation.base import Generation, GenerationRequest

#: How long the server's model list is trusted: adapters loaded at run time show up within this.
MODELS_TTL_S = 30.0
#: First retry waits this long, then twice as long each time (capped at BACKOFF_MAX_S).
BACKOFF_S = 0.5
BACKOFF_MAX_S = 8.0
#: generate_batch's concurrent requests: enough to fill a server's continuous batching, few enough
#: not to queue behind each other on one small server.
BATCH_CONCURRENCY = 8

_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})


class Tokenizer(Protocol):
    """What count_tokens needs of a local tokenizer (a transformers tokenizer fits)."""

    def encode(self, text: str, add_special_tokens: bool = ...) -> list[int]: ...


class _Retryable(Exception):
    """One failed attempt that a retry may cure (connection, timeout, 5xx, 429); ``wait_s`` is the
    server's ``Retry-After`` when it sent one."""

    def __init__(self, message: str, wait_s: float | None = None) -> None:
        super().__init__(message)
        self.wait_s = wait_s


def retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delay-seconds form; an HTTP date or junk: None)."""
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    return seconds if seconds is not None and seconds >= 0 else None


class OpenAIGenerator:
    """Chat completions over HTTP (``/v1/chat/completions``), one adapter per request by model name.

    ``base_url`` is the API root, e.g. ``http://10.0.0.5:8000/v1`` (``/v1`` is added when the URL has
    no path). ``model`` is the base model's served name; by default the first model the server lists
    (vLLM lists the base model first, then its adapters)."""

    name = "openai"

    def __init__(
        self,
        base_url: str,
        *,
        model: str | None = None,
        api_key: str | None = None,
        timeout_s: float = 60.0,
        retries: int = 2,
        max_prompt_tokens: int = 6000,
        client: httpx.Client | None = None,
        tokenizer: Tokenizer | None = None,
        models_ttl_s: float = MODELS_TTL_S,
        backoff_s: float = BACKOFF_S,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        parts = urlsplit(base_url.rstrip("/"))
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"openai base URL must be http(s)://host[:port][/v1], got {base_url!r}")
        self.base_url = base_url.rstrip("/") + ("/v1" if parts.path in ("", "/") else "")
        # vLLM's /tokenize and /health live beside /v1, not under it.
        self._root = self.base_url.removesuffix("/v1")
        self._model = model
        self._timeout = httpx.Timeout(timeout_s)
        self._retries = retries
        self._max_prompt_tokens = max_prompt_tokens
        self._tokenizer = tokenizer
        self._models_ttl_s = models_ttl_s
        self._backoff_s = backoff_s
        self._sleep = sleep
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._owns_client = client is None
        self._client = client or httpx.Client(timeout=self._timeout)
        self._headers = headers
        self._lock = threading.Lock()
        self._listing: tuple[float, list[dict[str, Any]]] | None = None
        self._tokenize_missing = False

    # -- the model list -----------------------------------------------------------------------

    def _models(self, *, refresh: bool = False) -> list[dict[str, Any]]:
        with self._lock:
            cached = self._listing
        if cached and not refresh and time.monotonic() - cached[0] < self._models_ttl_s:
            return cached[1]
        response = self._request("GET", f"{self.base_url}/models")
        data = _json(response, self.base_url).get("data")
        if not isinstance(data, list):
            raise GenerationError(f"{self.base_url}/models answered without a model list")
        models = [m for m in data if isinstance(m, dict) and isinstance(m.get("id"), str)]
        with self._lock:
            self._listing = (time.monotonic(), models)
        return models

    @property
    def base_model(self) -> str:
        if self._model:
            return self._model
        models = self._models()
        if not models:
            raise GenerationError(f"the server at {self.base_url} lists no models")
        return str(models[0]["id"])

    @property
    def adapters(self) -> Sequence[str]:
        """Every model the server lists except the base model (cached for ``models_ttl_s``)."""
        base = self.base_model
        return [m["id"] for m in self._models() if m["id"] != base]

    def _is_vllm(self) -> bool:
        return any(m.get("owned_by") == "vllm" for m in self._models())

    def _model_for(self, request: GenerationRequest) -> str:
        adapter = request.heaviest_adapter()
        if adapter is None:
            return self.base_model
        if adapter not in self.adapters:
            self._models(refresh=True)  # maybe loaded since the last look
            known = list(self.adapters)
            if adapter not in known:
                raise UnknownAdapter(adapter, known)
        return adapter

    # -- prompts and tokens -------------------------------------------------------------------

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text``: by the local ``tokenizer`` when one was given (no round trip), else by a
        vLLM server's own ``/tokenize``, else an estimate (~4 ASCII characters per token, one token per
        other character, which over-counts rather than under-counts CJK)."""
        if self._tokenizer is not None:
            return len(self._tokenizer.encode(text, add_special_tokens=False))
        if not self._tokenize_missing and self._is_vllm():
            body = {"model": self.base_model, "prompt": text, "add_special_tokens": False}
            try:
                response = self._request("POST", f"{self._root}/tokenize", body=body)
                return int(_json(response, self._root)["count"])
            except (GenerationError, KeyError, TypeError, ValueError) as exc:
                if isinstance(exc, BackendUnavailable):
                    raise
                self._tokenize_missing = True  # not this vLLM's API after all: estimate from now on
        return estimate_tokens(text)

    def _check_prompt(self, request: GenerationRequest) -> None:
        if not request.messages or not any(m["content"].strip() for m in request.messages):
            raise InvalidPrompt("the prompt is empty: a generation request needs a non-empty message")
        text = "\n".join(m["content"] for m in request.messages)
        # A token covers at least one byte (byte-level BPE), so a short prompt needs no counting.
        if len(text.encode("utf-8")) <= self._max_prompt_tokens:
            return
        tokens = self.count_tokens(text)
        if tokens > self._max_prompt_tokens:
            raise InvalidPrompt(
                f"the prompt has {tokens} tokens; at most {self._max_prompt_tokens} are allowed "
                "(shorten the conversation or the retrieved context, or raise max_prompt_tokens)"
            )

    def _body(self, request: GenerationRequest, *, stream: bool, logprobs: bool) -> dict[str, Any]:
        self._check_prompt(request)
        body: dict[str, Any] = {
            "model": self._model_for(request),
            "messages": [{"role": m["role"], "content": m["content"]} for m in request.messages],
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "top_p": request.top_p,
            "stream": stream,
        }
        if request.stop:
            body["stop"] = list(request.stop)
        if request.seed is not None:
            body["seed"] = request.seed
        if logprobs:
            body["logprobs"] = True
        if request.repetition_penalty != 1.0 and self._is_vllm():
            # A vLLM extension; OpenAI proper refuses unknown fields, so other servers go without.
            body["repetition_penalty"] = request.repetition_penalty
        return body

    # -- generation ---------------------------------------------------------------------------

    def generate(self, request: GenerationRequest) -> Generation:
        return self._complete(request, logprobs=False)

    def generate_batch(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        """Greedy completions as concurrent requests (the server batches them), in order, each with
        the mean token log-probability when the server returns log-probs."""
        if not requests:
            return []
        greedy = [_greedy(r) for r in requests]
        for request in greedy:  # refuse a bad request before any is sent
            self._check_prompt(request)
            self._model_for(request)
        if len(greedy) == 1:
            return [self._complete(greedy[0], logprobs=True)]
        workers = min(len(greedy), BATCH_CONCURRENCY)
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ragnet-openai") as pool:
            return list(pool.map(lambda r: self._complete(r, logprobs=True), greedy))

    def _complete(self, request: GenerationRequest, *, logprobs: bool) -> Generation:
        started = time.perf_counter()
        body = self._body(request, stream=False, logprobs=logprobs)
        url = f"{self.base_url}/chat/completions"
        payload = _json(self._request("POST", url, body=body), url)
        try:
            choice = payload["choices"][0]
            text = choice["message"].get("content") or ""
            usage = payload.get("usage") or {}
        except (KeyError, IndexError, TypeError, AttributeError) as exc:
            raise GenerationError(f"{url} answered without a completion: {str(payload)[:200]}") from exc
        return Generation(
            text=text,
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            finish_reason=_finish(choice.get("finish_reason")),
            seconds=time.perf_counter() - started,
            logprob=_mean_logprob(choice.get("logprobs")),
        )

    def stream(self, request: GenerationRequest) -> Iterator[str]:
        """Text pieces from the server's server-sent events; a stream that breaks raises
        GenerationError. Checks run (and may raise) before the first piece is asked for."""
        body = self._body(request, stream=True, logprobs=False)
        return self._stream(body)

    def _stream(self, body: dict[str, Any]) -> Iterator[str]:
        url = f"{self.base_url}/chat/completions"
        response = self._request("POST", url, body=body, stream=True)
        pieces = 0
        try:
            finished = False
            for line in response.iter_lines():
                if not line.startswith("data:"):
                    continue  # blank separators, comments, event names
                data = line[5:].strip()
                if data == "[DONE]":
                    return
                event = json.loads(data)
                if "error" in event:
                    raise GenerationError(f"the stream from {url} failed: {event['error']}")
                for choice in event.get("choices") or ():
                    piece = (choice.get("delta") or {}).get("content")
                    if piece:
                        pieces += 1
                        yield piece
                    finished = finished or bool(choice.get("finish_reason"))
            if not finished:
                raise GenerationError(f"the stream from {url} ended without finishing ({pieces} pieces)")
        except (httpx.HTTPError, json.JSONDecodeError) as exc:
            raise GenerationError(f"the stream from {url} broke after {pieces} pieces: {exc!r}") from exc
        finally:
            response.close()

    # -- HTTP with retries --------------------------------------------------------------------

    def _request(self, method: str, url: str, *, body: Any = None, stream: bool = False) -> httpx.Response:
        """One call with retries; 4xx answers become our errors, the rest BackendUnavailable."""
        attempts = self._retries + 1
        last = ""
        wait_s: float | None = None
        for attempt in range(attempts):
            if attempt:
                backoff = self._backoff_s * 2 ** (attempt - 1)
                # the server's Retry-After wins over our backoff, capped so one answer cannot stall
                self._sleep(min(wait_s if wait_s is not None else backoff, BACKOFF_MAX_S))
            try:
                return self._attempt(method, url, body, stream)
            except _Retryable as exc:
                last, wait_s = str(exc), exc.wait_s
        raise BackendUnavailable(
            f"the generation server at {url} did not answer after {attempts} attempt"
            f"{'s' if attempts > 1 else ''}: {last}"
        )

    def _attempt(self, method: str, url: str, body: Any, stream: bool) -> httpx.Response:
        try:
            request = self._client.build_request(
                method, url, json=body, headers=self._headers, timeout=self._timeout
            )
            response = self._client.send(request, stream=stream)
        except httpx.TimeoutException as exc:
            raise _Retryable(f"timed out after {self._timeout.read}s ({type(exc).__name__})") from exc
        except httpx.TransportError as exc:
            raise _Retryable(f"{type(exc).__name__}: {exc}") from exc
        if response.status_code < 400:
            return response
        try:
            detail = _error_text(response.read())
        except httpx.HTTPError as exc:
            detail = repr(exc)
        finally:
            response.close()
        status = response.status_code
        if status in _RETRY_STATUS:
            raise _Retryable(f"HTTP {status}: {detail}", retry_after(response.headers.get("retry-after")))
        if status in (401, 403):
            raise GenerationError(f"{url} refused the request (HTTP {status}): check the API key; {detail}")
        if status == 404 and isinstance(body, dict) and "model" in body and "model" in detail.lower():
            self._models(refresh=True)
            raise UnknownAdapter(str(body["model"]), list(self.adapters))
        if status == 400 and "context" in detail.lower():
            raise InvalidPrompt(f"the server refused the prompt as too long: {detail}")
        raise GenerationError(f"{url} answered HTTP {status}: {detail}")

    def close(self) -> None:
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> OpenAIGenerator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def estimate_tokens(text: str) -> int:
    """A tokenizer-free count: ~4 ASCII characters per token, one per other character (CJK)."""
    ascii_chars = sum(1 for ch in text if ord(ch) < 128)
    return (ascii_chars + 3) // 4 + (len(text) - ascii_chars)


def _greedy(request: GenerationRequest) -> GenerationRequest:
    return replace(request, temperature=0.0, top_p=1.0)


def _finish(reason: Any) -> Literal["stop", "length"]:
    return "length" if reason == "length" else "stop"


def _mean_logprob(logprobs: Any) -> float | None:
    """Mean log-probability of the returned tokens (OpenAI's ``choices[].logprobs.content``)."""
    if not isinstance(logprobs, dict):
        return None
    values = [t["logprob"] for t in logprobs.get("content") or () if isinstance(t, dict) and "logprob" in t]
    values = [float(v) for v in values if v is not None and v != float("-inf")]
    return sum(values) / len(values) if values else None


def _json(response: httpx.Response, where: str) -> dict[str, Any]:
    try:
        payload = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise GenerationError(f"{where} answered with something that is not JSON: {exc}") from exc
    if not isinstance(payload, dict):
        raise GenerationError(f"{where} answered with JSON that is not an object")
    return payload


def _error_text(raw: bytes) -> str:
    """The message of an OpenAI-style error body ({"error": {"message": …}}), or the body's start."""
    text = raw.decode("utf-8", "replace")
    try:
        payload = json.loads(text)
    except json.JSONDecodeError:
        return text[:300]
    if isinstance(payload, dict):
        error = payload.get("error", payload)
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])[:300]
        if isinstance(payload.get("message"), str):
            return str(payload["message"])[:300]
    return text[:300]
