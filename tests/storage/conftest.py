"""Engine fixtures: a Store over three fresh volumes, no Django involved."""

from __future__ import annotations

import io

import pytest

from queues.storage import Store


@pytest.fixture
def store(volumes: list[str]) -> Store:
    store = Store(volumes, entries_per_segment=5)
    store.prepare_volumes()
    return store


def produce(store: Store, topic: str, messages: list[bytes]) -> int:
    return store.produce(topic, [len(m) for m in messages], io.BytesIO(b"".join(messages)))


def read_all(store: Store, topic: str, start: int = 0) -> list[bytes]:
    """Every message from ``start`` on, following segment boundaries."""
    from queues.storage import NoContent

    out: list[bytes] = []
    while True:
        try:
            batch = store.consume(topic, start + len(out), 0)
        except NoContent:
            return out
        out.extend(batch.messages())
