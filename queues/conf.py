"""The app's reader of HARAQA_* settings; builds the storage engine (``get_store``).

(``serve`` reads them too, once, as its flags' defaults, and writes its flags back.)"""

from __future__ import annotations

import threading
from functools import cached_property

from django.conf import settings
from django.core.signals import setting_changed

from queues.storage import Store

_stores: dict[tuple, Store] = {}
_stores_guard = threading.Lock()


class QueueSettings:
    """Each setting is read once, on first use, and read again after ``reload``: a request reads
    several, and a read through Django's lazy settings costs a few thousand instructions (a
    one-message produce or consume spent 2.5% of its instructions here). Django's
    ``setting_changed`` (``override_settings`` in tests) reloads them."""

    @cached_property
    def volumes(self) -> tuple[str, ...]:
        return tuple(settings.HARAQA_VOLUMES)

    @cached_property
    def entries(self) -> int:
        return settings.HARAQA_ENTRIES

    @cached_property
    def limit(self) -> int:
        return settings.HARAQA_LIMIT

    @cached_property
    def fsync(self) -> str:
        return settings.HARAQA_FSYNC

    @cached_property
    def max_batch_bytes(self) -> int:
        return settings.HARAQA_MAX_BATCH_BYTES

    @cached_property
    def client_timeout(self) -> float | None:
        """Seconds a produce waits for its body's next bytes, and a consume for the client to take
        more of its answer; None: no limit."""
        return settings.HARAQA_CLIENT_TIMEOUT if settings.HARAQA_CLIENT_TIMEOUT > 0 else None

    @cached_property
    def cors(self) -> bool:
        return settings.HARAQA_CORS

    @cached_property
    def docs(self) -> bool:
        return settings.HARAQA_DOCS

    @cached_property
    def prometheus(self) -> bool:
        return settings.HARAQA_PROMETHEUS

    @cached_property
    def data_dir(self) -> str:
        """Where the server keeps its own files (database, secret key, admin run state)."""
        return str(settings.DATA_DIR)

    @cached_property
    def store(self) -> Store:
        """The Store for these settings: one per distinct configuration, kept for the process."""
        key = (self.volumes, self.entries, self.fsync, self.max_batch_bytes)
        with _stores_guard:
            store = _stores.get(key)
            if store is None:
                store = Store(list(self.volumes), entries_per_segment=self.entries, fsync=self.fsync,
                              max_batch_bytes=self.max_batch_bytes)
                store.prepare_volumes()
                _stores[key] = store
        return store

    def reload(self) -> None:
        """Forget what was read: the next reads see the settings as they are now."""
        self.__dict__.clear()


conf = QueueSettings()


def get_store() -> Store:
    """The process's Store for the current settings."""
    return conf.store


def _reload_on_change(setting: str, **kwargs) -> None:
    if setting.startswith("HARAQA_") or setting == "DATA_DIR":
        conf.reload()


setting_changed.connect(_reload_on_change)
