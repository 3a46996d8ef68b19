"""The OpenAI-compatible server, run as a real process on loopback and driven
with the official ``openai`` client and raw httpx: answers equal the engine's,
SSE framing, errors in OpenAI's shape, concurrency without mixing, disconnects
that stop generation, a full queue, and shutdown."""

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest

from megadelta.checkpoint import make_random_checkpoint
from megadelta.config import tiny_config
from megadelta.engine import Engine
from megadelta.sampling import SamplingParams
from megadelta.server import Job, Metrics, Scheduler

API_KEY = "test-key"
MAX_BODY_BYTES = 100_000
MAX_TOKENS_LIMIT = 3000
# High temperature and a small top-k: the random model's answers then differ
# from seed to seed (so a mix-up would show) and sampling stays cheap.
DIVERSE = dict(temperature=8.0, top_k=40)
LONG_PROMPT = "Once upon a time"  # the greedy answer repeats " time" and never ends by itself


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """`megadelta serve` in a child process, killed at the end."""

    def __init__(self, model_dir, log_path, *extra: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        args = ["--model", str(model_dir), "--backend", "reference", "--device", "cpu",
                "--port", str(self.port), *extra]
        env = {k: v for k, v in os.environ.items() if k != "MEGADELTA_API_KEY"}
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "megadelta", "serve", *args],
                                         stdout=log, stderr=subprocess.STDOUT, env=env)
        self._wait_healthy()

    def _wait_healthy(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"the server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.stop()
        pytest.fail(f"the server did not become healthy in {timeout} s:\n{self.log()}")

    def log(self) -> str:
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_random_checkpoint(tmp_path_factory.mktemp("tiny"), tiny_config(), seed=0, confident=True)


@pytest.fixture(scope="module")
def engine(model_dir):
    """The same model in this process: what each request should get when alone."""
    return Engine.load(model_dir, backend="reference", device="cpu")


@pytest.fixture(scope="module")
def server(model_dir, tmp_path_factory):
    proc = ServerProcess(model_dir, tmp_path_factory.mktemp("logs") / "server.log",
                         "--api-key", API_KEY, "--served-model-name", "tiny-test",
                         "--max-body-bytes", str(MAX_BODY_BYTES),
                         "--max-tokens-limit", str(MAX_TOKENS_LIMIT))
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key=API_KEY, max_retries=0, timeout=60)


def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {API_KEY}"}


def metrics(url: str) -> dict[str, float]:
    """The unlabelled series of /metrics."""
    text = httpx.get(url + "/metrics").text
    return {m[1]: float(m[2]) for m in re.finditer(r"^([a-z_]+) (\S+)$", text, re.M)}


def wait_idle(url: str, timeout: float = 10) -> dict[str, float]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = metrics(url)
        if m["megadelta_requests_running"] == 0 and m["megadelta_queue_depth"] == 0:
            return m
        time.sleep(0.05)
    pytest.fail(f"the server is still busy after {timeout} s: {m}")


def wait_for(url: str, series: str, value: float, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while metrics(url)[series] != value:
        assert time.monotonic() < deadline, f"{series} never reached {value}"
        time.sleep(0.05)


def sse_events(lines) -> list[str]:
    """The data payloads of an SSE stream, checking the framing on the way."""
    events, blank_expected = [], False
    for line in lines:
        if blank_expected:
            assert line == "", f"an event must end with a blank line, got {line!r}"
            blank_expected = False
            continue
        assert line.startswith("data: "), f"not an SSE data line: {line!r}"
        events.append(line[len("data: "):])
        blank_expected = True
    return events


# ---------------------------------------------------------------------------
# Answers
# ---------------------------------------------------------------------------

def test_health_and_models(server, client):
    assert httpx.get(server.url + "/health").json() == {"status": "ok"}
    assert [m.id for m in client.models.list().data] == ["tiny-test"]


def test_chat_equals_the_engine(client, engine):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello there"}]
    got = client.chat.completions.create(model="tiny-test", messages=messages, max_tokens=6, temperature=0)
    want = engine.chat(messages, SamplingParams(max_tokens=6))
    assert got.choices[0].message.role == "assistant"
    assert got.choices[0].message.content == want.text
    assert got.choices[0].finish_reason == want.finish_reason == "length"
    assert got.usage.prompt_tokens == len(engine.chat_prompt_ids(messages))
    assert got.usage.completion_tokens == 6
    assert got.usage.total_tokens == got.usage.prompt_tokens + 6


def test_max_completion_tokens(client):
    got = client.chat.completions.create(model="tiny-test", messages=[{"role": "user", "content": "Hi"}],
                                         max_completion_tokens=3, max_tokens=7, temperature=0)
    assert got.usage.completion_tokens == 3


def test_completion_equals_the_engine(client, engine):
    got = client.completions.create(model="tiny-test", prompt="The quick brown fox", max_tokens=5,
                                    seed=7, extra_body=DIVERSE)
    want = engine.generate("The quick brown fox", SamplingParams(max_tokens=5, seed=7, **DIVERSE))
    assert got.choices[0].text == want.text
    assert got.usage.prompt_tokens == len(engine.tokenizer.encode("The quick brown fox"))
    assert got.usage.completion_tokens == len(want.token_ids)


def test_token_id_prompt(client, engine):
    ids = engine.tokenizer.encode("Hello world")
    got = client.completions.create(model="tiny-test", prompt=ids, max_tokens=4, temperature=0)
    assert got.choices[0].text == engine.generate("Hello world", SamplingParams(max_tokens=4)).text


def test_chat_stream_equals_non_stream(client):
    messages = [{"role": "user", "content": "Tell me a story"}]
    kwargs = dict(model="tiny-test", messages=messages, max_tokens=8, seed=3, extra_body=DIVERSE)
    whole = client.chat.completions.create(**kwargs)
    chunks = list(client.chat.completions.create(**kwargs, stream=True,
                                                 stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].choices == [] and chunks[-1].usage == whole.usage
    assert all(c.usage is None for c in chunks[:-1])


def test_completion_stream_equals_non_stream(client):
    kwargs = dict(model="tiny-test", prompt="Write a poem", max_tokens=8, seed=5, extra_body=DIVERSE)
    whole = client.completions.create(**kwargs)
    chunks = list(client.completions.create(**kwargs, stream=True))
    assert "".join(c.choices[0].text for c in chunks) == whole.choices[0].text
    assert chunks[-1].choices[0].finish_reason == whole.choices[0].finish_reason == "length"


def test_sse_framing(server):
    body = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4, "stream": True,
            "stream_options": {"include_usage": True}}
    with httpx.stream("POST", server.url + "/v1/chat/completions", json=body, headers=auth()) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        events = sse_events(r.iter_lines())
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[-1]["usage"]["completion_tokens"] == 4


def test_stop_sequence(client):
    kwargs = dict(model="tiny-test", prompt="Some words:", max_tokens=12, seed=11, extra_body=DIVERSE)
    full = client.completions.create(**kwargs).choices[0].text
    assert len(full) > 6, f"the fixture's answer is too short to cut: {full!r}"
    stop = full[4:6]
    for stops in (stop, [stop, "never appears"]):
        got = client.completions.create(**kwargs, stop=stops).choices[0]
        assert got.text == full[:full.index(stop)]
        assert got.finish_reason == "stop"


def test_seed_reproducibility(client):
    def answer(seed):
        return client.chat.completions.create(
            model="tiny-test", messages=[{"role": "user", "content": "Pick a word"}], max_tokens=5,
            seed=seed, extra_body=DIVERSE).choices[0].message.content

    assert answer(1) == answer(1)
    assert len({answer(seed) for seed in range(2, 6)}) > 1, "the seed does not change the sample"


# ---------------------------------------------------------------------------
# Bad requests: the right status and message, and the server carries on
# ---------------------------------------------------------------------------

CHAT = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}

BAD_REQUESTS = {
    "malformed JSON": (b'{"messages": [', 400, "not valid JSON"),
    "not an object": ([1, 2], 400, "JSON object"),
    "wrong type": ({**CHAT, "temperature": "hot"}, 400, "'temperature'"),
    "string max_tokens": ({**CHAT, "max_tokens": "5"}, 400, "'max_tokens'"),
    "no messages": ({"max_tokens": 2}, 400, "'messages'"),
    "bad role": ({"messages": [{"role": "robot", "content": "x"}]}, 400, "messages.0.role"),
    "negative max_tokens": ({**CHAT, "max_tokens": -1}, 400, "'max_tokens' must be at least 1, got -1"),
    "zero max_completion_tokens": ({**CHAT, "max_completion_tokens": 0}, 400,
                                   "'max_completion_tokens' must be at least 1, got 0"),
    "max_tokens over the limit": ({**CHAT, "max_tokens": MAX_TOKENS_LIMIT + 1}, 400,
                                  f"above this server's limit of {MAX_TOKENS_LIMIT}"),
    "negative temperature": ({**CHAT, "temperature": -0.5}, 400, "temperature must be >= 0"),
    "top_p zero": ({**CHAT, "top_p": 0}, 400, "top_p must be in (0, 1]"),
    "n = 2": ({**CHAT, "n": 2}, 400, "'n' must be 1"),
    "over-long prompt": ({"messages": [{"role": "user", "content": " hello" * 5000}]}, 400,
                         "maximum context length is 4096 tokens"),
    "body too large": ({"messages": [{"role": "user", "content": "x" * MAX_BODY_BYTES}]}, 413,
                       f"limit of {MAX_BODY_BYTES} bytes"),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_bad_request(server, client, case):
    body, status, message = BAD_REQUESTS[case]
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    r = httpx.post(server.url + "/v1/chat/completions", content=content,
                   headers={**auth(), "Content-Type": "application/json"})
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert message in error["message"]
    ok = client.chat.completions.create(model="tiny-test", **CHAT)
    assert ok.choices[0].finish_reason == "length"


def test_over_long_prompt_names_the_numbers(server):
    r = httpx.post(server.url + "/v1/completions", headers=auth(),
                   json={"prompt": [1] * 4090, "max_tokens": 10})
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "context_length_exceeded"
    assert "4100 were requested (4090 in the prompt, 10 for the completion)" in r.json()["error"]["message"]


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": API_KEY}],
                         ids=["missing", "wrong", "not bearer"])
def test_api_key_required(server, client, headers):
    r = httpx.post(server.url + "/v1/chat/completions", json=CHAT, headers=headers)
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=server.url + "/v1", api_key="wrong", max_retries=0).models.list()
    assert client.chat.completions.create(model="tiny-test", **CHAT).choices


def test_unknown_route_is_an_openai_error(server):
    r = httpx.get(server.url + "/v1/nothing", headers=auth())
    assert r.status_code == 404 and "message" in r.json()["error"]


# ---------------------------------------------------------------------------
# Concurrency, disconnects, metrics
# ---------------------------------------------------------------------------

def open_stream(url: str, headers=None) -> tuple[threading.Thread, list[str], threading.Event]:
    """A long completions stream read in a thread: (thread, lines read, event
    that makes the reader hang up at its next line)."""
    lines, hang_up = [], threading.Event()

    def read():
        body = {"prompt": LONG_PROMPT, "max_tokens": 2000, "temperature": 0, "stream": True}
        with httpx.stream("POST", url + "/v1/completions", json=body, headers=headers, timeout=60) as r:
            lines.append(f"status {r.status_code}")
            for line in r.iter_lines():
                lines.append(line)
                if hang_up.is_set():
                    return

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread, lines, hang_up


def test_requests_are_served_in_arrival_order(server):
    blocker, _, hang_up = open_stream(server.url, auth())
    wait_for(server.url, "megadelta_requests_running", 1)
    finished, threads = [], []
    for i in range(4):
        def ask(i=i):
            httpx.post(server.url + "/v1/completions", headers=auth(), timeout=60,
                       json={"prompt": f"Order {i}", "max_tokens": 10, "temperature": 0})
            finished.append(i)

        threads.append(threading.Thread(target=ask))
        threads[-1].start()
        wait_for(server.url, "megadelta_queue_depth", i + 1)
    hang_up.set()
    for thread in (blocker, *threads):
        thread.join(60)
    assert finished == [0, 1, 2, 3]


def test_concurrent_requests_are_not_mixed(client, server):
    def ask(i):
        if i % 2:
            r = client.completions.create(model="tiny-test", prompt=f"Request number {i}", max_tokens=3,
                                          seed=i, extra_body=DIVERSE)
            return r.choices[0].text, r.usage.completion_tokens
        r = client.chat.completions.create(model="tiny-test", max_tokens=3, seed=i, extra_body=DIVERSE,
                                           messages=[{"role": "user", "content": f"Question {i}"}])
        return r.choices[0].message.content, r.usage.completion_tokens

    distinct = 25
    alone = [ask(i) for i in range(distinct)]
    assert len(set(alone)) > distinct // 2, "answers barely depend on the request; the test would be blind"
    before = metrics(server.url)
    with ThreadPoolExecutor(16) as pool:
        together = list(pool.map(lambda n: ask(n % distinct), range(200)))
    assert together == [alone[n % distinct] for n in range(200)]
    after = wait_idle(server.url)
    assert after["megadelta_generated_tokens_total"] - before["megadelta_generated_tokens_total"] == \
        sum(tokens for _, tokens in together)


def test_metrics_exposition(server, client):
    client.completions.create(model="tiny-test", prompt="Count", max_tokens=3, temperature=0)
    text = httpx.get(server.url + "/metrics").text
    assert 'megadelta_requests_total{endpoint="/v1/completions",status="200"}' in text
    assert re.search(r'^megadelta_requests_total\{endpoint="/v1/chat/completions",status="401"\} [1-9]',
                     text, re.M)
    assert re.search(r"^megadelta_time_to_first_token_seconds_count [1-9]", text, re.M)
    assert re.search(r'^megadelta_tokens_per_second_bucket\{le="\+Inf"\} [1-9]', text, re.M)
    for line in text.splitlines():
        assert line.startswith("#") or re.fullmatch(r'[a-z_]+(\{[^}]*\})? [-+.\deInf]+', line), line


def test_stream_disconnect_stops_the_generation(server, client):
    before = wait_idle(server.url)
    body = {"prompt": LONG_PROMPT, "max_tokens": 2000, "temperature": 0, "stream": True}
    with httpx.stream("POST", server.url + "/v1/completions", json=body, headers=auth()) as r:
        for n, _ in enumerate(r.iter_lines()):
            if n == 6:  # three tokens in
                break
    after = wait_idle(server.url)
    generated = after["megadelta_generated_tokens_total"] - before["megadelta_generated_tokens_total"]
    assert 3 <= generated < 500, f"generated {generated} tokens after the client left"
    assert after["megadelta_generations_cancelled_total"] == before["megadelta_generations_cancelled_total"] + 1
    start = time.monotonic()
    assert client.completions.create(model="tiny-test", prompt="Next", max_tokens=2).choices
    assert time.monotonic() - start < 10


def test_a_job_cancelled_during_its_prompt_counts_as_cancelled():
    """The engine ends a stream with no delta when a cancel comes between two
    prefill pieces (test_engine.py); the worker counts that as a cancel."""
    class LeftDuringThePrompt:
        def stream(self, prompt_ids, params, cancel):
            cancel.set()
            return iter(())

    metrics = Metrics()
    scheduler = Scheduler(LeftDuringThePrompt(), max_queue=1, metrics=metrics)
    scheduler.start()

    async def run():
        job = Job([1, 2, 3], SamplingParams(), asyncio.get_running_loop())
        scheduler.submit(job)
        return [delta async for delta in job.deltas()]

    try:
        assert asyncio.run(run()) == []
    finally:
        scheduler.close()
    assert metrics.cancelled == 1 and metrics.running == 0


def test_non_stream_disconnect_stops_the_generation(server):
    before = wait_idle(server.url)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(server.url + "/v1/completions", headers=auth(), timeout=1.0,
                   json={"prompt": LONG_PROMPT, "max_tokens": 2000, "temperature": 0})
    after = wait_idle(server.url)
    assert after["megadelta_generations_cancelled_total"] == before["megadelta_generations_cancelled_total"] + 1
    assert after["megadelta_generated_tokens_total"] - before["megadelta_generated_tokens_total"] < 1000


# ---------------------------------------------------------------------------
# A second server: no API key, a queue of one, default host; then shutdown
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_server(model_dir, tmp_path_factory):
    proc = ServerProcess(model_dir, tmp_path_factory.mktemp("logs") / "small.log", "--max-queue", "1")
    yield proc
    proc.stop()


def test_binds_loopback_and_needs_no_key(small_server):
    assert f"running on http://127.0.0.1:{small_server.port}" in small_server.log()
    r = httpx.post(small_server.url + "/v1/completions", json={"prompt": "Hi", "max_tokens": 2})
    assert r.status_code == 200


def test_full_queue_is_refused(small_server):
    running = open_stream(small_server.url)
    wait_for(small_server.url, "megadelta_requests_running", 1)
    queued = open_stream(small_server.url)
    wait_for(small_server.url, "megadelta_queue_depth", 1)
    r = httpx.post(small_server.url + "/v1/completions", json={"prompt": "Hi", "max_tokens": 2})
    assert r.status_code == 429
    assert "1 requests are already waiting" in r.json()["error"]["message"]
    for thread, _, hang_up in (running, queued):
        hang_up.set()
        thread.join(10)
    wait_idle(small_server.url)
    r = httpx.post(small_server.url + "/v1/completions", json={"prompt": "Hi", "max_tokens": 2})
    assert r.status_code == 200


def test_shutdown_cancels_streams_and_exits(small_server):
    reader, lines, _ = open_stream(small_server.url)
    wait_for(small_server.url, "megadelta_requests_running", 1)
    start = time.monotonic()
    small_server.proc.send_signal(signal.SIGTERM)
    # uvicorn shuts down gracefully, then re-raises the signal to exit by it
    assert small_server.proc.wait(20) == -signal.SIGTERM
    assert "Application shutdown complete" in small_server.log()
    reader.join(10)
    assert time.monotonic() - start < 20
    assert lines[0] == "status 200"
    last = json.loads([line for line in lines if line][-1][len("data: "):])
    assert last["error"]["code"] == "shutting_down"
