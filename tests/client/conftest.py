"""Fixtures of the client tests: a fake server behind httpx.MockTransport, clients wired to it."""

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from clients import AsyncClient, Client
from tests.client.fake_server import FakeServer


class Sleeps(list[float]):
    """Records the delays a client asked for, instead of sleeping (a retry test then takes no time)."""

    def sync(self, seconds: float) -> None:
        self.append(seconds)

    async def async_(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def fake() -> FakeServer:
    return FakeServer()


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def make_client(fake: FakeServer, sleeps: Sleeps) -> Callable[..., Client]:
    """A `Client` talking to `fake`, its sleeps recorded in `sleeps`."""
    made: list[Client] = []

    def make(**options: Any) -> Client:
        client = Client(base_url="http://fake", http_client=httpx.Client(transport=fake.transport()),
                        _sleep=sleeps.sync, **options)
        made.append(client)
        return client

    yield make
    for client in made:
        client._http.close()


@pytest.fixture
def make_async_client(fake: FakeServer, sleeps: Sleeps) -> Callable[..., AsyncClient]:
    """An `AsyncClient` talking to `fake`, its sleeps recorded in `sleeps`."""

    def make(**options: Any) -> AsyncClient:
        return AsyncClient(base_url="http://fake", http_client=httpx.AsyncClient(transport=fake.transport()),
                           _sleep=sleeps.async_, **options)

    return make
