"""Admin fixtures: a store on fresh volumes, users with chosen permissions, helpers."""

from __future__ import annotations

import io
import os
import threading
from pathlib import Path

import pytest
from django.contrib.admin.utils import quote
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.urls import reverse

from queues.conf import get_store
from queues.storage import Store
from queues.storage.locks import LOCK_DIR


@pytest.fixture
def store(api_volumes: list[str], settings, tmp_path: Path) -> Store:
    """The app's store over three fresh volumes (segments of 5 messages); run state in tmp."""
    settings.DATA_DIR = tmp_path / "data"
    return get_store()


def produce(store: Store, topic: str, messages: list[bytes]) -> int:
    """Append ``messages`` as one batch, creating the topic first if needed."""
    if topic not in store.list_topics():
        store.create_topic(topic)
    return store.produce(topic, [len(m) for m in messages], io.BytesIO(b"".join(messages)))


def tree(volume: str) -> dict[str, bytes]:
    """Every file of a volume (lock files aside) by relative path, with its bytes."""
    out = {}
    for root, dirs, files in os.walk(volume):
        dirs[:] = [d for d in dirs if d != LOCK_DIR]
        for name in files:
            with open(os.path.join(root, name), "rb") as f:
                out[os.path.relpath(os.path.join(root, name), volume)] = f.read()
    return out


def topic_url(name: str, topic: str = "", *args: object) -> str:
    """``admin:queues_topic_<name>``, with the topic quoted as the admin quotes keys."""
    return reverse(f"admin:queues_topic_{name}", args=[quote(topic), *args] if topic else args)


def volume_url(name: str) -> str:
    return reverse(f"admin:queues_volume_{name}")


@pytest.fixture
def user_client(db):
    """A logged-in client for a user with ``staff`` status and the given ``queues`` permissions."""

    def make(*codenames: str, staff: bool = True) -> Client:
        user = User.objects.create_user(f"user{User.objects.count()}", is_staff=staff)
        user.user_permissions.set(Permission.objects.filter(content_type__app_label="queues", codename__in=codenames))
        client = Client()
        client.force_login(user)
        return client

    return make


def wait_for_runs() -> None:
    """Wait for the checks and recoveries this process started from the admin."""
    for thread in threading.enumerate():
        if thread.name.startswith("admin-"):
            thread.join(timeout=60)
            assert not thread.is_alive(), "a background run did not finish"


@pytest.fixture(autouse=True)
def _join_background_runs():
    """A check or recovery started by a test finishes before its volumes are removed."""
    yield
    wait_for_runs()
