"""OpenAI-compatible HTTP server: /v1/chat/completions, /v1/completions, /v1/models,
/health and /metrics, on FastAPI + uvicorn.

There is one engine, so requests are served one at a time: handlers turn a
request into a ``Job`` and put it on a bounded FIFO queue; a single worker
thread runs jobs in arrival order and posts each delta to the job's asyncio
queue, from which the handler streams (SSE) or collects. A job carries its own
cancel event: a client that disconnects, or a server that shuts down, sets it
and the engine stops at its next token (or, while it reads a long prompt, at
the next prefill piece: Engine._prefill).
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import json
import logging
import os
import queue
import threading
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Iterator

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from .sampling import SamplingParams
from .server_schemas import ChatCompletionRequest, CompletionRequest, _GenerationRequest
from .state import ContextLengthError

log = logging.getLogger("megadelta.server")

DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024
DEFAULT_MAX_QUEUE = 64
API_KEY_ENV = "MEGADELTA_API_KEY"
# OpenAI samples at temperature 1 when a request names none; SamplingParams'
# own default is greedy, so the server states this one explicitly.
OPENAI_DEFAULT_TEMPERATURE = 1.0


# ---------------------------------------------------------------------------
# Errors in OpenAI's shape
# ---------------------------------------------------------------------------

class APIError(Exception):
    """An error answered as ``{"error": {"message", "type", "param", "code"}}``."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if self.status == 401 else None
        return JSONResponse(self.body(), status_code=self.status, headers=headers)


def _validation_error(err: ValidationError) -> APIError:
    first = err.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "body"
    param = str(first["loc"][0]) if first["loc"] else None
    return APIError(400, f"invalid '{where}': {first['msg']}", param=param, code="invalid_value")


# ---------------------------------------------------------------------------
# Metrics (Prometheus text exposition, written by hand: a few series only)
# ---------------------------------------------------------------------------

class Histogram:
    def __init__(self, buckets: tuple[float, ...]):
        self.buckets = buckets
        self.counts = [0] * len(buckets)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        for i, upper in enumerate(self.buckets):
            if value <= upper:
                self.counts[i] += 1
        self.sum += value
        self.count += 1

    def lines(self, name: str) -> Iterator[str]:
        for upper, n in zip(self.buckets, self.counts):
            yield f'{name}_bucket{{le="{upper}"}} {n}'
        yield f'{name}_bucket{{le="+Inf"}} {self.count}'
        yield f"{name}_sum {self.sum}"
        yield f"{name}_count {self.count}"


class Metrics:
    """Counters shared by the event loop and the worker thread (hence the lock)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, int], int] = {}
        self.prompt_tokens = 0
        self.generated_tokens = 0
        self.cancelled = 0
        self.running = 0
        self.ttft = Histogram((0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
        self.tokens_per_second = Histogram((1, 5, 10, 25, 50, 100, 200, 400, 800, 1600))

    def count_request(self, endpoint: str, status: int) -> None:
        with self._lock:
            self.requests[endpoint, status] = self.requests.get((endpoint, status), 0) + 1

    def job_started(self, prompt_tokens: int) -> None:
        with self._lock:
            self.running += 1
            self.prompt_tokens += prompt_tokens

    def token(self) -> None:
        with self._lock:
            self.generated_tokens += 1

    def first_token(self, seconds: float) -> None:
        with self._lock:
            self.ttft.observe(seconds)

    def job_finished(self, tokens: int, decode_seconds: float, cancelled: bool) -> None:
        with self._lock:
            self.running -= 1
            self.cancelled += cancelled
            if tokens > 1 and decode_seconds > 0:
                self.tokens_per_second.observe((tokens - 1) / decode_seconds)

    def job_dropped(self) -> None:
        """A job cancelled before it ran."""
        with self._lock:
            self.cancelled += 1

    def render(self, queue_depth: int) -> str:
        with self._lock:
            out = [
                "# HELP megadelta_requests_total HTTP requests by endpoint and status code.",
                "# TYPE megadelta_requests_total counter",
                *(f'megadelta_requests_total{{endpoint="{e}",status="{s}"}} {n}'
                  for (e, s), n in sorted(self.requests.items())),
                "# HELP megadelta_prompt_tokens_total Prompt tokens prefilled.",
                "# TYPE megadelta_prompt_tokens_total counter",
                f"megadelta_prompt_tokens_total {self.prompt_tokens}",
                "# HELP megadelta_generated_tokens_total Tokens generated.",
                "# TYPE megadelta_generated_tokens_total counter",
                f"megadelta_generated_tokens_total {self.generated_tokens}",
                "# HELP megadelta_generations_cancelled_total Generations stopped early by a "
                "client disconnect or a shutdown.",
                "# TYPE megadelta_generations_cancelled_total counter",
                f"megadelta_generations_cancelled_total {self.cancelled}",
                "# HELP megadelta_queue_depth Requests waiting for the engine.",
                "# TYPE megadelta_queue_depth gauge",
                f"megadelta_queue_depth {queue_depth}",
                "# HELP megadelta_requests_running Requests the engine is generating for.",
                "# TYPE megadelta_requests_running gauge",
                f"megadelta_requests_running {self.running}",
                "# HELP megadelta_time_to_first_token_seconds From arrival to the first token.",
                "# TYPE megadelta_time_to_first_token_seconds histogram",
                *self.ttft.lines("megadelta_time_to_first_token_seconds"),
                "# HELP megadelta_tokens_per_second Decode speed of each finished request.",
                "# TYPE megadelta_tokens_per_second histogram",
                *self.tokens_per_second.lines("megadelta_tokens_per_second"),
            ]
        return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------
# The queue and the worker thread
# ---------------------------------------------------------------------------

_END = object()  # posted after a job's last delta


@dataclass
class Job:
    prompt_ids: list[int]
    params: SamplingParams
    loop: asyncio.AbstractEventLoop
    arrived: float = field(default_factory=time.perf_counter)
    cancel: threading.Event = field(default_factory=threading.Event)
    events: asyncio.Queue = field(default_factory=asyncio.Queue)

    def post(self, item: Any) -> None:
        """Hand a delta, an exception or ``_END`` to the handler (from the worker thread)."""
        try:
            self.loop.call_soon_threadsafe(self.events.put_nowait, item)
        except RuntimeError:
            pass  # the event loop is closed: nobody is listening any more

    async def deltas(self) -> AsyncIterator[Any]:
        """The engine's deltas for this job; re-raises the worker's exception, if any."""
        while (item := await self.events.get()) is not _END:
            if isinstance(item, BaseException):
                raise item
            yield item


class QueueFull(Exception):
    pass


class ShuttingDown(Exception):
    pass


class Scheduler:
    """A bounded FIFO of jobs served by one worker thread that owns the engine."""

    def __init__(self, engine, max_queue: int, metrics: Metrics):
        self.engine = engine
        self.metrics = metrics
        self._jobs: queue.Queue[Job | None] = queue.Queue(maxsize=max_queue)
        self._lock = threading.Lock()
        self._running: Job | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._work, name="megadelta-engine", daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def depth(self) -> int:
        return self._jobs.qsize()

    def submit(self, job: Job) -> None:
        with self._lock:
            if self._closed:
                raise ShuttingDown
            try:
                self._jobs.put_nowait(job)
            except queue.Full:
                raise QueueFull from None

    def cancel_all(self) -> None:
        """Stop accepting jobs and cancel the running and the queued ones."""
        with self._lock:
            self._closed = True
            if self._running is not None:
                self._running.cancel.set()
            while True:
                try:
                    job = self._jobs.get_nowait()
                except queue.Empty:
                    break
                job.cancel.set()
                job.post(ShuttingDown())
                self.metrics.job_dropped()

    def close(self) -> None:
        self.cancel_all()
        self._jobs.put(None)  # the queue was just emptied, so this cannot block
        self._thread.join()

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            with self._lock:
                self._running = job
                if self._closed:  # cancel_all ran while this job was between queue and worker
                    job.cancel.set()
            try:
                self._run(job)
            finally:
                with self._lock:
                    self._running = None

    def _run(self, job: Job) -> None:
        if job.cancel.is_set():  # the client left while the job waited, or shutdown began
            self.metrics.job_dropped()
            job.post(ShuttingDown() if self._closed else _END)
            return
        self.metrics.job_started(len(job.prompt_ids))
        tokens, first_at, finish, cancelled = 0, None, None, False
        try:
            for delta in self.engine.stream(job.prompt_ids, job.params, cancel=job.cancel):
                tokens += 1
                self.metrics.token()
                if first_at is None:
                    first_at = time.perf_counter()
                    self.metrics.first_token(first_at - job.arrived)
                finish = delta.finish_reason
                job.post(delta)
            # No finish reason: the engine stopped during the prompt, on a cancel.
            cancelled = finish == "cancelled" or (finish is None and job.cancel.is_set())
            ending = ShuttingDown() if cancelled and self._closed else _END
        except Exception as err:  # handed to the request's handler, which answers it
            if not isinstance(err, ValueError):  # ContextLengthError is a ValueError too
                log.exception("generation failed")
            ending = err
        decode_seconds = time.perf_counter() - first_at if first_at is not None else 0.0
        # Counted before the handler hears of the end, so /metrics is settled when a client is.
        self.metrics.job_finished(tokens, decode_seconds, cancelled=cancelled)
        job.post(ending)


# ---------------------------------------------------------------------------
# Turning requests into jobs
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Limits:
    max_tokens: int | None = None  # per request; None: up to the context window
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_queue: int = DEFAULT_MAX_QUEUE


_SAMPLING_FIELDS = ("temperature", "top_k", "top_p", "min_p", "repetition_penalty",
                    "presence_penalty", "frequency_penalty", "seed")


async def _read_json(request: Request, max_bytes: int) -> Any:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise _too_large(max_bytes)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise _too_large(max_bytes)
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise APIError(400, f"the request body is not valid JSON: {err}", code="invalid_json") from None


def _too_large(max_bytes: int) -> APIError:
    return APIError(413, f"the request body exceeds this server's limit of {max_bytes} bytes",
                    code="request_too_large")


def _parse(model_cls: type[_GenerationRequest], body: Any) -> _GenerationRequest:
    if not isinstance(body, dict):
        raise APIError(400, "the request body must be a JSON object", code="invalid_value")
    try:
        return model_cls.model_validate(body)
    except ValidationError as err:
        raise _validation_error(err) from None


def _prompt_ids(engine, req: _GenerationRequest) -> list[int]:
    if isinstance(req, ChatCompletionRequest):
        return engine.chat_prompt_ids([m.as_template_message() for m in req.messages])
    prompt = req.prompt
    if isinstance(prompt, list) and prompt and isinstance(prompt[0], str):
        if len(prompt) != 1:
            raise APIError(400, f"only one prompt per request is supported, got {len(prompt)}",
                           param="prompt", code="invalid_value")
        prompt = prompt[0]
    if isinstance(prompt, str):
        if not (ids := engine.tokenizer.encode(prompt)):
            raise APIError(400, "the prompt is empty", param="prompt", code="invalid_value")
        return ids
    vocab = engine.config.vocab_size
    if not prompt or any(not 0 <= t < vocab for t in prompt):
        raise APIError(400, f"a token-id prompt must be non-empty ids in [0, {vocab})",
                       param="prompt", code="invalid_value")
    return list(prompt)


def _max_tokens(req: _GenerationRequest, prompt_len: int, context: int, limit: int | None) -> int:
    param, asked = req.requested_max_tokens()
    if asked is not None and asked < 1:
        raise APIError(400, f"'{param}' must be at least 1, got {asked}", param=param, code="invalid_value")
    if asked is not None and limit is not None and asked > limit:
        raise APIError(400, f"'{param}' is {asked}, above this server's limit of {limit}",
                       param=param, code="invalid_value")
    room = context - prompt_len
    if room < 1 or (asked is not None and asked > room):
        wanted = prompt_len + (asked if asked is not None else 1)
        raise APIError(400, f"this model's maximum context length is {context} tokens, but {wanted} "
                            f"were requested ({prompt_len} in the prompt, {wanted - prompt_len} for the "
                            f"completion); shorten the prompt or lower '{param}'",
                       param="messages" if isinstance(req, ChatCompletionRequest) else "prompt",
                       code="context_length_exceeded")
    if asked is not None:
        return asked
    return room if limit is None else min(room, limit)


def _sampling_params(req: _GenerationRequest, max_tokens: int) -> SamplingParams:
    given = {name: getattr(req, name) for name in _SAMPLING_FIELDS if getattr(req, name) is not None}
    given.setdefault("temperature", OPENAI_DEFAULT_TEMPERATURE)
    if req.stop is not None:
        given["stop"] = [req.stop] if isinstance(req.stop, str) else list(req.stop)
    try:
        return SamplingParams(max_tokens=max_tokens, **given)
    except ValueError as err:
        # SamplingParams' messages begin with the offending field's name.
        param = next((name for name in given if str(err).startswith(name)), None)
        raise APIError(400, str(err), param=param, code="invalid_value") from None


def _check_n(req: _GenerationRequest) -> None:
    if req.n is not None and req.n != 1:
        raise APIError(400, f"'n' must be 1 (one completion per request), got {req.n}",
                       param="n", code="invalid_value")


# ---------------------------------------------------------------------------
# Response bodies
# ---------------------------------------------------------------------------

@dataclass
class Outcome:
    """What a generation has produced so far."""

    prompt_tokens: int
    parts: list[str] = field(default_factory=list)
    completion_tokens: int = 0
    finish_reason: str | None = None

    def add(self, delta) -> None:
        self.parts.append(delta.text)
        self.completion_tokens += 1
        if delta.finish_reason is not None:
            self.finish_reason = delta.finish_reason

    @property
    def text(self) -> str:
        return "".join(self.parts)

    def usage(self) -> dict[str, int]:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "total_tokens": self.prompt_tokens + self.completion_tokens}


class ChatShapes:
    """Bodies of /v1/chat/completions responses and stream chunks."""

    def __init__(self, model: str):
        self.base = {"id": f"chatcmpl-{uuid.uuid4().hex}", "created": int(time.time()), "model": model}

    def _chunk(self, delta: dict, finish_reason: str | None) -> dict:
        return {**self.base, "object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]}

    def first_chunk(self) -> dict:
        return self._chunk({"role": "assistant", "content": ""}, None)

    def text_chunk(self, text: str) -> dict:
        return self._chunk({"content": text}, None)

    def final_chunk(self, finish_reason: str) -> dict:
        return self._chunk({}, finish_reason)

    def usage_chunk(self, usage: dict) -> dict:
        return {**self.base, "object": "chat.completion.chunk", "choices": [], "usage": usage}

    def whole(self, outcome: Outcome) -> dict:
        message = {"role": "assistant", "content": outcome.text}
        return {**self.base, "object": "chat.completion",
                "choices": [{"index": 0, "message": message, "logprobs": None,
                             "finish_reason": outcome.finish_reason}],
                "usage": outcome.usage()}


class CompletionShapes:
    """Bodies of /v1/completions responses and stream chunks."""

    def __init__(self, model: str):
        self.base = {"id": f"cmpl-{uuid.uuid4().hex}", "created": int(time.time()), "model": model}

    def _chunk(self, text: str, finish_reason: str | None) -> dict:
        return {**self.base, "object": "text_completion",
                "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}]}

    def first_chunk(self) -> None:
        return None  # completions streams have no role chunk

    def text_chunk(self, text: str) -> dict:
        return self._chunk(text, None)

    def final_chunk(self, finish_reason: str) -> dict:
        return self._chunk("", finish_reason)

    def usage_chunk(self, usage: dict) -> dict:
        return {**self.base, "object": "text_completion", "choices": [], "usage": usage}

    def whole(self, outcome: Outcome) -> dict:
        return {**self._chunk(outcome.text, outcome.finish_reason), "usage": outcome.usage()}


def _sse(data: dict | str) -> str:
    return f"data: {data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)}\n\n"


def _engine_error(err: BaseException) -> APIError:
    if isinstance(err, ShuttingDown):
        return APIError(503, "the server is shutting down; the generation was cancelled",
                        type="server_error", code="shutting_down")
    if isinstance(err, ContextLengthError):
        return APIError(400, str(err), code="context_length_exceeded")
    if isinstance(err, ValueError):
        return APIError(400, str(err), code="invalid_value")
    return APIError(500, f"generation failed: {err}", type="server_error")


async def _cancel_on_disconnect(request: Request, cancel: threading.Event) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass
    cancel.set()


async def _stream(job: Job, shapes, outcome: Outcome, include_usage: bool,
                  request: Request) -> AsyncIterator[str]:
    watcher = asyncio.create_task(_cancel_on_disconnect(request, job.cancel))
    try:
        if (first := shapes.first_chunk()) is not None:
            yield _sse(first)
        async for delta in job.deltas():
            outcome.add(delta)
            if delta.text:
                yield _sse(shapes.text_chunk(delta.text))
        yield _sse(shapes.final_chunk(outcome.finish_reason or "stop"))
        if include_usage:
            yield _sse(shapes.usage_chunk(outcome.usage()))
        yield _sse("[DONE]")
    except Exception as err:  # the stream has started: report in-band, as OpenAI does
        yield _sse(_engine_error(err).body())
    finally:
        job.cancel.set()  # a no-op once finished; stops the engine if the client left
        watcher.cancel()


async def _collect(job: Job, outcome: Outcome, request: Request) -> None:
    watcher = asyncio.create_task(_cancel_on_disconnect(request, job.cancel))
    try:
        async for delta in job.deltas():
            outcome.add(delta)
    except Exception as err:
        raise _engine_error(err) from None
    finally:
        watcher.cancel()


# ---------------------------------------------------------------------------
# The app
# ---------------------------------------------------------------------------

_ENDPOINTS = ("/v1/chat/completions", "/v1/completions", "/v1/models", "/health", "/metrics")


class _CountRequests:
    """ASGI middleware: count every response by endpoint and status (streams included)."""

    def __init__(self, app, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        endpoint = scope["path"] if scope["path"] in _ENDPOINTS else "other"

        async def counting_send(message):
            if message["type"] == "http.response.start":
                self.metrics.count_request(endpoint, message["status"])
            await send(message)

        await self.app(scope, receive, counting_send)


def create_app(engine, *, api_key: str | None = None, served_model_name: str = "megadelta",
               limits: Limits = Limits()) -> FastAPI:
    """The server as an ASGI app around a loaded ``Engine``. The worker thread
    starts and stops with the app's lifespan."""
    metrics = Metrics()
    scheduler = Scheduler(engine, limits.max_queue, metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        scheduler.start()
        yield
        await asyncio.to_thread(scheduler.close)

    app = FastAPI(title="megadelta", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.scheduler = scheduler
    app.add_middleware(_CountRequests, metrics=metrics)

    @app.exception_handler(APIError)
    async def api_error(request: Request, err: APIError):
        return err.response()

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, err: StarletteHTTPException):
        return APIError(err.status_code, str(err.detail)).response()

    @app.exception_handler(Exception)
    async def internal_error(request: Request, err: Exception):
        return APIError(500, f"internal error: {type(err).__name__}: {err}", type="server_error").response()

    def check_key(request: Request) -> None:
        if api_key is None:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), api_key.encode()):
            raise APIError(401, "missing or invalid API key: send 'Authorization: Bearer <key>'",
                           code="invalid_api_key")

    async def generate(request: Request, model_cls, shapes_cls):
        check_key(request)
        req = _parse(model_cls, await _read_json(request, limits.max_body_bytes))
        _check_n(req)
        prompt_ids = _prompt_ids(engine, req)
        max_tokens = _max_tokens(req, len(prompt_ids), engine.max_seq_len, limits.max_tokens)
        job = Job(prompt_ids, _sampling_params(req, max_tokens), asyncio.get_running_loop())
        try:
            scheduler.submit(job)
        except QueueFull:
            raise APIError(429, f"the server is busy: {limits.max_queue} requests are already waiting; "
                                "retry later", type="rate_limit_error", code="queue_full") from None
        except ShuttingDown:
            raise _engine_error(ShuttingDown()) from None
        shapes, outcome = shapes_cls(served_model_name), Outcome(len(prompt_ids))
        if req.stream:
            return StreamingResponse(_stream(job, shapes, outcome, req.include_usage(), request),
                                     media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        await _collect(job, outcome, request)
        return JSONResponse(shapes.whole(outcome))

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        return await generate(request, ChatCompletionRequest, ChatShapes)

    @app.post("/v1/completions")
    async def completions(request: Request):
        return await generate(request, CompletionRequest, CompletionShapes)

    @app.get("/v1/models")
    async def models(request: Request):
        check_key(request)
        card = {"id": served_model_name, "object": "model", "created": 0, "owned_by": "megadelta",
                "max_model_len": engine.max_seq_len}
        return {"object": "list", "data": [card]}

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    @app.get("/metrics")
    async def metrics_text():
        return PlainTextResponse(metrics.render(scheduler.depth),
                                 media_type="text/plain; version=0.0.4; charset=utf-8")

    return app


# ---------------------------------------------------------------------------
# `megadelta serve`
# ---------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    from .cli import add_model_arguments

    add_model_arguments(parser)
    group = parser.add_argument_group("server")
    group.add_argument("--host", default="127.0.0.1",
                       help="address to bind (default 127.0.0.1: this machine only)")
    group.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    group.add_argument("--api-key", default=os.environ.get(API_KEY_ENV), metavar="KEY",
                       help=f"require 'Authorization: Bearer KEY' (default: ${API_KEY_ENV}; unset: no key)")
    group.add_argument("--served-model-name", metavar="NAME",
                       help="model id in /v1/models and responses (default: the checkpoint's directory name)")
    group.add_argument("--max-tokens-limit", type=int, metavar="N",
                       help="largest max_tokens a request may ask for (default: the context size)")
    group.add_argument("--max-body-bytes", type=int, default=DEFAULT_MAX_BODY_BYTES, metavar="N",
                       help=f"largest request body (default {DEFAULT_MAX_BODY_BYTES})")
    group.add_argument("--max-queue", type=int, default=DEFAULT_MAX_QUEUE, metavar="N",
                       help=f"requests that may wait for the engine; more get 429 (default {DEFAULT_MAX_QUEUE})")


class _Server(uvicorn.Server):
    """Cancels generations as soon as shutdown begins; plain uvicorn would wait
    for every open stream to finish first."""

    def __init__(self, config: uvicorn.Config, scheduler: Scheduler):
        super().__init__(config)
        self.scheduler = scheduler

    async def shutdown(self, sockets=None):
        self.scheduler.cancel_all()
        await super().shutdown(sockets)


def run(args: argparse.Namespace) -> None:
    from .cli import UsageError, load_engine

    for flag in ("max_tokens_limit", "max_body_bytes", "max_queue"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise UsageError(f"--{flag.replace('_', '-')} must be at least 1, got {value}")
    engine = load_engine(args)
    limits = Limits(max_tokens=args.max_tokens_limit, max_body_bytes=args.max_body_bytes,
                    max_queue=args.max_queue)
    app = create_app(engine, api_key=args.api_key or None,
                     served_model_name=args.served_model_name or engine.config.name, limits=limits)
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level="info")
    _Server(config, app.state.scheduler).run()
