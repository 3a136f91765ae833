"""The edge in Ray Serve's proxy (`deployments/http/edge.py`): control headers never pass, a body is in
full and in time before anything downstream sees the request, stalled request heads are cut, and the
proxy's own plain-text answers become the error envelope. Against a plain ASGI app and a real uvicorn."""

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from deployments.http.edge import EdgeMiddleware, EdgeSettings, is_reserved_header


class Recorder:
    """An ASGI app that records what reached it, reads the whole body, and answers as told."""

    def __init__(self, status: int = 200, content_type: bytes = b"application/json", body: bytes = b"{}",
                 headers: list[tuple[bytes, bytes]] | None = None) -> None:
        self.status, self.content_type, self.body, self.headers = status, content_type, body, headers or []
        self.scopes: list[dict] = []
        self.bodies: list[bytes] = []

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        self.scopes.append(scope)
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        self.bodies.append(body)
        await send({"type": "http.response.start", "status": self.status,
                    "headers": [(b"content-type", self.content_type), *self.headers]})
        await send({"type": "http.response.body", "body": self.body})


def scope_with(headers: list[tuple[bytes, bytes]]) -> dict:
    return {"type": "http", "method": "POST", "path": "/v1/embeddings", "headers": headers}


async def run(app: Any, headers: list[tuple[bytes, bytes]], chunks: list[bytes], delay_s: float = 0.0
              ) -> tuple[int, dict[bytes, bytes], bytes, int]:
    pulled = 0

    async def receive() -> dict:
        nonlocal pulled
        if delay_s:
            await asyncio.sleep(delay_s)
        if pulled >= len(chunks):
            await asyncio.sleep(3600)  # the client stays, sends nothing more
        pulled += 1
        return {"type": "http.request", "body": chunks[pulled - 1], "more_body": pulled < len(chunks)}

    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    await asyncio.wait_for(app(scope_with(headers), receive, send), 20)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], dict(start["headers"]), body, pulled


async def test_control_headers_are_dropped_and_the_rest_pass():
    inner = Recorder()
    headers = [(b"x-request-timeout-seconds", b"0"), (b"x-request-disconnect-disabled", b"?1"),
               (b"serve_multiplexed_model_id", b"m"), (b"Serve-Multiplexed-Model-Id", b"m"),
               (b"x-session-id", b"s"), (b"x-serve-router-target", b"r"), (b"x-request-priority", b"9"),
               (b"ray-anything", b"1"), (b"x-request-id", b"abc-123"), (b"authorization", b"Bearer k"),
               (b"content-type", b"application/json")]
    status, _, _, _ = await run(EdgeMiddleware(inner, EdgeSettings()), headers, [b"{}"])
    assert status == 200
    assert [k for k, _ in inner.scopes[0]["headers"]] == [b"x-request-id", b"authorization", b"content-type"]


async def test_a_request_id_that_could_not_be_echoed_safely_is_dropped():
    inner = Recorder()
    await run(EdgeMiddleware(inner, EdgeSettings()), [(b"x-request-id", b"a" * 500)], [b""])
    assert inner.scopes[0]["headers"] == []


def test_which_headers_are_reserved():
    for name in ("x-request-timeout-seconds", "x-request-disconnect-disabled", "serve_multiplexed_model_id",
                 "serve-multiplexed-model-id", "x-session-id", "x-serve-router-x", "x-request-anything"):
        assert is_reserved_header(name), name
    for name in ("x-request-id", "authorization", "x-api-key", "content-type", "x-sessions"):
        assert not is_reserved_header(name), name


async def test_the_body_reaches_the_app_whole_after_it_arrived():
    inner = Recorder()
    status, _, _, _ = await run(EdgeMiddleware(inner, EdgeSettings()), [], [b'{"in', b'put": ', b'"x"}'])
    assert status == 200 and inner.bodies == [b'{"input": "x"}']


async def test_a_chunked_body_over_the_limit_is_413_when_the_limit_is_passed():
    inner = Recorder()
    chunks = [b"x" * 65536] * 640  # 40 MiB, no Content-Length
    status, headers, body, pulled = await run(EdgeMiddleware(inner, EdgeSettings(max_body_bytes=1 << 20)), [],
                                              chunks)
    assert status == 413 and json.loads(body)["error"]["code"] == "request_too_large"
    assert headers[b"connection"] == b"close" and pulled == 17 and inner.scopes == []


async def test_a_declared_length_over_the_limit_is_413_before_reading():
    status, _, _, pulled = await run(EdgeMiddleware(Recorder(), EdgeSettings(max_body_bytes=1000)),
                                     [(b"content-length", b"5000")], [b"x" * 5000])
    assert status == 413 and pulled == 0


async def test_a_trickling_body_is_408_and_never_reaches_the_app():
    inner = Recorder()
    settings = EdgeSettings(body_timeout_s=0.5, min_body_bytes_per_s=1 << 30)
    started = time.monotonic()
    status, headers, body, _ = await run(EdgeMiddleware(inner, settings), [], [b"x"] * 100, delay_s=0.1)
    assert status == 408 and json.loads(body)["error"]["code"] == "request_timeout"
    assert time.monotonic() - started < 3 and inner.scopes == [] and headers[b"connection"] == b"close"


@pytest.mark.parametrize(("status", "retry", "code"), [(429, b"2", "queue_full"), (503, None, "unavailable"),
                                                       (408, None, "request_timeout"), (500, None, "internal_error")])
async def test_the_proxys_plain_text_answers_become_the_envelope(status, retry, code):
    inner = Recorder(status=status, content_type=b"text/plain; charset=utf-8", body=b"Request abc timed out.",
                     headers=[(b"retry-after", retry)] if retry else [])
    got, headers, body, _ = await run(EdgeMiddleware(inner, EdgeSettings()), [], [b""])
    error = json.loads(body)["error"]
    assert got == status and error["code"] == code and headers[b"content-type"] == b"application/json"
    if retry:
        assert headers[b"retry-after"] == retry
    if status != 500:
        assert "timed out" in error["message"]


async def test_json_errors_and_plain_successes_pass_unchanged():
    envelope = json.dumps({"error": {"message": "m", "type": "t", "param": None, "code": "c"}}).encode()
    for inner in (Recorder(status=422, body=envelope), Recorder(status=200, content_type=b"text/plain", body=b"ok")):
        _, _, body, _ = await run(EdgeMiddleware(inner, EdgeSettings()), [], [b""])
        assert body == inner.body


# ------------------------------------------------------------------ uvicorn with the head deadline
@pytest.fixture(scope="module")
def head_timeout_server() -> Iterator[int]:
    """A real uvicorn (as Ray Serve's proxy runs it) with the edge installed by the proxy callback."""
    import uvicorn

    from deployments.http import edge

    original = dict(uvicorn.config.HTTP_PROTOCOLS)
    try:
        edge.install_head_timeout(0.5)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        server = uvicorn.Server(uvicorn.Config(EdgeMiddleware(Recorder(), EdgeSettings()), host="127.0.0.1",
                                               port=port, log_level="critical", lifespan="off",
                                               timeout_keep_alive=5))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 20
        while not server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)
        yield port
        server.should_exit = True
        thread.join(10)
    finally:
        uvicorn.config.HTTP_PROTOCOLS.clear()
        uvicorn.config.HTTP_PROTOCOLS.update(original)


def read_all(sock: socket.socket, limit_s: float) -> bytes:
    sock.settimeout(limit_s)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except TimeoutError:
        pass
    return data


def test_a_stalled_request_head_is_cut_with_408(head_timeout_server):
    with socket.create_connection(("127.0.0.1", head_timeout_server)) as sock:
        started = time.monotonic()
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        answer = read_all(sock, 5)
        assert time.monotonic() - started < 3
    assert answer.startswith(b"HTTP/1.1 408")
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]["code"] == "request_timeout"


def test_a_silent_new_connection_is_closed(head_timeout_server):
    with socket.create_connection(("127.0.0.1", head_timeout_server)) as sock:
        assert read_all(sock, 5).startswith(b"HTTP/1.1 408")


def test_a_trickled_head_does_not_extend_its_deadline(head_timeout_server):
    with socket.create_connection(("127.0.0.1", head_timeout_server)) as sock:
        started = time.monotonic()
        sock.sendall(b"GET / HTTP/1.1\r\n")
        for _ in range(10):
            time.sleep(0.2)
            try:
                sock.sendall(b"X-A: b\r\n")
            except OSError:
                break
        answer = read_all(sock, 3)
        assert b"408" in answer.split(b"\r\n", 1)[0] and time.monotonic() - started < 4


def test_a_request_that_is_not_http_is_400_in_the_envelope(head_timeout_server):
    with socket.create_connection(("127.0.0.1", head_timeout_server)) as sock:
        sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        answer = read_all(sock, 5)
    assert answer.startswith(b"HTTP/1.1 400")
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]["code"] == "invalid_http"


def test_complete_requests_on_a_kept_alive_connection_are_served(head_timeout_server):
    with socket.create_connection(("127.0.0.1", head_timeout_server)) as sock:
        for _ in range(3):
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            sock.settimeout(5)
            assert sock.recv(65536).startswith(b"HTTP/1.1 200")
            time.sleep(0.7)  # idle longer than the head deadline: idle time is keep-alive's, not the head's
