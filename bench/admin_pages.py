"""Admin page times with many topics: the list must stay fast at 10,000 topics.

    .venv/bin/python bench/admin_pages.py [--topics 10000] [--rounds 3] > bench/admin_pages.txt

Builds a store of 3 volumes in a temporary directory holding ``--topics`` empty topics, one
in ten with 12 messages (segments of 5), and a fresh SQLite database; then times each admin
page through the Django test client, logged in as a superuser (best of ``--rounds``).
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PAGES = [
    ("topics, by name", "/admin/queues/topic/"),
    ("topics, by name, page 150", "/admin/queues/topic/?p=150"),
    ("topics, prefix filter", "/admin/queues/topic/?q=t09"),
    ("topics, by bytes", "/admin/queues/topic/?o=-bytes"),
    ("chart data", "/admin/queues/topic/chart.json"),
    ("volumes", "/admin/queues/volume/"),
    ("one topic", "/admin/queues/topic/t00010/"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--topics", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix="admin-bench-")
    try:
        run(root, args.topics, args.rounds)
    finally:
        shutil.rmtree(root)


def run(root: str, topics: int, rounds: int) -> None:
    os.environ.update(
        HARAQA_DATA_DIR=f"{root}/data",
        HARAQA_VOLUMES=os.pathsep.join(f"{root}/vol{i}" for i in (1, 2, 3)),
        HARAQA_ENTRIES="5",
        DJANGO_SETTINGS_MODULE="haraqa_site.settings",
    )
    sys.path.insert(0, str(REPO))
    import django

    django.setup()
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from django.test import Client

    from queues.conf import get_store

    call_command("migrate", verbosity=0)
    store = get_store()
    for i in range(topics):
        store.create_topic(f"t{i:05d}")
        if i % 10 == 0:
            store.produce(f"t{i:05d}", [10] * 12, io.BytesIO(b"x" * 120))
    client = Client()
    client.force_login(User.objects.create_superuser("bench", "bench@example.com", None))
    print(f"{topics} topics on 3 volumes, best of {rounds}")
    for label, url in PAGES:
        times = []
        for _ in range(rounds):
            started = time.perf_counter()
            status = client.get(url).status_code
            times.append(time.perf_counter() - started)
            assert status == 200, (url, status)
        print(f"{min(times) * 1000:8.0f} ms  {label:28} {url}")


if __name__ == "__main__":
    main()
