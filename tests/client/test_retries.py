"""Retries, timeouts and exceptions, against the fake server behind `httpx.MockTransport`.

A double is used throughout this file because the real server cannot be told to answer 429 or
503 to one chosen request, to drop a connection, or to time out; the sleeps between attempts are
recorded instead of slept, so the delays are measured exactly and the tests take no time.
"""

import email.utils
import socket
import time

import httpx
import numpy as np
import pytest

from clients import (
    DEFAULT_MAX_RETRIES,
    DEFAULT_TIMEOUT,
    INITIAL_RETRY_DELAY,
    MAX_RETRY_AFTER,
    MAX_RETRY_DELAY,
    RETRY_JITTER,
    APIConnectionError,
    APIError,
    APIResponseValidationError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    Client,
    ConflictError,
    InternalServerError,
    NotFoundError,
    RateLimitError,
    RequestTooLargeError,
    ServiceUnavailableError,
)
from clients._exceptions import parse_retry_after, status_error_class
from clients._retry import retry_delay
from tests.client.fake_server import error, fake_vector

EMBED = "/v1/embeddings"


def assert_backoff(delay: float, retries_done: int) -> None:
    full = min(INITIAL_RETRY_DELAY * 2**retries_done, MAX_RETRY_DELAY)
    assert full * (1 - RETRY_JITTER) <= delay <= full, (delay, retries_done)


# ---------------------------------------------------------------- what is retried, and after how long
def test_429_with_retry_after_waits_what_the_server_asked_then_succeeds(fake, make_client, sleeps):
    """Double: a real server answers 429 only under a load that cannot be aimed at one request."""
    fake.then(error(429, "rate_limit_error", "queue full", headers={"retry-after": "3"}), path=EMBED)
    result = make_client().embed("hello")
    np.testing.assert_allclose(result.embeddings[0], fake_vector("hello"), atol=1e-7)
    assert sleeps == [3.0]
    first, second = (s.headers["x-request-id"] for s in fake.requests_to(EMBED))
    assert second == f"{first}-retry1"  # each attempt has its own id, the retry's names the first


def test_retry_after_as_an_http_date_and_in_milliseconds(fake, make_client, sleeps):
    """Double: the header forms are chosen by the test, not by the real server (which sends seconds)."""
    when = email.utils.formatdate(time.time() + 5, usegmt=True)
    fake.then(error(503, "service_unavailable_error", "starting", headers={"retry-after": when}), path=EMBED)
    fake.then(error(429, "rate_limit_error", "busy", headers={"retry-after-ms": "250"}), path=EMBED)
    make_client().embed("x")
    assert 3.9 <= sleeps[0] <= 5.0 and sleeps[1] == 0.25


def test_a_huge_retry_after_is_capped(fake, make_client, sleeps):
    """Double: an absurd Retry-After is something only a broken proxy sends."""
    fake.then(error(429, "rate_limit_error", "busy", headers={"retry-after": "3600"}), path=EMBED)
    make_client().embed("x")
    assert sleeps == [MAX_RETRY_AFTER]


def test_a_dropped_connection_is_retried(fake, make_client, sleeps):
    """Double: a connection closed before the answer cannot be provoked on a real server at will."""
    fake.then(httpx.RemoteProtocolError, path=EMBED)
    result = make_client().embed(["a", "b"])
    assert result.embeddings.shape == (2, 8) and len(fake.requests_to(EMBED)) == 2
    assert len(sleeps) == 1
    assert_backoff(sleeps[0], 0)


def test_connect_timeouts_exhaust_the_retries_then_raise_api_timeout_error(fake, make_client, sleeps):
    """Double: a timeout on demand, without waiting for one."""
    for _ in range(3):
        fake.then(httpx.ConnectTimeout, path=EMBED)
    with pytest.raises(APITimeoutError) as caught:
        make_client().embed("x")
    assert isinstance(caught.value, APIConnectionError)
    attempts = fake.requests_to(EMBED)
    assert len(attempts) == 1 + DEFAULT_MAX_RETRIES
    assert caught.value.request_id == attempts[-1].headers["x-request-id"]
    assert caught.value.request is not None and caught.value.request.url.path == EMBED
    assert len(sleeps) == 2
    assert_backoff(sleeps[0], 0)
    assert_backoff(sleeps[1], 1)


def test_a_read_timeout_is_not_retried_and_says_what_to_change(fake, make_client, sleeps):
    """Double: a timeout on demand. The server got the request and is computing it: a retry would run the
    same work again beside the abandoned one, so the first read timeout is raised, with the call's hint."""
    fake.then(httpx.ReadTimeout, path="/v1/collections/docs/search")
    with pytest.raises(APITimeoutError) as caught:
        make_client().search("docs", "a query", timeout=httpx.Timeout(7.0, connect=1.0))
    assert len(fake.requests_to("/v1/collections/docs/search")) == 1 and sleeps == []
    message = str(caught.value)
    assert "within 7 s" in message and "not retried" in message
    assert caught.value.hint is not None and message.endswith(caught.value.hint)
    for knob in ("top_k=", "rerank=False", "timeout="):
        assert knob in caught.value.hint

    fake.then(httpx.ReadTimeout, path=EMBED)
    with pytest.raises(APITimeoutError) as caught:
        make_client().embed("x")
    assert len(fake.requests_to(EMBED)) == 1 and caught.value.hint is None


def test_503_while_the_service_starts_is_retried_until_ready(fake, make_client, sleeps):
    """Double: the real server's start-up window cannot be held open while a test sends a request."""
    for _ in range(2):
        fake.then(error(503, "service_unavailable_error", "model deployment starting",
                        headers={"retry-after": "5"}), path="/v1/rerank")
    result = make_client().rerank("q", ["doc one"])
    assert result.results[0].document is not None and result.results[0].document.text == "doc one"
    assert sleeps == [5.0, 5.0]


def test_a_model_that_failed_to_start_is_not_retried(fake, make_client, sleeps):
    """Double: the real server answers this only when its models cannot load (tests/serving/test_failed_start.py)."""
    fake.then(error(503, "service_unavailable_error", "Embedder failed to start: no weights", code="model_failed"),
              path=EMBED)
    with pytest.raises(ServiceUnavailableError) as caught:
        make_client().embed("x")
    assert caught.value.code == "model_failed" and "no weights" in str(caught.value)
    assert len(fake.requests_to(EMBED)) == 1 and sleeps == []


def test_backoff_doubles_and_is_capped(fake, make_client, sleeps):
    """Double: seven consecutive 500s."""
    for _ in range(7):
        fake.then(error(500, "internal_error", "boom"), path=EMBED)
    with pytest.raises(InternalServerError):
        make_client(max_retries=6).embed("x")
    assert len(sleeps) == 6
    for retries_done, delay in enumerate(sleeps):
        assert_backoff(delay, retries_done)
    assert sleeps[-1] > MAX_RETRY_DELAY * (1 - RETRY_JITTER) - 1e-9  # 0.5 * 2**5 = 16 was capped to 8


def test_max_retries_per_client_and_per_call(fake, make_client, sleeps):
    """Double: a 429 on every attempt."""
    busy = {"headers": {"retry-after": "1"}}
    for _ in range(5):
        fake.then(error(429, "rate_limit_error", "busy", **busy), path=EMBED)
    with pytest.raises(RateLimitError) as caught:
        make_client(max_retries=0).embed("x")
    assert caught.value.retry_after == 1.0 and len(fake.requests_to(EMBED)) == 1 and sleeps == []
    with pytest.raises(RateLimitError):
        make_client(max_retries=0).embed("x", max_retries=3)  # the call's setting wins
    assert len(fake.requests_to(EMBED)) == 1 + 4 and sleeps == [1.0, 1.0, 1.0]
    fake.then(error(429, "rate_limit_error", "busy", **busy), path=EMBED)
    with pytest.raises(RateLimitError):
        make_client(max_retries=5).embed("x", max_retries=0)
    assert len(fake.requests_to(EMBED)) == 6


@pytest.mark.parametrize(
    ("status", "exception"),
    [(400, BadRequestError), (401, AuthenticationError), (404, NotFoundError), (409, ConflictError),
     (413, RequestTooLargeError), (422, BadRequestError)],
)
def test_client_errors_are_not_retried(fake, make_client, sleeps, status, exception):
    """Double: each status on demand, for one request."""
    fake.then(error(status, "some_error", f"status {status}"), path=EMBED)
    with pytest.raises(exception) as caught:
        make_client().embed("x")
    assert caught.value.status_code == status
    assert len(fake.requests_to(EMBED)) == 1 and sleeps == []


def test_408_and_every_5xx_are_retried(fake, make_client, sleeps):
    """Double: statuses the real server does not send on demand."""
    for status in (408, 500, 502, 504):
        fake.then(error(status, "x", "transient"), path=EMBED)
    make_client(max_retries=4).embed("x")
    assert len(fake.requests_to(EMBED)) == 5 and len(sleeps) == 4


# ---------------------------------------------------------------- exceptions
def test_the_error_envelope_and_request_id_are_on_the_exception(fake, make_client):
    """Double: the request id and envelope are chosen by the test, to be found on the exception."""
    fake.then(error(422, "invalid_request_error", "input: must not be empty", param="input", code="invalid_input",
                    request_id="req-abc-123"), path=EMBED)
    with pytest.raises(BadRequestError) as caught:
        make_client().embed("x")
    e = caught.value
    assert isinstance(e, APIStatusError) and isinstance(e, APIError)
    assert (e.status_code, e.message, e.type, e.param, e.code, e.request_id) == (
        422, "input: must not be empty", "invalid_request_error", "input", "invalid_input", "req-abc-123")
    assert e.response.status_code == 422 and e.request is not None and e.request.url.path == EMBED
    assert e.retry_after is None
    assert str(e) == ("422 invalid_request_error: input: must not be empty (param: input) "
                      "[request id req-abc-123]")


def test_an_error_page_that_is_not_the_envelope_still_gives_a_typed_error(fake, make_client):
    """Double: a load balancer's HTML 502 page, which our server never sends."""
    fake.then(httpx.Response(502, text="<html><h1>502 Bad Gateway</h1></html>"), path=EMBED)
    with pytest.raises(InternalServerError) as caught:
        make_client(max_retries=0).embed("x")
    assert caught.value.status_code == 502 and "Bad Gateway" in caught.value.message
    assert caught.value.type is None
    # The answer had no x-request-id: the id this client sent is reported.
    assert caught.value.request_id == fake.requests_to(EMBED)[0].headers["x-request-id"]


def test_a_success_with_an_unreadable_body_is_a_response_validation_error(fake, make_client):
    """Double: a 200 whose body is not the route's shape (a misrouted proxy)."""
    fake.then(httpx.Response(200, json={"unexpected": True}), path=EMBED)
    with pytest.raises(APIResponseValidationError) as caught:
        make_client().embed("x")
    assert caught.value.status_code == 200 and "/v1/embeddings" in caught.value.message


@pytest.mark.parametrize(
    ("status", "cls"),
    [(400, BadRequestError), (401, AuthenticationError), (403, APIStatusError), (404, NotFoundError),
     (409, ConflictError), (413, RequestTooLargeError), (422, BadRequestError), (429, RateLimitError),
     (500, InternalServerError), (502, InternalServerError), (503, ServiceUnavailableError),
     (504, InternalServerError), (418, APIStatusError)],
)
def test_one_function_maps_status_to_class(status, cls):
    assert status_error_class(status) is cls


def test_parse_retry_after_forms():
    assert parse_retry_after(httpx.Headers({"retry-after": "2"})) == 2.0
    assert parse_retry_after(httpx.Headers({"retry-after": "1.5"})) == 1.5
    assert parse_retry_after(httpx.Headers({"retry-after-ms": "20", "retry-after": "9"})) == 0.02
    assert parse_retry_after(httpx.Headers({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}),
                             now=1445412470.0) == 10.0
    assert parse_retry_after(httpx.Headers({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"})) == 0.0  # past
    assert parse_retry_after(httpx.Headers({"retry-after": "soon"})) is None
    assert parse_retry_after(httpx.Headers({})) is None


def test_retry_delay_prefers_the_header_and_caps_it():
    assert retry_delay(0, 0.0) == 0.0
    assert retry_delay(5, 2.0) == 2.0
    assert retry_delay(0, 1e6) == MAX_RETRY_AFTER
    assert retry_delay(0, None, random_fraction=lambda: 0.0) == INITIAL_RETRY_DELAY
    assert retry_delay(1, None, random_fraction=lambda: 1.0) == 2 * INITIAL_RETRY_DELAY * (1 - RETRY_JITTER)
    assert retry_delay(30, None, random_fraction=lambda: 0.0) == MAX_RETRY_DELAY


def test_connection_refused_is_an_api_connection_error(sleeps):
    """A real closed port (no double needed): nothing listens, the connection is refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again when the block ends: refused from then on
    with Client(base_url=f"http://127.0.0.1:{port}", max_retries=1, _sleep=sleeps.sync) as client:
        with pytest.raises(APIConnectionError) as caught:
            client.health()
    assert not isinstance(caught.value, APITimeoutError)
    assert "Connection error" in caught.value.message and len(sleeps) == 1
    assert caught.value.request_id is not None and caught.value.request_id.endswith("-retry1")


# ---------------------------------------------------------------- idempotency
def test_a_retried_upload_carries_the_same_client_assigned_ids(fake, make_client, sleeps):
    """Double: the connection drops after the request left, which only a double can arrange."""
    fake.collections["docs"] = {}
    fake.then(httpx.RemoteProtocolError, path="/v1/collections/docs/documents")
    ids = make_client().upsert("docs", [{"text": "first"}, {"text": "second", "metadata": {"k": 1}}])
    attempts = fake.requests_to("/v1/collections/docs/documents")
    assert len(attempts) == 2 and attempts[0].body == attempts[1].body
    sent = [d["id"] for d in attempts[0].body["documents"]]
    assert ids == sent and len(set(ids)) == 2 and all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    assert sorted(fake.collections["docs"]) == sorted(ids)


def test_a_retried_delete_answered_404_is_the_success_it_was(fake, make_client):
    """Double: 'deleted, but the answer was lost' has to be staged: the first attempt fails in transit."""
    fake.collections["docs"] = {}  # the document is already gone, as if the lost attempt deleted it
    fake.then(httpx.RemoteProtocolError, path="/v1/collections/docs/documents/gone")
    client = make_client()
    deleted = client.delete_document("docs", "gone")
    assert (deleted.id, deleted.deleted) == ("gone", True)
    with pytest.raises(NotFoundError) as caught:  # with no failed attempt before it, 404 is an error
        client.delete_document("docs", "gone")
    assert caught.value.code == "document_not_found"


def test_health_503_is_an_answer_and_not_retried(fake, make_client, sleeps):
    """Double: a real server answers 503 on /health only while a deployment is down."""
    fake.then(httpx.Response(503, json={"status": "unavailable", "deployments": {"Embedder": "starting",
                                                                                 "Reranker": "ok"}}),
              path="/health")
    health = make_client().health()
    assert health.status == "unavailable" and health.deployments["Embedder"] == "starting"
    assert len(fake.requests_to("/health")) == 1 and sleeps == []


# ---------------------------------------------------------------- settings
def test_settings_come_from_arguments_or_environment(fake, monkeypatch):
    """Double: only the headers sent matter here."""
    monkeypatch.setenv("QWEN3_SEARCH_BASE_URL", "http://from-env:1234/")
    monkeypatch.setenv("QWEN3_SEARCH_API_KEY", "env-key")
    fake.api_key = "env-key"
    with Client(http_client=httpx.Client(transport=fake.transport())) as client:
        assert client.base_url == "http://from-env:1234" and client.api_key == "env-key"
        client.health()
        client.info()
    seen = fake.requests_to("/info")[0]
    assert seen.headers["authorization"] == "Bearer env-key"
    assert seen.headers["user-agent"].startswith("qwen3-search-python/")
    with Client(base_url="http://arg", api_key="arg-key", http_client=httpx.Client(transport=fake.transport())) as c:
        assert (c.base_url, c.api_key) == ("http://arg", "arg-key")
        with pytest.raises(AuthenticationError):
            c.info()
    monkeypatch.delenv("QWEN3_SEARCH_BASE_URL")
    monkeypatch.delenv("QWEN3_SEARCH_API_KEY")
    with Client() as default:
        assert (default.base_url, default.api_key) == ("http://127.0.0.1:8000", None)


def test_timeouts_default_and_per_call():
    """Double: the timeout httpx was given is read from the request, not waited for."""
    timeouts: list[dict] = []

    def handler(request: httpx.Request) -> httpx.Response:
        timeouts.append(request.extensions["timeout"])
        return httpx.Response(200, json={"status": "ok", "deployments": {}})

    with Client(base_url="http://fake", http_client=httpx.Client(transport=httpx.MockTransport(handler))) as c:
        c.health()
        c.health(timeout=3.0)
        c.health(timeout=httpx.Timeout(7.0, connect=1.0))
        c.health(timeout=None)
    with Client(base_url="http://fake", timeout=30.0,
                http_client=httpx.Client(transport=httpx.MockTransport(handler))) as c:
        c.health()
    assert timeouts[0] == DEFAULT_TIMEOUT.as_dict() == {"connect": 10.0, "read": 120.0, "write": 120.0,
                                                        "pool": 120.0}
    assert timeouts[1] == {"connect": 3.0, "read": 3.0, "write": 3.0, "pool": 3.0}
    assert timeouts[2] == {"connect": 1.0, "read": 7.0, "write": 7.0, "pool": 7.0}
    assert timeouts[3] == {"connect": None, "read": None, "write": None, "pool": None}
    assert timeouts[4]["read"] == 30.0


async def test_the_async_client_retries_the_same_way(fake, make_async_client, sleeps):
    """Double: as for the sync client: a 429 with Retry-After, a dropped connection, then timeouts."""
    fake.then(error(429, "rate_limit_error", "busy", headers={"retry-after": "2"}), path=EMBED)
    fake.then(httpx.RemoteProtocolError, path=EMBED)
    async with make_async_client(max_retries=3) as client:
        result = await client.embed("x")
        np.testing.assert_allclose(result.embeddings[0], fake_vector("x"), atol=1e-7)
        assert sleeps[0] == 2.0 and len(sleeps) == 2
        assert_backoff(sleeps[1], 1)
        for _ in range(4):
            fake.then(httpx.ConnectTimeout, path=EMBED)
        with pytest.raises(APITimeoutError):
            await client.embed("x")
    assert len(fake.requests_to(EMBED)) == 3 + 4
    assert client.is_closed is False  # a caller's own http_client is left open
