"""The only reader of HARAQA_* settings; builds the storage engine (``get_store``)."""

from __future__ import annotations

import threading

from django.conf import settings

from queues.storage import Store

_stores: dict[tuple, Store] = {}
_stores_guard = threading.Lock()


class QueueSettings:
    """Each property reads settings lazily, so ``override_settings`` works in tests."""

    @property
    def volumes(self) -> list[str]:
        return list(settings.HARAQA_VOLUMES)

    @property
    def entries(self) -> int:
        return settings.HARAQA_ENTRIES

    @property
    def limit(self) -> int:
        return settings.HARAQA_LIMIT

    @property
    def fsync(self) -> str:
        return settings.HARAQA_FSYNC

    @property
    def max_batch_bytes(self) -> int:
        return settings.HARAQA_MAX_BATCH_BYTES

    @property
    def client_timeout(self) -> float | None:
        """Seconds a produce waits for its body's next bytes, and a consume for the client to take
        more of its answer; None: no limit."""
        return settings.HARAQA_CLIENT_TIMEOUT if settings.HARAQA_CLIENT_TIMEOUT > 0 else None

    @property
    def cors(self) -> bool:
        return settings.HARAQA_CORS

    @property
    def docs(self) -> bool:
        return settings.HARAQA_DOCS

    @property
    def prometheus(self) -> bool:
        return settings.HARAQA_PROMETHEUS

    @property
    def data_dir(self) -> str:
        """Where the server keeps its own files (database, secret key, admin run state)."""
        return str(settings.DATA_DIR)


conf = QueueSettings()


def get_store() -> Store:
    """The process's Store for the current settings (one per distinct configuration)."""
    key = (
        tuple(settings.HARAQA_VOLUMES), settings.HARAQA_ENTRIES, settings.HARAQA_FSYNC, settings.HARAQA_MAX_BATCH_BYTES
    )
    store = _stores.get(key)  # read on every request: no lock unless it has to be built
    if store is None:
        with _stores_guard:
            store = _stores.get(key)
            if store is None:
                store = Store(list(key[0]), entries_per_segment=key[1], fsync=key[2], max_batch_bytes=key[3])
                store.prepare_volumes()
                _stores[key] = store
    return store
