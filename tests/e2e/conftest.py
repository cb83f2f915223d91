from __future__ import annotations

import pytest

from .client import HaraqaClient


@pytest.fixture
def connect():
    """Open HaraqaClients to a server URL; every one is closed at teardown."""
    clients: list[HaraqaClient] = []

    def factory(url: str, **kwargs) -> HaraqaClient:
        clients.append(HaraqaClient(url, **kwargs))
        return clients[-1]

    yield factory
    for client in clients:
        client.close()
