"""The HTTP app in-process over httpx.ASGITransport, in front of the FakeModelService test double."""

import httpx
import pytest

from deployments.http import create_app
from tests.http.fake_service import FakeModelService


@pytest.fixture
def service() -> FakeModelService:
    return FakeModelService()


@pytest.fixture
async def http(service: FakeModelService):
    app = create_app(lambda: service)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
                                 base_url="http://app") as client:
        yield client
